//! Sessions: one row per login, holding its refresh tokens. A session is opened together
//! with the change that causes it (registration, login) in one transaction, where the
//! device limit (`max_sessions`, `session_limit_policy`) is enforced; access tokens are
//! accepted only while their session is live.

use serde::Serialize;

use crate::app::{App, rfc3339};
use crate::audit;
use crate::db::{integer, optional_text, statement, text};
use crate::error::Error;
use crate::keys;
use crate::ports::Statement;
use crate::settings::SessionLimitPolicy;
use crate::tokens::{self, Claims};
use crate::users::{self, USER_COLUMN_COUNT, User};

/// Device descriptions longer than this are cut.
const MAX_DEVICE_INFO_CHARS: usize = 512;
/// `last_active_at` is written at most this often per session.
const LAST_ACTIVE_RESOLUTION_SECONDS: i64 = 60;

/// Where a request comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Client {
    pub device_info: Option<String>,
    pub ip_address: Option<String>,
}

impl Client {
    /// A client description with the device info cut to a bounded length.
    pub fn new(device_info: Option<String>, ip_address: Option<String>) -> Self {
        let device_info = device_info
            .map(|info| {
                info.chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_DEVICE_INFO_CHARS)
                    .collect::<String>()
            })
            .filter(|info| !info.trim().is_empty());
        Self {
            device_info,
            ip_address,
        }
    }
}

/// Tokens of a session about to be opened.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    pub access_token: String,
    pub expires_in: u32,
    pub refresh_token: String,
    pub refresh_expires_in: u32,
    pub session_id: String,
    pub user: User,
}

/// How a session's user proved who they are, stored with the session and carried in
/// its access tokens as the `amr` claim (RFC 8176); a refresh keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Authentication {
    /// A password alone: `["pwd"]`.
    Password,
    /// A password, then a one-time code or a recovery code (API.md §8): `["pwd","otp","mfa"]`.
    SecondFactor,
}

impl Authentication {
    /// The `sessions.amr` value: the `amr` claim's values separated by spaces.
    pub fn stored(self) -> &'static str {
        match self {
            Authentication::Password => "pwd",
            Authentication::SecondFactor => "pwd otp mfa",
        }
    }
}

/// The `amr` claim of a session's `sessions.amr` value.
pub fn amr_claim(stored: &str) -> Vec<String> {
    stored.split_whitespace().map(str::to_string).collect()
}

/// A session to open: the statements that store it and the tokens to hand out once they
/// are committed.
pub struct Opening {
    pub statements: Vec<Statement>,
    pub grant: Grant,
}

/// Prepares a new session for `user` after a password alone (see [`open_with`]).
pub fn open(app: &App<'_>, user: &User, client: &Client) -> Result<Opening, Error> {
    open_with(app, user, client, Authentication::Password)
}

/// Prepares a new session for `user`, who proved who they are by `authentication`. The
/// statements must run in one batch; with the `reject` policy the batch fails with a
/// condition failure on statement [`LIMIT_GUARD_INDEX`] when the user has no free
/// session slot.
pub fn open_with(
    app: &App<'_>,
    user: &User,
    client: &Client,
    authentication: Authentication,
) -> Result<Opening, Error> {
    let now = app.now();
    let settings = app.settings;
    let session_id = app.new_id();
    let refresh_token = app.new_opaque_token();
    let expires_at = now + i64::from(settings.refresh_ttl);
    let mut statements = vec![lock_with_credentials(user), limit_guard(app, &user.id, now)];
    statements.push(statement(
        "INSERT INTO sessions (id, user_id, device_info, ip_address, created_at, \
         last_active_at, expires_at, amr) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        vec![
            text(&session_id),
            text(&user.id),
            optional_text(client.device_info.as_deref()),
            optional_text(client.ip_address.as_deref()),
            integer(now),
            integer(now),
            integer(expires_at),
            text(authentication.stored()),
        ],
    ));
    statements.push(statement(
        "INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at) \
         VALUES (?, ?, ?, ?)",
        vec![
            text(tokens::hash_opaque(&refresh_token)),
            text(&session_id),
            integer(now),
            integer(expires_at),
        ],
    ));
    statements.extend(evict_oldest(app, &user.id, &session_id, client, now));
    let access_token = sign_access_token(
        app,
        &user.id,
        &session_id,
        amr_claim(authentication.stored()),
        now,
    )?;
    Ok(Opening {
        statements,
        grant: Grant {
            access_token,
            expires_in: settings.access_ttl,
            refresh_token,
            refresh_expires_in: settings.refresh_ttl,
            session_id,
            user: user.clone(),
        },
    })
}

