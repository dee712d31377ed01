//! `spin:postgres/postgres@4.2.0` for the wasmtime test host, on a real PostgreSQL through
//! sqlx, answering as Spin 4 does (spinframework/spin, `crates/factor-outbound-pg`, which
//! uses tokio-postgres):
//!
//! - a statement is prepared first, so PostgreSQL infers its parameters' types, and each
//!   value must be of the one Rust type tokio-postgres accepts for that type (`int64`
//!   only for `bigint`, `str` for the text types, …); `db-null` fits any. A value that
//!   does not fit fails the statement before it runs, as `query-failed(text)`;
//! - `query` names the columns from the first row: an empty result has no columns;
//! - values are read by their column's type. Types the adapter never reads (dates,
//!   times, UUIDs, JSON, numerics, ranges, arrays, intervals), which Spin converts to
//!   their own `db-value` cases, come back as `unsupported` with their raw bytes; the
//!   adapter refuses both alike ("cast it in SQL");
//! - database errors are `query-failed(db-error)` with SQLSTATE, message, detail and the
//!   constraint, table, column … among the extras; a failed connection is
//!   `connection-failed`.
//!
//! Spin hands out pooled connections; here each `open` connects afresh (and `drop`
//! closes), as a pool does for a new instance. [`with_test_database`] gives one test run
//! a database of its own on the server `PORTCULLIS_TEST_POSTGRES_URL` names.

use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{
    PgArgumentBuffer, PgArguments, PgConnection, PgDatabaseError, PgRow, PgTypeInfo,
};
use sqlx::query::Query;
use sqlx::{
    Column as _, Connection as _, Either, Executor as _, Postgres, Row as _, TypeInfo as _,
    ValueRef as _,
};
use wasmtime::component::Resource;

use super::SpinState;
use super::bindings::spin::postgres::postgres as pg;

/// The variable naming the PostgreSQL server the test may use.
const SERVER_VARIABLE: &str = "PORTCULLIS_TEST_POSTGRES_URL";

/// An open `spin:postgres` connection.
pub struct SpinPostgres(PgConnection);

impl pg::Host for SpinState {}

impl pg::HostConnection for SpinState {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<SpinPostgres>, pg::Error>> {
        match PgConnection::connect(&address).await {
            Ok(connection) => Ok(Ok(self.table.push(SpinPostgres(connection))?)),
            Err(error) => Ok(Err(pg::Error::ConnectionFailed(format!("{error:?}")))),
        }
    }

    async fn query(
        &mut self,
        connection: Resource<SpinPostgres>,
        statement: String,
        params: Vec<pg::ParameterValue>,
    ) -> wasmtime::Result<Result<pg::RowSet, pg::Error>> {
        let connection = &mut self.table.get_mut(&connection)?.0;
        Ok(query(connection, &statement, params).await)
    }

    async fn execute(
        &mut self,
        connection: Resource<SpinPostgres>,
        statement: String,
        params: Vec<pg::ParameterValue>,
    ) -> wasmtime::Result<Result<u64, pg::Error>> {
        let connection = &mut self.table.get_mut(&connection)?.0;
        Ok(execute(connection, &statement, params).await)
    }

    async fn drop(&mut self, connection: Resource<SpinPostgres>) -> wasmtime::Result<()> {
        let SpinPostgres(connection) = self.table.delete(connection)?;
        // A connection the server already closed has nothing left to end.
        let _ = connection.close().await;
        Ok(())
    }
}

async fn query(
    connection: &mut PgConnection,
    statement: &str,
    params: Vec<pg::ParameterValue>,
) -> Result<pg::RowSet, pg::Error> {
    let rows = bind(connection, statement, params)
        .await?
        .fetch_all(&mut *connection)
        .await
        .map_err(query_failed)?;
    let Some(first) = rows.first() else {
        return Ok(pg::RowSet {
            columns: Vec::new(),
            rows: Vec::new(),
        });
    };
    let columns = first
        .columns()
        .iter()
        .map(|column| pg::Column {
            name: column.name().to_owned(),
            data_type: data_type(column.type_info()),
        })
        .collect();
    let rows = rows
        .iter()
        .map(|row| (0..row.len()).map(|index| value(row, index)).collect())
        .collect::<Result<_, _>>()
        .map_err(|error| pg::Error::QueryFailed(pg::QueryError::Text(format!("{error:?}"))))?;
    Ok(pg::RowSet { columns, rows })
}

async fn execute(
    connection: &mut PgConnection,
    statement: &str,
    params: Vec<pg::ParameterValue>,
) -> Result<u64, pg::Error> {
    bind(connection, statement, params)
        .await?
        .execute(&mut *connection)
        .await
        .map(|done| done.rows_affected())
        .map_err(query_failed)
}

