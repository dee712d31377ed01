//! Browser sessions with cookies (`PORTCULLIS_COOKIE_SESSIONS`): the refresh token only in
//! an HttpOnly cookie, the double-submit CSRF check on every cookie-authenticated
//! request (refresh and logout by cookie), rotation, reuse and grace as with JSON, the
//! cookies cleared at logout, `Secure` behind https, and CORS with credentials.
//!
//! The client here is plain HTTP: it keeps the cookies it is given and sends them back
//! in a `Cookie` header, as a browser would for the API's origin (`browser` drives a
//! real one).

use std::collections::BTreeMap;

use cookie::Cookie;
use reqwest::Method;
use reqwest::blocking::Response;
use serde_json::{Value, json};

use crate::session_client::{LOGOUT, LOGOUT_ALL, post_bearer};
use crate::support::{TestApp, assert_problem, header, json_body, spawn_app, unique_user};

const LOGIN: &str = "/api/v1/auth/login";
const REGISTER: &str = "/api/v1/auth/register";
const REFRESH: &str = "/api/v1/auth/refresh";
const ME: &str = "/api/v1/users/me";
const REFRESH_COOKIE: &str = "portcullis_refresh";
const CSRF_COOKIE: &str = "portcullis_csrf";
/// `PORTCULLIS_REFRESH_TTL` in these tests: the cookies' `Max-Age`.
const REFRESH_TTL: &str = "7200";
/// The web app's origin allowed by CORS in these tests.
const APP_ORIGIN: &str = "http://app.example.test:5173";

/// Cookie sessions on, and CORS for [`APP_ORIGIN`].
fn cookie_app(extra: &[(&str, &str)]) -> TestApp {
    let mut settings = vec![
        ("PORTCULLIS_COOKIE_SESSIONS", "true"),
        ("PORTCULLIS_REFRESH_TTL", REFRESH_TTL),
        ("PORTCULLIS_CORS_ORIGINS", APP_ORIGIN),
    ];
    settings.extend_from_slice(extra);
    TestApp::spawn_with(&settings)
}

/// The cookies a browser holds for the API: name → value.
#[derive(Clone, Debug, Default)]
struct Jar(BTreeMap<String, String>);

impl Jar {
    /// Takes in the `Set-Cookie` headers of an answer (`Max-Age=0` removes).
    fn take(&mut self, resp: &Response) {
        for cookie in set_cookies(resp) {
            if cookie.max_age().is_some_and(|age| age.is_zero()) {
                self.0.remove(cookie.name());
            } else {
                self.0
                    .insert(cookie.name().to_string(), cookie.value().to_string());
            }
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn csrf(&self) -> String {
        self.get(CSRF_COOKIE).expect("no CSRF cookie").to_string()
    }

    /// The `Cookie` request header.
    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The `Set-Cookie` headers of an answer, parsed.
fn set_cookies(resp: &Response) -> Vec<Cookie<'static>> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| {
            let text = value.to_str().expect("Set-Cookie is not text").to_string();
            Cookie::parse(text).expect("Set-Cookie does not parse")
        })
        .collect()
}

/// The raw `Set-Cookie` header that sets `name`.
fn raw_set_cookie(resp: &Response, name: &str) -> String {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no Set-Cookie for {name}"))
        .to_string()
}

/// A login that asks for a cookie session.
fn cookie_login(app: &TestApp, login: &str, password: &str) -> Response {
    app.request(Method::POST, LOGIN)
        .header("X-Portcullis-Session", "cookie")
        .json(&json!({"login": login, "password": password}))
        .send()
        .expect("login")
}

/// A registered user logged in with a cookie session: its jar and the token answer.
fn cookie_session(app: &TestApp) -> (Jar, Value) {
    let user = unique_user();
    app.register_user(&user);
    let resp = cookie_login(app, &user.username, &user.password);
    let mut jar = Jar::default();
    jar.take(&resp);
    (jar, json_body(resp, 200))
}

