//! The glue between the WIT world `portcullis:auth/service` and the domain: imports
//! become [`ports`](crate::ports) implementations, exports call the domain. No rule lives
//! here, only conversions.

use std::collections::HashMap;

use crate::account;
use crate::app::App;
use crate::auth::{self, Registered, Registration};
use crate::db::Db;
use crate::error::Error;
use crate::http::{self, Body, Request, Response};
use crate::ports::{self, Dialect, Rows, Statement, StoreError, Value};
use crate::refresh;
use crate::sessions::{self, Client, Grant, SessionView};
use crate::settings::Settings;
use crate::users::User;

wit_bindgen::generate!({
    world: "service",
    path: "../wit",
    // wasi:cli 0.2.12 (a dependency of wasi:http's worlds) names an interface behind
    // this gate; the component itself never imports it.
    features: ["clocks-timezone"],
    generate_all,
});

use exports::portcullis::auth::api as wit_api;
use exports::wasi::http::incoming_handler::Guest as IncomingHandler;
use portcullis::auth::password_hashing as wit_hashing;
use portcullis::auth::store as wit_store;
use wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasi::io::streams::StreamError;

/// Largest chunk `blocking-write-and-flush` accepts.
const WRITE_CHUNK: usize = 4096;

struct Component;
export!(Component);

/// The store import as a [`ports::Store`].
struct HostStore;

impl ports::Store for HostStore {
    fn dialect(&self) -> Dialect {
        match wit_store::dialect() {
            wit_store::SqlDialect::Sqlite => Dialect::Sqlite,
            wit_store::SqlDialect::Postgres => Dialect::Postgres,
            wit_store::SqlDialect::Mysql => Dialect::Mysql,
        }
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, StoreError> {
        let rows = wit_store::query(sql, &to_wit_values(params)).map_err(from_wit_error)?;
        Ok(Rows {
            columns: rows.columns,
            rows: rows
                .rows
                .into_iter()
                .map(|row| row.into_iter().map(from_wit_value).collect())
                .collect(),
        })
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        wit_store::execute(sql, &to_wit_values(params)).map_err(from_wit_error)
    }

    fn batch(&self, statements: &[Statement]) -> Result<Vec<u64>, StoreError> {
        let statements: Vec<wit_store::Statement> = statements
            .iter()
            .map(|statement| wit_store::Statement {
                sql: statement.sql.clone(),
                params: to_wit_values(&statement.params),
                expect_rows: statement.expect_rows,
            })
            .collect();
        wit_store::batch(&statements).map_err(from_wit_error)
    }
}

fn to_wit_values(values: &[Value]) -> Vec<wit_store::Value> {
    values
        .iter()
        .map(|value| match value {
            Value::Null => wit_store::Value::Null,
            Value::Integer(n) => wit_store::Value::Integer(*n),
            Value::Real(x) => wit_store::Value::Real(*x),
            Value::Text(text) => wit_store::Value::Text(text.clone()),
            Value::Blob(bytes) => wit_store::Value::Blob(bytes.clone()),
        })
        .collect()
}

fn from_wit_value(value: wit_store::Value) -> Value {
    match value {
        wit_store::Value::Null => Value::Null,
        wit_store::Value::Integer(n) => Value::Integer(n),
        wit_store::Value::Real(x) => Value::Real(x),
        wit_store::Value::Text(text) => Value::Text(text),
        wit_store::Value::Blob(bytes) => Value::Blob(bytes),
    }
}

fn from_wit_error(error: wit_store::Error) -> StoreError {
    match error {
        wit_store::Error::UniqueViolation(name) => StoreError::UniqueViolation(name),
        wit_store::Error::ConditionFailed(index) => StoreError::ConditionFailed(index),
        wit_store::Error::Unavailable(reason) => StoreError::Unavailable(reason),
        wit_store::Error::Other(reason) => StoreError::Other(reason),
    }
}

/// The WASI clock and randomness, and the host's Argon2 kernel, as a [`ports::Env`].
struct HostEnv;

impl ports::Env for HostEnv {
    fn now_millis(&self) -> i64 {
        let now = wasi::clocks::wall_clock::now();
        let millis = u128::from(now.seconds) * 1000 + u128::from(now.nanoseconds / 1_000_000);
        i64::try_from(millis).unwrap_or(i64::MAX)
    }

