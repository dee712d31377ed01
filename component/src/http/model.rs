//! The typed JSON bodies of the HTTP API (API.md §2–§5). Responses are serialised
//! through these types and requests are read into them, so the schemas that the OpenAPI
//! document derives from them (`ToSchema`) are the bodies actually sent and read.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::JsonObject;
use crate::account::Change;
use crate::admin::AuditEvent as AuditRecord;
use crate::error::{Error, FieldError as DomainFieldError};
use crate::import::Report;
use crate::sessions::{Grant, SessionView};
use crate::settings::{RateLimitGroup, Settings};
use crate::users::PublicUser;

/// An RFC 9457 problem (`application/problem+json`).
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// `urn:portcullis:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The stable machine-readable code (API.md §2).
    #[schema(example = "invalid_credentials")]
    pub code: String,
    /// Every broken field rule; only on 422 `validation_failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// Only on 403 `mfa_required`: the single-use ticket for `/api/v1/auth/mfa/verify`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mfa_token: Option<String>,
    /// Only on 403 `mfa_required`: the kinds of code `/api/v1/auth/mfa/verify` takes.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = json!(["totp", "recovery_code"]))]
    pub methods: Option<Vec<&'static str>>,
}

impl From<&Error> for Problem {
    fn from(error: &Error) -> Self {
        let errors = match error {
            Error::Validation(errors) => Some(errors.iter().map(FieldError::from).collect()),
            _ => None,
        };
        Problem {
            kind: format!("urn:portcullis:problem:{}", error.code()),
            title: error.title().into(),
            status: error.status(),
            detail: error.detail(),
            code: error.code().into(),
            errors,
            mfa_token: match error {
                Error::MfaRequired { mfa_token } => Some(mfa_token.clone()),
                _ => None,
            },
            methods: matches!(error, Error::MfaRequired { .. })
                .then(|| crate::mfa::METHODS.to_vec()),
        }
    }
}

/// `GET /health` when the database cannot be reached, or a signing key cannot be
/// unsealed: a problem (`unavailable`) that also says what `/health` says.
#[derive(Serialize, ToSchema)]
pub struct HealthProblem {
    #[serde(flatten)]
    pub problem: Problem,
    #[schema(example = "unavailable")]
    pub database: &'static str,
    /// `unavailable` when this host cannot unseal the EdDSA signing key (another
    /// `PORTCULLIS_JWT_SECRET` than the one that sealed it); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "unavailable")]
    pub keys: Option<&'static str>,
    pub version: &'static str,
}

/// One broken rule of one field (API.md §4 field codes).
#[derive(Serialize, ToSchema)]
pub struct FieldError {
    #[schema(example = "password")]
    pub field: String,
    #[schema(example = "missing_digit")]
    pub code: String,
    pub message: String,
}

impl From<&DomainFieldError> for FieldError {
    fn from(error: &DomainFieldError) -> Self {
        FieldError {
            field: error.field.to_string(),
            code: error.code.to_string(),
            message: error.message.clone(),
        }
    }
}

