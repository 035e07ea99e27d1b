//! A ready axum router with the endpoints Go's `net/http/pprof` and a
//! Prometheus client would give a Go service, one line to mount:
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use std::net::SocketAddr;
//!
//! let app = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "hello" }))
//!     .merge(leakscope::http::debug_router());
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:6060").await?;
//! // The router refuses peers it cannot see: serve with their addresses.
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await
//! # }
//! ```
//!
//! | endpoint | answers |
//! |---|---|
//! | `GET /metrics` | heap, tasks and the profiler's own memory, read at scrape time (`prometheus-client`, OpenMetrics text) |
//! | `GET /debug/pprof/` | an index of these endpoints |
//! | `GET /debug/pprof/heap` | sampled in-use heap, pprof format, allocator frames trimmed; `?seconds=N`: what changed over the next N seconds (a delta profile, `go tool pprof -seconds N`); `?debug=1`: as text; `?raw=1`: untrimmed |
//! | `GET /debug/pprof/flamegraph` | the heap as a flamegraph (SVG) |
//! | `GET /debug/pprof/goroutine` | alive tasks grouped by where they wait, as a pprof count profile; `?debug=1`: as text, `?debug=2`: with each group's stack |
//! | `GET /debug/pprof/tasks` | the same as `goroutine?debug=1` |
//!
//! The `/debug/pprof` endpoints exist with the `pprof` feature. Task dumps
//! need `--cfg tokio_unstable` and Linux on x86, x86-64 or AArch64; elsewhere
//! the task endpoints answer 501 and say so. A query parameter the endpoint
//! does not know, or a value out of range, gets 400 and a sentence.
//!
//! # Loopback only, unless told otherwise
//!
//! Profiles show code paths and memory contents' sizes; a heap profile with
//! `seconds` holds a request open. The router answers only peers on the
//! loopback interface (127.0.0.1, ::1) and answers 403 to every other one. It
//! learns the peer from axum's `ConnectInfo`, so the server must be started
//! with `into_make_service_with_connect_info::<SocketAddr>()`; without it the
//! router cannot tell who asks and refuses everyone, with a 403 that says
//! this. A Prometheus server on another machine needs
//! [`DebugRoutes::allow_remote_metrics`], which opens `/metrics` only; a
//! service behind its own access control can open everything with
//! [`DebugRoutes::allow_remote_peers`].
//!
//! # What the binary must set
//!
//! Heap profiles need jemalloc as the global allocator and its profiler
//! switched on at start-up by jemalloc's configuration string, exported by
//! the binary (`lg_prof_sample:19` samples one allocation per 512 KiB
//! allocated on average, cheap enough for production):
//!
//! ```text
//! #[global_allocator]
//! static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
//!
//! #[allow(non_upper_case_globals)]
//! #[unsafe(export_name = "malloc_conf")]
//! pub static malloc_conf: &[u8] = b"prof:true,prof_active:true,lg_prof_sample:19\0";
//! ```
//!
//! The name `malloc_conf` (and the environment variable `MALLOC_CONF`) only
//! reach jemalloc when tikv-jemallocator is built with its
//! `unprefixed_malloc_on_supported_platforms` feature. Without it jemalloc's
//! symbols carry the `_rjem_` prefix, the setting must be exported as
//! `_rjem_malloc_conf` (variable `_RJEM_MALLOC_CONF`), and a `malloc_conf`
//! is silently ignored: profiling stays off and `/debug/pprof/heap` answers
//! 501.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

#[cfg(feature = "jemalloc")]
use crate::heap::HeapStats;
use crate::monitor::MonitorLog;

/// How long a task dump may take before the endpoint gives up: a dump waits
/// for every worker to reach a yield point.
pub const DEFAULT_TASK_DUMP_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest `seconds` a delta heap profile may ask for.
pub const MAX_PROFILE_SECONDS: u64 = 600;

/// The debug router's settings; [`debug_router`] is `DebugRoutes::new().router()`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DebugRoutes {
    allow_remote_peers: bool,
    allow_remote_metrics: bool,
    monitor: Option<MonitorLog>,
    task_dump_timeout: Duration,
}

impl Default for DebugRoutes {
    fn default() -> Self {
        Self::new()
    }
}

