//! A TCP forwarder the tests run in-process between a host and its database server, so
//! that a test can take the database away ([`Forwarder::cut`]) and bring it back
//! ([`Forwarder::restore`]) while the host runs.
//!
//! While cut, the listening port is closed (new connections are refused, as by a server
//! that is down) and every forwarded connection is shut down. Every thread it starts
//! ends when the forwarder is dropped.

use std::io::ErrorKind;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the accepting thread looks at its flags.
const POLL: Duration = Duration::from_millis(20);

/// How long connecting to the database server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Forwards `127.0.0.1:<port>` to a database server.
pub struct Forwarder {
    address: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

/// What the forwarder and its threads share.
struct Shared {
    upstream: SocketAddr,
    /// Whether connections are let through.
    open: AtomicBool,
    /// Whether the forwarder is being dropped.
    stopping: AtomicBool,
    /// Both ends of every forwarded connection, to shut them down on a cut.
    streams: Mutex<Vec<TcpStream>>,
}

impl Forwarder {
    /// Starts forwarding a free local port to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> Forwarder {
        let upstream = upstream
            .to_socket_addrs()
            .ok()
            .and_then(|mut addresses| addresses.next())
            .unwrap_or_else(|| panic!("cannot resolve the database server {upstream}"));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the forwarder");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let address = listener.local_addr().expect("the forwarder's address");
        let shared = Arc::new(Shared {
            upstream,
            open: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            streams: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || accept_loop(listener, address, &shared))
        };
        Forwarder {
            address,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `127.0.0.1:<port>`, where a host connects instead of the server.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// Takes the database away: open connections are shut down, new ones refused.
    pub fn cut(&self) {
        self.shared.open.store(false, Ordering::SeqCst);
        self.shared.shut_everything();
    }

    /// Brings the database back on the same port.
    pub fn restore(&self) {
        self.shared.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.shut_everything();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

impl Shared {
    fn shut_everything(&self) {
        for stream in self.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn forwarding(&self) -> bool {
        self.open.load(Ordering::SeqCst) && !self.stopping.load(Ordering::SeqCst)
    }
}

/// Accepts while open; while cut, closes the port (and binds it again on restore).
fn accept_loop(listener: TcpListener, address: SocketAddr, shared: &Arc<Shared>) {
    let mut listener = Some(listener);
    while !shared.stopping.load(Ordering::SeqCst) {
        if !shared.open.load(Ordering::SeqCst) {
            listener = None;
            std::thread::sleep(POLL);
            continue;
        }
        let current = listener.get_or_insert_with(|| rebind(address));
        match current.accept() {
            Ok((client, _)) => forward(client, shared),
            Err(error) if error.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(error) => panic!("the forwarder cannot accept: {error}"),
        }
    }
}

/// A non-blocking listener on `address` (first bound, or bound again after a cut).
fn rebind(address: SocketAddr) -> TcpListener {
    let listener = TcpListener::bind(address)
        .unwrap_or_else(|error| panic!("the forwarder cannot listen on {address} again: {error}"));
    listener
        .set_nonblocking(true)
        .expect("a non-blocking listener");
    listener
}

/// Connects `client` to the server and copies bytes both ways, each on a thread.
fn forward(client: TcpStream, shared: &Arc<Shared>) {
    // Some platforms hand out accepted sockets non-blocking, like their listener.
    if client.set_nonblocking(false).is_err() {
        return;
    }
    let Ok(server) = TcpStream::connect_timeout(&shared.upstream, CONNECT_TIMEOUT) else {
        return;
    };
    {
        let mut streams = shared.streams.lock().unwrap();
        if !shared.forwarding() {
            return;
        }
        streams.extend([&client, &server].map(|end| end.try_clone().expect("clone a socket")));
    }
    pump(&client, &server);
    pump(&server, &client);
}

/// Copies `from` to `to` on a thread of its own until either end closes.
fn pump(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
