//! The `portcullis:auth/store` import: the component's SQL, run by sqlx on the configured
//! database.
//!
//! [`Database`] is the one type the rest of the host sees: it connects, migrates and
//! runs statements on whichever backend the URL names. The WIT glue here only
//! dispatches; the backend-independent work (binding parameters, decoding rows,
//! transactions, error mapping) lives in [`pool`], and each backend module
//! ([`sqlite`], [`postgres`], [`mysql`]) knows only its driver's options and types.

mod errors;
mod group_commit;
mod mysql;
pub(crate) mod pool;
mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;

use anyhow::Context as _;
use sqlx::{MySql, Postgres, Sqlite};
use wasmtime::component::{HasData, Linker};

use crate::settings::DatabaseSettings;
use pool::SqlPool;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        inline: "
            package portcullis:host;

            world store-host {
                import portcullis:auth/store@0.1.0;
            }
        ",
        imports: { default: async },
    });
}

use bindings::portcullis::auth::store as wit;
pub use wit::{Error, Rows, SqlDialect, Statement, Value};

/// A migration recorded in the database.
#[derive(Debug)]
pub struct Migration {
    /// Its number (the file name's prefix).
    pub version: i64,
    /// What it does (the rest of the file name).
    pub description: String,
}

impl std::fmt::Display for Migration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.version, self.description)
    }
}

/// The error of one direct connection to `url` (PostgreSQL or MySQL), bounded in time;
/// `None` when it connects, or when it cannot tell more within the bound.
async fn direct_connection_error(url: &str) -> Option<sqlx::Error> {
    use sqlx::ConnectOptions as _;
    use std::str::FromStr as _;
    const BOUND: std::time::Duration = std::time::Duration::from_secs(10);
    let attempt = async {
        match SqlDialect::of_url(url) {
            SqlDialect::Postgres => sqlx::postgres::PgConnectOptions::from_str(url)?
                .connect()
                .await
                .map(drop),
            SqlDialect::Mysql => {
                sqlx::mysql::MySqlConnectOptions::from_str(&url.replacen("mariadb", "mysql", 1))?
                    .connect()
                    .await
                    .map(drop)
            }
            SqlDialect::Sqlite => Ok(()),
        }
    };
    match tokio::time::timeout(BOUND, attempt).await {
        Ok(Err(error)) => Some(error),
        _ => None,
    }
}

/// Whether connecting failed because the database server could not be reached (refused,
/// unknown host, no answer in time), as opposed to a server that answered and said no
/// (wrong password, no such database) or a SQLite file that cannot be opened: only the
/// former may go away by waiting.
pub fn is_unreachable(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_))
        )
    }) && !error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::Database(_))
        )
    })
}

