//! Database and disk faults (#17): the host answers success or 503 with `Retry-After`
//! (never a 500, never a hang), loses nothing it acknowledged, keeps nothing it refused,
//! and recovers by itself.
//!
//! - A database cut in the middle of a load of registrations, logins and refreshes
//!   (PostgreSQL, MySQL; through the in-process [`Forwarder`], not by restarting the
//!   shared servers). The one case where a refused request may still have taken
//!   effect is a COMMIT whose acknowledgement was lost with the connection: only a
//!   request in flight at the very moment of the cut can be in that case, and the test
//!   allows it for those requests only.
//! - A database server unreachable at start-up: the host tries again, one warning per
//!   try, for `PORTCULLIS_DATABASE_WAIT` seconds, then stops with one `error:` line that
//!   names the database and never its password.
//! - SQLite's data folder on a file system that is read-only at start-up (one line,
//!   non-zero exit) or full while serving (503 with `Retry-After` for writes, reads
//!   served, `PRAGMA integrity_check` ok, and writes again once there is room). The
//!   folders are small tmpfs mounts, which needs root (as on the CI machines). A folder
//!   made read-only while the host serves is not tested: SQLite writes through the file
//!   it opened at start-up, which a later `chmod` does not touch (and a file system
//!   cannot be remounted read-only while a file on it is open for writing).

use std::io::{BufRead, BufReader, ErrorKind, Read, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};

use crate::backends::{server_address, with_server_address};
use crate::forwarder::Forwarder;
use crate::outage::wait_until_healthy;
use crate::support::{
    TEST_JWT_SECRET, TestApp, TestUser, backend, header, isolate_settings, shared_cache_dir,
    shared_database, unique_user,
};

/// A generous bound on one answer: far beyond any healthy answer, short of a hang.
const ANSWER_BOUND: Duration = Duration::from_secs(30);

/// A generous bound on a command that should end, or print a line, on its own.
const COMMAND_GUARD: Duration = Duration::from_secs(120);

/// Client threads of the load.
const LOAD_THREADS: usize = 4;

/// How long the load runs before the cut, and how long the database stays away (longer
/// than the host waits for a connection, so that requests meet the cut).
const BEFORE_CUT: Duration = Duration::from_secs(3);
const CUT_FOR: Duration = Duration::from_secs(8);

/// How long the load goes on once the host is healthy again.
const AFTER_RECOVERY: Duration = Duration::from_secs(3);

/// The answer to one request of the load: its body, or 503 (with `Retry-After`).
enum Answer {
    Done(Value),
    Unavailable,
}

/// When a request was sent and when its answer came.
#[derive(Clone, Copy)]
struct Window {
    sent: Instant,
    answered: Instant,
}

impl Window {
    /// Whether the request was in flight while `cut` happened.
    fn overlaps(&self, cut: &Window) -> bool {
        self.sent <= cut.answered && self.answered >= cut.sent
    }
}