/// `POST /auth/refresh` as a browser sends it: the jar's cookies, `body` (none when
/// `None`), and `csrf` as `X-CSRF-Token` when given.
fn refresh_with(app: &TestApp, jar: &Jar, body: Option<&str>, csrf: Option<&str>) -> Response {
    let mut builder = app
        .request(Method::POST, REFRESH)
        .header("Cookie", jar.header());
    if let Some(body) = body {
        builder = builder
            .header("Content-Type", "application/json")
            .body(body.to_string());
    }
    if let Some(csrf) = csrf {
        builder = builder.header("X-CSRF-Token", csrf);
    }
    builder.send().expect("refresh")
}

/// A refresh by cookie with the right CSRF header; the jar takes the new cookies.
fn refresh_by_cookie(app: &TestApp, jar: &mut Jar) -> Value {
    let resp = refresh_with(app, jar, None, Some(&jar.csrf()));
    jar.take(&resp);
    json_body(resp, 200)
}

/// `POST /auth/logout` with the jar's cookies and no bearer token.
fn logout_by_cookie(app: &TestApp, jar: &Jar, csrf: Option<&str>) -> Response {
    let mut builder = app
        .request(Method::POST, LOGOUT)
        .header("Cookie", jar.header());
    if let Some(csrf) = csrf {
        builder = builder.header("X-CSRF-Token", csrf);
    }
    builder.send().expect("logout")
}

/// The body is a token response without `refresh_token`; returns the access token.
fn assert_cookie_token_response(body: &Value) -> String {
    assert!(
        body.get("refresh_token").is_none(),
        "refresh_token in {body}"
    );
    for field in [
        "token_type",
        "expires_in",
        "refresh_expires_in",
        "session_id",
        "user",
    ] {
        assert!(body.get(field).is_some(), "no {field} in {body}");
    }
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {body}"))
        .to_string()
}

/// Both cookies are removed (`Max-Age=0`) by this answer.
fn assert_cookies_cleared(resp: &Response) {
    let cleared: Vec<String> = set_cookies(resp)
        .iter()
        .filter(|cookie| cookie.max_age().is_some_and(|age| age.is_zero()))
        .map(|cookie| cookie.name().to_string())
        .collect();
    for name in [REFRESH_COOKIE, CSRF_COOKIE] {
        assert!(cleared.iter().any(|c| c == name), "{name} not cleared");
    }
}

fn assert_works(app: &TestApp, access: &str) {
    assert_eq!(app.get_with_token(ME, access).status(), 200, "access token");
}

