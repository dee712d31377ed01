//! Mail delivery by `portcullis serve` (API.md §1, §6): an SMTP sink in this process
//! ([`SmtpSink`]) receives what the host sends, and the tests read the mails as a mail
//! client would (MIME parts, quoted-printable). Also the log mailer, SMTP credentials,
//! start-up checks of the mail settings, an SMTP server that is down and comes back,
//! and two hosts on one database.
//!
//! The helpers here serve `account` too. Every mail test runs on a [`PrivateDatabase`]:
//! on a database the whole run shares, any other test's host could claim a test's mail
//! and deliver it elsewhere.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use sqlx::Connection as _;

use crate::backends::{self, Backend, with_database};
use crate::support::{TestApp, json_body, unique_suffix, unique_user};

/// The public URL the mail tests' hosts are given: every link must start with it.
pub const PUBLIC_URL: &str = "https://auth.mail-test.example";

/// How long a mail may take to arrive (the host looks for due mail about once a second).
pub const MAIL_DEADLINE: Duration = Duration::from_secs(60);

/// How long the host waits before retrying a failed delivery (the component's first
/// backoff is 30 s), plus the time to notice.
const RETRY_DEADLINE: Duration = Duration::from_secs(120);

/// How long a start-up line may take to reach the test (stderr is read by a thread of
/// its own, apart from the `listening on` line on stdout).
const STARTUP_LOG_DEADLINE: Duration = Duration::from_secs(10);

/// How long creating or dropping a private database, or one statement, may take.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------
// A database of one test's own.

/// A database only this test's hosts use: a fresh SQLite file, or a fresh database on
/// the PostgreSQL / MySQL server of the trial, dropped at the end. Declare it before
/// the apps that use it, so that they are stopped first.
pub struct PrivateDatabase {
    /// What `PORTCULLIS_DATABASE_URL` says.
    pub url: String,
    backend: Backend,
    /// On a server: the URL the database was created through, and its name.
    created: Option<(String, String)>,
    _folder: Option<tempfile::TempDir>,
}

/// A database for the current trial's backend that no other test touches.
pub fn private_database() -> PrivateDatabase {
    let target = backends::current();
    match target.database_url {
        None => {
            let folder = tempfile::tempdir().expect("tempdir");
            PrivateDatabase {
                url: format!("sqlite://{}/private.db", folder.path().display()),
                backend: target.backend,
                created: None,
                _folder: Some(folder),
            }
        }
        Some(run_url) => {
            let name = format!("portcullis_mail_{}", unique_suffix());
            let create = match target.backend {
                Backend::Mysql => format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"),
                _ => format!("CREATE DATABASE {name}"),
            };
            execute(target.backend, &run_url, &create)
                .unwrap_or_else(|error| panic!("creating the database {name}: {error}"));
            PrivateDatabase {
                url: with_database(&run_url, &name),
                backend: target.backend,
                created: Some((run_url, name)),
                _folder: None,
            }
        }
    }
}

impl PrivateDatabase {
    /// Runs one statement on this database (to age a token, say).
    pub fn execute(&self, sql: &str) {
        execute(self.backend, &self.url, sql).unwrap_or_else(|error| panic!("{sql}: {error}"));
    }

    /// The number a `SELECT COUNT(*) …` on this database answers.
    pub fn count(&self, sql: &str) -> i64 {
        count(self.backend, &self.url, sql).unwrap_or_else(|error| panic!("{sql}: {error}"))
    }
}

impl Drop for PrivateDatabase {
    fn drop(&mut self) {
        let Some((run_url, name)) = &self.created else {
            return;
        };
        let drop = match self.backend {
            Backend::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            _ => format!("DROP DATABASE IF EXISTS {name}"),
        };
        if let Err(error) = execute(self.backend, run_url, &drop) {
            eprintln!("could not drop {name}: {error}");
        }
    }
}

/// Runs `work` on a runtime of its own, within [`DATABASE_TIMEOUT`].
fn run_briefly<T>(work: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("starting a runtime: {error}"))?;
    match runtime.block_on(async { tokio::time::timeout(DATABASE_TIMEOUT, work).await }) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {DATABASE_TIMEOUT:?}")),
    }
}

