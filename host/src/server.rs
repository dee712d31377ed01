//! HTTP serving: hyper (HTTP/1.1 with keep-alive) in front of the component's
//! `wasi:http/incoming-handler`, one fresh instance per request.
//!
//! The client address reaches the component in the `spin-client-addr` header (as in
//! Spin); any such header a client sends is replaced, so it cannot be forged. On
//! shutdown the listener closes, idle connections end and in-flight requests finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HOST, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use wasmtime::bail;
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::instances::Instances;

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

const INTERNAL_ERROR_BODY: &str = r#"{"type":"about:blank","title":"Internal Server Error","status":500,"code":"internal","detail":"internal error"}"#;

/// The two ends of one client connection.
#[derive(Clone, Copy)]
struct Connection {
    peer: SocketAddr,
    local: SocketAddr,
}

/// Serves `listener` until `shutdown` completes, then stops accepting and lets the
/// requests in flight finish (for up to 30 s).
pub async fn serve(
    listener: TcpListener,
    instances: Arc<Instances>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => serve_connection(stream, peer, &instances, &graceful),
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    accept_queued(&listener, &instances, &graceful).await;
    drop(listener);
    finish_in_flight(graceful, &instances).await;
}

/// Serves the connections that clients opened before shutdown and that wait in the
/// listen queue, rather than resetting them when the listener closes.
async fn accept_queued(
    listener: &TcpListener,
    instances: &Arc<Instances>,
    graceful: &GracefulShutdown,
) {
    // A zero timeout still polls `accept` once: it yields only what is queued already.
    while let Ok(Ok((stream, peer))) = tokio::time::timeout(Duration::ZERO, listener.accept()).await
    {
        serve_connection(stream, peer, instances, graceful);
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
    instances: &Arc<Instances>,
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
    let instances = Arc::clone(instances);
    let service = service_fn(move |request| {
        let instances = Arc::clone(&instances);
        async move { Ok::<_, Infallible>(handle(&instances, request, connection).await) }
    });
    // The timer enables hyper's 30 s limit on reading a request's headers (slow clients
    // cannot hold a connection open for free).
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

async fn handle(
    instances: &Instances,
    mut request: Request<Incoming>,
    connection: Connection,
) -> Response<HyperOutgoingBody> {
    let started = Instant::now();
    let method = request.method().clone();
    // The path only: a query string may carry a token.
    let path = request.uri().path().to_owned();
    set_forwarding_headers(request.headers_mut(), connection);
    let response = match run_component(instances, request).await {
        Ok(response) => response,
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), %method, %path, "request failed");
            internal_error()
        }
    };
    tracing::info!(
        %method,
        %path,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        peer = %connection.peer,
        "request"
    );
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
/// streams from the instance, which runs on in a task of its own.
async fn run_component(
    instances: &Instances,
    request: Request<Incoming>,
) -> wasmtime::Result<Response<HyperOutgoingBody>> {
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
    tokio::spawn(async move {
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
        if let Err(error) = outcome {
            log_instance_failure(&error);
        }
    });
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

/// The RFC 9457 answer to a request the component could not handle.
fn internal_error() -> Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from_static(INTERNAL_ERROR_BODY.as_bytes()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
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
