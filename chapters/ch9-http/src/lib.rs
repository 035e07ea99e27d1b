//! Chapter 9: connections and timeouts in HTTP services.
//!
//! The Go seed's HTTP leak is a response body nobody closes, and its fix a
//! `defer resp.Body.Close()` plus `http.Client{Timeout: 10 * time.Second}`.
//! In Rust dropping a response closes its body, so that exact bug cannot be
//! written; what leaks instead are connections and requests that nothing
//! bounds. Every scenario here runs on real sockets, on loopback only:
//!
//! | scenario | [`bad`] | [`good`] |
//! |---|---|---|
//! | slow clients | `axum::serve` with no header-read timeout: 200 clients that send half a request hold 200 tasks and their buffers forever | hyper with a header-read timeout (which also closes idle keep-alive connections), a cap of 100 connections, graceful shutdown |
//! | stuck upstream | a `reqwest::Client` with no timeout: requests to a server that never answers pile up as pending tasks | a client-level timeout and per-request deadlines, ending each request with a clear error |
//! | stuck handlers | a request whose handler waits forever holds its connection for as long as the client waits | a request timeout answers 504 |
//! | request bodies | a handler that reads any body into memory | a 64 KiB body limit that answers 413 before the body is read |
//! | clients | a new `reqwest::Client` (and connection) per request | one shared client, one kept-alive connection |
//!
//! [`wire`] holds the raw HTTP/1.1 clients the scenarios use to play slow,
//! well-behaved and uploading clients.

pub mod bad;
pub mod good;
pub mod wire;

use std::io;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use leakscope::heap::LiveBytes;
use leakscope::tasks::{TaskLeakCheck, warm_up_runtime};
use tokio::net::{TcpListener, TcpSocket};

/// Slow clients in the first scenario: each connects and sends half a
/// request head, then nothing.
pub const SLOW_CLIENTS: usize = 200;

/// Connections the good server serves at once; the rest wait in the kernel's
/// accept backlog.
pub const MAX_CONNECTIONS: usize = 100;

/// How long a client gets to send a complete request head, and (between
/// requests on a kept-alive connection) to start the next one. The seed's
/// 10-second client timeout (`Timeout: 10 * time.Second`), applied on the
/// server's side.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The seed's client timeout (`http.Client{Timeout: 10 * time.Second}`):
/// the whole request, from connecting to the last byte of the body.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a handler may take before the good server gives up on it and
/// answers `504 Gateway Timeout`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client waits for a TCP connection before giving up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long in-flight requests get to finish once shutdown starts.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The largest request body the good server reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The body the third scenario uploads: 160 times the limit.
pub const OVERSIZED_BODY_BYTES: usize = 10 * 1024 * 1024;

/// Requests to a stuck upstream in the second scenario.
pub const STUCK_REQUESTS: usize = 100;

/// Connections the kernel queues for a listener before it accepts them.
/// tokio's `TcpListener::bind` asks for 128, as std does, so a 129th client
/// that the server has not accepted yet cannot even connect; servers in this
/// chapter ask for more so the slow clients can all connect.
pub const LISTEN_BACKLOG: u32 = 1024;

/// The good server's header-read timeout in live runs (`just run`, the
/// charts); the chapter's servers use [`HEADER_READ_TIMEOUT`], 10 s.
pub const LIVE_HEADER_TIMEOUT: Duration = Duration::from_millis(200);

/// What `GET /` answers.
pub const GREETING: &str = "hello\n";

/// Size of what `GET /download` answers: far more than a client reads
/// along with the headers, so its body is still on the way when the
/// `Response` is handed over.
pub const DOWNLOAD_BYTES: usize = 1024 * 1024;

static DOWNLOAD: [u8; DOWNLOAD_BYTES] = [0; DOWNLOAD_BYTES];

/// The routes both servers serve: `GET /`; `GET /download`, a 1 MiB body;
/// `POST /upload`, which reads the whole body and answers with its size;
/// and `GET /stuck`, whose handler waits on a dependency that never answers.
pub fn routes() -> Router {
    Router::new()
        .route("/", get(|| async { GREETING }))
        .route("/download", get(|| async { Bytes::from_static(&DOWNLOAD) }))
        .route("/upload", post(upload))
        .route("/stuck", get(std::future::pending::<()>))
}

