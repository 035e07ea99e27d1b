//! The fixed versions: every connection and every request has a deadline,
//! the server has a connection cap, a body limit and a graceful shutdown,
//! and the client is built once and shared.

use std::fmt;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::{
    CLIENT_TIMEOUT, CONNECT_TIMEOUT, HEADER_READ_TIMEOUT, MAX_BODY_BYTES, MAX_CONNECTIONS,
    REQUEST_TIMEOUT, SHUTDOWN_GRACE, routes,
};

// ANCHOR: limits
/// Everything that bounds the good server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time a client gets to send a complete request head; between requests
    /// on a kept-alive connection, time it may stay idle.
    pub header_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Time a handler gets before the server answers `504 Gateway Timeout`.
    pub request_timeout: Duration,
    /// Largest request body read; larger ones get `413 Payload Too Large`.
    pub max_body_bytes: usize,
    /// Time in-flight requests get to finish once shutdown starts.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            request_timeout: REQUEST_TIMEOUT,
            max_body_bytes: MAX_BODY_BYTES,
            shutdown_grace: SHUTDOWN_GRACE,
        }
    }
}
// ANCHOR_END: limits

/// Connection counters the good server keeps as it runs.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    accepted: AtomicUsize,
    open: AtomicUsize,
    peak_open: AtomicUsize,
    timed_out: AtomicUsize,
}

impl ConnectionStats {
    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections being served right now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// The most connections ever served at once.
    pub fn peak_open(&self) -> usize {
        self.peak_open.load(Ordering::Relaxed)
    }

    /// Connections closed because the client was too slow to send a request.
    pub fn timed_out(&self) -> usize {
        self.timed_out.load(Ordering::Relaxed)
    }

    fn opened(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_open.fetch_max(open, Ordering::Relaxed);
    }

    fn closed(&self, timed_out: bool) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        if timed_out {
            self.timed_out.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A running good server: its counters, and the handle that shuts it down.
#[derive(Debug)]
pub struct Server {
    stats: Arc<ConnectionStats>,
    shutdown: CancellationToken,
    connections: TaskTracker,
    acceptor: JoinHandle<()>,
}

/// Pause after a failed `accept` (for example when the process is out of
/// file descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

// ANCHOR: server_with_limits
/// Serves the routes with every limit in `limits`: a body limit and a
/// request timeout on the routes, a connection cap in the accept loop, a
/// header-read timeout on each connection, and a shutdown that lets
/// in-flight requests finish.
pub fn spawn_server(listener: TcpListener, limits: Limits) -> Server {
    let app = routes()
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        // 504, not 408: the server's own work ran out of time, not the client.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            limits.request_timeout,
        ));
    let stats = Arc::new(ConnectionStats::default());
    let shutdown = CancellationToken::new();
    let connections = TaskTracker::new();
    let acceptor = tokio::spawn(accept_loop(
        listener,
        app,
        limits,
        stats.clone(),
        shutdown.clone(),
        connections.clone(),
    ));
    Server {
        stats,
        shutdown,
        connections,
        acceptor,
    }
}
// ANCHOR_END: server_with_limits

// ANCHOR: connection_cap
async fn accept_loop(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stats: Arc<ConnectionStats>,
    shutdown: CancellationToken,
    connections: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        // A slot first, then a connection: at the cap the server stops
        // accepting, and new clients wait in the kernel's backlog.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = shutdown.cancelled() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(_) => {
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        stats.opened();
        connections.spawn(serve_connection(
            stream,
            app.clone(),
            limits,
            slot,
            stats.clone(),
            shutdown.clone(),
        ));
    }
}
// ANCHOR_END: connection_cap

// ANCHOR: connection_timeouts
async fn serve_connection(
    stream: TcpStream,
    app: Router,
    limits: Limits,
    _slot: OwnedSemaphorePermit, // released when the connection ends
    stats: Arc<ConnectionStats>,
    shutdown: CancellationToken,
) {
    let mut builder = http1::Builder::new();
    // Without a timer hyper silently skips the header-read timeout.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut connection =
        pin!(builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app)));
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.cancelled() => {
            // Finish the request in flight, refuse the next, then close;
            // a client that takes longer than the grace period is cut off.
            connection.as_mut().graceful_shutdown();
            tokio::time::timeout(limits.shutdown_grace, connection)
                .await
                .unwrap_or(Ok(()))
        }
    };
    stats.closed(result.is_err_and(|error| error.is_timeout()));
}
// ANCHOR_END: connection_timeouts

impl Server {
    /// The server's connection counters.
    pub fn stats(&self) -> &ConnectionStats {
        &self.stats
    }

    // ANCHOR: shutdown
    /// Stops accepting, asks every connection to finish its request in
    /// flight and close, and waits until all have (at most the grace
    /// period, since each connection bounds its own wait).
    pub async fn shutdown(self) -> usize {
        let open_at_shutdown = self.stats.open();
        self.shutdown.cancel();
        self.acceptor.await.expect("the accept loop does not panic");
        self.connections.close();
        self.connections.wait().await;
        open_at_shutdown
    }
    // ANCHOR_END: shutdown
}

// ANCHOR: client_with_timeouts
/// A client with a deadline on everything: `CONNECT_TIMEOUT` to connect,
/// the seed's 10-second `CLIENT_TIMEOUT` for a whole request. Build it once
/// and share it (it is a handle to one connection pool; clones are cheap).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CLIENT_TIMEOUT)
        .no_proxy() // loopback only: never route through a proxy from the environment
        .build()
        .expect("a reqwest client with no TLS settings always builds")
}
// ANCHOR_END: client_with_timeouts

/// Why a fetch failed.
#[derive(Debug)]
pub enum FetchError {
    /// No complete response within the deadline.
    TimedOut { url: String, deadline: Duration },
    /// Any other failure: refused connection, error status, broken body.
    Failed(reqwest::Error),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TimedOut { url, deadline } => {
                write!(f, "GET {url}: no complete response within {deadline:?}")
            }
            Self::Failed(error) => write!(f, "GET failed: {error}"),
        }
    }
}

impl std::error::Error for FetchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::TimedOut { .. } => None,
            Self::Failed(error) => Some(error),
        }
    }
}

// ANCHOR: fetch_with_deadline
/// Fetches `url` with its own `deadline` (which replaces the client's
/// timeout for this request) and returns the body as text.
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    deadline: Duration,
) -> Result<String, FetchError> {
    let failed = |error: reqwest::Error| match error.is_timeout() {
        true => FetchError::TimedOut {
            url: url.to_string(),
            deadline,
        },
        false => FetchError::Failed(error),
    };
    let response = client
        .get(url)
        .timeout(deadline)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(failed)?;
    response.text().await.map_err(failed)
}
// ANCHOR_END: fetch_with_deadline