impl DebugRoutes {
    /// Loopback peers only, no monitor, [`DEFAULT_TASK_DUMP_TIMEOUT`].
    pub fn new() -> Self {
        Self {
            allow_remote_peers: false,
            allow_remote_metrics: false,
            monitor: None,
            task_dump_timeout: DEFAULT_TASK_DUMP_TIMEOUT,
        }
    }

    /// Answers every peer, and peers the router cannot see. Only for a
    /// router behind its own access control.
    pub fn allow_remote_peers(mut self) -> Self {
        self.allow_remote_peers = true;
        self
    }

    /// Answers every peer at `/metrics` only, for a Prometheus server on
    /// another machine; the profiles stay loopback-only.
    pub fn allow_remote_metrics(mut self) -> Self {
        self.allow_remote_metrics = true;
        self
    }

    /// Adds a running monitor's numbers to `/metrics`: samples taken and
    /// growth since its first sample.
    pub fn monitor(mut self, log: MonitorLog) -> Self {
        self.monitor = Some(log);
        self
    }

    /// How long a task dump may take (default [`DEFAULT_TASK_DUMP_TIMEOUT`]).
    pub fn task_dump_timeout(mut self, timeout: Duration) -> Self {
        self.task_dump_timeout = timeout;
        self
    }

    /// The router, to `.merge` into a service's own (whatever its state).
    pub fn router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(LeakscopeCollector::new(self.monitor.clone())));
        let shared = Shared {
            registry: Arc::new(registry),
            task_dump_timeout: self.task_dump_timeout,
        };
        let guarded = |router: Router<S>, open: bool| {
            if open {
                router
            } else {
                router.layer(middleware::from_fn(loopback_only))
            }
        };
        let metrics = Router::new()
            .route("/metrics", get(metrics))
            .with_state(shared.clone());
        let metrics = guarded(
            metrics,
            self.allow_remote_peers || self.allow_remote_metrics,
        );
        let metrics = metrics.merge(guarded(
            Router::new().route("/debug/leakscope/doctor", get(crate::doctor::serve_doctor)),
            self.allow_remote_peers,
        ));
        #[cfg(feature = "pprof")]
        let metrics = metrics.merge(guarded(
            Router::new()
                .route("/debug/pprof/", get(pprof::index))
                .route("/debug/pprof/heap", get(pprof::heap))
                .route("/debug/pprof/flamegraph", get(pprof::flamegraph))
                .route("/debug/pprof/goroutine", get(pprof::goroutine))
                .route("/debug/pprof/tasks", get(pprof::tasks))
                .route(
                    "/debug/leakscope/match",
                    get(pprof::match_heap).post(pprof::match_posted),
                )
                .with_state(shared),
            self.allow_remote_peers,
        ));
        metrics
    }
}

/// `/metrics` and, with the `pprof` feature, `/debug/pprof/*`, answering
/// loopback peers only: see the [module docs](self).
pub fn debug_router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    DebugRoutes::new().router()
}

#[derive(Debug, Clone)]
struct Shared {
    registry: Arc<Registry>,
    #[cfg_attr(not(feature = "pprof"), allow(dead_code))]
    task_dump_timeout: Duration,
}

async fn loopback_only(request: Request, next: Next) -> Response {
    match request.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(peer)) if peer.ip().is_loopback() => next.run(request).await,
        Some(ConnectInfo(peer)) => (
            StatusCode::FORBIDDEN,
            format!(
                "the debug endpoints answer loopback peers only, not {}; \
                 build the router with DebugRoutes::new().allow_remote_peers() to change that\n",
                peer.ip()
            ),
        )
            .into_response(),
        None => (
            StatusCode::FORBIDDEN,
            "the debug endpoints answer loopback peers only, and this server does not say who \
             the peer is: serve the app with \
             .into_make_service_with_connect_info::<std::net::SocketAddr>()\n",
        )
            .into_response(),
    }
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

