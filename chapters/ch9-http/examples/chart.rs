//! Draws the slow-client scenario over time for the page: the server's
//! tasks and live heap, bad vs good, sampled every 10 ms on the real clock.
//!
//! `cargo run -p ch9-http --example chart -- OUTPUT_DIR` writes
//! `ch9-http-tasks.svg` and `ch9-http-heap.svg` into OUTPUT_DIR.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ch9_http::{LIVE_HEADER_TIMEOUT, SlowClients, connect_slow_clients, current_thread_runtime};
use leakscope::chart::LineChart;
use leakscope::report::format_bytes;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// How long each side is watched, and how often.
const WATCH_FOR: Duration = Duration::from_millis(800);
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// One sample: milliseconds since the clients connected, server tasks
/// (accept loop included), live heap bytes.
type Sample = (f64, f64, f64);

fn watch(use_good_server: bool) -> Vec<Sample> {
    current_thread_runtime().block_on(async {
        let SlowClients {
            tasks,
            heap,
            server,
            clients: slow_clients,
            ..
        } = connect_slow_clients(use_good_server).await;
        let started = Instant::now();
        let mut samples = Vec::new();
        while started.elapsed() < WATCH_FOR {
            samples.push((
                started.elapsed().as_secs_f64() * 1000.0,
                tasks.alive_now().saturating_sub(tasks.baseline()) as f64,
                heap.live_bytes() as f64,
            ));
            tokio::time::sleep(SAMPLE_EVERY).await;
        }

        server.stop().await;
        drop(slow_clients);
        samples
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [output_dir] = &args[..] else {
        eprintln!("usage: chart OUTPUT_DIR");
        return ExitCode::from(2);
    };
    let output_dir = PathBuf::from(output_dir);
    let bad_samples = watch(false);
    let good_samples = watch(true);
    let series = |samples: &[Sample], value: fn(&Sample) -> f64| -> Vec<(f64, f64)> {
        samples
            .iter()
            .map(|sample| (sample.0, value(sample)))
            .collect()
    };

    let charts = [
        (
            "ch9-http-tasks.svg",
            LineChart::new("Server tasks with 200 slow clients")
                .y_label("tasks")
                .series("bad: axum::serve", &series(&bad_samples, |s| s.1))
                .series(
                    "good: timeouts + cap of 100",
                    &series(&good_samples, |s| s.1),
                ),
        ),
        (
            "ch9-http-heap.svg",
            LineChart::new("Server live heap with 200 slow clients")
                .y_label("live heap")
                .y_format(|bytes| format_bytes(bytes as i64))
                .series("bad: axum::serve", &series(&bad_samples, |s| s.2))
                .series(
                    "good: timeouts + cap of 100",
                    &series(&good_samples, |s| s.2),
                ),
        ),
    ];
    for (file, chart) in charts {
        let path = output_dir.join(file);
        let chart = chart.x_label(format!(
            "ms since the clients connected (good header-read timeout: {} ms)",
            LIVE_HEADER_TIMEOUT.as_millis()
        ));
        if let Err(error) = chart.write_svg(&path) {
            eprintln!("cannot write {}: {error}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