    fn random_bytes(&self, len: usize) -> Vec<u8> {
        wasi::random::random::get_random_bytes(len as u64)
    }

    fn argon2(
        &self,
        password: &[u8],
        salt: &[u8],
        params: &ports::Argon2Params,
    ) -> Result<Vec<u8>, String> {
        let variant = match params.variant {
            ports::Argon2Variant::Argon2i => wit_hashing::Argon2Variant::Argon2i,
            ports::Argon2Variant::Argon2id => wit_hashing::Argon2Variant::Argon2id,
        };
        let params = wit_hashing::Argon2Params {
            algorithm: variant,
            version: params.version,
            memory_kib: params.memory_kib,
            iterations: params.iterations,
            parallelism: params.parallelism,
            output_len: params.output_len,
        };
        wit_hashing::argon2(password, salt, params)
    }
}

/// The settings from `wasi:config/store`.
fn load_settings() -> Result<Settings, Vec<String>> {
    let pairs = wasi::config::store::get_all()
        .map_err(|error| vec![format!("settings could not be read: {error:?}")])?;
    let map: HashMap<String, String> = pairs.into_iter().collect();
    Settings::from_lookup(|key| map.get(key).cloned())
}

/// Runs `operation` with an [`App`] over the host's imports.
fn with_app<T>(operation: impl FnOnce(&App<'_>) -> Result<T, Error>) -> Result<T, Error> {
    let settings = load_settings().map_err(|problems| Error::Internal(problems.join("; ")))?;
    let store = HostStore;
    let app = App {
        db: Db::new(&store),
        env: &HostEnv,
        settings: &settings,
    };
    operation(&app)
}

impl IncomingHandler for Component {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let response = with_app(|app| {
            let request = read_request(request, app.settings);
            Ok(http::handle(app, &request))
        })
        .unwrap_or_else(|error| http::error_response(&error));
        send(response_out, response);
    }
}

fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other.clone(),
    }
}

/// Converts the incoming request, reading at most as many bytes of body as
/// [`http::body_limit`] allows its route.
fn read_request(request: IncomingRequest, settings: &Settings) -> Request {
    let path_with_query = request.path_with_query().unwrap_or_else(|| "/".into());
    let (path, query) = path_with_query
        .split_once('?')
        .map_or((path_with_query.as_str(), ""), |(path, query)| {
            (path, query)
        });
    let headers: Vec<(String, String)> = request
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| {
            (
                name.to_ascii_lowercase(),
                String::from_utf8_lossy(&value).into_owned(),
            )
        })
        .collect();
    let method = method_name(&request.method());
    let limit = http::body_limit(settings, &method, path);
    let declared_length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.trim().parse::<u64>().ok());
    let body = match declared_length {
        Some(length) if length > limit as u64 => Body::TooLarge,
        _ => read_body(&request, limit),
    };
    Request {
        method,
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body,
    }
}

fn read_body(request: &IncomingRequest, limit: usize) -> Body {
    let Ok(incoming) = request.consume() else {
        return Body::default();
    };
    let mut bytes = Vec::new();
    if let Ok(stream) = incoming.stream() {
        loop {
            let room = (limit + 1 - bytes.len()) as u64;
            match stream.blocking_read(room.min(64 * 1024)) {
                Ok(chunk) => {
                    bytes.extend_from_slice(&chunk);
                    if bytes.len() > limit {
                        return Body::TooLarge;
                    }
                }
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(_)) => break,
            }
        }
    }
    IncomingBody::finish(incoming);
    Body::Complete(bytes)
}

