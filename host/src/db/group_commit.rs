//! Group commit for SQLite's one writer connection: the batches that
//! queue for the writer while it commits run together in the next transaction, each
//! under a savepoint of its own, and one commit (one `fsync` of the write-ahead log)
//! makes them all durable.
//!
//! Each batch keeps its own outcome: a batch whose `expect-rows` guard is not met, or
//! whose statement fails, is rolled back to its savepoint alone and answered at once;
//! the batches that ran are answered only once the commit that stores them succeeds
//! (if it fails, they all fail, and none of them is stored). Batches run one after the
//! other in the order they came, on one connection, so each sees the writes of those
//! before it exactly as if they had committed one by one. Under no load a group is one
//! batch; nothing waits to fill a group.

use sqlx::sqlite::SqliteConnection;
use sqlx::{Pool, Sqlite};
use tokio::sync::{mpsc, oneshot};

use super::errors::to_store_error;
use super::pool::{Backend, SqlPool, Stopped, batch_index};
use super::{Error, Statement};

/// The most batches one transaction holds (as many as instances can wait at once).
const MAX_GROUP: usize = crate::engine::MAX_INSTANCES as usize;

/// What a batch's caller gets back: the rows each statement affected, or the error.
type Outcome = Result<Vec<u64>, Error>;

/// A batch waiting for the writer.
pub struct Job {
    statements: Vec<Statement>,
    reply: oneshot::Sender<Outcome>,
}

/// The queue to the writer task ([`serve`]); cheap to clone.
#[derive(Clone)]
pub struct GroupCommit {
    jobs: mpsc::Sender<Job>,
}

impl GroupCommit {
    /// A queue, and its receiving end for [`serve`].
    pub fn new() -> (Self, mpsc::Receiver<Job>) {
        let (jobs, queue) = mpsc::channel(MAX_GROUP);
        (Self { jobs }, queue)
    }

    /// Runs `statements` as one batch in the writer's next group.
    pub async fn batch(&self, statements: Vec<Statement>) -> Outcome {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { statements, reply })
            .await
            .map_err(|_| writer_stopped())?;
        answer.await.map_err(|_| writer_stopped())?
    }
}

fn writer_stopped() -> Error {
    Error::Unavailable("the database writer has stopped".into())
}

/// The writer task: takes the first waiting batch and every other one queued by then
/// (up to [`MAX_GROUP`]), runs them in one transaction on `writes`, and so on until
/// every [`GroupCommit`] is dropped.
pub async fn serve(writes: Pool<Sqlite>, mut queue: mpsc::Receiver<Job>) {
    while let Some(first) = queue.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        commit_group(&writes, group).await;
    }
}

/// Runs `group` in one transaction and answers every batch in it.
async fn commit_group(writes: &Pool<Sqlite>, group: Vec<Job>) {
    let mut transaction = match writes.begin_with(<Sqlite as Backend>::BEGIN).await {
        Ok(transaction) => transaction,
        Err(error) => {
            let error = to_store_error::<Sqlite>(error);
            return answer_all(group.into_iter().map(|job| job.reply), &error);
        }
    };
    let mut ran = Vec::with_capacity(group.len());
    let mut jobs = group.into_iter();
    while let Some(job) = jobs.next() {
        match run_in_savepoint(&mut transaction, &job.statements).await {
            Ok(Ok(affected)) => ran.push((job.reply, affected)),
            Ok(Err(error)) => {
                let _ = job.reply.send(Err(error));
            }
            Err(error) => {
                // The database ended the transaction itself (a full disk, an I/O
                // error): nothing of this group is stored.
                let error = to_store_error::<Sqlite>(error);
                let _ = transaction.rollback().await;
                let waiting = jobs.map(|job| job.reply);
                let ran = ran.into_iter().map(|(reply, _)| reply);
                return answer_all(std::iter::once(job.reply).chain(ran).chain(waiting), &error);
            }
        }
    }
    match transaction.commit().await {
        Ok(()) => {
            for (reply, affected) in ran {
                let _ = reply.send(Ok(affected));
            }
        }
        Err(error) => answer_all(
            ran.into_iter().map(|(reply, _)| reply),
            &to_store_error::<Sqlite>(error),
        ),
    }
}

/// Runs one batch under a savepoint: `Ok(Ok(_))` when it ran whole, `Ok(Err(_))` when
/// it was rolled back to its savepoint (a guard not met, or a statement's error), and
/// `Err(_)` when even that failed, so the transaction is gone.
async fn run_in_savepoint(
    connection: &mut SqliteConnection,
    statements: &[Statement],
) -> Result<Outcome, sqlx::Error> {
    // Savepoints of the batches that ran stay open: the commit releases them all.
    sqlx::query("SAVEPOINT batch")
        .execute(&mut *connection)
        .await?;
    let stopped = match SqlPool::<Sqlite>::run_statements(connection, statements).await {
        Ok(affected) => return Ok(Ok(affected)),
        Err(stopped) => stopped,
    };
    let rolled_back = sqlx::query("ROLLBACK TO SAVEPOINT batch")
        .execute(&mut *connection)
        .await;
    match (stopped, rolled_back) {
        (Stopped::Guard(index), Ok(_)) => Ok(Err(Error::ConditionFailed(batch_index(index)))),
        (Stopped::Failed(error), Ok(_)) => Ok(Err(to_store_error::<Sqlite>(error))),
        // The statement's error says why the transaction ended.
        (Stopped::Failed(error), Err(_)) | (Stopped::Guard(_), Err(error)) => Err(error),
    }
}