/// The one integer `sql` (a `SELECT COUNT(*) …`) answers on the database `url` names.
fn count(backend: Backend, url: &str, sql: &str) -> Result<i64, String> {
    run_briefly(async {
        match backend {
            Backend::Sqlite => {
                let mut connection = sqlx::SqliteConnection::connect(url).await?;
                sqlx::query_scalar(sql).fetch_one(&mut connection).await
            }
            Backend::Postgres => {
                let mut connection = sqlx::PgConnection::connect(url).await?;
                sqlx::query_scalar(sql).fetch_one(&mut connection).await
            }
            Backend::Mysql => {
                let mut connection = sqlx::MySqlConnection::connect(url).await?;
                sqlx::query_scalar(sql).fetch_one(&mut connection).await
            }
        }
    })
}

/// Runs `sql` on the database `url` names, on a runtime of its own.
fn execute(backend: Backend, url: &str, sql: &str) -> Result<(), String> {
    run_briefly(async {
        match backend {
            Backend::Sqlite => {
                let mut connection = sqlx::SqliteConnection::connect(url).await?;
                sqlx::raw_sql(sql).execute(&mut connection).await?;
                connection.close().await
            }
            Backend::Postgres => {
                let mut connection = sqlx::PgConnection::connect(url).await?;
                sqlx::raw_sql(sql).execute(&mut connection).await?;
                connection.close().await
            }
            Backend::Mysql => {
                let mut connection = sqlx::MySqlConnection::connect(url).await?;
                sqlx::raw_sql(sql).execute(&mut connection).await?;
                connection.close().await
            }
        }
    })
}

/// A text for an SQL string literal.
pub fn sql_text(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

// ---------------------------------------------------------------------------------
// The SMTP sink.

/// A plain-text SMTP server on 127.0.0.1 that accepts every mail (and `AUTH PLAIN`) and
/// keeps it. Its threads end when it is dropped.
pub struct SmtpSink {
    address: SocketAddr,
    shared: Arc<SinkShared>,
}

#[derive(Default)]
struct SinkShared {
    mails: Mutex<Vec<Received>>,
    /// The user names and passwords of `AUTH PLAIN`.
    logins: Mutex<Vec<(String, String)>>,
    stopped: AtomicBool,
}

impl SmtpSink {
    /// A sink on a free port.
    pub fn start() -> SmtpSink {
        Self::serve(TcpListener::bind("127.0.0.1:0").expect("bind the SMTP sink"))
    }

    /// A sink on `address` (a port that was free a moment ago).
    pub fn start_on(address: SocketAddr) -> SmtpSink {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match TcpListener::bind(address) {
                Ok(listener) => return Self::serve(listener),
                Err(error) if Instant::now() > deadline => panic!("bind {address}: {error}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn serve(listener: TcpListener) -> SmtpSink {
        let address = listener.local_addr().expect("the sink's address");
        let shared = Arc::new(SinkShared::default());
        let accepting = Arc::clone(&shared);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accepting.stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let session = Arc::clone(&accepting);
                std::thread::spawn(move || {
                    let _ = serve_session(stream, &session);
                });
            }
        });
        SmtpSink { address, shared }
    }

    /// `PORTCULLIS_SMTP_URL` for this sink: plain text, no credentials.
    pub fn url(&self) -> String {
        format!("smtp://{}?tls=none", self.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The mails received so far for `recipient`, oldest first.
    pub fn mails_to(&self, recipient: &str) -> Vec<Received> {
        self.shared
            .mails
            .lock()
            .unwrap()
            .iter()
            .filter(|mail| mail.recipients.iter().any(|to| to == recipient))
            .cloned()
            .collect()
    }

    /// Every `AUTH PLAIN` login so far.
    pub fn logins(&self) -> Vec<(String, String)> {
        self.shared.logins.lock().unwrap().clone()
    }

    /// Waits (at most [`MAIL_DEADLINE`]) for the first mail to `recipient`.
    pub fn wait_for(&self, recipient: &str) -> Received {
        self.wait_for_count(recipient, 1, MAIL_DEADLINE).remove(0)
    }

    /// Waits (at most `limit`) until `count` mails to `recipient` arrived; returns them.
    pub fn wait_for_count(&self, recipient: &str, count: usize, limit: Duration) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        loop {
            let mails = self.mails_to(recipient);
            if mails.len() >= count {
                return mails;
            }
            assert!(
                Instant::now() < deadline,
                "{} mail(s) to {recipient} within {limit:?}, expected {count}",
                mails.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees the flag and closes the port.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_secs(1));
    }
}

/// One SMTP session, from the greeting to `QUIT`.
fn serve_session(stream: TcpStream, shared: &SinkShared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut reply = |text: &str| writer.write_all(format!("{text}\r\n").as_bytes());
    reply("220 sink.test ESMTP test sink")?;
    let mut envelope = Received::default();
    while let Some(line) = read_line(&mut reader)? {
        let verb = line
            .split([' ', ':'])
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => reply("250-sink.test\r\n250 AUTH PLAIN")?,
            "HELO" => reply("250 sink.test")?,
            "AUTH" => {
                let initial = line.split_whitespace().nth(2).map(str::to_owned);
                let response = match initial {
                    Some(response) => response,
                    None => {
                        reply("334 ")?;
                        read_line(&mut reader)?.unwrap_or_default()
                    }
                };
                shared.logins.lock().unwrap().push(plain_login(&response));
                reply("235 2.7.0 Authentication successful")?;
            }
            "MAIL" => {
                envelope = Received {
                    envelope_from: angle_address(&line),
                    ..Received::default()
                };
                reply("250 OK")?;
            }
            "RCPT" => {
                envelope.recipients.push(angle_address(&line));
                reply("250 OK")?;
            }
            "DATA" => {
                reply("354 End data with <CR><LF>.<CR><LF>")?;
                envelope.data = read_data(&mut reader)?;
                shared
                    .mails
                    .lock()
                    .unwrap()
                    .push(std::mem::take(&mut envelope));
                reply("250 OK: queued")?;
            }
            "RSET" => {
                envelope = Received::default();
                reply("250 OK")?;
            }
            "NOOP" => reply("250 OK")?,
            "QUIT" => {
                reply("221 Bye")?;
                return Ok(());
            }
            _ => reply("502 Command not implemented")?,
        }
    }
    Ok(())
}

/// A line without its CRLF; `None` at the end of the stream.
fn read_line(reader: &mut impl BufRead) -> std::io::Result<Option<String>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_owned()))
}