/// The index, within [`open`]'s statements, of the `reject` policy's guard.
pub const LIMIT_GUARD_INDEX: usize = 1;

/// Takes the user's row lock first, on the condition that the account is still active
/// and its password is still the one the caller checked (`user.password_hash`): a login
/// that checked the old password while a change or reset was committing opens nothing
/// (API.md §11). The same holds for two-factor authentication: a password-only login
/// that raced its enabling opens nothing either. Concurrent openings of one user's
/// sessions run one after the other.
fn lock_with_credentials(user: &User) -> Statement {
    Statement {
        expect_rows: Some(1),
        ..statement(
            "UPDATE users SET session_version = session_version + 1 WHERE id = ? \
             AND password_hash = ? AND is_active = 1 AND mfa_enabled = ?",
            vec![
                text(&user.id),
                text(&user.password_hash),
                integer(i64::from(user.mfa_enabled)),
            ],
        )
    }
}

/// With the `reject` policy and a limit, a statement that changes one row only while the
/// user has a free session slot; otherwise a harmless statement in the same place (the
/// row is locked already).
fn limit_guard(app: &App<'_>, user_id: &str, now: i64) -> Statement {
    let settings = app.settings;
    if settings.session_limit_policy != SessionLimitPolicy::Reject || settings.max_sessions == 0 {
        return statement(
            "UPDATE users SET session_version = session_version + 1 WHERE id = ?",
            vec![text(user_id)],
        );
    }
    Statement {
        expect_rows: Some(1),
        ..statement(
            "UPDATE users SET session_version = session_version + 1 WHERE id = ? AND \
             (SELECT COUNT(*) FROM sessions WHERE user_id = ? AND revoked_at IS NULL \
             AND expires_at > ?) < ?",
            vec![
                text(user_id),
                text(user_id),
                integer(now),
                integer(i64::from(settings.max_sessions)),
            ],
        )
    }
}

/// With the `evict_oldest` policy: revoke every live session of the user but the new one
/// (`new_session_id`) and the newest `max_sessions - 1` others, with a `session_evicted`
/// audit event each. A login never evicts its own session, however its id sorts against
/// sessions opened in the same second; expired sessions are not counted nor reported.
fn evict_oldest(
    app: &App<'_>,
    user_id: &str,
    new_session_id: &str,
    client: &Client,
    now: i64,
) -> Vec<Statement> {
    let settings = app.settings;
    if settings.session_limit_policy != SessionLimitPolicy::EvictOldest
        || settings.max_sessions == 0
    {
        return Vec::new();
    }
    // The derived table `keep` lets MySQL read the table it updates.
    let excess = "user_id = ? AND revoked_at IS NULL AND expires_at > ? AND id <> ? \
                  AND id NOT IN (SELECT id FROM (SELECT id FROM sessions WHERE user_id = ? \
                  AND revoked_at IS NULL AND expires_at > ? AND id <> ? \
                  ORDER BY created_at DESC, id DESC LIMIT ?) keep)";
    let excess_params = || {
        vec![
            text(user_id),
            integer(now),
            text(new_session_id),
            text(user_id),
            integer(now),
            text(new_session_id),
            integer(i64::from(settings.max_sessions) - 1),
        ]
    };
    let mut audit_params = vec![
        integer(now),
        text(audit::SESSION_EVICTED),
        optional_text(client.ip_address.as_deref()),
        text(r#"{"reason":"session_limit"}"#),
    ];
    audit_params.extend(excess_params());
    vec![
        // The evicted session's id doubles as its audit event's id: both are unique UUIDs.
        statement(
            &format!(
                "INSERT INTO audit_events (id, at, event, user_id, ip_address, detail) \
                 SELECT id, ?, ?, user_id, ?, ? FROM sessions WHERE {excess}"
            ),
            audit_params,
        ),
        statement(
            &format!(
                "UPDATE sessions SET revoked_at = ?, revoked_reason = 'evicted' WHERE {excess}"
            ),
            [vec![integer(now)], excess_params()].concat(),
        ),
    ]
}

/// Signs a fresh access token for a session, with its `amr` claim.
pub fn sign_access_token(
    app: &App<'_>,
    user_id: &str,
    session_id: &str,
    amr: Vec<String>,
    now: i64,
) -> Result<String, Error> {
    let settings = app.settings;
    let claims = Claims {
        iss: settings.jwt_issuer.clone(),
        aud: settings.jwt_audience.clone(),
        sub: user_id.to_string(),
        sid: session_id.to_string(),
        jti: tokens::encode_opaque(&app.env.random_bytes(tokens::JTI_BYTES)),
        iat: now,
        nbf: now,
        exp: now + i64::from(settings.access_ttl),
        amr,
    };
    tokens::sign(&claims, &keys::signer(app)?)
}

/// The user and session an access token stands for, once both are checked live.
#[derive(Clone, Debug, PartialEq)]
pub struct Authenticated {
    pub claims: Claims,
    /// The account, read in the same query as the session.
    pub user: User,
}

/// Verifies an access token and that its session and user are live: not revoked, not
/// expired, the account active. Refreshes `last_active_at` at most once a minute.
pub fn authenticate(app: &App<'_>, token: &str) -> Result<Authenticated, Error> {
    let now = app.now();
    let claims = tokens::verify(token, &keys::verifier(app)?, app.settings, now)?;
    let sql = format!(
        "SELECT {}, s.last_active_at FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.id = ? AND s.user_id = ? AND s.revoked_at IS NULL AND s.expires_at > ? \
         AND u.is_active = 1",
        users::user_columns_of("u")
    );
    let row = app
        .db
        .query_one(&sql, &[text(&claims.sid), text(&claims.sub), integer(now)])?
        .ok_or(Error::InvalidToken)?;
    let user = User::from_row(&row)?;
    if now - row.integer(USER_COLUMN_COUNT)? >= LAST_ACTIVE_RESOLUTION_SECONDS {
        app.db.execute(
            "UPDATE sessions SET last_active_at = ? WHERE id = ? AND last_active_at < ?",
            &[integer(now), text(&claims.sid), integer(now)],
        )?;
    }
    Ok(Authenticated { claims, user })
}

/// A live session as `GET /api/v1/sessions` shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SessionView {
    pub id: String,
    pub device_info: Option<String>,
    pub ip_address: Option<String>,
    pub created_at: String,
    pub last_active_at: String,
    pub expires_at: String,
    pub is_current: bool,
}

