//! The Spin store adapter (`spin/store-adapter`, built for wasm32-wasip2) run in
//! wasmtime, with `spin:sqlite` supplied the way Spin supplies it: a named database
//! opened per connection, `execute` returning the columns and rows of any statement,
//! `changes` reading SQLite's count, and SQLite's own errors reported as `io` with
//! SQLite's message; and `spin:postgres` on a real PostgreSQL, as Spin supplies it
//! ([`postgres`]). Every call gets a fresh instance, as every request does in Spin.
//!
//! Beyond the shared cases: the adapter's migrations are recorded as sqlx records them,
//! so the native host accepts a database the adapter migrated, and the other way round.
//! [`served`] serves the whole Spin artifact over HTTP with these same imports.

mod pooled;
mod postgres;
mod served;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Column as _, ConnectOptions as _, Executor as _, Row as _, Sqlite, SqliteConnection};
use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::super::pool::Backend as _;
use super::super::{Database, Error, Rows, SqlDialect, Statement, Value};
use super::{StoreUnderTest, exercise};
use crate::settings::DatabaseSettings;

mod bindings {
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

use bindings::exports::portcullis::auth::store as adapter;
use bindings::spin::postgres::postgres as spin_postgres;
use bindings::spin::sqlite::sqlite;
use bindings::wasi::config::store as config;

/// The adapter as `spin/compose` builds it (once per test run).
fn adapter_wasm() -> &'static Path {
    static ADAPTER: OnceLock<PathBuf> = OnceLock::new();
    ADAPTER.get_or_init(build_adapter)
}

/// The workspace root (this crate is `host`).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `<target>/spin`, where `spin/compose` builds the Spin pieces.
fn spin_target() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace().join(dir),
        None => workspace().join("target"),
    }
    .join("spin")
}

/// Supplies `spin:sqlite`, `spin:postgres` and `wasi:config` (and WASI) as Spin does.
fn add_spin_to_linker(linker: &mut Linker<SpinState>) {
    wasmtime_wasi::p2::add_to_linker_async(linker).unwrap();
    sqlite::add_to_linker::<_, HasSelf<SpinState>>(linker, |state| state).unwrap();
    spin_postgres::add_to_linker::<_, HasSelf<SpinState>>(linker, |state| state).unwrap();
    config::add_to_linker::<_, HasSelf<SpinState>>(linker, |state| state).unwrap();
}

fn build_adapter() -> PathBuf {
    let workspace = workspace();
    let target = spin_target();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&workspace)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .args(["-p", "portcullis-spin-store", "--target-dir"])
        .arg(&target)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .status()
        .unwrap();
    assert!(status.success(), "building the Spin store adapter failed");
    target.join("wasm32-wasip2/release/portcullis_spin_store.wasm")
}

/// An open `spin:sqlite` connection.
pub struct SpinSqlite(SqliteConnection);

/// One instance's store data: WASI (with HTTP), the settings, the SQLite file behind
/// `default` (Spin offers it also to an app on PostgreSQL), and the application's
/// PostgreSQL pools, which outlive the instance.
struct SpinState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    settings: HashMap<String, String>,
    database_file: PathBuf,
    postgres: Arc<postgres::SpinPgPools>,
}

impl SpinState {
    /// Spin's log, the component's stderr, goes to `log`, or to this process' stderr.
    fn new(
        settings: HashMap<String, String>,
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
            settings,
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
        Ok(Ok(self.settings.get(&key).cloned()))
    }

