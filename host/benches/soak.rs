//! The soak (issue #17, BENCHMARKS.md "Soak"): two `portcullis serve` hosts (the release
//! binary) on one fresh PostgreSQL database, a mixed load over both from several client
//! threads for a while, then checks of the database against what the clients were told.
//!
//! The load: registrations, logins (with a small `PORTCULLIS_MAX_SESSIONS`, so logins
//! evict the oldest sessions), refreshes (some racing two refreshes of one token on the
//! two hosts within the reuse grace, some replaying a spent token after the grace),
//! `/auth/verify`, logouts, session revocations (`DELETE /api/v1/sessions/{id}`) and
//! password changes. Each client thread owns its accounts, so it knows at every moment
//! which of their sessions are live and which tokens are spent.
//!
//! Checked at the end (and the session limit also every few seconds during the run):
//! no user with more live sessions than the limit; no spent refresh token accepted
//! outside the grace (a replay after it is refused with `refresh_token_reused` and
//! revokes the session); an audit event for every acknowledged action (per user and
//! kind); no 5xx (nor a request left without an answer); every session open before a
//! password change (but the one that made it) revoked; every answer the one the clients'
//! model of the service expects. Prints requests by kind, answers by status, p50/p99
//! per kind, each host's resident memory at start and end, and a PASS/FAIL line per
//! check; exits non-zero when any check fails.
//!
//! Run: `cargo bench -p portcullis --bench soak`. Knobs: `SOAK_SECONDS` (default 60),
//! `SOAK_CLIENTS` (client threads, default 6), `SOAK_POSTGRES_URL` (the server to
//! create the run's database on, default `postgres://postgres@127.0.0.1:5432/test`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use reqwest::blocking::RequestBuilder;
use serde_json::{Value, json};
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

mod common;

use common::{Client, PASSWORD, env_or, percentile, registration, unique_run};

/// `PORTCULLIS_MAX_SESSIONS` of both hosts: small, so that logins evict.
const MAX_SESSIONS: usize = 3;
/// `PORTCULLIS_REFRESH_REUSE_GRACE` of both hosts, in seconds.
const GRACE_SECONDS: u64 = 2;
/// A spent token is replayed "after the grace" only this long after its spending was
/// answered: the service counts whole seconds, so a second and a margin more.
const PAST_GRACE: Duration = Duration::from_secs(GRACE_SECONDS + 2);
/// Accounts a client thread keeps using; a registration past it retires one.
const ACCOUNTS_PER_CLIENT: usize = 6;
/// How often the session limit is checked in the database during the run.
const LIMIT_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// The longest a request may take before it counts as unanswered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The shared HS256 key of both hosts (a token from one is good on the other).
const JWT_SECRET: &str = "soak-secret-soak-secret-soak-secret-soak!";
/// Unexpected answers printed in full (all are counted).
const UNEXPECTED_SHOWN: usize = 20;

