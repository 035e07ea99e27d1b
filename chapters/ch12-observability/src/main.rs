//! `just run ch12-observability [bad|good]`: runs each scenario for real and
//! prints bad vs good side by side.

use std::process::ExitCode;
use std::sync::Arc;

use ch12_observability::{
    REQUESTS, REQUESTS_METRIC, REQUESTS_PER_SECOND, TRAFFIC_TIME, bad, events_held_by, good,
    handle_requests, series_in, serve_traffic, stored_spans,
};
use leakscope::heap::LiveBytes;
use leakscope::report::{Table, format_bytes_delta};
use leakscope::tasks::warm_up_runtime;
use tracing::Dispatch;
use tracing_subscriber::Registry;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const USAGE: &str = "usage: ch12-observability [bad|good]   (no argument: both, side by side)";

/// What one scenario left behind once its requests were served.
struct Leftovers {
    /// What the scenario kept, counted by the registry or the recorder
    /// (`None` where neither can count it).
    kept: Option<usize>,
    live_bytes: i64,
}

impl Leftovers {
    fn cells(&self) -> [String; 2] {
        let kept = self.kept.map_or("-".to_string(), |kept| kept.to_string());
        [kept, format_bytes_delta(self.live_bytes)]
    }
}

/// Serves `REQUESTS` request spans through `dispatch` (after a few to warm
/// the registry up) and counts the closed spans the registry still stores.
fn request_spans(dispatch: Dispatch, registry: &Registry) -> Leftovers {
    handle_requests(&dispatch, 100, &mut Vec::new());
    let mut ids = Vec::with_capacity(REQUESTS);
    let heap = LiveBytes::start();
    handle_requests(&dispatch, REQUESTS, &mut ids);
    Leftovers {
        live_bytes: heap.live_bytes(),
        kept: Some(stored_spans(registry, &ids)),
    }
}

fn bare_registry(dispatch: Dispatch) -> Leftovers {
    let registry = dispatch.downcast_ref::<Registry>().expect("a registry");
    request_spans(dispatch.clone(), registry)
}

fn wrapped_registry(layered: fn(Arc<Registry>) -> Dispatch) -> Leftovers {
    let registry = Arc::new(Registry::default());
    request_spans(layered(Arc::clone(&registry)), &registry)
}

/// Serves `REQUESTS` requests on one connection and counts the events its
/// span holds while the connection is still open.
fn connection(serve: fn(&Dispatch, usize) -> tracing::Span) -> Leftovers {
    let dispatch = good::registry_with_layer();
    drop(serve(&dispatch, 100)); // warm-up
    let heap = LiveBytes::start();
    let connection = serve(&dispatch, REQUESTS);
    let live_bytes = heap.live_bytes();
    let registry = dispatch.downcast_ref::<Registry>().expect("a registry");
    let id = connection.id().expect("an enabled span");
    Leftovers {
        kept: events_held_by(registry, &id),
        live_bytes,
    }
}

fn labels(count: fn(&metrics_exporter_prometheus::PrometheusRecorder, usize)) -> Leftovers {
    let recorder = bad::recorder_without_upkeep();
    let heap = LiveBytes::start();
    count(&recorder, REQUESTS);
    let live_bytes = heap.live_bytes();
    let series = series_in(&recorder.handle().render(), REQUESTS_METRIC);
    Leftovers {
        kept: Some(series),
        live_bytes,
    }
}

/// Ten minutes of histogram traffic on tokio's paused clock, measured on
/// this thread (a `current_thread` runtime runs every task here).
fn histograms(with_upkeep: bool) -> Leftovers {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        warm_up_runtime(10).await;
        let (recorder, upkeep) = if with_upkeep {
            let (recorder, upkeep) = good::recorder_with_upkeep();
            (recorder, Some(upkeep))
        } else {
            (bad::recorder_without_upkeep(), None)
        };
        let heap = LiveBytes::start();
        serve_traffic(&recorder, TRAFFIC_TIME).await;
        let live_bytes = heap.live_bytes();
        drop((upkeep, recorder));
        Leftovers {
            kept: None,
            live_bytes,
        }
    })
}

struct Row {
    scenario: &'static str,
    kept: &'static str,
    bad: fn() -> Leftovers,
    good: fn() -> Leftovers,
}

fn rows() -> [Row; 5] {
    [
        Row {
            scenario: "registry without layers",
            kept: "closed spans stored",
            bad: || bare_registry(bad::registry_without_layers()),
            good: || bare_registry(good::registry_with_layer()),
        },
        Row {
            scenario: "wrapped registry",
            kept: "closed spans stored",
            bad: || wrapped_registry(bad::layered_over_wrapped_registry),
            good: || wrapped_registry(good::layered_over_wrapped_registry),
        },
        Row {
            scenario: "long-lived span",
            kept: "events on the span",
            bad: || connection(bad::serve_on_connection_span),
            good: || connection(good::serve_with_request_spans),
        },
        Row {
            scenario: "raw paths as labels",
            kept: "series",
            bad: || labels(bad::count_requests_by_path),
            good: || labels(good::count_requests_by_route),
        },
        Row {
            scenario: "histograms, no upkeep",
            kept: "-",
            bad: || histograms(false),
            good: || histograms(true),
        },
    ]
}

fn main() -> ExitCode {
    let sides = match leaklab_cli::Sides::from_args(USAGE) {
        Ok(sides) => sides,
        Err(exit) => return exit,
    };

    println!(
        "ch12-observability: what tracing and metrics keep after {REQUESTS} requests \
         ({} histogram samples for the last row)\n",
        TRAFFIC_TIME.as_secs() as usize * REQUESTS_PER_SECOND
    );
    let mut header = sides.header(&["scenario", "what is kept"], &["kept", "heap"]);
    header.push("verdict".into());
    let mut table = Table::new(header);
    for row in rows() {
        let mut cells = vec![row.scenario.to_string(), row.kept.to_string()];
        let mut verdicts = Vec::new();
        if sides.bad {
            let leftovers = (row.bad)();
            cells.extend(leftovers.cells());
            verdicts.push(verdict("bad", &leftovers));
        }
        if sides.good {
            let leftovers = (row.good)();
            cells.extend(leftovers.cells());
            verdicts.push(verdict("good", &leftovers));
        }
        cells.push(verdicts.join(", "));
        table.row(cells);
    }
    print!("{table}");
    println!(
        "\nkept: counted by the registry (spans, events) or the recorder (series, from its \
         Prometheus exposition).\n\
         heap: bytes allocated while serving and still live (jemalloc, this thread)."
    );
    ExitCode::SUCCESS
}

/// A scenario grows when it keeps more than 256 KiB: the bound the claims
/// hold the upkeep task's recorder to (`tests/claims.rs`, `UPKEEP_BOUND`); the
/// other fixed versions keep nothing at all.
fn verdict(side: &str, leftovers: &Leftovers) -> String {
    const LEAK_BYTES: i64 = 256 * 1024;
    if leftovers.live_bytes > LEAK_BYTES {
        format!("{side} grows")
    } else {
        format!("{side} bounded")
    }
}
