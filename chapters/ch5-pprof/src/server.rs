//! The HTTP service around a [`SeedService`]: the leak and status endpoints
//! of seed 000's demo server, and the profiling endpoints Go's
//! `net/http/pprof` would add, served from jemalloc and tokio.
//!
//! | endpoint | answers |
//! |---|---|
//! | `GET /leak?id=…[&size=…]` | one turn of the seed's load loop; 400 on bad input, 503 past the cap |
//! | `GET /status` | JSON: what the service holds, alive tasks, jemalloc's heap size |
//! | `GET /debug/pprof/` | an index of the profiling endpoints |
//! | `GET /debug/pprof/heap` | the sampled in-use heap, pprof format, allocator frames trimmed (`?raw=1`: untrimmed) |
//! | `GET /debug/pprof/flamegraph` | the same heap as a flamegraph SVG |
//! | `GET /debug/pprof/tasks` | alive tasks grouped by where they wait (tokio task dump), as text |
//! | `GET /debug/pprof/goroutine` | the same as a pprof count profile |

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use leakscope::heap::HeapStats;
use leakscope::profile;
use leakscope::report::format_bytes;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::{
    CACHE_ENTRY_BYTES, CapReached, LOAD_INTERVAL, MAX_ENTRY_BYTES, MAX_ID_LEN, SeedService, Stats,
    seed_iteration,
};

/// How long a task dump may take before the endpoint gives up.
pub const TASK_DUMP_TIMEOUT: Duration = Duration::from_secs(5);

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

/// The service's routes.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/leak", get(leak))
        .route("/status", get(status))
        .route("/debug/pprof/", get(pprof_index))
        .route("/debug/pprof/heap", get(pprof_heap))
        .route("/debug/pprof/flamegraph", get(pprof_flamegraph))
        .route("/debug/pprof/tasks", get(pprof_tasks))
        .route("/debug/pprof/goroutine", get(pprof_goroutine))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "no such endpoint: try /leak?id=test1, /status or /debug/pprof/\n",
            )
        })
        .with_state(app)
}

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

async fn pprof_index() -> Html<&'static str> {
    Html(
        "<!doctype html><title>/debug/pprof/</title><h1>/debug/pprof/</h1><ul>\
         <li><a href=\"heap\">heap</a>: sampled in-use heap (pprof; <code>go tool pprof \
         http://HOST/debug/pprof/heap</code>); <a href=\"heap?raw=1\">heap?raw=1</a>: the same \
         with jemalloc's own frames left in</li>\
         <li><a href=\"flamegraph\">flamegraph</a>: the in-use heap as a flamegraph (SVG)</li>\
         <li><a href=\"tasks\">tasks</a>: alive tasks grouped by where they wait (text)</li>\
         <li><a href=\"goroutine\">goroutine</a>: the same as a pprof profile \
         (<code>go tool pprof -top http://HOST/debug/pprof/goroutine</code>)</li>\
         </ul><p><a href=\"/status\">/status</a></p>",
    )
}

fn profile_error(error: profile::ProfileError) -> Response {
    let code = match error {
        profile::ProfileError::NotEnabled | profile::ProfileError::NotActive => {
            StatusCode::NOT_IMPLEMENTED
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (code, format!("{error}\n")).into_response()
}

fn pprof_response(bytes: Vec<u8>, filename: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        bytes,
    )
        .into_response()
}

// ANCHOR: heap_endpoint
async fn pprof_heap(Query(query): Query<HashMap<String, String>>) -> Response {
    if let Err(bad_request) = reject_unknown(&query, &["raw"]) {
        return bad_request.into_response();
    }
    let profile = match query.get("raw").map(String::as_str) {
        None | Some("0") => profile::heap_profile().await,
        Some("1") => profile::raw_heap_profile().await,
        Some(other) => {
            return BadRequest(format!("'raw' must be 0 or 1, not '{other}'")).into_response();
        }
    };
    match profile {
        Ok(bytes) => pprof_response(bytes, "heap.pb.gz"),
        Err(error) => profile_error(error),
    }
}
// ANCHOR_END: heap_endpoint

async fn pprof_flamegraph(Query(query): Query<HashMap<String, String>>) -> Response {
    if let Err(bad_request) = reject_unknown(&query, &[]) {
        return bad_request.into_response();
    }
    match profile::heap_flamegraph().await {
        Ok(svg) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        Err(error) => profile_error(error),
    }
}

/// Alive tasks grouped by where they wait, or why that cannot be told.
async fn task_sites() -> Result<Vec<profile::TaskSite>, Response> {
    #[cfg(all(
        tokio_unstable,
        target_os = "linux",
        any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        profile::task_sites(TASK_DUMP_TIMEOUT).await.ok_or_else(|| {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the task dump did not finish in time: a runtime worker is blocked\n",
            )
                .into_response()
        })
    }
    #[cfg(not(all(
        tokio_unstable,
        target_os = "linux",
        any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")
    )))]
    {
        Err((
            StatusCode::NOT_IMPLEMENTED,
            format!(
                "{} tasks alive; grouping them by where they wait needs tokio's task dumps \
                 (--cfg tokio_unstable, Linux on x86/x86-64/AArch64)\n",
                leakscope::tasks::alive_tasks()
            ),
        )
            .into_response())
    }
}

async fn pprof_tasks(Query(query): Query<HashMap<String, String>>) -> Response {
    if let Err(bad_request) = reject_unknown(&query, &[]) {
        return bad_request.into_response();
    }
    match task_sites().await {
        Ok(sites) => {
            let total: usize = sites.iter().map(|site| site.tasks).sum();
            let mut text = format!("{total} tasks alive\n");
            for site in &sites {
                text.push_str(&format!("{site}\n"));
            }
            text.into_response()
        }
        Err(response) => response,
    }
}

async fn pprof_goroutine(Query(query): Query<HashMap<String, String>>) -> Response {
    if let Err(bad_request) = reject_unknown(&query, &[]) {
        return bad_request.into_response();
    }
    match task_sites().await {
        Ok(sites) => pprof_response(
            profile::encode(&profile::task_profile(&sites)),
            "goroutine.pb.gz",
        ),
        Err(response) => response,
    }
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
    axum::serve(listener, router(app))
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
