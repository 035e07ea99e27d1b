//! The HTTP service around a [`SeedService`]: the leak and status endpoints
//! of seed 000's demo server, plus leakscope's debug router — the endpoints
//! Go's `net/http/pprof` and a Prometheus client would add, served from
//! jemalloc and tokio.
//!
//! | endpoint | answers |
//! |---|---|
//! | `GET /leak?id=…[&size=…]` | one turn of the seed's load loop; 400 on bad input, 503 past the cap |
//! | `GET /status` | JSON: what the service holds, alive tasks, jemalloc's heap size |
//! | `GET /metrics`, `GET /debug/pprof/…` | [`leakscope::http`]: heap (`seconds`, `debug=1`), flamegraph, goroutine, tasks, metrics |

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use leakscope::heap::HeapStats;
use leakscope::report::format_bytes;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::{
    CACHE_ENTRY_BYTES, CapReached, LOAD_INTERVAL, MAX_ENTRY_BYTES, MAX_ID_LEN, SeedService, Stats,
    seed_iteration,
};

/// A service, its iteration counter and its leak cap, shared by every
/// request handler and the load loop.
#[derive(Clone)]
pub struct App {
    service: Arc<dyn SeedService>,
    iterations: Arc<AtomicU64>,
    cap_bytes: usize,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("service", &self.service.name())
            .field("iterations", &self.iterations)
            .field("cap_bytes", &self.cap_bytes)
            .finish()
    }
}

impl App {
    /// Serves `service`, refusing to let it retain more than `cap_bytes`.
    pub fn new(service: Arc<dyn SeedService>, cap_bytes: usize) -> Self {
        Self {
            service,
            iterations: Arc::default(),
            cap_bytes,
        }
    }

    /// The service behind the endpoints.
    pub fn service(&self) -> &dyn SeedService {
        &*self.service
    }

    /// Runs the next turn of the seed's loop on the service.
    pub fn iterate(&self, key: String, entry_bytes: usize) -> Result<(), CapReached> {
        let iteration = self.iterations.fetch_add(1, Ordering::Relaxed);
        seed_iteration(&*self.service, iteration, key, entry_bytes, self.cap_bytes)
    }

    /// What `/status` reports.
    pub fn status(&self) -> Status {
        let heap = HeapStats::read().unwrap_or_default();
        Status {
            service: self.service.name().to_string(),
            iterations: self.iterations.load(Ordering::Relaxed),
            stats: self.service.stats(),
            alive_tasks: leakscope::tasks::alive_tasks(),
            cap_bytes: self.cap_bytes,
            allocated_bytes: heap.allocated,
            resident_bytes: heap.resident,
        }
    }
}

/// The `/status` document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// `"leaky"` or `"fixed"`.
    pub service: String,
    /// Turns of the seed's loop run so far (requests and load together).
    pub iterations: u64,
    /// What the service holds.
    #[serde(flatten)]
    pub stats: Stats,
    /// Tasks alive in the server's runtime.
    pub alive_tasks: usize,
    /// The leak cap.
    pub cap_bytes: usize,
    /// jemalloc: bytes in live allocations, whole process.
    pub allocated_bytes: u64,
    /// jemalloc: bytes in resident pages, whole process.
    pub resident_bytes: u64,
}

// ANCHOR: router
/// The service's routes, and leakscope's debug router mounted in one line.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/leak", get(leak))
        .route("/status", get(status))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "no such endpoint: try /leak?id=test1, /status, /metrics or /debug/pprof/\n",
            )
        })
        .with_state(app)
        .merge(leakscope::http::debug_router())
}
// ANCHOR_END: router

/// A 400 answer: what was wrong with the request, in words.
#[derive(Debug)]
struct BadRequest(String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, format!("{}\n", self.0)).into_response()
    }
}

