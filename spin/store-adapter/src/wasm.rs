//! The WIT side (wasm32 only): exports `portcullis:auth/store` and runs it on Spin's
//! SQLite or PostgreSQL, chosen by the `database_url` setting (`wasi:config`, filled
//! from Spin variables). Conversions only; the work is in [`crate::store`].
//!
//! Connections follow what Spin gives. Spin's SQLite connection is opened once per
//! instance (Spin makes an instance per request), on the first call. Spin's PostgreSQL
//! connection is a client of a pool Spin keeps for the component (up to 64 clients an
//! address), held in the instance's resource table until it is dropped or the instance
//! ends, and returned as it is: so the adapter takes one for each call it serves and
//! drops it at the call's end, between calls holding none (not while the auth component
//! hashes a password, nor while the mail relay waits on its webhook). Each client taken
//! is first made ours ([`store::take_over`]); its session carries the bounds of
//! [`crate::session`]. The migrations are checked on an instance's first call.

use std::cell::{Cell, RefCell};

use crate::store::{self, Connection, Dialect, Error, Rows, Statement, Value};

wit_bindgen::generate!({
    path: ["../../wit", "../wit"],
    world: "portcullis:spin/store-adapter",
    // wasi:cli 0.2.12 (a dependency of the `platform` world) names an interface behind
    // this gate; the adapter never imports it.
    features: ["clocks-timezone"],
    generate_all,
});

use exports::portcullis::auth::store as wit;
use spin::postgres::postgres as pg;
use spin::sqlite::sqlite;

/// The setting that names the database; unset or empty: Spin's `default` SQLite.
const DATABASE_SETTING: &str = "database_url";
/// The SQLite database the component opens (it must be listed in spin.toml).
const SQLITE_DATABASE: &str = "default";

thread_local! {
    /// This instance's SQLite connection, once opened.
    static SQLITE_CONNECTION: RefCell<Option<SpinConnection>> = const { RefCell::new(None) };
    /// Whether this instance found the PostgreSQL database migrated.
    static POSTGRES_MIGRATED: Cell<bool> = const { Cell::new(false) };
}

/// Where the settings point.
enum Target {
    Sqlite,
    Postgres(String),
}

fn target() -> Result<Target, Error> {
    let url = wasi::config::store::get(DATABASE_SETTING)
        .map_err(|_| Error::Unavailable("cannot read the settings".into()))?
        .unwrap_or_default();
    let url = url.trim();
    if url.is_empty() {
        Ok(Target::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Target::Postgres(url.to_owned()))
    } else {
        Err(Error::Other(
            "PORTCULLIS_DATABASE_URL: on Spin, leave it empty (SQLite `default`) or name a \
             PostgreSQL database (postgres://…)"
                .into(),
        ))
    }
}

/// Runs `work` on a connection: this instance's SQLite connection, opened and migrated
/// on first use (and dropped, to be opened afresh, after it reported `unavailable`); or
/// a PostgreSQL client taken from Spin's pool for this call alone.
fn with_connection<T>(
    work: impl FnOnce(&mut SpinConnection) -> Result<T, Error>,
) -> Result<T, Error> {
    match target()? {
        Target::Sqlite => SQLITE_CONNECTION.with(|cell| {
            let mut slot = cell.borrow_mut();
            let connection = match slot.as_mut() {
                Some(connection) => connection,
                None => slot.insert(SpinConnection::open_sqlite()?),
            };
            let outcome = work(connection);
            if matches!(outcome, Err(Error::Unavailable(_))) {
                *slot = None;
            }
            outcome
        }),
        Target::Postgres(url) => {
            // Dropped at the end of this call: the client goes back to Spin's pool.
            let mut connection = SpinConnection::open_postgres(&url)?;
            work(&mut connection)
        }
    }
}

/// A connection to the database Spin gives.
enum SpinConnection {
    Sqlite(sqlite::Connection),
    Postgres(pg::Connection),
}

impl SpinConnection {
    fn open_sqlite() -> Result<Self, Error> {
        let mut connection =
            Self::Sqlite(sqlite::Connection::open(SQLITE_DATABASE).map_err(sqlite_error)?);
        store::migrate(&mut connection)?;
        Ok(connection)
    }

    /// A pooled client, made ours, with the database migrated (checked once an instance).
    fn open_postgres(url: &str) -> Result<Self, Error> {
        let address = crate::session::postgres_address(url);
        let mut connection =
            Self::Postgres(pg::Connection::open(&address).map_err(postgres_error)?);
        store::take_over(&mut connection)?;
        if !POSTGRES_MIGRATED.get() {
            store::migrate(&mut connection)?;
            POSTGRES_MIGRATED.set(true);
        }
        Ok(connection)
    }
}

impl Connection for SpinConnection {
    fn dialect(&self) -> Dialect {
        match self {
            Self::Sqlite(_) => Dialect::Sqlite,
            Self::Postgres(_) => Dialect::Postgres,
        }
    }