/// The message after `DATA`, dot-unstuffed, lines joined with CRLF.
fn read_data(reader: &mut impl BufRead) -> std::io::Result<String> {
    let mut lines = Vec::new();
    while let Some(line) = read_line(reader)? {
        if line == "." {
            break;
        }
        lines.push(line.strip_prefix('.').map_or(line.clone(), str::to_owned));
    }
    Ok(lines.join("\r\n"))
}

/// The address between `<` and `>` of `MAIL FROM:<…>` / `RCPT TO:<…>`.
fn angle_address(line: &str) -> String {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line.rfind('>').unwrap_or(line.len());
    line.get(start..end).unwrap_or_default().to_owned()
}

/// The user name and password of an `AUTH PLAIN` response (`\0user\0password`).
fn plain_login(response: &str) -> (String, String) {
    let decoded = STANDARD.decode(response.trim()).unwrap_or_default();
    let decoded = String::from_utf8_lossy(&decoded);
    let mut fields = decoded.split('\0').skip(1);
    let user = fields.next().unwrap_or_default().to_owned();
    let password = fields.next().unwrap_or_default().to_owned();
    (user, password)
}

// ---------------------------------------------------------------------------------
// Reading a received mail.

/// A mail as the sink received it.
#[derive(Clone, Debug, Default)]
pub struct Received {
    /// `MAIL FROM`.
    pub envelope_from: String,
    /// Every `RCPT TO`.
    pub recipients: Vec<String>,
    /// The message (headers and body), CRLF line ends.
    pub data: String,
}

impl Received {
    /// A header of the message (folded lines joined).
    pub fn header(&self, name: &str) -> Option<String> {
        header(&split_entity(&self.data).0, name)
    }

    /// The decoded body of the first part whose `Content-Type` starts with `media_type`.
    pub fn part(&self, media_type: &str) -> String {
        self.parts()
            .into_iter()
            .find(|(content_type, _)| content_type.starts_with(media_type))
            .map(|(_, body)| body)
            .unwrap_or_else(|| panic!("no {media_type} part in the mail:\n{}", self.data))
    }

