//! The setups the black-box suite runs on (a database, served by a host), and the one
//! the current trial uses.
//!
//! SQLite always runs: every app gets a file of its own. PostgreSQL runs when
//! `PORTCULLIS_TEST_POSTGRES_URL` is set, MySQL/MariaDB when `PORTCULLIS_TEST_MYSQL_URL`
//! is set. For each of those the runner connects to the URL as given, creates a database
//! of this run's own, `portcullis_test_<unix-time>_<pid>`, on that server, points the
//! backend's apps at it and drops it at the end: runs never see each other's rows.
//! The trials of one run share that database (they only use unique identities).
//!
//! `spin-postgres` runs the same tests against the Spin artifact (built by
//! `spin/compose`, as `spin build` builds it) served by the project's Spin test host
//! (`portcullis-spin-test-host`), on a PostgreSQL database of its own on the server
//! `PORTCULLIS_TEST_POSTGRES_URL` names. That database is left fresh: the artifact
//! migrates it on the first requests, which the trials send all at once (they take
//! turns on the migration). Its URL says `sslmode=disable`, as the README tells Spin
//! users of a server without a certificate Spin trusts.
//!
//! The runner calls [`enter`] on the thread of each trial, so that `spawn_app` (through
//! [`current`]) knows where to point the app without the test saying so.

use std::cell::RefCell;
use std::future::Future;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sqlx::Connection as _;
use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;

/// How long creating or dropping a run's database may take.
const SERVER_TIMEOUT: Duration = Duration::from_secs(20);

/// A database the suite runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mysql,
}

/// What serves a trial's apps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    /// `portcullis serve`.
    Native,
    /// The Spin artifact in `portcullis-spin-test-host`.
    Spin,
}

/// A database served by a host: every test runs once per setup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setup {
    pub backend: Backend,
    pub host: Host,
}

impl Setup {
    pub const SQLITE: Setup = Setup::native(Backend::Sqlite);
    pub const POSTGRES: Setup = Setup::native(Backend::Postgres);
    pub const MYSQL: Setup = Setup::native(Backend::Mysql);
    pub const SPIN_POSTGRES: Setup = Setup {
        backend: Backend::Postgres,
        host: Host::Spin,
    };

    /// Every setup, in the order the runner lists them.
    pub const ALL: [Setup; 4] = [
        Setup::SQLITE,
        Setup::POSTGRES,
        Setup::MYSQL,
        Setup::SPIN_POSTGRES,
    ];

    const fn native(backend: Backend) -> Setup {
        Setup {
            backend,
            host: Host::Native,
        }
    }

    /// The first part of a trial's name.
    pub fn name(self) -> &'static str {
        match (self.host, self.backend) {
            (Host::Native, backend) => backend.name(),
            (Host::Spin, Backend::Sqlite) => "spin-sqlite",
            (Host::Spin, Backend::Postgres) => "spin-postgres",
            (Host::Spin, Backend::Mysql) => "spin-mysql",
        }
    }

    /// The URL its apps are given for the database `url` names: on Spin, with
    /// `sslmode=disable` unless the URL says otherwise.
    fn app_url(self, url: String) -> String {
        if self.host == Host::Spin && !url.contains("sslmode=") {
            let separator = if url.contains('?') { '&' } else { '?' };
            format!("{url}{separator}sslmode=disable")
        } else {
            url
        }
    }
}

impl Backend {
    /// The first part of the name of a trial on the native host.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
        }
    }

    /// The variable that names this backend's server; SQLite needs none.
    pub fn url_variable(self) -> Option<&'static str> {
        match self {
            Self::Sqlite => None,
            Self::Postgres => Some("PORTCULLIS_TEST_POSTGRES_URL"),
            Self::Mysql => Some("PORTCULLIS_TEST_MYSQL_URL"),
        }
    }

    /// The port a URL of this backend means when it names none.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Sqlite => 0,
            Self::Postgres => 5432,
            Self::Mysql => 3306,
        }
    }
}

/// Where a trial's apps keep their data, and what serves them.
#[derive(Clone, Debug)]
pub struct Target {
    pub backend: Backend,
    pub host: Host,
    /// The run's database on PostgreSQL and MySQL; `None` on SQLite, where every app
    /// gets a file of its own.
    pub database_url: Option<String>,
}

thread_local! {
    static CURRENT: RefCell<Option<Target>> = const { RefCell::new(None) };
}

/// Makes `target` the one [`current`] answers on this thread.
pub fn enter(target: Target) {
    CURRENT.with(|current| *current.borrow_mut() = Some(target));
}