/// Sends the response: status, headers, then the body in chunks.
fn send(response_out: ResponseOutparam, response: Response) {
    let mut pairs: Vec<(String, Vec<u8>)> = response
        .headers
        .into_iter()
        .map(|(name, value)| (name, value.into_bytes()))
        .collect();
    pairs.push((
        "content-length".into(),
        response.body.len().to_string().into_bytes(),
    ));
    let headers = Fields::from_list(&pairs).unwrap_or_else(|_| Fields::new());
    let outgoing = OutgoingResponse::new(headers);
    let _ = outgoing.set_status_code(response.status);
    let Ok(body) = outgoing.body() else {
        return;
    };
    ResponseOutparam::set(response_out, Ok(outgoing));
    if let Ok(stream) = body.write() {
        for chunk in response.body.chunks(WRITE_CHUNK) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
    }
    let _ = OutgoingBody::finish(body, None);
}

impl wit_api::Guest for Component {
    /// The settings, then (when the database answers) whether the EdDSA signing key
    /// unseals with this host's secret.
    fn check_settings() -> Result<(), Vec<String>> {
        load_settings()?;
        match with_app(|app| Ok(crate::keys::check(app))) {
            Ok(Err(problem)) => Err(vec![problem]),
            _ => Ok(()),
        }
    }

    fn register(
        registration: wit_api::Registration,
        client: wit_api::Client,
    ) -> Result<wit_api::Registered, wit_api::Error> {
        let input = Registration {
            username: registration.username,
            email: registration.email,
            password: registration.password,
            mobile_number: registration.mobile_number,
        };
        with_app(|app| auth::register(app, &input, &to_client(client)))
            .map(|registered| match registered {
                Registered::SignedIn(grant) => wit_api::Registered::SignedIn(to_wit_tokens(grant)),
                Registered::VerificationRequired(user) => {
                    wit_api::Registered::VerificationRequired(to_wit_user(&user))
                }
            })
            .map_err(to_wit_error)
    }

    fn login(
        login: String,
        password: String,
        client: wit_api::Client,
    ) -> Result<wit_api::Tokens, wit_api::Error> {
        with_app(|app| auth::login(app, &login, &password, &to_client(client)))
            .map(to_wit_tokens)
            .map_err(to_wit_error)
    }

    fn verify_access_token(token: String) -> Result<wit_api::VerifiedToken, wit_api::Error> {
        with_app(|app| auth::verify_access_token(app, &token))
            .map(|authenticated| wit_api::VerifiedToken {
                user_id: authenticated.claims.sub,
                username: authenticated.user.username.clone(),
                session_id: authenticated.claims.sid,
                expires_at: crate::app::rfc3339(authenticated.claims.exp),
                user: to_wit_user(&authenticated.user),
            })
            .map_err(to_wit_error)
    }

    fn refresh(
        refresh_token: String,
        client: wit_api::Client,
    ) -> Result<wit_api::Tokens, wit_api::Error> {
        with_app(|app| refresh::refresh(app, &refresh_token, &to_client(client)))
            .map(to_wit_tokens)
            .map_err(to_wit_error)
    }

    fn logout(access_token: String, client: wit_api::Client) -> Result<(), wit_api::Error> {
        with_app(|app| {
            let who = auth::verify_access_token(app, &access_token)?;
            auth::logout(app, &who, &to_client(client))
        })
        .map_err(to_wit_error)
    }

    fn logout_all(access_token: String, client: wit_api::Client) -> Result<(), wit_api::Error> {
        with_app(|app| {
            let who = auth::verify_access_token(app, &access_token)?;
            auth::logout_all(app, &who, &to_client(client))
        })
        .map_err(to_wit_error)
    }

