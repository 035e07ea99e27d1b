//! Every claim the chapter 12 page makes, measured. Heap numbers are this
//! thread's jemalloc counter (exact, unaffected by tests running beside);
//! counts come from the registry and the recorder themselves.

use std::sync::Arc;
use std::time::Duration;

use ch12_observability::{
    REQUESTS, REQUESTS_METRIC, REQUESTS_PER_SECOND, TRAFFIC_TIME, bad, events_held_by, good,
    handle_requests, series_in, serve_traffic, stored_spans,
};
use leakscope::heap::LiveBytes;
use leakscope::tasks::{TaskLeakCheck, warm_up_runtime};
use tracing::{Dispatch, span};
use tracing_subscriber::Registry;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A floor, not a measurement: a stored span is its metadata, parent, ref
/// count and extensions map in the registry's slab (about 155 bytes each in
/// the captured run). A bad side that kept less than this per request would
/// not be keeping the spans.
const MIN_BYTES_PER_STORED_SPAN: i64 = 100;

/// Runs a few requests first: the registry's slab, its thread-local span
/// stack and the first extensions map are allocated once and kept, by both
/// sides alike.
fn warmed_up(dispatch: Dispatch) -> Dispatch {
    handle_requests(&dispatch, 100, &mut Vec::new());
    dispatch
}

/// Serves `REQUESTS` requests and returns their ids and the bytes they left.
fn serve(dispatch: &Dispatch) -> (Vec<span::Id>, i64) {
    let mut ids = Vec::with_capacity(REQUESTS); // allocated before counting
    let heap = LiveBytes::start();
    handle_requests(dispatch, REQUESTS, &mut ids);
    (ids, heap.live_bytes())
}

fn registry_of(dispatch: &Dispatch) -> &Registry {
    dispatch
        .downcast_ref::<Registry>()
        .expect("the registry is reachable through the dispatch")
}

// ANCHOR: bare_registry
#[test]
fn bad_bare_registry_keeps_every_closed_span() {
    let dispatch = warmed_up(bad::registry_without_layers());

    let (ids, kept_bytes) = serve(&dispatch);

    // All 10 000 spans have closed; the registry still has every one.
    assert_eq!(stored_spans(registry_of(&dispatch), &ids), 10_000);
    assert!(kept_bytes >= REQUESTS as i64 * MIN_BYTES_PER_STORED_SPAN);
}

#[test]
fn good_registry_with_a_layer_frees_each_span_as_it_closes() {
    let dispatch = warmed_up(good::registry_with_layer());

    let (ids, kept_bytes) = serve(&dispatch);

    assert_eq!(stored_spans(registry_of(&dispatch), &ids), 0);
    assert_eq!(kept_bytes, 0); // one slot, reused by every request
}
// ANCHOR_END: bare_registry

// ANCHOR: wrapped_registry
#[test]
fn bad_wrapper_that_hides_the_registry_keeps_every_closed_span() {
    let registry = Arc::new(Registry::default());
    let dispatch = warmed_up(bad::layered_over_wrapped_registry(Arc::clone(&registry)));
    // The downcast `Layered` relies on fails through this wrapper:
    assert!(dispatch.downcast_ref::<Registry>().is_none());

    let (ids, kept_bytes) = serve(&dispatch);

    assert_eq!(stored_spans(&registry, &ids), 10_000);
    assert!(kept_bytes >= REQUESTS as i64 * MIN_BYTES_PER_STORED_SPAN);
}

#[test]
fn good_wrapper_that_forwards_downcast_raw_frees_each_span() {
    let registry = Arc::new(Registry::default());
    let dispatch = warmed_up(good::layered_over_wrapped_registry(Arc::clone(&registry)));
    assert!(dispatch.downcast_ref::<Registry>().is_some());

    let (ids, kept_bytes) = serve(&dispatch);

    assert_eq!(stored_spans(&registry, &ids), 0);
    assert_eq!(kept_bytes, 0);
}
// ANCHOR_END: wrapped_registry

/// A floor for one kept event: its `String` (at least the text
/// `message=request handled request_id=…`, 40 bytes) plus its slot in the
/// span's `Vec`.
const MIN_BYTES_PER_EVENT: i64 = 40;

/// What the open connection span itself holds on the good side: its empty
/// event list, boxed in the span's extensions (24 bytes, a 32-byte class).
const OPEN_CONNECTION_SPAN_BYTES: i64 = 32;

// ANCHOR: long_lived_span
#[test]
fn bad_connection_span_holds_every_request_event_until_it_closes() {
    let dispatch = warmed_up(good::registry_with_layer());
    let heap = LiveBytes::start();

    let connection = bad::serve_on_connection_span(&dispatch, REQUESTS);
    let connection_id = connection.id().expect("an enabled span");

    let held = events_held_by(registry_of(&dispatch), &connection_id);
    assert_eq!(held, Some(10_000));
    assert!(heap.live_bytes() >= REQUESTS as i64 * MIN_BYTES_PER_EVENT);

    // Not lost: held. Closing the connection span frees them all.
    drop(connection);
    assert_eq!(events_held_by(registry_of(&dispatch), &connection_id), None);
    assert!(heap.live_bytes() <= 0, "kept {} bytes", heap.live_bytes());
}

