//! Abuse protection shared by every host on the database (API.md §1):
//! - a per-client-IP limit on the `POST /api/v1/auth/*` endpoints (`PORTCULLIS_RATE_LIMIT`,
//!   N requests per S seconds, fixed windows counted in `rate_counters`);
//! - a per-account login throttle (`PORTCULLIS_LOGIN_THROTTLE`): after that many
//!   consecutive failures the next attempt waits 2^k seconds (k = failures past the
//!   threshold, at most an hour), counted in milliseconds. Each attempt is counted before
//!   its password is checked, so concurrent attempts cannot overrun the threshold. Logins
//!   that name no account are counted the same way under a hash of their normalised text,
//!   so a 429 tells nothing about which accounts exist.

use serde_json::json;

use crate::app::App;
use crate::audit;
use crate::db::{integer, statement, text};
use crate::error::Error;
use crate::ports::StoreError;
use crate::tokens::hash_opaque;
use crate::validation::normalise_mobile;

/// The longest wait the login throttle imposes, in milliseconds.
const MAX_THROTTLE_MILLIS: i64 = 3_600_000;
/// How often a login attempt retries its compare-and-set before it is told to wait.
const MAX_RESERVATION_TRIES: usize = 8;
/// Failure counts untouched for this long are pruned (every wait has long ended).
const IDLE_COUNT_MILLIS: i64 = 24 * 3_600_000;

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

/// The throttle's key for a login: the account when it exists, else a hash of the
/// normalised login text (bounded in length, and the text itself is never stored).
pub fn login_subject(user_id: Option<&str>, login: &str) -> String {
    match user_id {
        Some(id) => format!("user:{id}"),
        None => {
            let key = normalise_mobile(login)
                .map(|mobile| mobile.key)
                .unwrap_or_else(|| login.to_lowercase());
            format!("login:{}", hash_opaque(&key))
        }
    }
}

/// Counts a login attempt on `subject` as failed *before* its password is checked, or
/// fails with `RateLimited` while `subject` must wait. Counting first (with a
/// compare-and-set on the row) means concurrent attempts on any host cannot all slip
/// past the check while their passwords are being hashed: at most the threshold get
/// through. A correct password then clears the count ([`clear_login_failures`]).
pub fn reserve_login_attempt(app: &App<'_>, subject: &str, ip: Option<&str>) -> Result<(), Error> {
    let threshold = i64::from(app.settings.login_throttle);
    if threshold == 0 {
        return Ok(());
    }
    for _ in 0..MAX_RESERVATION_TRIES {
        let now = app.env.now_millis();
        let row = app.db.query_one(
            "SELECT failures, last_failed_ms FROM login_failures WHERE subject = ?",
            &[text(subject)],
        )?;
        let Some(row) = row else {
            if create_failure_count(app, subject, now)? {
                return Ok(());
            }
            continue;
        };
        let (failures, last_failed_ms) = (row.integer(0)?, row.integer(1)?);
        if let Some(retry_after) = throttle_wait(failures, last_failed_ms, threshold, now) {
            return Err(throttled(app, subject, ip, retry_after));
        }
        let counted = app.db.execute(
            "UPDATE login_failures SET failures = failures + 1, last_failed_ms = ? \
             WHERE subject = ? AND failures = ? AND last_failed_ms = ?",
            &[
                integer(now),
                text(subject),
                integer(failures),
                integer(last_failed_ms),
            ],
        )?;
        if counted == 1 {
            return Ok(());
        }
    }
    // Other attempts on this subject keep winning the race: this one waits its turn.
    Err(throttled(app, subject, ip, 1))
}

/// Seconds `subject` must still wait after `failures` failures, if any.
fn throttle_wait(failures: i64, last_failed_ms: i64, threshold: i64, now_ms: i64) -> Option<u32> {
    if failures < threshold {
        return None;
    }
    let past = (failures - threshold).clamp(0, 12) as u32;
    let wait_ms = (1000 * 2_i64.pow(past)).min(MAX_THROTTLE_MILLIS);
    let remaining_ms = last_failed_ms + wait_ms - now_ms;
    (remaining_ms > 0).then(|| u32::try_from((remaining_ms + 999) / 1000).unwrap_or(u32::MAX))
}

