//! The benchmark's reference for the wasm boundary: the same logic without wasm. The
//! component crate compiled natively behind hyper, with the host's sqlx database as its
//! store (a request runs on tokio's blocking pool, where each store call waits on the
//! async pool), the host's Argon2 kernel, the system clock and OS randomness. It exists
//! only here, to measure what running the rules as a component costs; it is not a way
//! to run Portcullis.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use portcullis::db::{self, Database};
use portcullis_component::app::App;
use portcullis_component::db::Db;
use portcullis_component::http::{self, Body, Request, Response};
use portcullis_component::ports::{self, Argon2Params, Dialect, Rows, Statement, StoreError};
use portcullis_component::settings::Settings;
use tokio::net::TcpListener;
use tokio::runtime::Handle;

/// Serves on a free port of 127.0.0.1 until the process ends; returns `http://ADDR`.
pub async fn serve(
    database: Database,
    settings: &HashMap<String, String>,
) -> anyhow::Result<String> {
    let settings = Settings::from_lookup(|key| settings.get(key).cloned())
        .map_err(|problems| anyhow::anyhow!(problems.join("; ")))?;
    let shared = Arc::new((database, settings));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let shared = Arc::clone(&shared);
                    async move { Ok::<_, Infallible>(answer(shared, request, peer).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(address)
}

async fn answer(
    shared: Arc<(Database, Settings)>,
    request: hyper::Request<Incoming>,
    peer: std::net::SocketAddr,
) -> hyper::Response<Full<Bytes>> {
    let request = read(request, &shared.1, peer).await;
    let handle = Handle::current();
    let response = tokio::task::spawn_blocking(move || {
        let (database, settings) = &*shared;
        let store = BlockingStore { database, handle };
        let app = App {
            db: Db::new(&store),
            env: &NativeEnv,
            settings,
        };
        http::handle(&app, &request)
    })
    .await
    .unwrap_or_else(|_| Response {
        status: 500,
        headers: Vec::new(),
        body: Vec::new(),
    });
    write(response)
}

async fn read(
    request: hyper::Request<Incoming>,
    settings: &Settings,
    peer: std::net::SocketAddr,
) -> Request {
    let (parts, body) = request.into_parts();
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let limit = http::body_limit(settings, &method, &path);
    let mut headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    headers.push((http::header::CLIENT_ADDR.to_owned(), peer.to_string()));
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => Body::Complete(collected.to_bytes().to_vec()),
        Err(_) => Body::TooLarge,
    };
    Request {
        method,
        path,
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers,
        body,
    }
}

fn write(response: Response) -> hyper::Response<Full<Bytes>> {
    let mut builder = hyper::Response::builder().status(response.status);
    for (name, value) in &response.headers {
        builder = builder.header(name, value);
    }
    builder
        .body(Full::new(Bytes::from(response.body)))
        .unwrap_or_default()
}

/// The host's database as the component's synchronous store.
struct BlockingStore<'a> {
    database: &'a Database,
    handle: Handle,
}

impl ports::Store for BlockingStore<'_> {
    fn dialect(&self) -> Dialect {
        match self.database.dialect() {
            db::SqlDialect::Sqlite => Dialect::Sqlite,
            db::SqlDialect::Postgres => Dialect::Postgres,
            db::SqlDialect::Mysql => Dialect::Mysql,
        }
    }

    fn query(&self, sql: &str, params: &[ports::Value]) -> Result<Rows, StoreError> {
        let rows = self
            .handle
            .block_on(self.database.query(sql, params.iter().map(to_db).collect()))
            .map_err(from_db_error)?;
        Ok(Rows {
            columns: rows.columns,
            rows: rows
                .rows
                .into_iter()
                .map(|row| row.into_iter().map(from_db).collect())
                .collect(),
        })
    }

    fn execute(&self, sql: &str, params: &[ports::Value]) -> Result<u64, StoreError> {
        self.handle
            .block_on(
                self.database
                    .execute(sql, params.iter().map(to_db).collect()),
            )
            .map_err(from_db_error)
    }

    fn batch(&self, statements: &[Statement]) -> Result<Vec<u64>, StoreError> {
        let statements = statements
            .iter()
            .map(|statement| db::Statement {
                sql: statement.sql.clone(),
                params: statement.params.iter().map(to_db).collect(),
                expect_rows: statement.expect_rows,
            })
            .collect();
        self.handle
            .block_on(self.database.batch(statements))
            .map_err(from_db_error)
    }
}

fn to_db(value: &ports::Value) -> db::Value {
    match value {
        ports::Value::Null => db::Value::Null,
        ports::Value::Integer(x) => db::Value::Integer(*x),
        ports::Value::Real(x) => db::Value::Real(*x),
        ports::Value::Text(x) => db::Value::Text(x.clone()),
        ports::Value::Blob(x) => db::Value::Blob(x.clone()),
    }
}

fn from_db(value: db::Value) -> ports::Value {
    match value {
        db::Value::Null => ports::Value::Null,
        db::Value::Integer(x) => ports::Value::Integer(x),
        db::Value::Real(x) => ports::Value::Real(x),
        db::Value::Text(x) => ports::Value::Text(x),
        db::Value::Blob(x) => ports::Value::Blob(x),
    }
}

fn from_db_error(error: db::Error) -> StoreError {
    match error {
        db::Error::UniqueViolation(name) => StoreError::UniqueViolation(name),
        db::Error::ConditionFailed(index) => StoreError::ConditionFailed(index),
        db::Error::Unavailable(reason) => StoreError::Unavailable(reason),
        db::Error::Other(reason) => StoreError::Other(reason),
    }
}

/// The system clock, OS randomness and the host's Argon2 kernel.
struct NativeEnv;

impl ports::Env for NativeEnv {
    fn now_millis(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| {
                i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
            })
    }

    fn random_bytes(&self, len: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; len];
        rand::fill(&mut bytes[..]);
        bytes
    }

    fn argon2(
        &self,
        password: &[u8],
        salt: &[u8],
        params: &Argon2Params,
    ) -> Result<Vec<u8>, String> {
        ports::native_argon2(password, salt, params)
    }
}
