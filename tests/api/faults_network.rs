//! Network faults (issue 17): an SMTP server that refuses or never answers, clients that
//! send a body slowly or never finish it, and 10,000 idle connections. The bounds these
//! tests hold the host to are docs/reference.md's "Slow clients, idle connections and
//! mail outages": a body must arrive within 30 s of its request's head (else 408 and the
//! connection closes), a connection that sends no request head for 30 s is closed, and
//! one mail delivery may take at most 60 s.
//!
//! Each SMTP test runs on a [`PrivateDatabase`] (see `mail`): no other test's host may
//! claim its mails. The raw-socket tests speak HTTP/1.1 by hand, as a hostile client
//! would.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::mail::{
    MAIL_DEADLINE, PUBLIC_URL, PrivateDatabase, SmtpSink, private_database, sql_text,
};
use crate::support::{STRONG_PASSWORD, TestApp, json_body, spawn_app, unique_user};

/// The host's bound on a request body (`request_body::BODY_TIMEOUT`) and on a connection
/// that sends no request head (hyper's header read timeout).
const HOST_BOUND: Duration = Duration::from_secs(30);

/// What a loaded machine may add to a bound of the host's before the test gives up.
const SLACK: Duration = Duration::from_secs(60);

/// Less than [`HOST_BOUND`]: a normal request answered within this, while stalled clients
/// hold their connections, did not wait for any of them to be cut.
const PROMPT: Duration = Duration::from_secs(25);

/// The longest one mail delivery may take (the host's `SEND_TIMEOUT`): an API request
/// that waited for the SMTP server would take at least this long.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a queued mail may take to arrive once the SMTP server works: the retry
/// backoff (30 s, then 60 s) after a failure that may still be on its way.
const REDELIVERY_DEADLINE: Duration = Duration::from_secs(180);

/// Instance slots of the native host (`engine::MAX_INSTANCES`).
const INSTANCE_SLOTS: usize = 64;

/// How many idle connections the keep-alive test holds, and how many of them made one
/// request first.
const IDLE_CONNECTIONS: usize = 10_000;
const KEPT_ALIVE: usize = 200;

/// The keep-alive test opens its connections in batches of this many, the last
/// [`REQUESTS_PER_BATCH`] of each with a request.
const BATCH: usize = 500;
const REQUESTS_PER_BATCH: usize = KEPT_ALIVE / (IDLE_CONNECTIONS / BATCH);

/// The keep-alive test needs 10,000 descriptors and ports of this process: one run of it
/// at a time, whatever the backend.
static MANY_SOCKETS: Mutex<()> = Mutex::new(());

// ---------------------------------------------------------------------------------
// SMTP servers that fail.

/// How a [`FaultySmtp`] fails.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Accepts the connection and closes it at once.
    Closes,
    /// Greets with `554` (no service) and closes.
    Refuses,
    /// Accepts the connection and never says a word.
    Silent,
}

