//! Abuse protection shared by every host on the database (API.md §1):
//! - a per-client-IP limit on the `POST /api/v1/auth/*` endpoints (`PORTCULLIS_RATE_LIMIT`,
//!   N requests per S seconds, fixed windows counted in `rate_counters`); a group of
//!   endpoints with a limit of its own (`PORTCULLIS_RATE_LIMIT_LOGIN` …) counts on a
//!   counter of its own, the others share one;
//! - a per-account login throttle (`PORTCULLIS_LOGIN_THROTTLE`): after that many
//!   consecutive failures the next attempt waits 2^k seconds (k = failures past the
//!   threshold, at most an hour), counted in milliseconds. Failures are counted by
//!   compare-and-set and the throttle is checked again after a correct password, so
//!   concurrent attempts on any host cannot overrun the threshold. Logins
//!   that name no account are counted the same way under a hash of their normalised text,
//!   so a 429 tells nothing about which accounts exist.

use serde_json::json;

use crate::app::App;
use crate::audit;
use crate::db::{integer, statement, text};
use crate::error::Error;
use crate::ports::StoreError;
use crate::settings::RateLimitGroup;
use crate::tokens::hash_opaque;
use crate::validation::normalise_mobile;

/// The longest wait the login throttle imposes, in milliseconds.
const MAX_THROTTLE_MILLIS: i64 = 3_600_000;
/// How often a failed login retries its compare-and-set before it is told to wait.
const MAX_COUNT_TRIES: usize = 8;
/// Expired rate windows and idle failure counts are pruned by one new row in this many.
const PRUNE_ONE_IN: u32 = 32;
/// Failure counts untouched for this long are pruned (every wait has long ended).
const IDLE_COUNT_MILLIS: i64 = 24 * 3_600_000;