/// Sends one request of the load: it must come back in [`ANSWER_BOUND`] as a success
/// or as a 503 `unavailable` problem with `Retry-After`, nothing else.
fn load_request(what: &str, request: impl FnOnce() -> Response) -> (Answer, Window) {
    let sent = Instant::now();
    let response = request();
    let answered = Instant::now();
    let took = answered - sent;
    assert!(
        took < ANSWER_BOUND,
        "{what} took {took:?} (bound {ANSWER_BOUND:?})"
    );
    let status = response.status().as_u16();
    let retry_after = header(&response, "retry-after");
    let text = response.text().unwrap_or_default();
    let answer = match status {
        200 | 201 => Answer::Done(serde_json::from_str(&text).unwrap_or_else(|error| {
            panic!("{what}: {status} with a body that is not JSON ({error}): {text}")
        })),
        503 => {
            assert!(
                retry_after.is_some_and(|seconds| seconds.parse::<u32>().is_ok()),
                "{what}: 503 without a Retry-After in seconds: {text}"
            );
            assert!(
                text.contains(r#""code":"unavailable""#),
                "{what}: 503 {text}"
            );
            Answer::Unavailable
        }
        other => panic!("{what}: {other} while the database came and went: {text}"),
    };
    (answer, Window { sent, answered })
}

/// One refresh-token chain of a session the load opened: the newest token the host
/// acknowledged, and the window of a refresh answered 503 (after which the chain is
/// left alone).
struct Chain {
    user: String,
    token: String,
    refused: Option<Window>,
}

/// What one client thread of the load did.
#[derive(Default)]
struct Outcome {
    registered: Vec<TestUser>,
    refused_registrations: Vec<(TestUser, Window)>,
    chains: Vec<Chain>,
    answers: usize,
    unavailable: usize,
}

impl Outcome {
    /// Starts a chain from a token response.
    fn open_chain(&mut self, user: &TestUser, tokens: &Value) {
        let token = tokens["refresh_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no refresh_token in {tokens}"));
        self.chains.push(Chain {
            user: user.username.clone(),
            token: token.to_owned(),
            refused: None,
        });
    }

    fn count(&mut self, answer: &Answer) {
        self.answers += 1;
        if matches!(answer, Answer::Unavailable) {
            self.unavailable += 1;
        }
    }

    fn register(&mut self, app: &TestApp) {
        let user = unique_user();
        let (answer, window) = load_request("register", || {
            app.register(&user.username, &user.email, &user.password)
        });
        self.count(&answer);
        match answer {
            Answer::Done(tokens) => {
                self.open_chain(&user, &tokens);
                self.registered.push(user);
            }
            Answer::Unavailable => self.refused_registrations.push((user, window)),
        }
    }

    fn login(&mut self, app: &TestApp, round: usize) {
        let Some(user) = self.registered.get(round % self.registered.len().max(1)) else {
            return;
        };
        let user = user.clone();
        let (answer, _) = load_request("login", || app.login(&user.username, &user.password));
        self.count(&answer);
        if let Answer::Done(tokens) = answer {
            self.open_chain(&user, &tokens);
        }
    }

    fn refresh(&mut self, app: &TestApp, round: usize) {
        let live: Vec<usize> = (0..self.chains.len())
            .filter(|index| self.chains[*index].refused.is_none())
            .collect();
        let Some(index) = live.get(round % live.len().max(1)).copied() else {
            return;
        };
        let token = self.chains[index].token.clone();
        let (answer, window) = load_request("refresh", || refresh(app, &token));
        self.count(&answer);
        let chain = &mut self.chains[index];
        match answer {
            Answer::Done(tokens) => {
                chain.token = tokens["refresh_token"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no refresh_token in {tokens}"))
                    .to_owned();
            }
            Answer::Unavailable => chain.refused = Some(window),
        }
    }
}

fn refresh(app: &TestApp, token: &str) -> Response {
    app.post_json("/api/v1/auth/refresh", &json!({ "refresh_token": token }))
}

/// One client thread: registrations, logins and refreshes in turn until `stop`.
fn client_load(app: &TestApp, stop: &AtomicBool) -> Outcome {
    let mut outcome = Outcome::default();
    let mut round = 0;
    while !stop.load(Ordering::SeqCst) {
        match round % 3 {
            0 => outcome.register(app),
            1 => outcome.login(app, round),
            _ => outcome.refresh(app, round),
        }
        round += 1;
    }
    outcome
}

/// Checks, on the recovered host, that what the load was told holds: acknowledged
/// registrations log in, refused ones do not exist (unless in flight at the cut), and
/// each chain's newest acknowledged token refreshes (unless a refresh of it was in
/// flight at the cut, whose COMMIT may have been lost: then it may have been spent).
/// Returns how many refused registrations and refreshes had taken effect (lost
/// acknowledgements).
fn check_outcome(app: &TestApp, outcome: &Outcome, cut: &Window) -> (usize, usize) {
    let (mut registrations, mut refreshes) = (0, 0);
    for user in &outcome.registered {
        app.login_ok(&user.username, &user.password);
    }
    for (user, window) in &outcome.refused_registrations {
        let answer = app.login(&user.username, &user.password);
        match answer.status().as_u16() {
            401 => {}
            200 if window.overlaps(cut) => registrations += 1,
            status => panic!(
                "the registration of {} was refused with 503 (not in flight at the cut), \
                 yet logging in with it answers {status}: {}",
                user.username,
                answer.text().unwrap_or_default()
            ),
        }
    }
    for chain in &outcome.chains {
        let answer = refresh(app, &chain.token);
        let status = answer.status().as_u16();
        let text = answer.text().unwrap_or_default();
        match (status, chain.refused) {
            (200, _) => {}
            (401, Some(window)) if window.overlaps(cut) => {
                assert!(
                    text.contains("refresh_token_reused") || text.contains("invalid_refresh_token"),
                    "{text}"
                );
                refreshes += 1;
            }
            _ => panic!(
                "the newest acknowledged refresh token of {} answers {status}: {text}",
                chain.user
            ),
        }
    }
    (registrations, refreshes)
}

/// A `portcullis` command started by the test, whose output lines it reads as they come.
struct Started {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    _data_dir: tempfile::TempDir,
}

impl Started {
    /// Starts `portcullis COMMAND` with the suite's usual settings and `settings`.
    fn command(command: &str, settings: &[(&str, &str)]) -> Started {
        let data_dir = tempfile::tempdir().expect("tempdir");
        let cache_dir = shared_cache_dir();
        let folder = data_dir.path().display().to_string();
        let mut process = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        process
            .arg(command)
            .current_dir(data_dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        isolate_settings(&mut process);
        let defaults = [
            ("PORTCULLIS_LISTEN", "127.0.0.1:0"),
            ("PORTCULLIS_DATA_DIR", folder.as_str()),
            ("PORTCULLIS_JWT_SECRET", TEST_JWT_SECRET),
            ("PORTCULLIS_RATE_LIMIT", "off"),
            ("PORTCULLIS_CACHE_DIR", cache_dir.as_str()),
        ];
        for (key, value) in defaults.iter().chain(settings) {
            process.env(key, value);
        }
        let mut child = process.spawn().expect("start portcullis");
        let (sender, lines) = mpsc::channel();
        forward_lines(child.stdout.take().expect("stdout"), sender.clone());
        forward_lines(child.stderr.take().expect("stderr"), sender);
        Started {
            child,
            lines,
            seen: Vec::new(),
            _data_dir: data_dir,
        }
    }

    /// The next line that contains `text`, within [`COMMAND_GUARD`].
    fn line_with(&mut self, text: &str) -> String {
        let deadline = Instant::now() + COMMAND_GUARD;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {}
                Err(_) => panic!(
                    "no line with {text:?} within {COMMAND_GUARD:?}; the output:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits (within [`COMMAND_GUARD`]) for the command to end; its exit code and every
    /// line it printed.
    fn finish(mut self) -> (Option<i32>, Vec<String>) {
        let deadline = Instant::now() + COMMAND_GUARD;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for portcullis") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "portcullis did not end within {COMMAND_GUARD:?}; the output:\n{}",
                self.seen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        // The readers end with the pipes.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(line);
        }
        (status.code(), std::mem::take(&mut self.seen))
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends each line of `reader` to `lines` from a thread of its own.
fn forward_lines(reader: impl Read + Send + 'static, lines: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
}

/// The `error:` lines among `lines`.
fn error_lines(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|line| line.starts_with("error: "))
        .collect()
}

/// The warnings the host logs for each failed try at an unreachable database.
const UNREACHABLE: &str = "cannot reach the database";

/// A local port nothing listens on (a server that is down refuses it).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("take a port");
    listener.local_addr().expect("address").port()
}

/// A URL of the trial's backend, with a password, to a server that refuses.
fn refused_url(password: &str) -> (String, String) {
    let address = format!("127.0.0.1:{}", closed_port());
    let scheme = match backend() {
        crate::backends::Backend::Mysql => "mysql",
        _ => "postgres",
    };
    let url = format!("{scheme}://portcullis:{password}@{address}/portcullis");
    (url, format!("{address}/portcullis"))
}

/// A small tmpfs mounted on a folder of its own (unmounted when dropped).
struct Tmpfs {
    folder: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` reads it).
    fn mount(size: &str) -> Tmpfs {
        let folder = tempfile::tempdir().expect("tempdir");
        run_mount(
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"],
            folder.path(),
        );
        Tmpfs { folder }
    }

    fn path(&self) -> &Path {
        self.folder.path()
    }

    /// `sqlite://<the folder>/portcullis.db`.
    fn database_url(&self) -> String {
        format!("sqlite://{}", self.database_file().display())
    }

    fn database_file(&self) -> PathBuf {
        self.path().join("portcullis.db")
    }

    /// Remounts the file system read-only or read-write.
    fn remount(&self, mode: &str) {
        run_mount(&["-o", &format!("remount,{mode}")], self.path());
    }

    /// Fills the file system with one file until it is full; returns the file.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).expect("create the filler");
        let block = vec![0_u8; 4096];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) if error.raw_os_error() == Some(28) => break,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => panic!("filling the tmpfs: {error}"),
            }
        }
        let _ = file.flush();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.folder.path())
            .status();
    }
}