/// The target of the trial running on this thread.
pub fn current() -> Target {
    CURRENT.with(|current| current.borrow().clone()).expect(
        "no backend on this thread: start apps on the trial's own thread (the runner \
         sets the backend there)",
    )
}

/// How a backend stands in this run.
pub enum Status {
    /// Its trials run against this target.
    Ready(Target),
    /// Its trials are ignored: the variable that names its server is not set.
    NotConfigured(&'static str),
    /// Its trials fail: its URL is set but the server cannot be used.
    Unreachable(String),
}

/// Every setup's status, and the databases this run created.
pub struct Run {
    statuses: Vec<(Setup, Status)>,
    databases: Vec<RunDatabase>,
}

impl Run {
    /// Creates this run's databases (and, for Spin, builds the artifact) and prints one
    /// line per setup.
    pub fn prepare() -> Run {
        let mut run = Run {
            statuses: Vec::new(),
            databases: Vec::new(),
        };
        for setup in Setup::ALL {
            let status = run.prepare_setup(setup);
            run.statuses.push((setup, status));
        }
        run
    }

    /// Every setup as configured, without a database nor a word (to list the trials).
    pub fn listing() -> Run {
        let statuses = Setup::ALL.map(|setup| {
            let unset = setup
                .backend
                .url_variable()
                .filter(|v| configured(v).is_none());
            let status = match unset {
                Some(variable) => Status::NotConfigured(variable),
                None => Status::Ready(Target {
                    backend: setup.backend,
                    host: setup.host,
                    database_url: None,
                }),
            };
            (setup, status)
        });
        Run {
            statuses: statuses.into(),
            databases: Vec::new(),
        }
    }

    fn prepare_setup(&mut self, setup: Setup) -> Status {
        let ready = |database_url| {
            Status::Ready(Target {
                backend: setup.backend,
                host: setup.host,
                database_url,
            })
        };
        let Some(variable) = setup.backend.url_variable() else {
            println!("backend {}: a database file per app", setup.name());
            return ready(None);
        };
        let Some(server_url) = configured(variable) else {
            println!("skipped backend {}: {variable} is not set", setup.name());
            return Status::NotConfigured(variable);
        };
        let prepared = match setup.host {
            Host::Native => Ok(()),
            Host::Spin => crate::support::build_spin_artifact(),
        };
        match prepared.and_then(|()| RunDatabase::create(setup, &server_url)) {
            Ok(database) => {
                println!(
                    "backend {}: database {} on {}",
                    setup.name(),
                    database.name,
                    server_address(setup.backend, &server_url)
                );
                let url = database.url();
                self.databases.push(database);
                ready(Some(url))
            }
            Err(error) => {
                let message = format!("{variable} is set but cannot be used: {error}");
                println!("FAILED backend {}: {message}", setup.name());
                Status::Unreachable(message)
            }
        }
    }

    /// Every setup's status.
    pub fn statuses(&self) -> &[(Setup, Status)] {
        &self.statuses
    }

