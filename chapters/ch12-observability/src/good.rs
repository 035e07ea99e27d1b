//! The fixed versions.

use std::any::TypeId;
use std::sync::Arc;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use tokio::task::JoinHandle;
use tracing::span;
use tracing::{Dispatch, Subscriber};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

use crate::{EventsOnSpan, REQUESTS_METRIC, UPKEEP_INTERVAL};

// ANCHOR: registry_with_layer
/// The registry with the layer the service exports through. `Layered`
/// tells the registry when a span closes, and the registry frees (and
/// reuses) its slot. A service that wants no output at all installs no
/// registry: `tracing::subscriber::NoSubscriber` stores nothing.
pub fn registry_with_layer() -> Dispatch {
    Dispatch::new(Registry::default().with(EventsOnSpan))
}
// ANCHOR_END: registry_with_layer

// ANCHOR: forwarding_wrapper
/// The same wrapper, passing `downcast_raw` on as well, so that `Layered`
/// finds the `Registry` inside and closes spans.
#[derive(Debug, Clone)]
pub struct SharedRegistry(pub Arc<Registry>);

impl Subscriber for SharedRegistry {
    pass_calls_on_to_the_registry!();

    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        // SAFETY: passes the caller's contract on to the inner subscriber,
        // whose answer points into `self.0`, which lives as long as `self`.
        unsafe { self.0.downcast_raw(id) }
    }
}
// ANCHOR_END: forwarding_wrapper

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

// ANCHOR: span_per_request
/// The same connection, with a span per request: each request's event
/// lands in the request's span, which closes (and hands its events on) when
/// the request ends. The connection span holds no per-request data.
pub fn serve_with_request_spans(dispatch: &Dispatch, requests: usize) -> tracing::Span {
    tracing::dispatcher::with_default(dispatch, || {
        let connection = tracing::info_span!("connection");
        let _entered = connection.enter();
        for request_id in 0..requests {
            let _request = tracing::debug_span!("request", request_id).entered();
            tracing::debug!("request handled");
        }
        connection.clone()
    })
}
// ANCHOR_END: span_per_request

// ANCHOR: route_label
/// The route template, not the path, as the label: one series per route
/// however many users there are. (The user, if it matters, belongs in a log
/// line or a span field.)
pub fn count_requests_by_route(recorder: &PrometheusRecorder, users: usize) {
    metrics::with_local_recorder(recorder, || {
        for _user in 0..users {
            metrics::counter!(REQUESTS_METRIC, "route" => "/users/{id}").increment(1);
        }
    });
}
// ANCHOR_END: route_label

// ANCHOR: recorder_with_upkeep
/// The recorder and the task that keeps it bounded: every
/// [`UPKEEP_INTERVAL`] it drains the buffered histogram samples into their
/// summaries — the loop `PrometheusBuilder::build()` spawns. The task stops
/// when the returned guard is dropped.
pub fn recorder_with_upkeep() -> (PrometheusRecorder, UpkeepTask) {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle: PrometheusHandle = recorder.handle();
    let upkeep = tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            every.tick().await;
            handle.run_upkeep();
        }
    });
    (recorder, UpkeepTask(upkeep))
}

/// Aborts the upkeep task when dropped, so the recorder's owner decides how
/// long it runs.
#[derive(Debug)]
pub struct UpkeepTask(JoinHandle<()>);

impl Drop for UpkeepTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}
// ANCHOR_END: recorder_with_upkeep