    fn list_sessions(access_token: String) -> Result<Vec<wit_api::Session>, wit_api::Error> {
        with_app(|app| {
            let who = auth::verify_access_token(app, &access_token)?;
            sessions::list(app, &who.claims.sub, &who.claims.sid)
        })
        .map(|views| views.into_iter().map(to_wit_session).collect())
        .map_err(to_wit_error)
    }

    fn revoke_session(
        access_token: String,
        session_id: String,
        client: wit_api::Client,
    ) -> Result<(), wit_api::Error> {
        with_app(|app| {
            let who = auth::verify_access_token(app, &access_token)?;
            auth::revoke_session(app, &who, &session_id, &to_client(client))
        })
        .map_err(to_wit_error)
    }

    fn change_password(
        access_token: String,
        current_password: String,
        new_password: String,
        client: wit_api::Client,
    ) -> Result<(), wit_api::Error> {
        with_app(|app| {
            let who = auth::verify_access_token(app, &access_token)?;
            account::change_password(
                app,
                &who,
                &current_password,
                &new_password,
                &to_client(client),
            )
        })
        .map_err(to_wit_error)
    }

    fn create_admin(
        registration: wit_api::Registration,
        only_if_absent: bool,
    ) -> Result<Option<wit_api::User>, wit_api::Error> {
        let input = Registration {
            username: registration.username,
            email: registration.email,
            password: registration.password,
            mobile_number: registration.mobile_number,
        };
        with_app(|app| crate::admin::create_admin(app, &input, only_if_absent))
            .map(|created| created.as_ref().map(to_wit_user))
            .map_err(to_wit_error)
    }

    fn claim_mail(max: u32, lease_seconds: u32) -> Result<Vec<wit_api::Mail>, wit_api::Error> {
        with_app(|app| crate::account::claim_due_mail(app, max, lease_seconds))
            .map(|mails| {
                mails
                    .into_iter()
                    .map(|mail| wit_api::Mail {
                        id: mail.id,
                        claim: mail.claim,
                        to: mail.to,
                        subject: mail.subject,
                        text_body: mail.text_body,
                        html_body: mail.html_body,
                        attempts: mail.attempts,
                    })
                    .collect()
            })
            .map_err(to_wit_error)
    }

    fn mail_sent(id: String, claim: String) -> Result<(), wit_api::Error> {
        with_app(|app| crate::mail::sent(app, &id, &claim)).map_err(to_wit_error)
    }

    fn mail_failed(id: String, claim: String, reason: String) -> Result<(), wit_api::Error> {
        with_app(|app| crate::mail::failed(app, &id, &claim, &reason)).map_err(to_wit_error)
    }

    fn rotate_signing_key() -> Result<String, wit_api::Error> {
        with_app(crate::keys::rotate).map_err(to_wit_error)
    }

    fn import_users(
        first_line: u32,
        lines: Vec<Vec<u8>>,
    ) -> Result<wit_api::ImportReport, wit_api::Error> {
        let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        let importer = crate::import::Importer::CommandLine;
        with_app(|app| crate::import::import(app, first_line, &lines, importer, &Client::default()))
            .map(to_wit_import_report)
            .map_err(to_wit_error)
    }

    fn get_user(user_id: String) -> Result<wit_api::User, wit_api::Error> {
        with_app(|app| auth::get_user(app, &user_id))
            .map(|user| to_wit_user(&user))
            .map_err(to_wit_error)
    }

    fn prune(max_rows: u32, force: bool, later_by: u32) -> Result<wit_api::Pruned, wit_api::Error> {
        let options = crate::retention::PruneOptions {
            max_rows,
            force,
            later_by,
        };
        with_app(|app| crate::retention::prune(app, options))
            .map(|pruned| wit_api::Pruned {
                ran: pruned.ran,
                removed: to_wit_table_rows(pruned.removed),
                more: pruned.more,
            })
            .map_err(to_wit_error)
    }

    fn count_rows() -> Result<Vec<wit_api::TableRows>, wit_api::Error> {
        with_app(crate::retention::count_rows)
            .map(to_wit_table_rows)
            .map_err(to_wit_error)
    }
}

