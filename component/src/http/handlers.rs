//! One function per endpoint: read the request, call the domain, shape the answer.

use super::body::{json_object, ndjson_body};
use super::model::{
    Accepted, AdminUserChange, AuditPage, ChangePasswordRequest, DeleteAccountRequest, EmailRules,
    ForgotPasswordRequest, Health, HealthProblem, ImportReport, Jwks, LoginRequest, MobileRules,
    OAuthError, OAuthMfaRequired, OAuthToken, PasswordRules, Problem, ProfileUpdate,
    RateLimitRules, RefreshRequest, RegisterRequest, Registered, ResetPasswordRequest, SessionList,
    SessionRules, TokenForm, TokenInfo, TokenResponse, TokenRules, User, UserPage, UsernameRules,
    ValidationRules, VerifyEmailRequest,
};
use super::oauth;
use super::problem::PROBLEM_JSON;
use super::{Request, Response, header};
use crate::account::{self, ProfileChange};
use crate::admin;
use crate::app::{App, rfc3339};
use crate::auth::{self, Registration};
use crate::error::Error;
use crate::import;
use crate::keys;
use crate::refresh;
use crate::sessions::{self, Authenticated, Client};
use crate::settings::{JwtAlgorithm, PASSWORD_MAX_LENGTH, PasswordPolicy};
use crate::validation;

/// What a handler gets.
pub struct Context<'a> {
    pub app: &'a App<'a>,
    pub request: &'a Request,
    /// The values of the route's `{…}` segments, in order.
    pub params: Vec<String>,
}

impl Context<'_> {
    pub fn client(&self, device_name: Option<String>) -> Client {
        let device_info = device_name
            .filter(|name| !name.trim().is_empty())
            .or_else(|| self.request.header(header::USER_AGENT).map(str::to_string));
        Client::new(
            device_info,
            self.request.client_ip(&self.app.settings.trusted_proxies),
        )
    }

    /// The bearer token's user and session, checked live.
    pub(super) fn authenticate(&self) -> Result<Authenticated, Error> {
        let value = self
            .request
            .header(header::AUTHORIZATION)
            .ok_or(Error::Unauthorized)?;
        let (scheme, token) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Error::Unauthorized);
        }
        auth::verify_access_token(self.app, token.trim())
    }
}

/// Liveness, database reachability and (under EdDSA) whether the signing key unseals.
#[utoipa::path(get, path = "/health", tag = "service", responses(
    (status = 200, description = "The service and its database are up.", body = Health),
    (status = 503, description = "The database is unreachable, or the signing key cannot \
        be unsealed with this host's secret.", body = HealthProblem,
        content_type = "application/problem+json"),
))]
pub fn health(context: &Context<'_>) -> Result<Response, Error> {
    let version = env!("CARGO_PKG_VERSION");
    let database = context.app.db.query("SELECT 1", &[]);
    if database.is_ok()
        && let Err(problem) = keys::check(context.app)
    {
        let unavailable = Error::Unavailable(problem);
        let body = HealthProblem {
            problem: Problem::from(&unavailable),
            database: "ok",
            keys: Some("unavailable"),
            version,
        };
        return Ok(Response::serialized(503, PROBLEM_JSON, &body));
    }
    match database {
        Ok(_) => Ok(Response::json(
            200,
            &Health {
                status: "ok",
                database: "ok",
                version,
            },
        )),
        Err(_) => {
            let unavailable = Error::Unavailable("the health check failed".into());
            let body = HealthProblem {
                problem: Problem::from(&unavailable),
                database: "unavailable",
                keys: None,
                version,
            };
            Ok(Response::serialized(503, PROBLEM_JSON, &body))
        }
    }
}

/// The public keys that verify access tokens (empty under HS256).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "tokens", responses(
    (status = 200, description = "The JWK set; under EdDSA every key that signed a \
        token still valid, by `kid`.", body = Jwks),
))]
pub fn jwks(context: &Context<'_>) -> Result<Response, Error> {
    let keys: Jwks = serde_json::from_value(keys::jwks(context.app)?)
        .map_err(|error| Error::Internal(format!("JWKS shape: {error}")))?;
    Ok(Response::json(200, &keys))
}

