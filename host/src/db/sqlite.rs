//! SQLite, the default database: a file created with its folder on first start, readable
//! by its owner only, in WAL mode with foreign keys on and a 5 s busy timeout; writes go
//! through one connection, whose batches are committed in groups (`group_commit`),
//! reads through a pool.

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::error::{BoxDynError, DatabaseError};
use sqlx::migrate::Migrator;
use sqlx::pool::PoolOptions;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqliteQueryResult, SqliteRow, SqliteValueRef,
};
use sqlx::{Decode, Row as _, Sqlite, TransactionManager as _, TypeInfo as _, ValueRef as _};

use super::Value;
use super::group_commit::{self, GroupCommit};
use super::pool::{Backend, SqlPool, pool_options};

static MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Every write of this host goes through one connection: SQLite takes one writer at a
/// time anyway, and writers that queue for the connection wait their turn in order,
/// where writers on several connections would retry the file's lock until the busy
/// timeout (and log `database is locked` under load). Reads keep a pool of their own.
/// The busy timeout remains for other processes on the same file.
const WRITER_CONNECTIONS: u32 = 1;

/// SQLite's primary result codes that mean "try again later": the file is locked or
/// busy, cannot be opened or written (a read-only folder or file system), or the disk
/// is full. None of them leaves the file damaged: the statement is rolled back.
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_READONLY: i32 = 8;
const SQLITE_IOERR: i32 = 10;
const SQLITE_FULL: i32 = 13;
const SQLITE_CANTOPEN: i32 = 14;

/// Opens a pool on the database file `url` names, creating the file and its folder.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<SqlPool<Sqlite>> {
    let options = SqliteConnectOptions::from_str(url)
        .context("PORTCULLIS_DATABASE_URL: not a valid SQLite URL")?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    create_parent_folder(options.get_filename())?;
    if !is_in_memory(url) {
        create_private_file(options.get_filename())?;
    }
    if let Some(folder) = writable_folder_of(options.get_filename(), url) {
        check_writable(folder)?;
    }
    // The writer first: it creates the file and switches it to WAL for the readers.
    let writes = writer_pool_options()
        .connect_with(options.clone())
        .await
        .context("opening the SQLite database")?;
    let reads = local_pool_options(max_connections)
        .connect_with(options)
        .await
        .context("opening the SQLite database")?;
    let (group_commit, queue) = GroupCommit::new();
    tokio::spawn(group_commit::serve(writes.clone(), queue));
    Ok(SqlPool::split(reads, writes, group_commit))
}

/// The pool options for connections to a local file: no network can break them, so a
/// connection is not pinged before each use (sqlx's default, which costs a round trip
/// to the connection's worker thread on every statement).
fn local_pool_options(max_connections: u32) -> PoolOptions<Sqlite> {
    pool_options(max_connections).test_before_acquire(false)
}

/// The writer's pool options. A connection given back with a transaction still open is
/// closed, not reused: SQLite ends a transaction by itself on some errors (a full disk,
/// an I/O error), sqlx's ROLLBACK then fails and sqlx goes on counting the transaction
/// as open, so every later BEGIN on that connection would fail ("non-zero transaction
/// depth") and every write would answer 500 until a restart.
///
/// The depth is read as sqlx counts it now, with no round trip to the connection's
/// worker thread: a group of batches commits or rolls back before it gives the
/// connection back (`group_commit::commit_group`), so only a transaction dropped
/// half-way (its rollback still queued) reads as open too, and that rare connection is
/// closed and opened again.
fn writer_pool_options() -> PoolOptions<Sqlite> {
    local_pool_options(WRITER_CONNECTIONS).after_release(|connection, _| {
        Box::pin(async move {
            Ok(
                <Sqlite as sqlx::Database>::TransactionManager::get_transaction_depth(connection)
                    == 0,
            )
        })
    })
}

/// The folder of a database file (where SQLite also creates its `-wal` and `-shm`
/// files), unless the database is in memory.
fn writable_folder_of<'a>(database_file: &'a Path, url: &str) -> Option<&'a Path> {
    if is_in_memory(url) || database_file.as_os_str().is_empty() {
        return None;
    }
    Some(
        database_file
            .parent()
            .filter(|folder| !folder.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )
}

/// Fails with a line naming `folder` when no file can be created in it (a read-only
/// file system, or permissions), which SQLite would only report as "unable to open
/// database file".
fn check_writable(folder: &Path) -> anyhow::Result<()> {
    let probe = folder.join(format!(".portcullis-write-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .with_context(|| format!("the database folder {} cannot be written", folder.display()))?;
    std::fs::remove_file(&probe)
        .with_context(|| format!("removing {} from the database folder", probe.display()))
}

fn create_parent_folder(database_file: &Path) -> anyhow::Result<()> {
    match database_file.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => std::fs::create_dir_all(folder)
            .with_context(|| format!("creating the database folder {}", folder.display())),
        _ => Ok(()),
    }
}

/// Whether `url` names a database in memory (`sqlite::memory:`, `…?mode=memory`).
fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// Creates the database file, if it does not exist yet, readable and writable by its
/// owner only (0600). SQLite gives its `-wal` and `-shm` files the database file's mode.
fn create_private_file(database_file: &Path) -> anyhow::Result<()> {
    if database_file.as_os_str().is_empty() {
        return Ok(());
    }
    match crate::settings::write_private_file(database_file, "") {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error)
            .with_context(|| format!("creating the database file {}", database_file.display())),
    }
}

/// Applies the pending migrations of `migrations/sqlite`.
pub async fn migrate(pool: &SqlPool<Sqlite>) -> anyhow::Result<()> {
    MIGRATIONS.run(pool.inner()).await?;
    Ok(())
}

impl Backend for Sqlite {
    type Null = Option<i64>;

    // Take the write lock at once: a deferred transaction that reads before it writes
    // fails with SQLITE_BUSY instead of waiting for the busy timeout.
    const BEGIN: &'static str = "BEGIN IMMEDIATE";

    fn column_value(row: &SqliteRow, index: usize) -> Result<SqliteValueRef<'_>, sqlx::Error> {
        row.try_get_raw(index)
    }

    fn decode(value: SqliteValueRef<'_>) -> Result<Value, BoxDynError> {
        if value.is_null() {
            return Ok(Value::Null);
        }
        // A value's type info is its storage class, whatever the column declares.
        let storage_class = value.type_info().name().to_owned();
        Ok(match storage_class.as_str() {
            "INTEGER" => Value::Integer(<i64 as Decode<Sqlite>>::decode(value)?),
            "REAL" => Value::Real(<f64 as Decode<Sqlite>>::decode(value)?),
            "TEXT" => Value::Text(<String as Decode<Sqlite>>::decode(value)?),
            "BLOB" => Value::Blob(<Vec<u8> as Decode<Sqlite>>::decode(value)?),
            other => return Err(format!("unsupported SQLite storage class {other}").into()),
        })
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    fn is_transient(error: &dyn DatabaseError) -> bool {
        let primary_code = error
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .map(|extended_code| extended_code & 0xff);
        matches!(
            primary_code,
            Some(
                SQLITE_BUSY
                    | SQLITE_LOCKED
                    | SQLITE_READONLY
                    | SQLITE_IOERR
                    | SQLITE_FULL
                    | SQLITE_CANTOPEN
            )
        )
    }
}
