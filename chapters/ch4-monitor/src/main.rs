//! `just run ch4-monitor [bad|good]`: runs the seed's three phases under each
//! monitor, shows the heap as it grows, then compares what each monitor
//! found and what it cost.

use std::process::ExitCode;
use std::time::Duration;

use ch4_monitor::{LEAKED_BYTES, Phase, SEED_STEP, TOTAL_STEPS, bad, good, measure_footprint};
use leakscope::monitor::{Monitor, MonitorConfig, Sample, Warning};
use leakscope::report::{Table, format_bytes, format_bytes_delta, sparkline};
use leakscope::tasks::TaskLeakCheck;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const USAGE: &str = "usage: ch4-monitor [bad|good]   (no argument: both, side by side)";

/// The live run's step and sampling interval: the seed's 1 s, compressed so
/// the 20 steps take 2 s a side. Sizes and counts are the seed's.
const LIVE_STEP: Duration = Duration::from_millis(100);

/// Simulated seconds of sampling at the seed's 1 Hz after which each
/// monitor's own memory is measured (an hour, a day).
const FOOTPRINT_SECONDS: [u64; 2] = [3600, 24 * 3600];

/// What one side found and what it cost.
struct Outcome {
    samples_taken: String,
    samples_kept: String,
    growth_bytes: i64,
    warnings: Vec<Warning>,
    tasks_after_stop: usize,
    footprint: Vec<(u64, i64)>,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn print_step(step_index: usize, phase: Phase, samples: &[Sample]) {
    if samples.is_empty() {
        println!(
            "  step {:>2}/{TOTAL_STEPS}  {:<13}  (no sample yet: the first comes one interval after start)",
            step_index + 1,
            phase.label()
        );
        return;
    }
    let allocated: Vec<f64> = samples.iter().map(|s| s.heap.allocated as f64).collect();
    let latest = samples.last().copied().unwrap_or_default();
    println!(
        "  step {:>2}/{TOTAL_STEPS}  {:<13}  allocated {:>9}  resident {:>9}  tasks {}  {}",
        step_index + 1,
        phase.label(),
        format_bytes(latest.heap.allocated as i64),
        format_bytes(latest.heap.resident as i64),
        latest.alive_tasks,
        sparkline(&allocated)
    );
}

fn run_bad() -> Outcome {
    println!("bad: the seed's MemoryMonitor");
    let (analysis, tasks_after_stop) = runtime().block_on(async {
        let tasks = TaskLeakCheck::start();
        let monitor = bad::SeedMonitor::new();
        let watched = monitor.clone();
        let leaked = bad::simulate_memory_leak(&monitor, LIVE_STEP, |step_index, phase| {
            print_step(step_index, phase, &watched.samples())
        })
        .await;
        let tasks_after_stop = tasks.leaked_tasks().await;
        let analysis = monitor.analyze().expect("20 steps give 20 samples");
        drop(leaked);
        (analysis, tasks_after_stop)
    });
    Outcome {
        samples_taken: analysis.samples.to_string(),
        samples_kept: format!("{} (all)", analysis.samples),
        growth_bytes: analysis.growth_bytes,
        warnings: analysis.warnings,
        tasks_after_stop,
        footprint: Vec::new(),
    }
}

fn run_good() -> Outcome {
    println!("good: leakscope::monitor");
    let (summary, tasks_after_stop) = runtime().block_on(async {
        let tasks = TaskLeakCheck::start();
        let (log, leaked) = good::simulate_memory_leak(
            MonitorConfig::default(),
            LIVE_STEP,
            |step_index, phase, log| print_step(step_index, phase, &log.samples()),
        )
        .await;
        let tasks_after_stop = tasks.leaked_tasks().await;
        let summary = log.summary();
        drop(leaked);
        (summary, tasks_after_stop)
    });
    Outcome {
        samples_taken: summary.samples_taken.to_string(),
        samples_kept: format!(
            "{} (capacity {})",
            summary.samples_kept,
            MonitorConfig::default().capacity
        ),
        growth_bytes: summary.growth_bytes,
        warnings: summary.warnings,
        tasks_after_stop,
        footprint: Vec::new(),
    }
}

fn warning_names(warnings: &[Warning]) -> String {
    if warnings.is_empty() {
        return "none".to_string();
    }
    let names: Vec<&str> = warnings
        .iter()
        .map(|warning| match warning {
            Warning::Growth { .. } => "growth > 1 MiB",
            Warning::SteadyGrowth { .. } => "steady growth",
        })
        .collect();
    names.join(", ")
}

fn footprint_label(seconds: u64) -> String {
    match seconds {
        3600 => "1 hour".to_string(),
        86_400 => "1 day".to_string(),
        _ => format!("{seconds} s"),
    }
}

fn cells(outcome: &Outcome) -> Vec<String> {
    let mut column = vec![
        outcome.samples_taken.clone(),
        outcome.samples_kept.clone(),
        format_bytes_delta(outcome.growth_bytes),
        warning_names(&outcome.warnings),
        outcome.tasks_after_stop.to_string(),
    ];
    column.extend(
        outcome
            .footprint
            .iter()
            .map(|&(_, bytes)| format_bytes(bytes)),
    );
    column
}

fn main() -> ExitCode {
    let sides = match leaklab_cli::Sides::from_args(USAGE) {
        Ok(sides) => sides,
        Err(exit) => return exit,
    };

    println!(
        "ch4-monitor: the seed's three phases, {TOTAL_STEPS} steps of {} ms, sampled once per step\n",
        LIVE_STEP.as_millis()
    );
    let mut outcomes = Vec::new();
    if sides.bad {
        outcomes.push(("bad", run_bad()));
        println!();
    }
    if sides.good {
        outcomes.push(("good", run_good()));
        println!();
    }

    // Measured after both live runs, so their heaps do not include it.
    for (side, outcome) in &mut outcomes {
        outcome.footprint = if *side == "bad" {
            measure_footprint(&FOOTPRINT_SECONDS, || {
                let monitor = bad::SeedMonitor::new();
                monitor.start(SEED_STEP);
                monitor
            })
        } else {
            measure_footprint(&FOOTPRINT_SECONDS, || {
                Monitor::start(MonitorConfig::default().interval(SEED_STEP))
            })
        };
    }

    let mut header = vec!["".to_string()];
    header.extend(outcomes.iter().map(|(side, _)| side.to_string()));
    let mut table = Table::new(header);
    let mut labels = vec![
        "samples taken".to_string(),
        "samples kept".to_string(),
        "heap growth, first to last".to_string(),
        "warnings".to_string(),
        "tasks left right after stop".to_string(),
    ];
    labels.extend(
        FOOTPRINT_SECONDS
            .iter()
            .map(|&seconds| format!("monitor's own heap, {} at 1 Hz", footprint_label(seconds))),
    );
    let columns: Vec<Vec<String>> = outcomes.iter().map(|(_, outcome)| cells(outcome)).collect();
    for (row, label) in labels.into_iter().enumerate() {
        let mut line = vec![label];
        line.extend(columns.iter().map(|column| column[row].clone()));
        table.row(line);
    }
    print!("{table}");
    println!(
        "\nheap growth: jemalloc's allocated bytes (whole process), last sample minus first; the \
         scenario leaks {}.\n\
         tasks: alive after stop returned, beyond those alive before the monitor started.\n\
         own heap: bytes the monitor holds after sampling once a second on a paused clock \
         (jemalloc, this thread).",
        format_bytes(LEAKED_BYTES as i64)
    );
    ExitCode::SUCCESS
}