#[test]
fn good_request_spans_leave_nothing_on_the_connection_span() {
    let dispatch = warmed_up(good::registry_with_layer());
    drop(good::serve_with_request_spans(&dispatch, 100)); // second slot warmed
    let heap = LiveBytes::start();

    let connection = good::serve_with_request_spans(&dispatch, REQUESTS);

    let held = events_held_by(registry_of(&dispatch), &connection.id().unwrap());
    assert_eq!(held, Some(0));
    assert!(heap.live_bytes() <= OPEN_CONNECTION_SPAN_BYTES);
}
// ANCHOR_END: long_lived_span

/// A floor for one series: its key (name and an owned label), its atomic
/// counter and its entries in the recorder's maps (about 260 bytes each in
/// the captured run).
const MIN_BYTES_PER_SERIES: i64 = 100;

// ANCHOR: raw_path_label
#[test]
fn bad_raw_paths_as_labels_make_a_series_per_user() {
    let recorder = bad::recorder_without_upkeep();
    let heap = LiveBytes::start();

    bad::count_requests_by_path(&recorder, REQUESTS);

    let kept_bytes = heap.live_bytes();
    let exposition = recorder.handle().render();
    assert_eq!(series_in(&exposition, REQUESTS_METRIC), 10_000);
    assert!(kept_bytes >= REQUESTS as i64 * MIN_BYTES_PER_SERIES);
}

#[test]
fn good_route_label_keeps_one_series() {
    let recorder = bad::recorder_without_upkeep();
    good::count_requests_by_route(&recorder, 1); // the one series, created once
    let heap = LiveBytes::start();

    good::count_requests_by_route(&recorder, REQUESTS);

    assert_eq!(heap.live_bytes(), 0);
    let exposition = recorder.handle().render();
    assert_eq!(series_in(&exposition, REQUESTS_METRIC), 1);
    assert!(exposition.contains(r#"http_requests_total{route="/users/{id}"} 10001"#));
}
// ANCHOR_END: raw_path_label

/// Each buffered sample is an `f64` in the recorder's atomic bucket: a bad
/// side that kept less than 8 bytes a sample would not be buffering them.
const BYTES_PER_SAMPLE: i64 = 8;

/// What the good side may hold at any time: the samples of one upkeep
/// interval (500, in blocks of the bucket) waiting for the next drain,
/// blocks freed by a drain but not yet reclaimed (`crossbeam-epoch`
/// reclaims them a little later), and the summary the samples are folded
/// into. 256 KiB is about a fifth of what the bad side keeps.
const UPKEEP_BOUND: i64 = 256 * 1024;

/// The histogram tests take turns. The bucket's blocks are freed through
/// `crossbeam-epoch`, whose garbage any pinned thread may collect: run side
/// by side, one test would free the other's blocks, and this thread's
/// counter would never see them go.
static ONE_HISTOGRAM_TEST_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn samples(traffic_time: Duration) -> i64 {
    (traffic_time.as_secs() as usize * REQUESTS_PER_SECOND) as i64
}

// ANCHOR: upkeep
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bad_recorder_without_upkeep_buffers_every_sample() {
    let _turn = ONE_HISTOGRAM_TEST_AT_A_TIME.lock().await;
    warm_up_runtime(10).await;
    let recorder = bad::recorder_without_upkeep();
    let heap = LiveBytes::start();

    serve_traffic(&recorder, TRAFFIC_TIME).await;
    let after_ten_minutes = heap.live_bytes();
    serve_traffic(&recorder, TRAFFIC_TIME).await;
    let after_twenty_minutes = heap.live_bytes();

    assert_eq!(samples(TRAFFIC_TIME), 60_000);
    assert!(after_ten_minutes >= samples(TRAFFIC_TIME) * BYTES_PER_SAMPLE);
    // Twice the traffic, twice the memory: it grows with every request.
    assert!(after_twenty_minutes >= 2 * samples(TRAFFIC_TIME) * BYTES_PER_SAMPLE);

    // One scrape drains the buffer; the blocks go back once crossbeam-epoch
    // reclaims them, which later recording (a few seconds of it) brings about.
    let exposition = recorder.handle().render();
    assert!(exposition.contains("http_request_duration_seconds_count 120000"));
    serve_traffic(&recorder, Duration::from_secs(5)).await;
    assert!(
        heap.live_bytes() <= UPKEEP_BOUND,
        "kept {}",
        heap.live_bytes()
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_upkeep_task_keeps_the_recorder_bounded_and_stops_with_it() {
    let _turn = ONE_HISTOGRAM_TEST_AT_A_TIME.lock().await;
    warm_up_runtime(10).await;
    let tasks = TaskLeakCheck::start();
    let (recorder, upkeep) = good::recorder_with_upkeep();
    let heap = LiveBytes::start();

    serve_traffic(&recorder, TRAFFIC_TIME).await;
    let after_ten_minutes = heap.live_bytes();
    serve_traffic(&recorder, TRAFFIC_TIME).await;
    let after_twenty_minutes = heap.live_bytes();

    assert!(
        after_ten_minutes <= UPKEEP_BOUND,
        "kept {after_ten_minutes}"
    );
    assert!(
        after_twenty_minutes <= UPKEEP_BOUND,
        "kept {after_twenty_minutes}"
    );
    assert_eq!(tasks.leaked_tasks().await, 1); // the upkeep task, while wanted
    drop(upkeep);
    assert_eq!(tasks.leaked_tasks().await, 0);
    drop(recorder);
}
// ANCHOR_END: upkeep
