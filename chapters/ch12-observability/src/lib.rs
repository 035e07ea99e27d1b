//! Chapter 12: observability that leaks.
//!
//! Logging, tracing and metrics are the tools a service uses to see its own
//! memory grow, and each of them can be the thing that grows. Five shapes
//! from public issue threads, with the real crates (`tracing`,
//! `tracing-subscriber`, `metrics`, `metrics-exporter-prometheus`):
//!
//! | scenario | [`bad`] | [`good`] |
//! |---|---|---|
//! | registry without layers | a bare `Registry` as the subscriber never frees a closed span's data | the registry with a layer frees each span when it closes |
//! | wrapped registry | a wrapper around the registry hides it from `Layered`, so closed spans are never removed | the wrapper forwards `downcast_raw`, and closing works again |
//! | long-lived span | every request logs inside one connection span, and a layer keeps each event until that span closes | each request has its own span, which closes (and frees its events) when the request ends |
//! | raw paths as labels | one metric series per distinct URL path, kept for the life of the recorder | the route template as the label: one series per route |
//! | histograms without upkeep | a recorder built with `build_recorder()` buffers every histogram sample until something drains it | an upkeep task drains the samples every 5 seconds, as `PrometheusBuilder::build()` does |

/// Passes every `Subscriber` call but `downcast_raw` on to the registry in
/// field `0`: what a wrapper of the registry does (see the wrapped-registry
/// scenario).
macro_rules! pass_calls_on_to_the_registry {
    () => {
        fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
            self.0.enabled(metadata)
        }
        fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            self.0.new_span(span)
        }
        fn record(&self, span: &tracing::span::Id, values: &tracing::span::Record<'_>) {
            self.0.record(span, values)
        }
        fn record_follows_from(&self, span: &tracing::span::Id, follows: &tracing::span::Id) {
            self.0.record_follows_from(span, follows)
        }
        fn event(&self, event: &tracing::Event<'_>) {
            self.0.event(event)
        }
        fn enter(&self, span: &tracing::span::Id) {
            self.0.enter(span)
        }
        fn exit(&self, span: &tracing::span::Id) {
            self.0.exit(span)
        }
        fn clone_span(&self, id: &tracing::span::Id) -> tracing::span::Id {
            self.0.clone_span(id)
        }
        fn try_close(&self, id: tracing::span::Id) -> bool {
            self.0.try_close(id)
        }
        fn current_span(&self) -> tracing_core::span::Current {
            self.0.current_span()
        }
    };
}

pub mod bad;
pub mod good;

use std::fmt::Write as _;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusRecorder;
use tracing::span;
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Requests each tracing and cardinality scenario serves.
pub const REQUESTS: usize = 10_000;

/// How often `metrics-exporter-prometheus` drains its histograms when its
/// builder spawns the upkeep task (`PrometheusBuilder::upkeep_timeout`'s
/// default).
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The histogram scenario's traffic: this many requests a second…
pub const REQUESTS_PER_SECOND: usize = 100;

/// …for this long, with nobody scraping `/metrics`: 60 000 samples.
pub const TRAFFIC_TIME: Duration = Duration::from_secs(600);

/// The name every metric scenario records under.
pub const REQUESTS_METRIC: &str = "http_requests_total";

/// The histogram the upkeep scenario records each request's duration in.
pub const DURATION_METRIC: &str = "http_request_duration_seconds";

// ANCHOR: handle_requests
/// Serves `count` requests the way an instrumented handler does: each one
/// in its own span, logging one event. Pushes each span's id onto `ids`, so
/// a test can ask the registry afterwards whether it still holds them.
pub fn handle_requests(dispatch: &Dispatch, count: usize, ids: &mut Vec<span::Id>) {
    tracing::dispatcher::with_default(dispatch, || {
        for request_id in 0..count {
            let request = tracing::info_span!("request", request_id);
            let _entered = request.enter();
            tracing::info!("request handled");
            ids.extend(request.id());
        }
    });
}
// ANCHOR_END: handle_requests

/// How many of `ids` the registry still stores. Every span in `ids` has
/// closed, so a registry that frees closed spans answers 0.
pub fn stored_spans(registry: &Registry, ids: &[span::Id]) -> usize {
    ids.iter()
        .filter(|id| registry.span_data(id).is_some())
        .count()
}

// ANCHOR: events_on_span
/// The events recorded inside one span, kept until the span closes.
#[derive(Debug, Default)]
pub struct SpanEvents(pub Vec<String>);

/// A layer that keeps each event in the data of the span it happened in,
/// to send them together when the span closes. This is what an exporting
/// layer such as `tracing-opentelemetry`'s does with span events; the
/// export itself is left out.
#[derive(Debug, Default)]
pub struct EventsOnSpan;

impl<S> Layer<S> for EventsOnSpan
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, _attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanEvents::default());
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.event_span(event) else {
            return; // an event outside any span is not kept
        };
        let mut recorded = String::new();
        event.record(
            &mut |field: &tracing::field::Field, value: &dyn std::fmt::Debug| {
                let _ = write!(recorded, "{}={value:?} ", field.name());
            },
        );
        if let Some(events) = span.extensions_mut().get_mut::<SpanEvents>() {
            events.0.push(recorded);
        }
    }
}
// ANCHOR_END: events_on_span

/// How many events the span `id` holds, or `None` if the registry no longer
/// has the span.
pub fn events_held_by(registry: &Registry, id: &span::Id) -> Option<usize> {
    let span = registry.span(id)?;
    let held = span
        .extensions()
        .get::<SpanEvents>()
        .map_or(0, |e| e.0.len());
    Some(held)
}

/// The number of series of the metric `name` in a Prometheus text
/// exposition: one line per label set for a counter.
pub fn series_in(exposition: &str, name: &str) -> usize {
    exposition
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .count()
}

/// The path of the `user`-th distinct URL a client requests:
/// `/users/0`, `/users/1`, ….
pub fn user_path(user: usize) -> String {
    format!("/users/{user}")
}

// ANCHOR: serve_traffic
/// `traffic_time` of traffic, [`REQUESTS_PER_SECOND`] requests a second,
/// each recording its duration in a histogram. Nobody scrapes `/metrics`.
pub async fn serve_traffic(recorder: &PrometheusRecorder, traffic_time: Duration) {
    for _second in 0..traffic_time.as_secs() {
        metrics::with_local_recorder(recorder, || {
            for request in 0..REQUESTS_PER_SECOND {
                let seconds = 0.001 * (request % 50) as f64;
                metrics::histogram!(DURATION_METRIC).record(seconds);
            }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
// ANCHOR_END: serve_traffic
