//! `spin:postgres/postgres@4.2.0` for the Spin test host, on a real PostgreSQL through
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
//! Connections are pooled as Spin 4 pools them (`client.rs`: a deadpool-postgres pool
//! per component and address, `RecyclingMethod::Clean`; `host.rs`: `open` takes a client
//! from it, the resource table holds it until `drop` or the end of the instance):
//!
//! - a pool has a small limit here ([`SpinPgPools::new`]); an `open` beyond it waits for
//!   a client to come back. Spin waits without end; this host gives up after
//!   [`POOL_PATIENCE`] with `connection-failed`, so that a test fails instead of hanging;
//! - a client goes back to the pool as it is when its resource is dropped or its
//!   instance ends (a trap, an aborted call): nothing rolls back. The next `open` runs
//!   deadpool's `Clean` statements on it ([`RECYCLE`]), which end no transaction and
//!   release no transaction-level lock, and hands it out, still inside whatever
//!   transaction it was in; a client they fail on (an aborted transaction, a closed
//!   connection) is dropped for a new one;
//! - a new client tries TLS first unless the address says `sslmode=disable`, as
//!   tokio-postgres does with Spin's native-tls connector: when the server offers TLS,
//!   its certificate must verify against the system's roots for the host name or IP
//!   address of the URL. The handshake is made by `openssl s_client` (the library Spin's
//!   native-tls uses on Linux); this host has no TLS client of its own, so a session
//!   that verified then runs unencrypted. A server without TLS is used in clear under
//!   `prefer` (the default) and refused under `require`.
//!

