//! Samples jemalloc's `allocated` and `resident`, and the RSS, through a
//! burst of small objects, its free, a quiet spell and a purge; prints the
//! samples and draws them as an SVG chart.
//!
//! `cargo run -p ch8-retention --example resident_chart -- OUT.svg`
//! (`capture.sh` runs it for the book).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use ch8_retention::{
    BURST_OBJECTS, BurstObject, burst_of_small_objects, good, rss_bytes, with_thousands_separators,
};
use leakscope::chart::LineChart;
use leakscope::heap::HeapStats;
use leakscope::report::{Table, format_bytes};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The burst is allocated, and freed, in this many equal steps.
const STEPS: usize = 10;
const STEP_PAUSE: Duration = Duration::from_millis(100);
/// How long the process sits idle with the freed pages resident.
const QUIET_SPELL: Duration = Duration::from_secs(3);
const QUIET_SAMPLE_EVERY: Duration = Duration::from_millis(250);

struct Sample {
    seconds: f64,
    phase: &'static str,
    stats: HeapStats,
    rss: u64,
}

struct Recorder {
    start: Instant,
    samples: Vec<Sample>,
}

impl Recorder {
    fn sample(&mut self, phase: &'static str) {
        let stats = HeapStats::read().expect("jemalloc statistics");
        let rss = rss_bytes().expect("RSS from /proc/self/smaps_rollup");
        self.samples.push(Sample {
            seconds: self.start.elapsed().as_secs_f64(),
            phase,
            stats,
            rss,
        });
    }

    fn series(&self, value: impl Fn(&Sample) -> u64) -> Vec<(f64, f64)> {
        self.samples
            .iter()
            .map(|sample| (sample.seconds, value(sample) as f64))
            .collect()
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [svg_path] = &args[..] else {
        eprintln!("usage: resident_chart OUT.svg");
        return ExitCode::from(2);
    };

    good::purge_unused_pages().expect("jemalloc purge");
    let mut recorder = Recorder {
        start: Instant::now(),
        samples: Vec::new(),
    };
    recorder.sample("before");

    let mut burst: Vec<Vec<BurstObject>> = Vec::with_capacity(STEPS);
    for _ in 0..STEPS {
        std::thread::sleep(STEP_PAUSE);
        burst.push(burst_of_small_objects(BURST_OBJECTS / STEPS));
        recorder.sample("allocating");
    }
    for _ in 0..STEPS {
        std::thread::sleep(STEP_PAUSE);
        drop(burst.pop());
        recorder.sample("freeing");
    }
    let quiet_until = Instant::now() + QUIET_SPELL;
    while Instant::now() < quiet_until {
        std::thread::sleep(QUIET_SAMPLE_EVERY);
        recorder.sample("quiet");
    }
    good::purge_unused_pages().expect("jemalloc purge");
    recorder.sample("purged");
    std::thread::sleep(STEP_PAUSE);
    recorder.sample("purged");

    let mut table = Table::new(["time", "phase", "allocated", "resident", "RSS"]);
    for sample in &recorder.samples {
        table.row([
            format!("{:.1} s", sample.seconds),
            sample.phase.to_string(),
            format_bytes(sample.stats.allocated as i64),
            format_bytes(sample.stats.resident as i64),
            format_bytes(sample.rss as i64),
        ]);
    }
    print!("{table}");

    let purge_points: Vec<(f64, f64)> = recorder
        .samples
        .iter()
        .find(|sample| sample.phase == "purged")
        .map(|sample| (sample.seconds, sample.stats.resident as f64))
        .into_iter()
        .collect();
    let title = format!(
        "A burst of {} small objects: allocated, freed, purged",
        with_thousands_separators(BURST_OBJECTS)
    );
    let chart = LineChart::new(title)
        .x_label("time (s)")
        .y_label("bytes")
        .y_format(|bytes| format_bytes(bytes as i64))
        .series(
            "resident (jemalloc)",
            &recorder.series(|s| s.stats.resident),
        )
        .series(
            "allocated (jemalloc)",
            &recorder.series(|s| s.stats.allocated),
        )
        .series("RSS (kernel)", &recorder.series(|s| s.rss))
        .markers("purge", &purge_points);
    if let Err(error) = chart.write_svg(svg_path) {
        eprintln!("cannot write {svg_path}: {error}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
