//! The adapter on Spin's pooled PostgreSQL clients ([`super::postgres`]): what a client
//! keeps when its instance ends must not reach the next instance that gets it, no wait
//! is without a bound, and concurrent first calls on a fresh database take turns on the
//! migration. Each test runs on a database of its own, with a pool smaller than its
//! concurrency.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection as _, Executor as _, PgConnection};

use super::SpinAdapter;
use super::postgres::{self, POOL_PATIENCE};
use crate::db::{Error, Statement, Value};

/// The key of the adapter's migration lock (`spin/store-adapter/src/store.rs`).
const MIGRATION_LOCK_KEY: i64 = 0x706f_7274_6375_6c6c;

fn adapter(url: &str, pool_size: usize) -> (Arc<SpinAdapter>, tempfile::TempDir) {
    let folder = tempfile::tempdir().unwrap();
    let adapter = SpinAdapter::with_pool(&folder.path().join("unused.db"), url, pool_size);
    (Arc::new(adapter), folder)
}

fn statement(sql: &str) -> Statement {
    Statement {
        sql: sql.to_owned(),
        params: Vec::new(),
        expect_rows: None,
    }
}

/// Sessions of the test's database (other than the asking one) in the given state.
async fn sessions_in(side: &mut PgConnection, state_like: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND pid <> pg_backend_pid() AND state LIKE $1",
    )
    .bind(state_like)
    .fetch_one(side)
    .await
    .unwrap()
}

