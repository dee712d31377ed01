//! What every backend does the same way: bind the component's parameters in order,
//! decode every column from its runtime type, run a batch in one transaction and check
//! each statement's expected row count.
//!
//! A backend (a `sqlx::Database`) plugs in by implementing [`Backend`]: how it binds a
//! NULL, how it reads one value, how it reports affected rows and how it begins a
//! write transaction.

use std::time::Duration;

use sqlx::error::{BoxDynError, DatabaseError};
use sqlx::pool::PoolOptions;
use sqlx::query::Query;
use sqlx::{Column as _, Encode, Executor, IntoArguments, Pool, Row as _, Type};

use super::errors::{is_transaction_conflict, to_store_error};
use super::group_commit::GroupCommit;
use super::{Error, Rows, Statement, Value};

/// A sqlx driver as the store uses it.
pub trait Backend: sqlx::Database {
    /// The value bound for `value::null`.
    type Null: for<'q> Encode<'q, Self> + Type<Self> + Default + Send + 'static;

    /// The statement that begins a batch's transaction.
    const BEGIN: &'static str;

    /// The raw value of a row's column.
    fn column_value(row: &Self::Row, index: usize) -> Result<Self::ValueRef<'_>, sqlx::Error>;

    /// Reads one column value (NULL or not), by the type the database reports.
    fn decode(value: Self::ValueRef<'_>) -> Result<Value, BoxDynError>;

    /// The rows a statement affected.
    fn rows_affected(result: &Self::QueryResult) -> u64;

    /// Whether a database error means "try again later" (busy, connection lost, …).
    fn is_transient(error: &dyn DatabaseError) -> bool;

    /// The name of the constraint a unique violation broke, or the message when the
    /// database names none.
    fn unique_constraint(error: &dyn DatabaseError) -> String {
        error.constraint().unwrap_or(error.message()).to_owned()
    }
}

/// How long a statement waits for a free connection before the store reports
/// `unavailable`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The pool options every backend starts from.
pub fn pool_options<DB: sqlx::Database>(max_connections: u32) -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
}

/// The connection pools of one backend: one for statements that only read, one for
/// those that write. On PostgreSQL and MySQL both are the same pool; SQLite writes
/// through a pool of its own with one connection, so that writers queue in the host
/// (first come, first served) instead of busy-waiting on the database file's lock, and
/// its batches go through that connection's group commit.
pub struct SqlPool<DB: sqlx::Database> {
    reads: Pool<DB>,
    writes: Pool<DB>,
    /// Where batches go when `writes` is a pool of its own whose one connection commits
    /// them in groups; `None` when `reads` and `writes` are the same pool.
    group_commit: Option<GroupCommit>,
}

impl<DB: sqlx::Database> Clone for SqlPool<DB> {
    fn clone(&self) -> Self {
        Self {
            reads: self.reads.clone(),
            writes: self.writes.clone(),
            group_commit: self.group_commit.clone(),
        }
    }
}

impl<DB: sqlx::Database> SqlPool<DB> {
    /// One pool for reads and writes alike.
    pub fn new(pool: Pool<DB>) -> Self {
        Self {
            reads: pool.clone(),
            writes: pool,
            group_commit: None,
        }
    }

    /// Reads through `reads`, writes through `writes` (one connection), batches through
    /// `group_commit`, which serves `writes`.
    pub fn split(reads: Pool<DB>, writes: Pool<DB>, group_commit: GroupCommit) -> Self {
        Self {
            reads,
            writes,
            group_commit: Some(group_commit),
        }
    }

    /// Whether `reads` and `writes` are two pools (only split pools commit in groups).
    fn is_split(&self) -> bool {
        self.group_commit.is_some()
    }

    /// The pool that writes, for migrations.
    pub fn inner(&self) -> &Pool<DB> {
        &self.writes
    }

    /// Closes every connection, waiting for those in use to be returned.
    pub async fn close(&self) {
        self.reads.close().await;
        if self.is_split() {
            self.writes.close().await;
        }
    }

    /// The connections open now, and how many of them are idle (for the metrics).
    pub fn connections(&self) -> (u32, usize) {
        let (reads, writes) = (&self.reads, &self.writes);
        if self.is_split() {
            (
                reads.size() + writes.size(),
                reads.num_idle() + writes.num_idle(),
            )
        } else {
            (writes.size(), writes.num_idle())
        }
    }
}

impl<DB> SqlPool<DB>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> f64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
{
    /// Runs a statement that returns rows (the component's queries only read).
    pub async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Rows, Error> {
        let mut connection = self.reads.acquire().await.map_err(to_store_error::<DB>)?;
        let rows = bind::<DB>(sqlx::query(sql), &params)
            .fetch_all(&mut *connection)
            .await
            .map_err(to_store_error::<DB>)?;
        let columns = match rows.first() {
            Some(row) => column_names(row.columns()),
            // No row to read the names from: the prepared statement (cached by now)
            // knows them.
            None => {
                let statement = (&mut *connection)
                    .prepare(sql)
                    .await
                    .map_err(to_store_error::<DB>)?;
                column_names(sqlx::Statement::columns(&statement))
            }
        };
        let rows = rows
            .iter()
            .map(decode_row::<DB>)
            .collect::<Result<_, _>>()?;
        Ok(Rows { columns, rows })
    }

