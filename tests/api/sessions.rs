//! Refresh tokens, logout, sessions and the device limit, the OAuth2 token endpoint, EdDSA
//! and the JWKS, and access tokens that outlive their session (issue #4), over HTTP only.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::Barrier;
use std::time::Duration;

use reqwest::Method;
use reqwest::blocking::Response;
use serde_json::{Value, json};

use crate::forged_tokens::{JWKS, b64_decode, decode, ed25519, published_jwk};
use crate::support::{
    TEST_JWT_SECRET, TestApp, TestUser, assert_client_error, assert_no_secrets, assert_problem,
    assert_recent_timestamp, header, json_body, parse_utc_timestamp, shared_database, spawn_app,
    unique_suffix,
};

const ME: &str = "/api/v1/users/me";
const PASSWORD: &str = "/api/v1/users/me/password";
const LOGIN: &str = "/api/v1/auth/login";
const REFRESH: &str = "/api/v1/auth/refresh";
const LOGOUT: &str = "/api/v1/auth/logout";
const LOGOUT_ALL: &str = "/api/v1/auth/logout-all";
const TOKEN: &str = "/api/v1/auth/token";
const SESSIONS: &str = "/api/v1/sessions";

/// A new password that passes the `complex` policy for any user of `unique_user`.
const NEW_PASSWORD: &str = "Qz9#vLm2!pRw";

fn text(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string `{field}` in {v}"))
        .to_string()
}

/// One session, as its client holds it.
#[derive(Clone, Debug)]
struct Session {
    access: String,
    refresh: String,
    id: String,
}

impl Session {
    fn of(token_response: &Value) -> Session {
        Session {
            access: text(token_response, "access_token"),
            refresh: text(token_response, "refresh_token"),
            id: text(token_response, "session_id"),
        }
    }
}

/// A new user and the session that registering opened.
fn register(app: &TestApp) -> (TestUser, Session) {
    let (user, _, body) = app.registered_user();
    (user, Session::of(&body))
}

fn login(app: &TestApp, user: &TestUser) -> Session {
    Session::of(&app.login_ok(&user.username, &user.password))
}

fn login_from(
    app: &TestApp,
    user: &TestUser,
    device_name: Option<&str>,
    user_agent: Option<&str>,
) -> Session {
    let mut body = json!({"login": user.username, "password": user.password});
    if let Some(d) = device_name {
        body["device_name"] = json!(d);
    }
    let mut req = app.request(Method::POST, LOGIN).json(&body);
    if let Some(ua) = user_agent {
        req = req.header("User-Agent", ua);
    }
    Session::of(&json_body(req.send().unwrap(), 200))
}

