//! Rate limits per endpoint group (`PORTCULLIS_RATE_LIMIT_LOGIN`, `_REGISTER`,
//! `_PASSWORD`, `_EMAIL`): a group with a setting of its own counts on its own counter,
//! the other `/api/v1/auth/*` POSTs share `PORTCULLIS_RATE_LIMIT`'s; the `/verify-email`
//! and `/reset-password` form posts belong to the email and password groups; counters
//! are shared by the hosts on one database; `/api/v1/validation-rules` shows the limits
//! in force.
//!
//! Every test sends from client addresses of its own (127.0.0.1 is a trusted proxy and
//! `X-Forwarded-For` names a fresh address), so tests on a shared database never eat
//! each other's budgets.

use reqwest::Method;
use reqwest::blocking::Response;
use serde_json::{Value, json};

use crate::admin::unique_ip;
use crate::session_client::two_hosts;
use crate::support::{STRONG_PASSWORD, TestApp, assert_problem, header, json_body, unique_user};

const LOGIN: &str = "/api/v1/auth/login";
const TOKEN: &str = "/api/v1/auth/token";
const REGISTER: &str = "/api/v1/auth/register";
const REFRESH: &str = "/api/v1/auth/refresh";
const FORGOT: &str = "/api/v1/auth/password/forgot";
const RESET: &str = "/api/v1/auth/password/reset";
const VERIFY_EMAIL: &str = "/api/v1/auth/email/verify";
const MFA_VERIFY: &str = "/api/v1/auth/mfa/verify";

/// Windows of an hour: no test straddles more than one window boundary, and a test
/// that starts just before one waits for it (see [`fresh_window`]).
const HOUR: u64 = 3600;

/// Settings with 127.0.0.1 a trusted proxy, and `limits`.
fn app_with(limits: &[(&str, &str)]) -> TestApp {
    let mut settings = vec![("PORTCULLIS_TRUSTED_PROXIES", "127.0.0.1/32")];
    settings.extend_from_slice(limits);
    TestApp::spawn_with(&settings)
}

/// Waits for the next window when fewer than 20 seconds of the current one are left.
fn fresh_window() {
    let now = crate::support::now() as u64;
    let left = HOUR - now % HOUR;
    if left < 20 {
        std::thread::sleep(std::time::Duration::from_secs(left + 1));
    }
}