/// The live validation rules and token and session settings.
#[utoipa::path(get, path = "/api/v1/validation-rules", tag = "service", responses(
    (status = 200, description = "The rules registration and profile changes apply.",
        body = ValidationRules),
))]
pub fn validation_rules(context: &Context<'_>) -> Result<Response, Error> {
    let settings = context.app.settings;
    let complex = settings.password_policy == PasswordPolicy::Complex;
    let body = ValidationRules {
        username: UsernameRules {
            min_length: validation::USERNAME_MIN,
            max_length: validation::USERNAME_MAX,
            pattern: "^[0-9]*[A-Za-z_][A-Za-z0-9_]*$",
            unique: "case_insensitive",
        },
        email: EmailRules {
            max_length: validation::EMAIL_MAX,
            stored_lowercase: true,
            unique: true,
        },
        mobile_number: MobileRules {
            required: false,
            pattern: "^\\+?[0-9]{10,15}$",
            ignored_characters: " -()",
            unique: true,
        },
        password: PasswordRules {
            policy: if complex { "complex" } else { "nist" },
            min_length: settings.password_min_length,
            max_length: PASSWORD_MAX_LENGTH,
            require_uppercase: complex,
            require_lowercase: complex,
            require_digit: complex,
            require_special: complex,
            ascii_only: complex,
            common_password_check: true,
            common_password_count: validation::common_password_count(),
            disallow_identifiers: true,
        },
        tokens: TokenRules {
            algorithm: match settings.jwt_algorithm {
                JwtAlgorithm::Hs256 => "HS256",
                JwtAlgorithm::EdDsa => "EdDSA",
            },
            issuer: settings.jwt_issuer.clone(),
            audience: settings.jwt_audience.clone(),
            access_ttl: settings.access_ttl,
            refresh_ttl: settings.refresh_ttl,
            clock_skew: settings.clock_skew,
            refresh_reuse_grace: settings.refresh_reuse_grace,
        },
        sessions: SessionRules {
            max_sessions: settings.max_sessions,
            limit_policy: match settings.session_limit_policy {
                crate::settings::SessionLimitPolicy::EvictOldest => "evict_oldest",
                crate::settings::SessionLimitPolicy::Reject => "reject",
            },
            cookie_sessions: settings.cookie_sessions,
        },
        require_email_verification: settings.require_email_verification,
        max_body_bytes: settings.max_body_bytes,
        rate_limits: RateLimitRules::from(settings),
    };
    Ok(Response::json(200, &body))
}

/// Creates an account.
///
/// Signs in at once (token response plus `verification_required: false`), unless email
/// verification is required: then only the user and `verification_required: true`.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered.", body = Registered),
        (status = 409, description = "`username_taken`, `email_taken` or `mobile_taken`."),
    ))]
pub fn register(context: &Context<'_>) -> Result<Response, Error> {
    let app = context.app;
    let mut body = json_object(context.request, app.settings.max_body_bytes)?;
    let request = RegisterRequest::read(&mut body);
    let input = Registration {
        username: request.username,
        email: request.email,
        password: request.password,
        mobile_number: request.mobile_number,
    };
    if !body.type_errors.is_empty() {
        let mut errors = body.type_errors.clone();
        errors.extend(
            auth::check_registration(app, &input)
                .into_iter()
                .filter(|error| !body.is_mistyped(error.field)),
        );
        return Err(Error::Validation(errors));
    }
    let answer = match auth::register(app, &input, &context.client(None))? {
        auth::Registered::SignedIn(grant) => Registered::signed_in(&grant),
        auth::Registered::VerificationRequired(user) => Registered::pending(user.public()),
    };
    Ok(Response::json(201, &answer))
}