/// A server on 127.0.0.1 that fails every SMTP session as its [`Fault`] says, counting
/// the connections. [`FaultySmtp::stop`] frees its port (and closes the connections it
/// held), so that a working server can take the address.
struct FaultySmtp {
    address: SocketAddr,
    stopped: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl FaultySmtp {
    fn start(fault: Fault) -> FaultySmtp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the faulty SMTP server");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let address = listener.local_addr().expect("its address");
        let stopped = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stopped, accepted) = (Arc::clone(&stopped), Arc::clone(&accepted));
            std::thread::spawn(move || fail_sessions(&listener, fault, &stopped, &accepted))
        };
        FaultySmtp {
            address,
            stopped,
            accepted,
            thread: Some(thread),
        }
    }

    /// Waits (at most `limit`) until the host has connected.
    fn wait_for_connection(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.accepted.load(Ordering::SeqCst) == 0 {
            assert!(
                Instant::now() < deadline,
                "the host did not connect to the SMTP server within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Closes the port and every connection held; returns the address.
    fn stop(mut self) -> SocketAddr {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the faulty SMTP server's thread");
        }
        self.address
    }
}

impl Drop for FaultySmtp {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

/// Accepts connections until `stopped` and fails each as `fault` says.
fn fail_sessions(
    listener: &TcpListener,
    fault: Fault,
    stopped: &AtomicBool,
    accepted: &AtomicUsize,
) {
    let mut held = Vec::new();
    while !stopped.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((mut stream, _)) => {
                accepted.fetch_add(1, Ordering::SeqCst);
                match fault {
                    Fault::Closes => drop(stream),
                    Fault::Refuses => {
                        let _ = stream.write_all(b"554 5.3.2 fault.test no service\r\n");
                    }
                    Fault::Silent => held.push(stream),
                }
            }
            // Nothing to accept yet (the listener does not block), or a failed accept.
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// A host on `database` that mails through `smtp` (plain text).
fn host_mailing_to(database: &PrivateDatabase, smtp: SocketAddr) -> TestApp {
    let url = format!("smtp://{smtp}?tls=none");
    TestApp::spawn_on(
        &database.url,
        &[
            ("PORTCULLIS_SMTP_URL", url.as_str()),
            ("PORTCULLIS_PUBLIC_URL", PUBLIC_URL),
        ],
    )
}

/// A fresh user on `app` who asked for a password reset; returns the address. Both
/// requests must answer as usual and within [`PROMPT`].
fn user_asking_for_a_reset(app: &TestApp) -> String {
    let started = Instant::now();
    let (user, _, _) = app.registered_user();
    let response = app.post_json(
        "/api/v1/auth/password/forgot",
        &json!({"email": user.email}),
    );
    json_body(response, 202);
    assert_prompt(started, "registering and asking for a reset");
    user.email
}

/// The request(s) started at `started` answered within [`PROMPT`]: they did not wait for
/// an SMTP server (which may take [`SEND_TIMEOUT`]).
fn assert_prompt(started: Instant, what: &str) {
    let elapsed = started.elapsed();
    assert!(
        elapsed < PROMPT,
        "{what} took {elapsed:?}: the API waited for something it should not"
    );
}

/// The unsent mails to `recipient` that failed at least once.
fn failed_unsent(database: &PrivateDatabase, recipient: &str) -> i64 {
    database.count(&format!(
        "SELECT COUNT(*) FROM outbox WHERE recipient = {} AND sent_at IS NULL AND attempts >= 1",
        sql_text(recipient)
    ))
}

/// The whole story of one SMTP fault: the API answers as usual while the server fails,
/// the failed mail stays queued (neither lost nor given up), and once a working server
/// listens at the same address every queued mail arrives, once.
fn mail_survives(fault: Fault) {
    let database = private_database();
    let faulty = FaultySmtp::start(fault);
    let app = host_mailing_to(&database, faulty.address);
    let first = user_asking_for_a_reset(&app);
    faulty.wait_for_connection(MAIL_DEADLINE);

    // The delivery loop is busy with the failing server now (a silent one holds it up
    // to SEND_TIMEOUT): the API answers all the same.
    let second = user_asking_for_a_reset(&app);
    let started = Instant::now();
    app.login_ok(&first, STRONG_PASSWORD);
    app.assert_healthy();
    assert_prompt(started, "a login and /health");

    let output = app.wait_for_output(
        "mail delivery failed; it will be retried later",
        SEND_TIMEOUT + SLACK,
    );
    assert!(
        !output.contains("the mail is given up"),
        "a mail was given up after one failure:\n{output}"
    );
    // The host logs the failure, then records it: the mail stays queued for a retry.
    let deadline = Instant::now() + Duration::from_secs(20);
    while failed_unsent(&database, &first) != 1 {
        assert!(
            Instant::now() < deadline,
            "the failed mail is not queued for a retry"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let sink = SmtpSink::start_on(faulty.stop());
    for recipient in [&first, &second] {
        let mails = sink.wait_for_count(recipient, 1, REDELIVERY_DEADLINE);
        mails[0].token("/reset-password");
    }
    // The host looks for due mail every second: give a second delivery every chance.
    std::thread::sleep(Duration::from_secs(3));
    for recipient in [&first, &second] {
        assert_eq!(sink.mails_to(recipient).len(), 1, "mails to {recipient}");
    }
    app.assert_healthy();
}

// ---------------------------------------------------------------------------------
// Raw HTTP/1.1 clients.

/// The socket address of `app`.
fn socket_address(app: &TestApp) -> SocketAddr {
    let address = app.address.trim_start_matches("http://");
    address
        .parse()
        .unwrap_or_else(|_| panic!("not a socket address: {address}"))
}

/// A request head announcing a JSON body of 1,000 bytes, and the first few of them.
fn stalling_request(path: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: faults.test\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n{{\"login\":"
    )
}

/// A connection that sent `stalling_request(path)` and nothing more.
fn stalled_client(address: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).expect("connect to the host");
    stream
        .write_all(stalling_request(path).as_bytes())
        .expect("send the request head");
    stream
}

/// Everything the host sends on `stream` until it closes it, or `None` if it is still
/// open at `deadline`.
fn read_until_closed(stream: &mut TcpStream, deadline: Instant) -> Option<String> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        stream
            .set_read_timeout(Some(left))
            .expect("set a read timeout");
        match stream.read(&mut buffer) {
            Ok(0) => return Some(String::from_utf8_lossy(&received).into_owned()),
            Ok(read) => received.extend_from_slice(&buffer[..read]),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None;
            }
            // A reset after the answer: the host closed the connection.
            Err(_) => return Some(String::from_utf8_lossy(&received).into_owned()),
        }
    }
}

/// The host answered 408 `request_timeout` (a problem) on `stream` and closed it by
/// `deadline`.
fn assert_cut_with_408(stream: &mut TcpStream, deadline: Instant) {
    let answer = read_until_closed(stream, deadline)
        .unwrap_or_else(|| panic!("the host kept a stalled connection open past the bound"));
    assert!(
        answer.starts_with("HTTP/1.1 408 "),
        "the answer: {answer:?}"
    );
    let lower = answer.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: application/problem+json"),
        "{answer:?}"
    );
    assert!(lower.contains("connection: close"), "{answer:?}");
    assert!(
        answer.contains("\"code\":\"request_timeout\""),
        "{answer:?}"
    );
}

/// Whether the host has closed `stream` (or sent something on it), without waiting.
fn closed_or_answered(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).expect("a non-blocking socket");
    let mut byte = [0u8; 1];
    let outcome = !matches!(
        stream.peek(&mut byte),
        Err(error) if error.kind() == ErrorKind::WouldBlock
    );
    stream.set_nonblocking(false).expect("a blocking socket");
    outcome
}

