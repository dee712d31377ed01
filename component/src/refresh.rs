//! Refresh-token rotation (API.md §7, RFC 9700 §4.14): a refresh token is single-use and
//! exchanged for a successor; presenting a spent one revokes its whole session.
//!
//! A successor is derived from its parent with an HMAC under a key only the service
//! holds, so within `refresh_reuse_grace` seconds a just-spent token presented again (two
//! tabs refreshing at once) gets the *same* successor, while the database still holds
//! only hashes.

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::audit;
use crate::db::{integer, statement, text};
use crate::error::Error;
use crate::ports::{Statement, StoreError};
use crate::sessions::{self, Client, Grant, Revocation};
use crate::tokens;
use crate::users::{self, USER_COLUMN_COUNT, User};

/// Presented refresh tokens longer than this are refused unread.
const MAX_REFRESH_TOKEN_LENGTH: usize = 128;

/// A refresh token's row, its session's state and the session's account.
struct Presented {
    session_id: String,
    spent_at: Option<i64>,
    live: bool,
    /// The session's `amr` (kept across refreshes).
    amr: String,
    user: User,
}

/// Exchanges a refresh token for a new access token and the successor refresh token.
pub fn refresh(app: &App<'_>, token: &str, client: &Client) -> Result<Grant, Error> {
    if token.is_empty() || token.len() > MAX_REFRESH_TOKEN_LENGTH {
        return Err(Error::InvalidRefreshToken);
    }
    match rotate(app, token, client) {
        // Another request spent the token between our read and our write: decide again
        // on what is now stored (grace or reuse).
        Err(Rotation::Raced) => rotate(app, token, client).map_err(Rotation::into_error),
        other => other.map_err(Rotation::into_error),
    }
}

/// Why one rotation attempt failed.
enum Rotation {
    Raced,
    Failed(Error),
}

impl Rotation {
    fn into_error(self) -> Error {
        match self {
            Rotation::Raced => Error::InvalidRefreshToken,
            Rotation::Failed(error) => error,
        }
    }
}

impl From<Error> for Rotation {
    fn from(error: Error) -> Self {
        Rotation::Failed(error)
    }
}

fn rotate(app: &App<'_>, token: &str, client: &Client) -> Result<Grant, Rotation> {
    let now = app.now();
    let presented = find(app, token, now)?.ok_or(Error::InvalidRefreshToken)?;
    if !presented.live || !presented.user.is_active {
        return Err(Error::InvalidRefreshToken.into());
    }
    let successor = successor_of(app, token);
    if let Some(spent_at) = presented.spent_at {
        let grace = i64::from(app.settings.refresh_reuse_grace);
        if grace > 0 && now - spent_at <= grace {
            return Ok(grant(app, presented, successor, now)?);
        }
        revoke_for_reuse(app, &presented, client)?;
        return Err(Error::RefreshTokenReused.into());
    }
    let statements = spend(app, token, &successor, &presented, client, now);
    match app.db.batch(statements) {
        Ok(_) => Ok(grant(app, presented, successor, now)?),
        Err(StoreError::ConditionFailed(0)) => Err(Rotation::Raced),
        Err(StoreError::ConditionFailed(_)) => Err(Error::InvalidRefreshToken.into()),
        Err(other) => Err(Error::from(other).into()),
    }
}

/// The presented token's row with its session and account, read in one query (the
/// account's columns first, as [`User::from_row`] reads them).
fn find(app: &App<'_>, token: &str, now: i64) -> Result<Option<Presented>, Error> {
    let sql = format!(
        "SELECT {}, r.session_id, r.spent_at, \
         CASE WHEN s.revoked_at IS NULL AND s.expires_at > ? AND r.expires_at > ? \
         THEN 1 ELSE 0 END, s.amr \
         FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id \
         JOIN users u ON u.id = s.user_id WHERE r.token_hash = ?",
        users::user_columns_of("u")
    );
    let row = app.db.query_one(
        &sql,
        &[integer(now), integer(now), text(tokens::hash_opaque(token))],
    )?;
    let Some(row) = row else {
        return Ok(None);
    };
    let user = User::from_row(&row)?;
    let column = |offset: usize| USER_COLUMN_COUNT + offset;
    Ok(Some(Presented {
        session_id: row.text(column(0))?,
        spent_at: row.optional_integer(column(1))?,
        live: row.boolean(column(2))?,
        amr: row.text(column(3))?,
        user,
    }))
}

