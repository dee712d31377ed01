//! The store's work over one database connection: statements, atomic batches with their
//! row-count guards, and the migrations on first use. Spin's SQLite and PostgreSQL
//! connections (`wasm.rs`), and test doubles, plug in as a [`Connection`].

use crate::migrations::{self, Migration};
use crate::sql;

/// The SQL dialect behind a connection (the WIT `sql-dialect` Spin can serve).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Spin's SQLite database.
    Sqlite,
    /// PostgreSQL through Spin's outbound PostgreSQL.
    Postgres,
}

/// A value bound to a placeholder or read from a column (the WIT `value`).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// A double-precision float.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Raw bytes.
    Blob(Vec<u8>),
}

/// The rows of a query (the WIT `rows`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rows {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, each as long as `columns`.
    pub rows: Vec<Vec<Value>>,
}

/// One statement of a batch (the WIT `statement`).
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    /// SQL with placeholders.
    pub sql: String,
    /// One value per placeholder.
    pub params: Vec<Value>,
    /// The number of rows the statement must affect, if any.
    pub expect_rows: Option<u64>,
}

/// Why a statement failed (the WIT `error`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// A unique constraint was violated: its name, or the database's message.
    UniqueViolation(String),
    /// The batch statement at this index missed its `expect_rows`; nothing was applied.
    ConditionFailed(u32),
    /// The database cannot be reached now.
    Unavailable(String),
    /// Anything else.
    Other(String),
}

/// One open database connection; statements on it run in order.
pub trait Connection {
    /// The connection's dialect.
    fn dialect(&self) -> Dialect;
    /// Runs a statement that returns rows.
    fn query(&mut self, sql: &str, params: Vec<Value>) -> Result<Rows, Error>;
    /// Runs a statement and returns the rows it matched.
    fn execute(&mut self, sql: &str, params: Vec<Value>) -> Result<u64, Error>;
}

impl Dialect {
    /// The statement that begins a write transaction. SQLite takes the write lock at
    /// once, so that two first requests migrating at the same time take turns.
    fn begin(self) -> &'static str {
        match self {
            Self::Sqlite => "BEGIN IMMEDIATE",
            Self::Postgres => "BEGIN",
        }
    }

    fn migrations(self) -> &'static [Migration] {
        match self {
            Self::Sqlite => migrations::SQLITE,
            Self::Postgres => migrations::POSTGRES,
        }
    }

    /// sqlx's migrations table, as sqlx creates it.
    fn create_migrations_table(self) -> &'static str {
        match self {
            Self::Sqlite => {
                "CREATE TABLE IF NOT EXISTS _sqlx_migrations (version BIGINT PRIMARY KEY, \
                 description TEXT NOT NULL, installed_on TIMESTAMP NOT NULL DEFAULT \
                 CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, checksum BLOB NOT NULL, \
                 execution_time BIGINT NOT NULL)"
            }
            Self::Postgres => {
                "CREATE TABLE IF NOT EXISTS _sqlx_migrations (version BIGINT PRIMARY KEY, \
                 description TEXT NOT NULL, installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), \
                 success BOOLEAN NOT NULL, checksum BYTEA NOT NULL, \
                 execution_time BIGINT NOT NULL)"
            }
        }
    }

    fn record_migration(self) -> &'static str {
        match self {
            Self::Sqlite => {
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
                 execution_time) VALUES (?, ?, TRUE, ?, 0)"
            }
            Self::Postgres => {
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
                 execution_time) VALUES ($1, $2, TRUE, $3, 0)"
            }
        }
    }
}

/// An arbitrary key for PostgreSQL's transaction-level advisory lock, taken while
/// migrating so that concurrent first requests take turns.
const MIGRATION_LOCK_KEY: i64 = 0x706f_7274_6375_6c6c;

/// Runs the statements in one transaction; a statement whose `expect_rows` is not met,
/// or that fails, rolls everything back.
pub fn batch(
    connection: &mut impl Connection,
    statements: Vec<Statement>,
) -> Result<Vec<u64>, Error> {
    in_transaction(connection, |connection| {
        let mut affected = Vec::with_capacity(statements.len());
        for (index, statement) in statements.into_iter().enumerate() {
            let rows = connection.execute(&statement.sql, statement.params)?;
            if statement
                .expect_rows
                .is_some_and(|expected| expected != rows)
            {
                return Err(Error::ConditionFailed(
                    u32::try_from(index).unwrap_or(u32::MAX),
                ));
            }
            affected.push(rows);
        }
        Ok(affected)
    })
}

