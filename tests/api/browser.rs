//! A real browser on cookie sessions: headless Chromium (Debian's `chromium` and
//! `chromium-driver`), driven through WebDriver, opens a small web app that this test
//! serves on another origin of the same site (127.0.0.1, another port): the README's
//! "Web apps" client as written. The app logs in
//! with `X-Portcullis-Session: cookie`, refreshes after a reload with
//! `fetch(…, {credentials: "include"})` and `X-CSRF-Token`, and logs out by cookie; the
//! page never sees the refresh token (`document.cookie` holds only the CSRF cookie).
//!
//! Outside CI a missing browser skips the test with a printed reason; in CI (`CI=true`)
//! it is a failure. It runs on SQLite only: the browser adds nothing a database changes.

use std::convert::Infallible;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::support::{TestApp, unique_user};

/// Chromium's switches for a headless run in a container.
const CHROMIUM_ARGS: [&str; 6] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    // Containers give /dev/shm little room; Chromium then crashes without this.
    "--disable-dev-shm-usage",
];

/// How long chromedriver may take to answer its first request.
const DRIVER_STARTUP: Duration = Duration::from_secs(30);

/// The README's section whose client the page runs.
const README_SECTION: &str = "## Web apps";
/// The API origin the README's client names; the page gets the test app's instead.
const README_API: &str = "\"http://127.0.0.1:8080\"";

/// The web app: the README's "Web apps" client as written (its first `js` block), with
/// the test app's address for `API`.
fn page(api: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("read README.md");
    let section = readme
        .split_once(README_SECTION)
        .map(|(_, rest)| rest)
        .expect("README.md has a \"Web apps\" section");
    let script = section
        .split_once("```js\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(script, _)| script)
        .expect("the \"Web apps\" section has a js block");
    assert!(
        script.contains(README_API),
        "the README's client names {README_API}"
    );
    let script = script.replace(README_API, &format!("\"{api}\""));
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Web app</title></head>\n\
         <body><p>A web app on cookie sessions.</p>\n<script>\n{script}</script></body></html>\n"
    )
}

/// Chromium and chromedriver, when both are installed.
struct Browser {
    chromium: PathBuf,
    chromedriver: PathBuf,
}

/// The first of `names` found on `PATH`.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|folder| names.iter().map(move |name| folder.join(name)))
        .find(|candidate| candidate.is_file())
}

/// The browser, or `None` (with the reason printed) when it is missing outside CI.
/// In CI a missing browser fails the test.
fn browser() -> Option<Browser> {
    let chromium = on_path(&["chromium", "chromium-browser"]);
    let chromedriver = on_path(&["chromedriver"]);
    match (chromium, chromedriver) {
        (Some(chromium), Some(chromedriver)) => Some(Browser {
            chromium,
            chromedriver,
        }),
        _ if std::env::var("CI").is_ok_and(|value| value == "true") => {
            panic!("CI=true but chromium or chromedriver is missing (.ci/run installs them)")
        }
        _ => {
            eprintln!(
                "browser test skipped: chromium or chromedriver is not installed \
                 (apt-get install chromium chromium-driver)"
            );
            None
        }
    }
}

/// A free local port (bound and released; chromedriver takes it right after).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// chromedriver, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(chromedriver: &PathBuf) -> Driver {
        let port = free_port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let status = format!("{}/status", driver.url);
        let deadline = Instant::now() + DRIVER_STARTUP;
        while reqwest::blocking::get(&status).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves `page` at every path of `listener`, until the runtime ends.
async fn serve_page(listener: tokio::net::TcpListener, page: String) {
    let page = Bytes::from(page);
    while let Ok((stream, _)) = listener.accept().await {
        let page = page.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_request| {
                let page = page.clone();
                async move {
                    let response = hyper::Response::builder()
                        .header("content-type", "text/html; charset=utf-8")
                        .body(Full::new(page))
                        .expect("a static response");
                    Ok::<_, Infallible>(response)
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            let _ = connection.await;
        });
    }
}