api_tests! {
    /// A login with `X-Portcullis-Session: cookie` puts the refresh token in an HttpOnly,
    /// SameSite=Strict cookie on `/api/v1/auth` and adds a readable CSRF cookie of at least
    /// 128 bits, both for the refresh lifetime; the body has every other field.
    fn a_cookie_login_sets_the_cookies_exactly_and_keeps_the_token_out_of_the_body() {
        let app = cookie_app(&[]);
        let user = unique_user();
        app.register_user(&user);
        let resp = cookie_login(&app, &user.username, &user.password);
        assert_eq!(header(&resp, "cache-control").as_deref(), Some("no-store"));
        let refresh = raw_set_cookie(&resp, REFRESH_COOKIE);
        let csrf = raw_set_cookie(&resp, CSRF_COOKIE);
        let mut jar = Jar::default();
        jar.take(&resp);
        let body = json_body(resp, 200);
        let access = assert_cookie_token_response(&body);
        assert_works(&app, &access);
        let token = jar.get(REFRESH_COOKIE).expect("refresh cookie");
        assert_eq!(
            refresh,
            format!(
                "portcullis_refresh={token}; HttpOnly; SameSite=Strict; Path=/api/v1/auth; \
                 Max-Age={REFRESH_TTL}"
            )
        );
        let csrf_value = jar.csrf();
        assert_eq!(
            csrf,
            format!("portcullis_csrf={csrf_value}; SameSite=Strict; Path=/; Max-Age={REFRESH_TTL}")
        );
        // URL-safe base64 of at least 16 bytes.
        assert!(csrf_value.len() >= 22, "CSRF value {csrf_value:?} too short");
        assert!(!body.to_string().contains(token), "the refresh token leaked: {body}");
        // The cookie's token is a working refresh token.
        let fresh = app.post_json(REFRESH, &json!({"refresh_token": token}));
        json_body(fresh, 200);
    }

    /// The second step of a login with two factors opens its session in cookies too.
    fn mfa_verify_with_the_header_opens_a_cookie_session() {
        let app = cookie_app(&[]);
        let (user, token, _) = app.registered_user();
        let (_, recovery_codes) = crate::mfa::enable(&app, &user, &token);
        let ticket = crate::mfa::mfa_token(&app, &user);
        let resp = app
            .request(Method::POST, "/api/v1/auth/mfa/verify")
            .header("X-Portcullis-Session", "cookie")
            .json(&json!({"mfa_token": ticket, "code": recovery_codes[0]}))
            .send()
            .expect("mfa/verify");
        let mut jar = Jar::default();
        jar.take(&resp);
        assert_works(&app, &assert_cookie_token_response(&json_body(resp, 200)));
        let body = refresh_by_cookie(&app, &mut jar);
        assert_works(&app, &assert_cookie_token_response(&body));
    }

    /// Without the header nothing changes: no cookie, the token in the body.
    fn without_the_header_the_answer_is_as_always() {
        let app = cookie_app(&[]);
        let user = unique_user();
        app.register_user(&user);
        let resp = app.login(&user.username, &user.password);
        assert!(set_cookies(&resp).is_empty(), "cookies without the header");
        let body = json_body(resp, 200);
        assert!(body["refresh_token"].is_string(), "{body}");
    }

    /// With the setting off (the default), the header is ignored, and an empty refresh
    /// body is refused as before.
    fn with_the_setting_off_the_header_is_ignored() {
        let app = spawn_app();
        let user = unique_user();
        app.register_user(&user);
        let resp = cookie_login(&app, &user.username, &user.password);
        assert!(set_cookies(&resp).is_empty(), "cookies with the setting off");
        let body = json_body(resp, 200);
        assert!(body["refresh_token"].is_string(), "{body}");
        let jar = Jar(BTreeMap::from([
            (REFRESH_COOKIE.to_string(), body["refresh_token"].as_str().unwrap().to_string()),
            (CSRF_COOKIE.to_string(), "x".repeat(22)),
        ]));
        let resp = refresh_with(&app, &jar, Some("{}"), Some(&"x".repeat(22)));
        assert_ne!(resp.status(), 200, "a refresh by cookie with the setting off");
        let rules = json_body(app.get("/api/v1/validation-rules"), 200);
        assert_eq!(rules["sessions"]["cookie_sessions"], false, "{rules}");
    }

    /// Registering with the header signs in with cookies; a registration that waits for
    /// email verification sets none.
    fn registration_signs_in_with_cookies_unless_verification_is_required() {
        let app = cookie_app(&[]);
        let user = unique_user();
        let register = |app: &TestApp, user: &crate::support::TestUser| {
            app.request(Method::POST, REGISTER)
                .header("X-Portcullis-Session", "cookie")
                .json(&json!({
                    "username": user.username, "email": user.email, "password": user.password
                }))
                .send()
                .expect("register")
        };
        let resp = register(&app, &user);
        let mut jar = Jar::default();
        jar.take(&resp);
        let body = json_body(resp, 201);
        assert_eq!(body["verification_required"], false, "{body}");
        assert_works(&app, &assert_cookie_token_response(&body));
        assert!(jar.get(REFRESH_COOKIE).is_some() && jar.get(CSRF_COOKIE).is_some());

        let pending = cookie_app(&[("PORTCULLIS_REQUIRE_EMAIL_VERIFICATION", "true")]);
        let resp = register(&pending, &unique_user());
        assert!(set_cookies(&resp).is_empty(), "cookies for a pending registration");
        assert_eq!(json_body(resp, 201)["verification_required"], true);
    }

    /// A refresh with an empty body, or `{}`, and the CSRF header takes the refresh
    /// cookie, answers without `refresh_token` and rotates both cookies; the spent cookie
    /// presented again is reuse and revokes the session.
    fn refresh_by_cookie_rotates_both_cookies_and_reuse_revokes_the_session() {
        let app = cookie_app(&[]);
        let (mut jar, _) = cookie_session(&app);
        let first = jar.clone();
        let body = refresh_by_cookie(&app, &mut jar);
        assert_works(&app, &assert_cookie_token_response(&body));
        assert_ne!(jar.get(REFRESH_COOKIE), first.get(REFRESH_COOKIE), "not rotated");
        assert_ne!(jar.get(CSRF_COOKIE), first.get(CSRF_COOKIE), "CSRF not rotated");
        // `{}` works the same.
        let second = jar.clone();
        let resp = refresh_with(&app, &jar, Some("{}"), Some(&jar.csrf()));
        jar.take(&resp);
        let access = assert_cookie_token_response(&json_body(resp, 200));
        assert_ne!(jar.get(REFRESH_COOKIE), second.get(REFRESH_COOKIE));
        // The first cookie again: reuse.
        let resp = refresh_with(&app, &first, None, Some(&first.csrf()));
        assert_cookies_cleared(&resp);
        assert_problem(resp, 401, "refresh_token_reused");
        assert_problem(app.get_with_token(ME, &access), 401, "invalid_token");
        let resp = refresh_with(&app, &jar, None, Some(&jar.csrf()));
        assert_problem(resp, 401, "invalid_refresh_token");
    }

    /// A refresh by cookie without `X-CSRF-Token`, with a wrong one, or without the CSRF
    /// cookie is 403 `csrf_failed` and spends nothing.
    fn refresh_by_cookie_needs_the_csrf_header_to_repeat_the_csrf_cookie() {
        let app = cookie_app(&[]);
        let (mut jar, _) = cookie_session(&app);
        let csrf = jar.csrf();
        let mut wrong = csrf.clone();
        wrong.replace_range(0..1, if csrf.starts_with('A') { "B" } else { "A" });
        for (what, header) in [("none", None), ("wrong", Some(wrong.as_str())), ("empty", Some(""))] {
            let resp = refresh_with(&app, &jar, None, header);
            let body = assert_problem(resp, 403, "csrf_failed");
            assert!(body.get("refresh_token").is_none(), "{what}: {body}");
        }
        let mut no_csrf_cookie = jar.clone();
        no_csrf_cookie.0.remove(CSRF_COOKIE);
        assert_problem(refresh_with(&app, &no_csrf_cookie, Some("{}"), Some(&csrf)), 403, "csrf_failed");
        // Nothing was spent.
        let body = refresh_by_cookie(&app, &mut jar);
        assert_works(&app, &assert_cookie_token_response(&body));
    }

    /// Neither a body token nor the refresh cookie: 401 `invalid_refresh_token`.
    fn refresh_without_a_token_or_a_cookie_is_an_invalid_refresh_token() {
        let app = cookie_app(&[]);
        let empty = Jar::default();
        assert_problem(refresh_with(&app, &empty, None, None), 401, "invalid_refresh_token");
        let csrf_only = Jar(BTreeMap::from([(CSRF_COOKIE.to_string(), "c".repeat(22))]));
        let resp = refresh_with(&app, &csrf_only, Some("{}"), Some(&"c".repeat(22)));
        assert_problem(resp, 401, "invalid_refresh_token");
        let unknown = Jar(BTreeMap::from([
            (REFRESH_COOKIE.to_string(), "no-such-token".to_string()),
            (CSRF_COOKIE.to_string(), "c".repeat(22)),
        ]));
        let resp = refresh_with(&app, &unknown, None, Some(&"c".repeat(22)));
        assert_problem(resp, 401, "invalid_refresh_token");
    }

    /// A body token wins over the cookie and needs no CSRF header; with the session
    /// header its answer goes into cookies too.
    fn a_refresh_token_in_the_body_is_a_json_refresh() {
        let app = cookie_app(&[]);
        let (jar, _) = cookie_session(&app);
        let token = jar.get(REFRESH_COOKIE).unwrap().to_string();
        let resp = app
            .request(Method::POST, REFRESH)
            .header("Cookie", jar.header())
            .header("X-Portcullis-Session", "cookie")
            .json(&json!({"refresh_token": token}))
            .send()
            .unwrap();
        let mut rotated = jar.clone();
        rotated.take(&resp);
        assert_cookie_token_response(&json_body(resp, 200));
        assert_ne!(rotated.get(REFRESH_COOKIE), jar.get(REFRESH_COOKIE));
        let body = json_body(
            app.post_json(REFRESH, &json!({"refresh_token": rotated.get(REFRESH_COOKIE)})),
            200,
        );
        assert!(body["refresh_token"].is_string(), "{body}");
    }

    /// Within `PORTCULLIS_REFRESH_REUSE_GRACE`, two tabs refreshing with the same cookie
    /// get the same successor.
    fn the_reuse_grace_holds_for_cookies() {
        let app = cookie_app(&[("PORTCULLIS_REFRESH_REUSE_GRACE", "60")]);
        let (jar, _) = cookie_session(&app);
        let (mut tab_a, mut tab_b) = (jar.clone(), jar.clone());
        refresh_by_cookie(&app, &mut tab_a);
        refresh_by_cookie(&app, &mut tab_b);
        assert_eq!(tab_a.get(REFRESH_COOKIE), tab_b.get(REFRESH_COOKIE));
    }

    /// A logout with no bearer token but the refresh cookie and the CSRF header ends that
    /// session and clears both cookies; without the header it is 403 and nothing ends.
    fn logout_by_cookie_alone_ends_that_session_and_clears_the_cookies() {
        let app = cookie_app(&[]);
        let (mut jar, body) = cookie_session(&app);
        let access = assert_cookie_token_response(&body);
        assert_problem(logout_by_cookie(&app, &jar, None), 403, "csrf_failed");
        assert_problem(logout_by_cookie(&app, &jar, Some("nope")), 403, "csrf_failed");
        assert_works(&app, &access);
        let resp = logout_by_cookie(&app, &jar, Some(&jar.csrf()));
        assert_eq!(resp.status(), 204);
        assert_cookies_cleared(&resp);
        let spent = jar.clone();
        jar.take(&resp);
        assert!(jar.0.is_empty(), "cookies left: {jar:?}");
        assert_problem(app.get_with_token(ME, &access), 401, "invalid_token");
        let resp = refresh_with(&app, &spent, None, Some(&spent.csrf()));
        assert_problem(resp, 401, "invalid_refresh_token");
        // No bearer and no cookie: unauthorized, as always.
        assert_problem(logout_by_cookie(&app, &Jar::default(), None), 401, "unauthorized");
    }

    /// Logout and logout-all by bearer clear both cookies too.
    fn logout_by_bearer_clears_the_cookies() {
        let app = cookie_app(&[]);
        for path in [LOGOUT, LOGOUT_ALL] {
            let (_, body) = cookie_session(&app);
            let access = assert_cookie_token_response(&body);
            let resp = post_bearer(&app, path, &access);
            assert_eq!(resp.status(), 204, "{path}");
            assert_cookies_cleared(&resp);
            assert_problem(app.get_with_token(ME, &access), 401, "invalid_token");
        }
    }

    /// `Secure` behind an https public URL, unless `PORTCULLIS_COOKIE_SECURE=false`;
    /// `PORTCULLIS_COOKIE_SECURE=true` adds it over http.
    fn cookies_are_secure_behind_https_unless_overridden() {
        let cases = [
            (vec![("PORTCULLIS_PUBLIC_URL", "https://auth.example.com")], true),
            (
                vec![
                    ("PORTCULLIS_PUBLIC_URL", "https://auth.example.com"),
                    ("PORTCULLIS_COOKIE_SECURE", "false"),
                ],
                false,
            ),
            (vec![("PORTCULLIS_COOKIE_SECURE", "true")], true),
            (vec![], false),
        ];
        for (settings, secure) in cases {
            let app = cookie_app(&settings);
            let user = unique_user();
            app.register_user(&user);
            let resp = cookie_login(&app, &user.username, &user.password);
            for cookie in set_cookies(&resp) {
                assert_eq!(cookie.secure(), Some(secure).filter(|s| *s), "{settings:?}: {cookie}");
            }
            assert_eq!(set_cookies(&resp).len(), 2, "{settings:?}");
        }
    }

    /// A listed origin gets its own origin back with credentials allowed and `Vary:
    /// Origin`, and preflights allow `X-CSRF-Token` and `X-Portcullis-Session`; another
    /// origin gets nothing, and `*` is never answered together with credentials.
    fn cors_allows_credentials_for_listed_origins_only() {
        let app = TestApp::spawn_with(&[
            ("PORTCULLIS_COOKIE_SESSIONS", "true"),
            ("PORTCULLIS_CORS_ORIGINS", &format!("{APP_ORIGIN},*")),
        ]);
        let preflight = |origin: &str| {
            app.request(Method::OPTIONS, REFRESH)
                .header("Origin", origin)
                .header("Access-Control-Request-Method", "POST")
                .header(
                    "Access-Control-Request-Headers",
                    "content-type, x-csrf-token, x-portcullis-session",
                )
                .send()
                .expect("preflight")
        };
        let resp = preflight(APP_ORIGIN);
        assert_eq!(resp.status(), 204);
        // Browsers refuse a preflight whose headers come twice (`true, true`).
        for name in ["access-control-allow-origin", "access-control-allow-credentials"] {
            assert_eq!(resp.headers().get_all(name).iter().count(), 1, "{name} twice");
        }
        assert_eq!(header(&resp, "access-control-allow-origin").as_deref(), Some(APP_ORIGIN));
        assert_eq!(header(&resp, "access-control-allow-credentials").as_deref(), Some("true"));
        let allowed = header(&resp, "access-control-allow-headers").unwrap_or_default();
        for name in ["x-csrf-token", "x-portcullis-session", "content-type", "authorization"] {
            assert!(allowed.to_ascii_lowercase().contains(name), "{name} not in {allowed:?}");
        }
        let (jar, _) = cookie_session(&app);
        let resp = app
            .request(Method::POST, REFRESH)
            .header("Origin", APP_ORIGIN)
            .header("Cookie", jar.header())
            .header("X-CSRF-Token", jar.csrf())
            .send()
            .unwrap();
        assert_eq!(header(&resp, "access-control-allow-origin").as_deref(), Some(APP_ORIGIN));
        assert_eq!(header(&resp, "access-control-allow-credentials").as_deref(), Some("true"));
        assert!(
            header(&resp, "vary").is_some_and(|v| v.to_ascii_lowercase().contains("origin")),
            "no Vary: Origin"
        );
        json_body(resp, 200);
        // Any other origin: allowed by `*`, but never with credentials nor as `*`.
        for resp in [
            preflight("https://elsewhere.example.net"),
            app.request(Method::GET, "/health")
                .header("Origin", "https://elsewhere.example.net")
                .send()
                .unwrap(),
        ] {
            assert!(header(&resp, "access-control-allow-credentials").is_none());
            assert_ne!(header(&resp, "access-control-allow-origin").as_deref(), Some("*"));
        }
        // Without `*`, an unlisted origin gets no CORS header at all.
        let listed_only = cookie_app(&[]);
        let resp = listed_only
            .request(Method::GET, "/health")
            .header("Origin", "https://elsewhere.example.net")
            .send()
            .unwrap();
        assert!(header(&resp, "access-control-allow-origin").is_none());
        assert!(header(&resp, "access-control-allow-credentials").is_none());
    }
}