/// A user (API.md §3); the password hash never leaves the service.
#[derive(Serialize, ToSchema)]
pub struct User {
    pub id: String,
    pub username: String,
    pub email: String,
    pub mobile_number: Option<String>,
    pub email_verified: bool,
    pub is_active: bool,
    pub is_admin: bool,
    /// Two-factor authentication (TOTP) is on: a password alone opens no session.
    pub mfa_enabled: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<PublicUser> for User {
    fn from(user: PublicUser) -> Self {
        User {
            id: user.id,
            username: user.username,
            email: user.email,
            mobile_number: user.mobile_number,
            email_verified: user.email_verified,
            is_active: user.is_active,
            is_admin: user.is_admin,
            mfa_enabled: user.mfa_enabled,
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}

/// The token response of login and refresh (API.md §3). Keep the refresh token: it is
/// single-use, and the next refresh needs the one this answer carries.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// A JWT (`typ: at+jwt`); send it as `Authorization: Bearer …`.
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u32,
    /// Opaque, single-use; present it to `/api/v1/auth/refresh` before `expires_in` ends.
    pub refresh_token: String,
    /// Seconds until the refresh token (and the session) expires.
    pub refresh_expires_in: u32,
    pub session_id: String,
    pub user: User,
}

impl From<&Grant> for TokenResponse {
    fn from(grant: &Grant) -> Self {
        TokenResponse {
            access_token: grant.access_token.clone(),
            token_type: "Bearer".into(),
            expires_in: grant.expires_in,
            refresh_token: grant.refresh_token.clone(),
            refresh_expires_in: grant.refresh_expires_in,
            session_id: grant.session_id.clone(),
            user: grant.user.public().into(),
        }
    }
}

/// The answer to a registration: the token response with `verification_required: false`,
/// or only the user with `verification_required: true` when email verification is
/// required before login (the token fields are then absent).
#[derive(Serialize, ToSchema)]
pub struct Registered {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_expires_in: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    pub user: User,
    pub verification_required: bool,
}

impl Registered {
    /// Signed in at once.
    pub fn signed_in(grant: &Grant) -> Self {
        let tokens = TokenResponse::from(grant);
        Registered {
            access_token: Some(tokens.access_token),
            token_type: Some(tokens.token_type),
            expires_in: Some(tokens.expires_in),
            refresh_token: Some(tokens.refresh_token),
            refresh_expires_in: Some(tokens.refresh_expires_in),
            session_id: Some(tokens.session_id),
            user: tokens.user,
            verification_required: false,
        }
    }

    /// Registered; login waits for the email to be verified.
    pub fn pending(user: PublicUser) -> Self {
        Registered {
            access_token: None,
            token_type: None,
            expires_in: None,
            refresh_token: None,
            refresh_expires_in: None,
            session_id: None,
            user: user.into(),
            verification_required: true,
        }
    }
}

/// The OAuth2 token response (RFC 6749 §5.1).
#[derive(Serialize, ToSchema)]
pub struct OAuthToken {
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: String,
    pub expires_in: u32,
    /// Single-use: the next `grant_type=refresh_token` request needs this one.
    pub refresh_token: String,
}

/// An OAuth2 error (RFC 6749 §5.2).
#[derive(Serialize, ToSchema)]
pub struct OAuthError {
    #[schema(value_type = String, pattern = "^(invalid_request|invalid_grant|unsupported_grant_type)$")]
    pub error: &'static str,
    pub error_description: &'static str,
}

/// The OAuth2 token request (RFC 6749 §4.3 and §6), form-encoded. Empty values count
/// as absent; a repeated parameter is `invalid_request`.
#[derive(ToSchema)]
pub struct TokenForm<'a> {
    #[schema(pattern = "^(password|refresh_token)$", example = "password")]
    pub grant_type: &'a str,
    /// With `grant_type=password`: a username, an email address or a mobile number.
    #[schema(example = "john_doe")]
    pub username: Option<&'a str>,
    /// With `grant_type=password`.
    #[schema(example = "Tr1cky!Horse#42")]
    pub password: Option<&'a str>,
    /// With `grant_type=refresh_token`: the latest refresh token (single-use).
    pub refresh_token: Option<&'a str>,
}

/// A session (API.md §3).
#[derive(Serialize, ToSchema)]
pub struct Session {
    pub id: String,
    pub device_info: Option<String>,
    pub ip_address: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub last_active_at: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// True for the session of the token that asked.
    pub is_current: bool,
}

impl From<SessionView> for Session {
    fn from(view: SessionView) -> Self {
        Session {
            id: view.id,
            device_info: view.device_info,
            ip_address: view.ip_address,
            created_at: view.created_at,
            last_active_at: view.last_active_at,
            expires_at: view.expires_at,
            is_current: view.is_current,
        }
    }
}

/// The caller's live sessions, newest first.
#[derive(Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<Session>,
    pub session_count: usize,
    /// `PORTCULLIS_MAX_SESSIONS` (0 = unlimited).
    pub max_sessions: u32,
}

/// What `GET /api/v1/auth/verify` says about a valid token.
#[derive(Serialize, ToSchema)]
pub struct TokenInfo {
    pub valid: bool,
    pub user_id: String,
    pub username: String,
    pub session_id: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// `GET /health`
#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
    #[schema(example = "ok")]
    pub database: &'static str,
    pub version: &'static str,
}

/// An accepted request whose effect follows later (a mail is queued).
#[derive(Serialize, ToSchema)]
pub struct Accepted {
    #[schema(example = "verification_mail_queued")]
    pub status: &'static str,
}

/// A page of users, and the cursor of the next page (`null` on the last).
#[derive(Serialize, ToSchema)]
pub struct UserPage {
    pub users: Vec<User>,
    pub next_cursor: Option<String>,
}

