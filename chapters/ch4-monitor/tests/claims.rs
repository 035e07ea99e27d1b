//! Every claim the chapter 4 page makes about the monitors' own cost, their
//! stopping, and their Prometheus output, measured. Heap on a
//! `current_thread` runtime with the per-thread jemalloc counter; time on
//! tokio's paused clock. (Growth detection reads process-wide statistics and
//! lives in `detects_growth.rs`, away from the other tests.)

use std::collections::HashMap;
use std::time::Duration;

use ch4_monitor::{SEED_STEP, bad, measure_footprint};
use leakscope::monitor::{
    DEFAULT_CAPACITY, Monitor, MonitorConfig, MonitorLog, Sample, metrics_router,
};
use leakscope::tasks::TaskLeakCheck;
use prometheus_parse::{LineInfo, Scrape, Value};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const SAMPLE_SIZE: i64 = std::mem::size_of::<Sample>() as i64;

// ANCHOR: bad_footprint
#[test]
fn bad_monitor_memory_grows_with_every_sample_it_takes() {
    let footprint = measure_footprint(&[1_000, 10_000], || {
        let monitor = bad::SeedMonitor::new();
        monitor.start(SEED_STEP);
        monitor
    });
    let [(_, after_1_000), (_, after_10_000)] = footprint[..] else {
        panic!("two checkpoints")
    };

    assert!(after_10_000 >= 10_000 * SAMPLE_SIZE, "{after_10_000} bytes");
    // Linear: the 9 000 later samples are all still there.
    assert!(after_10_000 - after_1_000 >= 9_000 * SAMPLE_SIZE);
}
// ANCHOR_END: bad_footprint

/// What a monitor holds besides its ring buffer: the shared log's `Arc`
/// and mutex, the sampling task and its timer, the cancellation token.
const MONITOR_OVERHEAD: i64 = 2048;

// ANCHOR: good_footprint
#[test]
fn good_monitor_memory_stays_within_its_capacity() {
    let footprint = measure_footprint(&[1_000, 10_000], || {
        Monitor::start(MonitorConfig::default().interval(SEED_STEP))
    });
    let [(_, after_1_000), (_, after_10_000)] = footprint[..] else {
        panic!("two checkpoints")
    };

    assert!(after_10_000 <= DEFAULT_CAPACITY as i64 * SAMPLE_SIZE + MONITOR_OVERHEAD);
    // Not a byte more after 9 000 more samples.
    assert_eq!(after_10_000, after_1_000);
}
// ANCHOR_END: good_footprint

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_monitor_keeps_the_latest_samples_and_counts_all() {
    let monitor = Monitor::start(MonitorConfig::default().interval(SEED_STEP));
    tokio::time::sleep(Duration::from_millis(10_000_500)).await;

    let summary = monitor.summary();
    assert_eq!(summary.samples_taken, 10_001); // t = 0 s ..= 10 000 s
    assert_eq!(summary.samples_kept, DEFAULT_CAPACITY);
    let kept = monitor.samples();
    assert_eq!(kept[0].elapsed, Duration::from_secs(10_000 - 599));
    assert_eq!(summary.first.elapsed, Duration::ZERO); // the first is remembered
}

// ANCHOR: bad_stop
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bad_stop_leaves_the_task_running_until_its_next_tick() {
    let check = TaskLeakCheck::start();
    let monitor = bad::SeedMonitor::new();
    monitor.start(Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_secs(1)).await;

    monitor.stop();
    assert_eq!(check.leaked_tasks().await, 1); // still waiting for its tick
    assert_eq!(monitor.sample_count(), 0);

    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(check.leaked_tasks().await, 0);
    assert_eq!(monitor.sample_count(), 1); // taken after stop
}
// ANCHOR_END: bad_stop

