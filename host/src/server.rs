//! HTTP serving: hyper (HTTP/1.1 with keep-alive) in front of the component's
//! `wasi:http/incoming-handler`, one fresh instance per request.
//!
//! The client address reaches the component in the `spin-client-addr` header (as in
//! Spin); any such header a client sends is replaced, so it cannot be forged. On
//! shutdown the listener closes, idle connections end and in-flight requests finish.
//!
//! Observability: every request gets an id (`request_id`) that its answer carries in
//! `X-Request-Id` and the component sees in the same request header; a `request` span
//! with that id covers the request, including the instance's own task, so every log
//! line of the request names it. Each request ends with one access-log line (method,
//! route template, status, duration, client address: never the raw path or query,
//! which may hold tokens) and is counted in the [`Metrics`]. When
//! `PORTCULLIS_METRICS_TOKEN` is set, the host answers `GET /metrics` itself; when it
//! is not, `/metrics` goes to the component like any path (and gets its 404).
//!
//! Slow clients: hyper closes a connection that has not sent a complete request head
//! within 30 s of being ready for one (a fresh connection, or a kept-alive one between
//! requests: idle connections end after 30 s), and [`request_body`] reads each body
//! before the request takes an instance slot or an admission turn, within 30 s; a body
//! that does not arrive in time is answered 408 and its connection closed.

mod request_body;

