//! The harness of the black-box suite: starts the real `portcullis` binary on a free port
//! with a fresh data folder and talks HTTP to it, as any client would. On the Spin setup
//! (`backends::Host::Spin`) it starts the Spin test host, `portcullis-spin-test-host`,
//! on the Spin artifact instead, with the same `PORTCULLIS_*` settings (the test host
//! gives each to the artifact as the Spin variable of the same name; it ignores what
//! only the native host reads).
//!
//! Database: the trial's backend (see `backends`) decides. On SQLite every app gets
//! `sqlite://<its own tempdir>/portcullis.db`; on PostgreSQL and MySQL every app uses the
//! run's database. That is the single place to change; see [`database_url`]. Tests only
//! ever use identities from [`unique_user`] / [`unique_mobile`], so several apps may share
//! one database. Several apps of one test share one with [`shared_database`] and
//! [`TestApp::spawn_on`].

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{Value, json};

use crate::backends::{self, Backend, Host};

/// The HS256 secret every test app is started with (48 characters).
pub const TEST_JWT_SECRET: &str = "portcullis-black-box-test-secret-0123456789abcd";

/// A password that passes the `complex` policy for any user made by [`unique_user`].
pub const STRONG_PASSWORD: &str = "Tr1cky!Horse#42";

/// How long we wait for `listening on http://ADDR`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The one place where the database of a test app is chosen.
fn database_url(data_dir: &std::path::Path) -> String {
    backends::current()
        .database_url
        .unwrap_or_else(|| format!("sqlite://{}/portcullis.db", data_dir.display()))
}

/// One database that several apps of a test share: the run's database on PostgreSQL and
/// MySQL, a fresh file on SQLite (several hosts on one file, in WAL mode).
pub struct SharedDatabase {
    /// What `PORTCULLIS_DATABASE_URL` says.
    pub url: String,
    _folder: Option<tempfile::TempDir>,
}

/// A database for several apps of the current trial (see [`TestApp::spawn_on`]).
pub fn shared_database() -> SharedDatabase {
    match backends::current().database_url {
        Some(url) => SharedDatabase { url, _folder: None },
        None => {
            let folder = tempfile::tempdir().expect("tempdir");
            SharedDatabase {
                url: format!("sqlite://{}/shared.db", folder.path().display()),
                _folder: Some(folder),
            }
        }
    }
}

/// The backend of the trial running on this thread.
pub fn backend() -> Backend {
    backends::current().backend
}

/// What serves the apps of the trial running on this thread.
pub fn host() -> Host {
    backends::current().host
}

/// The workspace root (this test belongs to `host`).
fn workspace() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `<target>/spin/portcullis.wasm`, where `spin/compose` writes the Spin artifact.
fn spin_artifact() -> std::path::PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace().join(dir),
        None => workspace().join("target"),
    };
    target.join("spin").join("portcullis.wasm")
}

/// Builds the Spin artifact as `spin build` does (`cargo run -p portcullis-spin-compose`),
/// once per run, before the Spin setup's trials start.
pub fn build_spin_artifact() -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // The nested wasm builds take none of the outer build's compiler settings.
    let output = Command::new(cargo)
        .current_dir(workspace())
        .args(["run", "--release", "-p", "portcullis-spin-compose"])
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("running `cargo run -p portcullis-spin-compose`: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(format!(
            "building the Spin artifact failed:\n{}",
            stderr.trim()
        ))
    }
}

/// The command that starts an app on the trial's host.
/// Keeps the developer's own `PORTCULLIS_*` variables away from a process the suite
/// starts (it sees only the settings the test gives), and its log free of colours.
pub fn isolate_settings(command: &mut Command) {
    command.env("NO_COLOR", "1");
    for (key, _) in std::env::vars() {
        if key.starts_with("PORTCULLIS_") {
            command.env_remove(key);
        }
    }
}

fn app_command() -> Command {
    match host() {
        Host::Native => {
            let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
            command.arg("serve");
            command
        }
        Host::Spin => {
            let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis-spin-test-host"));
            command
                .arg(workspace().join("spin.toml"))
                .arg(spin_artifact());
            command
        }
    }
}

