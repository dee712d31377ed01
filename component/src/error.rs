//! The one error type of the domain, with the stable `code` and HTTP status of each case
//! (API.md §2). The HTTP layer turns it into an RFC 9457 problem, the typed API into the
//! WIT `error` variant.

use crate::ports::StoreError;
use serde::Serialize;

/// One broken rule of one field (API.md §4 field codes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: &'static str,
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            code,
            message: message.into(),
        }
    }
}

/// Everything that can go wrong, as a caller sees it.
#[derive(Clone, Debug, PartialEq)]
pub enum Error {
    Validation(Vec<FieldError>),
    UsernameTaken,
    EmailTaken,
    MobileTaken,
    InvalidCredentials,
    EmailNotVerified,
    AccountDisabled,
    SessionLimitReached,
    RateLimited {
        retry_after: u32,
    },
    /// No bearer token was sent.
    Unauthorized,
    /// A token was sent but is malformed, forged, expired or its session is gone.
    InvalidToken,
    /// The refresh token is unknown, expired, or its session is gone.
    InvalidRefreshToken,
    /// A spent refresh token was presented again; its session is now revoked.
    RefreshTokenReused,
    Forbidden,
    /// A cookie-authenticated request whose `X-CSRF-Token` does not repeat the CSRF cookie.
    CsrfFailed,
    NotFound,
    /// The email address is verified already.
    AlreadyVerified,
    /// The verification token is unknown, expired or used.
    InvalidVerificationToken,
    /// The reset token is unknown, expired or used.
    InvalidResetToken,
    /// A correct password of an account with two-factor authentication: no session yet;
    /// `mfa_token` is the single-use ticket of the second step (API.md §8).
    MfaRequired {
        mfa_token: String,
    },
    /// The `mfa_token` is unknown, expired or spent.
    InvalidMfaToken,
    /// A wrong (or already used) TOTP or recovery code: 401 at the second step of a login,
    /// 400 where a signed-in user confirms a change.
    InvalidMfaCode {
        at_login: bool,
    },
    MfaAlreadyEnabled,
    /// No enrolment waits for its first code.
    MfaNotPending,
    MfaNotEnabled,
    MethodNotAllowed {
        allow: &'static str,
    },
    UnsupportedMediaType,
    PayloadTooLarge {
        limit: usize,
    },
    InvalidJson(String),
    /// The database cannot be reached.
    Unavailable(String),
    /// A bug or an unexpected database answer; the text is logged, never shown.
    Internal(String),
}

