//! The Spin store adapter (`spin/store-adapter`, built for wasm32-wasip2) run in
//! wasmtime with the Spin test host's imports (`crate::spin_test_host`: `spin:sqlite`
//! on a file, `spin:postgres` pooled on a real PostgreSQL as Spin pools it; [`postgres`]
//! gives each test a database of its own). Every call gets a fresh instance, as every
//! request does in Spin.
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

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};

use super::super::{Database, Error, Rows, SqlDialect, Statement, Value};
use super::{StoreUnderTest, exercise};
use crate::settings::DatabaseSettings;
use crate::spin_test_host::bindings::{self, exports::portcullis::auth::store as adapter};
use crate::spin_test_host::postgres::{POOL_SIZE, SpinPgPools};
use crate::spin_test_host::{SpinState, add_spin_to_linker};

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

/// The adapter, instantiated afresh for every call, on Spin's `default` SQLite database
/// (one file) or on the PostgreSQL database its `database_url` names.
struct SpinAdapter {
    engine: Engine,
    pre: bindings::StoreAdapterPre<SpinState>,
    database_file: PathBuf,
    database_url: String,
    postgres: Arc<SpinPgPools>,
}

impl SpinAdapter {
    fn new(database_file: &Path, database_url: &str) -> Self {
        Self::with_pool(database_file, database_url, POOL_SIZE)
    }

    /// With pools of at most `pool_size` PostgreSQL clients.
    fn with_pool(database_file: &Path, database_url: &str, pool_size: usize) -> Self {
        let engine = Engine::new(&Config::new()).unwrap();
        let component = Component::from_file(&engine, adapter_wasm()).unwrap();
        let mut linker = Linker::new(&engine);
        add_spin_to_linker(&mut linker).unwrap();
        let pre =
            bindings::StoreAdapterPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
        Self {
            engine,
            pre,
            database_file: database_file.to_owned(),
            database_url: database_url.to_owned(),
            postgres: SpinPgPools::new(pool_size),
        }
    }

    async fn instance(&self) -> (Store<SpinState>, bindings::StoreAdapter) {
        let settings = Arc::new(HashMap::from([(
            "database_url".to_owned(),
            self.database_url.clone(),
        )]));
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