/// What a user import did with each line (API.md §9).
#[derive(Serialize, ToSchema)]
pub struct ImportReport {
    /// How many lines became accounts.
    pub imported: u32,
    /// Lines whose username, email or mobile number exists; the account was not changed.
    pub skipped: Vec<ImportSkipped>,
    /// Every problem of the lines that were not imported (several per line when several
    /// fields are wrong).
    pub rejected: Vec<ImportRejected>,
}

/// A line skipped because its user exists.
#[derive(Serialize, ToSchema)]
pub struct ImportSkipped {
    /// The line's number, from 1.
    pub line: u32,
    /// `username_taken`, `email_taken` or `mobile_taken`.
    #[schema(example = "email_taken")]
    pub code: &'static str,
}

/// One problem of a rejected line.
#[derive(Serialize, ToSchema)]
pub struct ImportRejected {
    /// The line's number, from 1.
    pub line: u32,
    /// The field at fault; `null` when the line is not a JSON object.
    #[schema(example = "password_hash")]
    pub field: Option<&'static str>,
    /// `unsupported_hash`, `invalid_json`, or a field code of the registration rules.
    #[schema(example = "unsupported_hash")]
    pub code: &'static str,
}

impl From<Report> for ImportReport {
    fn from(report: Report) -> Self {
        ImportReport {
            imported: report.imported,
            skipped: report
                .skipped
                .into_iter()
                .map(|skipped| ImportSkipped {
                    line: skipped.line,
                    code: skipped.code,
                })
                .collect(),
            rejected: report
                .rejected
                .into_iter()
                .map(|rejected| ImportRejected {
                    line: rejected.line,
                    field: rejected.field,
                    code: rejected.code,
                })
                .collect(),
        }
    }
}

/// One audit event.
#[derive(Serialize, ToSchema)]
pub struct AuditEvent {
    pub id: String,
    #[schema(format = DateTime)]
    pub at: String,
    #[schema(example = "login")]
    pub event: String,
    /// The account the event is about.
    pub user_id: Option<String>,
    pub ip_address: Option<String>,
    /// Event details; an admin's actions name the admin in `actor_id`.
    pub detail: serde_json::Value,
}

impl From<AuditRecord> for AuditEvent {
    fn from(record: AuditRecord) -> Self {
        AuditEvent {
            id: record.id,
            at: record.at,
            event: record.event,
            user_id: record.user_id,
            ip_address: record.ip_address,
            detail: record.detail,
        }
    }
}

/// A page of audit events, newest first.
#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    pub next_cursor: Option<String>,
}

/// A JSON Web Key Set (RFC 7517); empty under HS256.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// An Ed25519 public key (RFC 8037).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Jwk {
    #[schema(example = "OKP")]
    pub kty: String,
    #[schema(example = "Ed25519")]
    pub crv: String,
    #[schema(example = "EdDSA")]
    pub alg: String,
    #[serde(rename = "use")]
    #[schema(example = "sig")]
    pub usage: String,
    pub kid: String,
    /// The public key, base64url.
    pub x: String,
}

/// The live validation rules (API.md §4) and token and session settings.
#[derive(Serialize, ToSchema)]
pub struct ValidationRules {
    pub username: UsernameRules,
    pub email: EmailRules,
    pub mobile_number: MobileRules,
    pub password: PasswordRules,
    pub tokens: TokenRules,
    pub sessions: SessionRules,
    pub require_email_verification: bool,
    pub max_body_bytes: usize,
    pub rate_limits: RateLimitRules,
}

/// The per-client-IP limits of the `POST /api/v1/auth/*` endpoints in force, by
/// endpoint group; `null`: not limited.
#[derive(Serialize, ToSchema)]
pub struct RateLimitRules {
    /// `PORTCULLIS_RATE_LIMIT`: every endpoint of no group with a limit of its own.
    pub default: Option<RateLimitRule>,
    /// Login, `/auth/token` and `/auth/mfa/verify`.
    pub login: Option<RateLimitRule>,
    pub register: Option<RateLimitRule>,
    /// `password/forgot`, `password/reset` and the `/reset-password` form.
    pub password: Option<RateLimitRule>,
    /// `email/verify-request`, `email/verify` and the `/verify-email` form.
    pub email: Option<RateLimitRule>,
}

