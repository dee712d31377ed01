//! Scale-out: several hosts on one database (state shared by hosts lives in the database).
//! A user registered through one host logs in through another, uniqueness holds across
//! hosts, and a host killed with SIGKILL in the middle of a stream of registrations loses
//! none that it answered 201. On SQLite the hosts share one file (WAL).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};

use crate::support::{TestApp, TestUser, assert_problem, json_body, shared_database, unique_user};

const REGISTER: &str = "/api/v1/auth/register";
const ME: &str = "/api/v1/users/me";

/// Racers per host for one username.
const RACERS_PER_HOST: usize = 6;

/// Threads that register users, each one after another, all at the same time.
const STREAM_WORKERS: usize = 4;

/// At most this many registrations per stream thread (the kill stops them long before).
const STREAM_LIMIT_PER_WORKER: usize = 100;

/// The host is killed once this many registrations were answered 201.
const ANSWERED_BEFORE_KILL: usize = 12;

/// How long the stream may take to reach [`ANSWERED_BEFORE_KILL`].
const STREAM_TIMEOUT: Duration = Duration::from_secs(120);

fn registration(user: &TestUser) -> Value {
    json!({"username": user.username, "email": user.email, "password": user.password})
}

/// Registers `username` (in alternating case, with fresh emails) from
/// [`RACERS_PER_HOST`] threads per host, all released at once.
fn race_for_username(hosts: &[&TestApp], username: &str) -> Vec<Response> {
    let bodies: Vec<(&TestApp, Value)> = hosts
        .iter()
        .flat_map(|host| (0..RACERS_PER_HOST).map(move |i| (*host, i)))
        .map(|(host, i)| {
            let mut body = registration(&unique_user());
            body["username"] = json!(if i % 2 == 0 {
                username.to_owned()
            } else {
                username.to_uppercase()
            });
            (host, body)
        })
        .collect();
    let barrier = Barrier::new(bodies.len());
    std::thread::scope(|scope| {
        let racers: Vec<_> = bodies
            .iter()
            .map(|(host, body)| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    host.post_json(REGISTER, body)
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    })
}

/// What a stream of registrations saw.
#[derive(Default)]
struct Stream {
    /// The users whose registration was answered 201.
    answered: Mutex<Vec<TestUser>>,
    /// Answers other than 201 (none is expected).
    unexpected: Mutex<Vec<String>>,
    /// Stream threads that have stopped.
    finished: AtomicUsize,
}

impl Stream {
    /// Registers fresh users one after another at `url` until the host stops answering
    /// (or [`STREAM_LIMIT_PER_WORKER`] are done).
    fn register_until_the_host_dies(&self, client: &Client, url: &str) {
        for _ in 0..STREAM_LIMIT_PER_WORKER {
            let user = unique_user();
            match client.post(url).json(&registration(&user)).send() {
                Ok(resp) if resp.status() == 201 => self.answered.lock().unwrap().push(user),
                Ok(resp) => {
                    let answer = format!("{} {}", resp.status(), resp.text().unwrap_or_default());
                    self.unexpected.lock().unwrap().push(answer);
                }
                Err(_) => break,
            }
        }
        self.finished.fetch_add(1, Ordering::SeqCst);
    }

    /// Waits until [`ANSWERED_BEFORE_KILL`] registrations were answered 201, every
    /// thread stopped, or [`STREAM_TIMEOUT`] passed.
    fn wait_for_answers(&self) {
        let deadline = Instant::now() + STREAM_TIMEOUT;
        while self.answered.lock().unwrap().len() < ANSWERED_BEFORE_KILL
            && self.finished.load(Ordering::SeqCst) < STREAM_WORKERS
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs a stream of registrations against `host` and kills the host (SIGKILL) in the
/// middle of it; returns what the stream saw.
fn kill_during_registrations(host: &mut TestApp) -> Stream {
    let stream = Stream::default();
    let url = host.url(REGISTER);
    let client = host.client.clone();
    std::thread::scope(|scope| {
        for _ in 0..STREAM_WORKERS {
            scope.spawn(|| stream.register_until_the_host_dies(&client, &url));
        }
        stream.wait_for_answers();
        host.kill_9();
    });
    stream
}

api_tests! {
    /// A user registered through host A logs in through host B, and each host accepts
    /// the other's access tokens.
    fn a_user_registered_through_one_host_logs_in_through_another() {
        let database = shared_database();
        let a = TestApp::spawn_on(&database.url, &[]);
        let b = TestApp::spawn_on(&database.url, &[]);
        let (user, token_from_a, _) = a.registered_user();
        let login = b.login_ok(&user.username, &user.password);
        let token_from_b = login["access_token"].as_str().expect("access_token");
        let seen_by_b = json_body(b.get_with_token(ME, &token_from_a), 200);
        let seen_by_a = json_body(a.get_with_token(ME, token_from_b), 200);
        assert_eq!(seen_by_b["username"], user.username.as_str(), "{seen_by_b}");
        assert_eq!(seen_by_a["id"], seen_by_b["id"], "{seen_by_a} vs {seen_by_b}");
    }

    /// 2×N registrations of one username at once, half through each host: exactly one
    /// 201, every other one 409 `username_taken`.
    fn racing_registrations_through_two_hosts_create_one_account() {
        let database = shared_database();
        let a = TestApp::spawn_on(&database.url, &[]);
        let b = TestApp::spawn_on(&database.url, &[]);
        let username = unique_user().username;
        let answers = race_for_username(&[&a, &b], &username);
        let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
        let (created, refused): (Vec<_>, Vec<_>) =
            answers.into_iter().partition(|r| r.status() == 201);
        assert_eq!(created.len(), 1, "exactly one registration may win: {statuses:?}");
        for answer in refused {
            assert_problem(answer, 409, "username_taken");
        }
        a.assert_healthy();
        b.assert_healthy();
    }

    /// A host killed with SIGKILL while threads register users one after another loses
    /// no registration it answered 201: each logs in through a fresh host.
    fn registrations_answered_201_survive_a_kill_9_of_their_host() {
        let database = shared_database();
        let mut doomed = TestApp::spawn_on(&database.url, &[]);
        let stream = kill_during_registrations(&mut doomed);
        let unexpected = stream.unexpected.into_inner().unwrap();
        assert!(unexpected.is_empty(), "answers other than 201: {unexpected:?}");
        let answered = stream.answered.into_inner().unwrap();
        assert!(
            answered.len() >= ANSWERED_BEFORE_KILL,
            "only {} registrations were answered 201 before the kill",
            answered.len()
        );
        let survivor = TestApp::spawn_on(&database.url, &[]);
        for user in &answered {
            survivor.login_ok(&user.username, &user.password);
        }
    }
}
