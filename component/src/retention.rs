//! Retention (docs/reference.md "Retention"): the rules that keep the database from
//! growing forever, run in bounded rounds by whichever host holds the retention lease.
//!
//! The rules, each a range on an indexed column (migration 0004):
//! - a session that ended (expired, revoked, logged out, evicted) more than
//!   `session_retention` seconds ago goes, with its refresh tokens;
//! - a refresh token goes once its own expiry has passed, in any session. An expired
//!   token is refused as `invalid_refresh_token` before it is looked at for reuse (see
//!   [`crate::refresh`]), so this changes no answer: while a session lives, every spent
//!   token that could still revoke it is kept. It also bounds the stored chain of a
//!   long-lived session: at most the refreshes of the last `refresh_ttl` seconds;
//! - an email token (verification, reset) goes a day after it was used or expired;
//! - a mail goes a day after it was sent or given up (its bodies are erased at once, by
//!   [`crate::mail`]);
//! - an audit event goes `audit_retention_days` days after it was recorded (`0` keeps
//!   every event).
//!
//! A round deletes at most `max_rows` rows per rule, each rule in a short transaction of
//! its own (keys selected first, then deleted by key with the rule checked again), so no
//! lock is held long and a request never waits on a whole table. Rounds are not part of
//! any request: the native host runs them on a timer, the Spin mail relay after a
//! response. One host at a time runs a round: it takes the `retention` row of
//! `maintenance_leases` by compare-and-set, and on release sets when the next round is
//! due ([`PRUNE_INTERVAL`], or at once when a rule filled its batch).

use crate::app::App;
use crate::db::{integer, text};
use crate::error::Error;
use crate::mail::MAX_ATTEMPTS;
use crate::ports::{Statement, Value};

/// Seconds between two rounds that found nothing more to delete.
pub const PRUNE_INTERVAL: i64 = 60;
/// How long a round may hold the lease; a host that died holding it is replaced after.
const LEASE_SECONDS: i64 = 300;
/// The lease row of the retention job.
const JOB: &str = "retention";
/// Used or expired email tokens and sent or given-up mail are kept this long.
const DAY: i64 = 86_400;
/// The most rows one rule deletes in one round, whatever the caller asks.
pub const MAX_ROWS_CAP: u32 = 5_000;

/// The tables whose rows [`count_rows`] reports (the `/metrics` gauges).
pub const COUNTED_TABLES: &[&str] = &[
    "users",
    "sessions",
    "refresh_tokens",
    "email_tokens",
    "outbox",
    "audit_events",
    "reset_requests",
    "rate_counters",
    "login_failures",
];

/// What one call of [`prune`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// False when the round was not due or another host held the lease: nothing was done.
    pub ran: bool,
    /// Rows deleted per table, in a fixed order (every pruned table is named).
    pub removed: Vec<(&'static str, u64)>,
    /// True when a rule filled its batch: another round is due at once.
    pub more: bool,
}

/// How a call of [`prune`] runs.
#[derive(Clone, Copy, Debug)]
pub struct PruneOptions {
    /// The most rows each rule deletes (at most [`MAX_ROWS_CAP`]).
    pub max_rows: u32,
    /// Run even when the next round is not due yet (`portcullis db prune`); a round
    /// another host is running is never joined.
    pub force: bool,
    /// Apply the rules as if the clock were this many seconds ahead (a preview of what
    /// they will delete by then, and for tests); the lease uses the real time.
    pub later_by: u32,
}

/// One retention rule: rows of `table` matching `condition` (with `params`), deleted by
/// `key`; `cascade`, when set, deletes the rows that reference them first (with the
/// same keys).
struct Rule {
    table: &'static str,
    key: &'static str,
    condition: String,
    params: Vec<Value>,
    cascade: Option<Cascade>,
}

/// Rows of another table that go with a rule's rows.
struct Cascade {
    table: &'static str,
    column: &'static str,
}

/// The tables [`prune`] reports, in order.
const PRUNED_TABLES: [&str; 6] = [
    "sessions",
    "refresh_tokens",
    "email_tokens",
    "outbox",
    "audit_events",
    "mfa_challenges",
];

