//! Charts the live heap of the seed's resource-manager run, bad and good,
//! next to what the managers' resource counts account for.
//!
//! `cargo run -p ch7-practices --example heap_chart -- OUT.svg`

use std::process::ExitCode;
use std::time::Duration;

use ch7_practices::{
    ADD_INTERVAL, FINAL_WAIT, ManagesResources, RESOURCE_SIZE, RESOURCES_ADDED,
    add_resources_like_the_seed, bad, good,
};
use leakscope::chart::LineChart;
use leakscope::heap::LiveBytes;
use leakscope::report::format_bytes;
use tokio::time::Instant;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// (seconds, live bytes) and (seconds, counted resources × 10 KiB) samples.
struct Run {
    live: Vec<(f64, f64)>,
    counted: Vec<(f64, f64)>,
}

fn sample_run<M: ManagesResources>(new: fn() -> M) -> Run {
    let run_time = ADD_INTERVAL * RESOURCES_ADDED as u32 + FINAL_WAIT;
    let samples = (run_time.as_millis() / SAMPLE_EVERY.as_millis()) as usize + 1;
    let mut run = Run {
        live: Vec::with_capacity(samples),
        counted: Vec::with_capacity(samples),
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a tokio runtime")
        .block_on(async {
            let heap = LiveBytes::start();
            let manager = new();
            let started = Instant::now();
            let sampler = async {
                for _ in 0..samples {
                    let at = started.elapsed().as_secs_f64();
                    run.live.push((at, heap.live_bytes() as f64));
                    let counted = manager.resource_count() * RESOURCE_SIZE;
                    run.counted.push((at, counted as f64));
                    tokio::time::sleep(SAMPLE_EVERY).await;
                }
            };
            tokio::join!(add_resources_like_the_seed(&manager), sampler);
        });
    run
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out] = &args[..] else {
        eprintln!("usage: heap_chart OUT.svg");
        return ExitCode::from(2);
    };
    let bad_run = sample_run(bad::ResourceManager::new);
    let good_run = sample_run(good::ResourceManager::new);
    let chart = LineChart::new("Resource manager, the seed's run: live heap")
        .x_label("time (s, paused clock)")
        .y_label("live heap")
        .y_format(|bytes| format_bytes(bytes as i64))
        .series("bad: resources[removed:]", &bad_run.live)
        .series("good: VecDeque::drain", &good_run.live)
        .series("resources counted × 10 KiB", &good_run.counted);
    if let Err(error) = chart.write_svg(out) {
        eprintln!("cannot write {out}: {error}");
        return ExitCode::FAILURE;
    }
    let last = |samples: &[(f64, f64)]| format_bytes(samples.last().map_or(0.0, |s| s.1) as i64);
    println!(
        "at the end: bad holds {}, good holds {}, the count accounts for {}",
        last(&bad_run.live),
        last(&good_run.live),
        last(&good_run.counted)
    );
    ExitCode::SUCCESS
}