/// `mount ARGS FOLDER`, which must succeed (the SQLite disk tests need root).
fn run_mount(args: &[&str], folder: &Path) {
    let output = Command::new("mount")
        .args(args)
        .arg(folder)
        .output()
        .expect("run mount");
    assert!(
        output.status.success(),
        "mount {args:?} {} failed (the SQLite disk tests need root): {}",
        folder.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `PRAGMA integrity_check` of the SQLite file, read-only, from this process.
fn integrity_check(database_file: &Path) -> String {
    use sqlx::ConnectOptions as _;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut connection = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(database_file)
            .read_only(true)
            .connect()
            .await
            .expect("open the SQLite file");
        let verdict: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&mut connection)
            .await
            .expect("PRAGMA integrity_check");
        verdict
    })
}

/// An HTTP client for a host this module started itself.
fn client() -> Client {
    Client::builder()
        .no_proxy()
        .timeout(ANSWER_BOUND)
        .build()
        .expect("a client")
}

api_tests! {
    /// The database goes away for a few seconds while client threads register, log in
    /// and refresh: every answer is a success or 503 with `Retry-After` within a bound;
    /// the same host recovers by itself; every acknowledged registration logs in and
    /// every chain's newest acknowledged refresh token refreshes; a registration
    /// refused with 503 does not exist. Only a request in flight at the instant of the
    /// cut may have committed with its acknowledgement lost: such a registration may
    /// exist, such a refresh may have spent its token (both counted and printed). This
    /// does happen: one PostgreSQL or MySQL run saw three of the four requests in flight
    /// at the cut committed, answered 503.
    fn a_database_cut_under_load_keeps_what_it_acknowledged_and_nothing_it_refused() {
        let database = shared_database();
        let forwarder = Forwarder::start(&server_address(backend(), &database.url));
        // Every session the load opens stays live: no eviction blurs the refresh checks.
        let app = TestApp::spawn_on(
            &with_server_address(&database.url, &forwarder.address()),
            &[("PORTCULLIS_MAX_SESSIONS", "0")],
        );
        app.assert_healthy();
        let stop = AtomicBool::new(false);
        let (outcomes, cut) = std::thread::scope(|scope| {
            let clients: Vec<_> = (0..LOAD_THREADS)
                .map(|_| scope.spawn(|| client_load(&app, &stop)))
                .collect();
            std::thread::sleep(BEFORE_CUT);
            let cut_sent = Instant::now();
            forwarder.cut();
            let cut = Window { sent: cut_sent, answered: Instant::now() };
            std::thread::sleep(CUT_FOR);
            forwarder.restore();
            wait_until_healthy(&app);
            std::thread::sleep(AFTER_RECOVERY);
            stop.store(true, Ordering::SeqCst);
            let outcomes: Vec<Outcome> = clients
                .into_iter()
                .map(|client| client.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                .collect();
            (outcomes, cut)
        });
        app.assert_healthy();
        let answers: usize = outcomes.iter().map(|outcome| outcome.answers).sum();
        let unavailable: usize = outcomes.iter().map(|outcome| outcome.unavailable).sum();
        let registered: usize = outcomes.iter().map(|outcome| outcome.registered.len()).sum();
        assert!(unavailable > 0, "no request met the cut ({answers} answers)");
        assert!(registered > 0, "no registration was acknowledged");
        let (mut lost_registrations, mut lost_refreshes) = (0, 0);
        for outcome in &outcomes {
            let (registrations, refreshes) = check_outcome(&app, outcome, &cut);
            lost_registrations += registrations;
            lost_refreshes += refreshes;
        }
        eprintln!(
            "{}: {answers} answers, {unavailable} of them 503, {registered} registrations \
             acknowledged; refused with 503 yet committed at the cut (acknowledgement \
             lost): {lost_registrations} registrations, {lost_refreshes} refreshes",
            backend().name()
        );
    }

    /// A database server that refuses at start-up is tried again, one warning per try
    /// naming the database and `PORTCULLIS_DATABASE_WAIT`; once it answers, the host
    /// migrates and serves.
    fn an_unreachable_database_is_waited_for_and_then_served() {
        let database = shared_database();
        let forwarder = Forwarder::start(&server_address(backend(), &database.url));
        forwarder.cut();
        let url = with_server_address(&database.url, &forwarder.address());
        let mut host = Started::command(
            "serve",
            &[("PORTCULLIS_DATABASE_URL", &url), ("PORTCULLIS_DATABASE_WAIT", "300")],
        );
        for _ in 0..2 {
            let warning = host.line_with(UNREACHABLE);
            assert!(warning.contains("WARN"), "{warning}");
            assert!(warning.contains(&forwarder.address()), "{warning}");
            assert!(warning.contains("PORTCULLIS_DATABASE_WAIT"), "{warning}");
        }
        forwarder.restore();
        let listening = host.line_with("listening on http://");
        let address = listening
            .split_once("http://")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .expect("an address");
        let health = client()
            .get(format!("http://{address}/health"))
            .send()
            .expect("/health");
        assert_eq!(health.status().as_u16(), 200, "{:?}", health.text());
        assert!(error_lines(&host.seen).is_empty(), "{}", host.seen.join("\n"));
    }

    /// With `PORTCULLIS_DATABASE_WAIT=0` a refusing server stops start-up at once, and
    /// with a short wait after it: exit code 1, one `error:` line that names the
    /// database (host, port, database; never the password), the setting and the cause.
    fn an_unreachable_database_stops_start_up_after_the_wait_with_one_line() {
        let password = "pw-never-shown-4711";
        // A try at a refusing server takes about 5 s (the pool's own retries): 15 s
        // leaves room for a second one.
        for wait in ["0", "15"] {
            let (url, named) = refused_url(password);
            let (code, lines) = Started::command(
                "serve",
                &[("PORTCULLIS_DATABASE_URL", &url), ("PORTCULLIS_DATABASE_WAIT", wait)],
            )
            .finish();
            let output = lines.join("\n");
            assert_eq!(code, Some(1), "{output}");
            let errors = error_lines(&lines);
            assert_eq!(errors.len(), 1, "{output}");
            for part in [named.as_str(), "PORTCULLIS_DATABASE_WAIT", "refused"] {
                assert!(errors[0].contains(part), "{part:?} in {output}");
            }
            assert!(!output.contains(password), "{output}");
            assert!(!output.contains("listening on"), "{output}");
            let warnings = lines
                .iter()
                .filter(|line| line.contains(UNREACHABLE) && line.contains("WARN"))
                .count();
            if wait == "0" {
                assert_eq!(warnings, 0, "{output}");
            } else {
                assert!(warnings >= 1, "{output}");
            }
        }
    }

    /// `PORTCULLIS_DATABASE_WAIT` is checked with every other setting: whole seconds up
    /// to an hour, else one line naming it and exit code 2.
    fn database_wait_is_checked_like_every_setting() {
        for bad in ["soon", "-1", "1.5", "3601"] {
            let (code, lines) =
                Started::command("serve", &[("PORTCULLIS_DATABASE_WAIT", bad)]).finish();
            let output = lines.join("\n");
            assert_eq!(code, Some(2), "{bad}: {output}");
            let errors = error_lines(&lines);
            assert_eq!(errors.len(), 1, "{bad}: {output}");
            assert!(errors[0].starts_with("error: PORTCULLIS_DATABASE_WAIT: "), "{output}");
        }
    }

    /// A SQLite data folder on a file system mounted read-only stops start-up with one
    /// `error:` line and a non-zero exit, and leaves the database intact.
    fn a_read_only_sqlite_folder_stops_start_up_with_one_line() {
        let disk = Tmpfs::mount("16m");
        let url = disk.database_url();
        let folder = disk.path().display().to_string();
        let settings = [
            ("PORTCULLIS_DATABASE_URL", url.as_str()),
            ("PORTCULLIS_DATA_DIR", folder.as_str()),
        ];
        let (code, lines) = Started::command("migrate", &settings).finish();
        assert_eq!(code, Some(0), "{}", lines.join("\n"));
        disk.remount("ro");
        let (code, lines) = Started::command("serve", &settings).finish();
        let output = lines.join("\n");
        assert_eq!(code, Some(1), "{output}");
        let errors = error_lines(&lines);
        assert_eq!(errors.len(), 1, "{output}");
        assert!(errors[0].contains(&folder), "{output}");
        assert!(errors[0].to_lowercase().contains("read-only"), "{output}");
        assert!(!output.contains("listening on"), "{output}");
        disk.remount("rw");
        assert_eq!(integrity_check(&disk.database_file()), "ok");
    }

    /// A full disk under SQLite: writes answer 503 with `Retry-After`, reads are
    /// served, the file stays intact, and once there is room again the refused
    /// registration goes through (it had not been half-written) and the host serves on.
    fn a_full_disk_answers_503_and_sqlite_recovers_intact() {
        let disk = Tmpfs::mount("16m");
        let url = disk.database_url();
        let folder = disk.path().display().to_string();
        let app = TestApp::spawn_on(&url, &[("PORTCULLIS_DATA_DIR", folder.as_str())]);
        let (user, token, _) = app.registered_user();
        let filler = disk.fill();

        let mut acknowledged = Vec::new();
        let refused = loop {
            assert!(acknowledged.len() < 500, "500 registrations fitted on a full disk");
            let newcomer = unique_user();
            let (answer, _) = load_request("register on a full disk", || {
                app.register(&newcomer.username, &newcomer.email, &newcomer.password)
            });
            match answer {
                Answer::Done(_) => acknowledged.push(newcomer),
                Answer::Unavailable => break newcomer,
            }
        };
        let me = app.get_with_token("/api/v1/users/me", &token);
        assert_eq!(me.status().as_u16(), 200, "a read on a full disk: {:?}", me.text());

        std::fs::remove_file(&filler).expect("make room");
        app.register_user(&refused);
        for newcomer in acknowledged.iter().chain([&user]) {
            app.login_ok(&newcomer.username, &newcomer.password);
        }
        app.assert_healthy();
        assert_eq!(integrity_check(&disk.database_file()), "ok");
    }
}