/// Starts `subject`'s count at one (pruning counts idle for a day); `false` when another
/// request created it first.
fn create_failure_count(app: &App<'_>, subject: &str, now_ms: i64) -> Result<bool, Error> {
    let created = app.db.batch(vec![
        statement(
            "DELETE FROM login_failures WHERE last_failed_ms < ?",
            vec![integer(now_ms - IDLE_COUNT_MILLIS)],
        ),
        statement(
            "INSERT INTO login_failures (subject, failures, last_failed_ms) VALUES (?, 1, ?)",
            vec![text(subject), integer(now_ms)],
        ),
    ]);
    match created {
        Ok(_) => Ok(true),
        Err(StoreError::UniqueViolation(_)) => Ok(false),
        Err(other) => Err(other.into()),
    }
}

/// The refusal of a throttled login, recorded in the audit log (the detail names the
/// limit, never the login text).
fn throttled(app: &App<'_>, subject: &str, ip: Option<&str>, retry_after: u32) -> Error {
    let user_id = subject.strip_prefix("user:");
    let event = audit::record(
        app,
        audit::RATE_LIMITED,
        user_id,
        ip,
        json!({ "limit": "login", "retry_after": retry_after }),
    );
    match app.db.batch(vec![event]) {
        Ok(_) => Error::RateLimited { retry_after },
        Err(error) => error.into(),
    }
}

/// Forgets `subject`'s failures: a correct password was given.
pub fn clear_login_failures(subject: &str) -> crate::ports::Statement {
    statement(
        "DELETE FROM login_failures WHERE subject = ?",
        vec![text(subject)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Harness;

    fn audited_limits(app: &App<'_>) -> i64 {
        let row = app
            .db
            .query_one(
                "SELECT COUNT(*) FROM audit_events WHERE event = 'rate_limited'",
                &[],
            )
            .unwrap()
            .unwrap();
        row.integer(0).unwrap()
    }

    #[test]
    fn attempts_are_counted_before_their_passwords_are_checked() {
        let harness = Harness::new(&[("login_throttle", "3")]);
        let app = harness.app();
        // Three attempts in flight at once (none has finished hashing) all get through…
        for _ in 0..3 {
            reserve_login_attempt(&app, "user:a", Some("203.0.113.7")).unwrap();
        }
        // …and the fourth must wait, without waiting for their outcome.
        let refused = reserve_login_attempt(&app, "user:a", Some("203.0.113.7"));
        assert!(matches!(
            refused,
            Err(Error::RateLimited { retry_after: 1 })
        ));
        assert_eq!(audited_limits(&app), 1);
        // Another subject is not affected; a cleared subject starts again.
        reserve_login_attempt(&app, "user:b", None).unwrap();
        app.db.batch(vec![clear_login_failures("user:a")]).unwrap();
        reserve_login_attempt(&app, "user:a", None).unwrap();
    }

    #[test]
    fn the_wait_doubles_past_the_threshold_and_is_capped() {
        assert_eq!(throttle_wait(2, 0, 3, 0), None);
        assert_eq!(throttle_wait(3, 0, 3, 0), Some(1));
        assert_eq!(throttle_wait(3, 0, 3, 1_000), None);
        assert_eq!(throttle_wait(5, 0, 3, 1), Some(4));
        assert_eq!(throttle_wait(500, 0, 3, 0), Some(3_600));
    }

    #[test]
    fn idle_counts_are_pruned_after_a_day() {
        let harness = Harness::new(&[("login_throttle", "1")]);
        let app = harness.app();
        reserve_login_attempt(&app, "user:a", None).unwrap();
        harness.env.advance(24 * 3_600 + 1);
        reserve_login_attempt(&app, "user:b", None).unwrap();
        let left = app
            .db
            .query_one(
                "SELECT COUNT(*) FROM login_failures WHERE subject = 'user:a'",
                &[],
            )
            .unwrap()
            .unwrap();
        assert_eq!(left.integer(0).unwrap(), 0);
    }

    #[test]
    fn unknown_logins_are_keyed_by_a_bounded_hash() {
        let long = "İ".repeat(254);
        let subject = login_subject(None, &long);
        assert_eq!(subject.len(), "login:".len() + 64);
        assert!(!subject.contains('İ'));
        // Every spelling of one login shares its key.
        assert_eq!(login_subject(None, "Ghost"), login_subject(None, "gHOST"));
        assert_eq!(login_subject(Some("42"), "anything"), "user:42");
    }
}