/// One group's limit: `requests` per `seconds` from one client IP.
#[derive(Serialize, ToSchema)]
pub struct RateLimitRule {
    pub requests: u32,
    pub seconds: u32,
    /// The group whose counter these requests count on: the group's own, or `default`
    /// (shared by every group without a limit of its own).
    #[schema(pattern = "^(default|login|register|password|email)$")]
    pub counter: &'static str,
}

impl From<&Settings> for RateLimitRules {
    fn from(settings: &Settings) -> Self {
        let rule = |group: RateLimitGroup| {
            let effective = settings.rate_limit_of(group);
            effective.limit.map(|limit| RateLimitRule {
                requests: limit.requests,
                seconds: limit.seconds,
                counter: effective.counter.name(),
            })
        };
        RateLimitRules {
            default: rule(RateLimitGroup::Default),
            login: rule(RateLimitGroup::Login),
            register: rule(RateLimitGroup::Register),
            password: rule(RateLimitGroup::Password),
            email: rule(RateLimitGroup::Email),
        }
    }
}

/// Rules of `username`.
#[derive(Serialize, ToSchema)]
pub struct UsernameRules {
    pub min_length: usize,
    pub max_length: usize,
    pub pattern: &'static str,
    #[schema(example = "case_insensitive")]
    pub unique: &'static str,
}

/// Rules of `email`.
#[derive(Serialize, ToSchema)]
pub struct EmailRules {
    pub max_length: usize,
    pub stored_lowercase: bool,
    pub unique: bool,
}

/// Rules of `mobile_number`.
#[derive(Serialize, ToSchema)]
pub struct MobileRules {
    pub required: bool,
    pub pattern: &'static str,
    /// Characters removed before the pattern is checked.
    pub ignored_characters: &'static str,
    pub unique: bool,
}

/// Rules of passwords under the configured policy.
#[derive(Serialize, ToSchema)]
pub struct PasswordRules {
    #[schema(pattern = "^(complex|nist)$")]
    pub policy: &'static str,
    pub min_length: usize,
    pub max_length: usize,
    pub require_uppercase: bool,
    pub require_lowercase: bool,
    pub require_digit: bool,
    pub require_special: bool,
    pub ascii_only: bool,
    pub common_password_check: bool,
    pub common_password_count: usize,
    pub disallow_identifiers: bool,
}

/// Token settings.
#[derive(Serialize, ToSchema)]
pub struct TokenRules {
    #[schema(pattern = "^(HS256|EdDSA)$")]
    pub algorithm: &'static str,
    pub issuer: String,
    pub audience: String,
    pub access_ttl: u32,
    pub refresh_ttl: u32,
    pub clock_skew: u32,
    /// Seconds during which a just-spent refresh token gets the same successor.
    pub refresh_reuse_grace: u32,
}

/// Session settings.
#[derive(Serialize, ToSchema)]
pub struct SessionRules {
    /// 0 = unlimited.
    pub max_sessions: u32,
    #[schema(pattern = "^(evict_oldest|reject)$")]
    pub limit_policy: &'static str,
    /// Whether browser sessions with cookies (`X-Portcullis-Session: cookie`) are on.
    pub cookie_sessions: bool,
}

/// `POST /api/v1/auth/register`
#[derive(ToSchema)]
pub struct RegisterRequest {
    #[schema(
        min_length = 3,
        max_length = 50,
        pattern = "^[0-9]*[A-Za-z_][A-Za-z0-9_]*$",
        example = "john_doe"
    )]
    pub username: String,
    #[schema(max_length = 254, format = Email, example = "john@example.com")]
    pub email: String,
    /// Per the password policy (see `/api/v1/validation-rules`).
    #[schema(max_length = 128, example = "Tr1cky!Horse#42")]
    pub password: String,
    /// `+` then 10–15 digits, or 10–15 digits; spaces, dashes and parentheses are ignored.
    #[schema(example = "+14155550100")]
    pub mobile_number: Option<String>,
}

impl RegisterRequest {
    pub fn read(body: &mut JsonObject) -> Self {
        RegisterRequest {
            username: body.string("username").unwrap_or_default(),
            email: body.string("email").unwrap_or_default(),
            password: body.string("password").unwrap_or_default(),
            mobile_number: body.string("mobile_number"),
        }
    }
}