    /// Runs a statement and returns the rows it affected.
    pub async fn execute(&self, sql: &str, params: Vec<Value>) -> Result<u64, Error> {
        let result = bind::<DB>(sqlx::query(sql), &params)
            .execute(&self.writes)
            .await
            .map_err(to_store_error::<DB>)?;
        Ok(DB::rows_affected(&result))
    }

    /// Runs the statements in one transaction; a statement whose `expect-rows` is not
    /// met rolls everything back. A transaction the database chose as a deadlock's
    /// victim, or could not serialise, was rolled back whole: it runs again, after a
    /// short random pause, up to [`CONFLICT_ATTEMPTS`] times in all.
    pub async fn batch(&self, statements: Vec<Statement>) -> Result<Vec<u64>, Error> {
        if let Some(group_commit) = &self.group_commit {
            return group_commit.batch(statements).await;
        }
        let mut attempt = 1;
        loop {
            match self.run_batch(&statements).await {
                Ok(Ok(affected)) => return Ok(affected),
                Ok(Err(index)) => return Err(Error::ConditionFailed(batch_index(index))),
                Err(error) if attempt < CONFLICT_ATTEMPTS && is_transaction_conflict(&error) => {
                    tracing::debug!(attempt, %error, "batch rolled back by a conflict, retrying");
                    tokio::time::sleep(conflict_pause(attempt)).await;
                    attempt += 1;
                }
                Err(error) => return Err(to_store_error::<DB>(error)),
            }
        }
    }

    /// One try at a batch: the affected rows, or the index of the statement whose
    /// `expect-rows` was not met (everything rolled back). A statement that fails rolls
    /// the transaction back before the connection goes back to the pool.
    async fn run_batch(
        &self,
        statements: &[Statement],
    ) -> Result<Result<Vec<u64>, usize>, sqlx::Error> {
        let mut transaction = self.writes.begin_with(DB::BEGIN).await?;
        match Self::run_statements(&mut transaction, statements).await {
            Ok(affected) => {
                transaction.commit().await?;
                Ok(Ok(affected))
            }
            Err(Stopped::Guard(index)) => {
                transaction.rollback().await?;
                Ok(Err(index))
            }
            Err(Stopped::Failed(error)) => {
                // The statement's error is the one to report, whatever the rollback
                // says (it fails when the database ended the transaction itself).
                let _ = transaction.rollback().await;
                Err(error)
            }
        }
    }

    /// Runs a batch's statements in order on `connection` (inside a transaction the caller
    /// holds), checking each one's `expect-rows`; the rows each affected.
    pub(super) async fn run_statements(
        connection: &mut DB::Connection,
        statements: &[Statement],
    ) -> Result<Vec<u64>, Stopped> {
        let mut affected = Vec::with_capacity(statements.len());
        for (index, statement) in statements.iter().enumerate() {
            let result = bind::<DB>(sqlx::query(&statement.sql), &statement.params)
                .execute(&mut *connection)
                .await
                .map_err(Stopped::Failed)?;
            let rows = DB::rows_affected(&result);
            if statement
                .expect_rows
                .is_some_and(|expected| expected != rows)
            {
                return Err(Stopped::Guard(index));
            }
            affected.push(rows);
        }
        Ok(affected)
    }
}

/// Why a batch's statements stopped before the last one.
pub(super) enum Stopped {
    /// The statement at this index did not affect the rows its `expect-rows` names.
    Guard(usize),
    /// A statement failed.
    Failed(sqlx::Error),
}

/// How many times a batch runs at most when the database rolls it back as a deadlock's
/// victim or a serialization failure.
const CONFLICT_ATTEMPTS: u32 = 4;

/// The pause before a batch's next try: random, so that the transactions that
/// deadlocked do not meet again, and longer with each try (up to 10, 20, 30 ms).
fn conflict_pause(attempt: u32) -> Duration {
    let ceiling_ms = 10 * u64::from(attempt);
    Duration::from_millis(rand::random_range(1..=ceiling_ms))
}

/// Binds the parameters positionally, in the types the WIT values carry; text and
/// blobs by reference (a batch that runs again binds the same values, uncopied).
fn bind<'q, DB>(
    mut query: Query<'q, DB, DB::Arguments<'q>>,
    params: &'q [Value],
) -> Query<'q, DB, DB::Arguments<'q>>
where
    DB: Backend,
    i64: Encode<'q, DB> + Type<DB>,
    f64: Encode<'q, DB> + Type<DB>,
    &'q str: Encode<'q, DB> + Type<DB>,
    &'q [u8]: Encode<'q, DB> + Type<DB>,
{
    for param in params {
        query = match param {
            Value::Null => query.bind(DB::Null::default()),
            Value::Integer(integer) => query.bind(*integer),
            Value::Real(real) => query.bind(*real),
            Value::Text(text) => query.bind(text.as_str()),
            Value::Blob(blob) => query.bind(blob.as_slice()),
        };
    }
    query
}

fn column_names<C: sqlx::Column>(columns: &[C]) -> Vec<String> {
    columns
        .iter()
        .map(|column| column.name().to_owned())
        .collect()
}

fn decode_row<DB: Backend>(row: &DB::Row) -> Result<Vec<Value>, Error> {
    row.columns()
        .iter()
        .enumerate()
        .map(|(index, column)| {
            let value = DB::column_value(row, index).map_err(to_store_error::<DB>)?;
            DB::decode(value).map_err(|error| {
                Error::Other(format!("cannot read column {}: {error}", column.name()))
            })
        })
        .collect()
}

/// A statement's index as the WIT error reports it (a batch never holds 2^32 of them).
pub(super) fn batch_index(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}