/// The successor of a refresh token: HMAC-SHA256 of the token under a key derived from
/// the signing secret. Only the holder of the parent and the service can compute it.
fn successor_of(app: &App<'_>, token: &str) -> String {
    let key = Sha256::new()
        .chain_update(b"portcullis-refresh-successor:")
        .chain_update(&app.settings.jwt_secret)
        .finalize();
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&key) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; this branch cannot be reached.
        Err(_) => return app.new_opaque_token(),
    };
    mac.update(token.as_bytes());
    tokens::encode_opaque(&mac.finalize().into_bytes())
}

/// Spends the token (only if nobody else did), stores the successor, slides the session.
fn spend(
    app: &App<'_>,
    token: &str,
    successor: &str,
    presented: &Presented,
    client: &Client,
    now: i64,
) -> Vec<Statement> {
    let expires_at = now + i64::from(app.settings.refresh_ttl);
    vec![
        Statement {
            expect_rows: Some(1),
            ..statement(
                "UPDATE refresh_tokens SET spent_at = ? WHERE token_hash = ? AND spent_at IS NULL",
                vec![integer(now), text(tokens::hash_opaque(token))],
            )
        },
        statement(
            "INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at) \
             VALUES (?, ?, ?, ?)",
            vec![
                text(tokens::hash_opaque(successor)),
                text(&presented.session_id),
                integer(now),
                integer(expires_at),
            ],
        ),
        Statement {
            expect_rows: Some(1),
            ..statement(
                "UPDATE sessions SET last_active_at = ?, expires_at = ? \
                 WHERE id = ? AND revoked_at IS NULL",
                vec![
                    integer(now),
                    integer(expires_at),
                    text(&presented.session_id),
                ],
            )
        },
        audit::record(
            app,
            audit::REFRESH,
            Some(&presented.user.id),
            client.ip_address.as_deref(),
            json!({ "session_id": presented.session_id }),
        ),
    ]
}

fn revoke_for_reuse(app: &App<'_>, presented: &Presented, client: &Client) -> Result<(), Error> {
    app.db.batch(vec![
        sessions::revoke_one(
            app,
            &presented.user.id,
            &presented.session_id,
            Revocation::RefreshTokenReused,
        ),
        audit::record(
            app,
            audit::REFRESH_TOKEN_REUSED,
            Some(&presented.user.id),
            client.ip_address.as_deref(),
            json!({ "session_id": presented.session_id }),
        ),
    ])?;
    Ok(())
}

fn grant(app: &App<'_>, presented: Presented, successor: String, now: i64) -> Result<Grant, Error> {
    Ok(Grant {
        access_token: sessions::sign_access_token(
            app,
            &presented.user.id,
            &presented.session_id,
            sessions::amr_claim(&presented.amr),
            now,
        )?,
        expires_in: app.settings.access_ttl,
        refresh_token: successor,
        refresh_expires_in: app.settings.refresh_ttl,
        session_id: presented.session_id,
        user: presented.user,
    })
}