/// A component cache shared by every app of every run of this build of the suite.
pub fn shared_cache_dir() -> String {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("portcullis-component-cache");
    std::fs::create_dir_all(&dir).expect("create the shared component cache");
    dir.display().to_string()
}

pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    pub client: Client,
    child: Child,
    output: Arc<Mutex<String>>,
    _data_dir: tempfile::TempDir,
}

/// Starts an app with the default test settings.
pub fn spawn_app() -> TestApp {
    TestApp::spawn_with(&[])
}

/// Reads `reader` line by line into `sink`, and reports the address once a line says
/// `listening on http://ADDR`.
fn pump(
    reader: impl Read + Send + 'static,
    stream: &'static str,
    sink: Arc<Mutex<String>>,
    tx: mpsc::Sender<String>,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(reader);
        let mut raw = Vec::new();
        loop {
            raw.clear();
            match reader.read_until(b'\n', &mut raw) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&raw);
            if let Some(addr) = listening_address(&line) {
                let _ = tx.send(addr);
            }
            let mut out = sink.lock().unwrap();
            out.push_str(&format!("[{stream}] {line}"));
            if !line.ends_with('\n') {
                out.push('\n');
            }
        }
    });
}

fn listening_address(line: &str) -> Option<String> {
    const MARK: &str = "listening on http://";
    let start = line.find(MARK)? + MARK.len();
    let addr: String = line[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    (!addr.is_empty()).then_some(addr)
}

impl TestApp {
    /// Starts `portcullis serve` (or, on the Spin setup, the Spin test host) with the
    /// default test settings, each of which may be overridden (or completed) by
    /// `overrides`.
    pub fn spawn_with(overrides: &[(&str, &str)]) -> TestApp {
        let data_dir = tempfile::tempdir().expect("tempdir");
        let db = database_url(data_dir.path());
        let mut settings: Vec<(String, String)> = vec![
            ("PORTCULLIS_LISTEN".into(), "127.0.0.1:0".into()),
            (
                "PORTCULLIS_DATA_DIR".into(),
                data_dir.path().display().to_string(),
            ),
            ("PORTCULLIS_DATABASE_URL".into(), db),
            ("PORTCULLIS_JWT_SECRET".into(), TEST_JWT_SECRET.into()),
            // All tests come from 127.0.0.1: the per-IP limit would only add noise.
            ("PORTCULLIS_RATE_LIMIT".into(), "off".into()),
            // Compiling the component takes seconds; the host can keep the result in a
            // cache that several hosts share. Without it every app would compile anew.
            ("PORTCULLIS_CACHE_DIR".into(), shared_cache_dir()),
        ];
        for (k, v) in overrides {
            match settings.iter_mut().find(|(key, _)| key == k) {
                Some(entry) => entry.1 = (*v).to_string(),
                None => settings.push(((*k).to_string(), (*v).to_string())),
            }
        }

        let mut cmd = app_command();
        cmd.current_dir(data_dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        isolate_settings(&mut cmd);
        for (k, v) in &settings {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("failed to start the portcullis binary");

        let output = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        pump(
            child.stdout.take().unwrap(),
            "stdout",
            output.clone(),
            tx.clone(),
        );
        pump(child.stderr.take().unwrap(), "stderr", output.clone(), tx);

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let addr = loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(addr) => break addr,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {}
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "portcullis exited ({status}) before printing `listening on http://ADDR`; \
                     settings {settings:?}; its output:\n{}",
                    output.lock().unwrap()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "portcullis did not print `listening on http://ADDR` within {:?}; \
                     settings {settings:?}; its output:\n{}",
                    STARTUP_TIMEOUT,
                    output.lock().unwrap()
                );
            }
        };

        let client = Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        TestApp {
            address: format!("http://{addr}"),
            client,
            child,
            output,
            _data_dir: data_dir,
        }
    }

    /// Starts an app on `database_url` (see [`shared_database`]) with the default test
    /// settings, each of which may be overridden by `overrides`.
    pub fn spawn_on(database_url: &str, overrides: &[(&str, &str)]) -> TestApp {
        let mut settings = vec![("PORTCULLIS_DATABASE_URL", database_url)];
        settings.extend_from_slice(overrides);
        TestApp::spawn_with(&settings)
    }

    /// Kills the app at once with SIGKILL (`kill -9` of its PID): no graceful shutdown.
    pub fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL the app");
        self.child.wait().expect("reap the killed app");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Everything the app printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits (at most `limit`) until the app's output contains `text`; returns it all.
    /// The app's lines reach the test through reader threads, a moment after they are
    /// written: a test that looks for a line it just caused waits for it this way.
    pub fn wait_for_output(&self, text: &str, limit: std::time::Duration) -> String {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let output = self.output();
            if output.contains(text) {
                return output;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{text:?} not in the app's output within {limit:?}:\n{output}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    fn send(&self, builder: RequestBuilder, what: &str) -> Response {
        builder.send().unwrap_or_else(|e| {
            panic!(
                "{what}: request failed: {e}\napp output:\n{}",
                self.output()
            )
        })
    }

    pub fn get(&self, path: &str) -> Response {
        self.send(self.request(Method::GET, path), path)
    }

    pub fn get_with_token(&self, path: &str, token: &str) -> Response {
        self.get_with_authorization(path, &format!("Bearer {token}"))
    }

    /// A GET with a raw `Authorization` header value.
    pub fn get_with_authorization(&self, path: &str, authorization: &str) -> Response {
        self.send(
            self.request(Method::GET, path)
                .header("Authorization", authorization),
            path,
        )
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Response {
        self.send(self.request(Method::POST, path).json(body), path)
    }

    /// POSTs `body` as is; `content_type: None` sends no Content-Type at all.
    pub fn post_raw(&self, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Response {
        let mut builder = self.request(Method::POST, path).body(body);
        if let Some(ct) = content_type {
            builder = builder.header("Content-Type", ct);
        }
        self.send(builder, path)
    }

    pub fn register(&self, username: &str, email: &str, password: &str) -> Response {
        self.post_json(
            "/api/v1/auth/register",
            &json!({"username": username, "email": email, "password": password}),
        )
    }

    /// Registers `user` (with its mobile number when it has one) and insists on 201.
    /// Returns the body.
    pub fn register_user(&self, user: &TestUser) -> Value {
        let mut body = json!({
            "username": user.username,
            "email": user.email,
            "password": user.password,
        });
        if let Some(m) = &user.mobile_number {
            body["mobile_number"] = json!(m);
        }
        let resp = self.post_json("/api/v1/auth/register", &body);
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        assert_eq!(status, 201, "registering {body} failed: {text}");
        serde_json::from_str(&text).expect("register: body is not JSON")
    }

    pub fn login(&self, login: &str, password: &str) -> Response {
        self.post_json(
            "/api/v1/auth/login",
            &json!({"login": login, "password": password}),
        )
    }

    /// Logs in and insists on 200; returns the token response.
    pub fn login_ok(&self, login: &str, password: &str) -> Value {
        let resp = self.login(login, password);
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        assert_eq!(status, 200, "login as {login:?} failed: {text}");
        serde_json::from_str(&text).expect("login: body is not JSON")
    }

    /// A fresh user, registered; returns (user, access token, token response).
    pub fn registered_user(&self) -> (TestUser, String, Value) {
        let user = unique_user();
        let body = self.register_user(&user);
        let token = body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token in {body}"))
            .to_string();
        (user, token, body)
    }

    /// `/health` answers 200 `status: ok` (the app survived whatever came before).
    pub fn assert_healthy(&self) {
        let resp = self.get("/health");
        assert_eq!(resp.status().as_u16(), 200, "health: {:?}", resp.text());
        let body: Value = resp.json().unwrap();
        assert_eq!(body["status"], "ok", "health: {body}");
        assert_eq!(body["database"], "ok", "health: {body}");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let out = self.output();
            let tail: String = {
                let chars: Vec<char> = out.chars().collect();
                let from = chars.len().saturating_sub(20_000);
                chars[from..].iter().collect()
            };
            eprintln!("---- portcullis output ({}) ----\n{tail}", self.address);
        }
    }
}

#[derive(Clone, Debug)]
pub struct TestUser {
    pub username: String,
    pub email: String,
    pub password: String,
    pub mobile_number: Option<String>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A short token unique across threads, processes and runs: lower-case letters and digits.
pub fn unique_suffix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let pid = std::process::id() as u128;
    // Mix so that consecutive calls differ in their leading characters too.
    let mixed = nanos
        .wrapping_mul(6364136223846793005)
        .wrapping_add(pid << 40)
        .wrapping_add((n as u128) << 20)
        ^ (nanos >> 17);
    let mut x = mixed % 36u128.pow(10);
    let mut s = String::new();
    for _ in 0..10 {
        let d = (x % 36) as u32;
        s.push(std::char::from_digit(d, 36).unwrap());
        x /= 36;
    }
    format!("{s}{n}")
}

/// A fresh valid user: `u_<unique>` / `m<unique>@example.com` / [`STRONG_PASSWORD`];
/// no mobile number.
pub fn unique_user() -> TestUser {
    let s = unique_suffix();
    TestUser {
        username: format!("u_{s}"),
        email: format!("m{s}@example.com"),
        password: STRONG_PASSWORD.to_string(),
        mobile_number: None,
    }
}

/// A fresh valid mobile number: `+1` then 11 digits (13 characters).
pub fn unique_mobile() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) as u128;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let pid = std::process::id() as u128;
    let x = (nanos / 1000 + pid * 7_919 + n * 104_729) % 100_000_000_000;
    format!("+1{x:011}")
}

