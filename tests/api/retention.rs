//! Retention (docs/reference.md section 13) over the real binary: each rule with short
//! settings, run by `portcullis db prune` (with `--later-by` where a rule waits for a
//! day or more), reuse detection across a prune, the round `serve` runs at start-up with
//! its log line, the row gauges on `/metrics`, and the settings' checks. Every test has
//! a database of its own: a prune deletes whatever any test left.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::account::verify;
use crate::admin::portcullis;
use crate::mail::{
    PrivateDatabase, SmtpSink, free_port, mailing_app, private_database, request_verification,
    user_with_verification_mail,
};
use crate::session_client::{
    LOGOUT, assert_refresh_dead, assert_status, post_bearer, refresh, refresh_ok, register,
};
use crate::support::{TestApp, assert_problem, json_body};

/// A day, as the rules count it.
const DAY: u32 = 86_400;
/// Ended sessions go at the next round.
const AT_ONCE: (&str, &str) = ("PORTCULLIS_SESSION_RETENTION", "0");
const METRICS_TOKEN: &str = "metrics-retention-0123456789";
/// How long a log line or a gauge may take to show.
const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `portcullis db prune --later-by LATER_BY` on `database` with `settings`; insists
/// that it succeeds and returns the rows it removed per table.
fn db_prune(
    database: &PrivateDatabase,
    later_by: u32,
    settings: &[(&str, &str)],
) -> BTreeMap<String, u64> {
    let folder = tempfile::tempdir().expect("tempdir");
    let later_by = later_by.to_string();
    let mut all = vec![("PORTCULLIS_DATABASE_URL", database.url.as_str())];
    all.extend_from_slice(settings);
    let output = portcullis(
        &["db", "prune", "--later-by", &later_by],
        folder.path(),
        &all,
    )
    .output()
    .expect("run portcullis db prune");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "db prune failed ({}): {stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|line| {
            let (table, rows) = line.split_once(' ').expect("`table rows`");
            (table.to_owned(), rows.parse().expect("a number of rows"))
        })
        .collect()
}

/// The rows of `table` (the test's own database: counting all rows is meaningful).
fn rows(database: &PrivateDatabase, table: &str) -> i64 {
    database.count(&format!("SELECT COUNT(*) FROM {table}"))
}

/// The rows `removed` says went from `table`.
fn removed(removed: &BTreeMap<String, u64>, table: &str) -> u64 {
    *removed
        .get(table)
        .unwrap_or_else(|| panic!("db prune named no {table}: {removed:?}"))
}

/// Waits until `condition` holds, at most [`DEADLINE`]; `what` names it in the failure.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "{what} within {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