/// Logs in with a username, an email address or a mobile number.
///
/// Opens a session (under the device limit) and answers the token response.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in.", body = TokenResponse),
        (status = 401, description = "`invalid_credentials` (the same answer whether or not \
            the account exists)."),
        (status = 403, description = "`email_not_verified`, `account_disabled`, or \
            `mfa_required`: the password is correct but the account has two-factor \
            authentication, so no session opens yet; the problem carries `mfa_token` and \
            `methods` for `/api/v1/auth/mfa/verify`."),
        (status = 409, description = "`session_limit_reached` (policy `reject`)."),
    ))]
pub fn login(context: &Context<'_>) -> Result<Response, Error> {
    let app = context.app;
    let mut body = json_object(context.request, app.settings.max_body_bytes)?;
    let request = LoginRequest::read(&mut body);
    if !body.type_errors.is_empty() {
        return Err(Error::Validation(body.type_errors));
    }
    let client = context.client(request.device_name);
    let grant = auth::login(app, &request.login, &request.password, &client)?;
    Ok(Response::json(200, &TokenResponse::from(&grant)))
}

/// Checks the bearer token and says whose it is.
#[utoipa::path(get, path = "/api/v1/auth/verify", tag = "tokens",
    security(("bearer" = []), ("oauth2" = [])),
    responses((status = 200, description = "The token is valid.", body = TokenInfo)))]
pub fn verify(context: &Context<'_>) -> Result<Response, Error> {
    let authenticated = context.authenticate()?;
    let claims = &authenticated.claims;
    Ok(Response::json(
        200,
        &TokenInfo {
            valid: true,
            user_id: claims.sub.clone(),
            username: authenticated.user.username.clone(),
            session_id: claims.sid.clone(),
            expires_at: rfc3339(claims.exp),
        },
    ))
}

/// The caller's account.
#[utoipa::path(get, path = "/api/v1/users/me", tag = "account",
    security(("bearer" = []), ("oauth2" = [])),
    responses((status = 200, description = "The user.", body = User)))]
pub fn me(context: &Context<'_>) -> Result<Response, Error> {
    let authenticated = context.authenticate()?;
    Ok(Response::json(
        200,
        &User::from(authenticated.user.public()),
    ))
}

/// Trades a refresh token for new tokens (rotation).
///
/// Every refresh answers a **new** refresh token: store it and forget the old one.
/// Presenting a spent token again answers 401 `refresh_token_reused` and revokes the
/// whole session (unless within `PORTCULLIS_REFRESH_REUSE_GRACE` seconds, when it gets
/// the same successor). Refresh before `expires_in` ends, or on a 401 `invalid_token`.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens; the old refresh token is spent.",
            body = TokenResponse),
        (status = 401, description = "`invalid_refresh_token` or `refresh_token_reused` \
            (the session is now revoked: log in again)."),
        (status = 403, description = "`account_disabled`."),
    ))]
pub fn refresh(context: &Context<'_>) -> Result<Response, Error> {
    let app = context.app;
    let mut body = json_object(context.request, app.settings.max_body_bytes)?;
    let request = RefreshRequest::read(&mut body)?;
    let grant = refresh::refresh(app, &request.refresh_token, &context.client(None))?;
    Ok(Response::json(200, &TokenResponse::from(&grant)))
}

/// OAuth2 token endpoint (RFC 6749): `password` and `refresh_token` grants.
///
/// Form-encoded. The docs page's "Authorize" button uses it. Refresh tokens rotate as
/// with `/api/v1/auth/refresh`: each answer carries a new one, the old one is spent.
#[utoipa::path(post, path = "/api/v1/auth/token", tag = "auth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "RFC 6749 §5.1 token response.", body = OAuthToken),
        (status = 400, description = "RFC 6749 §5.2 error.", body = OAuthError),
        (status = 403, description = "`mfa_required` (`grant_type=password`, an account \
            with two-factor authentication): no token yet; send the `mfa_token` and a code \
            to `/api/v1/auth/mfa/verify`.", body = OAuthMfaRequired),
        (status = 413, description = "`payload_too_large`."),
    ))]
