//! The `portcullis:auth/store` import: the component's SQL, run by sqlx on the configured
//! database.
//!
//! [`Database`] is the one type the rest of the host sees: it connects, migrates and
//! runs statements on whichever backend the URL names. The WIT glue here only
//! dispatches; the backend-independent work (binding parameters, decoding rows,
//! transactions, error mapping) lives in [`pool`], and each backend module
//! ([`sqlite`], [`postgres`], [`mysql`]) knows only its driver's options and types.

mod errors;
mod mysql;
mod pool;
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
    pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        let max_connections = settings.max_connections;
        let database = match SqlDialect::of_url(&settings.url) {
            SqlDialect::Sqlite => {
                Self::Sqlite(sqlite::connect(&settings.url, max_connections).await?)
            }
            SqlDialect::Postgres => {
                Self::Postgres(postgres::connect(&settings.url, max_connections).await?)
            }
            SqlDialect::Mysql => Self::MySql(mysql::connect(&settings.url, max_connections).await?),
        };
        Ok(database)
    }

    /// Applies the pending migrations of this database's dialect.
    pub async fn migrate(&self) -> anyhow::Result<()> {
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

    async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Rows, Error> {
        match self {
            Self::Sqlite(pool) => pool.query(sql, params).await,
            Self::Postgres(pool) => pool.query(sql, params).await,
            Self::MySql(pool) => pool.query(sql, params).await,
        }
    }

    async fn execute(&self, sql: &str, params: Vec<Value>) -> Result<u64, Error> {
        match self {
            Self::Sqlite(pool) => pool.execute(sql, params).await,
            Self::Postgres(pool) => pool.execute(sql, params).await,
            Self::MySql(pool) => pool.execute(sql, params).await,
        }
    }

    async fn batch(&self, statements: Vec<Statement>) -> Result<Vec<u64>, Error> {
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
