//! Portcullis' black-box API suite: one test binary, one module per area, every test run
//! on every configured database. Each test starts its own `portcullis serve` (see
//! `support`), so tests are independent of each other.
//!
//! # Backends
//!
//! This binary is its own runner (`harness = false`, with `libtest-mimic`). Every test
//! becomes one trial per backend, named `<backend>::<module>::<test>`, e.g.
//! `sqlite::register::username_is_unique_case_insensitively`; filters work as usual
//! (`cargo test --release --test api -- postgres::login`). SQLite always runs;
//! PostgreSQL runs when `PORTCULLIS_TEST_POSTGRES_URL` is set, MySQL/MariaDB when
//! `PORTCULLIS_TEST_MYSQL_URL` is set. A backend whose variable is not set has its trials
//! ignored (the runner names it in one `skipped backend …` line); a set URL that cannot
//! be used fails every trial of that backend. Each run creates a database of its own on
//! each server and drops it at the end (see `backends`).
//!
//! # Writing tests
//!
//! A module wraps its tests in one `api_tests!` block; helpers stay outside it:
//!
//! ```ignore
//! use crate::support::spawn_app;
//!
//! fn helper() { … }
//!
//! api_tests! {
//!     /// What this test proves.
//!     fn a_test_name() {
//!         let app = spawn_app(); // on the trial's backend
//!         …
//!     }
//! }
//! ```
//!
//! The block defines the functions as written and generates
//! `pub fn tests() -> Vec<(&'static str, fn())>`. A new module is declared below with
//! `mod name;` and added to [`MODULES`]. A test that cannot run on some backend is listed
//! in [`NOT_APPLICABLE`], with the reason. Tests start apps with `support::spawn_app`
//! (or `TestApp::spawn_with`) on their own thread: the runner tells that thread which
//! backend the trial is for. Tests on a shared database use unique identities only
//! (`support::unique_user`), never counts of all rows.

use std::process::ExitCode;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

use backends::{Setup, Status, Target};