/// The value of `name`, one of `allowed` (the first when absent).
#[cfg_attr(not(feature = "pprof"), allow(dead_code))]
fn choice(query: &HashMap<String, String>, name: &str, allowed: &[u8]) -> Result<u8, BadRequest> {
    let Some(value) = query.get(name) else {
        return Ok(allowed[0]);
    };
    match value.parse::<u8>() {
        Ok(number) if allowed.contains(&number) => Ok(number),
        _ => {
            let allowed: Vec<String> = allowed.iter().map(u8::to_string).collect();
            let (last, others) = allowed.split_last().expect("at least one allowed value");
            Err(BadRequest(format!(
                "'{name}' must be {} or {last}, not '{value}'",
                others.join(", ")
            )))
        }
    }
}

// ANCHOR: collector
/// leakscope's numbers for a `prometheus-client` [`Registry`], read when
/// the registry is encoded (at scrape time), not sampled in between:
///
/// | metric | from |
/// |---|---|
/// | `jemalloc_{allocated,active,resident,mapped,retained,metadata}_bytes` | [`HeapStats::read`] |
/// | `tokio_alive_tasks` | the tokio runtime the scrape runs on |
/// | `leakscope_rss_bytes` | `/proc/self/statm` (Linux) |
/// | `leakscope_profiler_retained_bytes` | memory the profiler itself keeps (feature `pprof`) |
/// | `leakscope_monitor_samples_total`, `leakscope_monitor_growth_bytes` | a [`MonitorLog`], when given |
///
/// RSS is not `process_resident_memory_bytes`: that name belongs to the
/// standard process collector, which a service may register beside this one.
#[derive(Debug, Clone, Default)]
pub struct LeakscopeCollector {
    monitor: Option<MonitorLog>,
}

impl LeakscopeCollector {
    /// A collector of the heap, tasks and RSS, plus `monitor`'s numbers.
    pub fn new(monitor: Option<MonitorLog>) -> Self {
        Self { monitor }
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    let metric = encoder.encode_descriptor(name, help, unit.as_ref(), gauge.metric_type())?;
    gauge.encode(metric)
}

impl Collector for LeakscopeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Ok(live) = crate::alloc::process_counters() {
            gauge(
                &mut encoder,
                "leakscope_live",
                "Bytes in live allocations, from leakscope's counting allocator (requested sizes).",
                Some(Unit::Bytes),
                live.live_bytes,
            )?;
            gauge(
                &mut encoder,
                "leakscope_live_allocations",
                "Allocations not yet freed, from leakscope's counting allocator.",
                None,
                live.live_allocations,
            )?;
        }
        #[cfg(feature = "jemalloc")]
        if let Ok(heap) = HeapStats::read() {
            let heap_gauges = [
                (
                    "jemalloc_allocated",
                    "Bytes in live allocations (jemalloc stats.allocated): watch this one for leaks.",
                    heap.allocated,
                ),
                (
                    "jemalloc_active",
                    "Bytes in active pages, allocated plus fragmentation (stats.active).",
                    heap.active,
                ),
                (
                    "jemalloc_resident",
                    "Bytes in physically resident pages the allocator maps (stats.resident).",
                    heap.resident,
                ),
                (
                    "jemalloc_mapped",
                    "Bytes in active extents mapped by the allocator (stats.mapped).",
                    heap.mapped,
                ),
                (
                    "jemalloc_retained",
                    "Bytes of virtual memory kept rather than unmapped (stats.retained).",
                    heap.retained,
                ),
                (
                    "jemalloc_metadata",
                    "Bytes the allocator uses for its own bookkeeping (stats.metadata).",
                    heap.metadata,
                ),
            ];
            for (name, help, value) in heap_gauges {
                gauge(&mut encoder, name, help, Some(Unit::Bytes), value as i64)?;
            }
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            gauge(
                &mut encoder,
                "tokio_alive_tasks",
                "Tasks alive in the tokio runtime that serves the scrape.",
                None,
                runtime.metrics().num_alive_tasks() as i64,
            )?;
        }
        if let Some(rss) = crate::monitor::rss_bytes() {
            gauge(
                &mut encoder,
                "leakscope_rss",
                "Resident memory of the process (/proc/self/statm).",
                Some(Unit::Bytes),
                rss as i64,
            )?;
        }
        #[cfg(feature = "pprof")]
        gauge(
            &mut encoder,
            "leakscope_profiler_retained",
            "Heap bytes the profiler itself keeps, mostly the symbolizer's debug-info cache: \
             counted by jemalloc_allocated_bytes, left out of heap profiles.",
            Some(Unit::Bytes),
            crate::profile::profiler_retained_bytes(),
        )?;
        if let Some(log) = &self.monitor {
            let summary = log.summary();
            let samples = ConstCounter::new(summary.samples_taken);
            let metric = encoder.encode_descriptor(
                "leakscope_monitor_samples",
                "Samples the memory monitor has taken.",
                None,
                samples.metric_type(),
            )?;
            samples.encode(metric)?;
            gauge(
                &mut encoder,
                "leakscope_monitor_growth",
                "Allocated heap growth from the monitor's first sample to its latest.",
                Some(Unit::Bytes),
                summary.growth_bytes,
            )?;
        }
        Ok(())
    }
}
// ANCHOR_END: collector

