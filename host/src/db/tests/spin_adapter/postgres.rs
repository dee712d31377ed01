//! A database of one test's own on the server `PORTCULLIS_TEST_POSTGRES_URL` names, for
//! the tests of the adapter and the artifact on the Spin test host's `spin:postgres`
//! (`crate::spin_test_host::postgres`), and whether that server offers TLS.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Connection as _, Executor as _, PgConnection};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

pub use crate::spin_test_host::postgres::POOL_PATIENCE;
use crate::spin_test_host::postgres::SSL_REQUEST;

/// The variable naming the PostgreSQL server the test may use.
const SERVER_VARIABLE: &str = "PORTCULLIS_TEST_POSTGRES_URL";

/// Runs `test` with the URL of a database made for it on the server
/// `PORTCULLIS_TEST_POSTGRES_URL` names, and drops that database afterwards, also when
/// `test` fails. With the variable unset (or blank) it says PostgreSQL was skipped and
/// passes; a set URL that cannot be used fails.
///
/// A URL without `sslmode` gets `sslmode=disable`, as the README tells users of a server
/// whose certificate Spin cannot verify (the test servers' are self-signed);
/// [`server_url`] is the server's URL as given.
pub async fn with_test_database<T>(test: impl FnOnce(String) -> T)
where
    T: Future<Output = ()> + Send + 'static,
{
    let Some(server) = server_url() else {
        println!("skipped PostgreSQL: {SERVER_VARIABLE} is not set");
        return;
    };
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    // Tests run in parallel: a counter tells this process' databases apart.
    static MADE: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "portcullis_spin_test_{since_epoch}_{}_{}",
        std::process::id(),
        MADE.fetch_add(1, Ordering::SeqCst)
    );
    administer(&server, &format!("CREATE DATABASE {name}")).await;
    let mut url = url::Url::parse(&server).unwrap();
    url.set_path(&name);
    if !url.query_pairs().any(|(key, _)| key == "sslmode") {
        url.query_pairs_mut().append_pair("sslmode", "disable");
    }
    let outcome = tokio::spawn(test(url.into())).await;
    administer(
        &server,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await;
    if let Err(error) = outcome {
        match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(error) => panic!("the PostgreSQL test did not finish: {error}"),
        }
    }
}

/// The server's URL as `PORTCULLIS_TEST_POSTGRES_URL` gives it, if set.
pub fn server_url() -> Option<String> {
    std::env::var(SERVER_VARIABLE)
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// Whether the server at `url` answers PostgreSQL's `SSLRequest` with an offer of TLS.
pub async fn offers_tls(url: &str) -> bool {
    let url = url::Url::parse(url).unwrap();
    let host = url
        .host_str()
        .unwrap_or("localhost")
        .trim_matches(['[', ']']);
    let mut stream = TcpStream::connect((host, url.port().unwrap_or(5432)))
        .await
        .unwrap();
    stream.write_all(&SSL_REQUEST).await.unwrap();
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).await.unwrap();
    answer[0] == b'S'
}

/// Runs one statement on the server's own database.
async fn administer(server: &str, statement: &str) {
    let mut connection = PgConnection::connect(server)
        .await
        .unwrap_or_else(|error| panic!("{SERVER_VARIABLE} is set but cannot be used: {error}"));
    connection
        .execute(statement)
        .await
        .unwrap_or_else(|error| panic!("{statement}: {error}"));
    connection.close().await.unwrap();
}