fn reject_unknown(query: &HashMap<String, String>, known: &[&str]) -> Result<(), BadRequest> {
    match query.keys().find(|key| !known.contains(&key.as_str())) {
        Some(unknown) => Err(BadRequest(format!(
            "unknown query parameter '{unknown}' (this endpoint takes: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ))),
        None => Ok(()),
    }
}

// ANCHOR: leak_request
/// Checks `/leak`'s query: `id` (1 to 128 of `A-Z a-z 0-9 _ - .`) and an
/// optional `size` in bytes (1 B to 1 MiB, the seed's 5 KB by default).
fn parse_leak_query(query: &HashMap<String, String>) -> Result<(String, usize), BadRequest> {
    reject_unknown(query, &["id", "size"])?;
    let id = query
        .get("id")
        .ok_or_else(|| BadRequest("missing query parameter 'id' (try /leak?id=test1)".into()))?;
    let id_chars_ok = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if id.is_empty() || id.len() > MAX_ID_LEN || !id_chars_ok {
        return Err(BadRequest(format!(
            "'id' must be 1 to {MAX_ID_LEN} characters of A-Z a-z 0-9 _ - ."
        )));
    }
    let entry_bytes = match query.get("size") {
        None => CACHE_ENTRY_BYTES,
        Some(size) => match size.parse::<usize>() {
            Ok(bytes) if (1..=MAX_ENTRY_BYTES).contains(&bytes) => bytes,
            Ok(_) => {
                return Err(BadRequest(format!(
                    "'size' must be between 1 and {MAX_ENTRY_BYTES} bytes"
                )));
            }
            Err(_) => {
                return Err(BadRequest(format!(
                    "'size' must be a whole number of bytes, not '{size}'"
                )));
            }
        },
    };
    Ok((id.clone(), entry_bytes))
}

async fn leak(State(app): State<App>, Query(query): Query<HashMap<String, String>>) -> Response {
    let (id, entry_bytes) = match parse_leak_query(&query) {
        Ok(parsed) => parsed,
        Err(bad_request) => return bad_request.into_response(),
    };
    match app.iterate(id, entry_bytes) {
        Ok(()) => Json(app.status()).into_response(),
        Err(cap) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "leak cap reached: the service holds {} and may hold at most {}; \
                 restart it or raise --cap\n",
                format_bytes(cap.retained_bytes as i64),
                format_bytes(cap.cap_bytes as i64)
            ),
        )
            .into_response(),
    }
}
// ANCHOR_END: leak_request

async fn status(State(app): State<App>, Query(query): Query<HashMap<String, String>>) -> Response {
    if let Err(bad_request) = reject_unknown(&query, &[]) {
        return bad_request.into_response();
    }
    Json(app.status()).into_response()
}

// ANCHOR: load_loop
/// The seed's load loop: a turn every [`LOAD_INTERVAL`] with keys
/// `cache_key_0`, `cache_key_1`, …, until `stop` is cancelled or the cap is
/// reached. Returns the turns it ran.
pub async fn run_load(app: App, stop: CancellationToken) -> u64 {
    let mut turns = 0;
    let mut ticker = tokio::time::interval(LOAD_INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return turns,
            _ = ticker.tick() => {}
        }
        let key = format!("cache_key_{turns}");
        if let Err(cap) = app.iterate(key, CACHE_ENTRY_BYTES) {
            eprintln!(
                "load loop stopped: the leak cap ({}) is reached",
                format_bytes(cap.cap_bytes as i64)
            );
            return turns;
        }
        turns += 1;
    }
}
// ANCHOR_END: load_loop

/// Serves `app` on `listener` until `stop` is cancelled, then lets open
/// connections finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    stop: CancellationToken,
) -> std::io::Result<()> {
    // The debug router answers loopback peers only, so it must see them.
    let service = router(app).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

/// Starts [`serve`] on an ephemeral loopback port (for tests, the report and
/// the demo) and returns its address and task.
pub async fn spawn_on_loopback(
    app: App,
    stop: CancellationToken,
) -> std::io::Result<(
    std::net::SocketAddr,
    tokio::task::JoinHandle<std::io::Result<()>>,
)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    Ok((addr, tokio::spawn(serve(listener, app, stop))))
}