/// Checks status, `Content-Type: application/problem+json` and the RFC 9457 members
/// (`type`, `title`, `status`, `code`); returns the body.
pub fn assert_problem(resp: Response, status: u16, code: &str) -> Value {
    let (actual_status, content_type, www_auth, text) = unpack(resp);
    assert_eq!(
        actual_status, status,
        "expected {status} {code}, got {actual_status}: {text}"
    );
    let body = check_problem_shape(actual_status, &content_type, &text);
    assert_eq!(body["code"], code, "wrong problem code in {body}");
    if status == 401 {
        let www = www_auth.unwrap_or_else(|| panic!("401 without WWW-Authenticate: {text}"));
        assert!(
            www.trim_start().to_ascii_lowercase().starts_with("bearer"),
            "WWW-Authenticate must use the Bearer scheme, got {www:?}"
        );
    }
    body
}

/// Any 4xx answer that is a well-formed problem; returns (status, body).
pub fn assert_client_error(resp: Response, context: &str) -> (u16, Value) {
    let (status, content_type, _, text) = unpack(resp);
    assert!(
        (400..500).contains(&status),
        "{context}: expected a 4xx problem, got {status}: {text}"
    );
    let body = check_problem_shape(status, &content_type, &text);
    (status, body)
}

fn unpack(resp: Response) -> (u16, String, Option<String>, String) {
    let status = resp.status().as_u16();
    let content_type = header(&resp, "content-type").unwrap_or_default();
    let www = header(&resp, "www-authenticate");
    let text = resp.text().unwrap_or_default();
    (status, content_type, www, text)
}