/// Counts one request from `ip` to an endpoint of `group` and fails with `RateLimited`
/// when the window of the group's counter is full.
pub fn check_rate_limit(app: &App<'_>, group: RateLimitGroup, ip: &str) -> Result<(), Error> {
    let effective = app.settings.rate_limit_of(group);
    let Some(limit) = effective.limit else {
        return Ok(());
    };
    let now = app.now();
    let seconds = i64::from(limit.seconds);
    let window = now.div_euclid(seconds);
    let window_end = (window + 1) * seconds;
    let bucket = match effective.counter {
        RateLimitGroup::Default => format!("ip:{ip}:{seconds}:{window}"),
        own => format!("ip:{}:{ip}:{seconds}:{window}", own.name()),
    };
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
            json!({
                "limit": "ip",
                "group": effective.counter.name(),
                "window_seconds": seconds,
            }),
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
        let created = app.db.batch(vec![statement(
            "INSERT INTO rate_counters (bucket, count, window_end) VALUES (?, 1, ?)",
            vec![text(bucket), integer(window_end)],
        )]);
        match created {
            Ok(_) => prune_now_and_then(app, "DELETE FROM rate_counters WHERE window_end < ?", now),
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

/// Fails with `RateLimited` while `subject` must wait after its failures. Checked before
/// the password (no Argon2 work for a throttled attempt) and again after a correct one:
/// attempts racing each other all pass the first check, but once the threshold's worth of
/// them has failed, a correct password among the rest is refused like the others.
pub fn check_login_throttle(app: &App<'_>, subject: &str, ip: Option<&str>) -> Result<(), Error> {
    let threshold = i64::from(app.settings.login_throttle);
    if threshold == 0 {
        return Ok(());
    }
    let Some((failures, last_failed_ms)) = failure_count(app, subject)? else {
        return Ok(());
    };
    match throttle_wait(failures, last_failed_ms, threshold, app.env.now_millis()) {
        Some(retry_after) => Err(throttled(app, subject, ip, retry_after)),
        None => Ok(()),
    }
}

/// Counts one more failed login for `subject`, by compare-and-set: a failure that finds
/// the threshold already reached (attempts that raced past [`check_login_throttle`]
/// together) is not counted and answered `RateLimited`, so at most the threshold of
/// wrong passwords are ever told apart, on any number of hosts.
pub fn record_login_failure(app: &App<'_>, subject: &str, ip: Option<&str>) -> Result<(), Error> {
    let threshold = i64::from(app.settings.login_throttle);
    if threshold == 0 {
        return Ok(());
    }
    for _ in 0..MAX_COUNT_TRIES {
        let now = app.env.now_millis();
        let Some((failures, last_failed_ms)) = failure_count(app, subject)? else {
            if create_failure_count(app, subject, now)? {
                return Ok(());
            }
            continue;
        };
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
    // Other failures on this subject keep winning the race: this one waits its turn.
    Err(throttled(app, subject, ip, 1))
}

/// `subject`'s consecutive failures and the time of the last one, if it has any.
fn failure_count(app: &App<'_>, subject: &str) -> Result<Option<(i64, i64)>, Error> {
    let row = app.db.query_one(
        "SELECT failures, last_failed_ms FROM login_failures WHERE subject = ?",
        &[text(subject)],
    )?;
    row.map(|row| Ok((row.integer(0)?, row.integer(1)?)))
        .transpose()
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
    let created = app.db.batch(vec![statement(
        "INSERT INTO login_failures (subject, failures, last_failed_ms) VALUES (?, 1, ?)",
        vec![text(subject), integer(now_ms)],
    )]);
    match created {
        Ok(_) => {
            prune_now_and_then(
                app,
                "DELETE FROM login_failures WHERE last_failed_ms < ?",
                now_ms - IDLE_COUNT_MILLIS,
            );
            Ok(true)
        }
        Err(StoreError::UniqueViolation(_)) => Ok(false),
        Err(other) => Err(other.into()),
    }
}

/// Once in [`PRUNE_ONE_IN`] calls, runs `delete` (rows older than `cutoff`) on its own.
/// A table-wide delete in the same transaction as an insert deadlocks concurrent inserts
/// on MariaDB, and pruning at every insert is wasted work: pruning is housekeeping, so a
/// failed one is left to a later call rather than failing the request.
fn prune_now_and_then(app: &App<'_>, delete: &str, cutoff: i64) {
    let roll = app.env.random_bytes(1).first().copied().unwrap_or(0);
    if u32::from(roll) % PRUNE_ONE_IN == 0 {
        // Best effort, as said above.
        let _ = app.db.execute(delete, &[integer(cutoff)]);
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
    fn racing_failures_past_the_threshold_are_refused_and_not_counted() {
        let harness = Harness::new(&[("login_throttle", "3")]);
        let app = harness.app();
        let ip = Some("203.0.113.7");
        // Five attempts pass the first check together (none has failed yet)…
        for _ in 0..5 {
            check_login_throttle(&app, "user:a", ip).unwrap();
        }
        // …but only three failures are told apart; the others are refused.
        for _ in 0..3 {
            record_login_failure(&app, "user:a", ip).unwrap();
        }
        for _ in 0..2 {
            let refused = record_login_failure(&app, "user:a", ip);
            assert!(matches!(
                refused,
                Err(Error::RateLimited { retry_after: 1 })
            ));
        }
        assert_eq!(failure_count(&app, "user:a").unwrap().map(|c| c.0), Some(3));
        // A correct password among them is refused by the second check.
        let late = check_login_throttle(&app, "user:a", ip);
        assert!(matches!(late, Err(Error::RateLimited { .. })));
        assert_eq!(audited_limits(&app), 3);
        // Another subject is not affected; a cleared subject starts again.
        check_login_throttle(&app, "user:b", None).unwrap();
        app.db.batch(vec![clear_login_failures("user:a")]).unwrap();
        check_login_throttle(&app, "user:a", None).unwrap();
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
    fn idle_counts_are_pruned_after_a_day_now_and_then() {
        let harness = Harness::new(&[("login_throttle", "1")]);
        let app = harness.app();
        record_login_failure(&app, "user:idle", None).unwrap();
        harness.env.advance(24 * 3_600 + 1);
        // New counts, until one of them prunes.
        for n in 0..(40 * PRUNE_ONE_IN) {
            record_login_failure(&app, &format!("user:{n}"), None).unwrap();
            if failure_count(&app, "user:idle").unwrap().is_none() {
                return;
            }
        }
        panic!("the idle count was never pruned");
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