use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::str::FromStr as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{
    PgArgumentBuffer, PgArguments, PgConnectOptions, PgConnection, PgDatabaseError, PgRow,
    PgSslMode, PgTypeInfo,
};
use sqlx::query::Query;
use sqlx::{
    Column as _, ConnectOptions as _, Either, Executor as _, Postgres, Row as _, TypeInfo as _,
    ValueRef as _,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::Resource;

use super::SpinState;
use super::bindings::spin::postgres::postgres as pg;

/// The pool limit of the Spin test host: small, so that a client held too long shows.
pub const POOL_SIZE: usize = 4;

/// How long an `open` waits for a pooled client before this host gives up (Spin waits
/// without end).
pub const POOL_PATIENCE: Duration = Duration::from_secs(60);

/// deadpool-postgres' `RecyclingMethod::Clean`, run on an idle client before it is
/// handed out again.
const RECYCLE: &str = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; \
                       UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD TEMP; \
                       DISCARD SEQUENCES;";

/// The pooled clients of one Spin application, one pool per address, shared by all
/// its instances.
pub struct SpinPgPools {
    size: usize,
    pools: Mutex<HashMap<String, Arc<Pool>>>,
}

impl SpinPgPools {
    /// Pools of at most `size` clients each.
    pub fn new(size: usize) -> Arc<Self> {
        Arc::new(Self {
            size,
            pools: Mutex::new(HashMap::new()),
        })
    }

    fn pool(&self, address: &str) -> Arc<Pool> {
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        let pool = pools.entry(address.to_owned()).or_insert_with(|| {
            Arc::new(Pool {
                address: address.to_owned(),
                size: self.size,
                permits: Arc::new(Semaphore::new(self.size)),
                idle: Mutex::new(VecDeque::new()),
            })
        });
        Arc::clone(pool)
    }
}

/// One address' pool: a permit per client in use, the idle clients in order of return.
struct Pool {
    address: String,
    size: usize,
    permits: Arc<Semaphore>,
    idle: Mutex<VecDeque<PgConnection>>,
}

impl Pool {
    /// A client: an idle one that recycles cleanly, or a new one.
    async fn get(self: &Arc<Self>) -> Result<SpinPostgres, String> {
        let permit = tokio::time::timeout(POOL_PATIENCE, Arc::clone(&self.permits).acquire_owned())
            .await
            .map_err(|_| {
                format!(
                    "all {} pooled connections stayed in use for {POOL_PATIENCE:?} (Spin \
                     would wait without end)",
                    self.size
                )
            })?
            .map_err(|_| "the pool is closed".to_owned())?;
        loop {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front();
            let Some(mut connection) = idle else {
                break;
            };
            if recycle(&mut connection).await {
                return Ok(self.hand_out(connection, permit));
            }
        }
        let connection = connect(&self.address).await?;
        Ok(self.hand_out(connection, permit))
    }

    fn hand_out(
        self: &Arc<Self>,
        connection: PgConnection,
        permit: OwnedSemaphorePermit,
    ) -> SpinPostgres {
        SpinPostgres {
            connection: Some(connection),
            pool: Arc::clone(self),
            _permit: permit,
        }
    }
}

/// Runs deadpool's `Clean` statements; `false` if they fail (the client is dropped).
async fn recycle(connection: &mut PgConnection) -> bool {
    connection.execute(RECYCLE).await.is_ok()
}

/// A new client for `address`, TLS tried first as Spin's tokio-postgres tries it.
async fn connect(address: &str) -> Result<PgConnection, String> {
    let url = url::Url::parse(address)
        .map_err(|error| format!("parsing Postgres connection string: {error}"))?;
    let ssl_mode = url
        .query_pairs()
        .find(|(key, _)| key == "sslmode")
        .map_or_else(|| "prefer".to_owned(), |(_, value)| value.into_owned());
    match ssl_mode.as_str() {
        "disable" => {}
        "prefer" | "require" => tls_first(&url, ssl_mode == "require").await?,
        _ => {
            return Err(
                "parsing Postgres connection string: invalid value for option \
                        `sslmode`"
                    .to_owned(),
            );
        }
    }
    let options = PgConnectOptions::from_str(address)
        .map_err(|error| format!("parsing Postgres connection string: {error}"))?
        .ssl_mode(PgSslMode::Disable);
    options
        .connect()
        .await
        .map_err(|error| format!("{error:?}"))
}

/// PostgreSQL's `SSLRequest` code.
pub const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Asks the server for TLS; if it offers it, its certificate must verify (OpenSSL, the
/// system's roots, the URL's host name or IP address), as native-tls verifies it.
async fn tls_first(url: &url::Url, required: bool) -> Result<(), String> {
    let host = url
        .host_str()
        .unwrap_or("localhost")
        .trim_matches(['[', ']']);
    let port = url.port().unwrap_or(5432);
    let mut stream = TcpStream::connect((host, port))
        .await
        .map_err(|error| format!("error connecting to server: {error}"))?;
    stream
        .write_all(&SSL_REQUEST)
        .await
        .map_err(|error| format!("error connecting to server: {error}"))?;
    let mut answer = [0u8; 1];
    stream
        .read_exact(&mut answer)
        .await
        .map_err(|error| format!("error connecting to server: {error}"))?;
    drop(stream);
    if answer[0] != b'S' {
        return if required {
            Err("error performing TLS handshake: server does not support TLS".to_owned())
        } else {
            Ok(())
        };
    }
    let verify = if host.parse::<std::net::IpAddr>().is_ok() {
        "-verify_ip"
    } else {
        "-verify_hostname"
    };
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let args = [
        "s_client".to_owned(),
        "-starttls".to_owned(),
        "postgres".to_owned(),
        "-connect".to_owned(),
        target,
        "-verify_return_error".to_owned(),
        verify.to_owned(),
        host.to_owned(),
    ];
    let handshake = tokio::task::spawn_blocking(move || {
        std::process::Command::new("openssl")
            .args(&args)
            .stdin(Stdio::null())
            .output()
    });
    let output = tokio::time::timeout(POOL_PATIENCE, handshake)
        .await
        .map_err(|_| "error performing TLS handshake: no answer".to_owned())?
        .map_err(|error| format!("error performing TLS handshake: {error}"))?
        .map_err(|error| format!("error performing TLS handshake: no openssl: {error}"))?;
    if output.status.success() {
        return Ok(());
    }
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    let reason = said
        .lines()
        .find_map(|line| line.strip_prefix("Verification error: "))
        .unwrap_or("the handshake failed");
    Err(format!(
        "error performing TLS handshake: certificate verify failed: {reason}"
    ))
}

/// A pooled `spin:postgres` client; dropped (resource drop or instance end), it goes
/// back to its pool as it is.
pub struct SpinPostgres {
    connection: Option<PgConnection>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl SpinPostgres {
    fn connection(&mut self) -> wasmtime::Result<&mut PgConnection> {
        self.connection
            .as_mut()
            .ok_or_else(|| wasmtime::Error::msg("the client went back to its pool"))
    }
}

impl Drop for SpinPostgres {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_back(connection);
        }
    }
}

impl pg::Host for SpinState {}

impl pg::HostConnection for SpinState {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<SpinPostgres>, pg::Error>> {
        let pool = self.postgres.pool(&address);
        match pool.get().await {
            Ok(client) => Ok(Ok(self.table.push(client)?)),
            Err(message) => Ok(Err(pg::Error::ConnectionFailed(message))),
        }
    }

    async fn query(
        &mut self,
        connection: Resource<SpinPostgres>,
        statement: String,
        params: Vec<pg::ParameterValue>,
    ) -> wasmtime::Result<Result<pg::RowSet, pg::Error>> {
        let connection = self.table.get_mut(&connection)?.connection()?;
        Ok(query(connection, &statement, params).await)
    }

    async fn execute(
        &mut self,
        connection: Resource<SpinPostgres>,
        statement: String,
        params: Vec<pg::ParameterValue>,
    ) -> wasmtime::Result<Result<u64, pg::Error>> {
        let connection = self.table.get_mut(&connection)?.connection()?;
        Ok(execute(connection, &statement, params).await)
    }

    async fn drop(&mut self, connection: Resource<SpinPostgres>) -> wasmtime::Result<()> {
        // Back to the pool, in whatever state it is.
        self.table.delete(connection)?;
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
/// other failure, as tokio-postgres' `Debug` writes it (`Error { kind: Closed, … }` for a
/// connection the server closed, `Error { kind: Io, … }` for a broken one).
fn query_failed(error: sqlx::Error) -> pg::Error {
    let as_text = format!("{error:?}");
    let database_error = error
        .as_database_error()
        .and_then(|error| error.try_downcast_ref::<PgDatabaseError>());
    let Some(error) = database_error else {
        return text_error(match error {
            sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                "Error { kind: Closed, cause: None }".to_owned()
            }
            sqlx::Error::Io(io) => format!("Error {{ kind: Io, cause: Some({io:?}) }}"),
            _ => as_text,
        });
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