fn post_bearer(app: &TestApp, path: &str, token: &str) -> Response {
    app.request(Method::POST, path)
        .bearer_auth(token)
        .send()
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn delete_session(app: &TestApp, token: &str, id: &str) -> Response {
    app.request(Method::DELETE, &format!("{SESSIONS}/{id}"))
        .bearer_auth(token)
        .send()
        .unwrap()
}

fn assert_status(resp: Response, status: u16, what: &str) {
    let actual = resp.status().as_u16();
    assert_eq!(actual, status, "{what}: {:?}", resp.text());
}

fn refresh(app: &TestApp, refresh_token: &str) -> Response {
    app.post_json(REFRESH, &json!({"refresh_token": refresh_token}))
}

fn assert_no_store(resp: &Response, what: &str) {
    let cc = header(resp, "cache-control").unwrap_or_default();
    assert!(
        cc.to_ascii_lowercase().contains("no-store"),
        "{what}: a response with tokens must carry Cache-Control: no-store, got {cc:?}"
    );
}

/// §3's token response.
fn assert_token_response(body: &Value) {
    assert!(
        body["access_token"].as_str().is_some_and(|t| !t.is_empty()),
        "access_token: {body}"
    );
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert_eq!(body["expires_in"], 900, "{body}");
    assert_eq!(body["refresh_expires_in"], 604_800, "{body}");
    // Opaque, at least 256 bits: 43 base64url characters (64 hex) at the very least.
    let refresh = text(body, "refresh_token");
    assert!(
        refresh.len() >= 43,
        "a refresh token of at least 256 bits, got {refresh:?}"
    );
    assert!(
        body["session_id"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert!(body["user"].is_object(), "{body}");
    assert_no_secrets(&body["user"]);
}

/// Refreshes and insists on a 200 token response with `Cache-Control: no-store`.
fn refresh_ok(app: &TestApp, refresh_token: &str) -> Value {
    let resp = refresh(app, refresh_token);
    if resp.status().as_u16() == 200 {
        assert_no_store(&resp, "refresh");
    }
    let body = json_body(resp, 200);
    assert_token_response(&body);
    body
}

/// Refreshes and insists on 200 (without the default-TTL checks of `refresh_ok`).
fn refresh_ok_with_ttl(app: &TestApp, refresh_token: &str) -> Value {
    json_body(refresh(app, refresh_token), 200)
}

/// Whether `/users/me` accepts the access token (any answer but 200 / 401 `invalid_token`
/// fails the test).
fn access_live(app: &TestApp, access: &str) -> bool {
    let resp = app.get_with_token(ME, access);
    match resp.status().as_u16() {
        200 => true,
        401 => {
            let www = header(&resp, "www-authenticate").unwrap_or_default();
            assert_problem(resp, 401, "invalid_token");
            assert!(www.contains("error=\"invalid_token\""), "{www:?}");
            false
        }
        s => panic!("GET {ME}: expected 200 or 401, got {s}: {:?}", resp.text()),
    }
}

fn assert_live(app: &TestApp, access: &str, what: &str) {
    assert!(
        access_live(app, access),
        "{what}: the access token should work"
    );
}

fn assert_dead(app: &TestApp, access: &str, what: &str) {
    assert!(
        !access_live(app, access),
        "{what}: the access token should get 401 invalid_token"
    );
}

/// 401 `invalid_refresh_token` for `refresh_token` (unknown, or of a session that is gone).
fn assert_refresh_invalid(app: &TestApp, refresh_token: &str, what: &str) {
    let resp = refresh(app, refresh_token);
    let status = resp.status().as_u16();
    if status != 401 {
        panic!(
            "{what}: refresh should be 401 invalid_refresh_token, got {status}: {:?}",
            resp.text()
        );
    }
    assert_problem(resp, 401, "invalid_refresh_token");
}

fn list_sessions(app: &TestApp, access: &str) -> Value {
    let body = json_body(app.get_with_token(SESSIONS, access), 200);
    let sessions = body["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("no `sessions` array: {body}"));
    assert_eq!(
        body["session_count"].as_u64(),
        Some(sessions.len() as u64),
        "session_count is the number of sessions listed: {body}"
    );
    body
}

fn listed_ids(list: &Value) -> Vec<String> {
    list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| text(s, "id"))
        .collect()
}

/// Presents `token` from `n` threads at once; returns (status, body) of each.
fn refresh_race(app: &TestApp, token: &str, n: usize) -> Vec<(u16, Value)> {
    let barrier = Barrier::new(n);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    let resp = refresh(app, token);
                    let status = resp.status().as_u16();
                    let text = resp.text().unwrap_or_default();
                    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
                    (status, body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Ten logins of `user` at once; returns (status, body) of each.
/// `n` logins of `user` at once, spread over `hosts` in turn.
fn login_race(hosts: &[&TestApp], user: &TestUser, n: usize) -> Vec<(u16, Value)> {
    let barrier = Barrier::new(n);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let app = hosts[i % hosts.len()];
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let resp = app.login(&user.username, &user.password);
                    let status = resp.status().as_u16();
                    let text = resp.text().unwrap_or_default();
                    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
                    (status, body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Probes every token; insists that the live ones are exactly the listed sessions and no
/// more than `limit`.
fn assert_at_most_live(app: &TestApp, sessions: &[Session], limit: usize) {
    let live: Vec<&Session> = sessions
        .iter()
        .filter(|s| access_live(app, &s.access))
        .collect();
    assert!(
        !live.is_empty() && live.len() <= limit,
        "{} sessions are live, the limit is {limit}",
        live.len()
    );
    let list = list_sessions(app, &live[0].access);
    let listed: HashSet<String> = listed_ids(&list).into_iter().collect();
    let probed: HashSet<String> = live.iter().map(|s| s.id.clone()).collect();
    assert_eq!(
        listed, probed,
        "the listed sessions are the live ones: {list}"
    );
    assert!(
        list["session_count"].as_u64().unwrap() <= limit as u64,
        "{list}"
    );
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn token_request(app: &TestApp, pairs: &[(&str, &str)]) -> Response {
    let body = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    app.post_raw(
        TOKEN,
        Some("application/x-www-form-urlencoded"),
        body.into_bytes(),
    )
}

/// RFC 6749 §5.1: 200, JSON, `Cache-Control: no-store`.
fn oauth_ok(resp: Response) -> Value {
    if resp.status().as_u16() == 200 {
        assert_no_store(&resp, "token endpoint");
    }
    let body = json_body(resp, 200);
    assert!(
        body["access_token"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert_eq!(body["expires_in"], 900, "{body}");
    assert!(
        body["refresh_token"]
            .as_str()
            .is_some_and(|t| t.len() >= 43),
        "{body}"
    );
    body
}

/// (what, form fields, the expected RFC 6749 `error`).
type OAuthErrorCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);

/// RFC 6749 §5.2: 400 `{"error": "..."}`.
fn assert_oauth_error(resp: Response, error: &str, what: &str) {
    let status = resp.status().as_u16();
    let ct = header(&resp, "content-type").unwrap_or_default();
    let text = resp.text().unwrap_or_default();
    assert_eq!(
        status, 400,
        "{what}: expected 400 {error}, got {status}: {text}"
    );
    assert!(
        ct.to_ascii_lowercase().starts_with("application/json")
            || ct
                .to_ascii_lowercase()
                .starts_with("application/problem+json"),
        "{what}: a JSON error, got Content-Type {ct:?}"
    );
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
    assert_eq!(body["error"], error, "{what}: {body}");
}

/// Checks `token` is an EdDSA access token whose signature verifies with the key the JWKS
/// publishes under its kid; returns the kid.
fn assert_verifies_with_the_jwks(app: &TestApp, token: &str) -> String {
    let (h, _) = decode(token);
    assert_eq!(h["alg"], "EdDSA", "{h}");
    assert_eq!(h["typ"], "at+jwt", "{h}");
    let kid = h["kid"]
        .as_str()
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| panic!("no kid: {h}"))
        .to_string();
    let jwk = published_jwk(app, &kid);
    assert_eq!(jwk["kty"], "OKP", "{jwk}");
    assert_eq!(jwk["crv"], "Ed25519", "{jwk}");
    if let Some(alg) = jwk.get("alg") {
        assert_eq!(alg, "EdDSA", "{jwk}");
    }
    if let Some(u) = jwk.get("use") {
        assert_eq!(u, "sig", "{jwk}");
    }
    let x: [u8; 32] = b64_decode(jwk["x"].as_str().expect("no x"))
        .try_into()
        .unwrap_or_else(|_| panic!("x is not 32 bytes: {jwk}"));
    let (input, sig) = token.rsplit_once('.').unwrap();
    assert!(
        ed25519::verify(&x, input.as_bytes(), &b64_decode(sig)),
        "the token's signature does not verify with the published key {jwk}"
    );
    kid
}

/// Ed25519 test keys in PKCS#8 PEM (`openssl genpkey -algorithm ed25519`), line breaks
/// escaped as `\n`.
const TEST_SIGNING_KEY_A: &str = "-----BEGIN PRIVATE KEY-----\\nMC4CAQAwBQYDK2VwBCIEIB+uK2EanAL44hA9wKby+8jnfIhfm/xBRu7ix77fkAI3\\n-----END PRIVATE KEY-----";
const TEST_SIGNING_KEY_B: &str = "-----BEGIN PRIVATE KEY-----\\nMC4CAQAwBQYDK2VwBCIEIMn5/CcaimbrhP657YK8NqsklmYaI3AYyWyuk45liYEs\\n-----END PRIVATE KEY-----";

/// Runs `portcullis keys rotate` on `database_url` with the settings the suite's apps
/// have; returns the kid it prints.
fn rotate_signing_key(database_url: &str) -> String {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let cache =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("portcullis-component-cache");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.args(["keys", "rotate"])
        .current_dir(data_dir.path())
        .stdin(Stdio::null())
        .env("NO_COLOR", "1");
    for (key, _) in std::env::vars() {
        if key.starts_with("PORTCULLIS_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("PORTCULLIS_DATABASE_URL", database_url)
        .env("PORTCULLIS_DATA_DIR", data_dir.path())
        .env("PORTCULLIS_JWT_SECRET", TEST_JWT_SECRET)
        .env("PORTCULLIS_JWT_ALGORITHM", "EdDSA")
        .env("PORTCULLIS_CACHE_DIR", cache);
    let out = cmd.output().expect("run `portcullis keys rotate`");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "`portcullis keys rotate` failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or_else(|| panic!("`keys rotate` printed no kid:\n{stdout}\n{stderr}"))
        .to_string()
}

/// A 200 JSON body whatever its JSON media type.
fn json_body_any(resp: Response) -> Value {
    let status = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn delete_me(app: &TestApp, access: &str, password: &str) -> Response {
    app.request(Method::DELETE, ME)
        .bearer_auth(access)
        .json(&json!({"password": password}))
        .send()
        .unwrap()
}

fn change_password(app: &TestApp, access: &str, current: &str, new: &str) -> Response {
    app.request(Method::POST, PASSWORD)
        .bearer_auth(access)
        .json(&json!({"current_password": current, "new_password": new}))
        .send()
        .unwrap()
}

api_tests! {
    fn refresh_issues_a_new_token_pair_in_the_same_session() {
        let app = spawn_app();
        let (user, s) = register(&app);
        let body = refresh_ok(&app, &s.refresh);
        let next = Session::of(&body);
        assert_ne!(next.refresh, s.refresh, "the refresh token is rotated");
        assert_ne!(next.access, s.access, "a new access token");
        assert_eq!(next.id, s.id, "refreshing stays in the session: {body}");
        assert_eq!(body["user"]["username"], user.username.as_str(), "{body}");
        let (_, claims) = decode(&next.access);
        assert_eq!(claims["sid"], s.id.as_str(), "{claims}");
        assert_live(&app, &next.access, "the new access token");
        // Refreshing opens no session.
        let list = list_sessions(&app, &next.access);
        assert_eq!(listed_ids(&list), vec![s.id.clone()], "{list}");
        // And the new refresh token refreshes in turn.
        let third = Session::of(&refresh_ok(&app, &next.refresh));
        assert_ne!(third.refresh, next.refresh);
        assert_live(&app, &third.access, "the third access token");
    }

    fn a_spent_refresh_token_presented_again_revokes_its_whole_session() {
        let app = spawn_app();
        let (user, s) = register(&app);
        let other = login(&app, &user);
        let next = Session::of(&refresh_ok(&app, &s.refresh));

        assert_problem(refresh(&app, &s.refresh), 401, "refresh_token_reused");

        // The whole session is gone: its newest refresh token and its access tokens.
        let resp = refresh(&app, &next.refresh);
        let status = resp.status().as_u16();
        assert_eq!(
            status,
            401,
            "the newest refresh token of a session revoked for reuse: {:?}",
            resp.text()
        );
        assert_problem(resp, 401, "invalid_refresh_token");
        assert_dead(&app, &next.access, "the newest access token");
        assert_dead(&app, &s.access, "the first access token");

        // Only that session: the user's other session lives on.
        assert_live(&app, &other.access, "the user's other session");
        let list = list_sessions(&app, &other.access);
        assert_eq!(listed_ids(&list), vec![other.id.clone()], "{list}");
        refresh_ok(&app, &other.refresh);
    }

    fn unknown_or_malformed_refresh_tokens_are_invalid() {
        let app = spawn_app();
        let (_, s) = register(&app);
        let mut flipped: Vec<char> = s.refresh.chars().collect();
        flipped[10] = if flipped[10] == 'a' { 'b' } else { 'a' };
        let flipped: String = flipped.into_iter().collect();
        for (what, token) in [
            ("garbage", "garbage".to_string()),
            (
                "random 43 characters",
                "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5".to_string(),
            ),
            ("one character changed", flipped),
            ("a character more", format!("{}x", s.refresh)),
            (
                "a character less",
                s.refresh[..s.refresh.len() - 1].to_string(),
            ),
            ("the access token", s.access.clone()),
            ("the session id", s.id.clone()),
            ("SQL", "' OR '1'='1".to_string()),
            ("5000 characters", "A".repeat(5000)),
        ] {
            assert_refresh_invalid(&app, &token, what);
        }
        // Not a string at all, or missing: a client error, never a 5xx.
        for body in [
            json!({}),
            json!({"refresh_token": null}),
            json!({"refresh_token": ""}),
            json!({"refresh_token": 1}),
            json!({"refresh_token": [s.refresh]}),
            json!({"refresh_token": {"token": s.refresh}}),
        ] {
            assert_client_error(app.post_json(REFRESH, &body), &format!("refresh {body}"));
        }
        // None of that spent or revoked the real token.
        refresh_ok(&app, &s.refresh);
    }

    fn within_the_reuse_grace_a_spent_token_gets_the_same_successor() {
        // API.md's example is 5 s; 30 s keeps the test clear of a slow machine.
        let app = TestApp::spawn_with(&[("PORTCULLIS_REFRESH_REUSE_GRACE", "30")]);
        let (_, s) = register(&app);
        let first = Session::of(&refresh_ok(&app, &s.refresh));
        let again = Session::of(&refresh_ok(&app, &s.refresh));
        assert_eq!(
            again.refresh, first.refresh,
            "a token presented again within the grace gets the same successor"
        );
        assert_eq!(again.id, s.id);
        assert_live(&app, &first.access, "the first successor's access token");
        assert_live(&app, &again.access, "the second answer's access token");
        // The session lives on: the successor refreshes, once.
        let third = Session::of(&refresh_ok(&app, &first.refresh));
        assert_ne!(third.refresh, first.refresh);
        assert_live(&app, &third.access, "after the grace retry");
    }

    fn the_reuse_grace_does_not_bring_back_a_logged_out_session() {
        // A spent token within the grace gets its successor only while the session lives.
        let app = TestApp::spawn_with(&[("PORTCULLIS_REFRESH_REUSE_GRACE", "30")]);
        let (_, s) = register(&app);
        let next = Session::of(&refresh_ok(&app, &s.refresh));
        assert_status(post_bearer(&app, LOGOUT, &next.access), 204, "logout");
        let resp = refresh(&app, &s.refresh);
        let status = resp.status().as_u16();
        let body = resp.text().unwrap_or_default();
        assert_eq!(
            status, 401,
            "a spent token of a logged-out session, within the grace: {body}"
        );
        let body: Value = serde_json::from_str(&body).unwrap();
        assert!(
            body["code"] == "invalid_refresh_token" || body["code"] == "refresh_token_reused",
            "{body}"
        );
        assert_refresh_invalid(&app, &next.refresh, "the successor, logged out");
    }

    fn a_sessions_lifetime_follows_refresh_ttl() {
        // 60 s is the shortest lifetime the service accepts; expiry itself is not waited
        // for here (revocation is tested instead), only announced.
        let app = TestApp::spawn_with(&[("PORTCULLIS_REFRESH_TTL", "60")]);
        let (_, _, body) = app.registered_user();
        assert_eq!(body["refresh_expires_in"], 60, "{body}");
        let s = Session::of(&body);
        let list = list_sessions(&app, &s.access);
        let session = &list["sessions"][0];
        let created = parse_utc_timestamp(session["created_at"].as_str().unwrap()).unwrap();
        let expires = parse_utc_timestamp(session["expires_at"].as_str().unwrap()).unwrap();
        assert!(
            (expires - created - 60).abs() <= 5,
            "expires_at is created_at + 60 s: {session}"
        );
        assert_eq!(
            refresh_ok_with_ttl(&app, &s.refresh)["refresh_expires_in"],
            60
        );
    }

    fn past_the_reuse_grace_a_spent_token_revokes_the_session() {
        let app = TestApp::spawn_with(&[("PORTCULLIS_REFRESH_REUSE_GRACE", "2")]);
        let (_, s) = register(&app);
        let next = Session::of(&refresh_ok(&app, &s.refresh));
        std::thread::sleep(Duration::from_secs(5));
        assert_problem(refresh(&app, &s.refresh), 401, "refresh_token_reused");
        assert_dead(&app, &next.access, "the successor's access token");
        assert_problem(refresh(&app, &next.refresh), 401, "invalid_refresh_token");
    }

    fn concurrent_refreshes_without_grace_leave_at_most_one_token_family() {
        let app = spawn_app();
        let (_, s) = register(&app);
        let answers = refresh_race(&app, &s.refresh, 8);
        let mut successors = Vec::new();
        let mut reused = false;
        for (status, body) in &answers {
            match status {
                200 => successors.push(Session::of(body)),
                401 => {
                    let code = body["code"].as_str().unwrap_or_default();
                    assert!(
                        code == "refresh_token_reused" || code == "invalid_refresh_token",
                        "a losing refresh: {body}"
                    );
                    reused |= code == "refresh_token_reused";
                }
                _ => panic!("a concurrent refresh got {status}: {body}"),
            }
        }
        assert!(
            successors.len() <= 1,
            "one refresh token was redeemed {} times: {answers:?}",
            successors.len()
        );
        if reused {
            // A loser presented a spent token: the session, the winner's included, is revoked.
            for n in &successors {
                assert_dead(&app, &n.access, "the winner's access token after a reuse");
            }
            assert_dead(&app, &s.access, "the original access token after a reuse");
        }
        // No two live refresh tokens for the session.
        let live = successors
            .iter()
            .filter(|n| refresh(&app, &n.refresh).status().as_u16() == 200)
            .count();
        assert!(live <= 1, "{live} live refresh tokens: {answers:?}");
    }

    fn concurrent_refreshes_within_the_grace_all_get_the_same_successor() {
        // Two tabs refreshing at once, eight times over.
        let app = TestApp::spawn_with(&[("PORTCULLIS_REFRESH_REUSE_GRACE", "30")]);
        let (_, s) = register(&app);
        let answers = refresh_race(&app, &s.refresh, 8);
        let mut successors = HashSet::new();
        for (status, body) in &answers {
            assert_eq!(*status, 200, "a refresh within the grace: {body}");
            assert_eq!(body["session_id"], s.id.as_str(), "{body}");
            successors.insert(text(body, "refresh_token"));
        }
        assert_eq!(
            successors.len(),
            1,
            "every refresh within the grace gets the same successor: {answers:?}"
        );
        let successor = successors.into_iter().next().unwrap();
        let next = Session::of(&refresh_ok(&app, &successor));
        assert_live(&app, &next.access, "the session after the race");
    }

    fn logout_ends_this_session_at_once_and_only_this_one() {
        let app = spawn_app();
        let (user, a) = register(&app);
        let b = login(&app, &user);

        let resp = post_bearer(&app, LOGOUT, &a.access);
        assert_eq!(resp.status().as_u16(), 204, "logout: {:?}", resp.text());
        assert!(resp.text().unwrap().is_empty(), "204 has no body");

        assert_dead(&app, &a.access, "the logged-out session");
        assert_refresh_invalid(&app, &a.refresh, "the logged-out session's refresh token");
        assert_problem(post_bearer(&app, LOGOUT, &a.access), 401, "invalid_token");

        assert_live(&app, &b.access, "the other session");
        let list = list_sessions(&app, &b.access);
        assert_eq!(listed_ids(&list), vec![b.id.clone()], "{list}");
        refresh_ok(&app, &b.refresh);
    }

    fn logout_without_a_token_is_401() {
        let app = spawn_app();
        let resp = app.request(Method::POST, LOGOUT).send().unwrap();
        assert_problem(resp, 401, "unauthorized");
        let resp = app.request(Method::POST, LOGOUT_ALL).send().unwrap();
        assert_problem(resp, 401, "unauthorized");
    }

    fn logout_all_ends_every_session_of_the_user_and_nobody_elses() {
        let app = TestApp::spawn_with(&[("PORTCULLIS_MAX_SESSIONS", "0")]);
        let (user, a) = register(&app);
        let b = login(&app, &user);
        let c = login(&app, &user);
        let (_, stranger) = register(&app);

        let resp = post_bearer(&app, LOGOUT_ALL, &b.access);
        assert_eq!(resp.status().as_u16(), 204, "logout-all: {:?}", resp.text());

        for (what, s) in [("first", &a), ("second (the caller)", &b), ("third", &c)] {
            assert_dead(&app, &s.access, &format!("the {what} session"));
            assert_refresh_invalid(&app, &s.refresh, &format!("the {what} session"));
        }
        assert_live(&app, &stranger.access, "another user");
        refresh_ok(&app, &stranger.refresh);

        // The account itself is fine.
        let d = login(&app, &user);
        let list = list_sessions(&app, &d.access);
        assert_eq!(listed_ids(&list), vec![d.id.clone()], "{list}");
    }

    fn sessions_are_listed_newest_first_with_their_details() {
        let app = TestApp::spawn_with(&[("PORTCULLIS_MAX_SESSIONS", "5")]);
        let (user, s1) = register(&app);
        let s2 = login_from(&app, &user, Some("Alice's phone"), None);
        let agent = "PortcullisTest/1.0 (X11; Linux x86_64)";
        let s3 = login_from(&app, &user, None, Some(agent));
        let s4 = login_from(
            &app,
            &user,
            Some("Work laptop"),
            Some("Mozilla/5.0 Ignored"),
        );

        let list = list_sessions(&app, &s3.access);
        assert_eq!(list["session_count"], 4, "{list}");
        assert_eq!(list["max_sessions"], 5, "{list}");
        assert_eq!(
            listed_ids(&list),
            vec![s4.id.clone(), s3.id.clone(), s2.id.clone(), s1.id.clone()],
            "newest first: {list}"
        );
        let sessions = list["sessions"].as_array().unwrap();
        for (i, s) in sessions.iter().enumerate() {
            assert_eq!(s["is_current"], i == 1, "is_current: {s}");
            assert_eq!(s["ip_address"], "127.0.0.1", "{s}");
            assert_recent_timestamp(&s["created_at"], "created_at", 300);
            assert_recent_timestamp(&s["last_active_at"], "last_active_at", 300);
            let created = parse_utc_timestamp(s["created_at"].as_str().unwrap()).unwrap();
            let active = parse_utc_timestamp(s["last_active_at"].as_str().unwrap()).unwrap();
            let expires = s["expires_at"]
                .as_str()
                .and_then(parse_utc_timestamp)
                .unwrap_or_else(|| panic!("expires_at is not an RFC 3339 UTC time: {s}"));
            assert!(active >= created, "last_active_at before created_at: {s}");
            assert!(
                (expires - created - 604_800).abs() <= 120,
                "a session lasts REFRESH_TTL (604800 s): {s}"
            );
        }
        for w in sessions.windows(2) {
            let a = parse_utc_timestamp(w[0]["created_at"].as_str().unwrap()).unwrap();
            let b = parse_utc_timestamp(w[1]["created_at"].as_str().unwrap()).unwrap();
            assert!(a >= b, "created_at must not increase down the list: {list}");
        }
        assert_eq!(sessions[2]["device_info"], "Alice's phone", "{list}");
        assert_eq!(sessions[1]["device_info"], agent, "{list}");
        assert_eq!(
            sessions[0]["device_info"], "Work laptop",
            "device_name wins over the User-Agent: {list}"
        );
        // Nothing secret in the list.
        assert_no_secrets(&list);
        let raw = list.to_string();
        for s in [&s1, &s2, &s3, &s4] {
            assert!(
                !raw.contains(&s.refresh),
                "a refresh token is listed: {raw}"
            );
            assert!(!raw.contains(&s.access), "an access token is listed: {raw}");
        }

        // From another session, that one is current.
        let list = list_sessions(&app, &s1.access);
        let current: Vec<String> = list["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["is_current"] == true)
            .map(|s| text(s, "id"))
            .collect();
        assert_eq!(current, vec![s1.id.clone()], "{list}");
    }

    fn sessions_of_one_user_are_not_listed_to_another() {
        let app = spawn_app();
        let (_, a) = register(&app);
        let (_, b) = register(&app);
        assert_eq!(listed_ids(&list_sessions(&app, &a.access)), vec![a.id]);
        assert_eq!(listed_ids(&list_sessions(&app, &b.access)), vec![b.id]);
        assert_problem(app.get(SESSIONS), 401, "unauthorized");
    }

    fn deleting_an_own_session_revokes_it_at_once() {
        let app = spawn_app();
        let (user, a) = register(&app);
        let b = login(&app, &user);

        assert_status(
            delete_session(&app, &a.access, &b.id),
            204,
            "DELETE own other session",
        );
        assert_dead(&app, &b.access, "the deleted session");
        assert_refresh_invalid(&app, &b.refresh, "the deleted session");
        assert_live(&app, &a.access, "the caller's session");
        let list = list_sessions(&app, &a.access);
        assert_eq!(listed_ids(&list), vec![a.id.clone()], "{list}");

        // The current session is an own session too.
        assert_status(
            delete_session(&app, &a.access, &a.id),
            204,
            "DELETE own current session",
        );
        assert_dead(&app, &a.access, "the session that deleted itself");
        assert_refresh_invalid(&app, &a.refresh, "the session that deleted itself");
    }

    fn deleting_another_users_or_an_unknown_session_is_404() {
        let app = spawn_app();
        let (_, a) = register(&app);
        let (_, victim) = register(&app);

        assert_problem(
            delete_session(&app, &a.access, &victim.id),
            404,
            "not_found",
        );
        assert_live(&app, &victim.access, "the other user's session");
        assert_eq!(
            listed_ids(&list_sessions(&app, &victim.access)),
            vec![victim.id.clone()]
        );
        refresh_ok(&app, &victim.refresh);

        for unknown in [
            format!("no-such-session-{}", unique_suffix()),
            "00000000-0000-0000-0000-000000000000".to_string(),
            "1".to_string(),
        ] {
            assert_problem(delete_session(&app, &a.access, &unknown), 404, "not_found");
        }
        let resp = app
            .request(Method::DELETE, &format!("{SESSIONS}/{}", victim.id))
            .send()
            .unwrap();
        assert_problem(resp, 401, "unauthorized");
        assert_live(&app, &a.access, "the caller");
    }

    fn by_default_a_third_login_evicts_the_oldest_session() {
        let app = spawn_app();
        let (user, s1) = register(&app);
        let s2 = login(&app, &user);
        let s3 = login(&app, &user);

        assert_dead(&app, &s1.access, "the oldest session, evicted");
        assert_refresh_invalid(&app, &s1.refresh, "the evicted session");
        assert_live(&app, &s2.access, "the second session");
        assert_live(&app, &s3.access, "the newest session");
        let list = list_sessions(&app, &s3.access);
        assert_eq!(list["session_count"], 2, "{list}");
        assert_eq!(list["max_sessions"], 2, "{list}");
        assert_eq!(
            listed_ids(&list),
            vec![s3.id.clone(), s2.id.clone()],
            "{list}"
        );

        // And again: now the second one is the oldest.
        let s4 = login(&app, &user);
        assert_dead(&app, &s2.access, "the second session, evicted in turn");
        assert_live(&app, &s3.access, "the third session");
        assert_live(&app, &s4.access, "the fourth session");
    }

    fn with_the_reject_policy_a_login_over_the_limit_is_409() {
        let app = TestApp::spawn_with(&[
            ("PORTCULLIS_SESSION_LIMIT_POLICY", "reject"),
            ("PORTCULLIS_MAX_SESSIONS", "2"),
        ]);
        let (user, s1) = register(&app);
        let s2 = login(&app, &user);
        assert_problem(
            app.login(&user.username, &user.password),
            409,
            "session_limit_reached",
        );
        assert_live(&app, &s1.access, "the first session");
        assert_live(&app, &s2.access, "the second session");
        assert_eq!(list_sessions(&app, &s1.access)["session_count"], 2);
        // A refresh is no new session.
        let s1 = Session::of(&refresh_ok(&app, &s1.refresh));
        // A logout frees a place.
        assert_status(post_bearer(&app, LOGOUT, &s2.access), 204, "logout");
        let s3 = login(&app, &user);
        assert_live(&app, &s3.access, "a login after a logout");
        assert_live(&app, &s1.access, "the first session, still");
    }

    fn max_sessions_zero_means_unlimited() {
        let app = TestApp::spawn_with(&[("PORTCULLIS_MAX_SESSIONS", "0")]);
        let (user, first) = register(&app);
        let mut all = vec![first];
        for _ in 0..5 {
            all.push(login(&app, &user));
        }
        for (i, s) in all.iter().enumerate() {
            assert_live(&app, &s.access, &format!("session {i}"));
        }
        let list = list_sessions(&app, &all[5].access);
        assert_eq!(list["session_count"], 6, "{list}");
        assert!(
            list["max_sessions"] == 0 || list["max_sessions"].is_null(),
            "max_sessions of an unlimited service: {list}"
        );
    }

    fn concurrent_logins_never_exceed_the_limit_when_evicting() {
        let app = spawn_app();
        let (user, first) = register(&app);
        let answers = login_race(&[&app], &user, 10);
        let mut sessions = vec![first];
        for (status, body) in &answers {
            assert_eq!(*status, 200, "evict_oldest refuses no login: {body}");
            sessions.push(Session::of(body));
        }
        assert_at_most_live(&app, &sessions, 2);
    }

    fn concurrent_logins_spread_over_two_hosts_never_exceed_the_limit() {
        let db = shared_database();
        let a = TestApp::spawn_on(&db.url, &[]);
        let b = TestApp::spawn_on(&db.url, &[]);
        let (user, first) = register(&a);
        let answers = login_race(&[&a, &b], &user, 10);
        let mut sessions = vec![first];
        for (status, body) in &answers {
            assert_eq!(*status, 200, "evict_oldest refuses no login: {body}");
            sessions.push(Session::of(body));
        }
        assert_at_most_live(&a, &sessions, 2);
        assert_at_most_live(&b, &sessions, 2);
    }

    fn concurrent_logins_spread_over_two_hosts_fill_exactly_the_free_places_when_rejecting() {
        let db = shared_database();
        let settings = [("PORTCULLIS_SESSION_LIMIT_POLICY", "reject")];
        let a = TestApp::spawn_on(&db.url, &settings);
        let b = TestApp::spawn_on(&db.url, &settings);
        let (user, first) = register(&a);
        let answers = login_race(&[&a, &b], &user, 10);
        let granted = answers.iter().filter(|(status, _)| *status == 200).count();
        for (status, body) in &answers {
            assert!(
                *status == 200 || (*status == 409 && body["code"] == "session_limit_reached"),
                "a concurrent login got {status}: {body}"
            );
        }
        assert_eq!(granted, 1, "one place was free: {answers:?}");
        assert_live(&b, &first.access, "the first session");
    }

    fn concurrent_logins_never_exceed_the_limit_when_rejecting() {
        let app = TestApp::spawn_with(&[("PORTCULLIS_SESSION_LIMIT_POLICY", "reject")]);
        let (user, first) = register(&app);
        let answers = login_race(&[&app], &user, 10);
        let mut sessions = vec![first];
        for (status, body) in &answers {
            match status {
                200 => sessions.push(Session::of(body)),
                409 => assert_eq!(body["code"], "session_limit_reached", "{body}"),
                _ => panic!("a concurrent login got {status}: {body}"),
            }
        }
        assert_eq!(
            sessions.len(),
            2,
            "one place was free, so exactly one of the ten logins gets it: {answers:?}"
        );
        assert_at_most_live(&app, &sessions, 2);
    }

    fn the_password_grant_issues_an_oauth_token_response() {
        let app = spawn_app();
        let (user, _) = register(&app);
        let body = oauth_ok(token_request(
            &app,
            &[
                ("grant_type", "password"),
                ("username", &user.username),
                ("password", &user.password),
            ],
        ));
        let access = text(&body, "access_token");
        let me = json_body(app.get_with_token(ME, &access), 200);
        assert_eq!(me["username"], user.username.as_str());
        // Its refresh token is an ordinary one.
        let next = Session::of(&refresh_ok(&app, &text(&body, "refresh_token")));
        assert_live(&app, &next.access, "refreshed from a password grant");
    }

    fn the_refresh_token_grant_rotates_and_a_spent_token_is_invalid_grant() {
        let app = spawn_app();
        let (_, s) = register(&app);
        let body = oauth_ok(token_request(
            &app,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &s.refresh),
            ],
        ));
        let new_refresh = text(&body, "refresh_token");
        let new_access = text(&body, "access_token");
        assert_ne!(new_refresh, s.refresh, "rotated");
        assert_live(&app, &new_access, "the access token of a refresh grant");

        assert_oauth_error(
            token_request(
                &app,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &s.refresh),
                ],
            ),
            "invalid_grant",
            "a spent refresh token",
        );
        // §7: presenting a spent refresh token revokes the session, whichever endpoint.
        assert_dead(
            &app,
            &new_access,
            "after a spent token was presented to /auth/token",
        );
        assert_oauth_error(
            token_request(
                &app,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &new_refresh),
                ],
            ),
            "invalid_grant",
            "the successor of a reused token",
        );
    }

    fn token_endpoint_errors_follow_rfc_6749() {
        let app = spawn_app();
        let (user, s) = register(&app);
        let u = user.username.as_str();
        let p = user.password.as_str();
        let nobody = format!("nobody_{}", unique_suffix());
        let cases: Vec<OAuthErrorCase> = vec![
            (
                "a wrong password",
                vec![
                    ("grant_type", "password"),
                    ("username", u),
                    ("password", "Wr0ng!Password#1"),
                ],
                "invalid_grant",
            ),
            (
                "an unknown user",
                vec![
                    ("grant_type", "password"),
                    ("username", &nobody),
                    ("password", p),
                ],
                "invalid_grant",
            ),
            (
                "an unknown refresh token",
                vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", "garbage"),
                ],
                "invalid_grant",
            ),
            (
                "an access token as refresh token",
                vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &s.access),
                ],
                "invalid_grant",
            ),
            (
                "no password",
                vec![("grant_type", "password"), ("username", u)],
                "invalid_request",
            ),
            (
                "no username",
                vec![("grant_type", "password"), ("password", p)],
                "invalid_request",
            ),
            (
                "no refresh_token",
                vec![("grant_type", "refresh_token")],
                "invalid_request",
            ),
            (
                "no grant_type",
                vec![("username", u), ("password", p)],
                "invalid_request",
            ),
            ("an empty body", vec![], "invalid_request"),
            (
                "client_credentials",
                vec![("grant_type", "client_credentials")],
                "unsupported_grant_type",
            ),
            (
                "authorization_code",
                vec![("grant_type", "authorization_code"), ("code", "x")],
                "unsupported_grant_type",
            ),
            (
                "a JWT bearer grant",
                vec![
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", &s.access),
                ],
                "unsupported_grant_type",
            ),
        ];
        for (what, pairs, error) in cases {
            assert_oauth_error(token_request(&app, &pairs), error, what);
        }
        // None of it touched the real session.
        assert_live(&app, &s.access, "the user's session");
        refresh_ok(&app, &s.refresh);
    }

    fn eddsa_tokens_verify_with_a_key_published_in_the_jwks() {
        let app = TestApp::spawn_with(&[("PORTCULLIS_JWT_ALGORITHM", "EdDSA")]);
        let (_, s) = register(&app);
        let kid = assert_verifies_with_the_jwks(&app, &s.access);
        assert_live(&app, &s.access, "an EdDSA token");
        let next = Session::of(&refresh_ok(&app, &s.refresh));
        assert_eq!(assert_verifies_with_the_jwks(&app, &next.access), kid);
        assert_live(&app, &next.access, "a refreshed EdDSA token");

        let resp = app.get(JWKS);
        let ct = header(&resp, "content-type").unwrap_or_default();
        assert!(
            ct.starts_with("application/json") || ct.starts_with("application/jwk-set+json"),
            "JWKS Content-Type: {ct:?}"
        );
        let jwks = json_body_any(resp);
        for k in jwks["keys"].as_array().expect("keys") {
            for private in ["d", "k", "p", "q"] {
                assert!(
                    k.get(private).is_none(),
                    "private key material `{private}` in {k}"
                );
            }
        }
    }

    fn under_eddsa_the_jwks_publishes_the_signing_key_before_any_token_is_issued() {
        // A resource server reads the JWKS when it starts, perhaps before anyone has logged
        // in: the key that will sign must already be there.
        let app = TestApp::spawn_with(&[("PORTCULLIS_JWT_ALGORITHM", "EdDSA")]);
        let before = json_body_any(app.get(JWKS));
        let kids: Vec<Value> = before["keys"]
            .as_array()
            .unwrap_or_else(|| panic!("no keys array: {before}"))
            .iter()
            .map(|k| k["kid"].clone())
            .collect();
        assert!(
            !kids.is_empty(),
            "an EdDSA service publishes no key before its first token: {before}"
        );
        let (_, s) = register(&app);
        let (h, _) = decode(&s.access);
        assert!(
            kids.contains(&h["kid"]),
            "the first token's kid {} was not in the JWKS published before it: {before}",
            h["kid"]
        );
    }

    fn keys_rotate_signs_new_tokens_with_a_new_kid_and_keeps_old_tokens_valid() {
        let db = shared_database();
        let app = TestApp::spawn_on(
            &db.url,
            &[
                ("PORTCULLIS_JWT_ALGORITHM", "EdDSA"),
                ("PORTCULLIS_MAX_SESSIONS", "0"),
            ],
        );
        let (user, old) = register(&app);
        let spare = login(&app, &user);
        let old_kid = assert_verifies_with_the_jwks(&app, &old.access);

        let new_kid = rotate_signing_key(&db.url);
        assert_ne!(new_kid, old_kid, "a new kid");

        // New tokens, from a login or a refresh, carry the new kid.
        let fresh = login(&app, &user);
        assert_eq!(assert_verifies_with_the_jwks(&app, &fresh.access), new_kid);
        assert_live(&app, &fresh.access, "a token signed with the new key");
        let refreshed = Session::of(&refresh_ok(&app, &spare.refresh));
        assert_eq!(
            assert_verifies_with_the_jwks(&app, &refreshed.access),
            new_kid
        );

        // The old token stays valid, and the JWKS lists both keys.
        assert_live(&app, &old.access, "a token signed with the retired key");
        assert_eq!(assert_verifies_with_the_jwks(&app, &old.access), old_kid);
        let jwks = json_body_any(app.get(JWKS));
        let kids: Vec<&Value> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| &k["kid"])
            .collect();
        assert!(
            kids.contains(&&json!(old_kid)) && kids.contains(&&json!(new_kid)),
            "the JWKS lists the retired and the new key: {jwks}"
        );
    }

    /// `PORTCULLIS_JWT_SIGNING_KEY` signs on every host that is given it (one kid), and
    /// another key given later is a rotation: old tokens stay valid.
    fn a_signing_key_given_in_the_settings_signs_and_another_one_rotates() {
        // The key takes over the database's signing keys: not the one other trials share.
        let db = crate::backends::private_database();
        let with_key = |pem: &str| {
            TestApp::spawn_on(
                &db.url,
                &[
                    ("PORTCULLIS_JWT_ALGORITHM", "EdDSA"),
                    ("PORTCULLIS_JWT_SIGNING_KEY", pem),
                    ("PORTCULLIS_MAX_SESSIONS", "0"),
                ],
            )
        };
        // Escaped line breaks, as an environment variable often has to carry them.
        let first = with_key(TEST_SIGNING_KEY_A);
        let second = with_key(&TEST_SIGNING_KEY_A.replace("\\n", "\n"));
        let (user, old) = register(&first);
        let old_kid = assert_verifies_with_the_jwks(&first, &old.access);
        let on_second = login(&second, &user);
        assert_eq!(assert_verifies_with_the_jwks(&second, &on_second.access), old_kid);

        let rotated = with_key(TEST_SIGNING_KEY_B);
        let fresh = login(&rotated, &user);
        let new_kid = assert_verifies_with_the_jwks(&rotated, &fresh.access);
        assert_ne!(new_kid, old_kid, "another key, another kid");
        assert_live(&rotated, &old.access, "a token signed with the previous key");
        assert_live(&first, &fresh.access, "a token signed with the new key");
    }

    fn under_hs256_the_jwks_is_empty() {
        let app = spawn_app();
        let jwks = json_body_any(app.get(JWKS));
        assert_eq!(
            jwks,
            json!({"keys": []}),
            "no keys, and above all no secret"
        );
    }

    fn deleting_the_account_kills_every_token_at_once() {
        let app = spawn_app();
        let (user, a) = register(&app);
        let b = login(&app, &user);

        assert_problem(
            delete_me(&app, &a.access, "Wr0ng!Password#1"),
            401,
            "invalid_credentials",
        );
        assert_live(&app, &a.access, "after a refused deletion");

        assert_status(
            delete_me(&app, &a.access, &user.password),
            204,
            "DELETE /users/me",
        );
        for (what, s) in [("the caller's session", &a), ("the other session", &b)] {
            assert_dead(&app, &s.access, what);
            assert_refresh_invalid(&app, &s.refresh, what);
        }
        assert_problem(
            app.login(&user.username, &user.password),
            401,
            "invalid_credentials",
        );
    }

    fn a_password_change_revokes_every_other_session() {
        let app = spawn_app();
        let (user, a) = register(&app);
        let b = login(&app, &user);

        assert_problem(
            change_password(&app, &a.access, "Wr0ng!Password#1", NEW_PASSWORD),
            401,
            "invalid_credentials",
        );
        assert_live(&app, &b.access, "after a refused change");

        assert_status(
            change_password(&app, &a.access, &user.password, NEW_PASSWORD),
            204,
            "password change",
        );
        assert_live(&app, &a.access, "the session that changed the password");
        assert_dead(&app, &b.access, "another session");
        assert_refresh_invalid(&app, &b.refresh, "another session");
        let a2 = Session::of(&refresh_ok(&app, &a.refresh));
        assert_eq!(
            listed_ids(&list_sessions(&app, &a2.access)),
            vec![a.id.clone()]
        );

        assert_problem(
            app.login(&user.username, &user.password),
            401,
            "invalid_credentials",
        );
        app.login_ok(&user.username, NEW_PASSWORD);
    }
}