pub fn token(context: &Context<'_>) -> Result<Response, Error> {
    oauth::token(context.app, context.request, &context.client(None))
}

/// Logs out: this session's access and refresh tokens stop working at once.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    security(("bearer" = []), ("oauth2" = [])),
    responses((status = 204, description = "Logged out.")))]
pub fn logout(context: &Context<'_>) -> Result<Response, Error> {
    let who = context.authenticate()?;
    auth::logout(context.app, &who, &context.client(None))?;
    Ok(Response::empty(204))
}

/// Revokes every session of the user.
#[utoipa::path(post, path = "/api/v1/auth/logout-all", tag = "auth",
    security(("bearer" = []), ("oauth2" = [])),
    responses((status = 204, description = "Every session is revoked.")))]
pub fn logout_all(context: &Context<'_>) -> Result<Response, Error> {
    let who = context.authenticate()?;
    auth::logout_all(context.app, &who, &context.client(None))?;
    Ok(Response::empty(204))
}

/// The user's live sessions, newest first.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions",
    security(("bearer" = []), ("oauth2" = [])),
    responses((status = 200, description = "The sessions.", body = SessionList)))]
pub fn list_sessions(context: &Context<'_>) -> Result<Response, Error> {
    let who = context.authenticate()?;
    let sessions = sessions::list(context.app, &who.claims.sub, &who.claims.sid)?;
    Ok(Response::json(
        200,
        &SessionList {
            session_count: sessions.len(),
            sessions: sessions.into_iter().map(Into::into).collect(),
            max_sessions: context.app.settings.max_sessions,
        },
    ))
}

/// Revokes one of the user's sessions.
#[utoipa::path(delete, path = "/api/v1/sessions/{id}", tag = "sessions",
    security(("bearer" = []), ("oauth2" = [])),
    params(("id" = String, Path, description = "A session id.")),
    responses(
        (status = 204, description = "The session is revoked."),
        (status = 404, description = "`not_found` (also for another user's session)."),
    ))]
pub fn revoke_session(context: &Context<'_>) -> Result<Response, Error> {
    let who = context.authenticate()?;
    let session_id = path_id(context)?;
    auth::revoke_session(context.app, &who, session_id, &context.client(None))?;
    Ok(Response::empty(204))
}

/// Mails a new verification link to the user's address.
#[utoipa::path(post, path = "/api/v1/auth/email/verify-request", tag = "account",
    security(("bearer" = []), ("oauth2" = [])),
    responses(
        (status = 202, description = "A verification link is mailed.", body = Accepted),
        (status = 409, description = "`already_verified`."),
    ))]
pub fn verify_request(context: &Context<'_>) -> Result<Response, Error> {
    let who = context.authenticate()?;
    account::request_verification(context.app, &who, &context.client(None))?;
    Ok(Response::json(
        202,
        &Accepted {
            status: "verification_mail_queued",
        },
    ))
}

/// Verifies the email address with the token of the mailed link.
#[utoipa::path(post, path = "/api/v1/auth/email/verify", tag = "account",
    request_body = VerifyEmailRequest,
    responses(
        (status = 200, description = "The user, `email_verified: true`.", body = User),
        (status = 400, description = "`invalid_verification_token` (unknown, expired or \
            used), or `invalid_json`."),
    ))]
pub fn verify_email(context: &Context<'_>) -> Result<Response, Error> {
    let app = context.app;
    let mut body = json_object(context.request, app.settings.max_body_bytes)?;
    let request = VerifyEmailRequest::read(&mut body)?;
    let user = account::verify_email(app, &request.token, &context.client(None))?;
    Ok(Response::json(200, &User::from(user.public())))
}

/// Mails a password-reset link, if the address is registered.
#[utoipa::path(post, path = "/api/v1/auth/password/forgot", tag = "account",
    request_body = ForgotPasswordRequest,
    responses(
        (status = 202, description = "The same answer whether or not the address is known.",
            body = Accepted),
    ))]