fn main() -> anyhow::Result<()> {
    let seconds = env_or("SOAK_SECONDS", 60);
    let clients = env_or("SOAK_CLIENTS", 6).max(1);
    let server_url = std::env::var("SOAK_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let runtime = tokio::runtime::Runtime::new()?;
    let database = RunDatabase::create(&runtime, &server_url)?;
    let outcome = soak(&runtime, &database.url, seconds, clients);
    let dropped = database.drop_database(&runtime);
    let passed = outcome?;
    dropped?;
    if !passed {
        std::process::exit(1);
    }
    Ok(())
}

/// The database of one run, created empty on the server and dropped at the end.
struct RunDatabase {
    server_url: String,
    name: String,
    url: String,
}

impl RunDatabase {
    fn create(runtime: &tokio::runtime::Runtime, server_url: &str) -> anyhow::Result<Self> {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let name = format!("portcullis_soak_{since_epoch}_{}", std::process::id());
        administer(runtime, server_url, &format!("CREATE DATABASE {name}"))?;
        let mut url = url::Url::parse(server_url)?;
        url.set_path(&name);
        Ok(Self {
            server_url: server_url.to_owned(),
            name,
            url: url.to_string(),
        })
    }

    fn drop_database(&self, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        // Connections of the hosts just killed may linger for a moment.
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        administer(runtime, &self.server_url, &drop)
    }
}

/// Runs one statement on the server `url` names.
fn administer(runtime: &tokio::runtime::Runtime, url: &str, sql: &str) -> anyhow::Result<()> {
    runtime.block_on(async {
        let mut connection = PgConnection::connect(url).await?;
        sqlx::raw_sql(sql).execute(&mut connection).await?;
        connection.close().await?;
        Ok(())
    })
}

/// The two hosts, the load and the checks. Returns whether every check passed.
fn soak(
    runtime: &tokio::runtime::Runtime,
    database_url: &str,
    seconds: u64,
    clients: u64,
) -> anyhow::Result<bool> {
    let dir = tempfile::tempdir()?;
    let mut hosts = Vec::new();
    // One after the other: the first applies the migrations.
    for number in 0..2 {
        match start_host(dir.path(), database_url, number) {
            Ok(host) => hosts.push(host),
            Err(error) => {
                stop_hosts(&mut hosts);
                return Err(error);
            }
        }
    }
    let outcome = load_and_check(runtime, database_url, &hosts, seconds, clients);
    if matches!(outcome, Ok(false)) {
        print_host_logs(&hosts);
    }
    stop_hosts(&mut hosts);
    outcome
}

/// One running host: its process, address, log file and resident memory at start.
struct Host {
    child: Child,
    address: String,
    log: std::path::PathBuf,
    start_rss_kib: u64,
}

fn start_host(dir: &std::path::Path, database_url: &str, number: usize) -> anyhow::Result<Host> {
    let data_dir = dir.join(format!("host-{number}"));
    std::fs::create_dir_all(&data_dir)?;
    let log = dir.join(format!("host-{number}.log"));
    let max_sessions = MAX_SESSIONS.to_string();
    let grace = GRACE_SECONDS.to_string();
    let settings = [
        ("PORTCULLIS_JWT_SECRET", JWT_SECRET),
        ("PORTCULLIS_MAX_SESSIONS", max_sessions.as_str()),
        ("PORTCULLIS_REFRESH_REUSE_GRACE", grace.as_str()),
        // Access tokens outlive the run: a session idle for a while is still verified.
        ("PORTCULLIS_ACCESS_TTL", "86400"),
    ];
    let stderr = Stdio::from(std::fs::File::create(&log)?);
    let (child, address) = common::start_server(&data_dir, database_url, &settings, stderr)?;
    let start_rss_kib = rss_kib(child.id()).unwrap_or(0);
    Ok(Host {
        child,
        address,
        log,
        start_rss_kib,
    })
}

fn stop_hosts(hosts: &mut [Host]) {
    for host in hosts {
        let _ = host.child.kill();
        let _ = host.child.wait();
    }
}

/// The last lines each host logged (warnings and errors), after a failed check.
fn print_host_logs(hosts: &[Host]) {
    for (number, host) in hosts.iter().enumerate() {
        let text = std::fs::read_to_string(&host.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(30)..];
        println!(
            "\nhost {number}'s log ({} lines, the last 30):",
            lines.len()
        );
        for line in tail {
            println!("  {line}");
        }
    }
}

/// The resident memory of process `pid` (VmRSS), in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/{pid}/status"))?
        .parse()
        .map_err(Into::into)
}

fn load_and_check(
    runtime: &tokio::runtime::Runtime,
    database_url: &str,
    hosts: &[Host],
    seconds: u64,
    clients: u64,
) -> anyhow::Result<bool> {
    let addresses = [hosts[0].address.clone(), hosts[1].address.clone()];
    println!(
        "# Soak: two hosts on PostgreSQL, {clients} client threads, {seconds} s, \
         max_sessions {MAX_SESSIONS}, reuse grace {GRACE_SECONDS} s, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut connection = runtime.block_on(PgConnection::connect(database_url))?;
    let run = unique_run();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut over_limit_during_run = Vec::new();
    let workers: Vec<Worker> = std::thread::scope(|scope| -> anyhow::Result<Vec<Worker>> {
        let handles: Vec<_> = (0..clients)
            .map(|number| {
                let worker = Worker::new(number, &run, addresses.clone());
                scope.spawn(move || worker.run(deadline))
            })
            .collect();
        while Instant::now() < deadline {
            std::thread::sleep(
                LIMIT_CHECK_INTERVAL.min(deadline.saturating_duration_since(Instant::now())),
            );
            over_limit_during_run.extend(runtime.block_on(users_over_limit(&mut connection))?);
        }
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .map_err(|_| anyhow::anyhow!("a client thread panicked"))
            })
            .collect()
    })?;
    let elapsed = started.elapsed();
    let mut totals = Worker::new(u64::MAX, &run, addresses);
    for worker in workers {
        totals.absorb(worker);
    }
    print_figures(&totals, hosts, elapsed)?;
    let checks = runtime.block_on(check_database(
        &mut connection,
        &totals,
        over_limit_during_run,
    ))?;
    let mut passed = true;
    println!();
    for (name, failures) in checks {
        passed &= failures.is_empty();
        let verdict = if failures.is_empty() { "PASS" } else { "FAIL" };
        println!("{verdict}: {name}");
        for failure in failures.iter().take(UNEXPECTED_SHOWN) {
            println!("    {failure}");
        }
        if failures.len() > UNEXPECTED_SHOWN {
            println!("    … and {} more", failures.len() - UNEXPECTED_SHOWN);
        }
    }
    Ok(passed)
}