    fn query(&mut self, sql: &str, params: Vec<Value>) -> Result<Rows, Error> {
        match self {
            Self::Sqlite(connection) => {
                let result = connection
                    .execute(sql, &sqlite_params(params))
                    .map_err(sqlite_error)?;
                Ok(Rows {
                    columns: result.columns,
                    rows: result
                        .rows
                        .into_iter()
                        .map(|row| row.values.into_iter().map(from_sqlite).collect())
                        .collect(),
                })
            }
            Self::Postgres(connection) => {
                let params = postgres_params(params);
                let result = connection.query(sql, &params).map_err(postgres_error)?;
                let mut columns: Vec<String> = result.columns.into_iter().map(|c| c.name).collect();
                // Spin names the columns from the first row: an empty result has none.
                if columns.is_empty()
                    && result.rows.is_empty()
                    && let Some(probe) = crate::sql::columns_probe(sql)
                {
                    let probed = connection.query(&probe, &params).map_err(postgres_error)?;
                    columns = probed.columns.into_iter().map(|c| c.name).collect();
                }
                let rows = result
                    .rows
                    .into_iter()
                    .map(|row| {
                        row.into_iter()
                            .zip(&columns)
                            .map(|(value, column)| from_postgres(value, column))
                            .collect()
                    })
                    .collect::<Result<_, _>>()?;
                Ok(Rows { columns, rows })
            }
        }
    }

    fn execute(&mut self, sql: &str, params: Vec<Value>) -> Result<u64, Error> {
        match self {
            Self::Sqlite(connection) => {
                connection
                    .execute(sql, &sqlite_params(params))
                    .map_err(sqlite_error)?;
                Ok(connection.changes())
            }
            Self::Postgres(connection) => connection
                .execute(sql, &postgres_params(params))
                .map_err(postgres_error),
        }
    }
}

fn sqlite_params(params: Vec<Value>) -> Vec<sqlite::Value> {
    params
        .into_iter()
        .map(|value| match value {
            Value::Null => sqlite::Value::Null,
            Value::Integer(integer) => sqlite::Value::Integer(integer),
            Value::Real(real) => sqlite::Value::Real(real),
            Value::Text(text) => sqlite::Value::Text(text),
            Value::Blob(blob) => sqlite::Value::Blob(blob),
        })
        .collect()
}

fn from_sqlite(value: sqlite::Value) -> Value {
    match value {
        sqlite::Value::Null => Value::Null,
        sqlite::Value::Integer(integer) => Value::Integer(integer),
        sqlite::Value::Real(real) => Value::Real(real),
        sqlite::Value::Text(text) => Value::Text(text),
        sqlite::Value::Blob(blob) => Value::Blob(blob),
    }
}

/// Spin reports SQLite's own errors as `io` with SQLite's message.
fn sqlite_error(error: sqlite::Error) -> Error {
    match error {
        sqlite::Error::Io(message) if message.starts_with("UNIQUE constraint failed") => {
            Error::UniqueViolation(message)
        }
        sqlite::Error::Io(message) if message.contains("locked") || message.contains("busy") => {
            Error::Unavailable(message)
        }
        sqlite::Error::Io(message) => Error::Other(message),
        sqlite::Error::InvalidConnection => Error::Unavailable("invalid SQLite connection".into()),
        sqlite::Error::NoSuchDatabase | sqlite::Error::AccessDenied => Error::Other(format!(
            "Spin gives no SQLite database {SQLITE_DATABASE:?}: list it in the component's \
             sqlite_databases"
        )),
        sqlite::Error::DatabaseFull => Error::Other("the SQLite database is full".into()),
    }
}

fn postgres_params(params: Vec<Value>) -> Vec<pg::ParameterValue> {
    params
        .into_iter()
        .map(|value| match value {
            Value::Null => pg::ParameterValue::DbNull,
            Value::Integer(integer) => pg::ParameterValue::Int64(integer),
            Value::Real(real) => pg::ParameterValue::Floating64(real),
            Value::Text(text) => pg::ParameterValue::Str(text),
            Value::Blob(blob) => pg::ParameterValue::Binary(blob),
        })
        .collect()
}

fn from_postgres(value: pg::DbValue, column: &str) -> Result<Value, Error> {
    Ok(match value {
        pg::DbValue::DbNull => Value::Null,
        pg::DbValue::Boolean(boolean) => Value::Integer(boolean.into()),
        pg::DbValue::Int8(integer) => Value::Integer(integer.into()),
        pg::DbValue::Int16(integer) => Value::Integer(integer.into()),
        pg::DbValue::Int32(integer) => Value::Integer(integer.into()),
        pg::DbValue::Int64(integer) => Value::Integer(integer),
        pg::DbValue::Floating32(real) => Value::Real(real.into()),
        pg::DbValue::Floating64(real) => Value::Real(real),
        pg::DbValue::Str(text) => Value::Text(text),
        pg::DbValue::Binary(blob) => Value::Blob(blob),
        _ => {
            return Err(Error::Other(format!(
                "cannot read column {column}: unsupported PostgreSQL type (cast it in SQL)"
            )));
        }
    })
}