pub fn forgot_password(context: &Context<'_>) -> Result<Response, Error> {
    let app = context.app;
    let mut body = json_object(context.request, app.settings.max_body_bytes)?;
    let request = ForgotPasswordRequest::read(&mut body)?;
    account::forgot_password(app, &request.email, &context.client(None))?;
    Ok(Response::json(
        202,
        &Accepted {
            status: "if_the_address_is_registered_a_reset_mail_is_on_its_way",
        },
    ))
}

/// Sets a new password with the token of the mailed link; every session is revoked.
#[utoipa::path(post, path = "/api/v1/auth/password/reset", tag = "account",
    request_body = ResetPasswordRequest,
    responses(
        (status = 204, description = "The password is changed."),
        (status = 400, description = "`invalid_reset_token` (unknown, expired or used), or \
            `invalid_json`."),
    ))]
pub fn reset_password(context: &Context<'_>) -> Result<Response, Error> {
    let app = context.app;
    let mut body = json_object(context.request, app.settings.max_body_bytes)?;
    let request = ResetPasswordRequest::read(&mut body)?;
    account::reset_password(
        app,
        &request.token,
        &request.new_password,
        &context.client(None),
    )?;
    Ok(Response::empty(204))
}

/// Changes the caller's username, email address or mobile number.
#[utoipa::path(patch, path = "/api/v1/users/me", tag = "account",
    security(("bearer" = []), ("oauth2" = [])),
    request_body = ProfileUpdate,
    responses(
        (status = 200, description = "The user; a new email is unverified and gets a \
            verification mail, and the old address a notice of the change.", body = User),
        (status = 401, description = "`invalid_credentials`: a wrong `current_password` \
            for an email change (counted as a failed login), or no valid token."),
        (status = 409, description = "`username_taken`, `email_taken` or `mobile_taken`."),
        (status = 422, description = "`validation_failed`; `current_password` is \
            `required` to change `email`."),
        (status = 429, description = "`rate_limited`: too many wrong passwords."),
    ))]
pub fn update_me(context: &Context<'_>) -> Result<Response, Error> {
    let who = context.authenticate()?;
    let app = context.app;
    let mut body = json_object(context.request, app.settings.max_body_bytes)?;
    let request = ProfileUpdate::read(&mut body)?;
    let change = ProfileChange {
        username: request.username,
        email: request.email,
        mobile_number: request.mobile_number,
        current_password: request.current_password,
    };
    let user = account::update_profile(app, &who, &change, &context.client(None))?;
    Ok(Response::json(200, &User::from(user.public())))
}

/// Deletes the caller's account and its sessions; the password confirms.
#[utoipa::path(delete, path = "/api/v1/users/me", tag = "account",
    security(("bearer" = []), ("oauth2" = [])),
    request_body = DeleteAccountRequest,
    responses(
        (status = 204, description = "The account is gone."),
        (status = 401, description = "`invalid_credentials` (wrong password, counted as a \
            failed login), or no valid token."),
        (status = 429, description = "`rate_limited`: too many wrong passwords."),
    ))]
pub fn delete_me(context: &Context<'_>) -> Result<Response, Error> {
    let who = context.authenticate()?;
    let app = context.app;
    let mut body = json_object(context.request, app.settings.max_body_bytes)?;
    let request = DeleteAccountRequest::read(&mut body)?;
    account::delete_account(app, &who, &request.password, &context.client(None))?;
    Ok(Response::empty(204))
}

/// Changes the caller's password; every other session is revoked.
#[utoipa::path(post, path = "/api/v1/users/me/password", tag = "account",
    security(("bearer" = []), ("oauth2" = [])),
    request_body = ChangePasswordRequest,
    responses(
        (status = 204, description = "The password is changed."),
        (status = 401, description = "`invalid_credentials` (wrong current password, \
            counted as a failed login), or no valid token."),
        (status = 429, description = "`rate_limited`: too many wrong passwords."),
    ))]