fn to_wit_table_rows(counts: Vec<(&'static str, u64)>) -> Vec<wit_api::TableRows> {
    counts
        .into_iter()
        .map(|(table, rows)| wit_api::TableRows {
            table: table.into(),
            rows,
        })
        .collect()
}

fn to_client(client: wit_api::Client) -> Client {
    Client::new(client.device_info, client.ip_address)
}

fn to_wit_user(user: &User) -> wit_api::User {
    let public = user.public();
    wit_api::User {
        id: public.id,
        username: public.username,
        email: public.email,
        mobile_number: public.mobile_number,
        email_verified: public.email_verified,
        is_active: public.is_active,
        is_admin: public.is_admin,
        created_at: public.created_at,
        updated_at: public.updated_at,
    }
}

fn to_wit_session(view: SessionView) -> wit_api::Session {
    wit_api::Session {
        id: view.id,
        device_info: view.device_info,
        ip_address: view.ip_address,
        created_at: view.created_at,
        last_active_at: view.last_active_at,
        expires_at: view.expires_at,
        is_current: view.is_current,
    }
}

fn to_wit_tokens(grant: Grant) -> wit_api::Tokens {
    wit_api::Tokens {
        access_token: grant.access_token,
        token_type: "Bearer".into(),
        expires_in: grant.expires_in,
        refresh_token: grant.refresh_token,
        refresh_expires_in: grant.refresh_expires_in,
        session_id: grant.session_id,
        user: to_wit_user(&grant.user),
    }
}

fn to_wit_import_report(report: crate::import::Report) -> wit_api::ImportReport {
    wit_api::ImportReport {
        imported: report.imported,
        skipped: report
            .skipped
            .into_iter()
            .map(|skipped| wit_api::ImportSkipped {
                line: skipped.line,
                code: skipped.code.into(),
            })
            .collect(),
        rejected: report
            .rejected
            .into_iter()
            .map(|rejected| wit_api::ImportRejected {
                line: rejected.line,
                field: rejected.field.map(Into::into),
                code: rejected.code.into(),
            })
            .collect(),
    }
}

fn to_wit_error(error: Error) -> wit_api::Error {
    match error {
        Error::Validation(errors) => wit_api::Error::ValidationFailed(
            errors
                .into_iter()
                .map(|error| wit_api::FieldError {
                    field: error.field.into(),
                    code: error.code.into(),
                    message: error.message,
                })
                .collect(),
        ),
        Error::UsernameTaken => wit_api::Error::UsernameTaken,
        Error::EmailTaken => wit_api::Error::EmailTaken,
        Error::MobileTaken => wit_api::Error::MobileTaken,
        Error::InvalidCredentials => wit_api::Error::InvalidCredentials,
        Error::EmailNotVerified => wit_api::Error::EmailNotVerified,
        Error::AccountDisabled => wit_api::Error::AccountDisabled,
        Error::SessionLimitReached => wit_api::Error::SessionLimitReached,
        Error::RateLimited { retry_after } => wit_api::Error::RateLimited(retry_after),
        Error::Unauthorized | Error::InvalidToken => wit_api::Error::InvalidToken,
        Error::InvalidRefreshToken => wit_api::Error::InvalidRefreshToken,
        Error::RefreshTokenReused => wit_api::Error::RefreshTokenReused,
        Error::NotFound => wit_api::Error::NotFound,
        Error::Forbidden => wit_api::Error::Forbidden,
        Error::Unavailable(reason) => wit_api::Error::Unavailable(reason),
        // The text is for the embedder's logs (WIT: never shown to end users).
        Error::Internal(reason) => wit_api::Error::Internal(reason),
        Error::MfaRequired { mfa_token } => wit_api::Error::MfaRequired(mfa_token),
        other => wit_api::Error::Internal(format!("{}: {}", other.code(), other.detail())),
    }
}
