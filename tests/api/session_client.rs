//! What a client does with its sessions, over HTTP only, for the `revocation`, `audit`
//! and `eviction` tests: the tokens of one session ([`Session`]), log out, refresh,
//! delete a session, change the password, two hosts on one database, and whether an
//! access or refresh token still works.

use reqwest::Method;
use reqwest::blocking::Response;
use serde_json::{Value, json};

use crate::support::{SharedDatabase, TestApp, TestUser, assert_problem, shared_database};

const ME: &str = "/api/v1/users/me";
pub const LOGOUT: &str = "/api/v1/auth/logout";
pub const LOGOUT_ALL: &str = "/api/v1/auth/logout-all";
const REFRESH: &str = "/api/v1/auth/refresh";
const PASSWORD: &str = "/api/v1/users/me/password";
pub const SESSIONS: &str = "/api/v1/sessions";

/// A new password that passes the `complex` policy for any user of `unique_user`.
pub const NEW_PASSWORD: &str = "Qz9#vLm2!pRw";

/// One session, as its client holds it.
#[derive(Clone, Debug)]
pub struct Session {
    pub access: String,
    pub refresh: String,
    pub id: String,
}

impl Session {
    /// The session of a token response (register, login, refresh).
    pub fn of(token_response: &Value) -> Session {
        let field = |name: &str| {
            token_response[name]
                .as_str()
                .unwrap_or_else(|| panic!("no string `{name}` in {token_response}"))
                .to_owned()
        };
        Session {
            access: field("access_token"),
            refresh: field("refresh_token"),
            id: field("session_id"),
        }
    }
}

/// Two hosts on one database (the database lives as long as the first member).
pub fn two_hosts(settings: &[(&str, &str)]) -> (SharedDatabase, TestApp, TestApp) {
    let database = shared_database();
    let a = TestApp::spawn_on(&database.url, settings);
    let b = TestApp::spawn_on(&database.url, settings);
    (database, a, b)
}

/// A fresh user registered through `app`, and the session registering opened.
pub fn register(app: &TestApp) -> (TestUser, Session) {
    let (user, _, body) = app.registered_user();
    (user, Session::of(&body))
}

/// A new session of `user` through `app`.
pub fn login(app: &TestApp, user: &TestUser) -> Session {
    Session::of(&app.login_ok(&user.username, &user.password))
}

/// A POST without a body, with a bearer token (logout, logout-all).
pub fn post_bearer(app: &TestApp, path: &str, token: &str) -> Response {
    app.request(Method::POST, path)
        .bearer_auth(token)
        .send()
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

pub fn delete_session(app: &TestApp, token: &str, id: &str) -> Response {
    let path = format!("{SESSIONS}/{id}");
    app.request(Method::DELETE, &path)
        .bearer_auth(token)
        .send()
        .unwrap_or_else(|e| panic!("DELETE {path}: {e}"))
}

pub fn refresh(app: &TestApp, refresh_token: &str) -> Response {
    app.post_json(REFRESH, &json!({"refresh_token": refresh_token}))
}

/// Refreshes and insists on 200; returns the session's new tokens.
pub fn refresh_ok(app: &TestApp, refresh_token: &str) -> Session {
    let resp = refresh(app, refresh_token);
    let status = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    assert_eq!(status, 200, "refresh: {text}");
    Session::of(&serde_json::from_str(&text).expect("refresh: body is not JSON"))
}

pub fn change_password(app: &TestApp, access: &str, current: &str, new: &str) -> Response {
    app.request(Method::POST, PASSWORD)
        .bearer_auth(access)
        .json(&json!({"current_password": current, "new_password": new}))
        .send()
        .unwrap_or_else(|e| panic!("POST {PASSWORD}: {e}"))
}

/// Insists on `status` (an answer without a body, such as 204).
pub fn assert_status(resp: Response, status: u16, what: &str) {
    let actual = resp.status().as_u16();
    assert_eq!(actual, status, "{what}: {:?}", resp.text());
}

/// The access token works on `app` (`GET /users/me` is 200).
pub fn assert_live(app: &TestApp, access: &str, what: &str) {
    let resp = app.get_with_token(ME, access);
    let status = resp.status().as_u16();
    assert_eq!(
        status,
        200,
        "{what}: the access token should work on {}: {:?}",
        app.address,
        resp.text()
    );
}

/// The access token is refused on `app` (401 `invalid_token`).
pub fn assert_dead(app: &TestApp, access: &str, what: &str) {
    let resp = app.get_with_token(ME, access);
    if resp.status().as_u16() != 401 {
        panic!(
            "{what}: the access token should be refused on {}, got {}: {:?}",
            app.address,
            resp.status(),
            resp.text()
        );
    }
    assert_problem(resp, 401, "invalid_token");
}

/// The refresh token is refused on `app` (401 `invalid_refresh_token`).
pub fn assert_refresh_dead(app: &TestApp, refresh_token: &str, what: &str) {
    let resp = refresh(app, refresh_token);
    if resp.status().as_u16() != 401 {
        panic!(
            "{what}: the refresh token should be refused on {}, got {}: {:?}",
            app.address,
            resp.status(),
            resp.text()
        );
    }
    assert_problem(resp, 401, "invalid_refresh_token");
}