/// Defines the tests of a module as written, and `pub fn tests()`, their list by name.
macro_rules! api_tests {
    ($($(#[$attribute:meta])* fn $name:ident() $body:block)*) => {
        $($(#[$attribute])* fn $name() $body)*

        /// Every test of this module, by name.
        pub fn tests() -> Vec<(&'static str, fn())> {
            vec![$((stringify!($name), $name as fn())),*]
        }
    };
}

mod backends;
mod forwarder;
mod session_client;
mod support;

mod account;
mod admin;
mod audit;
mod browser;
mod conventions;
mod cookies;
mod eviction;
mod faults_database;
mod faults_network;
mod forged_tokens;
mod health;
mod hostile;
mod import;
mod login;
mod mail;
mod mfa;
mod observability;
mod openapi;
mod outage;
mod rate_limits;
mod register;
mod retention;
mod revocation;
mod rough_edges;
mod scale;
mod security;
mod sessions;
mod settings_check;
mod throttle;
mod tokens;

/// A module of tests: its name, and its `tests` (what `api_tests!` generates).
type Module = (&'static str, fn() -> Vec<(&'static str, fn())>);

/// Every module of tests.
const MODULES: &[Module] = &[
    ("account", account::tests),
    ("admin", admin::tests),
    ("audit", audit::tests),
    ("browser", browser::tests),
    ("conventions", conventions::tests),
    ("cookies", cookies::tests),
    ("eviction", eviction::tests),
    ("faults_database", faults_database::tests),
    ("faults_network", faults_network::tests),
    ("forged_tokens", forged_tokens::tests),
    ("health", health::tests),
    ("hostile", hostile::tests),
    ("import", import::tests),
    ("login", login::tests),
    ("mail", mail::tests),
    ("mfa", mfa::tests),
    ("observability", observability::tests),
    ("openapi", openapi::tests),
    ("outage", outage::tests),
    ("rate_limits", rate_limits::tests),
    ("register", register::tests),
    ("retention", retention::tests),
    ("revocation", revocation::tests),
    ("rough_edges", rough_edges::tests),
    ("scale", scale::tests),
    ("security", security::tests),
    ("sessions", sessions::tests),
    ("settings_check", settings_check::tests),
    ("throttle", throttle::tests),
    ("tokens", tokens::tests),
];

/// Modules (`module`) or tests (`module::test`) that cannot run on a setup, and why:
/// their trials are ignored there.
const NOT_APPLICABLE: &[(&str, Setup, &str)] = &[
    (
        "browser",
        Setup::POSTGRES,
        "one real browser run, on SQLite: the database changes nothing the browser sees",
    ),
    (
        "browser",
        Setup::MYSQL,
        "one real browser run, on SQLite: the database changes nothing the browser sees",
    ),
    (
        "browser",
        Setup::SPIN_POSTGRES,
        "one real browser run, on SQLite: the database changes nothing the browser sees",
    ),
    (
        "outage",
        Setup::SQLITE,
        "a SQLite file has no connection to cut",
    ),
    (
        "faults_network",
        Setup::SPIN_POSTGRES,
        "the native host's HTTP server and mail delivery loop (Spin's own server, its relay)",
    ),
    (
        "faults_database::a_database_cut_under_load_keeps_what_it_acknowledged_and_nothing_it_refused",
        Setup::SQLITE,
        "a SQLite file has no connection to cut",
    ),
    (
        "faults_database::an_unreachable_database_is_waited_for_and_then_served",
        Setup::SQLITE,
        "a SQLite file has no server to wait for",
    ),
    (
        "faults_database::an_unreachable_database_is_waited_for_and_then_served",
        Setup::SPIN_POSTGRES,
        "PORTCULLIS_DATABASE_WAIT is the native host's start-up",
    ),
    (
        "faults_database::an_unreachable_database_stops_start_up_after_the_wait_with_one_line",
        Setup::SQLITE,
        "a SQLite file has no server to wait for",
    ),
    (
        "faults_database::an_unreachable_database_stops_start_up_after_the_wait_with_one_line",
        Setup::SPIN_POSTGRES,
        "PORTCULLIS_DATABASE_WAIT is the native host's start-up",
    ),
    (
        "faults_database::database_wait_is_checked_like_every_setting",
        Setup::SPIN_POSTGRES,
        "PORTCULLIS_DATABASE_WAIT is the native host's setting",
    ),
    (
        "faults_database::a_read_only_sqlite_folder_stops_start_up_with_one_line",
        Setup::POSTGRES,
        "the SQLite data folder's file system",
    ),
    (
        "faults_database::a_read_only_sqlite_folder_stops_start_up_with_one_line",
        Setup::MYSQL,
        "the SQLite data folder's file system",
    ),
    (
        "faults_database::a_read_only_sqlite_folder_stops_start_up_with_one_line",
        Setup::SPIN_POSTGRES,
        "the SQLite data folder's file system",
    ),
    (
        "faults_database::a_full_disk_answers_503_and_sqlite_recovers_intact",
        Setup::POSTGRES,
        "the SQLite data folder's file system",
    ),
    (
        "faults_database::a_full_disk_answers_503_and_sqlite_recovers_intact",
        Setup::MYSQL,
        "the SQLite data folder's file system",
    ),
    (
        "faults_database::a_full_disk_answers_503_and_sqlite_recovers_intact",
        Setup::SPIN_POSTGRES,
        "the SQLite data folder's file system",
    ),
    (
        "settings_check",
        Setup::SPIN_POSTGRES,
        "the native host's command line and start-up checks (Spin checks its variables)",
    ),
    (
        "observability",
        Setup::SPIN_POSTGRES,
        "/metrics, request ids and the access log are the native host's",
    ),
    (
        "rough_edges::listening_on_is_a_json_log_line",
        Setup::SPIN_POSTGRES,
        "PORTCULLIS_LOG_FORMAT is the native host's",
    ),
    (
        "rough_edges::trace_logging_leaves_the_compiler_out_unless_named",
        Setup::SPIN_POSTGRES,
        "PORTCULLIS_LOG is the native host's",
    ),
    (
        "mail::mail_is_delivered_over_smtp_as_text_and_html",
        Setup::SPIN_POSTGRES,
        "reads the native mailer's start-up line (Spin mails through a webhook)",
    ),
    (
        "mail::without_smtp_the_mail_is_written_to_the_log",
        Setup::SPIN_POSTGRES,
        "the native log mailer's line (Spin's relay writes its own; lib test served.rs)",
    ),
    (
        "mail::mail_queued_while_smtp_is_down_is_delivered_when_it_is_up",
        Setup::SPIN_POSTGRES,
        "the native delivery loop retries on its own; on Spin only a later request does",
    ),
    (
        "retention::serve_prunes_at_start_up_logs_the_round_and_counts_rows",
        Setup::SPIN_POSTGRES,
        "retention rounds run in portcullis serve",
    ),
    (
        "retention::given_up_mail_goes_after_a_day",
        Setup::SPIN_POSTGRES,
        "fails deliveries in the native loop's rhythm; Spin's relay tries at once",
    ),
    (
        "security::mail_bodies_with_tokens_leave_the_outbox_when_given_up_or_expired",
        Setup::SPIN_POSTGRES,
        "waits for the native delivery loop; on Spin only a later request sweeps",
    ),
];

fn main() -> ExitCode {
    if let Some(stale) = stale_not_applicable() {
        eprintln!("NOT_APPLICABLE names {stale:?}, which is no module or test");
        return ExitCode::FAILURE;
    }
    let mut arguments = Arguments::from_args();
    arguments.test_threads = arguments.test_threads.or_else(default_test_threads);
    let run = if arguments.list {
        backends::Run::listing()
    } else {
        backends::Run::prepare()
    };
    let trials = run
        .statuses()
        .iter()
        .flat_map(|(setup, status)| setup_trials(*setup, status))
        .collect();
    let conclusion = libtest_mimic::run(&arguments, trials);
    run.finish();
    conclusion.exit_code()
}

/// The first entry of [`NOT_APPLICABLE`] that names no module nor test, if any: the
/// list may only leave out tests that exist.
fn stale_not_applicable() -> Option<&'static str> {
    NOT_APPLICABLE
        .iter()
        .map(|(name, _, _)| *name)
        .find(|name| {
            !MODULES.iter().any(|(module, tests)| {
                name == module
                    || tests()
                        .iter()
                        .any(|(test, _)| *name == format!("{module}::{test}"))
            })
        })
}

/// Twice the cores, at least four: most of a trial's time is spent waiting on the host it
/// started (HTTP, the database, token lifetimes), not on this process's CPU.
/// `--test-threads` overrides it.
fn default_test_threads() -> Option<usize> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Some((2 * cores).max(4))
}

/// One trial per test of every module, on `setup`.
fn setup_trials(setup: Setup, status: &Status) -> Vec<Trial> {
    let mut trials = Vec::new();
    for (module, tests) in MODULES {
        for (test, function) in tests() {
            let path = format!("{module}::{test}");
            let not_applicable = NOT_APPLICABLE
                .iter()
                .find(|(name, on, _)| (name == module || *name == path) && *on == setup)
                .map(|(_, _, reason)| *reason);
            let not_applicable = not_applicable.or_else(|| needs_missing_root(&path));
            let name = format!("{}::{path}", setup.name());
            trials.push(trial(name, status, not_applicable, function));
        }
    }
    trials
}

/// The tests that mount a small tmpfs (a disk that fills up or turns read-only), which
/// only root may do.
const NEED_ROOT: &[&str] = &[
    "faults_database::a_read_only_sqlite_folder_stops_start_up_with_one_line",
    "faults_database::a_full_disk_answers_503_and_sqlite_recovers_intact",
];

/// Why the test `path` cannot run here: it mounts a file system and this process is not
/// root (CI runs as root; a developer's run names the tests it leaves out).
fn needs_missing_root(path: &str) -> Option<&'static str> {
    (NEED_ROOT.contains(&path) && !running_as_root())
        .then_some("mounts a tmpfs, which needs root (CI runs as root)")
}

/// Whether this process's effective user is root, from `/proc/self/status`.
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

fn trial(name: String, status: &Status, not_applicable: Option<&str>, test: fn()) -> Trial {
    match (status, not_applicable) {
        (Status::NotConfigured(variable), _) => {
            let message = format!("{variable} is not set");
            Trial::test(name, move || Err(message.into())).with_ignored_flag(true)
        }
        (Status::Unreachable(message), _) => {
            let message = message.clone();
            Trial::test(name, move || Err(message.into()))
        }
        (Status::Ready(_), Some(reason)) => {
            let reason = reason.to_owned();
            Trial::ignorable_test(name, move || Ok(Completion::ignored_with(reason)))
        }
        (Status::Ready(target), None) => {
            let target = target.clone();
            Trial::test(name.clone(), move || run_test(name, target, test))
        }
    }
}

/// Runs `test` on a thread named after the trial (panic messages name it), for
/// `target`.
fn run_test(name: String, target: Target, test: fn()) -> Result<(), Failed> {
    let thread = std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            backends::enter(target);
            test();
        })
        .map_err(|error| format!("cannot start the test's thread: {error}"))?;
    thread.join().map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("the test panicked");
        message.into()
    })
}
