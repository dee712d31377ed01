//! The audit log (API.md §5): one row per security event, written in the same
//! transaction as the change it describes. Details are small JSON objects and never hold
//! a password, token or hash.

use serde_json::json;

use crate::app::App;
use crate::db::{integer, optional_text, statement, text};
use crate::ports::Statement;

pub const REGISTER: &str = "register";
pub const LOGIN: &str = "login";
pub const LOGIN_FAILED: &str = "login_failed";
pub const SESSION_EVICTED: &str = "session_evicted";
pub const LOGOUT: &str = "logout";
pub const LOGOUT_ALL: &str = "logout_all";
pub const REFRESH: &str = "refresh";
pub const REFRESH_TOKEN_REUSED: &str = "refresh_token_reused";
pub const SESSION_REVOKED: &str = "session_revoked";
pub const PASSWORD_CHANGED: &str = "password_changed";
pub const PASSWORD_RESET_REQUESTED: &str = "password_reset_requested";
pub const PASSWORD_RESET: &str = "password_reset";
pub const EMAIL_VERIFICATION_REQUESTED: &str = "email_verification_requested";
pub const EMAIL_VERIFIED: &str = "email_verified";
pub const EMAIL_CHANGED: &str = "email_changed";
pub const ACCOUNT_DELETED: &str = "account_deleted";
pub const ADMIN_USER_UPDATED: &str = "admin_user_updated";
pub const RATE_LIMITED: &str = "rate_limited";
/// A user brought from another system (API.md §9).
pub const USER_IMPORTED: &str = "user_imported";
/// A correct password hashed again with the current parameters at login (API.md §9).
pub const PASSWORD_REHASHED: &str = "password_rehashed";

/// Two-factor authentication (API.md §8): turned on (a confirmed enrolment), turned off
/// (by the user, or by an admin with `detail.actor_id`), a wrong or spent code, a recovery
/// code used, a new set of recovery codes.
pub const MFA_ENABLED: &str = "mfa_enabled";
pub const MFA_DISABLED: &str = "mfa_disabled";
pub const MFA_CHALLENGE_FAILED: &str = "mfa_challenge_failed";
pub const MFA_RECOVERY_CODE_USED: &str = "mfa_recovery_code_used";
pub const MFA_RECOVERY_CODES_REGENERATED: &str = "mfa_recovery_codes_regenerated";

/// The statement that records `event` about `user_id`.
pub fn record(
    app: &App<'_>,
    event: &str,
    user_id: Option<&str>,
    ip_address: Option<&str>,
    detail: serde_json::Value,
) -> Statement {
    let detail = if detail.is_null() { json!({}) } else { detail };
    statement(
        "INSERT INTO audit_events (id, at, event, user_id, ip_address, detail) \
         VALUES (?, ?, ?, ?, ?, ?)",
        vec![
            text(app.new_id()),
            integer(app.now()),
            text(event),
            optional_text(user_id),
            optional_text(ip_address),
            text(detail.to_string()),
        ],
    )
}
