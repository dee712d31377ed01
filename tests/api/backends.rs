//! The databases the black-box suite runs on, and the one the current trial uses.
//!
//! SQLite always runs: every app gets a file of its own. PostgreSQL runs when
//! `PORTCULLIS_TEST_POSTGRES_URL` is set, MySQL/MariaDB when `PORTCULLIS_TEST_MYSQL_URL`
//! is set. For each of those the runner connects to the URL as given, creates a database
//! of this run's own, `portcullis_test_<unix-time>_<pid>`, on that server, points the
//! backend's apps at it and drops it at the end: runs never see each other's rows.
//! The trials of one run share that database (they only use unique identities).
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

impl Backend {
    /// Every backend, in the order the runner lists them.
    pub const ALL: [Backend; 3] = [Backend::Sqlite, Backend::Postgres, Backend::Mysql];

    /// The first part of a trial's name.
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

/// Where a trial's apps keep their data.
#[derive(Clone, Debug)]
pub struct Target {
    pub backend: Backend,
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

/// Every backend's status, and the databases this run created.
pub struct Run {
    statuses: Vec<(Backend, Status)>,
    databases: Vec<RunDatabase>,
}

impl Run {
    /// Creates this run's databases and prints one line per backend that has a server.
    pub fn prepare() -> Run {
        let mut run = Run {
            statuses: Vec::new(),
            databases: Vec::new(),
        };
        for backend in Backend::ALL {
            let status = run.prepare_backend(backend);
            run.statuses.push((backend, status));
        }
        run
    }

    /// Every backend as configured, without a database nor a word (to list the trials).
    pub fn listing() -> Run {
        let statuses = Backend::ALL.map(|backend| {
            let status = match backend.url_variable().filter(|v| configured(v).is_none()) {
                Some(variable) => Status::NotConfigured(variable),
                None => Status::Ready(Target {
                    backend,
                    database_url: None,
                }),
            };
            (backend, status)
        });
        Run {
            statuses: statuses.into(),
            databases: Vec::new(),
        }
    }

    fn prepare_backend(&mut self, backend: Backend) -> Status {
        let ready = |database_url| {
            Status::Ready(Target {
                backend,
                database_url,
            })
        };
        let Some(variable) = backend.url_variable() else {
            println!("backend {}: a database file per app", backend.name());
            return ready(None);
        };
        let Some(server_url) = configured(variable) else {
            println!("skipped backend {}: {variable} is not set", backend.name());
            return Status::NotConfigured(variable);
        };
        match RunDatabase::create(backend, &server_url) {
            Ok(database) => {
                println!(
                    "backend {}: database {} on {}",
                    backend.name(),
                    database.name,
                    server_address(backend, &server_url)
                );
                let url = database.url();
                self.databases.push(database);
                ready(Some(url))
            }
            Err(error) => {
                let message = format!("{variable} is set but cannot be used: {error}");
                println!("FAILED backend {}: {message}", backend.name());
                Status::Unreachable(message)
            }
        }
    }

    /// Every backend's status.
    pub fn statuses(&self) -> &[(Backend, Status)] {
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
    let backend = current().backend;
    let server_url = backend.url_variable().and_then(configured);
    match server_url {
        Some(server_url) => {
            let database = RunDatabase::create(backend, &server_url)
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
    backend: Backend,
    server_url: String,
    name: String,
}

impl RunDatabase {
    fn create(backend: Backend, server_url: &str) -> Result<RunDatabase, String> {
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
            backend,
            server_url: server_url.to_owned(),
            name,
        };
        migrate(&database.url())?;
        Ok(database)
    }

    /// The URL the apps use: the server's, with this database.
    fn url(&self) -> String {
        with_database(&self.server_url, &self.name)
    }

    fn drop_database(&self) -> Result<(), String> {
        let drop = match self.backend {
            // Connections of hosts that were killed may linger for a moment.
            Backend::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            _ => format!("DROP DATABASE IF EXISTS {}", self.name),
        };
        administer(self.backend, &self.server_url, &drop)
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
