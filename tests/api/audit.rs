//! The audit log's session and login events (API.md §5): `login`, `logout`,
//! `logout_all`, `refresh`, `refresh_token_reused`, `session_revoked`,
//! `session_evicted`, `login_failed` and the login throttle's `rate_limited`, each about
//! the right account, as `GET /api/v1/admin/audit` lists them; and nothing the test sent
//! or got as a secret (passwords, access and refresh tokens, their SHA-256 hashes, a
//! password hash) appears anywhere in the listing. The listing's shape, filters and
//! paging, and the admin's own events, are in `admin`.

use reqwest::Method;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::session_client::{
    LOGOUT, LOGOUT_ALL, Session, assert_status, delete_session, login, post_bearer, refresh,
    refresh_ok,
};
use crate::support::{
    TestApp, assert_no_secrets, assert_problem, json_body, now, parse_utc_timestamp, unique_suffix,
    unique_user,
};

const AUDIT: &str = "/api/v1/admin/audit";

/// Failed logins after which the throttle answers 429 (the default).
const THRESHOLD: usize = 5;

/// An app with a bootstrap admin (API.md §1 `PORTCULLIS_ADMIN_*`); returns the app and
/// the admin's access token.
fn admin_app() -> (TestApp, String) {
    let admin = unique_user();
    let app = TestApp::spawn_with(&[
        ("PORTCULLIS_ADMIN_USERNAME", admin.username.as_str()),
        ("PORTCULLIS_ADMIN_EMAIL", admin.email.as_str()),
        ("PORTCULLIS_ADMIN_PASSWORD", admin.password.as_str()),
    ]);
    let token = Session::of(&app.login_ok(&admin.username, &admin.password)).access;
    (app, token)
}

/// Every audit event matching `query` recorded since `since` (seconds since the epoch),
/// newest first, page by page.
fn audit_since(app: &TestApp, token: &str, query: &[(&str, &str)], since: i64) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut request = app
            .request(Method::GET, AUDIT)
            .bearer_auth(token)
            .query(query)
            .query(&[("limit", "100")]);
        if let Some(c) = &cursor {
            request = request.query(&[("cursor", c)]);
        }
        let page = json_body(request.send().expect("GET the audit log"), 200);
        for event in page["events"].as_array().expect("an `events` array") {
            let at = event["at"].as_str().and_then(parse_utc_timestamp);
            if at.is_some_and(|at| at < since) {
                return events;
            }
            events.push(event.clone());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return events,
        }
    }
}

/// The events named `name` about `user_id` (`Value::Null`: about no account); at least
/// one.
fn events_about<'a>(events: &'a [Value], name: &str, user_id: &Value) -> Vec<&'a Value> {
    let found: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == name && &e["user_id"] == user_id)
        .collect();
    assert!(
        !found.is_empty(),
        "no `{name}` event about {user_id}: {events:#?}"
    );
    found
}

/// No event holds any of `secrets`, nor the hex SHA-256 of one (how tokens are stored),
/// nor a secret-looking field or password hash.
fn assert_no_secret_in(events: &[Value], secrets: &[String]) {
    let text = serde_json::to_string(events).unwrap();
    for secret in secrets {
        let hash: String = Sha256::digest(secret.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        for leaked in [secret, &hash] {
            assert!(
                !text.contains(leaked.as_str()),
                "the audit log holds {leaked:?} (of the secret {secret:?}): {text}"
            );
        }
    }
    events.iter().for_each(assert_no_secrets);
}

/// Every token of `sessions`.
fn tokens(sessions: &[&Session]) -> Vec<String> {
    sessions
        .iter()
        .flat_map(|s| [s.access.clone(), s.refresh.clone()])
        .collect()
}

/// Wrong passwords for `login` until the throttle answers 429 (after [`THRESHOLD`],
/// or a few more when the attempts are slow); returns the passwords tried.
fn fail_until_throttled(app: &TestApp, login: &str) -> Vec<String> {
    let mut tried = Vec::new();
    for _ in 0..THRESHOLD + 4 {
        let wrong = format!("Wr0ng!{}", unique_suffix());
        let resp = app.login(login, &wrong);
        tried.push(wrong);
        if resp.status().as_u16() == 429 {
            return tried;
        }
        assert_problem(resp, 401, "invalid_credentials");
    }
    panic!(
        "{login:?} was never throttled after {} failures",
        tried.len()
    );
}

api_tests! {
    /// A user's session life (login, eviction by the device limit, refresh, reuse,
    /// deleting a session, logout, logout-all) is audited about that user, and no token
    /// or password is in the log.
    fn session_events_are_audited_about_their_user_without_secrets() {
        let since = now() - 1;
        let (app, admin_token) = admin_app();
        let (user, _, body) = app.registered_user();
        let (id, s0) = (body["user"]["id"].clone(), Session::of(&body));
        let s1 = login(&app, &user);
        // s0 and s1 fill the 2 places: the next login evicts s0.
        let s2 = login(&app, &user);
        let s2b = refresh_ok(&app, &s2.refresh);
        assert_problem(refresh(&app, &s2.refresh), 401, "refresh_token_reused");
        let s3 = login(&app, &user);
        let s4 = login(&app, &user);
        assert_status(delete_session(&app, &s3.access, &s4.id), 204, "DELETE a session");
        assert_status(post_bearer(&app, LOGOUT, &s3.access), 204, "logout");
        let s5 = login(&app, &user);
        assert_status(post_bearer(&app, LOGOUT_ALL, &s5.access), 204, "logout-all");

        let events = audit_since(&app, &admin_token, &[("user_id", id.as_str().unwrap())], since);
        for name in [
            "login",
            "session_evicted",
            "refresh",
            "refresh_token_reused",
            "session_revoked",
            "logout",
            "logout_all",
        ] {
            events_about(&events, name, &id);
        }
        let mut secrets = tokens(&[&s0, &s1, &s2, &s2b, &s3, &s4, &s5]);
        secrets.extend([user.password.clone(), admin_token.clone()]);
        assert_no_secret_in(&audit_since(&app, &admin_token, &[], since), &secrets);
    }

    /// Failed logins are audited (`login_failed`) and the throttle's refusals too
    /// (`rate_limited`, detail `limit: "login"`): about the account when it exists,
    /// about no account when the login names none; no password tried is in the log.
    fn failed_and_throttled_logins_are_audited_without_the_passwords() {
        let since = now() - 1;
        let (app, admin_token) = admin_app();
        let (user, _, body) = app.registered_user();
        let id = body["user"]["id"].clone();
        let unknown = unique_user().username;
        let mut secrets = fail_until_throttled(&app, &user.username);
        secrets.extend(fail_until_throttled(&app, &unknown));
        secrets.extend([user.password.clone(), admin_token.clone()]);

        let events = audit_since(&app, &admin_token, &[], since);
        for about in [&id, &Value::Null] {
            events_about(&events, "login_failed", about);
            let limited = events_about(&events, "rate_limited", about);
            assert!(
                limited.iter().any(|e| e["detail"]["limit"] == "login"),
                "no `rate_limited` event with limit \"login\" about {about}: {limited:#?}"
            );
        }
        assert_no_secret_in(&events, &secrets);
    }
}
