//! The project's Spin test host: the Spin artifact (`target/spin/portcullis.wasm`, built
//! by `spin/compose` as `spin build` does) run in wasmtime with the imports Spin 4.1
//! gives it, answering as Spin answers. It is not Spin: it exists so that `cargo test`
//! can serve the artifact without a Spin installation, and so that Spin's behaviour
//! that matters to the artifact (pooled PostgreSQL clients, TLS tried first, a fresh
//! instance per request) reproduces in tests.
//!
//! - `spin:sqlite`: a named database (`default`) opened per connection, `execute`
//!   returning the columns and rows of any statement, `changes` reading SQLite's count,
//!   SQLite's own errors reported as `io` with SQLite's message;
//! - `spin:postgres` on a real PostgreSQL, pooled as Spin pools it ([`postgres`]);
//! - `wasi:config` from the application's variables, WASI with the components' stderr
//!   as Spin's log, and outgoing HTTP;
//! - [`served`] serves the artifact over HTTP, one fresh instance per request, and
//!   [`settings`] reads a `spin.toml`'s variables as `spin up` does. The binary
//!   `portcullis-spin-test-host` (`src/bin/`) puts them together for the black-box suite.
//!
//! The lib tests (`db/tests/spin_adapter*`) run the store adapter and the artifact on it.

pub mod mail_bridge;
pub mod postgres;
pub mod served;
pub mod settings;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Column as _, ConnectOptions as _, Executor as _, Row as _, Sqlite, SqliteConnection};
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::db::Value;
use crate::db::pool::Backend as _;

/// The Spin imports (and the adapter's store export, which the lib tests call).
pub mod bindings {
    wasmtime::component::bindgen!({
        path: ["../wit", "../spin/wit"],
        world: "portcullis:spin/store-adapter",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "spin:sqlite/sqlite.connection": super::SpinSqlite,
            "spin:postgres/postgres.connection": super::postgres::SpinPostgres,
        },
    });
}

use bindings::spin::postgres::postgres as spin_postgres;
use bindings::spin::sqlite::sqlite;
use bindings::wasi::config::store as config;

/// Supplies `spin:sqlite`, `spin:postgres` and `wasi:config` (and WASI) as Spin does.
pub fn add_spin_to_linker(linker: &mut Linker<SpinState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    sqlite::add_to_linker::<_, HasSelf<SpinState>>(linker, |state| state)?;
    spin_postgres::add_to_linker::<_, HasSelf<SpinState>>(linker, |state| state)?;
    config::add_to_linker::<_, HasSelf<SpinState>>(linker, |state| state)?;
    Ok(())
}

/// An open `spin:sqlite` connection.
pub struct SpinSqlite(SqliteConnection);

/// One instance's store data: WASI (with HTTP), the variables, the SQLite file behind
/// `default` (Spin offers it also to an app on PostgreSQL), and the application's
/// PostgreSQL pools, which outlive the instance.
pub struct SpinState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    variables: Arc<HashMap<String, String>>,
    database_file: PathBuf,
    postgres: Arc<postgres::SpinPgPools>,
}

impl SpinState {
    /// Spin's log, the component's stderr, goes to `log`, or to this process' stderr.
    pub fn new(
        variables: Arc<HashMap<String, String>>,
        database_file: &Path,
        postgres: &Arc<postgres::SpinPgPools>,
        log: Option<&MemoryOutputPipe>,
    ) -> Self {
        let mut wasi = WasiCtx::builder();
        match log {
            Some(log) => wasi.stderr(log.clone()),
            None => wasi.inherit_stderr(),
        };
        Self {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            variables,
            database_file: database_file.to_owned(),
            postgres: Arc::clone(postgres),
        }
    }
}

impl WasiHttpView for SpinState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}

impl WasiView for SpinState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl config::Host for SpinState {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, config::Error>> {
        Ok(Ok(self.variables.get(&key).cloned()))
    }

    async fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, config::Error>> {
        Ok(Ok(self
            .variables
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()))
    }
}

impl sqlite::Host for SpinState {}

impl sqlite::HostConnection for SpinState {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<SpinSqlite>, sqlite::Error>> {
        if database != "default" {
            return Ok(Err(sqlite::Error::NoSuchDatabase));
        }
        let options = SqliteConnectOptions::new()
            .filename(&self.database_file)
            .create_if_missing(true);
        match options.connect().await {
            Ok(connection) => Ok(Ok(self.table.push(SpinSqlite(connection))?)),
            Err(error) => Ok(Err(sqlite::Error::Io(error.to_string()))),
        }
    }

    async fn execute(
        &mut self,
        connection: Resource<SpinSqlite>,
        statement: String,
        parameters: Vec<sqlite::Value>,
    ) -> wasmtime::Result<Result<sqlite::QueryResult, sqlite::Error>> {
        let connection = &mut self.table.get_mut(&connection)?.0;
        Ok(run(connection, &statement, parameters)
            .await
            .map_err(io_error))
    }

    async fn changes(&mut self, connection: Resource<SpinSqlite>) -> wasmtime::Result<u64> {
        let connection = &mut self.table.get_mut(&connection)?.0;
        let changes: i64 = sqlx::query_scalar("SELECT changes()")
            .fetch_one(&mut *connection)
            .await?;
        Ok(u64::try_from(changes)?)
    }

    async fn drop(&mut self, connection: Resource<SpinSqlite>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

/// Runs one statement with its parameters and reads every row, as Spin does.
async fn run(
    connection: &mut SqliteConnection,
    statement: &str,
    parameters: Vec<sqlite::Value>,
) -> Result<sqlite::QueryResult, sqlx::Error> {
    let mut query = sqlx::query(statement);
    for parameter in parameters {
        query = match parameter {
            sqlite::Value::Null => query.bind(None::<i64>),
            sqlite::Value::Integer(integer) => query.bind(integer),
            sqlite::Value::Real(real) => query.bind(real),
            sqlite::Value::Text(text) => query.bind(text),
            sqlite::Value::Blob(blob) => query.bind(blob),
        };
    }
    let rows = query.fetch_all(&mut *connection).await?;
    let prepared = connection.prepare(statement).await?;
    let columns = sqlx::Statement::columns(&prepared)
        .iter()
        .map(|column| column.name().to_owned())
        .collect();
    let rows = rows
        .iter()
        .map(|row| {
            let values = (0..row.len())
                .map(|index| {
                    let raw = row.try_get_raw(index)?;
                    let value = Sqlite::decode(raw).map_err(sqlx::Error::Decode)?;
                    Ok(to_spin(value))
                })
                .collect::<Result<_, sqlx::Error>>()?;
            Ok(sqlite::RowResult { values })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(sqlite::QueryResult { columns, rows })
}

/// Spin reports SQLite's failures as `io` with SQLite's message.
fn io_error(error: sqlx::Error) -> sqlite::Error {
    match error {
        sqlx::Error::Database(error) => sqlite::Error::Io(error.message().to_owned()),
        other => sqlite::Error::Io(other.to_string()),
    }
}

fn to_spin(value: Value) -> sqlite::Value {
    match value {
        Value::Null => sqlite::Value::Null,
        Value::Integer(integer) => sqlite::Value::Integer(integer),
        Value::Real(real) => sqlite::Value::Real(real),
        Value::Text(text) => sqlite::Value::Text(text),
        Value::Blob(blob) => sqlite::Value::Blob(blob),
    }
}