pub fn change_password(context: &Context<'_>) -> Result<Response, Error> {
    let who = context.authenticate()?;
    let app = context.app;
    let mut body = json_object(context.request, app.settings.max_body_bytes)?;
    let request = ChangePasswordRequest::read(&mut body)?;
    account::change_password(
        app,
        &who,
        &request.current_password,
        &request.new_password,
        &context.client(None),
    )?;
    Ok(Response::empty(204))
}

/// The acting admin of an admin request.
pub(super) fn admin(context: &Context<'_>) -> Result<crate::users::User, Error> {
    let who = context.authenticate()?;
    admin::require_admin(context.app, &who)
}

/// The `{id}` of the route.
pub(super) fn path_id<'c>(context: &'c Context<'_>) -> Result<&'c str, Error> {
    context
        .params
        .first()
        .map(String::as_str)
        .ok_or(Error::NotFound)
}

/// Lists users (admin), with search and key-based pagination.
#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin",
    security(("bearer" = []), ("oauth2" = [])),
    params(
        ("q" = Option<String>, Query, description = "Search in username, email and mobile."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100,
            description = "Page size (default 50)."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the last page."),
    ),
    responses(
        (status = 200, description = "A page of users.", body = UserPage),
        (status = 403, description = "`forbidden`: not an admin."),
        (status = 422, description = "`validation_failed`: a bad `limit` or `cursor`."),
    ))]
pub fn admin_list_users(context: &Context<'_>) -> Result<Response, Error> {
    admin(context)?;
    let request = context.request;
    let limit = admin::page_size(request.query_param("limit").as_deref())?;
    let page = admin::list_users(
        context.app,
        request.query_param("q").as_deref(),
        limit,
        request.query_param("cursor").as_deref(),
    )?;
    Ok(Response::json(
        200,
        &UserPage {
            users: page.items.into_iter().map(|user| user.into()).collect(),
            next_cursor: page.next_cursor,
        },
    ))
}

/// One user (admin).
#[utoipa::path(get, path = "/api/v1/admin/users/{id}", tag = "admin",
    security(("bearer" = []), ("oauth2" = [])),
    params(("id" = String, Path, description = "A user id.")),
    responses(
        (status = 200, description = "The user.", body = User),
        (status = 403, description = "`forbidden`: not an admin."),
        (status = 404, description = "`not_found`."),
    ))]
pub fn admin_get_user(context: &Context<'_>) -> Result<Response, Error> {
    admin(context)?;
    let user = admin::get_user(context.app, path_id(context)?)?;
    Ok(Response::json(200, &User::from(user.public())))
}

/// Changes a user's flags (admin); deactivating revokes every session at once.
#[utoipa::path(patch, path = "/api/v1/admin/users/{id}", tag = "admin",
    security(("bearer" = []), ("oauth2" = [])),
    params(("id" = String, Path, description = "A user id.")),
    request_body = AdminUserChange,
    responses(
        (status = 200, description = "The user.", body = User),
        (status = 403, description = "`forbidden`: not an admin."),
        (status = 404, description = "`not_found`."),
    ))]
pub fn admin_update_user(context: &Context<'_>) -> Result<Response, Error> {
    let actor = admin(context)?;
    let mut body = json_object(context.request, context.app.settings.max_body_bytes)?;
    let request = AdminUserChange::read(&mut body)?;
    let change = admin::UserChange {
        is_active: request.is_active,
        is_admin: request.is_admin,
        email_verified: request.email_verified,
    };
    let id = path_id(context)?;
    let user = admin::update_user(context.app, &actor, id, &change, &context.client(None))?;
    Ok(Response::json(200, &User::from(user.public())))
}

/// Deletes a user and their sessions (admin).
#[utoipa::path(delete, path = "/api/v1/admin/users/{id}", tag = "admin",
    security(("bearer" = []), ("oauth2" = [])),
    params(("id" = String, Path, description = "A user id.")),
    responses(
        (status = 204, description = "The user is gone."),
        (status = 403, description = "`forbidden`: not an admin."),
        (status = 404, description = "`not_found`."),
    ))]