    /// Drops the databases this run created.
    pub fn finish(self) {
        for database in self.databases {
            if let Err(error) = database.drop_database() {
                eprintln!("could not drop {}: {error}", database.name);
            }
        }
    }
}

/// The value of `variable`, unless it is unset or blank.
fn configured(variable: &str) -> Option<String> {
    std::env::var(variable)
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// A database of one trial's own, dropped when it is dropped: for a test that changes
/// what every host on a database shares (say, its signing keys), which would disturb the
/// other trials on the run's database. On SQLite, a fresh file.
pub struct PrivateDatabase {
    /// What `PORTCULLIS_DATABASE_URL` says.
    pub url: String,
    database: Option<RunDatabase>,
    _folder: Option<tempfile::TempDir>,
}

impl Drop for PrivateDatabase {
    fn drop(&mut self) {
        if let Some(database) = &self.database
            && let Err(error) = database.drop_database()
        {
            eprintln!("could not drop {}: {error}", database.name);
        }
    }
}

/// Creates a [`PrivateDatabase`] on the current trial's backend.
pub fn private_database() -> PrivateDatabase {
    let target = current();
    let setup = Setup {
        backend: target.backend,
        host: target.host,
    };
    let server_url = setup.backend.url_variable().and_then(configured);
    match server_url {
        Some(server_url) => {
            let database = RunDatabase::create(setup, &server_url)
                .unwrap_or_else(|error| panic!("a private database: {error}"));
            PrivateDatabase {
                url: database.url(),
                database: Some(database),
                _folder: None,
            }
        }
        None => {
            let folder = tempfile::tempdir().expect("tempdir");
            PrivateDatabase {
                url: format!("sqlite://{}/private.db", folder.path().display()),
                database: None,
                _folder: Some(folder),
            }
        }
    }
}

/// A database created for one run.
struct RunDatabase {
    setup: Setup,
    server_url: String,
    name: String,
}

impl RunDatabase {
    /// A new database for `setup`: migrated for the native host, fresh for Spin.
    fn create(setup: Setup, server_url: &str) -> Result<RunDatabase, String> {
        let backend = setup.backend;
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        static CREATED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let serial = CREATED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!(
            "portcullis_test_{since_epoch}_{}_{serial}",
            std::process::id()
        );
        let create = match backend {
            Backend::Mysql => format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"),
            _ => format!("CREATE DATABASE {name}"),
        };
        administer(backend, server_url, &create)?;
        let database = RunDatabase {
            setup,
            server_url: server_url.to_owned(),
            name,
        };
        if setup.host == Host::Native {
            migrate(&database.url())?;
        }
        Ok(database)
    }

    /// The URL the apps use: the server's, with this database.
    fn url(&self) -> String {
        self.setup
            .app_url(with_database(&self.server_url, &self.name))
    }

    fn drop_database(&self) -> Result<(), String> {
        let drop = match self.setup.backend {
            // Connections of hosts that were killed may linger for a moment.
            Backend::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            _ => format!("DROP DATABASE IF EXISTS {}", self.name),
        };
        administer(self.setup.backend, &self.server_url, &drop)
    }
}

/// Applies the migrations with `portcullis migrate`, once, before any app starts: apps
/// that start together on a fresh database would all apply them at once (on MariaDB,
/// sqlx's migration lock `GET_LOCK(…, -1)` does not wait, and all but one app fail).
fn migrate(url: &str) -> Result<(), String> {
    let folder = tempfile::tempdir().map_err(|error| format!("tempdir: {error}"))?;
    let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    command
        .arg("migrate")
        .current_dir(folder.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("PORTCULLIS_")) {
        command.env_remove(key);
    }
    let mut child = command
        .env("PORTCULLIS_DATABASE_URL", url)
        .spawn()
        .map_err(|error| format!("starting `portcullis migrate`: {error}"))?;
    let deadline = Instant::now() + SERVER_TIMEOUT;
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() > deadline {
            // Killed, it fails below with what it printed.
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child
        .wait_with_output()
        .map_err(|error| format!("`portcullis migrate`: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(format!("`portcullis migrate` failed: {}", stderr.trim()))
    }
}

/// Runs one statement on the server `url` names, connected to the URL as given.
fn administer(backend: Backend, url: &str, sql: &str) -> Result<(), String> {
    let sql = sql.to_owned();
    let url = url.to_owned();
    block_on(async move {
        match backend {
            Backend::Postgres => {
                let mut connection = PgConnection::connect(&url).await?;
                sqlx::raw_sql(&sql).execute(&mut connection).await?;
                connection.close().await
            }
            Backend::Mysql => {
                let mut connection = MySqlConnection::connect(&url).await?;
                sqlx::raw_sql(&sql).execute(&mut connection).await?;
                connection.close().await
            }
            Backend::Sqlite => Err(sqlx::Error::Configuration(
                "SQLite has no server to administer".into(),
            )),
        }
    })
}

/// Runs `work` to completion on a runtime of its own, within [`SERVER_TIMEOUT`].
fn block_on(work: impl Future<Output = Result<(), sqlx::Error>>) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("starting a runtime: {error}"))?;
    match runtime.block_on(async { tokio::time::timeout(SERVER_TIMEOUT, work).await }) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {SERVER_TIMEOUT:?}")),
    }
}

/// A database URL cut into (`scheme://`, `user:password@`, `host:port`, the rest:
/// `/database?query`).
fn split_url(url: &str) -> (&str, &str, &str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let (scheme, rest) = url.split_at(after_scheme);
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let (user, host) = authority.split_at(host_start);
    (scheme, user, host, tail)
}

/// `url` with its database replaced by `database` (the query string stays).
pub fn with_database(url: &str, database: &str) -> String {
    let (scheme, user, host, tail) = split_url(url);
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    format!("{scheme}{user}{host}/{database}{query}")
}

/// `url` with its host and port replaced by `address`.
pub fn with_server_address(url: &str, address: &str) -> String {
    let (scheme, user, _, tail) = split_url(url);
    format!("{scheme}{user}{address}{tail}")
}

/// The `host:port` a URL of `backend` connects to.
pub fn server_address(backend: Backend, url: &str) -> String {
    let (_, _, host, _) = split_url(url);
    let has_port = host
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok());
    if has_port {
        host.to_owned()
    } else {
        format!("{host}:{}", backend.default_port())
    }
}