/// A POST of `body` (JSON, or a form when `form` is true) to `path` from `ip`.
fn post_from(app: &TestApp, ip: &str, path: &str, body: &Value) -> Response {
    app.request(Method::POST, path)
        .header("X-Forwarded-For", ip)
        .json(body)
        .send()
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// A form POST to `path` from `ip` (the OAuth2 token endpoint, the mailed links' pages).
fn form_from(app: &TestApp, ip: &str, path: &str, form: &[(&str, &str)]) -> Response {
    app.request(Method::POST, path)
        .header("X-Forwarded-For", ip)
        .form(form)
        .send()
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// One request of each kind, answered as it is when not limited (never 429).
fn login(app: &TestApp, ip: &str) -> Response {
    // A fresh unknown account each time keeps the login throttle out of the way.
    let body = json!({"login": unique_user().username, "password": STRONG_PASSWORD});
    post_from(app, ip, LOGIN, &body)
}

fn refresh(app: &TestApp, ip: &str) -> Response {
    post_from(app, ip, REFRESH, &json!({"refresh_token": "unknown"}))
}

fn register(app: &TestApp, ip: &str) -> Response {
    // An invalid body: 422, and nothing is created.
    post_from(app, ip, REGISTER, &json!({"username": "x"}))
}

fn forgot(app: &TestApp, ip: &str) -> Response {
    post_from(app, ip, FORGOT, &json!({"email": unique_user().email}))
}

fn verify_email(app: &TestApp, ip: &str) -> Response {
    post_from(app, ip, VERIFY_EMAIL, &json!({"token": "unknown"}))
}

/// The answer is not a 429.
fn assert_counted(resp: Response, what: &str) {
    let status = resp.status().as_u16();
    assert_ne!(status, 429, "{what} was limited: {:?}", resp.text());
}

/// The answer is 429 `rate_limited` with a Retry-After within the hour.
fn assert_limited(resp: Response, what: &str) {
    let retry = header(&resp, "retry-after");
    let body = assert_problem(resp, 429, "rate_limited");
    let seconds: u64 = retry
        .unwrap_or_else(|| panic!("{what}: 429 without Retry-After: {body}"))
        .parse()
        .expect("Retry-After in seconds");
    assert!(
        (1..=HOUR).contains(&seconds),
        "{what}: Retry-After {seconds}"
    );
}

api_tests! {
    /// The login group's own limit counts login and the token endpoint on a counter of
    /// its own; refresh, register and forgot share the default counter.
    fn a_group_with_its_own_limit_counts_apart_from_the_default() {
        let app = app_with(&[
            ("PORTCULLIS_RATE_LIMIT", "3/3600"),
            ("PORTCULLIS_RATE_LIMIT_LOGIN", "2/3600"),
        ]);
        fresh_window();
        let ip = unique_ip();
        assert_counted(login(&app, &ip), "login 1");
        let password_grant = [
            ("grant_type", "password"),
            ("username", "nobody_at_all"),
            ("password", STRONG_PASSWORD),
        ];
        assert_counted(form_from(&app, &ip, TOKEN, &password_grant), "token 2");
        assert_limited(login(&app, &ip), "login 3");
        assert_limited(form_from(&app, &ip, TOKEN, &password_grant), "token 4");
        // The default counter is untouched by the logins: three more go through.
        assert_counted(refresh(&app, &ip), "refresh");
        assert_counted(register(&app, &ip), "register");
        assert_counted(forgot(&app, &ip), "forgot");
        assert_limited(verify_email(&app, &ip), "email/verify on the shared counter");
        assert_limited(refresh(&app, &ip), "refresh on the shared counter");
        // Another client has budgets of its own.
        let other = unique_ip();
        assert_counted(login(&app, &other), "another client's login");
        assert_counted(refresh(&app, &other), "another client's refresh");
    }

    /// The second step of a login counts with the logins.
    fn mfa_verify_counts_in_the_login_group() {
        let app = app_with(&[
            ("PORTCULLIS_RATE_LIMIT", "off"),
            ("PORTCULLIS_RATE_LIMIT_LOGIN", "2/3600"),
        ]);
        fresh_window();
        let ip = unique_ip();
        let verify = json!({"mfa_token": "unknown", "code": "123456"});
        assert_counted(post_from(&app, &ip, MFA_VERIFY, &verify), "mfa/verify");
        assert_counted(login(&app, &ip), "login");
        assert_limited(post_from(&app, &ip, MFA_VERIFY, &verify), "mfa/verify again");
        assert_limited(login(&app, &ip), "login again");
    }

    /// The register, password and email groups each count on their own; the
    /// `/reset-password` and `/verify-email` form posts count with their groups.
    fn register_password_and_email_groups_each_count_alone_with_their_form_posts() {
        let app = app_with(&[
            ("PORTCULLIS_RATE_LIMIT", "off"),
            ("PORTCULLIS_RATE_LIMIT_REGISTER", "1/3600"),
            ("PORTCULLIS_RATE_LIMIT_PASSWORD", "2/3600"),
            ("PORTCULLIS_RATE_LIMIT_EMAIL", "2/3600"),
        ]);
        fresh_window();
        let ip = unique_ip();
        assert_counted(register(&app, &ip), "register 1");
        assert_limited(register(&app, &ip), "register 2");

        let reset_form = [("token", "unknown"), ("new_password", "Qz9#vLm2!pRw")];
        assert_counted(form_from(&app, &ip, "/reset-password", &reset_form), "reset form");
        let reset = json!({"token": "unknown", "new_password": "Qz9#vLm2!pRw"});
        assert_counted(post_from(&app, &ip, RESET, &reset), "password/reset");
        assert_limited(forgot(&app, &ip), "password/forgot");

        assert_counted(form_from(&app, &ip, "/verify-email", &[("token", "unknown")]), "form");
        assert_counted(verify_email(&app, &ip), "email/verify");
        assert_limited(verify_email(&app, &ip), "email/verify again");
        assert_limited(form_from(&app, &ip, "/verify-email", &[("token", "x")]), "form again");

        // Groups without a setting of their own follow PORTCULLIS_RATE_LIMIT: off.
        for _ in 0..4 {
            assert_counted(login(&app, &ip), "login with the default off");
            assert_counted(refresh(&app, &ip), "refresh with the default off");
        }
    }

    /// `off` for one group leaves it unlimited while the default still counts.
    fn a_group_turned_off_is_never_limited() {
        let app = app_with(&[
            ("PORTCULLIS_RATE_LIMIT", "1/3600"),
            ("PORTCULLIS_RATE_LIMIT_LOGIN", "off"),
        ]);
        fresh_window();
        let ip = unique_ip();
        for n in 0..4 {
            assert_counted(login(&app, &ip), &format!("login {n}"));
        }
        assert_counted(refresh(&app, &ip), "refresh 1");
        assert_limited(refresh(&app, &ip), "refresh 2");
    }

    /// Two hosts on one database share a group's counter.
    fn a_group_counter_is_shared_by_hosts_on_one_database() {
        let (_database, a, b) = two_hosts(&[
            ("PORTCULLIS_TRUSTED_PROXIES", "127.0.0.1/32"),
            ("PORTCULLIS_RATE_LIMIT", "off"),
            ("PORTCULLIS_RATE_LIMIT_LOGIN", "3/3600"),
        ]);
        fresh_window();
        let ip = unique_ip();
        assert_counted(login(&a, &ip), "login via a");
        assert_counted(login(&b, &ip), "login via b");
        assert_counted(login(&a, &ip), "login via a again");
        assert_limited(login(&b, &ip), "the fourth login in all");
    }

    /// `/api/v1/validation-rules` shows each group's limit in force and whose counter
    /// it counts on; `null` when off.
    fn validation_rules_show_the_limits_in_force() {
        let app = app_with(&[
            ("PORTCULLIS_RATE_LIMIT", "7/30"),
            ("PORTCULLIS_RATE_LIMIT_LOGIN", "3/60"),
            ("PORTCULLIS_RATE_LIMIT_EMAIL", "off"),
        ]);
        let rules = json_body(app.get("/api/v1/validation-rules"), 200);
        let shared = json!({"requests": 7, "seconds": 30, "counter": "default"});
        assert_eq!(
            rules["rate_limits"],
            json!({
                "default": shared,
                "login": {"requests": 3, "seconds": 60, "counter": "login"},
                "register": shared,
                "password": shared,
                "email": null,
            }),
            "{rules}"
        );
    }
}