/// Runs one of the page's functions with `arguments` and waits for its `{status, body}`.
async fn run(client: &Client, function: &str, arguments: Vec<Value>) -> Value {
    let script = format!(
        "const done = arguments[arguments.length - 1];\
         {function}(...Array.from(arguments).slice(0, -1))\
           .then(done, (error) => done({{ error: String(error) }}));"
    );
    let answer = client
        .execute_async(&script, arguments)
        .await
        .unwrap_or_else(|error| panic!("{function}() in the page: {error}"));
    assert!(answer.get("error").is_none(), "{function}(): {answer}");
    answer
}

/// `document.cookie` as the page sees it.
async fn page_cookies(client: &Client) -> String {
    let cookies = client
        .execute("return document.cookie;", vec![])
        .await
        .expect("document.cookie");
    cookies.as_str().unwrap_or_default().to_string()
}

/// The cookie names in a `document.cookie` string.
fn cookie_names(cookies: &str) -> Vec<String> {
    cookies
        .split(';')
        .filter_map(|pair| pair.split('=').next())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .collect()
}

/// The web app's story in the browser.
async fn web_app_story(client: &Client, page_url: &str, login: &str, password: &str) {
    client.goto(page_url).await.expect("open the web app");
    let answer = run(client, "login", vec![json!(login), json!(password)]).await;
    assert_eq!(answer["status"], 200, "login: {answer}");
    assert!(
        answer["body"].get("refresh_token").is_none(),
        "login: {answer}"
    );
    assert!(
        answer["body"]["access_token"].is_string(),
        "login: {answer}"
    );
    let old_access = answer["body"]["access_token"].clone();
    assert_eq!(
        cookie_names(&page_cookies(client).await),
        ["portcullis_csrf"],
        "the page must see the CSRF cookie only"
    );

    // A reload loses the access token; the refresh cookie brings a new one.
    client.refresh().await.expect("reload the page");
    let me = run(client, "me", vec![]).await;
    assert_eq!(me["status"], 401, "no access token after a reload: {me}");
    let refreshed = run(client, "refresh", vec![]).await;
    assert_eq!(refreshed["status"], 200, "refresh: {refreshed}");
    assert!(
        refreshed["body"].get("refresh_token").is_none(),
        "{refreshed}"
    );
    assert_ne!(refreshed["body"]["access_token"], old_access);
    let me = run(client, "me", vec![]).await;
    assert_eq!(me["status"], 200, "me: {me}");
    assert_eq!(me["body"]["username"], login, "me: {me}");
    assert_eq!(
        cookie_names(&page_cookies(client).await),
        ["portcullis_csrf"],
        "after the refresh"
    );

    let logout = run(client, "logout", vec![]).await;
    assert_eq!(logout["status"], 204, "logout: {logout}");
    assert_eq!(page_cookies(client).await, "", "cookies left after logout");
    let again = run(client, "refresh", vec![]).await;
    assert_eq!(again["status"], 401, "refresh after logout: {again}");
}

api_tests! {
    /// Headless Chromium logs in on cookie sessions from another origin, refreshes after
    /// a reload without the page ever seeing the refresh token, and logs out.
    fn a_web_app_logs_in_refreshes_after_a_reload_and_logs_out_with_cookies() {
        let Some(browser) = browser() else {
            return;
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let page_listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind the web app's port");
        let page_origin = format!(
            "http://127.0.0.1:{}",
            page_listener.local_addr().expect("address").port()
        );
        let app = TestApp::spawn_with(&[
            ("PORTCULLIS_COOKIE_SESSIONS", "true"),
            ("PORTCULLIS_CORS_ORIGINS", &page_origin),
        ]);
        let user = unique_user();
        app.register_user(&user);
        runtime.spawn(serve_page(page_listener, page(&app.address)));

        let driver = Driver::start(&browser.chromedriver);
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({"binary": browser.chromium, "args": CHROMIUM_ARGS}),
        );
        runtime.block_on(async {
            let client = ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities)
                .connect(&driver.url)
                .await
                .expect("a WebDriver session with chromium");
            // The story runs as a task of its own, so that the browser is closed even
            // when it fails.
            let story = tokio::spawn({
                let (client, page) = (client.clone(), format!("{page_origin}/"));
                let (login, password) = (user.username.clone(), user.password.clone());
                async move { web_app_story(&client, &page, &login, &password).await }
            });
            let outcome = story.await;
            client.close().await.expect("close the browser");
            if let Err(failure) = outcome {
                std::panic::resume_unwind(failure.into_panic());
            }
        });
    }
}
