//! Administration (API.md §1 admin/security settings, §5 admin endpoints and audit):
//! the bootstrap admin and `portcullis admin create`, the admin API and its audit log,
//! the per-IP rate limit, the per-account login throttle, CORS and security headers.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use reqwest::blocking::Response;
use serde_json::{Value, json};

use crate::support::{
    STRONG_PASSWORD, TEST_JWT_SECRET, TestApp, TestUser, assert_client_error, assert_no_secrets,
    assert_problem, assert_user_resource, header, json_body, parse_utc_timestamp, shared_database,
    spawn_app, unique_mobile, unique_suffix, unique_user,
};

const LOGIN: &str = "/api/v1/auth/login";
const ME: &str = "/api/v1/users/me";
const ADMIN_USERS: &str = "/api/v1/admin/users";
const AUDIT: &str = "/api/v1/admin/audit";

/// The component cache the suite's apps share (as `support` sets it).
fn cache_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("portcullis-component-cache")
}

/// A `portcullis` command with nothing from our environment but `settings`, plus the
/// suite's JWT secret and component cache, run in `folder` (also its data folder).
pub fn portcullis(args: &[&str], folder: &Path, settings: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.args(args).current_dir(folder).env("NO_COLOR", "1");
    for (key, _) in std::env::vars() {
        if key.starts_with("PORTCULLIS_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("PORTCULLIS_DATA_DIR", folder)
        .env("PORTCULLIS_JWT_SECRET", TEST_JWT_SECRET)
        .env("PORTCULLIS_CACHE_DIR", cache_dir())
        .envs(settings.iter().copied());
    cmd
}

/// The bootstrap settings for `admin`.
pub fn admin_settings(admin: &TestUser) -> [(&'static str, &str); 3] {
    [
        ("PORTCULLIS_ADMIN_USERNAME", admin.username.as_str()),
        ("PORTCULLIS_ADMIN_EMAIL", admin.email.as_str()),
        ("PORTCULLIS_ADMIN_PASSWORD", admin.password.as_str()),
    ]
}

/// An app with a bootstrap admin; returns (app, admin's access token, admin's user).
fn admin_app() -> (TestApp, String, Value) {
    let admin = unique_user();
    let app = TestApp::spawn_with(&admin_settings(&admin));
    let login = app.login_ok(&admin.username, &admin.password);
    let token = login["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    (app, token, login["user"].clone())
}

/// Sends `method path` with an optional bearer token and JSON body.
fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Response {
    let mut builder = app.request(method, path);
    if let Some(t) = token {
        builder = builder.bearer_auth(t);
    }
    if let Some(b) = body {
        builder = builder.json(b);
    }
    builder
        .send()
        .unwrap_or_else(|e| panic!("{path}: request failed: {e}\n{}", app.output()))
}

fn admin_get(app: &TestApp, token: &str, path: &str, query: &[(&str, &str)]) -> Response {
    app.request(Method::GET, path)
        .bearer_auth(token)
        .query(query)
        .send()
        .unwrap_or_else(|e| panic!("{path}: request failed: {e}"))
}

fn patch_user(app: &TestApp, token: &str, id: &str, body: &Value) -> Value {
    let path = format!("{ADMIN_USERS}/{id}");
    json_body(
        call(app, Method::PATCH, &path, Some(token), Some(body)),
        200,
    )
}

fn id_of(user: &Value) -> String {
    user["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {user}"))
        .to_owned()
}

/// Registers a fresh user; returns (user, its id, access token, refresh token).
fn registered(app: &TestApp) -> (TestUser, String, String, String) {
    let (user, token, body) = app.registered_user();
    let refresh = body["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned();
    (user, id_of(&body["user"]), token, refresh)
}

fn assert_token_dead(app: &TestApp, token: &str) {
    assert_problem(app.get_with_token(ME, token), 401, "invalid_token");
}

/// Every page of `path` with `query` and `limit`, following `next_cursor`; calls
/// `between` after each page. Returns the items of `key`, page by page.
fn all_pages(
    app: &TestApp,
    token: &str,
    path: &str,
    key: &str,
    query: &[(&str, &str)],
    limit: usize,
    mut between: impl FnMut(),
) -> Vec<Vec<Value>> {
    let limit_text = limit.to_string();
    let mut cursor: Option<String> = None;
    let mut pages = Vec::new();
    for _ in 0..200 {
        let mut q: Vec<(&str, &str)> = query.to_vec();
        q.push(("limit", &limit_text));
        if let Some(c) = &cursor {
            q.push(("cursor", c));
        }
        let body = json_body(admin_get(app, token, path, &q), 200);
        let items = body[key]
            .as_array()
            .unwrap_or_else(|| panic!("no `{key}` array: {body}"))
            .clone();
        assert!(
            items.len() <= limit,
            "a page of {} > limit {limit}: {body}",
            items.len()
        );
        assert!(
            body.get("next_cursor").is_some(),
            "no next_cursor member: {body}"
        );
        pages.push(items);
        between();
        match &body["next_cursor"] {
            Value::Null => return pages,
            Value::String(c) => cursor = Some(c.clone()),
            other => panic!("next_cursor must be a string or null, got {other}"),
        }
    }
    panic!("paging never ended after 200 pages of {path}");
}

/// Each bad paging parameter (one per request) on `path` answers 422.
fn assert_bad_paging_is_422(app: &TestApp, token: &str, path: &str, params: &[(&str, &str)]) {
    for param in params {
        let query = [*param];
        let (status, body) = assert_client_error(admin_get(app, token, path, &query), "bad paging");
        assert_eq!(status, 422, "{query:?}: {body}");
    }
}

/// Every id of `originals` is on one of the `pages`, and no id is on two.
fn assert_each_listed_once<'a>(
    pages: &[Vec<Value>],
    originals: impl IntoIterator<Item = &'a String>,
) {
    let seen: Vec<String> = pages.iter().flat_map(|page| ids(page)).collect();
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(
        unique.len(),
        seen.len(),
        "a user was listed twice: {seen:?}"
    );
    for id in originals {
        assert!(seen.contains(id), "user {id} was skipped: {seen:?}");
    }
}

fn ids(items: &[Value]) -> Vec<String> {
    items.iter().map(id_of).collect()
}

/// The 429 `rate_limited` problem with a `Retry-After` of whole seconds in 1..=max.
fn assert_rate_limited(resp: Response, max: u64) {
    let retry = header(&resp, "retry-after");
    let body = assert_problem(resp, 429, "rate_limited");
    let retry = retry.unwrap_or_else(|| panic!("429 without Retry-After: {body}"));
    let seconds: u64 = retry
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After is not seconds: {retry:?}"));
    assert!(
        (1..=max).contains(&seconds),
        "Retry-After {seconds} not in 1..={max}"
    );
}

/// A login POST from `forwarded_for` (when given) for an unknown account.
fn login_from(app: &TestApp, forwarded_for: Option<&str>, login: &str, password: &str) -> Response {
    let mut builder = app
        .request(Method::POST, LOGIN)
        .json(&json!({"login": login, "password": password}));
    if let Some(ip) = forwarded_for {
        builder = builder.header("X-Forwarded-For", ip);
    }
    builder.send().expect("login request")
}

/// A fresh client IP in 10.0.0.0/8 for this test.
pub(crate) fn unique_ip() -> String {
    let n = u32::from_str_radix(&unique_suffix()[..5], 36).unwrap_or(1);
    format!(
        "10.{}.{}.{}",
        (n >> 16) & 0xff,
        (n >> 8) & 0xff,
        (n & 0xfe) + 1
    )
}

/// Runs `portcullis serve` with `settings` and expects it to exit before it listens;
/// returns (exit status success, its output).
fn refused_start(settings: &[(&str, &str)]) -> (bool, String) {
    let folder = tempfile::tempdir().expect("tempdir");
    let log = folder.path().join("out.log");
    let file = std::fs::File::create(&log).expect("log file");
    let db = format!("sqlite://{}/portcullis.db", folder.path().display());
    let mut all = vec![
        ("PORTCULLIS_LISTEN", "127.0.0.1:0"),
        ("PORTCULLIS_DATABASE_URL", db.as_str()),
        ("PORTCULLIS_RATE_LIMIT", "off"),
    ];
    all.extend_from_slice(settings);
    let mut child = portcullis(&["serve"], folder.path(), &all)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("start portcullis");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (
                status.success(),
                std::fs::read_to_string(&log).unwrap_or_default(),
            );
        }
        let out = std::fs::read_to_string(&log).unwrap_or_default();
        if out.contains("listening on") || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("portcullis started with {settings:?} instead of refusing:\n{out}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `portcullis admin create` on `database_url` with `password` on stdin; returns
/// (success, stdout, stderr).
pub fn admin_create(database_url: &str, user: &TestUser, password: &str) -> (bool, String, String) {
    let folder = tempfile::tempdir().expect("tempdir");
    let mut child = portcullis(
        &[
            "admin",
            "create",
            "--username",
            &user.username,
            "--email",
            &user.email,
        ],
        folder.path(),
        &[("PORTCULLIS_DATABASE_URL", database_url)],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("run `portcullis admin create`");
    {
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{password}").expect("write the password");
    }
    let out = child.wait_with_output().expect("wait for `admin create`");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every admin endpoint, for a target user id: (method, path, body).
fn admin_endpoints(id: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, ADMIN_USERS.to_owned(), None),
        (Method::GET, format!("{ADMIN_USERS}/{id}"), None),
        (
            Method::PATCH,
            format!("{ADMIN_USERS}/{id}"),
            Some(json!({"is_admin": true})),
        ),
        (Method::DELETE, format!("{ADMIN_USERS}/{id}/sessions"), None),
        (Method::DELETE, format!("{ADMIN_USERS}/{id}"), None),
        (Method::GET, AUDIT.to_owned(), None),
    ]
}

fn assert_security_headers(resp: &Response, what: &str, hsts: bool) {
    assert_eq!(
        header(resp, "x-content-type-options").as_deref(),
        Some("nosniff"),
        "{what}: X-Content-Type-Options"
    );
    // API.md names no value for Referrer-Policy: any non-empty one will do.
    assert!(
        header(resp, "referrer-policy").is_some_and(|v| !v.trim().is_empty()),
        "{what}: Referrer-Policy missing"
    );
    let sts = header(resp, "strict-transport-security");
    if hsts {
        assert!(
            sts.is_some_and(|v| v.contains("max-age=")),
            "{what}: no HSTS over https"
        );
    } else {
        assert!(
            sts.is_none(),
            "{what}: HSTS {sts:?} although PUBLIC_URL is http"
        );
    }
}

/// Five wrong passwords for `login`, then at once an attempt with `password`: returns
/// (ms from the 5th failure's answer to the attempt's answer, status, Retry-After, body).
fn after_five_failures(
    app: &TestApp,
    login: &str,
    password: &str,
) -> (u128, u16, Option<String>, Value) {
    for _ in 0..5 {
        assert_problem(app.login(login, "Wr0ng!pass"), 401, "invalid_credentials");
    }
    let fifth = Instant::now();
    let resp = app.login(login, password);
    let elapsed = fifth.elapsed().as_millis();
    let status = resp.status().as_u16();
    let retry = header(&resp, "retry-after");
    let body: Value = resp.json().unwrap_or(Value::Null);
    (elapsed, status, retry, body)
}

/// The rate limit counts in fixed windows of its S seconds (a reasonable reading of
/// "N requests per S seconds"): waits, when needed, so that the next `needed_ms` all
/// fall in one window.
fn start_of_a_rate_window(seconds: u64, needed_ms: u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let left = seconds * 1000 - now % (seconds * 1000);
    if left < needed_ms {
        std::thread::sleep(Duration::from_millis(left + 50));
    }
}

api_tests! {
    /// The bootstrap admin logs in, is an admin and lists users; a second start on the
    /// same database (admin already present) does not fail.
    fn bootstrap_admin_logs_in_and_lists_users_and_a_restart_is_fine() {
        let database = shared_database();
        let admin = unique_user();
        let first = TestApp::spawn_on(&database.url, &admin_settings(&admin));
        let login = first.login_ok(&admin.username, &admin.password);
        assert_eq!(login["user"]["is_admin"], true, "{login}");
        let token = login["access_token"].as_str().unwrap();
        let list = json_body(admin_get(&first, token, ADMIN_USERS, &[]), 200);
        assert!(list["users"].is_array(), "{list}");
        assert!(list.get("next_cursor").is_some(), "{list}");
        assert_no_secrets(&list);

        let second = TestApp::spawn_on(&database.url, &admin_settings(&admin));
        let again = second.login_ok(&admin.username, &admin.password);
        assert_eq!(
            again["user"]["id"], login["user"]["id"],
            "one admin, not two"
        );
        let token = again["access_token"].as_str().unwrap();
        json_body(admin_get(&second, token, ADMIN_USERS, &[]), 200);
    }

    /// Bootstrap settings that name an existing ordinary account never promote it: the
    /// host starts, the account keeps its password and stays an ordinary user.
    fn a_bootstrap_admin_never_promotes_an_existing_account() {
        let database = shared_database();
        let first = TestApp::spawn_on(&database.url, &[]);
        let existing = unique_user();
        first.register_user(&existing);
        let mut admin = unique_user();
        admin.username = existing.username.clone();
        admin.password = "Adm1n!Never#Promoted42".into();
        let second = TestApp::spawn_on(&database.url, &admin_settings(&admin));
        let login = second.login_ok(&existing.username, &existing.password);
        assert_eq!(login["user"]["is_admin"], false, "{login}");
        let refused = second.login(&existing.username, &admin.password);
        assert_eq!(refused.status(), 401);
    }

    /// Only one of the three admin settings: start-up fails naming PORTCULLIS_ADMIN_.
    fn a_partial_admin_bootstrap_refuses_to_start() {
        let admin = unique_user();
        for setting in admin_settings(&admin) {
            let (success, output) = refused_start(&[setting]);
            assert!(!success, "exit 0 with only {}:\n{output}", setting.0);
            assert!(
                output.lines().any(|l| l.contains("PORTCULLIS_ADMIN_")),
                "no line names PORTCULLIS_ADMIN_ with only {}:\n{output}",
                setting.0
            );
        }
    }

    /// `portcullis admin create` (password on stdin) makes an admin who can use the admin
    /// API; a weak password is refused with a non-zero exit.
    fn cli_admin_create_makes_a_working_admin_and_refuses_weak_passwords() {
        let database = shared_database();
        let app = TestApp::spawn_on(&database.url, &[]);
        let admin = unique_user();
        let (ok, stdout, stderr) = admin_create(&database.url, &admin, &admin.password);
        assert!(ok, "`admin create` failed:\n{stdout}\n{stderr}");
        let login = app.login_ok(&admin.username, &admin.password);
        let id = id_of(&login["user"]);
        assert!(
            stdout.contains(&id),
            "`admin create` did not print the id {id}:\n{stdout}"
        );
        assert_eq!(login["user"]["is_admin"], true, "{login}");
        let token = login["access_token"].as_str().unwrap();
        json_body(admin_get(&app, token, ADMIN_USERS, &[]), 200);

        let weak = unique_user();
        let with_name = format!("{}X1!a", weak.username);
        for password in ["password", "Sh0rt!", "alllowercase", with_name.as_str()] {
            let (ok, stdout, stderr) = admin_create(&database.url, &weak, password);
            assert!(
                !ok,
                "`admin create` accepted the weak password {password:?}:\n{stdout}\n{stderr}"
            );
            assert!(
                !stderr.trim().is_empty(),
                "`admin create` refused {password:?} without saying why on stderr"
            );
            assert_problem(
                app.login(&weak.username, password),
                401,
                "invalid_credentials",
            );
        }
        let mut bad_email = unique_user();
        bad_email.email = "not-an-address".into();
        let (ok, stdout, stderr) = admin_create(&database.url, &bad_email, STRONG_PASSWORD);
        assert!(
            !ok,
            "`admin create` accepted a bad email:\n{stdout}\n{stderr}"
        );
    }

    /// Every admin endpoint: 401 `unauthorized` without a token, 403 `forbidden` for a
    /// normal user (who is left untouched).
    fn admin_endpoints_need_an_admin() {
        let app = spawn_app();
        let (_, id, token, _) = registered(&app);
        for (method, path, body) in admin_endpoints(&id) {
            let resp = call(&app, method.clone(), &path, None, body.as_ref());
            assert_problem(resp, 401, "unauthorized");
            let resp = call(&app, method.clone(), &path, Some(&token), body.as_ref());
            assert_problem(resp, 403, "forbidden");
        }
        let me = json_body(app.get_with_token(ME, &token), 200);
        assert_eq!(me["is_admin"], false, "{me}");
    }

    /// `q` matches username, email and mobile number, case-insensitively.
    fn admin_user_search_matches_username_email_and_mobile() {
        let (app, token, _) = admin_app();
        let marker = unique_suffix();
        // API.md does not say substring or prefix: the marker starts each field.
        let mut by_name = unique_user();
        by_name.username = format!("{}_a", marker.to_uppercase());
        let mut by_email = unique_user();
        by_email.email = format!("{marker}.b@example.com");
        let mut by_mobile = unique_user();
        let mobile = unique_mobile();
        by_mobile.mobile_number = Some(mobile.clone());
        let other = unique_user();
        let name_id = id_of(&app.register_user(&by_name)["user"]);
        let email_id = id_of(&app.register_user(&by_email)["user"]);
        let mobile_id = id_of(&app.register_user(&by_mobile)["user"]);
        let other_id = id_of(&app.register_user(&other)["user"]);

        for q in [marker.clone(), marker.to_uppercase()] {
            let body = json_body(admin_get(&app, &token, ADMIN_USERS, &[("q", &q)]), 200);
            let users = body["users"].as_array().unwrap_or_else(|| panic!("{body}"));
            users.iter().for_each(assert_user_resource);
            let found = ids(users);
            assert!(
                found.contains(&name_id),
                "q={q} misses the username match: {body}"
            );
            assert!(
                found.contains(&email_id),
                "q={q} misses the email match: {body}"
            );
            assert!(
                !found.contains(&other_id),
                "q={q} found an unrelated user: {body}"
            );
            assert!(
                !found.contains(&mobile_id),
                "q={q} found an unrelated user: {body}"
            );
        }
        let body = json_body(admin_get(&app, &token, ADMIN_USERS, &[("q", &mobile)]), 200);
        let found = ids(body["users"].as_array().unwrap_or_else(|| panic!("{body}")));
        assert_eq!(found, vec![mobile_id.clone()], "q={mobile}: {body}");
        // Part of a number, written with or without formatting, finds it too.
        let digits: String = mobile.chars().filter(char::is_ascii_digit).collect();
        let tail = &digits[digits.len() - 6..];
        let spaced = format!("{} {}", &tail[..3], &tail[3..]);
        for q in [tail, spaced.as_str()] {
            let body = json_body(admin_get(&app, &token, ADMIN_USERS, &[("q", q)]), 200);
            let found = ids(body["users"].as_array().unwrap_or_else(|| panic!("{body}")));
            assert!(found.contains(&mobile_id), "q={q}: {body}");
            assert!(!found.contains(&other_id), "q={q}: {body}");
        }
        // No username, email or mobile number can hold `%`: a LIKE wildcard must not leak.
        let body = json_body(admin_get(&app, &token, ADMIN_USERS, &[("q", "%")]), 200);
        assert_eq!(body["users"], json!([]), "q=% matched users: {body}");
    }

    /// limit + cursor paging returns every match exactly once, even while matching users
    /// are registered between page fetches.
    fn admin_user_paging_returns_every_match_exactly_once() {
        let (app, token, _) = admin_app();
        let marker = unique_suffix();
        let matching = |i: usize| {
            let mut u = unique_user();
            u.username = format!("p{marker}_{i}");
            u
        };
        let mut originals = HashSet::new();
        for i in 0..7 {
            originals.insert(id_of(&app.register_user(&matching(i))["user"]));
        }
        let mut extra = 100;
        let pages = all_pages(
            &app,
            &token,
            ADMIN_USERS,
            "users",
            &[("q", &marker)],
            2,
            || {
                app.register_user(&matching(extra));
                extra += 1;
            },
        );
        assert_each_listed_once(&pages, &originals);
    }

    /// Bad `limit` or `cursor` → 422.
    fn admin_user_list_rejects_bad_limit_and_cursor() {
        let (app, token, _) = admin_app();
        // API.md gives no maximum limit: only clearly invalid ones are tried. The code
        // is not pinned for a bad cursor (validation_failed or a specific one).
        assert_bad_paging_is_422(
            &app,
            &token,
            ADMIN_USERS,
            &[("limit", "0"), ("limit", "-1"), ("limit", "ten"), ("cursor", "not a cursor!")],
        );
    }

    /// Unknown user ids: 404 on GET, PATCH, DELETE and DELETE …/sessions.
    fn admin_user_endpoints_answer_404_for_unknown_ids() {
        let (app, token, _) = admin_app();
        let (_, gone, _, _) = registered(&app);
        let path = format!("{ADMIN_USERS}/{gone}");
        assert_eq!(
            call(&app, Method::DELETE, &path, Some(&token), None).status(),
            204
        );
        for id in [gone.as_str(), "00000000-0000-0000-0000-000000000000"] {
            for (method, path, body) in admin_endpoints(id) {
                if path == ADMIN_USERS || path == AUDIT {
                    continue;
                }
                let resp = call(&app, method.clone(), &path, Some(&token), body.as_ref());
                assert_problem(resp, 404, "not_found");
            }
        }
    }

    /// Deactivation kills the user's tokens at once and login answers 403
    /// `account_disabled`; reactivation lets them log in again.
    fn admin_deactivation_kills_tokens_and_blocks_login() {
        let (app, token, _) = admin_app();
        let (user, id, user_token, refresh) = registered(&app);
        let second = app.login_ok(&user.username, &user.password);
        let second = second["access_token"].as_str().unwrap().to_owned();
        let updated = patch_user(&app, &token, &id, &json!({"is_active": false}));
        assert_eq!(updated["is_active"], false, "{updated}");
        assert_user_resource(&updated);
        assert_token_dead(&app, &user_token);
        assert_token_dead(&app, &second);
        let resp = app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": refresh}));
        assert_eq!(
            resp.status(),
            401,
            "refresh after deactivation: {:?}",
            resp.text()
        );
        assert_problem(
            app.login(&user.username, &user.password),
            403,
            "account_disabled",
        );

        patch_user(&app, &token, &id, &json!({"is_active": true}));
        app.login_ok(&user.username, &user.password);
    }

    /// PATCH `is_admin` and `email_verified` show in GET.
    fn admin_patch_of_flags_is_reflected_in_get() {
        let (app, token, _) = admin_app();
        let (_, id, _, _) = registered(&app);
        let path = format!("{ADMIN_USERS}/{id}");
        let before = json_body(admin_get(&app, &token, &path, &[]), 200);
        assert_user_resource(&before);
        assert_eq!(before["is_admin"], false);
        assert_eq!(before["email_verified"], false);
        let updated = patch_user(
            &app,
            &token,
            &id,
            &json!({"is_admin": true, "email_verified": true}),
        );
        assert_eq!(updated["is_admin"], true, "{updated}");
        assert_eq!(updated["email_verified"], true, "{updated}");
        let after = json_body(admin_get(&app, &token, &path, &[]), 200);
        assert_eq!(after["is_admin"], true, "{after}");
        assert_eq!(after["email_verified"], true, "{after}");
        assert_eq!(after["id"], before["id"]);
        patch_user(&app, &token, &id, &json!({"is_admin": false}));
        let last = json_body(admin_get(&app, &token, &path, &[]), 200);
        assert_eq!(last["is_admin"], false, "{last}");
        assert_eq!(last["email_verified"], true, "{last}");
    }

    /// DELETE a user → 204; their tokens die, GET is 404 and login fails.
    fn admin_delete_removes_the_user_and_kills_their_tokens() {
        let (app, token, _) = admin_app();
        let (user, id, user_token, refresh) = registered(&app);
        let path = format!("{ADMIN_USERS}/{id}");
        let resp = call(&app, Method::DELETE, &path, Some(&token), None);
        assert_eq!(resp.status(), 204, "{:?}", resp.text());
        assert_token_dead(&app, &user_token);
        let resp = app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": refresh}));
        assert_eq!(
            resp.status(),
            401,
            "refresh after deletion: {:?}",
            resp.text()
        );
        assert_problem(admin_get(&app, &token, &path, &[]), 404, "not_found");
        assert_problem(
            app.login(&user.username, &user.password),
            401,
            "invalid_credentials",
        );
        // The account is gone: its username and email are free again (API.md is silent;
        // this is what Keycloak, Kratos and Supabase do).
        let again = app.register_user(&user);
        assert_ne!(again["user"]["id"], id.as_str(), "{again}");
    }

    /// DELETE …/{id}/sessions → 204; every session of the user is dead.
    fn admin_revokes_every_session_of_a_user() {
        let (app, token, _) = admin_app();
        let (user, id, first, first_refresh) = registered(&app);
        let login = app.login_ok(&user.username, &user.password);
        let second = login["access_token"].as_str().unwrap().to_owned();
        let (_, _, bystander, _) = registered(&app);
        let path = format!("{ADMIN_USERS}/{id}/sessions");
        let resp = call(&app, Method::DELETE, &path, Some(&token), None);
        assert_eq!(resp.status(), 204, "{:?}", resp.text());
        assert_token_dead(&app, &first);
        assert_token_dead(&app, &second);
        for refresh in [
            first_refresh.as_str(),
            login["refresh_token"].as_str().unwrap(),
        ] {
            let resp = app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": refresh}));
            assert_eq!(
                resp.status(),
                401,
                "refresh after revocation: {:?}",
                resp.text()
            );
        }
        json_body(app.get_with_token(ME, &bystander), 200);
        json_body(app.get_with_token(ME, &token), 200);
        // The user can still log in: only sessions were revoked.
        app.login_ok(&user.username, &user.password);
    }

    /// The audit log: newest first, full shape, filters, actor ids, paging, no secrets.
    fn admin_audit_log_lists_filters_and_pages_without_secrets() {
        let (app, token, admin) = admin_app();
        let admin_id = id_of(&admin);
        let (user, id, user_token, refresh) = registered(&app);
        let wrong = format!("Wr0ng!{}", unique_suffix());
        assert_problem(
            app.login(&user.username, &wrong),
            401,
            "invalid_credentials",
        );
        let login = app.login_ok(&user.username, &user.password);
        patch_user(&app, &token, &id, &json!({"email_verified": true}));

        let body = json_body(admin_get(&app, &token, AUDIT, &[("user_id", &id)]), 200);
        assert!(body.get("next_cursor").is_some(), "{body}");
        let events = body["events"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"));
        let mut last_at = i64::MAX;
        for e in events {
            for field in ["id", "at", "event", "user_id", "ip_address", "detail"] {
                assert!(e.get(field).is_some(), "audit event without `{field}`: {e}");
            }
            assert_eq!(e["user_id"], id.as_str(), "user_id filter: {e}");
            let at = parse_utc_timestamp(e["at"].as_str().unwrap_or_default())
                .unwrap_or_else(|| panic!("`at` is not RFC 3339 UTC: {e}"));
            assert!(at <= last_at, "events are not newest first: {body}");
            last_at = at;
        }
        let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
        let position = |name: &str| {
            names
                .iter()
                .position(|n| *n == name)
                .unwrap_or_else(|| panic!("no `{name}` event for the user: {body}"))
        };
        assert!(
            position("admin_user_updated") < position("login"),
            "{names:?}"
        );
        assert!(position("login") < position("login_failed"), "{names:?}");
        assert!(position("login_failed") < position("register"), "{names:?}");
        let update = &events[position("admin_user_updated")];
        assert_eq!(update["detail"]["actor_id"], admin_id.as_str(), "{update}");

        let filtered = json_body(
            admin_get(
                &app,
                &token,
                AUDIT,
                &[("user_id", &id), ("event", "login_failed")],
            ),
            200,
        );
        let only = filtered["events"]
            .as_array()
            .unwrap_or_else(|| panic!("{filtered}"));
        assert!(!only.is_empty(), "{filtered}");
        assert!(
            only.iter().all(|e| e["event"] == "login_failed"),
            "{filtered}"
        );

        let pages = all_pages(&app, &token, AUDIT, "events", &[("user_id", &id)], 1, || {});
        let paged: Vec<String> = pages.iter().flat_map(|p| ids(p)).collect();
        assert_eq!(
            paged,
            ids(events),
            "paging by 1 differs from the whole list"
        );

        let login_event = &events[position("login")];
        assert_eq!(login_event["ip_address"], "127.0.0.1", "{login_event}");

        // New events about the user between page fetches: no event twice, none skipped.
        let pages = all_pages(
            &app,
            &token,
            AUDIT,
            "events",
            &[("user_id", &id)],
            2,
            || {
                assert_problem(
                    app.login(&user.username, &wrong),
                    401,
                    "invalid_credentials",
                );
            },
        );
        let paged: Vec<String> = pages.iter().flat_map(|p| ids(p)).collect();
        let unique: HashSet<&String> = paged.iter().collect();
        assert_eq!(
            unique.len(),
            paged.len(),
            "an event was listed twice: {pages:?}"
        );
        for old in ids(events) {
            assert!(paged.contains(&old), "event {old} was skipped: {pages:?}");
        }

        let everything = all_pages(&app, &token, AUDIT, "events", &[], 50, || {});
        let text = serde_json::to_string(&everything).unwrap();
        let secrets = [
            STRONG_PASSWORD,
            wrong.as_str(),
            user_token.as_str(),
            refresh.as_str(),
            token.as_str(),
            login["access_token"].as_str().unwrap(),
            login["refresh_token"].as_str().unwrap(),
            "$argon2",
        ];
        for secret in secrets {
            assert!(
                !text.contains(secret),
                "the audit log holds a secret {secret:?}: {text}"
            );
        }
        for page in &everything {
            page.iter().for_each(assert_no_secrets);
        }
    }

    /// RATE_LIMIT=3/59 without trusted proxies: X-Forwarded-For is ignored, and the 4th
    /// login POST from 127.0.0.1 gets 429 `rate_limited` with Retry-After.
    fn rate_limit_ignores_x_forwarded_for_without_trusted_proxies() {
        let app = TestApp::spawn_with(&[("PORTCULLIS_RATE_LIMIT", "3/59")]);
        let login = unique_user().username;
        // 59 s windows: a budget of its own, apart from the 60 s tests on a shared
        // database (counters are per IP and window length).
        start_of_a_rate_window(59, 5000);
        for _ in 0..3 {
            let ip = unique_ip();
            let resp = login_from(&app, Some(&ip), &login, STRONG_PASSWORD);
            assert_problem(resp, 401, "invalid_credentials");
        }
        assert_rate_limited(
            login_from(&app, Some(&unique_ip()), &login, STRONG_PASSWORD),
            59,
        );
        assert_rate_limited(login_from(&app, None, &login, STRONG_PASSWORD), 59);
        // Only POSTs to /api/v1/auth/* count: other requests still go through.
        app.assert_healthy();
        assert_problem(app.get(ME), 401, "unauthorized");
    }

    /// With 127.0.0.1 a trusted proxy, each X-Forwarded-For client has its own budget.
    fn trusted_proxies_give_each_forwarded_client_its_own_budget() {
        let app = TestApp::spawn_with(&[
            ("PORTCULLIS_RATE_LIMIT", "3/61"),
            ("PORTCULLIS_TRUSTED_PROXIES", "127.0.0.1/32"),
        ]);
        let (first, second) = (unique_ip(), unique_ip());
        // 61 s windows: the garbage X-Forwarded-For below counts against 127.0.0.1,
        // which must not eat the budget of the 60 s tests on a shared database.
        start_of_a_rate_window(61, 5000);
        assert_ne!(first, second);
        // A garbage X-Forwarded-For from a trusted proxy is no reason to fail.
        let resp = login_from(
            &app,
            Some("not-an-ip"),
            &unique_user().username,
            STRONG_PASSWORD,
        );
        assert_problem(resp, 401, "invalid_credentials");
        // One account per client, so that the login throttle stays out of the way.
        for ip in [&first, &second] {
            let login = unique_user().username;
            for _ in 0..3 {
                let resp = login_from(&app, Some(ip), &login, STRONG_PASSWORD);
                assert_problem(resp, 401, "invalid_credentials");
            }
            assert_rate_limited(login_from(&app, Some(ip), &login, STRONG_PASSWORD), 61);
        }
    }

    /// Two hosts on one database share the per-IP budget: 2 requests via each, the 4th
    /// in all is 429.
    fn rate_limit_is_shared_by_hosts_on_one_database() {
        let database = shared_database();
        let settings = [("PORTCULLIS_RATE_LIMIT", "3/60")];
        let a = TestApp::spawn_on(&database.url, &settings);
        let b = TestApp::spawn_on(&database.url, &settings);
        let login = unique_user().username;
        start_of_a_rate_window(60, 5000);
        assert_problem(a.login(&login, STRONG_PASSWORD), 401, "invalid_credentials");
        assert_problem(a.login(&login, STRONG_PASSWORD), 401, "invalid_credentials");
        assert_problem(b.login(&login, STRONG_PASSWORD), 401, "invalid_credentials");
        assert_rate_limited(b.login(&login, STRONG_PASSWORD), 60);
    }

    /// 5 wrong passwords, then even the right one → 429 with Retry-After; an unknown
    /// account gets the same answers.
    fn login_throttle_blocks_after_five_failures_for_known_and_unknown_accounts() {
        let app = spawn_app();
        let (user, _, _, _) = registered(&app);
        let unknown = unique_user();
        let known = after_five_failures(&app, &user.username, &user.password);
        let other = after_five_failures(&app, &unknown.username, &unknown.password);
        assert_eq!(known.1, 429, "known account: {known:?}");
        assert!(known.2.is_some(), "429 without Retry-After: {known:?}");
        assert_eq!(known.3["code"], "rate_limited", "{known:?}");
        assert_eq!(other.1, known.1, "unknown {other:?} vs known {known:?}");
        assert_eq!(
            other.2, known.2,
            "Retry-After: unknown {other:?} vs known {known:?}"
        );
        for field in ["status", "code", "type", "title"] {
            assert_eq!(
                other.3[field], known.3[field],
                "unknown {other:?} vs known {known:?}"
            );
        }
    }

    /// Failed logins through two hosts on one database count together.
    fn login_throttle_counts_failures_across_hosts() {
        let database = shared_database();
        let a = TestApp::spawn_on(&database.url, &[]);
        let b = TestApp::spawn_on(&database.url, &[]);
        let (user, _, _, _) = registered(&a);
        for host in [&a, &b, &a, &b, &a] {
            assert_problem(
                host.login(&user.username, "Wr0ng!pass"),
                401,
                "invalid_credentials",
            );
        }
        assert_rate_limited(b.login(&user.username, &user.password), 3600);
    }

    /// CORS preflight from an allowed origin → 204 echoing it; another origin gets no
    /// Allow-Origin; security headers everywhere, HSTS not over http.
    fn cors_preflight_and_security_headers() {
        let origin = "https://app.example.com";
        let app = TestApp::spawn_with(&[("PORTCULLIS_CORS_ORIGINS", origin)]);
        let preflight = |from: &str| {
            app.request(Method::OPTIONS, LOGIN)
                .header("Origin", from)
                .header("Access-Control-Request-Method", "POST")
                .header("Access-Control-Request-Headers", "content-type")
                .send()
                .expect("preflight")
        };
        let allowed = preflight(origin);
        assert_eq!(allowed.status(), 204, "preflight from an allowed origin");
        assert_eq!(
            header(&allowed, "access-control-allow-origin").as_deref(),
            Some(origin)
        );
        assert_security_headers(&allowed, "preflight", false);
        // The status for a foreign origin's preflight is not in API.md: only the absence
        // of Allow-Origin is checked.
        let foreign = preflight("https://evil.example.net");
        assert!(
            header(&foreign, "access-control-allow-origin").is_none(),
            "a foreign origin got Access-Control-Allow-Origin"
        );
        let simple = app
            .request(Method::GET, "/health")
            .header("Origin", origin)
            .send()
            .unwrap();
        assert_eq!(
            header(&simple, "access-control-allow-origin").as_deref(),
            Some(origin)
        );

        let answers = [
            ("/health", app.get("/health")),
            ("404", app.get("/no/such/route")),
            ("401", app.get(ME)),
            ("login 401", app.login("nobody_here", STRONG_PASSWORD)),
        ];
        for (what, resp) in &answers {
            assert_security_headers(resp, what, false);
        }
    }

    /// With an https PUBLIC_URL every answer carries Strict-Transport-Security.
    fn hsts_is_sent_when_the_public_url_is_https() {
        let app = TestApp::spawn_with(&[("PORTCULLIS_PUBLIC_URL", "https://auth.example.com")]);
        assert_security_headers(&app.get("/health"), "/health", true);
        assert_security_headers(&app.get(ME), "401", true);
        assert_security_headers(&app.login("nobody_here", STRONG_PASSWORD), "login", true);
        let wrong_method = app.request(Method::DELETE, "/health").send().unwrap();
        assert_security_headers(&wrong_method, "405", true);
        // No CORS_ORIGINS: no origin is allowed.
        let preflight = app
            .request(Method::OPTIONS, LOGIN)
            .header("Origin", "https://app.example.com")
            .header("Access-Control-Request-Method", "POST")
            .send()
            .unwrap();
        assert!(
            header(&preflight, "access-control-allow-origin").is_none(),
            "CORS without PORTCULLIS_CORS_ORIGINS"
        );
    }

    /// Admin actions on a user (update, session revocation, deletion) are audited about
    /// that user with the admin's id in `detail.actor_id`; `event` filters alone.
    fn admin_actions_are_audited_with_the_actor() {
        let (app, token, admin) = admin_app();
        let admin_id = id_of(&admin);
        let (_, id, _, _) = registered(&app);
        patch_user(&app, &token, &id, &json!({"is_admin": true}));
        let sessions = format!("{ADMIN_USERS}/{id}/sessions");
        let resp = call(&app, Method::DELETE, &sessions, Some(&token), None);
        assert_eq!(resp.status(), 204);
        let before = json_body(admin_get(&app, &token, AUDIT, &[("user_id", &id)]), 200);
        let resp = call(
            &app,
            Method::DELETE,
            &format!("{ADMIN_USERS}/{id}"),
            Some(&token),
            None,
        );
        assert_eq!(resp.status(), 204);
        let after = json_body(admin_get(&app, &token, AUDIT, &[("user_id", &id)]), 200);
        let events = after["events"]
            .as_array()
            .unwrap_or_else(|| panic!("{after}"));
        let by_admin: Vec<&str> = events
            .iter()
            .filter(|e| e["detail"]["actor_id"] == admin_id.as_str())
            .filter_map(|e| e["event"].as_str())
            .collect();
        assert!(by_admin.contains(&"admin_user_updated"), "{after}");
        assert!(
            by_admin.contains(&"account_deleted"),
            "deletion by the admin: {after}"
        );
        // API.md names no event for an admin's session revocation (`session_revoked`
        // is the natural one): some event with the actor must have been added for it.
        let before_count = before["events"].as_array().map_or(0, |e| {
            e.iter()
                .filter(|e| e["detail"]["actor_id"] == admin_id.as_str())
                .count()
        });
        assert!(
            before_count >= 2,
            "no audited revocation by the admin: {before}"
        );

        let filtered = json_body(
            admin_get(&app, &token, AUDIT, &[("event", "admin_user_updated")]),
            200,
        );
        let only = filtered["events"]
            .as_array()
            .unwrap_or_else(|| panic!("{filtered}"));
        assert!(
            only.iter().any(|e| e["user_id"] == id.as_str()),
            "{filtered}"
        );
        assert!(
            only.iter().all(|e| e["event"] == "admin_user_updated"),
            "{filtered}"
        );
    }

    /// A promoted user may use the admin API (after a fresh login); once demoted, a fresh
    /// login is refused there again with 403. (Whether tokens issued before a change
    /// follow it at once is not in API.md.)
    fn promotion_and_demotion_change_admin_access() {
        let (app, token, _) = admin_app();
        let (user, id, _, _) = registered(&app);
        patch_user(&app, &token, &id, &json!({"is_admin": true}));
        let promoted = app.login_ok(&user.username, &user.password);
        let promoted = promoted["access_token"].as_str().unwrap();
        json_body(admin_get(&app, promoted, ADMIN_USERS, &[]), 200);
        patch_user(&app, &token, &id, &json!({"is_admin": false}));
        let demoted = app.login_ok(&user.username, &user.password);
        let demoted = demoted["access_token"].as_str().unwrap();
        assert_problem(admin_get(&app, demoted, ADMIN_USERS, &[]), 403, "forbidden");
    }

    /// PATCH with a wrongly typed flag → 422, and the user is unchanged.
    fn admin_patch_rejects_wrongly_typed_flags() {
        let (app, token, _) = admin_app();
        let (_, id, user_token, _) = registered(&app);
        let path = format!("{ADMIN_USERS}/{id}");
        // API.md does not pin the code (validation_failed is the natural one).
        for body in [json!({"is_active": "no"}), json!({"is_admin": 1})] {
            let resp = call(&app, Method::PATCH, &path, Some(&token), Some(&body));
            let (status, problem) = assert_client_error(resp, "bad PATCH");
            assert!(status == 422 || status == 400, "{body}: {status} {problem}");
        }
        let user = json_body(admin_get(&app, &token, &path, &[]), 200);
        assert_eq!(user["is_active"], true, "{user}");
        assert_eq!(user["is_admin"], false, "{user}");
        json_body(app.get_with_token(ME, &user_token), 200);
    }

    /// A successful login resets the failure count: 4 failures, success, 4 failures,
    /// success again.
    fn a_successful_login_resets_the_throttle() {
        let app = spawn_app();
        let (user, _, _, _) = registered(&app);
        for _ in 0..2 {
            for _ in 0..4 {
                let resp = app.login(&user.username, "Wr0ng!pass");
                assert_problem(resp, 401, "invalid_credentials");
            }
            app.login_ok(&user.username, &user.password);
        }
    }

    /// Deactivation through one host kills the user's token on another host at once.
    fn deactivation_through_one_host_kills_tokens_on_another() {
        let database = shared_database();
        let admin = unique_user();
        let a = TestApp::spawn_on(&database.url, &admin_settings(&admin));
        let b = TestApp::spawn_on(&database.url, &[]);
        let login = a.login_ok(&admin.username, &admin.password);
        let token = login["access_token"].as_str().unwrap();
        let (_, id, user_token, _) = registered(&b);
        json_body(b.get_with_token(ME, &user_token), 200);
        patch_user(&a, token, &id, &json!({"is_active": false}));
        assert_token_dead(&b, &user_token);
    }

    /// Behind a trusted proxy the client is the right-most untrusted X-Forwarded-For
    /// entry: varying what the client itself put to the left does not buy a new budget.
    /// (API.md says only "CIDRs whose X-Forwarded-For is believed"; this is how nginx's
    /// real_ip_recursive and other mainstream proxies' consumers read the header.)
    fn a_client_cannot_spoof_its_way_past_a_trusted_proxy() {
        let app = TestApp::spawn_with(&[
            ("PORTCULLIS_RATE_LIMIT", "3/60"),
            ("PORTCULLIS_TRUSTED_PROXIES", "127.0.0.1/32"),
        ]);
        let client = unique_ip();
        let login = unique_user().username;
        start_of_a_rate_window(60, 5000);
        for _ in 0..3 {
            let chain = format!("{}, {client}", unique_ip());
            let resp = login_from(&app, Some(&chain), &login, STRONG_PASSWORD);
            assert_problem(resp, 401, "invalid_credentials");
        }
        let chain = format!("{}, {client}", unique_ip());
        assert_rate_limited(login_from(&app, Some(&chain), &login, STRONG_PASSWORD), 60);
    }

    /// A rate-limited request is audited (`rate_limited`) with the client's IP as seen
    /// through the trusted proxy.
    fn rate_limited_requests_are_audited_with_the_client_ip() {
        let admin = unique_user();
        let mut settings = admin_settings(&admin).to_vec();
        settings.push(("PORTCULLIS_RATE_LIMIT", "3/60"));
        settings.push(("PORTCULLIS_TRUSTED_PROXIES", "127.0.0.1/32"));
        let app = TestApp::spawn_with(&settings);
        let admin_ip = unique_ip();
        let resp = login_from(&app, Some(&admin_ip), &admin.username, &admin.password);
        let token = json_body(resp, 200)["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let client = unique_ip();
        let login = unique_user().username;
        start_of_a_rate_window(60, 5000);
        for _ in 0..3 {
            let resp = login_from(&app, Some(&client), &login, STRONG_PASSWORD);
            assert_problem(resp, 401, "invalid_credentials");
        }
        assert_rate_limited(login_from(&app, Some(&client), &login, STRONG_PASSWORD), 60);
        let body = json_body(
            admin_get(&app, &token, AUDIT, &[("event", "rate_limited")]),
            200,
        );
        let events = body["events"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"));
        assert!(
            events.iter().any(|e| e["ip_address"] == client.as_str()),
            "no rate_limited event from {client}: {body}"
        );
        let failed = json_body(
            admin_get(&app, &token, AUDIT, &[("event", "login_failed")]),
            200,
        );
        assert!(
            failed["events"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["ip_address"] == client.as_str())),
            "no login_failed event from {client}: {failed}"
        );
    }

    /// With REQUIRE_EMAIL_VERIFICATION, an admin's `email_verified: true` lets the user in.
    fn admin_email_verification_unblocks_login() {
        let admin = unique_user();
        let mut settings = admin_settings(&admin).to_vec();
        settings.push(("PORTCULLIS_REQUIRE_EMAIL_VERIFICATION", "true"));
        let app = TestApp::spawn_with(&settings);
        let login = app.login_ok(&admin.username, &admin.password);
        let token = login["access_token"].as_str().unwrap();
        let user = unique_user();
        let body = app.register_user(&user);
        let id = id_of(&body["user"]);
        assert_problem(
            app.login(&user.username, &user.password),
            403,
            "email_not_verified",
        );
        patch_user(&app, token, &id, &json!({"email_verified": true}));
        app.login_ok(&user.username, &user.password);
    }

    /// The throttle's wait doubles: 1 s after the 5th failure, 2 s after the 6th; once
    /// the wait is over the right password gets in.
    fn login_throttle_wait_doubles_and_then_lets_the_right_password_in() {
        let app = spawn_app();
        let (user, _, _, _) = registered(&app);
        for _ in 0..5 {
            assert_problem(
                app.login(&user.username, "Wr0ng!pass"),
                401,
                "invalid_credentials",
            );
        }
        assert_rate_limited(app.login(&user.username, &user.password), 1);
        std::thread::sleep(Duration::from_millis(1300));
        assert_problem(
            app.login(&user.username, "Wr0ng!pass"),
            401,
            "invalid_credentials",
        );
        assert_rate_limited(app.login(&user.username, &user.password), 2);
        std::thread::sleep(Duration::from_millis(2300));
        app.login_ok(&user.username, &user.password);
    }

    /// The per-IP budget covers every POST under /api/v1/auth/, and renews after S s.
    fn rate_limit_covers_every_auth_post_and_renews_after_its_window() {
        let app = TestApp::spawn_with(&[("PORTCULLIS_RATE_LIMIT", "3/2")]);
        let user = unique_user();
        start_of_a_rate_window(2, 1700);
        assert_problem(
            app.login(&user.username, STRONG_PASSWORD),
            401,
            "invalid_credentials",
        );
        app.register_user(&user);
        let forgot = app.post_json(
            "/api/v1/auth/password/forgot",
            &json!({"email": user.email}),
        );
        assert_eq!(forgot.status(), 202, "{:?}", forgot.text());
        let refresh = app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": "x"}));
        assert_rate_limited(refresh, 2);
        std::thread::sleep(Duration::from_millis(2500));
        app.login_ok(&user.username, &user.password);
    }

    /// `portcullis admin create --password-stdin` works too; creating the same admin
    /// again does not make a second account.
    fn cli_admin_create_accepts_password_stdin_and_refuses_duplicates() {
        let database = shared_database();
        let app = TestApp::spawn_on(&database.url, &[]);
        let admin = unique_user();
        let folder = tempfile::tempdir().expect("tempdir");
        let mut child = portcullis(
            &[
                "admin",
                "create",
                "--username",
                &admin.username,
                "--email",
                &admin.email,
                "--password-stdin",
            ],
            folder.path(),
            &[("PORTCULLIS_DATABASE_URL", &database.url)],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run `portcullis admin create`");
        writeln!(child.stdin.take().unwrap(), "{}", admin.password).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "--password-stdin: {out:?}");
        let login = app.login_ok(&admin.username, &admin.password);
        let id = id_of(&login["user"]);

        // API.md is silent on a second run: refusing (non-zero) is expected; an exit 0
        // that names the existing account is tolerated. A second account is not.
        let (ok, stdout, stderr) = admin_create(&database.url, &admin, &admin.password);
        assert!(
            !ok || stdout.contains(&id),
            "second create:\n{stdout}\n{stderr}"
        );
        let token = login["access_token"].as_str().unwrap();
        let body = json_body(
            admin_get(&app, token, ADMIN_USERS, &[("q", &admin.username)]),
            200,
        );
        assert_eq!(body["users"].as_array().map(Vec::len), Some(1), "{body}");
    }

    /// Users registered by another thread while pages are fetched: still every match
    /// exactly once.
    fn admin_user_paging_survives_concurrent_registrations() {
        let (app, token, _) = admin_app();
        let marker = unique_suffix();
        let matching = || {
            let mut u = unique_user();
            u.username = format!("c{marker}_{}", unique_suffix());
            u
        };
        let originals: HashSet<String> = (0..9)
            .map(|_| id_of(&app.register_user(&matching())["user"]))
            .collect();
        let done = std::sync::atomic::AtomicBool::new(false);
        let pages = std::thread::scope(|scope| {
            scope.spawn(|| {
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    app.register_user(&matching());
                }
            });
            let pages = all_pages(
                &app,
                &token,
                ADMIN_USERS,
                "users",
                &[("q", &marker)],
                3,
                || {
                    std::thread::sleep(Duration::from_millis(50));
                },
            );
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            pages
        });
        assert_each_listed_once(&pages, &originals);
    }

    /// Bad `limit` or `cursor` on the audit log → 422 like the user list.
    /// (API.md gives the 422 only for the user list; the same paging rules are assumed.)
    fn admin_audit_rejects_bad_limit_and_cursor() {
        let (app, token, _) = admin_app();
        assert_bad_paging_is_422(
            &app,
            &token,
            AUDIT,
            &[("limit", "0"), ("limit", "x"), ("cursor", "not a cursor!")],
        );
    }

    /// The wait after the 5th failure is a full second (2^0 s) wherever the clock's
    /// second boundary falls: an attempt 0.85 s after the 5th failure's answer (which
    /// is timed to come early in a clock second) must still be refused.
    fn login_throttle_wait_is_a_full_second_across_a_clock_second_boundary() {
        let app = spawn_app();
        let (user, _, _, _) = registered(&app);
        for _ in 0..4 {
            assert_problem(
                app.login(&user.username, "Wr0ng!pass"),
                401,
                "invalid_credentials",
            );
        }
        let into = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_millis();
        let to_wait = (1200 - u64::from(into)) % 1000;
        std::thread::sleep(Duration::from_millis(to_wait));
        assert_problem(
            app.login(&user.username, "Wr0ng!pass"),
            401,
            "invalid_credentials",
        );
        let fifth = Instant::now();
        std::thread::sleep(Duration::from_millis(850));
        let resp = app.login(&user.username, &user.password);
        let elapsed = fifth.elapsed();
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        // Only an answer within 1 s of the 5th failure's answer proves anything.
        if elapsed < Duration::from_millis(1000) {
            assert_eq!(
                status, 429,
                "an attempt answered {elapsed:?} after the 5th failure's answer got in: {text}"
            );
        }
    }

    /// `q` is text, not a LIKE pattern: `_` and `%` match only themselves.
    fn admin_user_search_treats_wildcards_literally() {
        let (app, token, _) = admin_app();
        let marker = unique_suffix();
        let mut literal = unique_user();
        literal.username = format!("x{marker}_z");
        let mut lookalike = unique_user();
        lookalike.username = format!("x{marker}qz");
        let literal_id = id_of(&app.register_user(&literal)["user"]);
        let lookalike_id = id_of(&app.register_user(&lookalike)["user"]);
        let q = format!("{marker}_z");
        let body = json_body(admin_get(&app, &token, ADMIN_USERS, &[("q", &q)]), 200);
        let found = ids(body["users"].as_array().unwrap_or_else(|| panic!("{body}")));
        assert!(found.contains(&literal_id), "q={q}: {body}");
        assert!(
            !found.contains(&lookalike_id),
            "q={q} matched {lookalike_id} (`_` as a wildcard): {body}"
        );
        let q = format!("{marker}%z");
        let body = json_body(admin_get(&app, &token, ADMIN_USERS, &[("q", &q)]), 200);
        assert_eq!(
            body["users"],
            json!([]),
            "q={q} (`%` as a wildcard): {body}"
        );
    }

    /// Failures by username and by email count on one account.
    fn login_throttle_counts_per_account_whatever_the_login_form() {
        let app = spawn_app();
        let (user, _, _, _) = registered(&app);
        let upper = user.email.to_uppercase();
        for login in [
            &user.username,
            &user.email,
            &upper,
            &user.username,
            &user.email,
        ] {
            assert_problem(app.login(login, "Wr0ng!pass"), 401, "invalid_credentials");
        }
        assert_rate_limited(app.login(&user.username, &user.password), 1);
    }

    /// Deactivation revokes sessions: reactivating does not bring old tokens back.
    fn reactivation_does_not_revive_old_tokens() {
        let (app, token, _) = admin_app();
        let (user, id, user_token, refresh) = registered(&app);
        patch_user(&app, &token, &id, &json!({"is_active": false}));
        patch_user(&app, &token, &id, &json!({"is_active": true}));
        assert_token_dead(&app, &user_token);
        let resp = app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": refresh}));
        assert_eq!(
            resp.status(),
            401,
            "old refresh token after reactivation: {:?}",
            resp.text()
        );
        app.login_ok(&user.username, &user.password);
    }
}