/// Runs one round of every rule, if it is due (or `force`) and no other host runs one.
pub fn prune(app: &App<'_>, options: PruneOptions) -> Result<Pruned, Error> {
    let now = app.now();
    let holder = app.new_id();
    if !take_lease(app, &holder, now, options.force)? {
        return Ok(Pruned::default());
    }
    let max_rows = options.max_rows.clamp(1, MAX_ROWS_CAP);
    let outcome = run_rules(app, now + i64::from(options.later_by), max_rows);
    let more = outcome.as_ref().map(|pruned| pruned.more).unwrap_or(false);
    let next_run_at = if more { now } else { now + PRUNE_INTERVAL };
    release_lease(app, &holder, next_run_at)?;
    outcome
}

/// The rows of each table of [`COUNTED_TABLES`].
pub fn count_rows(app: &App<'_>) -> Result<Vec<(&'static str, u64)>, Error> {
    COUNTED_TABLES
        .iter()
        .map(|table| {
            let row = app
                .db
                .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])?;
            let count = row.map_or(Ok(0), |row| row.integer(0))?;
            Ok((*table, u64::try_from(count).unwrap_or_default()))
        })
        .collect()
}

/// Takes the lease when it is free and the round is due (or forced): compare-and-set on
/// the values read, so of several hosts at most one gets it.
fn take_lease(app: &App<'_>, holder: &str, now: i64, force: bool) -> Result<bool, Error> {
    let row = app.db.query_one(
        "SELECT leased_until, next_run_at FROM maintenance_leases WHERE job = ?",
        &[text(JOB)],
    )?;
    let row = row.ok_or_else(|| Error::Internal("the retention lease row is missing".into()))?;
    let (leased_until, next_run_at) = (row.integer(0)?, row.integer(1)?);
    if leased_until > now || (!force && next_run_at > now) {
        return Ok(false);
    }
    let taken = app.db.execute(
        "UPDATE maintenance_leases SET holder = ?, leased_until = ? \
         WHERE job = ? AND leased_until = ? AND next_run_at = ?",
        &[
            text(holder),
            integer(now + LEASE_SECONDS),
            text(JOB),
            integer(leased_until),
            integer(next_run_at),
        ],
    )?;
    Ok(taken == 1)
}

/// Frees the lease (if this holder still has it) and sets when the next round is due.
fn release_lease(app: &App<'_>, holder: &str, next_run_at: i64) -> Result<(), Error> {
    app.db.execute(
        "UPDATE maintenance_leases SET leased_until = 0, next_run_at = ? \
         WHERE job = ? AND holder = ?",
        &[integer(next_run_at), text(JOB), text(holder)],
    )?;
    Ok(())
}

/// One bounded batch per rule, as if it were `now`.
fn run_rules(app: &App<'_>, now: i64, max_rows: u32) -> Result<Pruned, Error> {
    let mut pruned = Pruned {
        ran: true,
        removed: PRUNED_TABLES.iter().map(|table| (*table, 0)).collect(),
        more: false,
    };
    for rule in rules(app, now) {
        let keys = select_keys(app, &rule, max_rows)?;
        if keys.is_empty() {
            continue;
        }
        pruned.more |= keys.len() == max_rows as usize;
        let counts = app.db.batch(delete_statements(&rule, &keys))?;
        let tables = rule
            .cascade
            .iter()
            .map(|cascade| cascade.table)
            .chain([rule.table]);
        for (table, count) in tables.zip(counts) {
            add(&mut pruned.removed, table, count);
        }
    }
    Ok(pruned)
}