fn check_problem_shape(status: u16, content_type: &str, text: &str) -> Value {
    assert!(
        content_type
            .to_ascii_lowercase()
            .starts_with("application/problem+json"),
        "a {status} error must be application/problem+json, got Content-Type {content_type:?}: {text}"
    );
    let body: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("problem body is not JSON ({e}): {text:?}"));
    assert!(body.is_object(), "problem body is not an object: {body}");
    assert!(
        body["type"].as_str().is_some_and(|t| !t.is_empty()),
        "problem without `type` (a URI reference, `about:blank` at least): {body}"
    );
    assert!(
        body.get("detail").is_none_or(|d| d.is_string()),
        "problem `detail`, when present, is a string: {body}"
    );
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "problem without `title`: {body}"
    );
    assert_eq!(
        body["status"].as_u64(),
        Some(status as u64),
        "problem `status` must equal the HTTP status: {body}"
    );
    assert!(
        body["code"].as_str().is_some_and(|c| !c.is_empty()),
        "problem without `code`: {body}"
    );
    body
}

pub fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Asserts a 422 `validation_failed` and returns its `errors` as (field, code) pairs.
pub fn validation_errors(resp: Response) -> Vec<(String, String)> {
    let body = assert_problem(resp, 422, "validation_failed");
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("422 without an `errors` array: {body}"));
    assert!(!errors.is_empty(), "422 with no errors: {body}");
    errors
        .iter()
        .map(|e| {
            let field = e["field"]
                .as_str()
                .unwrap_or_else(|| panic!("error without `field`: {e}"));
            let code = e["code"]
                .as_str()
                .unwrap_or_else(|| panic!("error without `code`: {e}"));
            assert!(
                e["message"].as_str().is_some_and(|m| !m.is_empty()),
                "error without `message`: {e}"
            );
            (field.to_string(), code.to_string())
        })
        .collect()
}

