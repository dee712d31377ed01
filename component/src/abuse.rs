//! Abuse protection shared by every host on the database (API.md §1):
//! - a per-client-IP limit on the `POST /api/v1/auth/*` endpoints (`PORTCULLIS_RATE_LIMIT`,
//!   N requests per S seconds, fixed windows counted in `rate_counters`);
//! - a per-account login throttle (`PORTCULLIS_LOGIN_THROTTLE`): after that many
//!   consecutive failures the next attempt waits 2^k seconds (k = failures past the
//!   threshold, at most an hour), counted in milliseconds. Logins that name no account are counted the same way
//!   under their normalised text, so a 429 tells nothing about which accounts exist.

use serde_json::json;

use crate::app::App;
use crate::audit;
use crate::db::{integer, statement, text};
use crate::error::Error;
use crate::ports::StoreError;
use crate::validation::normalise_mobile;

/// The longest wait the login throttle imposes, in milliseconds.
const MAX_THROTTLE_MILLIS: i64 = 3_600_000;

/// Counts one request from `ip` and fails with `RateLimited` when the window is full.
pub fn check_rate_limit(app: &App<'_>, ip: &str) -> Result<(), Error> {
    let Some(limit) = app.settings.rate_limit else {
        return Ok(());
    };
    let now = app.now();
    let seconds = i64::from(limit.seconds);
    let window = now.div_euclid(seconds);
    let window_end = (window + 1) * seconds;
    let bucket = format!("ip:{ip}:{seconds}:{window}");
    let count = increment(app, &bucket, window_end, now)?;
    if count <= i64::from(limit.requests) {
        return Ok(());
    }
    let retry_after = u32::try_from((window_end - now).max(1)).unwrap_or(u32::MAX);
    if count == i64::from(limit.requests) + 1 {
        // Recorded once per window, not for every refused request.
        app.db.batch(vec![audit::record(
            app,
            audit::RATE_LIMITED,
            None,
            Some(ip),
            json!({ "limit": "ip", "window_seconds": seconds }),
        )])?;
    }
    Err(Error::RateLimited { retry_after })
}

/// Adds one to a bucket's counter (creating it) and returns the new count.
fn increment(app: &App<'_>, bucket: &str, window_end: i64, now: i64) -> Result<i64, Error> {
    let bump = || {
        app.db.execute(
            "UPDATE rate_counters SET count = count + 1 WHERE bucket = ?",
            &[text(bucket)],
        )
    };
    if bump()? == 0 {
        let created = app.db.batch(vec![
            statement(
                "DELETE FROM rate_counters WHERE window_end < ?",
                vec![integer(now)],
            ),
            statement(
                "INSERT INTO rate_counters (bucket, count, window_end) VALUES (?, 1, ?)",
                vec![text(bucket), integer(window_end)],
            ),
        ]);
        match created {
            Ok(_) => {}
            // Another host created it first: count on its row.
            Err(StoreError::UniqueViolation(_)) => {
                bump()?;
            }
            Err(other) => return Err(other.into()),
        }
    }
    let row = app.db.query_one(
        "SELECT count FROM rate_counters WHERE bucket = ?",
        &[text(bucket)],
    )?;
    row.map_or(Ok(1), |row| row.integer(0))
}

/// The throttle's key for a login: the account when it exists, else the login text.
pub fn login_subject(user_id: Option<&str>, login: &str) -> String {
    match user_id {
        Some(id) => format!("user:{id}"),
        None => {
            let key = normalise_mobile(login)
                .map(|mobile| mobile.key)
                .unwrap_or_else(|| login.to_lowercase());
            format!("login:{key}")
        }
    }
}

/// Fails with `RateLimited` while `subject` must wait after its failures.
pub fn check_login_throttle(app: &App<'_>, subject: &str) -> Result<(), Error> {
    let threshold = i64::from(app.settings.login_throttle);
    if threshold == 0 {
        return Ok(());
    }
    let row = app.db.query_one(
        "SELECT failures, last_failed_ms FROM login_failures WHERE subject = ?",
        &[text(subject)],
    )?;
    let Some(row) = row else {
        return Ok(());
    };
    let (failures, last_failed_ms) = (row.integer(0)?, row.integer(1)?);
    if failures < threshold {
        return Ok(());
    }
    let past = (failures - threshold).clamp(0, 12) as u32;
    let wait_ms = (1000 * 2_i64.pow(past)).min(MAX_THROTTLE_MILLIS);
    let remaining_ms = last_failed_ms + wait_ms - app.env.now_millis();
    if remaining_ms > 0 {
        let seconds = (remaining_ms + 999) / 1000;
        let retry_after = u32::try_from(seconds).unwrap_or(u32::MAX);
        return Err(Error::RateLimited { retry_after });
    }
    Ok(())
}

/// Counts one more failed login for `subject`.
pub fn record_login_failure(app: &App<'_>, subject: &str) -> Result<(), Error> {
    let now = app.env.now_millis();
    let bump = || {
        app.db.execute(
            "UPDATE login_failures SET failures = failures + 1, last_failed_ms = ? \
             WHERE subject = ?",
            &[integer(now), text(subject)],
        )
    };
    if bump()? == 0 {
        let created = app.db.batch(vec![statement(
            "INSERT INTO login_failures (subject, failures, last_failed_ms) VALUES (?, 1, ?)",
            vec![text(subject), integer(now)],
        )]);
        match created {
            Ok(_) => {}
            // Another request created the row first: count on it.
            Err(StoreError::UniqueViolation(_)) => {
                bump()?;
            }
            Err(other) => return Err(other.into()),
        }
    }
    Ok(())
}

/// The statement that forgets `subject`'s failures (after a successful login).
pub fn clear_login_failures(subject: &str) -> crate::ports::Statement {
    statement(
        "DELETE FROM login_failures WHERE subject = ?",
        vec![text(subject)],
    )
}