use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Bytes, Incoming};
use hyper::header::{
    ALLOW, AUTHORIZATION, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, HOST, HeaderMap, HeaderName,
    HeaderValue, REFERRER_POLICY, RETRY_AFTER, STRICT_TRANSPORT_SECURITY, WWW_AUTHENTICATE,
    X_CONTENT_TYPE_OPTIONS,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tracing::Instrument as _;
use wasmtime::bail;
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::admission::{Admission, QueueFull};
use crate::db::Database;
use crate::instances::Instances;
use crate::metrics::{self, Metrics, Routes};
use crate::request_id;
use crate::settings::{HostSettings, MetricsToken};
use request_body::Unread;

/// The header that tells the component who the client is.
const CLIENT_ADDR_HEADER: &str = "spin-client-addr";

/// How long shutdown waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How long connections accepted before shutdown get to read the request their client
/// already sent: hyper's graceful shutdown closes every connection that has not read a
/// request head yet, and on a busy machine a new connection's task may not have run.
const SHUTDOWN_SETTLE: Duration = Duration::from_millis(250);

/// How long to pause after a failed `accept` (out of file descriptors, …).
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Where the component publishes its routes.
const OPENAPI_PATH: &str = "/openapi.json";

/// The address the host's own requests to the component come from.
const HOST_ITSELF: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// The two ends of one client connection.
#[derive(Clone, Copy)]
struct Connection {
    peer: SocketAddr,
    local: SocketAddr,
}

/// What the server adds around the component: metrics, the admission of requests that
/// hash a password, and the answers it makes itself (`/metrics`, 500, 503).
pub struct Observability {
    metrics: Metrics,
    metrics_token: Option<MetricsToken>,
    https_public_url: bool,
    admission: Arc<Admission>,
}

impl Observability {
    /// Asks the component for its `/openapi.json` (in-process, through `instances`)
    /// to label requests by route template, and registers the metrics.
    pub async fn start(
        instances: &Arc<Instances>,
        database: &Database,
        host: &HostSettings,
    ) -> anyhow::Result<Self> {
        let document = openapi_document(instances)
            .await
            .context("asking the component for its /openapi.json")?;
        let routes = Routes::from_openapi(&document)
            .context("reading the routes of the component's /openapi.json")?;
        let metrics = Metrics::new(routes, instances, database, host.database.max_connections)?;
        let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
        let concurrency = cores * crate::admission::REQUESTS_PER_CORE;
        let admission = Admission::from_openapi(&document, concurrency, host.hash_queue)
            .context("reading the password-hashing operations of the component's /openapi.json")?;
        let admission = Arc::new(admission);
        metrics.register_admission(&admission)?;
        Ok(Self {
            metrics,
            metrics_token: host.metrics_token.clone(),
            https_public_url: host.https_public_url,
            admission,
        })
    }

    /// The metrics, for the parts of the host that set some of their own.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The metrics token when `path` is `/metrics` and the host answers it itself.
    fn intercepts(&self, path: &str) -> Option<&MetricsToken> {
        self.metrics_token
            .as_ref()
            .filter(|_| path == metrics::METRICS_ROUTE)
    }

    /// The route label of `path`.
    fn route(&self, path: &str) -> &str {
        if self.intercepts(path).is_some() {
            metrics::METRICS_ROUTE
        } else {
            self.metrics.route(path)
        }
    }
}

/// The component's OpenAPI document, asked for like any client would.
async fn openapi_document(instances: &Instances) -> anyhow::Result<Bytes> {
    let mut request = Request::get(OPENAPI_PATH).body(Full::new(Bytes::new()))?;
    set_forwarding_headers(
        request.headers_mut(),
        Connection {
            peer: HOST_ITSELF,
            local: HOST_ITSELF,
        },
    );
    let response = run_component(instances, request, None).await?;
    let status = response.status();
    anyhow::ensure!(status == StatusCode::OK, "the component answered {status}");
    let body = response
        .into_body()
        .collect()
        .await
        .context("reading the answer")?;
    Ok(body.to_bytes())
}

/// Everything a request needs.
struct Server {
    instances: Arc<Instances>,
    observability: Observability,
}

/// Serves `listener` until `shutdown` completes, then stops accepting and lets the
/// requests in flight finish (for up to 30 s).
pub async fn serve(
    listener: TcpListener,
    instances: Arc<Instances>,
    observability: Observability,
    shutdown: impl Future<Output = ()>,
) {
    let server = Arc::new(Server {
        instances,
        observability,
    });
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => serve_connection(stream, peer, &server, &graceful),
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    accept_queued(&listener, &server, &graceful).await;
    drop(listener);
    finish_in_flight(graceful, &server.instances).await;
}

/// Serves the connections that clients opened before shutdown and that wait in the
/// listen queue, rather than resetting them when the listener closes.
async fn accept_queued(listener: &TcpListener, server: &Arc<Server>, graceful: &GracefulShutdown) {
    // A zero timeout still polls `accept` once: it yields only what is queued already.
    while let Ok(Ok((stream, peer))) = tokio::time::timeout(Duration::ZERO, listener.accept()).await
    {
        serve_connection(stream, peer, server, graceful);
    }
}

async fn finish_in_flight(graceful: GracefulShutdown, instances: &Instances) {
    tracing::info!(
        connections = graceful.count(),
        "shutting down: finishing the requests in flight"
    );
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    tokio::time::sleep(SHUTDOWN_SETTLE).await;
    let connections_closed = tokio::time::timeout_at(deadline, graceful.shutdown())
        .await
        .is_ok();
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    let instances_done = instances.drain(remaining).await;
    if connections_closed && instances_done {
        tracing::info!("all requests finished");
    } else {
        tracing::warn!(
            "some requests did not finish within {} s",
            SHUTDOWN_GRACE.as_secs()
        );
    }
}

fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    server: &Arc<Server>,
    graceful: &GracefulShutdown,
) {
    let local = match stream.local_addr() {
        Ok(local) => local,
        Err(error) => {
            tracing::debug!(%error, %peer, "dropping a connection without a local address");
            return;
        }
    };
    let connection = Connection { peer, local };
    let server = Arc::clone(server);
    let service = service_fn(move |request| {
        let server = Arc::clone(&server);
        async move { Ok::<_, Infallible>(handle(&server, request, connection).await) }
    });
    // The timer enables hyper's 30 s limit on reading a request's headers, which also
    // ends a kept-alive connection that stays idle that long (slow or idle clients cannot
    // hold a connection open for free).
    let http = http1::Builder::new()
        .keep_alive(true)
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service);
    let http = graceful.watch(http);
    tokio::spawn(async move {
        if let Err(error) = http.await {
            tracing::debug!(%error, %peer, "connection ended with an error");
        }
    });
}

/// Answers one request under its id, then counts it and writes its access-log line.
async fn handle(
    server: &Server,
    mut request: Request<Incoming>,
    connection: Connection,
) -> Response<HyperOutgoingBody> {
    let started = Instant::now();
    let request_id = request_id::assign(request.headers_mut());
    let span = tracing::info_span!("request", request_id = request_id.to_str().unwrap_or("?"));
    let method = request.method().clone();
    let route = server.observability.route(request.uri().path());
    let mut response = answer(server, request, connection, route)
        .instrument(span.clone())
        .await;
    response
        .headers_mut()
        .insert(request_id::HEADER, request_id);
    let status = response.status();
    let elapsed = started.elapsed();
    server
        .observability
        .metrics
        .record(&method, route, status, elapsed);
    span.in_scope(|| {
        tracing::info!(
            %method,
            route,
            status = status.as_u16(),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            client_ip = %connection.peer.ip(),
            "request"
        );
    });
    response
}

