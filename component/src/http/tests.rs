//! Native tests of the HTTP layer: routing, the conventions of API.md §2, and the answers
//! of each endpoint, against the in-memory store.

use serde_json::{Value, json};

use super::{Body, Request, Response, handle};
use crate::testing::Harness;

fn request(method: &str, path: &str, body: Option<Value>) -> Request {
    let mut headers = vec![(
        "spin-client-addr".to_string(),
        "203.0.113.7:5555".to_string(),
    )];
    if body.is_some() {
        headers.push(("content-type".into(), "application/json".into()));
    }
    Request {
        method: method.into(),
        path: path.into(),
        query: String::new(),
        headers,
        body: Body::Complete(body.map(|b| b.to_string().into_bytes()).unwrap_or_default()),
    }
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response
        .headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn body(response: &Response) -> Value {
    serde_json::from_slice(&response.body).unwrap()
}

fn assert_problem(response: &Response, status: u16, code: &str) {
    assert_eq!(
        response.status,
        status,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(
        header(response, "content-type"),
        Some("application/problem+json")
    );
    let body = body(response);
    assert_eq!(body["code"], code);
    assert_eq!(body["status"], status);
    assert!(body["type"].is_string() && body["title"].is_string());
}

fn register_body() -> Value {
    json!({"username": "john_doe", "email": "john@example.com", "password": "Tr1cky!Horse#42"})
}

#[test]
fn unknown_paths_and_wrong_methods() {
    let harness = Harness::new(&[]);
    let app = harness.app();
    assert_problem(
        &handle(&app, &request("GET", "/nope", None)),
        404,
        "not_found",
    );
    let response = handle(&app, &request("DELETE", "/health", None));
    assert_problem(&response, 405, "method_not_allowed");
    assert_eq!(header(&response, "allow"), Some("GET"));
}

#[test]
fn bodies_must_be_small_json_objects() {
    let harness = Harness::new(&[]);
    let app = harness.app();
    let mut plain = request("POST", "/api/v1/auth/register", Some(register_body()));
    plain.headers.retain(|(name, _)| name != "content-type");
    assert_problem(&handle(&app, &plain), 415, "unsupported_media_type");

    let mut too_large = request("POST", "/api/v1/auth/register", Some(register_body()));
    too_large.body = Body::TooLarge;
    assert_problem(&handle(&app, &too_large), 413, "payload_too_large");

    let mut broken = request("POST", "/api/v1/auth/register", Some(register_body()));
    broken.body = Body::Complete(b"{\"username\": ".to_vec());
    assert_problem(&handle(&app, &broken), 400, "invalid_json");

    let not_object = request("POST", "/api/v1/auth/register", Some(json!([1, 2])));
    assert_problem(&handle(&app, &not_object), 400, "invalid_json");
}

#[test]
fn every_violation_is_listed_and_mistyped_fields_are_named() {
    let harness = Harness::new(&[]);
    let app = harness.app();
    let response = handle(
        &app,
        &request(
            "POST",
            "/api/v1/auth/register",
            Some(json!({"username": 42, "email": "not-an-email", "password": "short"})),
        ),
    );
    assert_problem(&response, 422, "validation_failed");
    let errors = body(&response)["errors"].clone();
    let pairs: Vec<(String, String)> = errors
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap().into(),
                e["code"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(pairs.contains(&("username".into(), "invalid_format".into())));
    assert!(!pairs.contains(&("username".into(), "required".into())));
    assert!(pairs.contains(&("email".into(), "invalid_format".into())));
    assert!(pairs.contains(&("password".into(), "too_short".into())));
    assert!(pairs.contains(&("password".into(), "missing_digit".into())));
}

#[test]
fn register_login_me_and_verify() {
    let harness = Harness::new(&[]);
    let app = harness.app();
    let registered = handle(
        &app,
        &request("POST", "/api/v1/auth/register", Some(register_body())),
    );
    assert_eq!(registered.status, 201);
    assert_eq!(header(&registered, "cache-control"), Some("no-store"));
    let tokens = body(&registered);
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert_eq!(tokens["refresh_expires_in"], 604_800);
    assert_eq!(tokens["verification_required"], false);
    assert!(tokens["user"].get("password_hash").is_none());
    assert_eq!(tokens["user"]["mobile_number"], Value::Null);

    let login = handle(
        &app,
        &request(
            "POST",
            "/api/v1/auth/login",
            Some(
                json!({"login": "JOHN_DOE", "password": "Tr1cky!Horse#42", "device_name": "laptop"}),
            ),
        ),
    );
    assert_eq!(login.status, 200);
    let access = body(&login)["access_token"].as_str().unwrap().to_string();

    let mut me = request("GET", "/api/v1/users/me", None);
    me.headers
        .push(("authorization".into(), format!("Bearer {access}")));
    let me = handle(&app, &me);
    assert_eq!(me.status, 200);
    assert_eq!(body(&me)["username"], "john_doe");

    let mut verify = request("GET", "/api/v1/auth/verify", None);
    verify
        .headers
        .push(("authorization".into(), format!("bearer {access}")));
    let verify = handle(&app, &verify);
    assert_eq!(verify.status, 200);
    assert_eq!(body(&verify)["valid"], true);
    assert_eq!(body(&verify)["session_id"], body(&login)["session_id"]);
}

#[test]
fn missing_and_bad_tokens_are_told_apart() {
    let harness = Harness::new(&[]);
    let app = harness.app();
    let response = handle(&app, &request("GET", "/api/v1/users/me", None));
    assert_problem(&response, 401, "unauthorized");
    assert_eq!(
        header(&response, "www-authenticate"),
        Some(r#"Bearer realm="portcullis""#)
    );

    let mut bad = request("GET", "/api/v1/users/me", None);
    bad.headers
        .push(("authorization".into(), "Bearer not.a.jwt".into()));
    let response = handle(&app, &bad);
    assert_problem(&response, 401, "invalid_token");
    assert!(
        header(&response, "www-authenticate")
            .unwrap()
            .contains(r#"error="invalid_token""#)
    );
}

#[test]
fn wrong_password_and_unknown_account_answer_alike() {
    let harness = Harness::new(&[]);
    let app = harness.app();
    handle(
        &app,
        &request("POST", "/api/v1/auth/register", Some(register_body())),
    );
    let attempt = |login: &str| {
        handle(
            &app,
            &request(
                "POST",
                "/api/v1/auth/login",
                Some(json!({"login": login, "password": "Wrong!Horse#42"})),
            ),
        )
    };
    let known = attempt("john_doe");
    let unknown = attempt("nobody_here");
    assert_problem(&known, 401, "invalid_credentials");
    assert_eq!(known.body, unknown.body);
    assert_eq!(known.headers, unknown.headers);
}

#[test]
fn validation_rules_reflect_the_settings() {
    let harness = Harness::new(&[("password_policy", "nist"), ("password_min_length", "12")]);
    let app = harness.app();
    let response = handle(&app, &request("GET", "/api/v1/validation-rules", None));
    assert_eq!(response.status, 200);
    let rules = body(&response);
    assert_eq!(rules["password"]["policy"], "nist");
    assert_eq!(rules["password"]["min_length"], 12);
    assert!(rules["password"]["common_password_count"].as_u64().unwrap() >= 10_000);
}

fn authorized(method: &str, path: &str, token: &str) -> Request {
    let mut request = request(method, path, None);
    request
        .headers
        .push(("authorization".into(), format!("Bearer {token}")));
    request
}

fn login_as(app: &crate::app::App<'_>, device: &str) -> Value {
    let response = handle(
        app,
        &request(
            "POST",
            "/api/v1/auth/login",
            Some(
                json!({"login": "john_doe", "password": "Tr1cky!Horse#42", "device_name": device}),
            ),
        ),
    );
    assert_eq!(response.status, 200);
    body(&response)
}

#[test]
fn sessions_are_listed_newest_first_and_logout_ends_one() {
    let harness = Harness::new(&[("max_sessions", "0")]);
    let app = harness.app();
    handle(
        &app,
        &request("POST", "/api/v1/auth/register", Some(register_body())),
    );
    harness.env.advance(1);
    let phone = login_as(&app, "phone");
    harness.env.advance(1);
    let laptop = login_as(&app, "laptop");
    let laptop_token = laptop["access_token"].as_str().unwrap();
    let listed = body(&handle(
        &app,
        &authorized("GET", "/api/v1/sessions", laptop_token),
    ));
    assert_eq!(listed["session_count"], 3);
    assert_eq!(listed["max_sessions"], 0);
    assert_eq!(listed["sessions"][0]["device_info"], "laptop");
    assert_eq!(listed["sessions"][0]["is_current"], true);
    assert_eq!(listed["sessions"][1]["device_info"], "phone");
    assert_eq!(listed["sessions"][1]["is_current"], false);
    assert_eq!(listed["sessions"][0]["ip_address"], "203.0.113.7");

    let phone_session = phone["session_id"].as_str().unwrap();
    let path = format!("/api/v1/sessions/{phone_session}");
    assert_eq!(
        handle(&app, &authorized("DELETE", &path, laptop_token)).status,
        204
    );
    let phone_token = phone["access_token"].as_str().unwrap();
    assert_problem(
        &handle(&app, &authorized("GET", "/api/v1/users/me", phone_token)),
        401,
        "invalid_token",
    );
    assert_problem(
        &handle(&app, &authorized("DELETE", &path, laptop_token)),
        404,
        "not_found",
    );

    assert_eq!(
        handle(
            &app,
            &authorized("POST", "/api/v1/auth/logout", laptop_token)
        )
        .status,
        204
    );
    assert_problem(
        &handle(&app, &authorized("GET", "/api/v1/users/me", laptop_token)),
        401,
        "invalid_token",
    );
}

fn evicted_audit_events(app: &crate::app::App<'_>) -> i64 {
    let row = app
        .db
        .query_one(
            "SELECT COUNT(*) FROM audit_events WHERE event = 'session_evicted'",
            &[],
        )
        .unwrap()
        .unwrap();
    row.integer(0).unwrap()
}

#[test]
fn a_login_never_evicts_its_own_session() {
    let harness = Harness::new(&[("rate_limit", "off"), ("max_sessions", "1")]);
    let app = harness.app();
    handle(
        &app,
        &request("POST", "/api/v1/auth/register", Some(register_body())),
    );
    // Many logins within one second: whatever their ids, each login's own session is the
    // one that survives.
    for device in 0..12 {
        let login = login_as(&app, &format!("device {device}"));
        let token = login["access_token"].as_str().unwrap();
        let me = handle(&app, &authorized("GET", "/api/v1/users/me", token));
        assert_eq!(me.status, 200, "login {device} lost its own session");
    }
    assert_eq!(evicted_audit_events(&app), 12);
}

#[test]
fn expired_sessions_are_not_reported_as_evicted() {
    let harness = Harness::new(&[
        ("rate_limit", "off"),
        ("max_sessions", "1"),
        ("refresh_ttl", "60"),
    ]);
    let app = harness.app();
    handle(
        &app,
        &request("POST", "/api/v1/auth/register", Some(register_body())),
    );
    harness.env.advance(61);
    login_as(&app, "after expiry");
    assert_eq!(evicted_audit_events(&app), 0);
    login_as(&app, "second");
    assert_eq!(evicted_audit_events(&app), 1);
}

#[test]
fn another_users_session_is_not_found_and_logout_all_ends_every_session() {
    let harness = Harness::new(&[("max_sessions", "0")]);
    let app = harness.app();
    let john = body(&handle(
        &app,
        &request("POST", "/api/v1/auth/register", Some(register_body())),
    ));
    let jane = body(&handle(
        &app,
        &request(
            "POST",
            "/api/v1/auth/register",
            Some(
                json!({"username": "jane_roe", "email": "jane@example.com", "password": "Tr1cky!Horse#42"}),
            ),
        ),
    ));
    let john_token = john["access_token"].as_str().unwrap();
    let jane_path = format!("/api/v1/sessions/{}", jane["session_id"].as_str().unwrap());
    assert_problem(
        &handle(&app, &authorized("DELETE", &jane_path, john_token)),
        404,
        "not_found",
    );

    let second = login_as(&app, "second");
    assert_eq!(
        handle(
            &app,
            &authorized("POST", "/api/v1/auth/logout-all", john_token)
        )
        .status,
        204
    );
    for token in [john_token, second["access_token"].as_str().unwrap()] {
        assert_problem(
            &handle(&app, &authorized("GET", "/api/v1/auth/verify", token)),
            401,
            "invalid_token",
        );
    }
    let jane_token = jane["access_token"].as_str().unwrap();
    assert_eq!(
        handle(&app, &authorized("GET", "/api/v1/auth/verify", jane_token)).status,
        200
    );
}

fn form(body: &str) -> Request {
    Request {
        method: "POST".into(),
        path: "/api/v1/auth/token".into(),
        query: String::new(),
        headers: vec![(
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        )],
        body: Body::Complete(body.as_bytes().to_vec()),
    }
}

#[test]
fn oauth2_token_endpoint_speaks_rfc_6749() {
    let harness = Harness::new(&[("max_sessions", "0")]);
    let app = harness.app();
    handle(
        &app,
        &request("POST", "/api/v1/auth/register", Some(register_body())),
    );

    let granted = handle(
        &app,
        &form("grant_type=password&username=john_doe&password=Tr1cky%21Horse%2342"),
    );
    assert_eq!(granted.status, 200);
    assert_eq!(header(&granted, "cache-control"), Some("no-store"));
    let tokens = body(&granted);
    assert_eq!(tokens["token_type"], "Bearer");
    let refresh_token = tokens["refresh_token"].as_str().unwrap();

    let refreshed = handle(
        &app,
        &form(&format!(
            "grant_type=refresh_token&refresh_token={refresh_token}"
        )),
    );
    assert_eq!(refreshed.status, 200);

    for (form_body, error) in [
        (
            "grant_type=password&username=john_doe&password=nope",
            "invalid_grant",
        ),
        ("grant_type=password&username=john_doe", "invalid_request"),
        ("grant_type=client_credentials", "unsupported_grant_type"),
        ("username=john_doe", "invalid_request"),
        (
            "grant_type=password&grant_type=password&username=a&password=b",
            "invalid_request",
        ),
    ] {
        let response = handle(&app, &form(form_body));
        assert_eq!(response.status, 400, "{form_body}");
        assert_eq!(body(&response)["error"], error, "{form_body}");
    }
}

#[test]
fn jwks_is_empty_under_hs256_and_lists_ed25519_keys_under_eddsa() {
    let harness = Harness::new(&[]);
    let jwks = handle(
        &harness.app(),
        &request("GET", "/.well-known/jwks.json", None),
    );
    assert_eq!(body(&jwks), json!({"keys": []}));

    let harness = Harness::new(&[("jwt_algorithm", "EdDSA")]);
    let app = harness.app();
    let registered = body(&handle(
        &app,
        &request("POST", "/api/v1/auth/register", Some(register_body())),
    ));
    let token = registered["access_token"].as_str().unwrap();
    assert_eq!(
        handle(&app, &authorized("GET", "/api/v1/users/me", token)).status,
        200
    );
    let keys = body(&handle(
        &app,
        &request("GET", "/.well-known/jwks.json", None),
    ));
    let key = &keys["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    assert_eq!(key["kid"], kid);
}

fn login_attempt(app: &crate::app::App<'_>, login: &str, password: &str) -> Response {
    handle(
        app,
        &request(
            "POST",
            "/api/v1/auth/login",
            Some(json!({"login": login, "password": password})),
        ),
    )
}

#[test]
fn the_rate_limit_counts_auth_posts_per_ip_and_says_when_to_retry() {
    let harness = Harness::new(&[("rate_limit", "3/60")]);
    let app = harness.app();
    for _ in 0..3 {
        assert_eq!(login_attempt(&app, "nobody", "x").status, 401);
    }
    let limited = login_attempt(&app, "nobody", "x");
    assert_problem(&limited, 429, "rate_limited");
    let retry_after: i64 = header(&limited, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // GETs are not limited; another window starts fresh.
    assert_eq!(handle(&app, &request("GET", "/health", None)).status, 200);
    harness.env.advance(retry_after);
    assert_eq!(login_attempt(&app, "nobody", "x").status, 401);
}

#[test]
fn the_login_throttle_treats_known_and_unknown_accounts_alike() {
    let harness = Harness::new(&[("rate_limit", "off"), ("login_throttle", "3")]);
    let app = harness.app();
    handle(
        &app,
        &request("POST", "/api/v1/auth/register", Some(register_body())),
    );
    for login in ["john_doe", "ghost_user"] {
        for _ in 0..3 {
            assert_problem(
                &login_attempt(&app, login, "Wrong!Horse#42"),
                401,
                "invalid_credentials",
            );
        }
        let throttled = login_attempt(&app, login, "Tr1cky!Horse#42");
        assert_problem(&throttled, 429, "rate_limited");
        assert_eq!(header(&throttled, "retry-after"), Some("1"));
    }
    // Any spelling of the account shares its count.
    assert_problem(
        &login_attempt(&app, "JOHN@example.com", "Tr1cky!Horse#42"),
        429,
        "rate_limited",
    );
    harness.env.advance(1);
    assert_eq!(
        login_attempt(&app, "john_doe", "Tr1cky!Horse#42").status,
        200
    );
    // A success resets the count.
    assert_problem(
        &login_attempt(&app, "john_doe", "Wrong!Horse#42"),
        401,
        "invalid_credentials",
    );
    assert_eq!(
        login_attempt(&app, "john_doe", "Tr1cky!Horse#42").status,
        200
    );
}

#[test]
fn a_correct_password_refused_for_the_device_limit_is_not_a_failure() {
    let harness = Harness::new(&[
        ("rate_limit", "off"),
        ("login_throttle", "1"),
        ("max_sessions", "1"),
        ("session_limit_policy", "reject"),
    ]);
    let app = harness.app();
    handle(
        &app,
        &request("POST", "/api/v1/auth/register", Some(register_body())),
    );
    // Registration opened the one allowed session: every later login is refused with
    // 409, never throttled, however often it is tried.
    for _ in 0..3 {
        assert_problem(
            &login_attempt(&app, "john_doe", "Tr1cky!Horse#42"),
            409,
            "session_limit_reached",
        );
    }
}

#[test]
fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let mut direct = request("GET", "/health", None);
    direct
        .headers
        .push(("x-forwarded-for".into(), "198.51.100.1".into()));
    assert_eq!(direct.client_ip(&[]).as_deref(), Some("203.0.113.7"));
    let trusted: Vec<ipnet::IpNet> = vec![
        "203.0.113.0/24".parse().unwrap(),
        "10.0.0.0/8".parse().unwrap(),
    ];
    direct
        .headers
        .push(("x-forwarded-for".into(), "198.51.100.9, 10.1.2.3".into()));
    assert_eq!(direct.client_ip(&trusted).as_deref(), Some("198.51.100.9"));
}

#[test]
fn cors_allows_listed_origins_only() {
    let harness = Harness::new(&[("cors_origins", "https://app.example.com")]);
    let app = harness.app();
    let mut preflight = request("OPTIONS", "/api/v1/auth/login", None);
    preflight
        .headers
        .push(("origin".into(), "https://app.example.com".into()));
    preflight
        .headers
        .push(("access-control-request-method".into(), "POST".into()));
    let answer = handle(&app, &preflight);
    assert_eq!(answer.status, 204);
    assert_eq!(
        header(&answer, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        header(&answer, "access-control-allow-methods"),
        Some("POST")
    );

    let mut foreign = request("GET", "/health", None);
    foreign
        .headers
        .push(("origin".into(), "https://evil.example.net".into()));
    assert_eq!(
        header(&handle(&app, &foreign), "access-control-allow-origin"),
        None
    );
}

#[test]
fn https_public_urls_turn_on_hsts() {
    let harness = Harness::new(&[("public_url", "https://auth.example.com")]);
    let answer = handle(&harness.app(), &request("GET", "/health", None));
    assert!(
        header(&answer, "strict-transport-security")
            .unwrap()
            .contains("max-age=")
    );
    let harness = Harness::new(&[]);
    assert_eq!(
        header(
            &handle(&harness.app(), &request("GET", "/health", None)),
            "strict-transport-security"
        ),
        None
    );
}

/// Registers `name` through the API and returns its access token.
fn signed_up(app: &crate::app::App<'_>, name: &str) -> String {
    let answer = handle(
        app,
        &request(
            "POST",
            "/api/v1/auth/register",
            Some(
                json!({"username": name, "email": format!("{name}@example.com"), "password": "Tr1cky!Horse#42"}),
            ),
        ),
    );
    assert_eq!(
        answer.status,
        201,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    body(&answer)["access_token"].as_str().unwrap().to_string()
}

fn admin_token(harness: &Harness) -> String {
    let app = harness.app();
    let input = crate::auth::Registration {
        username: "the_admin".into(),
        email: "admin@example.com".into(),
        password: "Adm1n!Gate#Keeper".into(),
        mobile_number: None,
    };
    crate::admin::create_admin(&app, &input, false).unwrap();
    assert!(
        crate::admin::create_admin(&app, &input, true)
            .unwrap()
            .is_none()
    );
    let answer = login_attempt(&app, "the_admin", "Adm1n!Gate#Keeper");
    body(&answer)["access_token"].as_str().unwrap().to_string()
}

#[test]
fn admin_endpoints_are_for_admins_only() {
    let harness = Harness::new(&[("rate_limit", "off")]);
    let app = harness.app();
    let user = signed_up(&app, "plain_user");
    for (method, path) in [
        ("GET", "/api/v1/admin/users"),
        ("GET", "/api/v1/admin/audit"),
        ("DELETE", "/api/v1/admin/users/x/sessions"),
    ] {
        assert_problem(
            &handle(&app, &authorized(method, path, &user)),
            403,
            "forbidden",
        );
    }
    assert_problem(
        &handle(&app, &request("GET", "/api/v1/admin/users", None)),
        401,
        "unauthorized",
    );
}

#[test]
fn admins_search_and_page_through_users() {
    let harness = Harness::new(&[("rate_limit", "off"), ("max_sessions", "0")]);
    let app = harness.app();
    let admin = admin_token(&harness);
    for name in ["alice_1", "alice_2", "alice_3", "bob_100"] {
        signed_up(&app, name);
    }
    let request_page = |query: &str| {
        body(&handle(&app, &{
            let mut r = authorized("GET", "/api/v1/admin/users", &admin);
            r.query = query.into();
            r
        }))
    };
    let first = request_page("q=ALICE&limit=2");
    assert_eq!(first["users"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let second = request_page(&format!("q=alice&limit=2&cursor={cursor}"));
    assert_eq!(second["users"].as_array().unwrap().len(), 1);
    assert_eq!(second["next_cursor"], Value::Null);
    let mut seen: Vec<&str> = [&first, &second]
        .iter()
        .flat_map(|page| page["users"].as_array().unwrap())
        .map(|user| user["username"].as_str().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, ["alice_1", "alice_2", "alice_3"], "every match once");
    assert_eq!(
        request_page("q=%25")["users"].as_array().unwrap().len(),
        0,
        "wildcards are literal"
    );
    assert_eq!(request_page("limit=0")["code"], "validation_failed");
    assert_eq!(request_page("cursor=garbage!")["code"], "validation_failed");
}

#[test]
fn deactivation_revokes_every_session_and_blocks_login() {
    let harness = Harness::new(&[("rate_limit", "off")]);
    let app = harness.app();
    let admin = admin_token(&harness);
    let user_token = signed_up(&app, "doomed_user");
    let user_id = body(&handle(
        &app,
        &authorized("GET", "/api/v1/users/me", &user_token),
    ))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut patch = authorized("PATCH", &format!("/api/v1/admin/users/{user_id}"), &admin);
    patch
        .headers
        .push(("content-type".into(), "application/json".into()));
    patch.body = Body::Complete(br#"{"is_active": false}"#.to_vec());
    let answer = handle(&app, &patch);
    assert_eq!(answer.status, 200);
    assert_eq!(body(&answer)["is_active"], false);
    assert_problem(
        &handle(&app, &authorized("GET", "/api/v1/users/me", &user_token)),
        401,
        "invalid_token",
    );
    assert_problem(
        &login_attempt(&app, "doomed_user", "Tr1cky!Horse#42"),
        403,
        "account_disabled",
    );

    let audit = body(&handle(&app, &{
        let mut r = authorized("GET", "/api/v1/admin/audit", &admin);
        r.query = format!("user_id={user_id}&event=admin_user_updated");
        r
    }));
    assert_eq!(audit["events"].as_array().unwrap().len(), 1);
    assert!(audit["events"][0]["detail"]["actor_id"].is_string());

    let missing = authorized("GET", "/api/v1/admin/users/no-such-id", &admin);
    assert_problem(&handle(&app, &missing), 404, "not_found");
}

#[test]
fn the_audit_log_pages_newest_first() {
    let harness = Harness::new(&[("rate_limit", "off")]);
    let app = harness.app();
    let admin = admin_token(&harness);
    for n in 0..3 {
        harness.env.advance(1);
        signed_up(&app, &format!("user_{n}"));
    }
    let page = |query: String| {
        body(&handle(&app, &{
            let mut r = authorized("GET", "/api/v1/admin/audit", &admin);
            r.query = query;
            r
        }))
    };
    let first = page("event=register&limit=2".into());
    let events = first["events"].as_array().unwrap();
    assert_eq!(events[0]["detail"]["username"], "user_2");
    assert_eq!(events[1]["detail"]["username"], "user_1");
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = page(format!("event=register&limit=2&cursor={cursor}"));
    let rest: Vec<&str> = second["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["detail"]["username"].as_str().unwrap())
        .collect();
    assert_eq!(rest, ["user_0", "the_admin"]);
}

#[test]
fn control_characters_never_reach_sql() {
    let harness = Harness::new(&[("rate_limit", "off")]);
    let app = harness.app();
    assert_problem(
        &login_attempt(&app, "john\u{0}doe", "Tr1cky!Horse#42"),
        422,
        "validation_failed",
    );
    let admin = admin_token(&harness);
    for query in ["q=a%00b", "cursor=YQBi"] {
        let mut list = authorized("GET", "/api/v1/admin/users", &admin);
        list.query = query.into();
        assert_problem(&handle(&app, &list), 422, "validation_failed");
    }
    let mut audit = authorized("GET", "/api/v1/admin/audit", &admin);
    audit.query = "event=a%00".into();
    assert_problem(&handle(&app, &audit), 422, "validation_failed");
}

#[test]
fn the_openapi_document_lists_the_route_templates() {
    let harness = Harness::new(&[]);
    let response = handle(&harness.app(), &request("GET", "/openapi.json", None));
    assert_eq!(response.status, 200);
    assert_eq!(header(&response, "content-type"), Some("application/json"));
    let document = body(&response);
    assert_eq!(document["openapi"], "3.1.0");
    for path in ["/api/v1/sessions/{id}", "/health", "/docs", "/metrics"] {
        assert!(document["paths"][path].is_object(), "{path}");
    }
}

#[test]
fn the_docs_page_and_its_assets_are_served_here() {
    let harness = Harness::new(&[]);
    let app = harness.app();
    let page = handle(&app, &request("GET", "/docs", None));
    assert_eq!(page.status, 200);
    assert_eq!(
        header(&page, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let policy = header(&page, "content-security-policy").unwrap_or_default();
    assert!(policy.contains("script-src 'self';"), "{policy}");
    let html = String::from_utf8_lossy(&page.body);
    assert!(!html.contains("http:") && !html.contains("https:") && !html.contains("<script>"));
    for (file, media_type) in [
        ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
        ("swagger-ui.css", "text/css; charset=utf-8"),
        ("init.js", "text/javascript; charset=utf-8"),
        ("LICENSE", "text/plain; charset=utf-8"),
    ] {
        let asset = handle(&app, &request("GET", &format!("/docs/assets/{file}"), None));
        assert_eq!(asset.status, 200, "{file}");
        assert_eq!(header(&asset, "content-type"), Some(media_type), "{file}");
        assert!(html.contains(&format!("docs/assets/{file}")) || file == "LICENSE");
    }
    let missing = handle(&app, &request("GET", "/docs/assets/nope.js", None));
    assert_problem(&missing, 404, "not_found");
}

#[test]
fn the_bootstrap_admin_never_promotes_an_existing_account() {
    let harness = Harness::new(&[("rate_limit", "off")]);
    let app = harness.app();
    signed_up(&app, "plain_user");
    let bootstrap = |username: &str, email: &str| {
        let input = crate::auth::Registration {
            username: username.into(),
            email: email.into(),
            password: "Adm1n!Gate#Keeper".into(),
            mobile_number: None,
        };
        crate::admin::create_admin(&app, &input, true)
    };
    assert!(matches!(
        bootstrap("plain_user", "boss@example.com"),
        Err(crate::error::Error::UsernameTaken)
    ));
    assert!(matches!(
        bootstrap("the_boss", "plain_user@example.com"),
        Err(crate::error::Error::EmailTaken)
    ));
    let made = bootstrap("the_boss", "Boss@Example.com").unwrap();
    assert!(made.is_some_and(|admin| admin.is_admin));
    // A restart (or a second host) finds it and leaves it alone.
    assert!(bootstrap("the_boss", "boss@example.com").unwrap().is_none());
    let plain = crate::users::find_by_login(&app, "plain_user")
        .unwrap()
        .unwrap();
    assert!(!plain.is_admin);
}