/// Ends the session a refresh token belongs to (a browser's logout by its refresh
/// cookie): the same revocation and `logout` audit event as a logout by bearer token. A
/// token spent already still names its session, which ends all the same; an unknown or
/// dead one is `InvalidRefreshToken`.
pub fn end_session(app: &App<'_>, token: &str, client: &Client) -> Result<(), Error> {
    if token.is_empty() || token.len() > MAX_REFRESH_TOKEN_LENGTH {
        return Err(Error::InvalidRefreshToken);
    }
    let presented = find(app, token, app.now())?
        .filter(|presented| presented.live)
        .ok_or(Error::InvalidRefreshToken)?;
    app.db.batch(vec![
        sessions::revoke_one(
            app,
            &presented.user.id,
            &presented.session_id,
            Revocation::Logout,
        ),
        audit::record(
            app,
            audit::LOGOUT,
            Some(&presented.user.id),
            client.ip_address.as_deref(),
            json!({ "session_id": presented.session_id }),
        ),
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Registered, Registration, register, verify_access_token};
    use crate::testing::Harness;

    fn signed_up(harness: &Harness) -> Grant {
        let input = Registration {
            username: "john_doe".into(),
            email: "john@example.com".into(),
            password: "Tr1cky!Horse#42".into(),
            mobile_number: None,
        };
        match register(&harness.app(), &input, &Client::default()).unwrap() {
            Registered::SignedIn(grant) => grant,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rotation_hands_out_a_new_token_and_spends_the_old() {
        let harness = Harness::new(&[]);
        let app = harness.app();
        let first = signed_up(&harness);
        let second = refresh(&app, &first.refresh_token, &Client::default()).unwrap();
        assert_ne!(second.refresh_token, first.refresh_token);
        assert_eq!(second.session_id, first.session_id);
        let third = refresh(&app, &second.refresh_token, &Client::default()).unwrap();
        assert!(verify_access_token(&app, &third.access_token).is_ok());
    }

    #[test]
    fn reuse_revokes_the_whole_session() {
        let harness = Harness::new(&[]);
        let app = harness.app();
        let first = signed_up(&harness);
        let second = refresh(&app, &first.refresh_token, &Client::default()).unwrap();
        assert_eq!(
            refresh(&app, &first.refresh_token, &Client::default()),
            Err(Error::RefreshTokenReused)
        );
        assert_eq!(
            verify_access_token(&app, &second.access_token),
            Err(Error::InvalidToken)
        );
        assert_eq!(
            refresh(&app, &second.refresh_token, &Client::default()),
            Err(Error::InvalidRefreshToken)
        );
    }

    #[test]
    fn within_the_grace_a_spent_token_gets_the_same_successor() {
        let harness = Harness::new(&[("refresh_reuse_grace", "10")]);
        let app = harness.app();
        let first = signed_up(&harness);
        let a = refresh(&app, &first.refresh_token, &Client::default()).unwrap();
        harness.env.advance(5);
        let b = refresh(&app, &first.refresh_token, &Client::default()).unwrap();
        assert_eq!(a.refresh_token, b.refresh_token);
        harness.env.advance(10);
        assert_eq!(
            refresh(&app, &first.refresh_token, &Client::default()),
            Err(Error::RefreshTokenReused)
        );
    }

    #[test]
    fn ending_a_session_by_its_refresh_token_revokes_it_once() {
        let harness = Harness::new(&[]);
        let app = harness.app();
        let first = signed_up(&harness);
        end_session(&app, &first.refresh_token, &Client::default()).unwrap();
        assert_eq!(
            verify_access_token(&app, &first.access_token),
            Err(Error::InvalidToken)
        );
        assert_eq!(
            end_session(&app, &first.refresh_token, &Client::default()),
            Err(Error::InvalidRefreshToken)
        );
        assert_eq!(
            end_session(&app, "nonsense", &Client::default()),
            Err(Error::InvalidRefreshToken)
        );
    }

    #[test]
    fn unknown_and_expired_tokens_are_invalid() {
        let harness = Harness::new(&[("refresh_ttl", "60")]);
        let app = harness.app();
        assert_eq!(
            refresh(&app, "nonsense", &Client::default()),
            Err(Error::InvalidRefreshToken)
        );
        let first = signed_up(&harness);
        harness.env.advance(61);
        assert_eq!(
            refresh(&app, &first.refresh_token, &Client::default()),
            Err(Error::InvalidRefreshToken)
        );
    }
}