/// The host's own answer, or the component's (after its turn, for a request that hashes
/// a password: see `admission`).
async fn answer(
    server: &Server,
    request: Request<Incoming>,
    connection: Connection,
    route: &str,
) -> Response<HyperOutgoingBody> {
    let observability = &server.observability;
    if let Some(token) = observability.intercepts(request.uri().path()) {
        return metrics_answer(observability, token, &request);
    }
    let mut request = match request_body::preread(request).await {
        Ok(request) => request,
        Err(unread) => return unread_body_problem(observability, unread),
    };
    let turn = if observability.admission.hashes(request.method(), route) {
        match observability.admission.admit().await {
            Ok(turn) => Some(turn),
            Err(QueueFull) => return host_problem(observability, Problem::Busy),
        }
    } else {
        None
    };
    set_forwarding_headers(request.headers_mut(), connection);
    match run_component(&server.instances, request, turn).await {
        Ok(response) => response,
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "request failed");
            host_problem(observability, Problem::Internal)
        }
    }
}

/// The answer to a request whose body could not be read; the connection closes after it
/// (the rest of the body may still come, or never).
fn unread_body_problem(
    observability: &Observability,
    unread: Unread,
) -> Response<HyperOutgoingBody> {
    let problem = match unread {
        Unread::TimedOut => {
            tracing::info!(
                "the request's body did not arrive within {} s",
                request_body::BODY_TIMEOUT.as_secs()
            );
            Problem::BodyTimeout
        }
        Unread::Broken => Problem::BrokenBody,
    };
    let mut response = host_problem(observability, problem);
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// `GET /metrics` with the metrics token: the metrics; else the problem, as the
/// component would answer it.
fn metrics_answer(
    observability: &Observability,
    token: &MetricsToken,
    request: &Request<Incoming>,
) -> Response<HyperOutgoingBody> {
    if request.method() != Method::GET {
        return host_problem(observability, Problem::MethodNotAllowed);
    }
    match bearer_token(request.headers()) {
        None => return host_problem(observability, Problem::Unauthorized),
        Some(presented) if !token.matches(presented) => {
            return host_problem(observability, Problem::InvalidToken);
        }
        Some(_) => {}
    }
    match observability.metrics.render() {
        Ok(text) => host_answer(
            observability,
            StatusCode::OK,
            metrics::CONTENT_TYPE,
            Bytes::from(text),
        ),
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "rendering the metrics failed");
            host_problem(observability, Problem::Internal)
        }
    }
}

/// The token of an `Authorization: Bearer …` header (the scheme in any case).
fn bearer_token(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| token.trim_ascii())
}

// `Problem::BodyTimeout`'s detail says the bound in words.
const _: () = assert!(request_body::BODY_TIMEOUT.as_secs() == 30);

/// The problems the host answers itself, as the component words them (RFC 9457).
#[derive(Clone, Copy)]
enum Problem {
    Unauthorized,
    InvalidToken,
    MethodNotAllowed,
    Internal,
    /// The queue of requests that hash a password is full.
    Busy,
    /// The request's body did not arrive in time.
    BodyTimeout,
    /// The request's body could not be read to its end.
    BrokenBody,
}