/// Applies the migrations the database lacks. A database that has them all costs one
/// query; otherwise they are applied in one transaction, under a lock, and recorded.
pub fn migrate(connection: &mut impl Connection) -> Result<(), Error> {
    let dialect = connection.dialect();
    let all = dialect.migrations();
    if applied_versions(connection).is_ok_and(|applied| all_applied(all, &applied)) {
        return Ok(());
    }
    in_transaction(connection, |connection| {
        if dialect == Dialect::Postgres {
            connection.execute(
                "SELECT pg_advisory_xact_lock($1)",
                vec![Value::Integer(MIGRATION_LOCK_KEY)],
            )?;
        }
        connection.execute(dialect.create_migrations_table(), Vec::new())?;
        let applied = applied_versions(connection)?;
        for migration in all.iter().filter(|m| !applied.contains(&m.version)) {
            apply(connection, migration).map_err(|error| in_migration(migration, error))?;
        }
        Ok(())
    })
}

fn all_applied(all: &[Migration], applied: &[i64]) -> bool {
    all.iter()
        .all(|migration| applied.contains(&migration.version))
}

/// The versions recorded in sqlx's table (an error when it does not exist yet).
fn applied_versions(connection: &mut impl Connection) -> Result<Vec<i64>, Error> {
    let rows = connection.query(
        "SELECT version FROM _sqlx_migrations WHERE success = TRUE",
        Vec::new(),
    )?;
    Ok(rows
        .rows
        .iter()
        .filter_map(|row| match row.first() {
            Some(Value::Integer(version)) => Some(*version),
            _ => None,
        })
        .collect())
}

fn apply(connection: &mut impl Connection, migration: &Migration) -> Result<(), Error> {
    for statement in sql::statements(migration.sql) {
        connection.execute(statement, Vec::new())?;
    }
    let record = vec![
        Value::Integer(migration.version),
        Value::Text(migration.description.to_owned()),
        Value::Blob(migration.checksum()),
    ];
    connection.execute(connection.dialect().record_migration(), record)?;
    Ok(())
}

fn in_migration(migration: &Migration, error: Error) -> Error {
    let describe = |message: String| {
        format!(
            "migration {} ({}): {message}",
            migration.version, migration.description
        )
    };
    match error {
        Error::Unavailable(message) => Error::Unavailable(describe(message)),
        Error::UniqueViolation(message) | Error::Other(message) => Error::Other(describe(message)),
        Error::ConditionFailed(index) => Error::Other(describe(format!("condition {index}"))),
    }
}

/// Makes a connection just taken from Spin's PostgreSQL pool ours: ends any transaction
/// it is still inside. Spin returns a client to its pool as it is when an instance ends,
/// and an instance that trapped or was aborted in the middle of a batch leaves that
/// batch's transaction open on it; the recycling Spin's pool does (deadpool's `Clean`)
/// ends no transaction. Rolling it back keeps that batch unapplied (its COMMIT never
/// came) and frees its locks. Outside a transaction, PostgreSQL only warns.
pub fn take_over(connection: &mut impl Connection) -> Result<(), Error> {
    connection.execute("ROLLBACK", Vec::new())?;
    Ok(())
}

/// Runs `work` between BEGIN and COMMIT; on its error (or COMMIT's), rolls back and
/// returns that error. When the rollback fails too, the connection may still be inside
/// the transaction: the error is then `unavailable`, which makes the caller drop the
/// connection (its session ends, and the transaction with it).
fn in_transaction<C: Connection, T>(
    connection: &mut C,
    work: impl FnOnce(&mut C) -> Result<T, Error>,
) -> Result<T, Error> {
    connection.execute(connection.dialect().begin(), Vec::new())?;
    let outcome = work(connection).and_then(|value| {
        connection.execute("COMMIT", Vec::new())?;
        Ok(value)
    });
    match outcome {
        Ok(value) => Ok(value),
        Err(error) => match connection.execute("ROLLBACK", Vec::new()) {
            Ok(_) => Err(error),
            Err(rollback) => Err(Error::Unavailable(format!(
                "{}; the rollback failed too: {}",
                describe(&error),
                describe(&rollback)
            ))),
        },
    }
}

/// An error's text, for a combined message.
fn describe(error: &Error) -> String {
    match error {
        Error::UniqueViolation(name) => format!("unique violation ({name})"),
        Error::ConditionFailed(index) => format!("condition {index} failed"),
        Error::Unavailable(message) | Error::Other(message) => message.clone(),
    }
}