    /// The `Content-Type` and decoded body of each part of a multipart message.
    fn parts(&self) -> Vec<(String, String)> {
        let (headers, body) = split_entity(&self.data);
        let content_type = header(&headers, "content-type").unwrap_or_default();
        let boundary = parameter(&content_type, "boundary")
            .unwrap_or_else(|| panic!("not a multipart mail:\n{}", self.data));
        let delimiter = format!("--{boundary}");
        body.split(delimiter.as_str())
            .skip(1)
            .take_while(|part| !part.starts_with("--"))
            .map(|part| {
                let (headers, body) = split_entity(part.trim_start_matches(['\r', '\n']));
                let content_type = header(&headers, "content-type")
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                let encoding = header(&headers, "content-transfer-encoding").unwrap_or_default();
                (content_type, decode_body(body, &encoding))
            })
            .collect()
    }

    /// The text part's link whose path is `path` (`/verify-email`, `/reset-password`).
    pub fn link(&self, path: &str) -> String {
        let text = self.part("text/plain");
        let marker = format!("{path}?token=");
        let at = text
            .find(&marker)
            .unwrap_or_else(|| panic!("no {marker} link in the text part:\n{text}"));
        let start = text[..at].rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let end = text[at..]
            .find(char::is_whitespace)
            .map_or(text.len(), |i| at + i);
        text[start..end].to_owned()
    }

    /// The token of the link to `path`, after checking that the link starts with
    /// [`PUBLIC_URL`].
    pub fn token(&self, path: &str) -> String {
        let link = self.link(path);
        let prefix = format!("{PUBLIC_URL}{path}?token=");
        let token = link
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("the link {link:?} does not start with {prefix:?}"));
        assert!(
            token.len() >= 43,
            "a token of at least 256 bits is expected: {token:?}"
        );
        token.to_owned()
    }
}