fn answer_all(replies: impl Iterator<Item = oneshot::Sender<Outcome>>, error: &Error) {
    for reply in replies {
        let _ = reply.send(Err(error.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Value;
    use sqlx::Row as _;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};

    /// A one-connection pool on a fresh WAL file holding the table `t`, and the folder
    /// the file is in (removed when dropped).
    async fn scratch_table() -> (tempfile::TempDir, Pool<Sqlite>) {
        let folder = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(folder.path().join("scratch.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let pool = sqlx::pool::PoolOptions::<Sqlite>::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        sqlx::query(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, marked INTEGER)",
        )
        .execute(&pool)
        .await
        .unwrap();
        (folder, pool)
    }

    fn statement(sql: &str, params: Vec<Value>, expect_rows: Option<u64>) -> Statement {
        Statement {
            sql: sql.to_owned(),
            params,
            expect_rows,
        }
    }

    fn insert(id: i64, name: &str) -> Statement {
        statement(
            "INSERT INTO t (id, name) VALUES (?, ?)",
            vec![Value::Integer(id), Value::Text(name.to_owned())],
            Some(1),
        )
    }

    fn mark(id: i64) -> Statement {
        statement(
            "UPDATE t SET marked = 1 WHERE id = ?",
            vec![Value::Integer(id)],
            Some(1),
        )
    }

    /// One group of batches, each with its own fate: stored whole, a guard not met
    /// after a write, a unique violation after a write, and one that reads the write
    /// of a batch before it in the same group.
    #[tokio::test]
    async fn each_batch_of_a_group_keeps_its_own_outcome() {
        let (_folder, pool) = scratch_table().await;
        sqlx::query("INSERT INTO t (id, name) VALUES (100, 'taken')")
            .execute(&pool)
            .await
            .unwrap();

        let batches = vec![
            vec![insert(1, "one")],
            vec![insert(2, "two"), mark(999)],
            vec![insert(3, "three"), insert(4, "taken")],
            vec![mark(1), insert(5, "five")],
        ];
        let mut answers = Vec::new();
        let group = batches
            .into_iter()
            .map(|statements| {
                let (reply, answer) = oneshot::channel();
                answers.push(answer);
                Job { statements, reply }
            })
            .collect();
        commit_group(&pool, group).await;
        let mut outcomes = Vec::new();
        for answer in answers {
            outcomes.push(answer.await.unwrap());
        }

        assert!(matches!(&outcomes[0], Ok(rows) if rows == &[1]));
        assert!(matches!(outcomes[1], Err(Error::ConditionFailed(1))));
        assert!(
            matches!(&outcomes[2], Err(Error::UniqueViolation(_))),
            "{:?}",
            outcomes[2]
        );
        assert!(matches!(&outcomes[3], Ok(rows) if rows == &[1, 1]));
        let stored: Vec<(i64, Option<i64>)> = sqlx::query("SELECT id, marked FROM t ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        assert_eq!(stored, [(1, Some(1)), (5, None), (100, None)]);
    }

    /// Many writers at once through the queue: every batch answered, every answered
    /// success stored, every failure absent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_batches_are_stored_exactly_when_answered_success() {
        let (_folder, pool) = scratch_table().await;
        let (group_commit, queue) = GroupCommit::new();
        tokio::spawn(serve(pool.clone(), queue));

        let writers: Vec<_> = (0..200i64)
            .map(|id| {
                let group_commit = group_commit.clone();
                tokio::spawn(async move {
                    let statements = if id % 3 == 0 {
                        vec![insert(id, &format!("n{id}")), mark(-1)]
                    } else {
                        vec![insert(id, &format!("n{id}")), mark(id)]
                    };
                    (id, group_commit.batch(statements).await)
                })
            })
            .collect();
        let mut expected = Vec::new();
        for writer in writers {
            let (id, outcome) = writer.await.unwrap();
            if id % 3 == 0 {
                assert!(
                    matches!(outcome, Err(Error::ConditionFailed(1))),
                    "{outcome:?}"
                );
            } else {
                assert!(
                    matches!(&outcome, Ok(rows) if rows == &[1, 1]),
                    "{outcome:?}"
                );
                expected.push(id);
            }
        }
        let stored: Vec<i64> = sqlx::query("SELECT id FROM t WHERE marked = 1 ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(stored, expected);
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM t")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(count, expected.len() as i64);
    }
}