/// PostgreSQL's SQLSTATE for a unique violation.
const UNIQUE_VIOLATION: &str = "23505";

/// Maps Spin's PostgreSQL error. A unique violation is named by its constraint (or the
/// message, which names it too), never by the detail, which holds the value.
fn postgres_error(error: pg::Error) -> Error {
    match error {
        pg::Error::ConnectionFailed(message) => Error::Unavailable(message),
        pg::Error::QueryFailed(pg::QueryError::DbError(db_error)) => {
            if db_error.code == UNIQUE_VIOLATION {
                let constraint = db_error
                    .extras
                    .into_iter()
                    .find(|(key, _)| key == "constraint")
                    .map_or(db_error.message, |(_, name)| name);
                Error::UniqueViolation(constraint)
            } else if is_transient(&db_error.code) {
                Error::Unavailable(db_error.message)
            } else {
                Error::Other(db_error.message)
            }
        }
        pg::Error::QueryFailed(pg::QueryError::Text(message)) if is_lost_connection(&message) => {
            Error::Unavailable(message)
        }
        pg::Error::QueryFailed(pg::QueryError::Text(message))
        | pg::Error::BadParameter(message)
        | pg::Error::ValueConversionFailed(message)
        | pg::Error::Other(message) => Error::Other(message),
    }
}

/// Connection exceptions (08), insufficient resources (53), operator intervention (57P),
/// serialization failures and deadlocks, as the native host classes them; and the
/// bounds of [`crate::session`]: a lock not granted in time (55P03), a statement
/// cancelled by its timeout (57014), a session ended idle in a transaction (25P03).
fn is_transient(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || matches!(code, "40001" | "40P01" | "55P03" | "57014" | "25P03")
}

/// Spin reports a client whose connection closed or broke as tokio-postgres' error
/// written with `Debug`: `Error { kind: Closed, … }`, `Error { kind: Io, … }`.
fn is_lost_connection(message: &str) -> bool {
    message.contains("kind: Closed") || message.contains("kind: Io")
}

struct Adapter;

impl wit::Guest for Adapter {
    fn dialect() -> wit::SqlDialect {
        match target() {
            Ok(Target::Postgres(_)) => wit::SqlDialect::Postgres,
            _ => wit::SqlDialect::Sqlite,
        }
    }

    fn query(sql: String, params: Vec<wit::Value>) -> Result<wit::Rows, wit::Error> {
        let params = params.into_iter().map(from_wit).collect();
        let rows =
            with_connection(|connection| connection.query(&sql, params)).map_err(to_wit_error)?;
        Ok(wit::Rows {
            columns: rows.columns,
            rows: rows
                .rows
                .into_iter()
                .map(|row| row.into_iter().map(to_wit).collect())
                .collect(),
        })
    }

    fn execute(sql: String, params: Vec<wit::Value>) -> Result<u64, wit::Error> {
        let params = params.into_iter().map(from_wit).collect();
        with_connection(|connection| connection.execute(&sql, params)).map_err(to_wit_error)
    }

    fn batch(statements: Vec<wit::Statement>) -> Result<Vec<u64>, wit::Error> {
        let statements = statements
            .into_iter()
            .map(|statement| Statement {
                sql: statement.sql,
                params: statement.params.into_iter().map(from_wit).collect(),
                expect_rows: statement.expect_rows,
            })
            .collect();
        with_connection(|connection| store::batch(connection, statements)).map_err(to_wit_error)
    }
}

fn from_wit(value: wit::Value) -> Value {
    match value {
        wit::Value::Null => Value::Null,
        wit::Value::Integer(integer) => Value::Integer(integer),
        wit::Value::Real(real) => Value::Real(real),
        wit::Value::Text(text) => Value::Text(text),
        wit::Value::Blob(blob) => Value::Blob(blob),
    }
}

fn to_wit(value: Value) -> wit::Value {
    match value {
        Value::Null => wit::Value::Null,
        Value::Integer(integer) => wit::Value::Integer(integer),
        Value::Real(real) => wit::Value::Real(real),
        Value::Text(text) => wit::Value::Text(text),
        Value::Blob(blob) => wit::Value::Blob(blob),
    }
}

fn to_wit_error(error: Error) -> wit::Error {
    match error {
        Error::UniqueViolation(name) => wit::Error::UniqueViolation(name),
        Error::ConditionFailed(index) => wit::Error::ConditionFailed(index),
        Error::Unavailable(message) => wit::Error::Unavailable(message),
        Error::Other(message) => wit::Error::Other(message),
    }
}

export!(Adapter);
