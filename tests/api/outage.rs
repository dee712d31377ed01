//! A database that goes away (API.md §5: `/health` is 503 when the database is
//! unreachable). The host reaches its database through an in-process [`Forwarder`] that
//! the test cuts and restores: meanwhile `/health` and the API answer 503 problems within
//! a bound (never a hang, never a 500), and afterwards the same host is healthy again by
//! itself. PostgreSQL and MySQL only: a SQLite file has no connection to cut.

use std::time::{Duration, Instant};

use reqwest::blocking::Response;

use crate::backends::{server_address, with_server_address};
use crate::forwarder::Forwarder;
use crate::support::{TestApp, assert_problem, backend, shared_database, unique_user};

/// How long an answer may take while the database is away: a generous bound for
/// "does not hang".
const ANSWER_BOUND: Duration = Duration::from_secs(15);

/// How long the host may take to be healthy again once the database is back.
const RECOVERY_BOUND: Duration = Duration::from_secs(30);

/// An app whose database connections go through `forwarder`.
fn app_behind(forwarder: &Forwarder, database_url: &str) -> TestApp {
    TestApp::spawn_on(
        &with_server_address(database_url, &forwarder.address()),
        &[],
    )
}

/// Sends a request and asserts the answer came within [`ANSWER_BOUND`].
fn answered_in_time(what: &str, request: impl FnOnce() -> Response) -> Response {
    let started = Instant::now();
    let answer = request();
    let took = started.elapsed();
    assert!(
        took < ANSWER_BOUND,
        "{what} took {took:?} while the database was away (bound {ANSWER_BOUND:?})"
    );
    answer
}

/// Polls `/health` until it answers 200, for at most [`RECOVERY_BOUND`].
pub fn wait_until_healthy(app: &TestApp) {
    let deadline = Instant::now() + RECOVERY_BOUND;
    loop {
        let status = app.get("/health").status().as_u16();
        if status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/health still answers {status} {RECOVERY_BOUND:?} after the database came back"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

api_tests! {
    /// While the database is away `/health`, login and register answer 503
    /// `unavailable` in bounded time; once it is back the same host answers 200 again.
    fn a_database_that_goes_away_gives_503_and_the_host_recovers() {
        let database = shared_database();
        let forwarder = Forwarder::start(&server_address(backend(), &database.url));
        let app = app_behind(&forwarder, &database.url);
        let (user, _, _) = app.registered_user();
        app.assert_healthy();

        forwarder.cut();
        let health = answered_in_time("/health", || app.get("/health"));
        assert_problem(health, 503, "unavailable");
        let login = answered_in_time("login", || app.login(&user.username, &user.password));
        assert_problem(login, 503, "unavailable");
        let newcomer = unique_user();
        let register = answered_in_time("register", || {
            app.register(&newcomer.username, &newcomer.email, &newcomer.password)
        });
        assert_problem(register, 503, "unavailable");
        // Now the host has no connection left that could fail fast.
        let health = answered_in_time("/health, again", || app.get("/health"));
        assert_problem(health, 503, "unavailable");

        forwarder.restore();
        wait_until_healthy(&app);
        app.assert_healthy();
        app.login_ok(&user.username, &user.password);
        app.register_user(&newcomer);
    }
}
