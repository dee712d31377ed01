//! The Spin artifact (`target/spin/portcullis.wasm`, built by `spin/compose` as
//! `spin build` does) served over real HTTP by the Spin test host
//! (`crate::spin_test_host::served`), with `spin:sqlite` on a temporary file. A webhook (a small HTTP server
//! here) receives the mail the artifact's relay POSTs; without one, the relay writes mail to Spin's log (the components'
//! stderr, kept here) unless `mail_log` is false. [`postgres`] serves it on PostgreSQL under concurrent load.

mod postgres;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value as Json, json};
use sqlx::ConnectOptions as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use wasmtime::component::Component;
use wasmtime::{Config, Engine};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use super::{spin_target, workspace};
use crate::spin_test_host::postgres::POOL_SIZE;
use crate::spin_test_host::served::{Log, Served, serve};

/// The bearer token the webhook expects.
const HOOK_TOKEN: &str = "hook-token-for-tests";
/// The JWT secret of the served artifact.
const JWT_SECRET: &str = "a-test-secret-of-more-than-thirty-two-bytes-0123456789";
/// The `mail_from` setting.
const FROM: &str = "Portcullis on Spin <auth@spin.example>";
/// The password of every user the tests register.
const PASSWORD: &str = "Spin-Relay-42";
/// How long a test waits for something the relay does after a response.
const PATIENCE: Duration = Duration::from_secs(60);

/// The artifact as `spin build` makes it (once per test run).
fn artifact() -> &'static Path {
    static ARTIFACT: OnceLock<PathBuf> = OnceLock::new();
    ARTIFACT.get_or_init(build_artifact)
}

fn build_artifact() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace())
        .args(["run", "--release", "-p", "portcullis-spin-compose"])
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .status()
        .unwrap();
    assert!(status.success(), "building the Spin artifact failed");
    spin_target().join("portcullis.wasm")
}

/// The artifact, compiled once per test run, with the test's `variables` and Spin's
/// log kept in memory.
fn served(variables: HashMap<String, String>, database_file: &Path) -> Served {
    static COMPILED: OnceLock<(Engine, Component)> = OnceLock::new();
    let (engine, component) = COMPILED.get_or_init(|| {
        let engine = Engine::new(&Config::new()).unwrap();
        let component = Component::from_file(&engine, artifact()).unwrap();
        (engine, component)
    });
    let log = Log::Memory(MemoryOutputPipe::new(1 << 20));
    Served::new(engine, component, variables, database_file, POOL_SIZE, log).unwrap()
}

/// Waits (at most `patience`) until every instance of `served` has ended, the relay's
/// work after the response included.
async fn settled(served: &Served, patience: Duration) {
    let deadline = tokio::time::Instant::now() + patience;
    while served.running() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the artifact is still running"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the webhook received in one POST.
#[derive(Debug)]
struct Delivery {
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Json,
}

/// A webhook answering every POST with `status` and passing what it got to `deliveries`.
async fn webhook(
    listener: TcpListener,
    status: StatusCode,
    deliveries: mpsc::UnboundedSender<Delivery>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let deliveries = deliveries.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let deliveries = deliveries.clone();
            async move {
                let header = |name: &str| {
                    request
                        .headers()
                        .get(name)
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_owned)
                };
                let authorization = header("authorization");
                let content_type = header("content-type");
                let path = request.uri().path().to_owned();
                let body = request.into_body().collect().await?.to_bytes();
                let _ = deliveries.send(Delivery {
                    path,
                    authorization,
                    content_type,
                    body: serde_json::from_slice(&body).unwrap_or(Json::Null),
                });
                let mut answer = Response::new(Empty::<Bytes>::new());
                *answer.status_mut() = status;
                Ok::<_, hyper::Error>(answer)
            }
        });
        tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
    }
}

