//! Draws the chapter's charts from real runs into a directory
//! (`capture.sh` passes `book/img`):
//!
//! * `ch4-monitor-phases.svg` — the seed's three phases watched by
//!   `leakscope::monitor` in real time: jemalloc allocated, active and
//!   resident bytes, and the process's RSS.
//! * `ch4-monitor-tasks.svg` — alive tasks in the same run.
//! * `ch4-monitor-footprint.svg` — each monitor's own heap over a simulated
//!   day of sampling at 1 Hz.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use ch4_monitor::{LEAK_STEPS, NORMAL_STEPS, SEED_STEP, bad, measure_footprint, run_phases};
use leakscope::chart::LineChart;
use leakscope::monitor::{Monitor, MonitorConfig, Sample};
use leakscope::report::format_bytes;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The seed's 1 s step, compressed to 200 ms; four samples per step.
const STEP: Duration = Duration::from_millis(200);
const INTERVAL: Duration = Duration::from_millis(50);

fn series(samples: &[Sample], value: impl Fn(&Sample) -> Option<u64>) -> Vec<(f64, f64)> {
    samples
        .iter()
        .filter_map(|sample| Some((sample.elapsed.as_secs_f64(), value(sample)? as f64)))
        .collect()
}

fn bytes_axis(chart: LineChart) -> LineChart {
    chart.y_format(|bytes| format_bytes(bytes as i64))
}

fn draw_phases(directory: &Path) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut phase_starts = Vec::new();
    let samples = runtime.block_on(async {
        let config = MonitorConfig::default().interval(INTERVAL);
        let monitor = Monitor::start(config);
        let log = monitor.log();
        // Like good::simulate_memory_leak, with four samples per step.
        let leaked = run_phases(STEP, |step_index, _| {
            let next_phase_begins =
                [NORMAL_STEPS, NORMAL_STEPS + LEAK_STEPS].contains(&(step_index + 1));
            if let (true, Some(latest)) = (next_phase_begins, log.latest()) {
                phase_starts.push((latest.elapsed.as_secs_f64(), latest.heap.allocated as f64));
            }
        })
        .await;
        let log = monitor.stop().await;
        drop(leaked);
        log.samples()
    });
    bytes_axis(
        LineChart::new("The seed's three phases, watched by leakscope::monitor")
            .x_label("seconds (each step of the seed's 1 s is 200 ms here)")
            .y_label("bytes"),
    )
    .series(
        "jemalloc allocated",
        &series(&samples, |s| Some(s.heap.allocated)),
    )
    .series(
        "jemalloc active",
        &series(&samples, |s| Some(s.heap.active)),
    )
    .series(
        "jemalloc resident",
        &series(&samples, |s| Some(s.heap.resident)),
    )
    .series("process RSS", &series(&samples, |s| s.rss_bytes))
    .markers("phase 2 and phase 3 begin", &phase_starts)
    .write_svg(directory.join("ch4-monitor-phases.svg"))?;

    LineChart::new("Alive tokio tasks in the same run")
        .x_label("seconds")
        .y_label("tasks")
        // Whole tasks only: fractional ticks would print as repeated labels.
        .y_format(|tasks| {
            if (tasks - tasks.round()).abs() < 1e-6 {
                format!("{}", tasks.round())
            } else {
                String::new()
            }
        })
        .size(720, 240)
        .series(
            "alive tasks",
            &series(&samples, |s| Some(s.alive_tasks as u64)),
        )
        .write_svg(directory.join("ch4-monitor-tasks.svg"))
}

fn draw_footprint(directory: &Path) -> std::io::Result<()> {
    let checkpoints: Vec<u64> = (0..=24).map(|hour| hour * 3600).collect();
    let hours = |footprint: Vec<(u64, i64)>| -> Vec<(f64, f64)> {
        footprint
            .into_iter()
            .map(|(seconds, bytes)| (seconds as f64 / 3600.0, bytes as f64))
            .collect()
    };
    let seed = hours(measure_footprint(&checkpoints, || {
        let monitor = bad::SeedMonitor::new();
        monitor.start(SEED_STEP);
        monitor
    }));
    let bounded = hours(measure_footprint(&checkpoints, || {
        Monitor::start(MonitorConfig::default().interval(SEED_STEP))
    }));
    bytes_axis(
        LineChart::new("A monitor's own heap, sampling once a second")
            .x_label("hours (paused clock)")
            .y_label("bytes held by the monitor"),
    )
    .series("bad: the seed's monitor", &seed)
    .series("good: leakscope::monitor (600 samples)", &bounded)
    .write_svg(directory.join("ch4-monitor-footprint.svg"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [directory] = &args[..] else {
        eprintln!("usage: chart DIRECTORY   (writes ch4-monitor-*.svg into it)");
        return ExitCode::from(2);
    };
    let directory = PathBuf::from(directory);
    for (name, result) in [
        ("phases", draw_phases(&directory)),
        ("footprint", draw_footprint(&directory)),
    ] {
        if let Err(error) = result {
            eprintln!(
                "could not write the {name} chart into {}: {error}",
                directory.display()
            );
            return ExitCode::FAILURE;
        }
    }
    println!(
        "wrote ch4-monitor-{{phases,tasks,footprint}}.svg into {}",
        directory.display()
    );
    ExitCode::SUCCESS
}