/// Reads one HTTP/1.1 answer with a `Content-Length` body from `stream`; returns its
/// status line.
fn read_one_answer(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(SLACK))
        .expect("set a read timeout");
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        if let Some(end) = find(&received, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).into_owned();
            let length = content_length(&head);
            if received.len() >= end + 4 + length {
                return head.lines().next().unwrap_or_default().to_owned();
            }
        }
        let read = stream.read(&mut buffer).expect("read an answer");
        assert!(read > 0, "the host closed the connection mid-answer");
        received.extend_from_slice(&buffer[..read]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn content_length(head: &str) -> usize {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0)
}

/// Raises this process's soft limit on open files to its hard limit, and insists that it
/// allows `needed` more than a test run uses anyway.
fn allow_open_files(needed: usize) {
    let soft = rlimit::increase_nofile_limit(u64::MAX).expect("raise the limit on open files");
    assert!(
        soft >= needed as u64 + 2_000,
        "this test needs {needed} sockets; the limit on open files is {soft}"
    );
}

/// An idle connection, and the moment before it last asked for anything (its opening, or
/// its one request): the host's idle bound runs from a later moment.
struct Idle {
    stream: TcpStream,
    since: Instant,
}

/// A new connection to `address` that has sent nothing yet.
fn idle_connection(address: SocketAddr) -> Idle {
    let since = Instant::now();
    let stream = TcpStream::connect(address).expect("connect to the host");
    Idle { stream, since }
}

