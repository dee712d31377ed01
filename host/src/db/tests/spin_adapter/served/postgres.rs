//! The Spin artifact served on PostgreSQL through the pooled `spin:postgres` of the test
//! host, under concurrent load, with fewer pooled clients than requests in flight: on a
//! fresh database (every first request wants the migration: they take turns) and on one
//! migrated beforehand as `portcullis migrate` does; and a migration lock held elsewhere
//! answered with 503, not a hang.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value as Json, json};
use sqlx::{Connection as _, Executor as _, PgConnection};
use tokio::net::TcpListener;

use super::super::postgres::{self as spin_postgres, POOL_PATIENCE};
use super::{JWT_SECRET, PASSWORD, Served, serve, settled};
use crate::db::Database;
use crate::settings::DatabaseSettings;
use crate::spin_test_host::postgres::POOL_SIZE;

/// Users registering, logging in and refreshing at the same time.
const USERS: usize = 12;
/// The key of the adapter's migration lock (`spin/store-adapter/src/store.rs`).
const MIGRATION_LOCK_KEY: i64 = 0x706f_7274_6375_6c6c;

/// The artifact on the database `url`, behind a listener.
struct OnPostgres {
    api: String,
    served: Arc<Served>,
    client: reqwest::Client,
    _folder: tempfile::TempDir,
}

impl OnPostgres {
    async fn start(url: &str) -> Self {
        let folder = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = format!("http://{}", listener.local_addr().unwrap());
        let settings: HashMap<String, String> = [
            ("jwt_secret", JWT_SECRET),
            ("database_url", url),
            ("public_url", &api),
            // Every request comes from 127.0.0.1: the per-IP limit would answer 429.
            ("rate_limit", "100000/60"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
        let served = Arc::new(super::served(settings, &folder.path().join("unused.db")));
        tokio::spawn(serve(Arc::clone(&served), listener));
        Self {
            api,
            served,
            client: reqwest::Client::new(),
            _folder: folder,
        }
    }

    async fn post(&self, path: &str, body: Json, bearer: Option<&str>) -> (u16, Json) {
        let mut request = self.client.post(format!("{}{path}", self.api)).json(&body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Json::Null))
    }

    async fn get(&self, path: &str, bearer: Option<&str>) -> (u16, Json) {
        let mut request = self.client.get(format!("{}{path}", self.api));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Json::Null))
    }

    /// Waits until every instance has ended, the relay's work after the response
    /// included.
    async fn settled(&self) {
        settled(&self.served, POOL_PATIENCE).await;
    }

    fn log(&self) -> String {
        self.served.log()
    }
}

/// One user's way through the API: register (with /health alongside), then log in,
/// verify, refresh, verify with the new token, log out, and find the token refused.
async fn one_user(served: Arc<OnPostgres>, index: usize) {
    let username = format!("burst_{index}");
    let (health, _) = served.get("/health", None).await;
    assert_eq!(health, 200, "/health");
    let (status, body) = served
        .post(
            "/api/v1/auth/register",
            json!({"username": username, "email": format!("burst{index}@example.com"),
                   "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(status, 201, "register {username}: {body}");

    let (status, login) = served
        .post(
            "/api/v1/auth/login",
            json!({"login": username, "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(status, 200, "login {username}: {login}");
    let access = login["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let refresh = login["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (status, verified) = served.get("/api/v1/auth/verify", Some(&access)).await;
    assert_eq!(status, 200, "verify {username}: {verified}");
    assert_eq!(verified["username"], username.as_str());

    let (status, rotated) = served
        .post(
            "/api/v1/auth/refresh",
            json!({"refresh_token": refresh}),
            None,
        )
        .await;
    assert_eq!(status, 200, "refresh {username}: {rotated}");
    let access = rotated["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (status, _) = served.get("/api/v1/auth/verify", Some(&access)).await;
    assert_eq!(status, 200, "verify after refresh {username}");

    let (status, _) = served
        .post("/api/v1/auth/logout", Json::Null, Some(&access))
        .await;
    assert_eq!(status, 204, "logout {username}");
    let (status, _) = served.get("/api/v1/auth/verify", Some(&access)).await;
    assert_eq!(status, 401, "a logged-out token {username}");
}

/// [`USERS`] users at once, then the database's state: every user, no session left
/// inside a transaction, no more connections than the pool allows.
async fn burst(url: String) {
    let served = Arc::new(OnPostgres::start(&url).await);
    let users: Vec<_> = (0..USERS)
        .map(|index| tokio::spawn(one_user(Arc::clone(&served), index)))
        .collect();
    let mut failures = Vec::new();
    for user in users {
        if let Err(error) = user.await {
            failures.push(error.to_string());
        }
    }
    if !failures.is_empty() {
        eprintln!("Spin's log:\n{}", served.log());
        panic!("{} of {USERS} users failed: {failures:#?}", failures.len());
    }
    served.settled().await;

    let mut watcher = PgConnection::connect(&url).await.unwrap();
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&mut watcher)
        .await
        .unwrap();
    assert_eq!(users, i64::try_from(USERS).unwrap());
    let (connections, in_transaction): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE state LIKE 'idle in transaction%') \
         FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(&mut watcher)
    .await
    .unwrap();
    assert_eq!(in_transaction, 0, "no client is left inside a transaction");
    assert!(
        connections <= i64::try_from(POOL_SIZE).unwrap(),
        "{connections} connections for a pool of {}",
        POOL_SIZE
    );
    watcher.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_artifact_on_postgres_serves_concurrent_users_on_a_fresh_database() {
    spin_postgres::with_test_database(burst).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_artifact_on_postgres_serves_concurrent_users_on_a_migrated_database() {
    spin_postgres::with_test_database(|url| async move {
        // As `portcullis migrate` does.
        let settings = DatabaseSettings {
            url: url.clone(),
            max_connections: 1,
        };
        let native = Database::connect(&settings).await.unwrap();
        native.migrate().await.unwrap();
        native.close().await;
        burst(url).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_migration_lock_is_answered_503_and_then_served() {
    spin_postgres::with_test_database(|url| async move {
        let served = OnPostgres::start(&url).await;
        let mut side = PgConnection::connect(&url).await.unwrap();
        side.execute("BEGIN").await.unwrap();
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .execute(&mut side)
            .await
            .unwrap();
        let (status, body) = tokio::time::timeout(POOL_PATIENCE, served.get("/health", None))
            .await
            .unwrap_or_else(|_| panic!("/health waited for the migration lock without a bound"));
        assert_eq!(status, 503, "{body}");

        side.execute("ROLLBACK").await.unwrap();
        side.close().await.unwrap();
        let (status, body) = served.get("/health", None).await;
        assert_eq!(status, 200, "{body}");
    })
    .await;
}