    async fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, config::Error>> {
        Ok(Ok(self.settings.clone().into_iter().collect()))
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

/// The adapter, instantiated afresh for every call, on Spin's `default` SQLite database
/// (one file) or on the PostgreSQL database its `database_url` names.
struct SpinAdapter {
    engine: Engine,
    pre: bindings::StoreAdapterPre<SpinState>,
    database_file: PathBuf,
    database_url: String,
    postgres: Arc<postgres::SpinPgPools>,
}

/// The pool limit of the test hosts: small, so that a client held too long shows.
const POOL_SIZE: usize = 4;

impl SpinAdapter {
    fn new(database_file: &Path, database_url: &str) -> Self {
        Self::with_pool(database_file, database_url, POOL_SIZE)
    }

    /// With pools of at most `pool_size` PostgreSQL clients.
    fn with_pool(database_file: &Path, database_url: &str, pool_size: usize) -> Self {
        let engine = Engine::new(&Config::new()).unwrap();
        let component = Component::from_file(&engine, adapter_wasm()).unwrap();
        let mut linker = Linker::new(&engine);
        add_spin_to_linker(&mut linker);
        let pre =
            bindings::StoreAdapterPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
        Self {
            engine,
            pre,
            database_file: database_file.to_owned(),
            database_url: database_url.to_owned(),
            postgres: postgres::SpinPgPools::new(pool_size),
        }
    }

    async fn instance(&self) -> (Store<SpinState>, bindings::StoreAdapter) {
        let settings = HashMap::from([("database_url".to_owned(), self.database_url.clone())]);
        let state = SpinState::new(settings, &self.database_file, &self.postgres, None);
        let mut store = Store::new(&self.engine, state);
        let instance = self.pre.instantiate_async(&mut store).await.unwrap();
        (store, instance)
    }
}

impl SpinAdapter {
    /// `query` in a fresh instance.
    async fn query_once(&self, sql: &str, params: Vec<Value>) -> Result<Rows, Error> {
        let (mut store, instance) = self.instance().await;
        let params: Vec<_> = params.into_iter().map(to_adapter).collect();
        let rows = instance
            .portcullis_auth_store()
            .call_query(&mut store, sql, &params)
            .await
            .unwrap()
            .map_err(from_adapter_error)?;
        Ok(Rows {
            columns: rows.columns,
            rows: rows
                .rows
                .into_iter()
                .map(|row| row.into_iter().map(from_adapter).collect())
                .collect(),
        })
    }

    /// `execute` in a fresh instance.
    async fn execute_once(&self, sql: &str, params: Vec<Value>) -> Result<u64, Error> {
        let (mut store, instance) = self.instance().await;
        let params: Vec<_> = params.into_iter().map(to_adapter).collect();
        instance
            .portcullis_auth_store()
            .call_execute(&mut store, sql, &params)
            .await
            .unwrap()
            .map_err(from_adapter_error)
    }

    /// `batch` in a fresh instance.
    async fn batch_once(&self, statements: Vec<Statement>) -> Result<Vec<u64>, Error> {
        let (mut store, instance) = self.instance().await;
        let statements: Vec<_> = statements
            .into_iter()
            .map(|statement| adapter::Statement {
                sql: statement.sql,
                params: statement.params.into_iter().map(to_adapter).collect(),
                expect_rows: statement.expect_rows,
            })
            .collect();
        instance
            .portcullis_auth_store()
            .call_batch(&mut store, &statements)
            .await
            .unwrap()
            .map_err(from_adapter_error)
    }
}

impl StoreUnderTest for SpinAdapter {
    async fn dialect(&mut self) -> SqlDialect {
        let (mut store, instance) = self.instance().await;
        let dialect = instance
            .portcullis_auth_store()
            .call_dialect(&mut store)
            .await
            .unwrap();
        match dialect {
            adapter::SqlDialect::Sqlite => SqlDialect::Sqlite,
            adapter::SqlDialect::Postgres => SqlDialect::Postgres,
            adapter::SqlDialect::Mysql => SqlDialect::Mysql,
        }
    }

    async fn query(&mut self, sql: &str, params: Vec<Value>) -> Result<Rows, Error> {
        self.query_once(sql, params).await
    }

    async fn execute(&mut self, sql: &str, params: Vec<Value>) -> Result<u64, Error> {
        self.execute_once(sql, params).await
    }

    async fn batch(&mut self, statements: Vec<Statement>) -> Result<Vec<u64>, Error> {
        self.batch_once(statements).await
    }
}

fn to_adapter(value: Value) -> adapter::Value {
    match value {
        Value::Null => adapter::Value::Null,
        Value::Integer(integer) => adapter::Value::Integer(integer),
        Value::Real(real) => adapter::Value::Real(real),
        Value::Text(text) => adapter::Value::Text(text),
        Value::Blob(blob) => adapter::Value::Blob(blob),
    }
}

fn from_adapter(value: adapter::Value) -> Value {
    match value {
        adapter::Value::Null => Value::Null,
        adapter::Value::Integer(integer) => Value::Integer(integer),
        adapter::Value::Real(real) => Value::Real(real),
        adapter::Value::Text(text) => Value::Text(text),
        adapter::Value::Blob(blob) => Value::Blob(blob),
    }
}

fn from_adapter_error(error: adapter::Error) -> Error {
    match error {
        adapter::Error::UniqueViolation(name) => Error::UniqueViolation(name),
        adapter::Error::ConditionFailed(index) => Error::ConditionFailed(index),
        adapter::Error::Unavailable(message) => Error::Unavailable(message),
        adapter::Error::Other(message) => Error::Other(message),
    }
}

fn native_settings(database_file: &Path) -> DatabaseSettings {
    DatabaseSettings {
        url: format!("sqlite://{}", database_file.display()),
        max_connections: 1,
    }
}

/// The tables the migrations made, by name.
async fn user_tables(database: &mut impl StoreUnderTest) -> Vec<String> {
    let sql = match database.dialect().await {
        SqlDialect::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
        // `name` columns are cast: Spin reads only the common types.
        SqlDialect::Postgres => {
            "SELECT tablename::text AS name FROM pg_tables \
             WHERE schemaname = current_schema() ORDER BY name"
        }
        SqlDialect::Mysql => {
            "SELECT table_name AS name FROM information_schema.tables \
             WHERE table_schema = DATABASE() ORDER BY name"
        }
    };
    let rows = database.query(sql, Vec::new()).await.unwrap();
    rows.rows
        .into_iter()
        .filter_map(|row| match row.into_iter().next() {
            Some(Value::Text(name)) => Some(name),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn the_spin_adapter_keeps_the_store_contract_on_sqlite() {
    let folder = tempfile::tempdir().unwrap();
    let mut adapter = SpinAdapter::new(&folder.path().join("spin.db"), "");
    exercise(&mut adapter, SqlDialect::Sqlite).await;
}

#[tokio::test]
async fn the_spin_adapter_keeps_the_store_contract_on_postgres() {
    postgres::with_test_database(|url| async move {
        let folder = tempfile::tempdir().unwrap();
        let mut adapter = SpinAdapter::new(&folder.path().join("unused.db"), &url);
        exercise(&mut adapter, SqlDialect::Postgres).await;

        let tables = user_tables(&mut adapter).await;
        for table in ["_sqlx_migrations", "users", "sessions", "outbox"] {
            assert!(tables.iter().any(|name| name == table), "{tables:?}");
        }
        assert_eq!(count_users(&mut adapter).await, 0);

        let settings = DatabaseSettings {
            url,
            max_connections: 1,
        };
        let mut native = Database::connect(&settings).await.unwrap();
        native.migrate().await.unwrap();
        assert_eq!(
            user_tables(&mut native).await,
            tables,
            "sqlx accepts the adapter's migrations: nothing migrated twice"
        );
        native.close().await;
    })
    .await;
}

#[tokio::test]
async fn the_native_host_accepts_a_database_the_adapter_migrated() {
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("spin.db");
    let mut adapter = SpinAdapter::new(&file, "");
    let tables = user_tables(&mut adapter).await;
    assert!(tables.iter().any(|name| name == "users"), "{tables:?}");
    assert!(
        tables.iter().any(|name| name == "_sqlx_migrations"),
        "{tables:?}"
    );

    let mut native = Database::connect(&native_settings(&file)).await.unwrap();
    native.migrate().await.unwrap();
    assert_eq!(
        user_tables(&mut native).await,
        tables,
        "nothing migrated twice"
    );
    native.close().await;
}

#[tokio::test]
async fn the_adapter_accepts_a_database_the_native_host_migrated() {
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("native.db");
    let mut native = Database::connect(&native_settings(&file)).await.unwrap();
    native.migrate().await.unwrap();
    let tables = user_tables(&mut native).await;
    native.close().await;

    let mut adapter = SpinAdapter::new(&file, "");
    assert_eq!(user_tables(&mut adapter).await, tables);
    assert_eq!(count_users(&mut adapter).await, 0, "a fresh database");
}

/// The number of users, read through `database`.
async fn count_users(database: &mut impl StoreUnderTest) -> i64 {
    let counted = database
        .query("SELECT COUNT(*) AS n FROM users", Vec::new())
        .await
        .unwrap();
    match counted.rows.as_slice() {
        [row] => match row.as_slice() {
            [Value::Integer(count)] => *count,
            other => panic!("COUNT(*) read as {other:?}"),
        },
        other => panic!("COUNT(*) gave {other:?}"),
    }
}