/// Prepares `statement` (PostgreSQL infers the parameters' types) and binds `params`
/// to it, each checked as tokio-postgres checks it.
async fn bind<'q>(
    connection: &mut PgConnection,
    statement: &'q str,
    params: Vec<pg::ParameterValue>,
) -> Result<Query<'q, Postgres, PgArguments>, pg::Error> {
    let prepared = connection.prepare(statement).await.map_err(query_failed)?;
    let types = match sqlx::Statement::parameters(&prepared) {
        Some(Either::Left(types)) => types.to_vec(),
        _ => Vec::new(),
    };
    if types.len() != params.len() {
        return Err(text_error(format!(
            "expected {} parameters but got {}",
            types.len(),
            params.len()
        )));
    }
    let mut query = sqlx::query(statement);
    for (index, (param, ty)) in params.into_iter().zip(types).enumerate() {
        let fits = |accepted: &[&str], rust: &str| {
            if accepted.contains(&ty.name()) {
                Ok(())
            } else {
                Err(format!(
                    "error serializing parameter {index}: cannot convert between the Rust \
                     type `{rust}` and the Postgres type `{}`",
                    ty.name().to_ascii_lowercase()
                ))
            }
        };
        query = match param {
            pg::ParameterValue::DbNull => query.bind(TypedNull(ty.clone())),
            pg::ParameterValue::Boolean(value) => {
                fits(&["BOOL"], "bool").map_err(text_error)?;
                query.bind(value)
            }
            pg::ParameterValue::Int8(value) => {
                fits(&["\"CHAR\""], "i8").map_err(text_error)?;
                query.bind(value)
            }
            pg::ParameterValue::Int16(value) => {
                fits(&["INT2"], "i16").map_err(text_error)?;
                query.bind(value)
            }
            pg::ParameterValue::Int32(value) => {
                fits(&["INT4"], "i32").map_err(text_error)?;
                query.bind(value)
            }
            pg::ParameterValue::Int64(value) => {
                fits(&["INT8"], "i64").map_err(text_error)?;
                query.bind(value)
            }
            pg::ParameterValue::Floating32(value) => {
                fits(&["FLOAT4"], "f32").map_err(text_error)?;
                query.bind(value)
            }
            pg::ParameterValue::Floating64(value) => {
                fits(&["FLOAT8"], "f64").map_err(text_error)?;
                query.bind(value)
            }
            pg::ParameterValue::Str(value) => {
                fits(TEXT_TYPES, "alloc::string::String").map_err(text_error)?;
                query.bind(value)
            }
            pg::ParameterValue::Binary(value) => {
                fits(&["BYTEA"], "alloc::vec::Vec<u8>").map_err(text_error)?;
                query.bind(value)
            }
            _ => {
                return Err(pg::Error::BadParameter(format!(
                    "parameter {index}: this test host binds only null, booleans, integers, \
                     floats, text and bytes"
                )));
            }
        };
    }
    Ok(query)
}

/// The types a Rust string binds to (and is read from) in tokio-postgres.
const TEXT_TYPES: &[&str] = &["TEXT", "VARCHAR", "CHAR", "NAME", "UNKNOWN"];

/// A NULL in the type PostgreSQL inferred for its parameter.
struct TypedNull(PgTypeInfo);

impl sqlx::Type<Postgres> for TypedNull {
    /// Only a default: [`TypedNull::produces`] names the type of each value.
    fn type_info() -> PgTypeInfo {
        <String as sqlx::Type<Postgres>>::type_info()
    }
}

impl sqlx::Encode<'_, Postgres> for TypedNull {
    fn encode_by_ref(&self, _: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        Ok(IsNull::Yes)
    }

    fn produces(&self) -> Option<PgTypeInfo> {
        Some(self.0.clone())
    }
}

/// Spin's name for a column's type.
fn data_type(ty: &PgTypeInfo) -> pg::DbDataType {
    match ty.name() {
        "BOOL" => pg::DbDataType::Boolean,
        "BYTEA" => pg::DbDataType::Binary,
        "FLOAT4" => pg::DbDataType::Floating32,
        "FLOAT8" => pg::DbDataType::Floating64,
        "INT2" => pg::DbDataType::Int16,
        "INT4" => pg::DbDataType::Int32,
        "INT8" => pg::DbDataType::Int64,
        "TEXT" | "VARCHAR" | "CHAR" => pg::DbDataType::Str,
        "TIMESTAMP" | "TIMESTAMPTZ" => pg::DbDataType::Datetime,
        "DATE" => pg::DbDataType::Date,
        "TIME" => pg::DbDataType::Time,
        "UUID" => pg::DbDataType::Uuid,
        "JSONB" => pg::DbDataType::Jsonb,
        "NUMERIC" => pg::DbDataType::Decimal,
        "INT4RANGE" => pg::DbDataType::RangeInt32,
        "INT8RANGE" => pg::DbDataType::RangeInt64,
        "NUMRANGE" => pg::DbDataType::RangeDecimal,
        "INT4[]" => pg::DbDataType::ArrayInt32,
        "INT8[]" => pg::DbDataType::ArrayInt64,
        "NUMERIC[]" => pg::DbDataType::ArrayDecimal,
        "TEXT[]" | "VARCHAR[]" | "CHAR[]" => pg::DbDataType::ArrayStr,
        "INTERVAL" => pg::DbDataType::Interval,
        other => pg::DbDataType::Other(other.to_ascii_lowercase()),
    }
}