/// The codes reported for `field`, sorted and de-duplicated.
pub fn codes_for(errors: &[(String, String)], field: &str) -> Vec<String> {
    let mut codes: Vec<String> = errors
        .iter()
        .filter(|(f, _)| f == field)
        .map(|(_, c)| c.clone())
        .collect();
    codes.sort();
    codes.dedup();
    codes
}

/// Reads a JSON body, insisting on `status` and `Content-Type: application/json`.
pub fn json_body(resp: Response, status: u16) -> Value {
    let (actual, content_type, _, text) = unpack(resp);
    assert_eq!(actual, status, "expected {status}, got {actual}: {text}");
    assert!(
        content_type
            .to_ascii_lowercase()
            .starts_with("application/json"),
        "expected application/json, got {content_type:?}: {text}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text:?}"))
}

/// Seconds since the Unix epoch, now.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Parses an RFC 3339 timestamp in UTC (`Z` or `+00:00`) into seconds since the epoch.
pub fn parse_utc_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    if !(rest == "Z" || rest == "z" || rest == "+00:00") {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
}

/// Asserts `v` is an RFC 3339 UTC timestamp close to now (within `slack` seconds).
pub fn assert_recent_timestamp(v: &Value, what: &str, slack: i64) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"));
    let t = parse_utc_timestamp(s)
        .unwrap_or_else(|| panic!("{what} is not an RFC 3339 UTC timestamp: {s:?}"));
    assert!(
        (t - now()).abs() <= slack,
        "{what} = {s} is not within {slack}s of now"
    );
}

/// Every object key anywhere in `v`, lower-cased.
pub fn all_keys(v: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    fn walk(v: &Value, keys: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    keys.push(k.to_ascii_lowercase());
                    walk(v, keys);
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, keys)),
            _ => {}
        }
    }
    walk(v, &mut keys);
    keys
}

/// Asserts `user` is a §3 User resource with every field, of the right type.
pub fn assert_user_resource(user: &Value) {
    assert!(user.is_object(), "user is not an object: {user}");
    assert!(
        user["id"].as_str().is_some_and(|s| !s.is_empty()),
        "user.id: {user}"
    );
    assert!(user["username"].is_string(), "user.username: {user}");
    assert!(user["email"].is_string(), "user.email: {user}");
    assert!(
        user.get("mobile_number")
            .is_some_and(|m| m.is_null() || m.is_string()),
        "user.mobile_number must be present (string or null): {user}"
    );
    for flag in ["email_verified", "is_active", "is_admin"] {
        assert!(
            user[flag].is_boolean(),
            "user.{flag} must be a boolean: {user}"
        );
    }
    assert_recent_timestamp(&user["created_at"], "user.created_at", 3600);
    assert_recent_timestamp(&user["updated_at"], "user.updated_at", 3600);
    assert_no_secrets(user);
}

/// No password or hash may leave the service.
pub fn assert_no_secrets(v: &Value) {
    for key in all_keys(v) {
        assert!(
            !(key.contains("password") || key.contains("hash") || key == "salt"),
            "a secret-looking field `{key}` left the service: {v}"
        );
    }
    let text = v.to_string();
    assert!(
        !text.contains(STRONG_PASSWORD),
        "the password itself is in the body: {text}"
    );
    assert!(
        !text.contains("$argon2"),
        "a password hash is in the body: {text}"
    );
}
