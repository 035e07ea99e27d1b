//! What a jemalloc heap profile shows of each shape: the frames that name
//! it, holding the bad side's bytes and almost none of the good side's.
//! Heap profiling is per process and switched on by `malloc_conf`, so these
//! claims have a test binary of their own, and one test runs the sides in
//! turn, so that no other test's memory is in its profiles.

use std::sync::Arc;

use std::time::Duration;

use ch12_observability::{REQUESTS_PER_SECOND, bad, good, handle_requests, serve_traffic};
use leakscope::profile::{self, FunctionCost};
use tracing_subscriber::Registry;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// Every allocation sampled: the profile is exact, not an estimate.
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "malloc_conf")]
pub static malloc_conf: &[u8] = b"prof:true,prof_active:true,lg_prof_sample:0\0";

/// Fewer requests than the claims serve: with every allocation sampled,
/// each one costs a stack walk, and the frames are the same at any size.
const REQUESTS: usize = 2_000;

/// Twenty minutes of histogram traffic (120 000 samples, on the paused
/// clock): long enough that the undrained buffer outgrows what the drained
/// one holds between two upkeep runs, which the matcher allows for.
const TRAFFIC_TIME: Duration = Duration::from_secs(1200);

/// The in-use bytes under each function (`cum`), as chapter 5's
/// `/debug/pprof/heap` serves them.
async fn heap_by_function() -> (Vec<FunctionCost>, Vec<&'static str>) {
    let served = profile::heap_profile().await.expect("heap profiling is on");
    let heap = profile::decode(&served).expect("a pprof profile");
    let shapes = leakscope::matcher::match_profile(&heap)
        .expect("a heap profile")
        .iter()
        .map(|found| {
            eprintln!(
                "{}: {} B in {} stacks",
                found.shape.id, found.value, found.samples
            );
            found.shape.id
        })
        .collect();
    (profile::top(&heap, 0), shapes)
}

/// The most bytes in use under any function whose name contains `frame`.
fn bytes_under(costs: &[FunctionCost], frame: &str) -> i64 {
    costs
        .iter()
        .filter(|cost| cost.function.contains(frame))
        .map(|cost| cost.cum)
        .max()
        .unwrap_or(0)
}

// ANCHOR: frames
/// The frame that names each shape (a substring of the function's name as
/// the profile spells it; generic and inlined frames keep their type
/// arguments, so a type's path is the steadiest part).
const SPAN_SLOTS: &str = "tracing_subscriber::registry::sharded::DataInner";
const EVENT_DISPATCH: &str = "tracing_core::event::Event::dispatch";
const SERIES: &str = "metrics_util::registry::Registry<K,S>::get_or_create_counter";
const HISTOGRAM_SAMPLES: &str = "metrics_util::storage::bucket::AtomicBucket<T>::push";
// ANCHOR_END: frames

/// Below every bad side (each keeps more than 80 KiB under its frame here)
/// and above every good side.
const GOOD_SIDE_BOUND: i64 = 64 * 1024;

/// Every scenario of one side, served and still alive: the registries,
/// the open connection span, the recorders (and the upkeep task).
struct Side {
    _kept: Vec<Box<dyn std::any::Any>>,
}

async fn serve_bad_side() -> Side {
    let bare = bad::registry_without_layers();
    handle_requests(&bare, REQUESTS, &mut Vec::new());
    let wrapped = bad::layered_over_wrapped_registry(Arc::new(Registry::default()));
    handle_requests(&wrapped, REQUESTS, &mut Vec::new());
    let exporting = good::registry_with_layer();
    let connection = bad::serve_on_connection_span(&exporting, REQUESTS);
    let by_path = bad::recorder_without_upkeep();
    bad::count_requests_by_path(&by_path, REQUESTS);
    let undrained = bad::recorder_without_upkeep();
    serve_traffic(&undrained, TRAFFIC_TIME).await;
    Side {
        _kept: vec![
            Box::new(bare),
            Box::new(wrapped),
            Box::new((connection, exporting)),
            Box::new(by_path),
            Box::new(undrained),
        ],
    }
}

async fn serve_good_side() -> Side {
    let layered = good::registry_with_layer();
    handle_requests(&layered, REQUESTS, &mut Vec::new());
    let wrapped = good::layered_over_wrapped_registry(Arc::new(Registry::default()));
    handle_requests(&wrapped, REQUESTS, &mut Vec::new());
    let exporting = good::registry_with_layer();
    let connection = good::serve_with_request_spans(&exporting, REQUESTS);
    let by_route = bad::recorder_without_upkeep();
    good::count_requests_by_route(&by_route, REQUESTS);
    let (drained, upkeep) = good::recorder_with_upkeep();
    serve_traffic(&drained, TRAFFIC_TIME).await;
    Side {
        _kept: vec![
            Box::new(layered),
            Box::new(wrapped),
            Box::new((connection, exporting)),
            Box::new(by_route),
            Box::new((upkeep, drained)),
        ],
    }
}

// ANCHOR: profile_names_the_shapes
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn each_shape_is_named_by_its_frames_in_a_heap_profile() {
    // The good side first: a dropped recorder's blocks are reclaimed by
    // crossbeam-epoch some time later, and would count under the same frame.
    let good_side = serve_good_side().await;
    let (good, good_shapes) = heap_by_function().await;
    drop(good_side);
    let bad_side = serve_bad_side().await;
    let (bad, bad_shapes) = heap_by_function().await;
    drop(bad_side);

    // leakscope's matcher names each bad shape, and nothing on the good side.
    assert!(good_shapes.is_empty(), "{good_shapes:?}");
    for shape in [
        "tracing-span-data",
        "tracing-events-on-span",
        "metrics-label-series",
        "metrics-histogram-buffer",
    ] {
        assert!(bad_shapes.contains(&shape), "{shape} not in {bad_shapes:?}");
    }

    // Span slots, kept by the registries of the first two shapes.
    assert!(bytes_under(&bad, SPAN_SLOTS) >= REQUESTS as i64 * 100);
    let layered_new_span = "tracing_subscriber::layer::layered::Layered<L,S> as \
                            tracing_core::subscriber::Subscriber>::new_span";
    assert!(bytes_under(&bad, layered_new_span) >= REQUESTS as i64 * 100);
    // Events held by the long-lived span, under the layer's `on_event`.
    assert!(bytes_under(&bad, EVENT_DISPATCH) >= REQUESTS as i64 * 40);
    assert!(
        bytes_under(&bad, "as tracing_subscriber::layer::Layer<S>>::on_event")
            >= REQUESTS as i64 * 40
    );
    // A series per path; a buffered sample per request.
    assert!(bytes_under(&bad, SERIES) >= REQUESTS as i64 * 100);
    let samples = (TRAFFIC_TIME.as_secs() as usize * REQUESTS_PER_SECOND) as i64;
    assert!(bytes_under(&bad, HISTOGRAM_SAMPLES) >= samples * 8);

    for frame in [SPAN_SLOTS, EVENT_DISPATCH, SERIES, HISTOGRAM_SAMPLES] {
        let kept = bytes_under(&good, frame);
        assert!(
            kept <= GOOD_SIDE_BOUND,
            "{frame}: {kept} bytes on the good side"
        );
    }
}
// ANCHOR_END: profile_names_the_shapes