/// The rules as of `now` (docs/reference.md "Retention").
fn rules(app: &App<'_>, now: i64) -> Vec<Rule> {
    let ended_before = now - i64::from(app.settings.session_retention);
    let session_tokens = || {
        Some(Cascade {
            table: "refresh_tokens",
            column: "session_id",
        })
    };
    let mut rules = vec![
        rule(
            "sessions",
            "id",
            "expires_at <= ?",
            ended_before,
            session_tokens(),
        ),
        rule(
            "sessions",
            "id",
            "revoked_at <= ?",
            ended_before,
            session_tokens(),
        ),
        rule("refresh_tokens", "token_hash", "expires_at <= ?", now, None),
        // The second step of a login (API.md §8): useless once expired, spent or not.
        rule("mfa_challenges", "token_hash", "expires_at <= ?", now, None),
        rule(
            "email_tokens",
            "token_hash",
            "used_at <= ?",
            now - DAY,
            None,
        ),
        rule(
            "email_tokens",
            "token_hash",
            "expires_at <= ?",
            now - DAY,
            None,
        ),
        rule("outbox", "id", "sent_at <= ?", now - DAY, None),
        Rule {
            // Given up: unsent after the last attempt, or its link expired (see
            // `mail::give_up_expired_links`); no attempt is due after that.
            params: vec![integer(now - DAY), integer(MAX_ATTEMPTS)],
            ..rule(
                "outbox",
                "id",
                "sent_at IS NULL AND next_attempt_at <= ? AND attempts >= ?",
                0,
                None,
            )
        },
    ];
    let days = i64::from(app.settings.audit_retention_days);
    if days > 0 {
        rules.push(rule(
            "audit_events",
            "id",
            "at <= ?",
            now - days * DAY,
            None,
        ));
    }
    rules
}

fn rule(
    table: &'static str,
    key: &'static str,
    condition: &str,
    cutoff: i64,
    cascade: Option<Cascade>,
) -> Rule {
    Rule {
        table,
        key,
        condition: condition.to_owned(),
        params: vec![integer(cutoff)],
        cascade,
    }
}

/// Up to `max_rows` keys of rows the rule matches (a range scan on its index).
fn select_keys(app: &App<'_>, rule: &Rule, max_rows: u32) -> Result<Vec<String>, Error> {
    let sql = format!(
        "SELECT {} FROM {} WHERE {} LIMIT ?",
        rule.key, rule.table, rule.condition
    );
    let mut params = rule.params.clone();
    params.push(integer(i64::from(max_rows)));
    app.db
        .query(&sql, &params)?
        .iter()
        .map(|row| row.text(0))
        .collect()
}

/// The rule's delete (and its cascade first), by key, with the rule checked again.
fn delete_statements(rule: &Rule, keys: &[String]) -> Vec<Statement> {
    let placeholders = vec!["?"; keys.len()].join(", ");
    let key_values: Vec<Value> = keys.iter().map(|key| text(key.as_str())).collect();
    let mut statements = Vec::with_capacity(2);
    if let Some(cascade) = &rule.cascade {
        statements.push(Statement {
            sql: format!(
                "DELETE FROM {} WHERE {} IN ({placeholders})",
                cascade.table, cascade.column
            ),
            params: key_values.clone(),
            expect_rows: None,
        });
    }
    let mut params = key_values;
    params.extend(rule.params.iter().cloned());
    statements.push(Statement {
        sql: format!(
            "DELETE FROM {} WHERE {} IN ({placeholders}) AND {}",
            rule.table, rule.key, rule.condition
        ),
        params,
        expect_rows: None,
    });
    statements
}