impl Error {
    /// The stable machine-readable code (API.md §2).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Validation(_) => "validation_failed",
            Error::UsernameTaken => "username_taken",
            Error::EmailTaken => "email_taken",
            Error::MobileTaken => "mobile_taken",
            Error::InvalidCredentials => "invalid_credentials",
            Error::EmailNotVerified => "email_not_verified",
            Error::AccountDisabled => "account_disabled",
            Error::SessionLimitReached => "session_limit_reached",
            Error::RateLimited { .. } => "rate_limited",
            Error::Unauthorized => "unauthorized",
            Error::InvalidToken => "invalid_token",
            Error::InvalidRefreshToken => "invalid_refresh_token",
            Error::RefreshTokenReused => "refresh_token_reused",
            Error::Forbidden => "forbidden",
            Error::CsrfFailed => "csrf_failed",
            Error::NotFound => "not_found",
            Error::AlreadyVerified => "already_verified",
            Error::InvalidVerificationToken => "invalid_verification_token",
            Error::InvalidResetToken => "invalid_reset_token",
            Error::MfaRequired { .. } => "mfa_required",
            Error::InvalidMfaToken => "invalid_mfa_token",
            Error::InvalidMfaCode { .. } => "invalid_mfa_code",
            Error::MfaAlreadyEnabled => "mfa_already_enabled",
            Error::MfaNotPending => "mfa_not_pending",
            Error::MfaNotEnabled => "mfa_not_enabled",
            Error::MethodNotAllowed { .. } => "method_not_allowed",
            Error::UnsupportedMediaType => "unsupported_media_type",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::InvalidJson(_) => "invalid_json",
            Error::Unavailable(_) => "unavailable",
            Error::Internal(_) => "internal",
        }
    }

    /// The HTTP status that goes with the code.
    pub fn status(&self) -> u16 {
        match self {
            Error::Validation(_) => 422,
            Error::UsernameTaken
            | Error::EmailTaken
            | Error::MobileTaken
            | Error::SessionLimitReached
            | Error::AlreadyVerified
            | Error::MfaAlreadyEnabled
            | Error::MfaNotPending
            | Error::MfaNotEnabled => 409,
            Error::InvalidCredentials
            | Error::Unauthorized
            | Error::InvalidToken
            | Error::InvalidRefreshToken
            | Error::RefreshTokenReused
            | Error::InvalidMfaToken
            | Error::InvalidMfaCode { at_login: true } => 401,
            Error::InvalidMfaCode { at_login: false } => 400,
            Error::EmailNotVerified
            | Error::AccountDisabled
            | Error::Forbidden
            | Error::CsrfFailed
            | Error::MfaRequired { .. } => 403,
            Error::RateLimited { .. } => 429,
            Error::NotFound => 404,
            Error::MethodNotAllowed { .. } => 405,
            Error::UnsupportedMediaType => 415,
            Error::PayloadTooLarge { .. } => 413,
            Error::InvalidJson(_) | Error::InvalidVerificationToken | Error::InvalidResetToken => {
                400
            }
            Error::Unavailable(_) => 503,
            Error::Internal(_) => 500,
        }
    }

    /// A short, human-readable summary of the problem type.
    pub fn title(&self) -> &'static str {
        match self {
            Error::Validation(_) => "Validation failed",
            Error::UsernameTaken => "Username taken",
            Error::EmailTaken => "Email taken",
            Error::MobileTaken => "Mobile number taken",
            Error::InvalidCredentials => "Invalid credentials",
            Error::EmailNotVerified => "Email not verified",
            Error::AccountDisabled => "Account disabled",
            Error::SessionLimitReached => "Session limit reached",
            Error::RateLimited { .. } => "Too many requests",
            Error::Unauthorized => "Unauthorized",
            Error::InvalidToken => "Invalid token",
            Error::InvalidRefreshToken => "Invalid refresh token",
            Error::RefreshTokenReused => "Refresh token reused",
            Error::Forbidden => "Forbidden",
            Error::CsrfFailed => "CSRF check failed",
            Error::NotFound => "Not found",
            Error::AlreadyVerified => "Already verified",
            Error::InvalidVerificationToken => "Invalid verification token",
            Error::InvalidResetToken => "Invalid reset token",
            Error::MfaRequired { .. } => "Second factor required",
            Error::InvalidMfaToken => "Invalid MFA token",
            Error::InvalidMfaCode { .. } => "Invalid code",
            Error::MfaAlreadyEnabled => "Two-factor authentication already enabled",
            Error::MfaNotPending => "No pending enrolment",
            Error::MfaNotEnabled => "Two-factor authentication not enabled",
            Error::MethodNotAllowed { .. } => "Method not allowed",
            Error::UnsupportedMediaType => "Unsupported media type",
            Error::PayloadTooLarge { .. } => "Payload too large",
            Error::InvalidJson(_) => "Invalid JSON",
            Error::Unavailable(_) => "Service unavailable",
            Error::Internal(_) => "Internal server error",
        }
    }

    /// A sentence for people; never reveals internals.
    pub fn detail(&self) -> String {
        match self {
            Error::Validation(errors) => {
                format!("{} field rule(s) were not met", errors.len())
            }
            Error::UsernameTaken => "That username is already registered.".into(),
            Error::EmailTaken => "That email address is already registered.".into(),
            Error::MobileTaken => "That mobile number is already registered.".into(),
            Error::InvalidCredentials => "The login or the password is wrong.".into(),
            Error::EmailNotVerified => "Verify your email address before logging in.".into(),
            Error::AccountDisabled => "This account has been deactivated.".into(),
            Error::SessionLimitReached => {
                "The maximum number of sessions is reached; log out elsewhere first.".into()
            }
            Error::RateLimited { retry_after } => {
                format!("Too many requests; retry in {retry_after} seconds.")
            }
            Error::Unauthorized => "A bearer token is required.".into(),
            Error::InvalidToken => "The token is invalid, expired or revoked.".into(),
            Error::InvalidRefreshToken => {
                "The refresh token is invalid, expired or revoked.".into()
            }
            Error::RefreshTokenReused => {
                "This refresh token was already used; its session has been revoked.".into()
            }
            Error::Forbidden => "You may not do this.".into(),
            Error::CsrfFailed => {
                "X-CSRF-Token must repeat the portcullis_csrf cookie's value.".into()
            }
            Error::NotFound => "Nothing is here.".into(),
            Error::AlreadyVerified => "The email address is already verified.".into(),
            Error::InvalidVerificationToken => {
                "The verification link is invalid, expired or already used.".into()
            }
            Error::InvalidResetToken => {
                "The reset link is invalid, expired or already used.".into()
            }
            Error::MfaRequired { .. } => {
                "The password is correct; send a code with the mfa_token to \
                 /api/v1/auth/mfa/verify."
                    .into()
            }
            Error::InvalidMfaToken => {
                "The mfa_token is invalid, expired or spent; log in again.".into()
            }
            Error::InvalidMfaCode { .. } => "The code is wrong, expired or already used.".into(),
            Error::MfaAlreadyEnabled => {
                "Two-factor authentication is on; turn it off before enrolling again.".into()
            }
            Error::MfaNotPending => "No enrolment waits for confirmation; start one first.".into(),
            Error::MfaNotEnabled => "Two-factor authentication is not enabled.".into(),
            Error::MethodNotAllowed { allow } => format!("Allowed methods: {allow}."),
            Error::UnsupportedMediaType => "The body must be sent as application/json.".into(),
            Error::PayloadTooLarge { limit } => {
                format!("The body is larger than {limit} bytes.")
            }
            Error::InvalidJson(reason) => format!("The body is not valid JSON: {reason}"),
            Error::Unavailable(_) => "The database is unreachable; retry later.".into(),
            Error::Internal(_) => "An internal error occurred.".into(),
        }
    }
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(reason) => Error::Unavailable(reason),
            other => Error::Internal(format!("database: {other:?}")),
        }
    }
}
