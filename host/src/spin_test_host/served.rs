//! The Spin artifact served over real HTTP by wasmtime-wasi-http, as Spin's HTTP trigger
//! serves it: a fresh instance per request (which runs on after the response head, as
//! the mail relay does), `spin-client-addr` set to the peer's address (a client-sent one
//! is replaced), and 500 for an instance that ends without a response.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::{BodyExt as _, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::postgres::SpinPgPools;
use super::{SpinState, add_spin_to_linker};

/// The header Spin's HTTP trigger gives the client's address in.
const CLIENT_ADDR: &str = "spin-client-addr";

/// Where an application's components write their stderr (Spin's log).
pub enum Log {
    /// Kept in memory (tests read it).
    Memory(MemoryOutputPipe),
    /// This process' stderr.
    Inherit,
}

/// The artifact, ready to serve requests.
pub struct Served {
    engine: Engine,
    pre: ProxyPre<SpinState>,
    variables: Arc<HashMap<String, String>>,
    database_file: PathBuf,
    postgres: Arc<SpinPgPools>,
    log: Log,
    /// Instances still running (the relay works on after the response).
    running: Arc<AtomicUsize>,
}

impl Served {
    /// `component` (the artifact, compiled for `engine`) with the application's
    /// `variables`, Spin's `default` SQLite database in `database_file`, PostgreSQL
    /// pools of at most `pool_size` clients, and its stderr going to `log`.
    pub fn new(
        engine: &Engine,
        component: &Component,
        variables: HashMap<String, String>,
        database_file: &Path,
        pool_size: usize,
        log: Log,
    ) -> wasmtime::Result<Self> {
        let mut linker = Linker::new(engine);
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        add_spin_to_linker(&mut linker)?;
        let pre = ProxyPre::new(linker.instantiate_pre(component)?)?;
        Ok(Self {
            engine: engine.clone(),
            pre,
            variables: Arc::new(variables),
            database_file: database_file.to_owned(),
            postgres: SpinPgPools::new(pool_size),
            log,
            running: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// How many instances are running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// What the components wrote to Spin's log so far, when it is kept in memory.
    pub fn log(&self) -> String {
        match &self.log {
            Log::Memory(log) => String::from_utf8_lossy(&log.contents()).into_owned(),
            Log::Inherit => String::new(),
        }
    }

    /// Runs the request in a fresh instance; the instance runs on (the relay's mail
    /// delivery) after the response head is handed over.
    async fn handle(
        &self,
        mut request: Request<Incoming>,
        peer: SocketAddr,
    ) -> wasmtime::Result<Response<HyperOutgoingBody>> {
        let headers = request.headers_mut();
        headers.remove(CLIENT_ADDR);
        headers.insert(CLIENT_ADDR, HeaderValue::try_from(peer.to_string())?);
        let log = match &self.log {
            Log::Memory(log) => Some(log),
            Log::Inherit => None,
        };
        let state = SpinState::new(
            Arc::clone(&self.variables),
            &self.database_file,
            &self.postgres,
            log,
        );
        let mut store = Store::new(&self.engine, state);
        let (sender, receiver) = oneshot::channel();
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)?;
        let outparam = store.data_mut().http().new_response_outparam(sender)?;
        let pre = self.pre.clone();
        let running = Arc::clone(&self.running);
        running.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let outcome = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, outparam)
                    .await
            }
            .await;
            if let Err(error) = outcome {
                eprintln!("the Spin artifact trapped: {error:#}");
            }
            running.fetch_sub(1, Ordering::SeqCst);
        });
        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            // Spin answers 500 when the component gives no response.
            Ok(Err(_)) | Err(_) => Ok(internal_server_error()),
        }
    }
}

/// An empty 500, as Spin answers a component that ended without a response.
fn internal_server_error() -> Response<HyperOutgoingBody> {
    let body: HyperOutgoingBody = Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

/// Serves the artifact on `listener` for as long as the task runs.
pub async fn serve(served: Arc<Served>, listener: TcpListener) {
    while let Ok((stream, peer)) = listener.accept().await {
        let served = Arc::clone(&served);
        let service = service_fn(move |request| {
            let served = Arc::clone(&served);
            async move { served.handle(request, peer).await }
        });
        tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
    }
}