// ANCHOR: good_stop
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_stop_ends_the_task_at_once() {
    let check = TaskLeakCheck::start();
    let monitor = Monitor::start(MonitorConfig::default().interval(Duration::from_secs(3600)));
    tokio::time::sleep(Duration::from_secs(1)).await;

    let log = monitor.stop().await;

    assert_eq!(check.leaked_tasks().await, 0);
    assert_eq!(log.samples_taken(), 2); // at the start, and the final one
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_monitor_dropped_leaves_no_task() {
    let check = TaskLeakCheck::start();
    let monitor = Monitor::start(MonitorConfig::default());
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(check.leaked_tasks().await, 1);

    drop(monitor);

    assert_eq!(check.leaked_tasks().await, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_monitor_stops_with_the_service_shutdown_token() {
    let check = TaskLeakCheck::start();
    let shutdown = CancellationToken::new();
    let monitor = Monitor::start_with_cancellation(MonitorConfig::default(), &shutdown);
    tokio::time::sleep(Duration::from_secs(10)).await;

    shutdown.cancel();

    assert_eq!(check.leaked_tasks().await, 0);
    assert!(!monitor.is_running());
}
// ANCHOR_END: good_stop

/// Checks `text` line by line against the exposition format and returns
/// each metric's value with its declared type. Every line must be a HELP,
/// a TYPE or a sample, and every sample must have a TYPE.
fn parse_exposition(text: &str) -> HashMap<String, Value> {
    for line in text.lines() {
        assert!(
            !matches!(LineInfo::parse(line), LineInfo::Ignored | LineInfo::Empty),
            "not exposition format: {line:?}"
        );
    }
    let scrape =
        Scrape::parse(text.lines().map(|line| Ok(line.to_string()))).expect("the text parses");
    assert_eq!(
        scrape.samples.len(),
        text.lines().filter(|line| !line.starts_with('#')).count(),
        "every sample line became a sample"
    );
    scrape
        .samples
        .into_iter()
        .map(|sample| {
            assert!(
                scrape.docs.contains_key(&sample.metric),
                "{} has HELP",
                sample.metric
            );
            assert!(sample.labels.is_empty());
            (sample.metric, sample.value)
        })
        .collect()
}

fn assert_carries(metrics: &HashMap<String, Value>, latest: Sample, samples_taken: u64) {
    let gauge = |name: &str| match metrics.get(name) {
        Some(Value::Gauge(value)) => *value as u64,
        other => panic!("{name}: expected a gauge, found {other:?}"),
    };
    assert_eq!(gauge("jemalloc_allocated_bytes"), latest.heap.allocated);
    assert_eq!(gauge("jemalloc_active_bytes"), latest.heap.active);
    assert_eq!(gauge("jemalloc_resident_bytes"), latest.heap.resident);
    assert_eq!(gauge("jemalloc_mapped_bytes"), latest.heap.mapped);
    assert_eq!(gauge("jemalloc_retained_bytes"), latest.heap.retained);
    assert_eq!(gauge("jemalloc_metadata_bytes"), latest.heap.metadata);
    assert_eq!(gauge("tokio_alive_tasks"), latest.alive_tasks as u64);
    assert_eq!(Some(gauge("leakscope_rss_bytes")), latest.rss_bytes);
    assert_eq!(
        metrics.get("leakscope_monitor_samples_total"),
        Some(&Value::Counter(samples_taken as f64))
    );
    assert_eq!(metrics.len(), 9);
}

/// Runs a monitor for two intervals while 4 MiB are held, and returns its
/// log and the buffer.
async fn monitor_a_4_mib_buffer() -> (MonitorLog, Vec<u8>) {
    let held = vec![1u8; 4 << 20];
    let monitor = Monitor::start(MonitorConfig::default().interval(SEED_STEP));
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    (monitor.stop().await, held)
}

// ANCHOR: prometheus
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn prometheus_text_parses_and_carries_the_current_values() {
    let (log, held) = monitor_a_4_mib_buffer().await;

    let metrics = parse_exposition(&log.to_prometheus());

    let latest = log.latest().expect("samples were taken");
    assert_carries(&metrics, latest, 4);
    // The held buffer is in the process-wide figure. (Not "before + 4 MiB":
    // tests running in parallel in this process free memory meanwhile.)
    assert!(latest.heap.allocated >= held.len() as u64);
    assert!(latest.rss_bytes.is_some());
    drop(held);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn metrics_endpoint_serves_the_same_text() {
    use tower::ServiceExt;
    let (log, held) = monitor_a_4_mib_buffer().await;

    let request = axum::http::Request::get("/metrics")
        .body(axum::body::Body::empty())
        .expect("a valid request");
    let response = metrics_router(log.clone())
        .oneshot(request)
        .await
        .expect("the router answers");

    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("a body");
    let text = std::str::from_utf8(&body).expect("UTF-8");
    assert_carries(&parse_exposition(text), log.latest().unwrap(), 4);
    drop(held);
}
// ANCHOR_END: prometheus

#[test]
fn the_parser_rejects_what_is_not_exposition_format() {
    // The check above would catch a broken renderer: these lines are refused.
    for broken in ["jemalloc allocated bytes 12", "{oops} 1", "# HELP"] {
        let accepted = std::panic::catch_unwind(|| parse_exposition(broken)).is_ok();
        assert!(!accepted, "{broken:?} was accepted");
    }
}