api_tests! {
    /// An ended session goes with its refresh tokens once the retention has passed (at
    /// the next round with 0); a live session, and an ended one within the retention,
    /// stay.
    fn an_ended_session_goes_with_its_refresh_tokens_after_the_retention() {
        let database = private_database();
        let app = TestApp::spawn_on(&database.url, &[]);
        let (_, ended) = register(&app);
        let ended = refresh_ok(&app, &ended.refresh);
        let (_, live) = register(&app);
        assert_status(post_bearer(&app, LOGOUT, &ended.access), 204, "logout");

        // The default retention (7 days) keeps the ended session…
        let kept = db_prune(&database, 0, &[]);
        assert_eq!(removed(&kept, "sessions"), 0, "{kept:?}");
        assert_eq!(rows(&database, "sessions"), 2);
        // …until 7 days have passed; with 0 it goes at the next round, tokens and all.
        let pruned = db_prune(&database, 0, &[AT_ONCE]);
        assert_eq!(removed(&pruned, "sessions"), 1, "{pruned:?}");
        assert_eq!(removed(&pruned, "refresh_tokens"), 2, "{pruned:?}");
        assert_eq!(rows(&database, "sessions"), 1);
        assert_eq!(rows(&database, "refresh_tokens"), 1);
        refresh_ok(&app, &live.refresh);
    }

    /// A spent refresh token of a live session survives a prune and still revokes the
    /// session when presented again; once the session is gone, the token is refused as
    /// any unknown one.
    fn reuse_detection_is_as_strong_after_a_prune() {
        let database = private_database();
        let app = TestApp::spawn_on(&database.url, &[AT_ONCE]);
        let (_, first) = register(&app);
        let second = refresh_ok(&app, &first.refresh);
        let pruned = db_prune(&database, 0, &[AT_ONCE]);
        assert_eq!(removed(&pruned, "refresh_tokens"), 0, "{pruned:?}");
        assert_problem(refresh(&app, &first.refresh), 401, "refresh_token_reused");
        assert_refresh_dead(&app, &second.refresh, "the successor after the reuse");
        let pruned = db_prune(&database, 0, &[AT_ONCE]);
        assert_eq!(removed(&pruned, "sessions"), 1, "{pruned:?}");
        assert_problem(refresh(&app, &first.refresh), 401, "invalid_refresh_token");
    }

    /// A refresh token goes once it has expired, in a session that is not over yet: the
    /// session stays (its retention has not passed).
    fn a_refresh_token_goes_once_it_has_expired() {
        let database = private_database();
        let app = TestApp::spawn_on(&database.url, &[("PORTCULLIS_REFRESH_TTL", "60")]);
        let (_, first) = register(&app);
        let second = refresh_ok(&app, &first.refresh);
        refresh_ok(&app, &second.refresh);
        assert_eq!(rows(&database, "refresh_tokens"), 3);
        let now = db_prune(&database, 0, &[]);
        assert_eq!(removed(&now, "refresh_tokens"), 0, "{now:?}");
        let later = db_prune(&database, 61, &[]);
        assert_eq!(removed(&later, "refresh_tokens"), 3, "{later:?}");
        assert_eq!(removed(&later, "sessions"), 0, "{later:?}");
        assert_eq!(rows(&database, "sessions"), 1);
    }

    /// A used verification token and the sent mail that carried it go a day later; an
    /// unused token a day after it expired (links live a day).
    fn used_email_tokens_and_sent_mail_go_after_a_day() {
        let database = private_database();
        let sink = SmtpSink::start();
        let app = mailing_app(&database, &sink, &[]);
        let (_, _, token) = user_with_verification_mail(&app, &sink);
        json_body(verify(&app, &token), 200);
        let (_, other_access, _) = app.registered_user();
        request_verification(&app, &other_access);
        eventually("both mails recorded as sent", || {
            database.count("SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL") == 2
        });

        let now = db_prune(&database, 0, &[]);
        assert_eq!(removed(&now, "email_tokens"), 0, "{now:?}");
        assert_eq!(removed(&now, "outbox"), 0, "{now:?}");
        let day = db_prune(&database, DAY + 1, &[]);
        assert_eq!(removed(&day, "email_tokens"), 1, "the used token: {day:?}");
        assert_eq!(removed(&day, "outbox"), 2, "the sent mails: {day:?}");
        assert_eq!(rows(&database, "email_tokens"), 1);
        let two_days = db_prune(&database, 2 * DAY + 1, &[]);
        assert_eq!(removed(&two_days, "email_tokens"), 1, "the expired token: {two_days:?}");
        assert_eq!(rows(&database, "email_tokens"), 0);
    }

    /// A mail that was given up goes a day later (its failures are simulated: the SMTP
    /// server is down, and the mail is marked as having used its 10 attempts).
    fn given_up_mail_goes_after_a_day() {
        let database = private_database();
        let smtp = format!("smtp://{}", free_port());
        let app = TestApp::spawn_on(&database.url, &[("PORTCULLIS_SMTP_URL", smtp.as_str())]);
        let (_, access_token, _) = app.registered_user();
        request_verification(&app, &access_token);
        assert_eq!(rows(&database, "outbox"), 1);
        database.execute("UPDATE outbox SET attempts = 10");
        let now = db_prune(&database, 0, &[]);
        assert_eq!(removed(&now, "outbox"), 0, "{now:?}");
        // The last retry was scheduled at most an hour ahead.
        let later = db_prune(&database, DAY + 3_601, &[]);
        assert_eq!(removed(&later, "outbox"), 1, "{later:?}");
    }

    /// Audit events go `PORTCULLIS_AUDIT_RETENTION_DAYS` days after they were recorded;
    /// with 0 they are kept forever.
    fn audit_events_go_after_the_days_set_and_zero_keeps_them() {
        let database = private_database();
        let app = TestApp::spawn_on(&database.url, &[]);
        register(&app);
        let recorded = rows(&database, "audit_events");
        assert!(recorded > 0);
        let forever = [("PORTCULLIS_AUDIT_RETENTION_DAYS", "0")];
        let kept = db_prune(&database, 3_650 * DAY, &forever);
        assert_eq!(removed(&kept, "audit_events"), 0, "{kept:?}");
        let one_day = [("PORTCULLIS_AUDIT_RETENTION_DAYS", "1")];
        let within = db_prune(&database, DAY - 60, &one_day);
        assert_eq!(removed(&within, "audit_events"), 0, "{within:?}");
        let after = db_prune(&database, DAY + 1, &one_day);
        assert_eq!(removed(&after, "audit_events"), recorded as u64, "{after:?}");
        assert_eq!(rows(&database, "audit_events"), 0);
    }

    /// `serve` runs a round at start-up, says what it deleted in one log line, and
    /// reports the rows per table on `/metrics`.
    fn serve_prunes_at_start_up_logs_the_round_and_counts_rows() {
        let database = private_database();
        let first = TestApp::spawn_on(&database.url, &[AT_ONCE]);
        let (_, session) = register(&first);
        assert_status(post_bearer(&first, LOGOUT, &session.access), 204, "logout");
        let second = TestApp::spawn_on(
            &database.url,
            &[AT_ONCE, ("PORTCULLIS_METRICS_TOKEN", METRICS_TOKEN)],
        );
        let output = second.wait_for_output("retention round", DEADLINE);
        assert!(output.contains("sessions=1"), "{output}");
        assert_eq!(rows(&database, "sessions"), 0);
        eventually("the row gauges on /metrics", || {
            let text = second
                .get_with_token("/metrics", METRICS_TOKEN)
                .text()
                .expect("the metrics");
            text.contains("portcullis_db_rows{table=\"users\"} 1")
                && text.contains("portcullis_db_rows{table=\"sessions\"} 0")
        });
    }

    /// A bad retention setting stops `db prune` (and every command) before it touches
    /// anything, naming the setting (exit code 2).
    fn bad_retention_settings_are_refused_with_exit_code_2() {
        let folder = tempfile::tempdir().expect("tempdir");
        for (key, value) in [
            ("PORTCULLIS_SESSION_RETENTION", "a week"),
            ("PORTCULLIS_AUDIT_RETENTION_DAYS", "36501"),
        ] {
            let url = format!("sqlite://{}/never.db", folder.path().display());
            let settings = [("PORTCULLIS_DATABASE_URL", url.as_str()), (key, value)];
            let output = portcullis(&["db", "prune"], folder.path(), &settings)
                .output()
                .expect("run portcullis db prune");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{key}: {stderr}");
            assert!(stderr.contains(&format!("error: {key}: ")), "{stderr}");
            assert!(!folder.path().join("never.db").exists());
        }
    }
}