/// Where the served artifact's mail goes.
enum MailRoute {
    /// To a webhook that answers every POST with this status.
    Webhook(StatusCode),
    /// No webhook; `mail_log` as given (`None`: unset, as its default).
    NoWebhook { mail_log: Option<&'static str> },
}

/// A served artifact with email verification required and `mail_from` set.
struct Scenario {
    api: String,
    served: Arc<Served>,
    deliveries: mpsc::UnboundedReceiver<Delivery>,
    database_file: PathBuf,
    client: reqwest::Client,
    _folder: tempfile::TempDir,
}

impl Scenario {
    async fn start(mail: MailRoute) -> Self {
        let folder = tempfile::tempdir().unwrap();
        let database_file = folder.path().join("spin.db");
        let api_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = format!("http://{}", api_listener.local_addr().unwrap());
        let mut settings: HashMap<String, String> = [
            ("jwt_secret", JWT_SECRET),
            ("database_url", ""),
            ("require_email_verification", "true"),
            ("public_url", &api),
            ("mail_from", FROM),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
        let (sender, deliveries) = mpsc::unbounded_channel();
        match mail {
            MailRoute::Webhook(hook_status) => {
                let hook_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let hook = hook_listener.local_addr().unwrap();
                tokio::spawn(webhook(hook_listener, hook_status, sender));
                settings.insert(
                    "mail_webhook_url".to_owned(),
                    format!("http://{hook}/hooks/mail?from=spin"),
                );
                settings.insert("mail_webhook_token".to_owned(), HOOK_TOKEN.to_owned());
            }
            MailRoute::NoWebhook { mail_log } => {
                if let Some(mail_log) = mail_log {
                    settings.insert("mail_log".to_owned(), mail_log.to_owned());
                }
            }
        }
        let served = Arc::new(served(settings, &database_file));
        tokio::spawn(serve(Arc::clone(&served), api_listener));
        Self {
            api,
            served,
            deliveries,
            database_file,
            client: reqwest::Client::new(),
            _folder: folder,
        }
    }

    async fn register(&self, username: &str, email: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/api/v1/auth/register", self.api))
            .json(&json!({"username": username, "email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap()
    }

    async fn login(&self, login: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/api/v1/auth/login", self.api))
            .json(&json!({"login": login, "password": PASSWORD}))
            .send()
            .await
            .unwrap()
    }

    /// Posts the verification form with `token`.
    async fn verify_email(&self, token: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/verify-email", self.api))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
            .await
            .unwrap()
    }

    async fn next_delivery(&mut self) -> Delivery {
        tokio::time::timeout(PATIENCE, self.deliveries.recv())
            .await
            .expect("no mail reached the webhook")
            .expect("the webhook stopped")
    }

    /// The outbox row of a mail: (sent_at, attempts, last_error), once `settled` holds
    /// for it (the relay records outcomes after the response, so this waits for it).
    async fn outbox_row(
        &self,
        id: &str,
        settled: impl Fn(&(Option<i64>, i64, Option<String>)) -> bool,
    ) -> (Option<i64>, i64, Option<String>) {
        let mut connection = self.database().await;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let row: (Option<i64>, i64, Option<String>) =
                sqlx::query_as("SELECT sent_at, attempts, last_error FROM outbox WHERE id = ?")
                    .bind(id)
                    .fetch_one(&mut connection)
                    .await
                    .unwrap();
            if settled(&row) || tokio::time::Instant::now() > deadline {
                return row;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The id and claim of the one mail to `address` in the outbox.
    async fn mail_to(&self, address: &str) -> (String, Option<String>) {
        sqlx::query_as("SELECT id, claim FROM outbox WHERE recipient = ?")
            .bind(address)
            .fetch_one(&mut self.database().await)
            .await
            .unwrap()
    }

    async fn database(&self) -> SqliteConnection {
        SqliteConnectOptions::new()
            .filename(&self.database_file)
            .connect()
            .await
            .unwrap()
    }

    /// Waits until every instance has ended, the relay's work after the response
    /// included.
    async fn settled(&self) {
        settled(&self.served, PATIENCE).await;
    }

    /// What the artifact wrote to Spin's log so far.
    fn log(&self) -> String {
        self.served.log()
    }
}

impl Drop for Scenario {
    /// Shows Spin's log when a test fails.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("Spin's log:\n{}", self.log());
        }
    }
}

/// The token of the verification link in a mail's text.
fn link_token(text: &str, api: &str) -> String {
    page_link_token(text, api, "verify-email")
}

/// The token of the link to `page` (`verify-email`, `reset-password`) in a mail's text.
fn page_link_token(text: &str, api: &str, page: &str) -> String {
    let prefix = format!("{api}/{page}?token=");
    let start = text
        .find(&prefix)
        .unwrap_or_else(|| panic!("no link in {text:?}"))
        + prefix.len();
    text[start..]
        .chars()
        .take_while(|character| character.is_ascii_alphanumeric() || "-_.~%".contains(*character))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spin_artifact_serves_the_api_and_mails_through_the_webhook() {
    let mut scenario = Scenario::start(MailRoute::Webhook(StatusCode::OK)).await;
    let api = scenario.api.clone();

    let registered = scenario
        .register("spin_user", "Spin.User@Example.com")
        .await;
    assert_eq!(registered.status(), 201);
    let registered: Json = registered.json().await.unwrap();
    assert_eq!(registered["verification_required"], true, "{registered}");

    let mail = scenario.next_delivery().await;
    assert_eq!(mail.path, "/hooks/mail");
    assert_eq!(
        mail.authorization.as_deref(),
        Some(format!("Bearer {HOOK_TOKEN}").as_str())
    );
    assert_eq!(mail.content_type.as_deref(), Some("application/json"));
    assert_eq!(mail.body["to"], "spin.user@example.com", "{}", mail.body);
    assert_eq!(mail.body["from"], FROM, "{}", mail.body);
    for field in ["id", "subject", "html"] {
        assert!(
            mail.body[field]
                .as_str()
                .is_some_and(|value| !value.is_empty()),
            "{field}: {}",
            mail.body
        );
    }
    let text = mail.body["text"].as_str().unwrap_or_default();
    let token = link_token(text, &api);
    assert!(!token.is_empty(), "{text}");

    let refused = scenario.login("spin_user").await;
    assert_eq!(refused.status(), 403);
    let refused: Json = refused.json().await.unwrap();
    assert_eq!(refused["code"], "email_not_verified");

    let page = scenario
        .client
        .get(format!("{api}/verify-email?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<form"));
    assert_eq!(scenario.verify_email(&token).await.status(), 200);

    let login = scenario.login("spin_user").await;
    assert_eq!(login.status(), 200);
    let login: Json = login.json().await.unwrap();
    let access = login["access_token"].as_str().unwrap_or_default();
    let checked = scenario
        .client
        .get(format!("{api}/api/v1/auth/verify"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(checked.status(), 200);
    let checked: Json = checked.json().await.unwrap();
    assert_eq!(checked["valid"], true);
    assert_eq!(checked["username"], "spin_user");
    enrols_and_logs_in_with_a_code(&scenario, access).await;

    let id = mail.body["id"].as_str().unwrap_or_default();
    let (sent_at, attempts, last_error) = scenario
        .outbox_row(id, |(sent_at, _, _)| sent_at.is_some())
        .await;
    assert!(sent_at.is_some(), "the relay recorded the delivery");
    assert_eq!((attempts, last_error), (0, None));
    assert!(
        scenario.deliveries.try_recv().is_err(),
        "the mail came once"
    );
}

/// Two-factor authentication through the artifact (API.md §8): `spin_user` enrols,
/// confirms with a code, and a login then takes the second step with the next code.
async fn enrols_and_logs_in_with_a_code(scenario: &Scenario, access: &str) {
    use portcullis_component::mfa::totp;
    let post = |path: &str, bearer: Option<&str>, body: Json| {
        let request = scenario.client.post(format!("{}{path}", scenario.api));
        let request = match bearer {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        request.json(&body).send()
    };
    let enrolment = post(
        "/api/v1/users/me/mfa/totp",
        Some(access),
        json!({ "password": PASSWORD }),
    )
    .await
    .unwrap();
    assert_eq!(enrolment.status(), 200);
    let enrolment: Json = enrolment.json().await.unwrap();
    let secret = data_encoding::BASE32_NOPAD
        .decode(enrolment["secret"].as_str().unwrap_or_default().as_bytes())
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let code = |offset: i64| totp::code(&secret, totp::step_at(now) + offset, totp::DIGITS);
    let confirmed = post(
        "/api/v1/users/me/mfa/totp/confirm",
        Some(access),
        json!({ "code": code(0) }),
    )
    .await
    .unwrap();
    assert_eq!(confirmed.status(), 200);
    let confirmed: Json = confirmed.json().await.unwrap();
    assert_eq!(
        confirmed["recovery_codes"].as_array().map(Vec::len),
        Some(10)
    );

    let challenged = scenario.login("spin_user").await;
    assert_eq!(challenged.status(), 403);
    let challenged: Json = challenged.json().await.unwrap();
    assert_eq!(challenged["code"], "mfa_required", "{challenged}");
    let mfa_token = challenged["mfa_token"].as_str().unwrap_or_default();
    let verified = post(
        "/api/v1/auth/mfa/verify",
        None,
        json!({ "mfa_token": mfa_token, "code": code(1) }),
    )
    .await
    .unwrap();
    assert_eq!(verified.status(), 200);
    let verified: Json = verified.json().await.unwrap();
    assert_eq!(verified["user"]["mfa_enabled"], true, "{verified}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_failure_keeps_the_mail_for_a_retry() {
    let mut scenario = Scenario::start(MailRoute::Webhook(StatusCode::SERVICE_UNAVAILABLE)).await;
    let registered = scenario.register("spin_retry", "retry@example.com").await;
    assert_eq!(registered.status(), 201);

    let mail = scenario.next_delivery().await;
    let id = mail.body["id"].as_str().unwrap_or_default();
    let (sent_at, attempts, last_error) = scenario
        .outbox_row(id, |(_, attempts, _)| *attempts > 0)
        .await;
    assert_eq!(sent_at, None);
    assert_eq!(attempts, 1);
    let last_error = last_error.unwrap_or_default();
    assert!(last_error.contains("503"), "{last_error}");
    assert!(!last_error.contains(HOOK_TOKEN), "{last_error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_webhook_the_mail_is_written_to_spins_log_and_marked_sent() {
    let scenario = Scenario::start(MailRoute::NoWebhook { mail_log: None }).await;
    let registered = scenario.register("spin_logged", "Logged@Example.com").await;
    assert_eq!(registered.status(), 201);
    scenario.settled().await;

    let (id, _) = scenario.mail_to("logged@example.com").await;
    let (sent_at, attempts, last_error) = scenario.outbox_row(&id, |_| true).await;
    assert!(sent_at.is_some(), "the relay marked the logged mail sent");
    assert_eq!((attempts, last_error), (0, None));

    let log = scenario.log();
    let line = log
        .lines()
        .find(|line| line.contains(&id))
        .unwrap_or_else(|| panic!("no line for mail {id} in Spin's log"));
    assert!(line.contains(&format!("from={FROM:?}")), "{line}");
    assert!(line.contains("to=\"logged@example.com\""), "{line}");
    assert!(line.contains("subject=\""), "{line}");
    assert!(!line.contains("</"), "the HTML body is not logged: {line}");
    assert!(!log.contains(JWT_SECRET), "no other secret is logged");
    assert!(!log.contains(PASSWORD), "no other secret is logged");

    let token = link_token(line, &scenario.api);
    assert_eq!(scenario.verify_email(&token).await.status(), 200);
    assert_eq!(scenario.login("spin_logged").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mail_log_off_the_mail_stays_in_the_outbox() {
    let scenario = Scenario::start(MailRoute::NoWebhook {
        mail_log: Some("false"),
    })
    .await;
    let registered = scenario.register("spin_kept", "kept@example.com").await;
    assert_eq!(registered.status(), 201);
    scenario.settled().await;

    let (id, claim) = scenario.mail_to("kept@example.com").await;
    assert_eq!(claim, None, "the relay did not claim it");
    let row = scenario.outbox_row(&id, |_| true).await;
    assert_eq!(
        row,
        (None, 0, None),
        "due, for a `portcullis serve` to send"
    );
    let log = scenario.log();
    assert!(!log.contains("kept@example.com"), "{log}");
}

impl Scenario {
    /// Sends `method path` with an optional bearer token and JSON body.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: &Json,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.api))
            .json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    /// The next mail the webhook got for `to`, skipping others.
    async fn next_mail_to(&mut self, to: &str) -> Json {
        loop {
            let delivery = self.next_delivery().await;
            if delivery.body["to"] == to {
                return delivery.body;
            }
        }
    }
}

/// The account-security rules (API.md §11) hold on Spin too: a reset link, resolved by
/// the relay's claim after the forgot answer, dies when the address changes; the change
/// needs the current password and the old address is told; wrong current passwords are
/// counted like failed logins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spin_artifact_keeps_the_account_security_rules() {
    let mut scenario = Scenario::start(MailRoute::Webhook(StatusCode::OK)).await;
    let api = scenario.api.clone();
    let old_address = "spin.secure@example.com";
    assert_eq!(
        scenario.register("spin_secure", old_address).await.status(),
        201
    );
    let mail = scenario.next_mail_to(old_address).await;
    let token = link_token(mail["text"].as_str().unwrap_or_default(), &api);
    assert_eq!(scenario.verify_email(&token).await.status(), 200);
    let login: Json = scenario.login("spin_secure").await.json().await.unwrap();
    let access = login["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let forgot = json!({ "email": old_address });
    let answer = scenario
        .call(
            reqwest::Method::POST,
            "/api/v1/auth/password/forgot",
            None,
            &forgot,
        )
        .await;
    assert_eq!(answer.status(), 202);
    let mail = scenario.next_mail_to(old_address).await;
    let text = mail["text"].as_str().unwrap_or_default();
    let reset_token = page_link_token(text, &api, "reset-password");

    let new_address = "spin.moved@example.com";
    let me = "/api/v1/users/me";
    let patch = reqwest::Method::PATCH;
    let without = json!({ "email": new_address });
    let answer = scenario
        .call(patch.clone(), me, Some(&access), &without)
        .await;
    assert_eq!(answer.status(), 422);
    let wrong = json!({ "email": new_address, "current_password": "Wrong-Guess-42" });
    let answer = scenario
        .call(patch.clone(), me, Some(&access), &wrong)
        .await;
    assert_eq!(answer.status(), 401);
    let right = json!({ "email": new_address, "current_password": PASSWORD });
    let answer = scenario.call(patch, me, Some(&access), &right).await;
    assert_eq!(answer.status(), 200);
    let notice = scenario.next_mail_to(old_address).await;
    assert!(
        !notice["text"]
            .as_str()
            .unwrap_or_default()
            .contains("token="),
        "the notice to the old address carries no link: {notice}"
    );

    let reset = json!({ "token": reset_token, "new_password": "Spin-Relay-43" });
    let answer = scenario
        .call(
            reqwest::Method::POST,
            "/api/v1/auth/password/reset",
            None,
            &reset,
        )
        .await;
    assert_eq!(answer.status(), 400, "a reset link outlived its address");
    let audit: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_events WHERE event = 'login_failed' \
         AND detail LIKE '%wrong_current_password%'",
    )
    .fetch_one(&mut scenario.database().await)
    .await
    .unwrap();
    assert_eq!(
        audit, 1,
        "the wrong current password counted as a failed login"
    );
}