/// The database `url` names, for people and logs: the dialect, and for a server its
/// host, port and database (never the user name nor the password); for SQLite its file.
pub fn describe(url: &str) -> String {
    let dialect = SqlDialect::of_url(url);
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let without_query = rest.split_once('?').map_or(rest, |(before, _)| before);
    if matches!(dialect, SqlDialect::Sqlite) {
        return format!("{} {without_query}", dialect.name());
    }
    let authority_end = without_query.find('/').unwrap_or(without_query.len());
    let (authority, path) = without_query.split_at(authority_end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{} at {host}{path}", dialect.name())
}

/// A pool of connections to the service's database, cheap to clone.
#[derive(Clone)]
pub enum Database {
    /// SQLite (`sqlite://…`), the default.
    Sqlite(SqlPool<Sqlite>),
    /// PostgreSQL (`postgres://…`).
    Postgres(SqlPool<Postgres>),
    /// MySQL or MariaDB (`mysql://…`).
    MySql(SqlPool<MySql>),
}

impl Database {
    /// Connects to the database the settings name (creating a SQLite file and its
    /// folder when missing).
    /// A pool that gave up waiting for a connection says only "pool timed out": one
    /// direct connection then gives the driver's own reason (refused, unknown host, wrong
    /// password …).
    pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        let max_connections = settings.max_connections;
        let url = settings.url.as_str();
        let connected = match SqlDialect::of_url(url) {
            SqlDialect::Sqlite => sqlite::connect(url, max_connections)
                .await
                .map(Self::Sqlite),
            SqlDialect::Postgres => postgres::connect(url, max_connections)
                .await
                .map(Self::Postgres),
            SqlDialect::Mysql => mysql::connect(url, max_connections).await.map(Self::MySql),
        };
        match connected {
            Err(error) if matches!(error.downcast_ref(), Some(sqlx::Error::PoolTimedOut)) => {
                Err(match direct_connection_error(url).await {
                    Some(cause) => anyhow::Error::new(cause)
                        .context(format!("connecting to {}", SqlDialect::of_url(url).name())),
                    None => error,
                })
            }
            other => other,
        }
    }

    /// The pending migrations applied, then those recorded now that were not before
    /// (applied by this host, or by another one starting at the same moment).
    pub async fn migrate(&self) -> anyhow::Result<Vec<Migration>> {
        let before = self.recorded_migrations().await;
        self.apply_migrations().await?;
        let after = self.recorded_migrations().await;
        Ok(after
            .into_iter()
            .filter(|migration| !before.iter().any(|old| old.version == migration.version))
            .collect())
    }

    /// The migrations sqlx has recorded (none when its table does not exist yet).
    async fn recorded_migrations(&self) -> Vec<Migration> {
        let sql = "SELECT version, description FROM _sqlx_migrations ORDER BY version";
        let Ok(rows) = self.query(sql, Vec::new()).await else {
            return Vec::new();
        };
        rows.rows
            .into_iter()
            .filter_map(|row| match row.as_slice() {
                [Value::Integer(version), Value::Text(description)] => Some(Migration {
                    version: *version,
                    description: description.clone(),
                }),
                _ => None,
            })
            .collect()
    }

    /// Applies the pending migrations of this database's dialect.
    async fn apply_migrations(&self) -> anyhow::Result<()> {
        match self {
            Self::Sqlite(pool) => sqlite::migrate(pool).await,
            Self::Postgres(pool) => postgres::migrate(pool).await,
            Self::MySql(pool) => mysql::migrate(pool).await,
        }
        .with_context(|| format!("applying the {} migrations", self.dialect().name()))
    }

    /// Closes every connection, waiting for those in use to be returned.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
            Self::MySql(pool) => pool.close().await,
        }
    }

    /// The SQL dialect the component must write.
    pub fn dialect(&self) -> SqlDialect {
        match self {
            Self::Sqlite(_) => SqlDialect::Sqlite,
            Self::Postgres(_) => SqlDialect::Postgres,
            Self::MySql(_) => SqlDialect::Mysql,
        }
    }

    /// Runs one statement that returns rows (what `store.query` does).
    pub async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Rows, Error> {
        match self {
            Self::Sqlite(pool) => pool.query(sql, params).await,
            Self::Postgres(pool) => pool.query(sql, params).await,
            Self::MySql(pool) => pool.query(sql, params).await,
        }
    }

    /// Runs one statement; returns the rows it affected (what `store.execute` does).
    pub async fn execute(&self, sql: &str, params: Vec<Value>) -> Result<u64, Error> {
        match self {
            Self::Sqlite(pool) => pool.execute(sql, params).await,
            Self::Postgres(pool) => pool.execute(sql, params).await,
            Self::MySql(pool) => pool.execute(sql, params).await,
        }
    }

    /// Runs statements in one transaction (what `store.batch` does).
    pub async fn batch(&self, statements: Vec<Statement>) -> Result<Vec<u64>, Error> {
        match self {
            Self::Sqlite(pool) => pool.batch(statements).await,
            Self::Postgres(pool) => pool.batch(statements).await,
            Self::MySql(pool) => pool.batch(statements).await,
        }
    }
}

impl SqlDialect {
    /// The dialect a database URL names; the settings have checked the scheme already,
    /// so anything but PostgreSQL and MySQL is SQLite.
    pub fn of_url(url: &str) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::Postgres
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Self::Mysql
        } else {
            Self::Sqlite
        }
    }

    /// The dialect's name for people.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
            Self::Mysql => "MySQL",
        }
    }
}

/// The store as one request's component instance sees it.
pub struct StoreView<'a> {
    database: &'a Database,
}

impl<'a> StoreView<'a> {
    /// A view of `database` for the generated host functions.
    pub fn new(database: &'a Database) -> Self {
        Self { database }
    }
}

impl wit::Host for StoreView<'_> {
    async fn dialect(&mut self) -> SqlDialect {
        self.database.dialect()
    }

    async fn query(&mut self, sql: String, params: Vec<Value>) -> Result<Rows, Error> {
        self.database
            .query(&sql, params)
            .await
            .inspect_err(log_failure)
    }

    async fn execute(&mut self, sql: String, params: Vec<Value>) -> Result<u64, Error> {
        self.database
            .execute(&sql, params)
            .await
            .inspect_err(log_failure)
    }

    async fn batch(&mut self, statements: Vec<Statement>) -> Result<Vec<u64>, Error> {
        self.database
            .batch(statements)
            .await
            .inspect_err(log_failure)
    }
}

/// Logs the failures the component cannot act on (expected outcomes such as a taken
/// username stay at debug level). Messages name tables and constraints, never values.
fn log_failure(error: &Error) {
    match error {
        Error::Unavailable(message) => tracing::warn!(%message, "database unavailable"),
        Error::Other(message) => tracing::warn!(%message, "database statement failed"),
        Error::UniqueViolation(constraint) => tracing::debug!(%constraint, "unique violation"),
        Error::ConditionFailed(index) => tracing::debug!(index, "batch condition failed"),
    }
}

struct HasStore;

impl HasData for HasStore {
    type Data<'a> = StoreView<'a>;
}

/// Adds `portcullis:auth/store` to `linker`, served by the view `get_view` returns.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get_view: fn(&mut T) -> StoreView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasStore>(linker, get_view)
}