pub fn admin_delete_user(context: &Context<'_>) -> Result<Response, Error> {
    let actor = admin(context)?;
    admin::delete_user(
        context.app,
        &actor,
        path_id(context)?,
        &context.client(None),
    )?;
    Ok(Response::empty(204))
}

/// Imports users with the password hashes of another system (admin; API.md §9).
#[utoipa::path(post, path = "/api/v1/admin/users/import", tag = "admin",
    security(("bearer" = []), ("oauth2" = [])),
    request_body(content = String, content_type = "application/x-ndjson",
        description = "JSON Lines, up to 1 MiB, one user a line: `{\"username\", \"email\", \
            \"password_hash\", \"mobile_number\"?, \"email_verified\"?, \"is_active\"?, \
            \"is_admin\"?, \"created_at\"?}`. `password_hash`: bcrypt (`$2a$`, `$2b$`, \
            `$2y$`, cost 4–16), Argon2i/Argon2id PHC (m ≤ 65536 KiB, t ≤ 10, p ≤ 8), or \
            PBKDF2-SHA256 in Django's or passlib's form (≤ 2,000,000 iterations)."),
    responses(
        (status = 200, description = "What became of each line: each is imported whole or \
            not at all; a line whose username, email or mobile number exists is skipped and \
            the existing account left unchanged.", body = ImportReport),
        (status = 403, description = "`forbidden`: not an admin."),
        (status = 413, description = "`payload_too_large`: more than 1 MiB."),
        (status = 415, description = "`unsupported_media_type`: not `application/x-ndjson`."),
    ))]
pub fn admin_import_users(context: &Context<'_>) -> Result<Response, Error> {
    let actor = admin(context)?;
    let body = ndjson_body(context.request, import::MAX_BODY_BYTES)?;
    let lines: Vec<&[u8]> = body.split(|byte| *byte == b'\n').collect();
    let importer = import::Importer::Admin {
        actor_id: &actor.id,
    };
    let report = import::import(context.app, 1, &lines, importer, &context.client(None))?;
    Ok(Response::json(200, &ImportReport::from(report)))
}

/// Revokes every session of a user (admin).
#[utoipa::path(delete, path = "/api/v1/admin/users/{id}/sessions", tag = "admin",
    security(("bearer" = []), ("oauth2" = [])),
    params(("id" = String, Path, description = "A user id.")),
    responses(
        (status = 204, description = "Every session of the user is revoked."),
        (status = 403, description = "`forbidden`: not an admin."),
        (status = 404, description = "`not_found`."),
    ))]
pub fn admin_revoke_sessions(context: &Context<'_>) -> Result<Response, Error> {
    let actor = admin(context)?;
    admin::revoke_sessions(
        context.app,
        &actor,
        path_id(context)?,
        &context.client(None),
    )?;
    Ok(Response::empty(204))
}

/// The audit log (admin), newest first.
#[utoipa::path(get, path = "/api/v1/admin/audit", tag = "admin",
    security(("bearer" = []), ("oauth2" = [])),
    params(
        ("user_id" = Option<String>, Query, description = "Only events about this user."),
        ("event" = Option<String>, Query, description = "Only this event, e.g. `login`."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100,
            description = "Page size (default 50)."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the last page."),
    ),
    responses(
        (status = 200, description = "A page of events.", body = AuditPage),
        (status = 403, description = "`forbidden`: not an admin."),
        (status = 422, description = "`validation_failed`: a bad `limit` or `cursor`."),
    ))]
pub fn admin_audit(context: &Context<'_>) -> Result<Response, Error> {
    admin(context)?;
    let request = context.request;
    let limit = admin::page_size(request.query_param("limit").as_deref())?;
    let page = admin::list_audit(
        context.app,
        request.query_param("user_id").as_deref(),
        request.query_param("event").as_deref(),
        limit,
        request.query_param("cursor").as_deref(),
    )?;
    Ok(Response::json(
        200,
        &AuditPage {
            events: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor,
        },
    ))
}
