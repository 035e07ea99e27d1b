//! The leaking versions: each one is the shape a public issue thread found
//! in a real service.

use std::sync::Arc;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use tracing::span;
use tracing::{Dispatch, Subscriber};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

use crate::{EventsOnSpan, REQUESTS_METRIC, user_path};

// ANCHOR: registry_without_layers
/// A service that wants span context but no output yet installs the bare
/// registry as its subscriber. With no layer on top, nothing ever tells the
/// registry that a span closed, so it keeps every span's data
/// (tokio-rs/tracing#900).
pub fn registry_without_layers() -> Dispatch {
    Dispatch::new(Registry::default())
}
// ANCHOR_END: registry_without_layers

// ANCHOR: wrapped_registry
/// The registry behind an `Arc`, wrapped in a type of the service's own
/// (tokio-rs/tracing#2668). Every call is passed on, but `downcast_raw` is
/// not: `Layered` looks for the `Registry` under it with a downcast to run
/// its close logic, does not find it, and closed spans are never removed.
#[derive(Debug, Clone)]
pub struct SharedRegistry(pub Arc<Registry>);

impl Subscriber for SharedRegistry {
    // enabled, new_span, record, event, enter, exit, clone_span, try_close…
    pass_calls_on_to_the_registry!();
    // Missing: `downcast_raw`. The default finds `SharedRegistry`, never
    // the `Registry` inside it.
}

/// Layers need to look spans up: passed on too.
impl<'a> LookupSpan<'a> for SharedRegistry {
    type Data = <Registry as LookupSpan<'a>>::Data;
    fn span_data(&'a self, id: &span::Id) -> Option<Self::Data> {
        self.0.span_data(id)
    }
}

/// The service's subscriber: its exporting layer over the wrapped registry.
pub fn layered_over_wrapped_registry(registry: Arc<Registry>) -> Dispatch {
    Dispatch::new(SharedRegistry(registry).with(EventsOnSpan))
}
// ANCHOR_END: wrapped_registry

// ANCHOR: long_lived_span
/// One connection serving `requests` requests, all inside the connection's
/// span: every event lands in that span, and a layer that keeps events
/// until their span closes keeps all of them while the connection lives
/// (hyperium/h2#763). Returns the connection span, still open.
pub fn serve_on_connection_span(dispatch: &Dispatch, requests: usize) -> tracing::Span {
    tracing::dispatcher::with_default(dispatch, || {
        let connection = tracing::info_span!("connection");
        let _entered = connection.enter();
        for request_id in 0..requests {
            tracing::debug!(request_id, "request handled");
        }
        connection.clone()
    })
}
// ANCHOR_END: long_lived_span

// ANCHOR: raw_path_label
/// Counts requests with the raw URL path as a label: every user's path is
/// a new label value, so every user adds a series that the recorder keeps.
pub fn count_requests_by_path(recorder: &PrometheusRecorder, users: usize) {
    metrics::with_local_recorder(recorder, || {
        for user in 0..users {
            metrics::counter!(REQUESTS_METRIC, "path" => user_path(user)).increment(1);
        }
    });
}
// ANCHOR_END: raw_path_label

// ANCHOR: recorder_without_upkeep
/// The low-level constructor: it builds the recorder and nothing else. No
/// task drains the histograms, so every sample stays buffered until a
/// scrape renders them (metrics-rs/metrics#245, metrics-rs/metrics#467).
pub fn recorder_without_upkeep() -> PrometheusRecorder {
    PrometheusBuilder::new().build_recorder()
}
// ANCHOR_END: recorder_without_upkeep