/// Headers (unfolded, in order) and body of a message or a MIME part.
fn split_entity(entity: &str) -> (Vec<(String, String)>, &str) {
    let (head, body) = entity.split_once("\r\n\r\n").unwrap_or((entity, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    (headers, body)
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    let name = name.to_ascii_lowercase();
    headers
        .iter()
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.clone())
}

/// A parameter of a header value (`boundary="…"`).
fn parameter(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key.trim().eq_ignore_ascii_case(name)).then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// A part's body decoded from its `Content-Transfer-Encoding`.
fn decode_body(body: &str, encoding: &str) -> String {
    match encoding.to_ascii_lowercase().as_str() {
        "quoted-printable" => decode_quoted_printable(body),
        "base64" => {
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            String::from_utf8_lossy(&STANDARD.decode(compact).unwrap_or_default()).into_owned()
        }
        _ => body.to_owned(),
    }
}

fn decode_quoted_printable(body: &str) -> String {
    let bytes = body.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'=' {
            decoded.push(bytes[i]);
            i += 1;
        } else if bytes[i + 1..].starts_with(b"\r\n") {
            i += 3;
        } else if let Some(byte) = body
            .get(i + 1..i + 3)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            decoded.push(byte);
            i += 3;
        } else {
            decoded.push(b'=');
            i += 1;
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

// ---------------------------------------------------------------------------------
// Hosts that mail.

/// A host on `database` that delivers to `sink`, with links to [`PUBLIC_URL`];
/// `overrides` add to or replace those settings.
pub fn mailing_app(
    database: &PrivateDatabase,
    sink: &SmtpSink,
    overrides: &[(&str, &str)],
) -> TestApp {
    let sink_url = sink.url();
    let mut settings = vec![
        ("PORTCULLIS_SMTP_URL", sink_url.as_str()),
        ("PORTCULLIS_PUBLIC_URL", PUBLIC_URL),
    ];
    settings.extend_from_slice(overrides);
    TestApp::spawn_on(&database.url, &settings)
}

/// Asks for a verification mail with `access_token`; insists on 202.
pub fn request_verification(app: &TestApp, access_token: &str) {
    let response = app
        .request(reqwest::Method::POST, "/api/v1/auth/email/verify-request")
        .bearer_auth(access_token)
        .send()
        .expect("verify-request");
    json_body(response, 202);
}

/// A port on 127.0.0.1 that nothing listens on (it was free a moment ago).
pub fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address")
}

/// Runs `portcullis serve` with only `settings` and expects it to refuse to start:
/// returns its exit code and standard error.
fn refused_start(settings: &[(&str, &str)]) -> (Option<i32>, String) {
    let folder = tempfile::tempdir().expect("tempdir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    command.arg("serve").current_dir(folder.path());
    for (key, _) in std::env::vars() {
        if key.starts_with("PORTCULLIS_") {
            command.env_remove(key);
        }
    }
    command
        .env("PORTCULLIS_LISTEN", "127.0.0.1:0")
        .env("PORTCULLIS_DATA_DIR", folder.path())
        .envs(settings.iter().copied());
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run portcullis");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

api_tests! {
    /// A verification mail goes over SMTP as `multipart/alternative` (text, then HTML)
    /// from `PORTCULLIS_MAIL_FROM` to the user, and its link uses `PORTCULLIS_PUBLIC_URL`.
    /// A plain `smtp://` URL means STARTTLS when offered: this server offers none.
    fn mail_is_delivered_over_smtp_as_text_and_html() {
        let database = private_database();
        let sink = SmtpSink::start();
        let url = format!("smtp://{}", sink.address());
        let app = mailing_app(
            &database,
            &sink,
            &[
                ("PORTCULLIS_SMTP_URL", &url),
                ("PORTCULLIS_MAIL_FROM", "Mail Test <sender@mail-test.example>"),
            ],
        );
        app.wait_for_output("STARTTLS when offered", STARTUP_LOG_DEADLINE);
        let (user, access_token, _) = app.registered_user();
        request_verification(&app, &access_token);

        let mail = sink.wait_for(&user.email);
        assert_eq!(mail.envelope_from, "sender@mail-test.example");
        assert_eq!(mail.recipients, std::slice::from_ref(&user.email));
        let from = mail.header("from").unwrap_or_default();
        assert!(
            from.contains("Mail Test") && from.contains("<sender@mail-test.example>"),
            "From: {from}"
        );
        let to = mail.header("to").unwrap_or_default();
        assert!(to.contains(&user.email), "To: {to}");
        assert_eq!(mail.header("subject").as_deref(), Some("Verify your email address"));
        assert!(
            mail.header("content-type")
                .is_some_and(|value| value.starts_with("multipart/alternative")),
            "{}",
            mail.data
        );
        let token = mail.token("/verify-email");
        assert!(mail.part("text/plain").contains(&user.username));
        let html = mail.part("text/html");
        assert!(
            html.contains(&format!("href=\"{PUBLIC_URL}/verify-email?token={token}\"")),
            "{html}"
        );
        let response = app.post_json("/api/v1/auth/email/verify", &json!({"token": token}));
        assert_eq!(json_body(response, 200)["email_verified"], true);
        assert!(
            !app.output().contains(&token),
            "a token was logged although the mail went over SMTP"
        );
    }

    /// Without `PORTCULLIS_SMTP_URL` the mail (recipient, subject, text with its link) is
    /// written to the log, and the flow can be finished from there, as in a browser.
    fn without_smtp_the_mail_is_written_to_the_log() {
        let database = private_database();
        let app = TestApp::spawn_on(&database.url, &[("PORTCULLIS_PUBLIC_URL", PUBLIC_URL)]);
        app.wait_for_output("PORTCULLIS_SMTP_URL is not set", STARTUP_LOG_DEADLINE);
        let (user, access_token, _) = app.registered_user();
        request_verification(&app, &access_token);

        let marker = format!("{PUBLIC_URL}/verify-email?token=");
        let output = app.wait_for_output(&marker, MAIL_DEADLINE);
        let line = output
            .lines()
            .find(|line| line.contains(&marker))
            .unwrap_or_default();
        assert!(line.contains(" INFO "), "logged at info level: {line}");
        assert!(line.contains(&user.email), "the recipient is logged: {line}");
        assert!(line.contains("Verify your email address"), "the subject: {line}");
        let start = line.find(&marker).unwrap_or_default() + marker.len();
        let token: String = line[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
            .collect();

        let page = app.get(&format!("/verify-email?token={token}"));
        assert_eq!(page.status().as_u16(), 200);
        let done = app
            .request(reqwest::Method::POST, "/verify-email")
            .form(&[("token", token.as_str())])
            .send()
            .expect("post the form");
        assert_eq!(done.status().as_u16(), 200, "the form's POST verifies");
        let me = app.get_with_token("/api/v1/users/me", &access_token);
        assert_eq!(json_body(me, 200)["email_verified"], true);
    }

    /// The user name and password of `smtp://user:pass@host` are percent-decoded and
    /// sent with AUTH; neither is ever logged.
    fn smtp_credentials_come_percent_decoded_from_the_url() {
        let database = private_database();
        let sink = SmtpSink::start();
        let password = "p:ss w/rd%secret";
        let url = format!(
            "smtp://mailer%40mail-test.example:p%3Ass%20w%2Frd%25secret@{}?tls=none",
            sink.address()
        );
        let app = mailing_app(&database, &sink, &[("PORTCULLIS_SMTP_URL", &url)]);
        let (user, access_token, _) = app.registered_user();
        request_verification(&app, &access_token);
        sink.wait_for(&user.email);

        let expected = ("mailer@mail-test.example".to_owned(), password.to_owned());
        assert!(
            sink.logins().contains(&expected),
            "logins: {:?}",
            sink.logins()
        );
        let output = app.output();
        assert!(!output.contains("p%3Ass"), "the URL's password was logged");
        assert!(!output.contains(password), "the password was logged");
    }

    /// Bad mail settings stop start-up with one line that names the setting, and never
    /// show the password.
    fn bad_mail_settings_stop_start_up() {
        let cases = [
            ("PORTCULLIS_SMTP_URL", "smtp://me:hunter2secret@mail.example?tls=sometimes"),
            ("PORTCULLIS_SMTP_URL", "imap://me:hunter2secret@mail.example"),
            ("PORTCULLIS_SMTP_URL", "smtp://me:hunter2secret@"),
            ("PORTCULLIS_MAIL_FROM", "not an address"),
        ];
        for (setting, value) in cases {
            let (code, stderr) = refused_start(&[(setting, value)]);
            assert_eq!(code, Some(2), "{setting}={value}: {stderr}");
            let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
            assert_eq!(errors.len(), 1, "{setting}={value}: {stderr}");
            assert!(
                errors[0].starts_with(&format!("error: {setting}: ")),
                "{setting}={value}: {stderr}"
            );
            assert!(!stderr.contains("hunter2secret"), "the password was shown: {stderr}");
        }
    }

    /// Mail queued while the SMTP server is down is delivered once it is up: the failed
    /// attempt is retried, and nothing is lost or sent twice.
    fn mail_queued_while_smtp_is_down_is_delivered_when_it_is_up() {
        let database = private_database();
        let address = free_port();
        let url = format!("smtp://{address}?tls=none");
        let app = TestApp::spawn_on(
            &database.url,
            &[
                ("PORTCULLIS_SMTP_URL", &url),
                ("PORTCULLIS_PUBLIC_URL", PUBLIC_URL),
            ],
        );
        let (user, access_token, _) = app.registered_user();
        request_verification(&app, &access_token);
        app.wait_for_output("mail delivery failed", MAIL_DEADLINE);
        app.assert_healthy();

        let sink = SmtpSink::start_on(address);
        let mails = sink.wait_for_count(&user.email, 1, RETRY_DEADLINE);
        let token = mails[0].token("/verify-email");
        let response = app.post_json("/api/v1/auth/email/verify", &json!({"token": token}));
        assert_eq!(json_body(response, 200)["email_verified"], true);
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(sink.mails_to(&user.email).len(), 1, "delivered exactly once");
    }

    /// Two hosts on one database deliver every mail exactly once.
    fn two_hosts_on_one_database_send_each_mail_once() {
        let database = private_database();
        let sink = SmtpSink::start();
        let hosts = [
            mailing_app(&database, &sink, &[]),
            mailing_app(&database, &sink, &[]),
        ];
        let mut recipients = Vec::new();
        for round in 0..6 {
            let app = &hosts[round % 2];
            let (user, access_token, _) = app.registered_user();
            request_verification(app, &access_token);
            recipients.push(user.email);
        }
        for recipient in &recipients {
            sink.wait_for(recipient);
        }
        // Both hosts look for due mail every second: give a second delivery every chance.
        std::thread::sleep(Duration::from_secs(3));
        for recipient in &recipients {
            assert_eq!(sink.mails_to(recipient).len(), 1, "mails to {recipient}");
        }
    }
}

/// A fresh user on `app` (registered through the API) whose verification link was
/// mailed to `sink`: (email, access token, token of the link).
pub fn user_with_verification_mail(app: &TestApp, sink: &SmtpSink) -> (String, String, String) {
    let (user, access_token, _) = app.registered_user();
    request_verification(app, &access_token);
    let token = sink.wait_for(&user.email).token("/verify-email");
    (user.email, access_token, token)
}

/// An address nobody registered.
pub fn unknown_address() -> String {
    unique_user().email
}