fn add(removed: &mut [(&'static str, u64)], table: &str, count: u64) {
    if let Some(entry) = removed.iter_mut().find(|(name, _)| *name == table) {
        entry.1 += count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Registered, Registration, logout, register, verify_access_token};
    use crate::refresh::refresh;
    use crate::sessions::{Client, Grant};
    use crate::testing::Harness;

    const FORCED: PruneOptions = PruneOptions {
        max_rows: 100,
        force: true,
        later_by: 0,
    };

    fn signed_up(harness: &Harness, name: &str) -> Grant {
        let input = Registration {
            username: name.into(),
            email: format!("{name}@example.com"),
            password: "Tr1cky!Horse#42".into(),
            mobile_number: None,
        };
        match register(&harness.app(), &input, &Client::default()).unwrap() {
            Registered::SignedIn(grant) => grant,
            other => panic!("{other:?}"),
        }
    }

    fn rows(harness: &Harness, table: &str) -> u64 {
        count_rows(&harness.app())
            .unwrap()
            .into_iter()
            .find(|(name, _)| *name == table)
            .map(|(_, count)| count)
            .unwrap()
    }

    fn removed(pruned: &Pruned, table: &str) -> u64 {
        pruned
            .removed
            .iter()
            .find(|(name, _)| *name == table)
            .map(|(_, count)| *count)
            .unwrap()
    }

    fn revoke(harness: &Harness, grant: &Grant) {
        let app = harness.app();
        let who = verify_access_token(&app, &grant.access_token).unwrap();
        logout(&app, &who, &Client::default()).unwrap();
    }

    #[test]
    fn an_ended_session_goes_with_its_tokens_after_the_retention() {
        let harness = Harness::new(&[("session_retention", "3600")]);
        let app = harness.app();
        let ended = signed_up(&harness, "ended_one");
        let live = signed_up(&harness, "live_one");
        refresh(&app, &ended.refresh_token, &Client::default()).unwrap();
        revoke(&harness, &ended);
        assert_eq!(removed(&prune(&app, FORCED).unwrap(), "sessions"), 0);
        harness.env.advance(3601);
        let pruned = prune(&app, FORCED).unwrap();
        assert!(pruned.ran);
        assert_eq!(removed(&pruned, "sessions"), 1);
        assert_eq!(removed(&pruned, "refresh_tokens"), 2);
        assert_eq!(rows(&harness, "sessions"), 1);
        // The live session is untouched.
        assert!(refresh(&app, &live.refresh_token, &Client::default()).is_ok());
    }

    #[test]
    fn a_spent_token_of_a_live_session_is_kept_until_it_expires_and_still_revokes() {
        let harness = Harness::new(&[("refresh_ttl", "600"), ("session_retention", "0")]);
        let app = harness.app();
        let first = signed_up(&harness, "chain_one");
        harness.env.advance(300);
        let second = refresh(&app, &first.refresh_token, &Client::default()).unwrap();
        harness.env.advance(200);
        let third = refresh(&app, &second.refresh_token, &Client::default()).unwrap();
        // Nothing has expired yet: the whole chain stays.
        assert_eq!(removed(&prune(&app, FORCED).unwrap(), "refresh_tokens"), 0);
        harness.env.advance(101);
        // The first token expired (600 s after it was issued): it goes, the rest stays.
        let pruned = prune(&app, FORCED).unwrap();
        assert_eq!(removed(&pruned, "refresh_tokens"), 1);
        assert_eq!(removed(&pruned, "sessions"), 0);
        // The second token is spent but not expired: reuse still revokes the session.
        assert_eq!(
            refresh(&app, &second.refresh_token, &Client::default()),
            Err(Error::RefreshTokenReused)
        );
        assert_eq!(
            refresh(&app, &third.refresh_token, &Client::default()),
            Err(Error::InvalidRefreshToken)
        );
        // Retention 0: the revoked session goes at the next round.
        let pruned = prune(&app, FORCED).unwrap();
        assert_eq!(removed(&pruned, "sessions"), 1);
        assert_eq!(rows(&harness, "refresh_tokens"), 0);
    }

    #[test]
    fn a_round_is_bounded_and_says_when_more_is_due() {
        let harness = Harness::new(&[("session_retention", "0")]);
        let app = harness.app();
        for n in 0..3 {
            let grant = signed_up(&harness, &format!("bounded_{n}"));
            revoke(&harness, &grant);
        }
        let small = PruneOptions {
            max_rows: 2,
            ..FORCED
        };
        let first = prune(&app, small).unwrap();
        assert_eq!((removed(&first, "sessions"), first.more), (2, true));
        let second = prune(&app, small).unwrap();
        assert_eq!((removed(&second, "sessions"), second.more), (1, false));
    }

    #[test]
    fn one_round_a_minute_and_never_while_another_holds_the_lease() {
        let harness = Harness::new(&[]);
        let app = harness.app();
        let due = PruneOptions {
            force: false,
            ..FORCED
        };
        assert!(prune(&app, due).unwrap().ran);
        assert!(!prune(&app, due).unwrap().ran);
        assert!(prune(&app, FORCED).unwrap().ran);
        harness.env.advance(PRUNE_INTERVAL);
        assert!(take_lease(&app, "another host", app.now(), false).unwrap());
        assert!(!prune(&app, FORCED).unwrap().ran);
        harness.env.advance(LEASE_SECONDS);
        // The other host died holding it: the lease runs out.
        assert!(prune(&app, due).unwrap().ran);
    }

    /// Inserts an email token and three mails (sent, given up, still to send) as of now.
    fn tokens_and_mail(harness: &Harness, user_id: &str) {
        let app = harness.app();
        let now = app.now();
        let token = "INSERT INTO email_tokens (token_hash, user_id, purpose, email, created_at, \
                     expires_at, used_at) VALUES (?, ?, 'verify_email', 'a@example.com', ?, ?, ?)";
        let mail = "INSERT INTO outbox (id, recipient, kind, subject, text_body, html_body, \
                    created_at, attempts, next_attempt_at, sent_at) \
                    VALUES (?, 'a@example.com', 'verify_email', 's', '', '', ?, ?, ?, ?)";
        let rows: [(&str, Vec<Value>); 5] = [
            (
                token,
                vec![
                    text("used"),
                    text(user_id),
                    integer(now),
                    integer(now + DAY),
                    integer(now),
                ],
            ),
            (
                token,
                vec![
                    text("unused"),
                    text(user_id),
                    integer(now),
                    integer(now + DAY),
                    Value::Null,
                ],
            ),
            (
                mail,
                vec![
                    text("sent"),
                    integer(now),
                    integer(1),
                    integer(now),
                    integer(now),
                ],
            ),
            (
                mail,
                vec![
                    text("given_up"),
                    integer(now),
                    integer(MAX_ATTEMPTS),
                    integer(now),
                    Value::Null,
                ],
            ),
            (
                mail,
                vec![
                    text("pending"),
                    integer(now),
                    integer(3),
                    integer(now),
                    Value::Null,
                ],
            ),
        ];
        for (sql, params) in rows {
            app.db.execute(sql, &params).unwrap();
        }
    }

    #[test]
    fn used_or_expired_email_tokens_and_sent_or_given_up_mail_go_a_day_later() {
        let harness = Harness::new(&[]);
        let app = harness.app();
        let user_id = signed_up(&harness, "mailed").user.id;
        tokens_and_mail(&harness, &user_id);
        harness.env.advance(DAY - 1);
        let early = prune(&app, FORCED).unwrap();
        assert_eq!(
            (removed(&early, "email_tokens"), removed(&early, "outbox")),
            (0, 0)
        );
        harness.env.advance(1);
        let day = prune(&app, FORCED).unwrap();
        // The used token, the sent mail and the given-up one; a mail still to send stays.
        assert_eq!(
            (removed(&day, "email_tokens"), removed(&day, "outbox")),
            (1, 2)
        );
        harness.env.advance(DAY);
        // The unused token expired a day ago.
        assert_eq!(removed(&prune(&app, FORCED).unwrap(), "email_tokens"), 1);
        assert_eq!(rows(&harness, "outbox"), 1);
    }

    #[test]
    fn audit_events_go_after_the_days_set_and_zero_keeps_them() {
        for (days, kept) in [("1", false), ("0", true)] {
            let harness = Harness::new(&[("audit_retention_days", days)]);
            let app = harness.app();
            signed_up(&harness, "audited");
            let recorded = rows(&harness, "audit_events");
            assert!(recorded > 0);
            harness.env.advance(DAY + 1);
            prune(&app, FORCED).unwrap();
            let expected = if kept { recorded } else { 0 };
            assert_eq!(rows(&harness, "audit_events"), expected, "days {days}");
        }
    }

    #[test]
    fn later_by_applies_the_rules_ahead_of_the_clock() {
        let harness = Harness::new(&[("audit_retention_days", "1")]);
        let app = harness.app();
        signed_up(&harness, "previewed");
        assert_eq!(removed(&prune(&app, FORCED).unwrap(), "audit_events"), 0);
        let ahead = PruneOptions {
            later_by: (DAY + 1) as u32,
            ..FORCED
        };
        assert!(removed(&prune(&app, ahead).unwrap(), "audit_events") > 0);
        assert_eq!(rows(&harness, "audit_events"), 0);
    }
}
