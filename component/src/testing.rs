//! Native test doubles for the ports: an in-memory SQLite store with the real migrations
//! applied, and an environment whose clock the test sets and whose randomness is
//! deterministic.

use std::cell::{Cell, RefCell};

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, ErrorCode, params_from_iter};

use crate::app::App;
use crate::db::Db;
use crate::ports::{self, Argon2Params, Dialect, Env, Rows, Statement, Store, StoreError, Value};
use crate::settings::Settings;

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_initial.sql"),
    include_str!("../../migrations/sqlite/0002_abuse_protection.sql"),
    include_str!("../../migrations/sqlite/0003_reset_requests.sql"),
    include_str!("../../migrations/sqlite/0004_retention.sql"),
    include_str!("../../migrations/sqlite/0005_mfa.sql"),
];

/// SQLite in memory, with the schema of `migrations/sqlite`.
pub struct MemoryStore {
    connection: RefCell<Connection>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch("PRAGMA foreign_keys = ON;")
            .unwrap();
        for migration in MIGRATIONS {
            connection.execute_batch(migration).unwrap();
        }
        Self {
            connection: RefCell::new(connection),
        }
    }
}

fn to_sql(value: &Value) -> SqlValue {
    match value {
        Value::Null => SqlValue::Null,
        Value::Integer(n) => SqlValue::Integer(*n),
        Value::Real(x) => SqlValue::Real(*x),
        Value::Text(text) => SqlValue::Text(text.clone()),
        Value::Blob(bytes) => SqlValue::Blob(bytes.clone()),
    }
}

fn from_sql(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(n) => Value::Integer(n),
        ValueRef::Real(x) => Value::Real(x),
        ValueRef::Text(text) => Value::Text(String::from_utf8_lossy(text).into_owned()),
        ValueRef::Blob(bytes) => Value::Blob(bytes.to_vec()),
    }
}

fn store_error(error: rusqlite::Error) -> StoreError {
    match &error {
        rusqlite::Error::SqliteFailure(failure, message)
            if failure.code == ErrorCode::ConstraintViolation
                && message.as_deref().is_some_and(|m| m.contains("UNIQUE")) =>
        {
            StoreError::UniqueViolation(message.clone().unwrap_or_default())
        }
        _ => StoreError::Other(error.to_string()),
    }
}

fn run(connection: &Connection, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
    let changed = connection
        .execute(sql, params_from_iter(params.iter().map(to_sql)))
        .map_err(store_error)?;
    Ok(changed as u64)
}

impl Store for MemoryStore {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, StoreError> {
        let connection = self.connection.borrow();
        let mut statement = connection.prepare(sql).map_err(store_error)?;
        let columns: Vec<String> = statement
            .column_names()
            .iter()
            .map(|c| c.to_string())
            .collect();
        let width = columns.len();
        let rows = statement
            .query_map(params_from_iter(params.iter().map(to_sql)), |row| {
                (0..width)
                    .map(|i| row.get_ref(i).map(from_sql))
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(store_error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(store_error)?;
        Ok(Rows { columns, rows })
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        run(&self.connection.borrow(), sql, params)
    }

    /// One savepoint: a transaction of its own, or nested in one the caller began (the
    /// fuzz targets run each input in a transaction they roll back).
    fn batch(&self, statements: &[Statement]) -> Result<Vec<u64>, StoreError> {
        let mut connection = self.connection.borrow_mut();
        let transaction = connection.savepoint().map_err(store_error)?;
        let mut counts = Vec::new();
        for (index, statement) in statements.iter().enumerate() {
            let changed = run(&transaction, &statement.sql, &statement.params)?;
            if statement
                .expect_rows
                .is_some_and(|expected| expected != changed)
            {
                return Err(StoreError::ConditionFailed(index as u32));
            }
            counts.push(changed);
        }
        transaction.commit().map_err(store_error)?;
        Ok(counts)
    }
}

/// `len` deterministic but never repeating bytes (splitmix64 over `counter`, which
/// advances by one per byte): the randomness of tests and fuzz targets.
pub fn deterministic_bytes(counter: &Cell<u64>, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            let next = counter.get().wrapping_add(1);
            counter.set(next);
            let mut z = next.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            (z ^ (z >> 27)) as u8
        })
        .collect()
}

/// A clock the test moves and deterministic (but never repeating) random bytes.
pub struct TestEnv {
    pub now_millis: Cell<i64>,
    counter: Cell<u64>,
}

impl TestEnv {
    pub fn at(seconds: i64) -> Self {
        Self {
            now_millis: Cell::new(seconds * 1000),
            counter: Cell::new(0),
        }
    }

    pub fn advance(&self, seconds: i64) {
        self.now_millis.set(self.now_millis.get() + seconds * 1000);
    }
}

impl Env for TestEnv {
    fn now_millis(&self) -> i64 {
        self.now_millis.get()
    }

    fn random_bytes(&self, len: usize) -> Vec<u8> {
        deterministic_bytes(&self.counter, len)
    }

    /// The kernel the native host runs (`hasher/`), called directly.
    fn argon2(
        &self,
        password: &[u8],
        salt: &[u8],
        params: &Argon2Params,
    ) -> Result<Vec<u8>, String> {
        ports::native_argon2(password, salt, params)
    }
}

/// Settings with a test secret and the given overrides.
pub fn settings(overrides: &[(&str, &str)]) -> Settings {
    Settings::from_lookup(|key| {
        overrides
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value.to_string())
            .or_else(|| (key == "jwt_secret").then(|| "test-secret-".repeat(4)))
    })
    .unwrap()
}

/// Everything a domain test needs, owned in one place.
pub struct Harness {
    pub store: MemoryStore,
    pub env: TestEnv,
    pub settings: Settings,
}

impl Harness {
    pub fn new(overrides: &[(&str, &str)]) -> Self {
        Self {
            store: MemoryStore::new(),
            env: TestEnv::at(1_800_000_000),
            settings: settings(overrides),
        }
    }

    pub fn app(&self) -> App<'_> {
        App {
            db: Db::new(&self.store),
            env: &self.env,
            settings: &self.settings,
        }
    }
}