impl Problem {
    /// Status, code, title and detail.
    fn parts(self) -> (StatusCode, &'static str, &'static str, &'static str) {
        match self {
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                "A bearer token is required.",
            ),
            Self::InvalidToken => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "Invalid token",
                "The token is invalid, expired or revoked.",
            ),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
                "Allowed methods: GET.",
            ),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal server error",
                "An internal error occurred.",
            ),
            Self::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                "Too many password checks are waiting; retry in a moment.",
            ),
            Self::BodyTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "Request timeout",
                "The request's body did not arrive within 30 seconds.",
            ),
            Self::BrokenBody => (
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "Invalid body",
                "The request's body could not be read to its end.",
            ),
        }
    }

    /// The header this problem adds, if any.
    fn header(self) -> Option<(HeaderName, &'static str)> {
        match self {
            Self::Unauthorized => Some((WWW_AUTHENTICATE, r#"Bearer realm="portcullis""#)),
            Self::InvalidToken => Some((
                WWW_AUTHENTICATE,
                r#"Bearer realm="portcullis", error="invalid_token""#,
            )),
            Self::MethodNotAllowed => Some((ALLOW, "GET")),
            Self::Busy => Some((RETRY_AFTER, "1")),
            Self::Internal | Self::BodyTimeout | Self::BrokenBody => None,
        }
    }
}

/// A problem answer of the host's own.
fn host_problem(observability: &Observability, problem: Problem) -> Response<HyperOutgoingBody> {
    let (status, code, title, detail) = problem.parts();
    let body = serde_json::json!({
        "type": format!("urn:portcullis:problem:{code}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
        "code": code,
    });
    let mut response = host_answer(
        observability,
        status,
        "application/problem+json",
        Bytes::from(body.to_string()),
    );
    if let Some((name, value)) = problem.header() {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    response
}

/// An answer of the host's own, with the component's common headers.
fn host_answer(
    observability: &Observability,
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<HyperOutgoingBody> {
    let body = Full::new(body)
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if observability.https_public_url {
        headers.insert(
            STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// Replaces any client-sent `spin-client-addr` with the real peer address, and gives
/// HTTP/1.0 requests without `Host` the address they reached.
fn set_forwarding_headers(headers: &mut HeaderMap, connection: Connection) {
    headers.remove(CLIENT_ADDR_HEADER);
    headers.insert(CLIENT_ADDR_HEADER, header_value(connection.peer));
    if !headers.contains_key(HOST) {
        headers.insert(HOST, header_value(connection.local));
    }
}

fn header_value(address: SocketAddr) -> HeaderValue {
    // A socket address is ASCII digits, dots, colons and brackets: always a valid value.
    HeaderValue::try_from(address.to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

/// Hands the request to a fresh instance and waits for the response head; the body
/// streams from the instance, which runs on in a task of its own (in the current span,
/// so that its log lines carry the request id). The admission `turn`, if any, is held
/// until the instance ends.
async fn run_component<B>(
    instances: &Instances,
    request: Request<B>,
    turn: Option<OwnedSemaphorePermit>,
) -> wasmtime::Result<Response<HyperOutgoingBody>>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let slot = instances.reserve().await?;
    let mut store = instances.new_store();
    let (response_sender, response_receiver) = oneshot::channel();
    let incoming = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, request)?;
    let outparam = store
        .data_mut()
        .http()
        .new_response_outparam(response_sender)?;
    let pre = instances.proxy_pre().clone();
    tokio::spawn(
        async move {
            let outcome = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, outparam)
                    .await
            }
            .await;
            drop(store);
            drop(slot);
            drop(turn);
            if let Err(error) = outcome {
                log_instance_failure(&error);
            }
        }
        .in_current_span(),
    );
    match response_receiver.await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(error_code)) => bail!("the component answered with the error {error_code:?}"),
        Err(_) => bail!("the component ended without a response"),
    }
}

fn log_instance_failure(error: &wasmtime::Error) {
    if error.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
        tracing::error!(
            "the component was interrupted after running for {} s",
            crate::instances::TIME_LIMIT.as_secs()
        );
    } else {
        // The alternate form carries the wasm backtrace but not the host's.
        tracing::error!(error = %format!("{error:#}"), "the component trapped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forged_client_address_is_replaced() {
        let mut headers = HeaderMap::new();
        headers.append(CLIENT_ADDR_HEADER, HeaderValue::from_static("6.6.6.6:1"));
        headers.append(CLIENT_ADDR_HEADER, HeaderValue::from_static("7.7.7.7:1"));
        let connection = Connection {
            peer: "10.0.0.5:4242".parse().unwrap(),
            local: "127.0.0.1:8080".parse().unwrap(),
        };
        set_forwarding_headers(&mut headers, connection);
        let values: Vec<_> = headers.get_all(CLIENT_ADDR_HEADER).iter().collect();
        assert_eq!(values, ["10.0.0.5:4242"]);
        assert_eq!(headers[HOST], "127.0.0.1:8080");
    }
}