/// Users with more live sessions than [`MAX_SESSIONS`] now, as `user: count` lines.
async fn users_over_limit(connection: &mut PgConnection) -> anyhow::Result<Vec<String>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT user_id, COUNT(*) FROM sessions WHERE revoked_at IS NULL AND expires_at > $1 \
         GROUP BY user_id HAVING COUNT(*) > $2",
    )
    .bind(unix_now())
    .bind(i64::try_from(MAX_SESSIONS)?)
    .fetch_all(&mut *connection)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(user, count)| format!("user {user}: {count} live sessions"))
        .collect())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// One check's name and what broke it (empty when it passed).
type Check = (&'static str, Vec<String>);

/// Every check, against the database and what the clients saw.
async fn check_database(
    connection: &mut PgConnection,
    totals: &Worker,
    over_limit_during_run: Vec<String>,
) -> anyhow::Result<Vec<Check>> {
    let mut over_limit = over_limit_during_run;
    over_limit.extend(users_over_limit(connection).await?);
    let revocations = sessions_not_revoked(connection, &totals.must_be_revoked).await?;
    let (reused, password_changes): (Vec<String>, Vec<String>) = revocations
        .into_iter()
        .partition(|line| line.contains("refresh_token_reused"));
    let mut spent_accepted = totals.spent_accepted.clone();
    spent_accepted.extend(reused);
    Ok(vec![
        ("no user with more live sessions than the limit", over_limit),
        (
            "no spent refresh token accepted outside the grace (and a replay revokes its session)",
            spent_accepted,
        ),
        (
            "an audit event for every acknowledged action",
            missing_audit_events(connection, &totals.acknowledged).await?,
        ),
        (
            "no 5xx, every request answered",
            totals.server_errors.clone(),
        ),
        (
            "sessions opened before a password change are revoked",
            password_changes
                .into_iter()
                .chain(totals.alive_after_password_change.iter().cloned())
                .collect(),
        ),
        (
            "every answer the one expected (status, same successor for racing refreshes)",
            totals.unexpected.clone(),
        ),
    ])
}

/// The sessions of `expected` (id, reason) that the database does not hold as revoked
/// for that reason.
async fn sessions_not_revoked(
    connection: &mut PgConnection,
    expected: &[(String, &'static str)],
) -> anyhow::Result<Vec<String>> {
    let rows: Vec<(String, Option<i64>, Option<String>)> =
        sqlx::query_as("SELECT id, revoked_at, revoked_reason FROM sessions")
            .fetch_all(&mut *connection)
            .await?;
    let stored: HashMap<String, (Option<i64>, Option<String>)> = rows
        .into_iter()
        .map(|(id, at, reason)| (id, (at, reason)))
        .collect();
    Ok(expected
        .iter()
        .filter_map(|(id, reason)| match stored.get(id) {
            Some((Some(_), Some(stored_reason))) if stored_reason == reason => None,
            other => Some(format!(
                "session {id} ({reason}): stored as {other:?}, not revoked for {reason}"
            )),
        })
        .collect())
}

/// The (user, event) pairs with fewer audit events than acknowledged actions; prints
/// the totals per kind.
async fn missing_audit_events(
    connection: &mut PgConnection,
    acknowledged: &HashMap<(String, &'static str), u64>,
) -> anyhow::Result<Vec<String>> {
    let rows: Vec<(Option<String>, String, i64)> =
        sqlx::query_as("SELECT user_id, event, COUNT(*) FROM audit_events GROUP BY user_id, event")
            .fetch_all(&mut *connection)
            .await?;
    let recorded: HashMap<(String, String), u64> = rows
        .into_iter()
        .filter_map(|(user, event, count)| {
            Some(((user?, event), u64::try_from(count).unwrap_or(0)))
        })
        .collect();
    let mut per_kind: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut missing = Vec::new();
    for ((user, kind), &count) in acknowledged {
        let stored = recorded
            .get(&(user.clone(), (*kind).to_owned()))
            .copied()
            .unwrap_or(0);
        let entry = per_kind.entry(kind).or_default();
        entry.0 += count;
        entry.1 += stored;
        if stored < count {
            missing.push(format!(
                "user {user}: {count} `{kind}` acknowledged, {stored} recorded"
            ));
        }
    }
    println!("\naudit events of the soak's users, per kind: acknowledged / recorded");
    for (kind, (count, stored)) in per_kind {
        println!("  {kind:<24} {count:>9} / {stored}");
    }
    Ok(missing)
}

/// Requests, answers, latencies and memory.
fn print_figures(totals: &Worker, hosts: &[Host], elapsed: Duration) -> anyhow::Result<()> {
    let mut by_kind: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut by_status: BTreeMap<u16, u64> = BTreeMap::new();
    for sample in &totals.samples {
        by_kind.entry(sample.kind).or_default().push(sample.millis);
        *by_status.entry(sample.status).or_default() += 1;
    }
    println!(
        "\n{} requests in {:.0} s ({:.1}/s)",
        totals.samples.len(),
        elapsed.as_secs_f64(),
        totals.samples.len() as f64 / elapsed.as_secs_f64()
    );
    println!("\n| kind | requests | p50 (ms) | p99 (ms) |\n| --- | ---: | ---: | ---: |");
    for (kind, mut millis) in by_kind {
        millis.sort_by(f64::total_cmp);
        println!(
            "| {kind} | {} | {:.1} | {:.1} |",
            millis.len(),
            percentile(&millis, 0.50),
            percentile(&millis, 0.99)
        );
    }
    println!("\n| status | answers |\n| --- | ---: |");
    for (status, count) in by_status {
        let label = if status == 0 {
            "no answer".to_owned()
        } else {
            status.to_string()
        };
        println!("| {label} | {count} |");
    }
    println!("\n| host | RSS at start (MiB) | RSS at end (MiB) |\n| --- | ---: | ---: |");
    for (number, host) in hosts.iter().enumerate() {
        println!(
            "| {number} | {:.1} | {:.1} |",
            host.start_rss_kib as f64 / 1024.0,
            rss_kib(host.child.id())? as f64 / 1024.0
        );
    }
    Ok(())
}

/// One of two racing refreshes: its status and body (or why no answer came), and time.
type RacingAnswer = (Result<(u16, Value), String>, Duration);

/// One request's kind, answer status (0: no answer) and time.
struct Sample {
    kind: &'static str,
    status: u16,
    millis: f64,
}

/// An account a client thread owns, with its live sessions as the thread knows them.
struct Account {
    id: String,
    username: String,
    password: String,
    sessions: Vec<Session>,
}

/// A live session: its tokens and the refresh tokens it spent (when each was answered).
struct Session {
    id: String,
    access: String,
    refresh: String,
    spent: Vec<(String, Instant)>,
}

impl Session {
    /// The session of a token response (login, register, refresh).
    fn from_grant(grant: &Value) -> Option<Session> {
        Some(Session {
            id: grant["session_id"].as_str()?.to_owned(),
            access: grant["access_token"].as_str()?.to_owned(),
            refresh: grant["refresh_token"].as_str()?.to_owned(),
            spent: Vec::new(),
        })
    }
}

/// The actions of the load, and how often each is drawn (out of [`WEIGHT_TOTAL`]).
#[derive(Clone, Copy)]
enum Action {
    Register,
    Login,
    Refresh,
    RacingRefresh,
    ReplayAfterGrace,
    Verify,
    Logout,
    RevokeSession,
    ChangePassword,
}

const ACTIONS: [(Action, u32); 9] = [
    (Action::Register, 5),
    (Action::Login, 14),
    (Action::Refresh, 22),
    (Action::RacingRefresh, 6),
    (Action::ReplayAfterGrace, 5),
    (Action::Verify, 30),
    (Action::Logout, 6),
    (Action::RevokeSession, 6),
    (Action::ChangePassword, 3),
];
/// The sum of the weights of [`ACTIONS`].
const WEIGHT_TOTAL: u32 = {
    let mut total = 0;
    let mut index = 0;
    while index < ACTIONS.len() {
        total += ACTIONS[index].1;
        index += 1;
    }
    total
};

/// One client thread: its accounts, what it saw, and what the service acknowledged.
struct Worker {
    number: u64,
    run: String,
    hosts: [String; 2],
    rng: StdRng,
    client: Client,
    accounts: Vec<Account>,
    registered: u64,
    samples: Vec<Sample>,
    /// Acknowledged actions per (user id, audit event).
    acknowledged: HashMap<(String, &'static str), u64>,
    /// Sessions the database must hold as revoked, with the reason.
    must_be_revoked: Vec<(String, &'static str)>,
    spent_accepted: Vec<String>,
    alive_after_password_change: Vec<String>,
    server_errors: Vec<String>,
    unexpected: Vec<String>,
}

impl Worker {
    fn new(number: u64, run: &str, hosts: [String; 2]) -> Worker {
        Worker {
            number,
            run: run.to_owned(),
            hosts,
            rng: StdRng::seed_from_u64(number),
            client: Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .unwrap_or_default(),
            accounts: Vec::new(),
            registered: 0,
            samples: Vec::new(),
            acknowledged: HashMap::new(),
            must_be_revoked: Vec::new(),
            spent_accepted: Vec::new(),
            alive_after_password_change: Vec::new(),
            server_errors: Vec::new(),
            unexpected: Vec::new(),
        }
    }

    /// Draws and runs actions until `deadline`.
    fn run(mut self, deadline: Instant) -> Worker {
        self.register();
        while Instant::now() < deadline {
            let action = self.draw();
            self.act(action);
        }
        self
    }

    /// Adds what `other` saw to this one's.
    fn absorb(&mut self, other: Worker) {
        self.samples.extend(other.samples);
        for (key, count) in other.acknowledged {
            *self.acknowledged.entry(key).or_default() += count;
        }
        self.must_be_revoked.extend(other.must_be_revoked);
        self.spent_accepted.extend(other.spent_accepted);
        self.alive_after_password_change
            .extend(other.alive_after_password_change);
        self.server_errors.extend(other.server_errors);
        self.unexpected.extend(other.unexpected);
    }

    fn draw(&mut self) -> Action {
        let mut ticket = self.rng.random_range(0..WEIGHT_TOTAL);
        for (action, weight) in ACTIONS {
            if ticket < weight {
                return action;
            }
            ticket -= weight;
        }
        Action::Verify
    }

    fn act(&mut self, action: Action) {
        if self.accounts.is_empty() {
            self.register();
            return;
        }
        match action {
            Action::Register => self.register(),
            Action::Login => self.login(),
            Action::Refresh => self.refresh(),
            Action::RacingRefresh => self.racing_refresh(),
            Action::ReplayAfterGrace => self.replay_after_grace(),
            Action::Verify => self.verify(),
            Action::Logout => self.logout(),
            Action::RevokeSession => self.revoke_session(),
            Action::ChangePassword => self.change_password(),
        }
    }

    /// A random host's address.
    fn host(&mut self) -> String {
        self.hosts[self.rng.random_range(0..2)].clone()
    }

    /// Sends `request`, records its kind, status and time; returns the status and the
    /// JSON body (`Null` when there is none), or `None` when no answer came.
    fn send(&mut self, kind: &'static str, request: RequestBuilder) -> Option<(u16, Value)> {
        let sent = Instant::now();
        let answer = request.send();
        let (status, body) = match answer {
            Ok(answer) => {
                let status = answer.status().as_u16();
                (status, answer.json::<Value>().unwrap_or(Value::Null))
            }
            Err(error) => {
                self.server_errors
                    .push(format!("{kind}: no answer ({error})"));
                (0, Value::Null)
            }
        };
        self.record(kind, status, sent.elapsed());
        if status >= 500 {
            self.server_errors.push(format!("{kind}: {status} {body}"));
        }
        (status != 0).then_some((status, body))
    }

    fn record(&mut self, kind: &'static str, status: u16, elapsed: Duration) {
        self.samples.push(Sample {
            kind,
            status,
            millis: elapsed.as_secs_f64() * 1000.0,
        });
    }

    /// Whether `answer` has status `want`; any other answer is noted as unexpected.
    fn expect(&mut self, kind: &str, answer: &Option<(u16, Value)>, want: u16) -> bool {
        match answer {
            Some((status, _)) if *status == want => true,
            Some((status, body)) => {
                self.unexpected
                    .push(format!("{kind}: {status} (expected {want}) {body}"));
                false
            }
            None => false,
        }
    }

    fn acknowledge(&mut self, user_id: &str, event: &'static str) {
        *self
            .acknowledged
            .entry((user_id.to_owned(), event))
            .or_default() += 1;
    }

    /// Forgets session `at` of account `index`, which an acknowledged request ended:
    /// counts its audit `event` and expects it stored revoked for `reason`.
    fn end_session(&mut self, index: usize, at: usize, event: &'static str, reason: &'static str) {
        let session = self.accounts[index].sessions.remove(at);
        let user_id = self.accounts[index].id.clone();
        self.acknowledge(&user_id, event);
        self.must_be_revoked.push((session.id, reason));
    }

    /// A random account index, and a random session index of it when it has one.
    fn pick(&mut self) -> (usize, Option<usize>) {
        let account = self.rng.random_range(0..self.accounts.len());
        let sessions = self.accounts[account].sessions.len();
        let session = (sessions > 0).then(|| self.rng.random_range(0..sessions));
        (account, session)
    }

    fn register(&mut self) {
        self.registered += 1;
        let name = format!("{}_{}_{}", self.run, self.number, self.registered);
        let host = self.host();
        let request = self
            .client
            .post(format!("{host}/api/v1/auth/register"))
            .json(&registration(&name));
        let answer = self.send("register", request);
        if !self.expect("register", &answer, 201) {
            return;
        }
        let Some((_, grant)) = answer else { return };
        let (Some(id), Some(session)) = (grant["user"]["id"].as_str(), Session::from_grant(&grant))
        else {
            self.unexpected
                .push(format!("register: no grant in {grant}"));
            return;
        };
        self.acknowledge(id, "register");
        self.accounts.push(Account {
            id: id.to_owned(),
            username: name,
            password: PASSWORD.to_owned(),
            sessions: vec![session],
        });
        if self.accounts.len() > ACCOUNTS_PER_CLIENT {
            let retired = self.rng.random_range(0..self.accounts.len());
            self.accounts.swap_remove(retired);
        }
    }

    fn login(&mut self) {
        let (index, _) = self.pick();
        let host = self.host();
        let account = &self.accounts[index];
        let body = json!({"login": account.username, "password": account.password});
        let request = self
            .client
            .post(format!("{host}/api/v1/auth/login"))
            .json(&body);
        let answer = self.send("login", request);
        if !self.expect("login", &answer, 200) {
            return;
        }
        let Some(session) = answer
            .as_ref()
            .and_then(|(_, grant)| Session::from_grant(grant))
        else {
            self.unexpected.push("login: no grant".to_owned());
            return;
        };
        let user_id = self.accounts[index].id.clone();
        self.acknowledge(&user_id, "login");
        let access = session.access.clone();
        self.accounts[index].sessions.push(session);
        if self.accounts[index].sessions.len() > MAX_SESSIONS {
            self.learn_evictions(index, &access);
        }
    }

    /// After a login past the limit: asks which sessions are live (the service evicted
    /// the oldest; sessions opened in the same second have no order the client can know)
    /// and forgets the evicted ones.
    fn learn_evictions(&mut self, index: usize, access: &str) {
        let host = self.host();
        let request = self
            .client
            .get(format!("{host}/api/v1/sessions"))
            .bearer_auth(access);
        let answer = self.send("list sessions", request);
        if !self.expect("list sessions", &answer, 200) {
            return;
        }
        let Some((_, body)) = answer else { return };
        let live: HashSet<&str> = body["sessions"]
            .as_array()
            .map(|sessions| sessions.iter().filter_map(|s| s["id"].as_str()).collect())
            .unwrap_or_default();
        let account = &mut self.accounts[index];
        let before = account.sessions.len();
        account
            .sessions
            .retain(|session| live.contains(session.id.as_str()));
        let evicted = before - account.sessions.len();
        let user_id = account.id.clone();
        for _ in 0..evicted {
            self.acknowledge(&user_id, "session_evicted");
        }
        if evicted == 0 || live.len() > MAX_SESSIONS {
            self.unexpected.push(format!(
                "login past the limit: {evicted} evicted, {} live",
                live.len()
            ));
        }
    }

    fn refresh(&mut self) {
        let (index, Some(at)) = self.pick() else {
            return self.login();
        };
        let host = self.host();
        let token = self.accounts[index].sessions[at].refresh.clone();
        let request = self
            .client
            .post(format!("{host}/api/v1/auth/refresh"))
            .json(&json!({"refresh_token": token}));
        let answer = self.send("refresh", request);
        if self.expect("refresh", &answer, 200) {
            self.rotated(index, at, answer.map(|(_, grant)| grant));
        }
    }

    /// Keeps the successor the service gave for the session's refresh token.
    fn rotated(&mut self, index: usize, at: usize, grant: Option<Value>) {
        let Some(next) = grant.as_ref().and_then(Session::from_grant) else {
            self.unexpected.push("refresh: no grant".to_owned());
            return;
        };
        let user_id = self.accounts[index].id.clone();
        self.acknowledge(&user_id, "refresh");
        let session = &mut self.accounts[index].sessions[at];
        let spent = std::mem::replace(&mut session.refresh, next.refresh);
        session.access = next.access;
        session.spent.push((spent, Instant::now()));
    }

    /// Two refreshes of one token at once, one on each host: both within the grace, so
    /// both succeed with the same successor, and the token is spent once.
    fn racing_refresh(&mut self) {
        let (index, Some(at)) = self.pick() else {
            return self.login();
        };
        let token = self.accounts[index].sessions[at].refresh.clone();
        let body = json!({"refresh_token": token});
        let requests: Vec<RequestBuilder> = self
            .hosts
            .iter()
            .map(|host| {
                self.client
                    .post(format!("{host}/api/v1/auth/refresh"))
                    .json(&body)
            })
            .collect();
        let barrier = std::sync::Barrier::new(requests.len());
        let answers: Vec<RacingAnswer> = std::thread::scope(|scope| {
            let handles: Vec<_> = requests
                .into_iter()
                .map(|request| {
                    let barrier = &barrier;
                    scope.spawn(move || {
                        barrier.wait();
                        let sent = Instant::now();
                        let answer =
                            request
                                .send()
                                .map_err(|error| error.to_string())
                                .map(|answer| {
                                    let status = answer.status().as_u16();
                                    (status, answer.json::<Value>().unwrap_or(Value::Null))
                                });
                        (answer, sent.elapsed())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle
                        .join()
                        .unwrap_or_else(|_| (Err("panicked".to_owned()), Duration::ZERO))
                })
                .collect()
        });
        let mut grants = Vec::new();
        for (answer, elapsed) in answers {
            let answer = match answer {
                Ok(answer) => Some(answer),
                Err(error) => {
                    self.server_errors
                        .push(format!("racing refresh: no answer ({error})"));
                    None
                }
            };
            let status = answer.as_ref().map_or(0, |(status, _)| *status);
            self.record("racing refresh", status, elapsed);
            if status >= 500 {
                self.server_errors
                    .push(format!("racing refresh: {status} {answer:?}"));
            }
            if self.expect("racing refresh", &answer, 200) {
                grants.extend(answer.map(|(_, grant)| grant));
            }
        }
        let successors: HashSet<&str> = grants
            .iter()
            .filter_map(|grant| grant["refresh_token"].as_str())
            .collect();
        if successors.len() > 1 {
            self.unexpected
                .push("racing refresh: two different successors".to_owned());
        }
        if let Some(grant) = grants.into_iter().next() {
            self.rotated(index, at, Some(grant));
        }
    }

    /// Presents a token its session spent longer ago than the grace: it must be refused
    /// as reused, and the session (its current tokens too) revoked.
    fn replay_after_grace(&mut self) {
        let now = Instant::now();
        let candidate = self
            .accounts
            .iter()
            .enumerate()
            .find_map(|(index, account)| {
                account
                    .sessions
                    .iter()
                    .enumerate()
                    .find_map(|(at, session)| {
                        session
                            .spent
                            .iter()
                            .find(|(_, spent)| now.duration_since(*spent) > PAST_GRACE)
                            .map(|(token, _)| (index, at, token.clone()))
                    })
            });
        let Some((index, at, token)) = candidate else {
            return self.refresh();
        };
        let host = self.host();
        let request = self
            .client
            .post(format!("{host}/api/v1/auth/refresh"))
            .json(&json!({"refresh_token": token}));
        let answer = self.send("replay after grace", request);
        let session = self.accounts[index].sessions.remove(at);
        if let Some((200, _)) = answer {
            self.spent_accepted.push(format!(
                "session {}: a token spent over {} s before was accepted",
                session.id,
                PAST_GRACE.as_secs()
            ));
            return;
        }
        if !self.expect("replay after grace", &answer, 401) {
            return;
        }
        if answer.as_ref().map(|(_, body)| &body["code"]) != Some(&json!("refresh_token_reused")) {
            self.unexpected.push(format!(
                "replay after grace: {answer:?}, not refresh_token_reused"
            ));
            return;
        }
        let user_id = self.accounts[index].id.clone();
        self.acknowledge(&user_id, "refresh_token_reused");
        self.must_be_revoked
            .push((session.id.clone(), "refresh_token_reused"));
        // The session's current tokens are refused too.
        let host = self.host();
        let request = self
            .client
            .post(format!("{host}/api/v1/auth/refresh"))
            .json(&json!({"refresh_token": session.refresh}));
        let answer = self.send("refresh after reuse", request);
        if let Some((200, _)) = answer {
            self.spent_accepted.push(format!(
                "session {}: its current refresh token worked after a reuse",
                session.id
            ));
        }
        self.expect("refresh after reuse", &answer, 401);
        let answer = self.verify_token("verify after reuse", &session.access);
        self.expect("verify after reuse", &answer, 401);
    }

    fn verify_token(&mut self, kind: &'static str, access: &str) -> Option<(u16, Value)> {
        let host = self.host();
        let request = self
            .client
            .get(format!("{host}/api/v1/auth/verify"))
            .bearer_auth(access);
        self.send(kind, request)
    }

    fn verify(&mut self) {
        let (index, Some(at)) = self.pick() else {
            return self.login();
        };
        let access = self.accounts[index].sessions[at].access.clone();
        let answer = self.verify_token("verify", &access);
        self.expect("verify", &answer, 200);
    }

    fn logout(&mut self) {
        let (index, Some(at)) = self.pick() else {
            return self.login();
        };
        let host = self.host();
        let access = self.accounts[index].sessions[at].access.clone();
        let request = self
            .client
            .post(format!("{host}/api/v1/auth/logout"))
            .bearer_auth(access);
        let answer = self.send("logout", request);
        if self.expect("logout", &answer, 204) {
            self.end_session(index, at, "logout", "logout");
        }
    }

    /// One session of an account revokes another of the same account.
    fn revoke_session(&mut self) {
        let (index, Some(at)) = self.pick() else {
            return self.login();
        };
        let sessions = self.accounts[index].sessions.len();
        if sessions < 2 {
            return self.login();
        }
        let victim = (at + 1 + self.rng.random_range(0..sessions - 1)) % sessions;
        let host = self.host();
        let account = &self.accounts[index];
        let request = self
            .client
            .delete(format!(
                "{host}/api/v1/sessions/{}",
                account.sessions[victim].id
            ))
            .bearer_auth(&account.sessions[at].access);
        let answer = self.send("revoke session", request);
        if self.expect("revoke session", &answer, 204) {
            self.end_session(index, victim, "session_revoked", "revoked");
        }
    }

    /// Changes an account's password from one of its sessions: every other session
    /// must stop working at once.
    fn change_password(&mut self) {
        let (index, Some(at)) = self.pick() else {
            return self.login();
        };
        let new_password = format!("Soak!{}x{}Q", self.registered, self.rng.random::<u32>());
        let host = self.host();
        let account = &self.accounts[index];
        let request = self
            .client
            .post(format!("{host}/api/v1/users/me/password"))
            .bearer_auth(&account.sessions[at].access)
            .json(&json!({"current_password": account.password, "new_password": new_password}));
        let answer = self.send("change password", request);
        if !self.expect("change password", &answer, 204) {
            return;
        }
        let account = &mut self.accounts[index];
        account.password = new_password;
        let kept = account.sessions.swap_remove(at);
        let others = std::mem::replace(&mut account.sessions, vec![kept]);
        let user_id = account.id.clone();
        self.acknowledge(&user_id, "password_changed");
        for session in others {
            let answer = self.verify_token("verify after password change", &session.access);
            if let Some((200, _)) = answer {
                self.alive_after_password_change.push(format!(
                    "session {}: its access token verified after the password change",
                    session.id
                ));
            } else {
                self.expect("verify after password change", &answer, 401);
            }
            self.must_be_revoked.push((session.id, "password_changed"));
        }
    }
}