/// The content type of OpenMetrics text, what `prometheus-client` writes.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn metrics(
    State(shared): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(bad_request) = reject_unknown(&query, &[]) {
        return bad_request.into_response();
    }
    let mut text = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &shared.registry) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the metrics: {error}\n"),
        )
            .into_response();
    }
    ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], text).into_response()
}

#[cfg(feature = "pprof")]
mod pprof {
    use super::*;
    use crate::profile::{self, HeapView, ProfileError};

    pub(super) async fn index() -> axum::response::Html<&'static str> {
        axum::response::Html(
            "<!doctype html><title>/debug/pprof/</title><h1>/debug/pprof/</h1><ul>\
             <li><a href=\"heap\">heap</a>: sampled in-use heap (pprof; <code>go tool pprof \
             http://HOST/debug/pprof/heap</code>); <a href=\"heap?debug=1\">heap?debug=1</a>: \
             as text; <code>heap?seconds=N</code>: what changed over N seconds; \
             <a href=\"heap?raw=1\">heap?raw=1</a>: with jemalloc's own frames left in</li>\
             <li><a href=\"flamegraph\">flamegraph</a>: the in-use heap as a flamegraph (SVG)</li>\
             <li><a href=\"goroutine?debug=1\">goroutine?debug=1</a>: alive tasks grouped by \
             where they wait (text; <a href=\"goroutine?debug=2\">debug=2</a>: with stacks); \
             <code>goroutine</code>: the same as a pprof profile</li>\
             <li><a href=\"tasks\">tasks</a>: the same as goroutine?debug=1</li>\
             <li><a href=\"/debug/leakscope/match\">/debug/leakscope/match</a>: the book's leak \
             shapes in this heap (POST a saved profile to match that one instead)</li>\
             <li><a href=\"/debug/leakscope/doctor?seconds=10\">/debug/leakscope/doctor</a>: \
             is it a leak? a verdict over N seconds</li>\
             </ul><p><a href=\"/metrics\">/metrics</a></p>",
        )
    }

    /// The book's leak shapes in the process's own heap profile, as text.
    pub(super) async fn match_heap() -> Response {
        match crate::matcher::match_current_heap().await {
            Ok(matches) => crate::matcher::render(&matches).into_response(),
            Err(crate::matcher::MatchError::Profile(error)) => profile_error(error),
            Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")).into_response(),
        }
    }

    /// The book's leak shapes in a profile sent in the request body (a
    /// saved `/debug/pprof/heap`); 400 with the reason when it is not one.
    pub(super) async fn match_posted(body: axum::body::Bytes) -> Response {
        let matched = tokio::task::spawn_blocking(move || {
            let profile = profile::decode(&body)?;
            crate::matcher::match_profile(&profile).map_err(|error| match error {
                crate::matcher::MatchError::Profile(error) => error,
                other => ProfileError::Decode(other.to_string()),
            })
        })
        .await;
        match matched {
            Ok(Ok(matches)) => crate::matcher::render(&matches).into_response(),
            Ok(Err(error)) => (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response(),
            Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the matcher panicked\n").into_response(),
        }
    }

    fn profile_error(error: ProfileError) -> Response {
        let code = match error {
            ProfileError::NotEnabled | ProfileError::NotActive => StatusCode::NOT_IMPLEMENTED,
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

    /// What `/debug/pprof/heap`'s query asks for.
    #[derive(Debug, PartialEq)]
    struct HeapQuery {
        view: HeapView,
        window: Option<Duration>,
        text: bool,
    }

    fn parse_heap_query(query: &HashMap<String, String>) -> Result<HeapQuery, BadRequest> {
        reject_unknown(query, &["debug", "raw", "seconds"])?;
        let view = match choice(query, "raw", &[0, 1])? {
            0 => HeapView::Program,
            _ => HeapView::Raw,
        };
        let text = choice(query, "debug", &[0, 1])? == 1;
        let window = match query.get("seconds") {
            None => None,
            Some(seconds) => match seconds.parse::<u64>() {
                Ok(seconds @ 1..=MAX_PROFILE_SECONDS) => Some(Duration::from_secs(seconds)),
                _ => {
                    return Err(BadRequest(format!(
                        "'seconds' must be a whole number from 1 to {MAX_PROFILE_SECONDS}, \
                         not '{seconds}'"
                    )));
                }
            },
        };
        Ok(HeapQuery { view, window, text })
    }

    // ANCHOR: heap_endpoint
    pub(super) async fn heap(Query(query): Query<HashMap<String, String>>) -> Response {
        let asked = match parse_heap_query(&query) {
            Ok(asked) => asked,
            Err(bad_request) => return bad_request.into_response(),
        };
        let profile = match asked.window {
            None => profile::take_heap(asked.view).await,
            Some(window) => profile::heap_growth(asked.view, window).await,
        };
        let profile = match profile {
            Ok(profile) => profile,
            Err(error) => return profile_error(error),
        };
        let answer = if asked.text {
            profile::off_runtime(move || profile::text_view(&profile, 0).into_response()).await
        } else {
            profile::off_runtime(move || pprof_response(profile::encode(&profile), "heap.pb.gz"))
                .await
        };
        answer.unwrap_or_else(profile_error)
    }
    // ANCHOR_END: heap_endpoint

    pub(super) async fn flamegraph(Query(query): Query<HashMap<String, String>>) -> Response {
        if let Err(bad_request) = reject_unknown(&query, &[]) {
            return bad_request.into_response();
        }
        match profile::heap_flamegraph().await {
            Ok(svg) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
            Err(error) => profile_error(error),
        }
    }

    /// Alive tasks grouped by where they wait, or why that cannot be told.
    #[cfg_attr(
        not(all(
            feature = "taskdump",
            tokio_unstable,
            target_os = "linux",
            any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")
        )),
        allow(clippy::unused_async)
    )]
    async fn task_sites(timeout: Duration) -> Result<Vec<profile::TaskSite>, Response> {
        #[cfg(all(
            feature = "taskdump",
            tokio_unstable,
            target_os = "linux",
            any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")
        ))]
        {
            profile::task_sites(timeout).await.ok_or_else(|| {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the task dump did not finish within {timeout:?}: a runtime worker is \
                         blocked\n"
                    ),
                )
                    .into_response()
            })
        }
        #[cfg(not(all(
            feature = "taskdump",
            tokio_unstable,
            target_os = "linux",
            any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")
        )))]
        {
            let _ = timeout;
            Err((
                StatusCode::NOT_IMPLEMENTED,
                format!(
                    "{} tasks alive; grouping them by where they wait needs tokio's task dumps \
                     (build with RUSTFLAGS=\"--cfg tokio_unstable\", Linux on x86, x86-64 or \
                     AArch64)\n",
                    crate::tasks::alive_tasks()
                ),
            )
                .into_response())
        }
    }

    fn task_text(sites: &[profile::TaskSite], with_stacks: bool) -> String {
        let total: usize = sites.iter().map(|site| site.tasks).sum();
        let mut text = format!("{total} tasks alive\n");
        for site in sites {
            text.push_str(&format!("{site}\n"));
            if with_stacks {
                for frame in &site.stack {
                    text.push_str(&format!("    {frame}\n"));
                }
                text.push('\n');
            }
        }
        text
    }

    pub(super) async fn goroutine(
        State(shared): State<Shared>,
        Query(query): Query<HashMap<String, String>>,
    ) -> Response {
        let debug = match reject_unknown(&query, &["debug"])
            .and_then(|()| choice(&query, "debug", &[0, 1, 2]))
        {
            Ok(debug) => debug,
            Err(bad_request) => return bad_request.into_response(),
        };
        let sites = match task_sites(shared.task_dump_timeout).await {
            Ok(sites) => sites,
            Err(response) => return response,
        };
        match debug {
            0 => pprof_response(
                profile::encode(&profile::task_profile(&sites)),
                "goroutine.pb.gz",
            ),
            level => task_text(&sites, level == 2).into_response(),
        }
    }

    pub(super) async fn tasks(
        State(shared): State<Shared>,
        Query(query): Query<HashMap<String, String>>,
    ) -> Response {
        if let Err(bad_request) = reject_unknown(&query, &[]) {
            return bad_request.into_response();
        }
        match task_sites(shared.task_dump_timeout).await {
            Ok(sites) => task_text(&sites, false).into_response(),
            Err(response) => response,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect()
        }

        #[test]
        fn heap_queries_are_read_and_bad_ones_explained() {
            assert_eq!(
                parse_heap_query(&query(&[("seconds", "10"), ("debug", "1")])).unwrap(),
                HeapQuery {
                    view: HeapView::Program,
                    window: Some(Duration::from_secs(10)),
                    text: true
                }
            );
            assert_eq!(
                parse_heap_query(&query(&[("raw", "1")])).unwrap().view,
                HeapView::Raw
            );
            for (pairs, says) in [
                (
                    &[("seconds", "0")][..],
                    "'seconds' must be a whole number from 1 to 600",
                ),
                (&[("seconds", "601")][..], "not '601'"),
                (&[("seconds", "ten")][..], "not 'ten'"),
                (&[("debug", "2")][..], "'debug' must be 0 or 1, not '2'"),
                (&[("raw", "yes")][..], "'raw' must be 0 or 1"),
                (&[("gc", "1")][..], "unknown query parameter 'gc'"),
            ] {
                let BadRequest(message) = parse_heap_query(&query(pairs)).unwrap_err();
                assert!(message.contains(says), "{pairs:?}: {message}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    async fn get_from(router: Router, peer: Option<&str>, uri: &str) -> (StatusCode, String) {
        let mut request = axum::http::Request::get(uri).body(Body::empty()).unwrap();
        if let Some(peer) = peer {
            let peer: SocketAddr = peer.parse().unwrap();
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    const LOOPBACK: Option<&str> = Some("127.0.0.1:40000");

    #[tokio::test(flavor = "current_thread")]
    async fn only_loopback_peers_are_answered_unless_allowed() {
        let (status, body) = get_from(debug_router(), LOOPBACK, "/metrics").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, _) = get_from(debug_router(), Some("[::1]:40000"), "/metrics").await;
        assert_eq!(status, StatusCode::OK);

        let (status, body) = get_from(debug_router(), Some("10.1.2.3:40000"), "/metrics").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("loopback peers only, not 10.1.2.3"), "{body}");

        let (status, body) = get_from(debug_router(), None, "/metrics").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(
            body.contains("into_make_service_with_connect_info"),
            "{body}"
        );

        let open = DebugRoutes::new().allow_remote_peers().router();
        let (status, _) = get_from(open, Some("10.1.2.3:40000"), "/metrics").await;
        assert_eq!(status, StatusCode::OK);

        let scraped = || DebugRoutes::new().allow_remote_metrics().router();
        let (status, _) = get_from(scraped(), Some("10.1.2.3:40000"), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        #[cfg(feature = "pprof")]
        {
            let (status, _) =
                get_from(scraped(), Some("10.1.2.3:40000"), "/debug/pprof/heap").await;
            assert_eq!(status, StatusCode::FORBIDDEN);
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_doctor_is_mounted_and_explains_a_bad_window() {
        let (status, body) = get_from(
            debug_router(),
            LOOPBACK,
            "/debug/leakscope/doctor?seconds=0",
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(!body.trim().is_empty());
        let (status, _) = get_from(
            debug_router(),
            Some("10.1.2.3:40000"),
            "/debug/leakscope/doctor?seconds=1",
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    #[cfg(feature = "pprof")]
    #[tokio::test(flavor = "current_thread")]
    async fn the_matcher_refuses_a_body_that_is_not_a_profile() {
        let mut request = axum::http::Request::post("/debug/leakscope/match")
            .body(Body::from("not a profile"))
            .unwrap();
        request.extensions_mut().insert(ConnectInfo(
            "127.0.0.1:40000".parse::<SocketAddr>().unwrap(),
        ));
        let response = debug_router().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        assert!(
            String::from_utf8_lossy(&body).starts_with("not a pprof profile"),
            "{body:?}"
        );
    }

    #[cfg(feature = "jemalloc")]
    #[tokio::test(flavor = "current_thread")]
    async fn metrics_are_read_at_scrape_time_and_avoid_the_process_collector_s_names() {
        let kept = vec![1u8; 1 << 20];
        let (_, body) = get_from(debug_router(), LOOPBACK, "/metrics").await;
        let value = |name: &str| -> i64 {
            body.lines()
                .find_map(|line| line.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no {name} in\n{body}"))
                .parse()
                .unwrap()
        };
        assert!(value("jemalloc_allocated_bytes") >= 1 << 20);
        assert!(value("tokio_alive_tasks") >= 0);
        assert!(body.contains("# TYPE jemalloc_allocated_bytes gauge"));
        assert!(body.contains("# UNIT jemalloc_allocated_bytes bytes"));
        assert!(body.ends_with("# EOF\n"));
        assert!(!body.contains("process_"), "{body}");
        drop(kept);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_monitor_s_numbers_join_the_metrics() {
        let monitor = crate::monitor::Monitor::start(crate::monitor::MonitorConfig::default());
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let router = DebugRoutes::new().monitor(monitor.log()).router();
        let (_, body) = get_from(router, LOOPBACK, "/metrics").await;
        assert!(
            body.contains("\nleakscope_monitor_samples_total 3\n"),
            "{body}"
        );
        assert!(body.contains("\nleakscope_monitor_growth_bytes "), "{body}");
        monitor.stop().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bad_parameters_get_400_and_a_sentence() {
        let (status, body) = get_from(debug_router(), LOOPBACK, "/metrics?format=json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body,
            "unknown query parameter 'format' (this endpoint takes: none)\n"
        );
    }

    #[cfg(feature = "pprof")]
    #[tokio::test(flavor = "current_thread")]
    async fn without_jemalloc_s_profiler_the_heap_endpoint_says_what_to_set() {
        // This test binary exports no malloc_conf: profiling is off.
        let (status, body) = get_from(debug_router(), LOOPBACK, "/debug/pprof/heap").await;
        assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
        assert!(
            body.contains("malloc_conf") && body.contains("_rjem_malloc_conf"),
            "{body}"
        );
        let (status, body) =
            get_from(debug_router(), LOOPBACK, "/debug/pprof/heap?seconds=0").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }

    #[cfg(all(
        feature = "pprof",
        feature = "taskdump",
        tokio_unstable,
        target_os = "linux",
        any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")
    ))]
    #[tokio::test(flavor = "current_thread")]
    async fn the_goroutine_profile_has_a_text_form() {
        let stop = tokio_util::sync::CancellationToken::new();
        let waiters: Vec<_> = (0..3)
            .map(|_| tokio::spawn(stop.clone().cancelled_owned()))
            .collect();
        let (status, text) =
            get_from(debug_router(), LOOPBACK, "/debug/pprof/goroutine?debug=1").await;
        assert_eq!(status, StatusCode::OK);
        assert!(text.starts_with("3 tasks alive\n"), "{text}");
        let (_, tasks) = get_from(debug_router(), LOOPBACK, "/debug/pprof/tasks").await;
        assert!(
            tasks.starts_with("3 tasks alive\n3 tasks waiting at "),
            "{tasks}"
        );
        let (status, body) =
            get_from(debug_router(), LOOPBACK, "/debug/pprof/goroutine?debug=3").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body, "'debug' must be 0, 1 or 2, not '3'\n");
        stop.cancel();
        for waiter in waiters {
            waiter.await.unwrap();
        }
    }
}