/// The user's live sessions, newest first; `current` is marked.
pub fn list(app: &App<'_>, user_id: &str, current: &str) -> Result<Vec<SessionView>, Error> {
    let rows = app.db.query(
        "SELECT id, device_info, ip_address, created_at, last_active_at, expires_at \
         FROM sessions WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ? \
         ORDER BY created_at DESC, id DESC",
        &[text(user_id), integer(app.now())],
    )?;
    rows.iter()
        .map(|row| {
            let id = row.text(0)?;
            Ok(SessionView {
                is_current: id == current,
                id,
                device_info: row.optional_text(1)?,
                ip_address: row.optional_text(2)?,
                created_at: rfc3339(row.integer(3)?),
                last_active_at: rfc3339(row.integer(4)?),
                expires_at: rfc3339(row.integer(5)?),
            })
        })
        .collect()
}

/// Why a session was revoked (stored in `revoked_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revocation {
    Logout,
    LogoutAll,
    Revoked,
    RefreshTokenReused,
    PasswordChanged,
    PasswordReset,
    Deactivated,
}

impl Revocation {
    fn reason(self) -> &'static str {
        match self {
            Revocation::Logout => "logout",
            Revocation::LogoutAll => "logout_all",
            Revocation::Revoked => "revoked",
            Revocation::RefreshTokenReused => "refresh_token_reused",
            Revocation::PasswordChanged => "password_changed",
            Revocation::PasswordReset => "password_reset",
            Revocation::Deactivated => "deactivated",
        }
    }
}

/// The statement that revokes one live session of `user_id`.
pub fn revoke_one(app: &App<'_>, user_id: &str, session_id: &str, why: Revocation) -> Statement {
    statement(
        "UPDATE sessions SET revoked_at = ?, revoked_reason = ? \
         WHERE id = ? AND user_id = ? AND revoked_at IS NULL",
        vec![
            integer(app.now()),
            text(why.reason()),
            text(session_id),
            text(user_id),
        ],
    )
}

/// The statement that revokes every live session of `user_id`, but `keep` if given.
pub fn revoke_all(app: &App<'_>, user_id: &str, keep: Option<&str>, why: Revocation) -> Statement {
    statement(
        "UPDATE sessions SET revoked_at = ?, revoked_reason = ? \
         WHERE user_id = ? AND revoked_at IS NULL AND id <> ?",
        vec![
            integer(app.now()),
            text(why.reason()),
            text(user_id),
            // no session has an empty id, so "" keeps none
            text(keep.unwrap_or_default()),
        ],
    )
}