/// `POST /api/v1/auth/login`
#[derive(ToSchema)]
pub struct LoginRequest {
    /// A username, an email address or a mobile number.
    #[schema(example = "john_doe")]
    pub login: String,
    #[schema(max_length = 128, example = "Tr1cky!Horse#42")]
    pub password: String,
    /// Shown in the session list instead of the User-Agent.
    #[schema(example = "my laptop")]
    pub device_name: Option<String>,
}

impl LoginRequest {
    pub fn read(body: &mut JsonObject) -> Self {
        LoginRequest {
            login: body.string("login").unwrap_or_default(),
            password: body.string("password").unwrap_or_default(),
            device_name: body.string("device_name"),
        }
    }
}

/// `POST /api/v1/auth/refresh`
#[derive(ToSchema)]
pub struct RefreshRequest {
    /// The refresh token of the latest token response; single-use.
    pub refresh_token: String,
}

impl RefreshRequest {
    pub fn read(body: &mut JsonObject) -> Result<Self, Error> {
        Ok(RefreshRequest {
            refresh_token: body.required("refresh_token")?,
        })
    }
}

/// `POST /api/v1/auth/email/verify`
#[derive(ToSchema)]
pub struct VerifyEmailRequest {
    /// The token of the verification link.
    pub token: String,
}

impl VerifyEmailRequest {
    pub fn read(body: &mut JsonObject) -> Result<Self, Error> {
        Ok(VerifyEmailRequest {
            token: body.required("token")?,
        })
    }
}

/// `POST /api/v1/auth/password/forgot`: the answer is the same whether or not the
/// address is registered.
#[derive(ToSchema)]
pub struct ForgotPasswordRequest {
    #[schema(max_length = 254)]
    pub email: String,
}

impl ForgotPasswordRequest {
    pub fn read(body: &mut JsonObject) -> Result<Self, Error> {
        let email = body.string("email").unwrap_or_default();
        body.check_types()?;
        Ok(ForgotPasswordRequest { email })
    }
}

/// `POST /api/v1/auth/password/reset`
#[derive(ToSchema)]
pub struct ResetPasswordRequest {
    /// The token of the reset link.
    pub token: String,
    #[schema(max_length = 128)]
    pub new_password: String,
}

impl ResetPasswordRequest {
    pub fn read(body: &mut JsonObject) -> Result<Self, Error> {
        let token = body.string("token").unwrap_or_default();
        let new_password = body.string("new_password").unwrap_or_default();
        body.check_types()?;
        Ok(ResetPasswordRequest {
            token,
            new_password,
        })
    }
}

/// `POST /api/v1/users/me/password`
#[derive(ToSchema)]
pub struct ChangePasswordRequest {
    #[schema(max_length = 128)]
    pub current_password: String,
    #[schema(max_length = 128)]
    pub new_password: String,
}

impl ChangePasswordRequest {
    pub fn read(body: &mut JsonObject) -> Result<Self, Error> {
        let current_password = body.string("current_password").unwrap_or_default();
        let new_password = body.string("new_password").unwrap_or_default();
        body.check_types()?;
        Ok(ChangePasswordRequest {
            current_password,
            new_password,
        })
    }
}

/// `DELETE /api/v1/users/me`
#[derive(ToSchema)]
pub struct DeleteAccountRequest {
    #[schema(max_length = 128)]
    pub password: String,
}

impl DeleteAccountRequest {
    pub fn read(body: &mut JsonObject) -> Result<Self, Error> {
        let password = body.string("password").unwrap_or_default();
        body.check_types()?;
        Ok(DeleteAccountRequest { password })
    }
}

/// `PATCH /api/v1/users/me`: absent fields are kept; `null` clears `mobile_number`.
#[derive(ToSchema)]
pub struct ProfileUpdate {
    #[schema(value_type = Option<String>, min_length = 3, max_length = 50, pattern = "^[0-9]*[A-Za-z_][A-Za-z0-9_]*$")]
    pub username: Change,
    /// A new address is unverified and gets a verification mail.
    #[schema(value_type = Option<String>, max_length = 254)]
    pub email: Change,
    #[schema(value_type = Option<String>)]
    pub mobile_number: Change,
    /// Required to change `email` (422 `required` when missing, 401
    /// `invalid_credentials` when wrong; wrong ones count as failed logins).
    #[schema(max_length = 128)]
    pub current_password: Option<String>,
}