/// How much earlier than its bound the host's timer may fire.
const TIMER_TOLERANCE: Duration = Duration::from_secs(1);

/// No connection of `connections` was closed before its idle bound; returns how many are
/// open. (Opening 10,000 may take longer than the bound on a loaded machine: the first
/// ones may be closed already, in their time.)
fn assert_none_closed_early(connections: &[Idle]) -> usize {
    let mut open = 0;
    for idle in connections {
        if !closed_or_answered(&idle.stream) {
            open += 1;
            continue;
        }
        let age = idle.since.elapsed();
        assert!(
            age >= HOST_BOUND - TIMER_TOLERANCE,
            "a connection idle for {age:?} was closed, before the bound of {HOST_BOUND:?}"
        );
    }
    open
}

/// Waits until the host has closed every one of `connections`, by `deadline`.
fn wait_until_all_closed(connections: &[Idle], deadline: Instant) {
    let mut open: Vec<&TcpStream> = connections.iter().map(|idle| &idle.stream).collect();
    loop {
        open.retain(|stream| !closed_or_answered(stream));
        if open.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} idle connections still open past the bound",
            open.len(),
            connections.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A fresh user registers and logs in on `app`, within [`PROMPT`].
fn register_and_log_in_promptly(app: &TestApp) {
    let started = Instant::now();
    app.assert_healthy();
    let user = unique_user();
    app.register_user(&user);
    app.login_ok(&user.email, &user.password);
    assert_prompt(started, "/health, a registration and a login");
}

api_tests! {
    /// An SMTP server that accepts the connection and closes it at once: the API answers
    /// as usual, the mail stays queued, and it is delivered once a server works there.
    fn smtp_closing_at_once_leaves_the_mail_queued() {
        mail_survives(Fault::Closes);
    }

    /// The same with a server that greets with `554` (no service).
    fn smtp_answering_554_leaves_the_mail_queued() {
        mail_survives(Fault::Refuses);
    }

    /// The same with a server that accepts the connection and never answers: the
    /// delivery gives up after its 60 s bound, and the API never waits for it.
    fn smtp_never_answering_leaves_the_mail_queued() {
        mail_survives(Fault::Silent);
    }

    /// A client that announces a body of 1,000 bytes, sends a few and stops is answered
    /// 408 `request_timeout` within the bound (not long before it either), and its
    /// connection is closed.
    fn a_body_that_never_comes_is_cut_after_30_s() {
        let app = spawn_app();
        let mut stream = stalled_client(socket_address(&app), "/api/v1/auth/login");
        let started = Instant::now();
        assert_cut_with_408(&mut stream, started + HOST_BOUND + SLACK);
        let waited = started.elapsed();
        assert!(
            waited >= HOST_BOUND - Duration::from_secs(5),
            "the host cut the client after {waited:?}, before the bound"
        );
        app.assert_healthy();
    }

    /// A client that sends its body one byte a second is cut at the bound all the same:
    /// the bound is on the whole body, not on the pause between bytes.
    fn a_body_sent_a_byte_a_second_is_cut_after_30_s() {
        let app = spawn_app();
        let mut stream = stalled_client(socket_address(&app), "/api/v1/auth/login");
        let mut trickle = stream.try_clone().expect("clone the socket");
        let started = Instant::now();
        let trickler = std::thread::spawn(move || {
            for _ in 0..200 {
                std::thread::sleep(Duration::from_secs(1));
                if trickle.write_all(b" ").is_err() {
                    return;
                }
            }
        });
        assert_cut_with_408(&mut stream, started + HOST_BOUND + SLACK);
        drop(stream);
        trickler.join().expect("the trickling thread");
        app.assert_healthy();
    }

    /// More stalled bodies than the host has instance slots, on a password-hashing route
    /// and on others: /health, a registration and a login still answer at once (a
    /// waiting body holds no instance slot and no hashing turn), while every stalled
    /// client still waits; then each stalled client gets its 408 and is disconnected.
    fn stalled_bodies_hold_no_instance_slot() {
        let app = spawn_app();
        let address = socket_address(&app);
        // More than the instance slots on a route that hashes nothing, and more than the
        // hashing turns (two per core of this machine, the host's) on each of two that do.
        let hashing_turns =
            2 * std::thread::available_parallelism().map_or(1, |cores| cores.get());
        let mut stalled: Vec<TcpStream> = (0..INSTANCE_SLOTS + 8)
            .map(|_| stalled_client(address, "/api/v1/auth/refresh"))
            .collect();
        for path in ["/api/v1/auth/login", "/api/v1/auth/register"] {
            stalled.extend((0..hashing_turns + 2).map(|_| stalled_client(address, path)));
        }
        let opened = Instant::now();
        register_and_log_in_promptly(&app);
        let cut_early = stalled.iter().filter(|stream| closed_or_answered(stream)).count();
        assert_eq!(
            cut_early,
            0,
            "stalled clients were answered before the others got through \
             ({:?} after they stalled)",
            opened.elapsed()
        );
        let deadline = opened + HOST_BOUND + SLACK;
        for mut stream in stalled {
            assert_cut_with_408(&mut stream, deadline);
        }
        app.assert_healthy();
    }

    /// 10,000 connections (200 made a keep-alive request and got their answer; the
    /// others never sent anything) leave the host serving: /health, a registration and a
    /// login answer at once, and no connection is closed before its idle bound. Each idle
    /// connection is closed by the host 30 s after its request (or its opening).
    fn ten_thousand_idle_connections_leave_the_host_serving() {
        let _one_at_a_time = MANY_SOCKETS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        allow_open_files(IDLE_CONNECTIONS);
        let app = spawn_app();
        let address = socket_address(&app);
        let request = "GET /health HTTP/1.1\r\nHost: faults.test\r\nConnection: keep-alive\r\n\r\n";
        let mut connections = Vec::with_capacity(IDLE_CONNECTIONS);
        while connections.len() < IDLE_CONNECTIONS {
            let first_request = connections.len() + BATCH - REQUESTS_PER_BATCH;
            connections.extend((0..BATCH - REQUESTS_PER_BATCH).map(|_| idle_connection(address)));
            connections.extend((0..REQUESTS_PER_BATCH).map(|_| {
                let mut idle = idle_connection(address);
                idle.stream.write_all(request.as_bytes()).expect("send a request");
                idle
            }));
            // The host accepts connections in the order they came: once the batch's last
            // ones are answered, it holds the whole batch (and the listen queue is empty
            // again, so that no connection waits for a SYN to be sent again).
            for idle in &mut connections[first_request..] {
                let status = read_one_answer(&mut idle.stream);
                assert!(status.starts_with("HTTP/1.1 200 "), "{status}");
            }
        }
        let opened = Instant::now();

        register_and_log_in_promptly(&app);
        let open = assert_none_closed_early(&connections);
        eprintln!("{open} of {IDLE_CONNECTIONS} idle connections open while the host served");
        wait_until_all_closed(&connections, opened + HOST_BOUND + SLACK);
        drop(connections);
        app.assert_healthy();
        let output = app.output();
        assert!(
            !output.contains("accepting a connection failed"),
            "the host could not accept every connection:\n{output}"
        );
    }
}