/// Waits until some session of the test's database waits for a lock.
async fn until_a_session_waits_for_a_lock(side: &mut PgConnection) {
    let deadline = tokio::time::Instant::now() + POOL_PATIENCE;
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut *side)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no session ever waited for the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_cut_short_by_its_instance_ending_is_never_applied() {
    postgres::with_test_database(|url| async move {
        // One client: the next instance gets the very client the cut one returned.
        let (adapter, _folder) = adapter(&url, 1);
        adapter
            .execute_once(
                "CREATE TABLE cut (id BIGINT PRIMARY KEY, note TEXT NOT NULL)",
                Vec::new(),
            )
            .await
            .unwrap();
        adapter
            .execute_once(
                "INSERT INTO cut (id, note) VALUES (1, 'before'), (2, 'before')",
                Vec::new(),
            )
            .await
            .unwrap();

        // Another session holds row 2, so the batch stops after changing row 1 …
        let mut side = PgConnection::connect(&url).await.unwrap();
        side.execute("BEGIN").await.unwrap();
        side.execute("SELECT id FROM cut WHERE id = 2 FOR UPDATE")
            .await
            .unwrap();
        let cut = tokio::spawn({
            let adapter = Arc::clone(&adapter);
            async move {
                adapter
                    .batch_once(vec![
                        statement("UPDATE cut SET note = 'cut' WHERE id = 1"),
                        statement("UPDATE cut SET note = 'cut' WHERE id = 2"),
                    ])
                    .await
            }
        });
        let mut watcher = PgConnection::connect(&url).await.unwrap();
        until_a_session_waits_for_a_lock(&mut watcher).await;
        // … and its instance ends there (a trap, or Spin aborting the call): the client
        // goes back to the pool inside the batch's transaction.
        cut.abort();
        assert!(cut.await.unwrap_err().is_cancelled());
        side.execute("ROLLBACK").await.unwrap();
        side.close().await.unwrap();

        // The next instance gets that client and commits a batch of its own.
        adapter
            .batch_once(vec![statement(
                "INSERT INTO cut (id, note) VALUES (3, 'next')",
            )])
            .await
            .unwrap();

        let notes: Vec<(i64, String)> = sqlx::query_as("SELECT id, note FROM cut ORDER BY id")
            .fetch_all(&mut watcher)
            .await
            .unwrap();
        assert_eq!(
            notes,
            [
                (1, "before".to_owned()),
                (2, "before".to_owned()),
                (3, "next".to_owned())
            ],
            "nothing of the cut batch was applied"
        );
        assert_eq!(
            sessions_in(&mut watcher, "idle in transaction%").await,
            0,
            "no pooled client is left inside a transaction"
        );
        watcher.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_migration_lock_answers_unavailable_not_never() {
    postgres::with_test_database(|url| async move {
        let (adapter, _folder) = adapter(&url, 2);
        // A migration that never ends holds the lock (its client stranded in a pool).
        let mut side = PgConnection::connect(&url).await.unwrap();
        side.execute("BEGIN").await.unwrap();
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .execute(&mut side)
            .await
            .unwrap();

        let first = tokio::time::timeout(
            POOL_PATIENCE,
            adapter.query_once("SELECT COUNT(*) AS n FROM users", Vec::new()),
        )
        .await
        .unwrap_or_else(|_| panic!("the first call waited for the migration lock without a bound"));
        assert!(
            matches!(&first, Err(Error::Unavailable(_))),
            "a wait past the bound is `unavailable` (503): {first:?}"
        );

        side.execute("ROLLBACK").await.unwrap();
        side.close().await.unwrap();
        let after = adapter
            .query_once("SELECT COUNT(*) AS n FROM users", Vec::new())
            .await;
        assert!(
            after.is_ok(),
            "once the lock is free, the migration runs: {after:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_calls_on_a_fresh_database_take_turns_on_the_migration() {
    postgres::with_test_database(|url| async move {
        const CALLS: usize = 24;
        let (adapter, _folder) = adapter(&url, 3);
        let calls: Vec<_> = (0..CALLS)
            .map(|index| {
                let adapter = Arc::clone(&adapter);
                tokio::spawn(async move {
                    if index % 2 == 0 {
                        adapter
                            .query_once("SELECT COUNT(*) AS n FROM users", Vec::new())
                            .await
                            .map(|_| ())
                    } else {
                        adapter
                            .batch_once(vec![Statement {
                                sql: "INSERT INTO rate_counters (bucket, count, window_end) \
                                      VALUES ($1, 1, 0)"
                                    .to_owned(),
                                params: vec![Value::Text(format!("turns-{index}"))],
                                expect_rows: Some(1),
                            }])
                            .await
                            .map(|_| ())
                    }
                })
            })
            .collect();
        for call in calls {
            let outcome = call.await.unwrap();
            assert!(outcome.is_ok(), "{outcome:?}");
        }

        let mut watcher = PgConnection::connect(&url).await.unwrap();
        let versions: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT version, COUNT(*) FROM _sqlx_migrations GROUP BY version ORDER BY version",
        )
        .fetch_all(&mut watcher)
        .await
        .unwrap();
        assert!(!versions.is_empty());
        assert!(
            versions.iter().all(|(_, count)| *count == 1),
            "{versions:?}"
        );
        assert_eq!(
            sessions_in(&mut watcher, "idle in transaction%").await,
            0,
            "no pooled client is left inside a transaction"
        );
        watcher.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn spin_tries_tls_first_unless_the_url_says_sslmode_disable() {
    let Some(server) = postgres::server_url() else {
        println!("skipped PostgreSQL: PORTCULLIS_TEST_POSTGRES_URL is not set");
        return;
    };
    if server.contains("sslmode=") {
        println!("skipped: the server URL names its sslmode");
        return;
    }
    let (adapter, _folder) = adapter(&server, 1);
    let outcome = adapter.query_once("SELECT 1 AS one", Vec::new()).await;
    if postgres::offers_tls(&server).await {
        // The test servers' certificates are self-signed, or name `localhost` and not the
        // URL's address: Spin refuses them, the adapter says `unavailable`.
        match &outcome {
            Ok(_) => println!("the server's certificate verified for {server}"),
            Err(Error::Unavailable(message)) => {
                assert!(message.contains("certificate verify failed"), "{message}");
            }
            Err(other) => panic!("a TLS failure is `unavailable`: {other:?}"),
        }
    } else {
        assert!(
            outcome.is_ok(),
            "without TLS, `prefer` connects: {outcome:?}"
        );
    }
}