impl ProfileUpdate {
    pub fn read(body: &mut JsonObject) -> Result<Self, Error> {
        let update = ProfileUpdate {
            username: body.change("username"),
            email: body.change("email"),
            mobile_number: body.change("mobile_number"),
            current_password: body.string("current_password"),
        };
        body.check_types()?;
        Ok(update)
    }
}

/// `PATCH /api/v1/admin/users/{id}`: absent fields are kept.
#[derive(ToSchema)]
pub struct AdminUserChange {
    /// `false` deactivates the account and revokes every session at once.
    pub is_active: Option<bool>,
    pub is_admin: Option<bool>,
    pub email_verified: Option<bool>,
}

impl AdminUserChange {
    pub fn read(body: &mut JsonObject) -> Result<Self, Error> {
        let change = AdminUserChange {
            is_active: body.boolean("is_active"),
            is_admin: body.boolean("is_admin"),
            email_verified: body.boolean("email_verified"),
        };
        body.check_types()?;
        Ok(change)
    }
}

/// `POST /api/v1/users/me/mfa/totp`
#[derive(ToSchema)]
pub struct EnrolTotpRequest {
    /// The account's password (a wrong one counts as a failed login).
    #[schema(max_length = 128)]
    pub password: String,
}

impl EnrolTotpRequest {
    pub fn read(body: &mut JsonObject) -> Result<Self, Error> {
        let password = body.string("password").unwrap_or_default();
        body.check_types()?;
        Ok(EnrolTotpRequest { password })
    }
}

/// A pending TOTP enrolment: shown once, never again.
#[derive(Serialize, ToSchema)]
pub struct TotpEnrolment {
    /// The 160-bit secret in base32, for typing into an authenticator app.
    #[schema(example = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")]
    pub secret: String,
    /// `otpauth://totp/{issuer}:{username}?secret=…&issuer={issuer}&algorithm=SHA1&digits=6&period=30`
    pub otpauth_uri: String,
    /// An SVG image of a QR code of `otpauth_uri`.
    pub qr_svg: String,
}

/// A body that carries one code: a 6-digit TOTP code or a recovery code.
#[derive(ToSchema)]
pub struct MfaCodeRequest {
    #[schema(max_length = 64, example = "492039")]
    pub code: String,
}

impl MfaCodeRequest {
    pub fn read(body: &mut JsonObject) -> Result<Self, Error> {
        Ok(MfaCodeRequest {
            code: body.required("code")?,
        })
    }
}

/// Ten single-use recovery codes, shown this once (only their hashes are kept).
#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    #[schema(example = json!(["k4mz-q2xa-77bd-pw3r"]))]
    pub recovery_codes: Vec<String>,
}

/// `DELETE /api/v1/users/me/mfa`
#[derive(ToSchema)]
pub struct DisableMfaRequest {
    #[schema(max_length = 128)]
    pub password: String,
    /// A TOTP code or a recovery code.
    #[schema(max_length = 64)]
    pub code: String,
}

impl DisableMfaRequest {
    pub fn read(body: &mut JsonObject) -> Result<Self, Error> {
        let password = body.string("password").unwrap_or_default();
        let code = body.required("code")?;
        Ok(DisableMfaRequest { password, code })
    }
}

/// `POST /api/v1/auth/mfa/verify`: the second step of a login.
#[derive(ToSchema)]
pub struct MfaVerifyRequest {
    /// The `mfa_token` of the login's 403 `mfa_required` answer.
    pub mfa_token: String,
    /// A TOTP code or a recovery code.
    #[schema(max_length = 64, example = "492039")]
    pub code: String,
    /// Shown in the session list instead of the User-Agent.
    pub device_name: Option<String>,
}

impl MfaVerifyRequest {
    pub fn read(body: &mut JsonObject) -> Result<Self, Error> {
        let device_name = body.string("device_name");
        let mfa_token = body.required("mfa_token")?;
        let code = body.required("code")?;
        Ok(MfaVerifyRequest {
            mfa_token,
            code,
            device_name,
        })
    }
}

/// `POST /api/v1/auth/token` with `grant_type=password` for an account with two-factor
/// authentication: no token yet; finish at `/api/v1/auth/mfa/verify`.
#[derive(Serialize, ToSchema)]
pub struct OAuthMfaRequired {
    #[schema(value_type = String, pattern = "^mfa_required$")]
    pub error: &'static str,
    pub error_description: &'static str,
    /// Single-use, valid `PORTCULLIS_MFA_TOKEN_TTL` seconds.
    pub mfa_token: String,
}