async fn upload(body: Bytes) -> String {
    format!("received {} bytes\n", body.len())
}

// ANCHOR: bind_loopback
/// A listener on an ephemeral loopback port with a [`LISTEN_BACKLOG`]
/// backlog. Must be called inside a tokio runtime.
pub fn bind_loopback() -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind((std::net::Ipv4Addr::LOCALHOST, 0).into())?;
    socket.listen(LISTEN_BACKLOG)
}
// ANCHOR_END: bind_loopback

/// Waits until `condition` holds, checking every millisecond, for at most a
/// thousand checks; panics with `what` if it never does.
///
/// On tokio's paused clock a 1 ms sleep is always the earliest timer, so
/// the clock creeps forward a millisecond at a time and never jumps far
/// enough to fire a server's timeouts while it catches up with connections
/// the kernel already holds for it.
pub async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    const CHECKS: usize = 1000;
    for _ in 0..CHECKS {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("{what}: still not true after {CHECKS} checks, a millisecond apart");
}

/// A single-threaded runtime with I/O and timers: every task it runs, and
/// every byte they allocate, is on the calling thread, so counts are exact.
pub fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A live run's starting point: one server, [`SLOW_CLIENTS`] slow clients
/// connected to it, and the baselines they are measured against.
#[derive(Debug)]
pub struct SlowClients {
    /// Tasks alive before the server started (after the runtime warmed up).
    pub tasks: TaskLeakCheck,
    /// Live bytes counted from before the server started.
    pub heap: LiveBytes,
    /// The server under test, with [`LIVE_HEADER_TIMEOUT`] if it is the good one.
    pub server: EitherServer,
    /// Where it listens.
    pub address: std::net::SocketAddr,
    /// The clients, each holding half a request.
    pub clients: Vec<std::net::TcpStream>,
}

/// Warms the current runtime up, takes the baselines, starts the bad or the
/// good server on loopback and connects [`SLOW_CLIENTS`] slow clients to it.
pub async fn connect_slow_clients(use_good_server: bool) -> SlowClients {
    warm_up_runtime(4 * SLOW_CLIENTS).await;
    // Snapshots of a running scenario: count without waiting for stragglers.
    let tasks = TaskLeakCheck::start().settle_budget(std::time::Duration::ZERO);
    let heap = LiveBytes::start();
    let listener = bind_loopback().expect("bind loopback");
    let address = listener
        .local_addr()
        .expect("a bound listener has an address");
    let server = EitherServer::spawn(use_good_server, listener, LIVE_HEADER_TIMEOUT);
    let clients = wire::open_slow_clients(address, SLOW_CLIENTS).expect("connect");
    SlowClients {
        tasks,
        heap,
        server,
        address,
        clients,
    }
}

/// Either server, started and stopped the same way, for live runs that
/// show both side by side.
#[derive(Debug)]
pub enum EitherServer {
    /// [`bad::spawn_server`]'s serve task.
    Bad(tokio::task::JoinHandle<()>),
    /// [`good::spawn_server`]'s running server.
    Good(good::Server),
}

impl EitherServer {
    /// Starts the bad server, or the good one with default limits but this
    /// header-read timeout.
    pub fn spawn(use_good: bool, listener: TcpListener, header_read_timeout: Duration) -> Self {
        if use_good {
            let limits = good::Limits {
                header_read_timeout,
                ..good::Limits::default()
            };
            Self::Good(good::spawn_server(listener, limits))
        } else {
            Self::Bad(bad::spawn_server(listener))
        }
    }

    /// Stops it the only way each allows: the bad server's serve task is
    /// aborted (its connection tasks keep running); the good server shuts
    /// down gracefully.
    pub async fn stop(self) {
        match self {
            Self::Bad(serve_task) => serve_task.abort(),
            Self::Good(server) => {
                server.shutdown().await;
            }
        }
    }
}