/// The value of one column, read by the column's type.
fn value(row: &PgRow, index: usize) -> Result<pg::DbValue, sqlx::Error> {
    fn read<'r, T>(
        row: &'r PgRow,
        index: usize,
        wrap: impl FnOnce(T) -> pg::DbValue,
    ) -> Result<pg::DbValue, sqlx::Error>
    where
        T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
    {
        Ok(row
            .try_get::<Option<T>, _>(index)?
            .map_or(pg::DbValue::DbNull, wrap))
    }
    match row.column(index).type_info().name() {
        "BOOL" => read(row, index, pg::DbValue::Boolean),
        "BYTEA" => read(row, index, pg::DbValue::Binary),
        "FLOAT4" => read(row, index, pg::DbValue::Floating32),
        "FLOAT8" => read(row, index, pg::DbValue::Floating64),
        "INT2" => read(row, index, pg::DbValue::Int16),
        "INT4" => read(row, index, pg::DbValue::Int32),
        "INT8" => read(row, index, pg::DbValue::Int64),
        "TEXT" | "VARCHAR" | "CHAR" => read(row, index, pg::DbValue::Str),
        _ => {
            let raw = row.try_get_raw(index)?;
            if raw.is_null() {
                Ok(pg::DbValue::DbNull)
            } else {
                let bytes = raw.as_bytes().map_err(sqlx::Error::Decode)?;
                Ok(pg::DbValue::Unsupported(bytes.to_vec()))
            }
        }
    }
}

fn text_error(message: String) -> pg::Error {
    pg::Error::QueryFailed(pg::QueryError::Text(message))
}

/// Spin's `query-failed`: the database's own error with its fields, or the text of any
/// other failure.
fn query_failed(error: sqlx::Error) -> pg::Error {
    let as_text = format!("{error:?}");
    let database_error = error
        .as_database_error()
        .and_then(|error| error.try_downcast_ref::<PgDatabaseError>());
    let Some(error) = database_error else {
        return text_error(as_text);
    };
    let line = error.line().map(|line| line.to_string());
    let extras = [
        ("column", error.column()),
        ("constraint", error.constraint()),
        ("routine", error.routine()),
        ("hint", error.hint()),
        ("table", error.table()),
        ("datatype", error.data_type()),
        ("schema", error.schema()),
        ("file", error.file()),
        ("line", line.as_deref()),
        ("where_", error.r#where()),
    ]
    .into_iter()
    .filter_map(|(key, value)| Some((key.to_owned(), value?.to_owned())))
    .collect();
    pg::Error::QueryFailed(pg::QueryError::DbError(pg::DbError {
        as_text,
        severity: format!("{:?}", error.severity()).to_ascii_uppercase(),
        code: error.code().to_owned(),
        message: error.message().to_owned(),
        detail: error.detail().map(str::to_owned),
        extras,
    }))
}

/// Runs `test` with the URL of a database made for it on the server
/// `PORTCULLIS_TEST_POSTGRES_URL` names, and drops that database afterwards, also when
/// `test` fails. With the variable unset (or blank) it says PostgreSQL was skipped and
/// passes; a set URL that cannot be used fails.
pub async fn with_test_database<T>(test: impl FnOnce(String) -> T)
where
    T: Future<Output = ()> + Send + 'static,
{
    let Some(server) = std::env::var(SERVER_VARIABLE)
        .ok()
        .filter(|url| !url.trim().is_empty())
    else {
        println!("skipped PostgreSQL: {SERVER_VARIABLE} is not set");
        return;
    };
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let name = format!("portcullis_spin_test_{since_epoch}_{}", std::process::id());
    administer(&server, &format!("CREATE DATABASE {name}")).await;
    let mut url = url::Url::parse(&server).unwrap();
    url.set_path(&name);
    let outcome = tokio::spawn(test(url.into())).await;
    administer(
        &server,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await;
    if let Err(error) = outcome {
        match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(error) => panic!("the PostgreSQL test did not finish: {error}"),
        }
    }
}

/// Runs one statement on the server's own database.
async fn administer(server: &str, statement: &str) {
    let mut connection = PgConnection::connect(server)
        .await
        .unwrap_or_else(|error| panic!("{SERVER_VARIABLE} is set but cannot be used: {error}"));
    connection
        .execute(statement)
        .await
        .unwrap_or_else(|error| panic!("{statement}: {error}"));
    connection.close().await.unwrap();
}
