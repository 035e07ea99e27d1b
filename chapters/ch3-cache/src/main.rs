//! `just run ch3-cache [bad|good]`: runs the seed's cache scenarios and
//! prints bad vs good side by side, then a text chart of live heap under
//! steady traffic. `ch3-cache chart OUT_DIR` draws that chart as an SVG.

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ch3_cache::{
    CAPACITY, FLOOD_KEYS, FLOOD_TTL, GLOBAL_ENTRIES, LONGEST_TTL, SEED_WAIT, SWEEP_INTERVAL,
    TTL_ENTRIES, VALUE_BYTES, bad, flood_key, flood_value, good, moka_cache, seed_key, seed_ttl,
    seed_value,
};
use leakscope::chart::LineChart;
use leakscope::heap::LiveBytes;
use leakscope::report::{Table, format_bytes, format_bytes_delta, sparkline};
use leakscope::tasks::{TaskLeakCheck, task_traces, warm_up_runtime};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const USAGE: &str = "\
usage: ch3-cache [bad|good]      run the scenarios (no argument: both sides)
       ch3-cache chart OUT_DIR   write OUT_DIR/ch3-cache-heap.svg, live heap under steady traffic";

/// The chart's traffic: new seed entries (1 KiB, TTL 100 ms to 999 ms) per second…
const ARRIVALS_PER_SECOND: usize = 500;
/// …for this long (500/s × 20 s = the seed's 10 000 entries)…
const TRAFFIC_TIME: Duration = Duration::from_secs(20);
/// …then nothing until the chart ends.
const CHART_TIME: Duration = Duration::from_secs(30);
/// How often the chart samples the live heap.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Heap that may stay right after a drop without counting as kept: moka's
/// hash table frees through crossbeam-epoch, which reclaims memory a few
/// KiB at a time, later. Repeated runs move this figure up and down.
const AFTER_DROP_TOLERANCE: i64 = 16 * 1024;

/// What one cache held at the end of a scenario, and what was left once
/// its last handle was dropped.
struct Outcome {
    entries: usize,
    live_bytes: i64,
    /// `None` for the global map, which nothing can drop.
    after_drop: Option<AfterDrop>,
}

struct AfterDrop {
    live_bytes: i64,
    leaked_tasks: usize,
}

impl Outcome {
    fn cells(&self, side: &str) -> Vec<String> {
        let (heap_after_drop, task_after_drop) = match &self.after_drop {
            None => ("never dropped".to_string(), "-".to_string()),
            Some(after) => (
                format_bytes_delta(after.live_bytes),
                match after.leaked_tasks {
                    0 => "none".to_string(),
                    leaked => format!("{leaked} ALIVE"),
                },
            ),
        };
        vec![
            side.to_string(),
            self.entries.to_string(),
            format_bytes_delta(self.live_bytes),
            heap_after_drop,
            task_after_drop,
            self.verdict(),
        ]
    }

    fn verdict(&self) -> String {
        let mut problems = Vec::new();
        match &self.after_drop {
            None if self.live_bytes > 0 => problems.push("LEAKS: a static is never freed"),
            Some(after) if after.leaked_tasks > 0 => {
                problems.push("LEAKS: the sweeper outlives the cache")
            }
            Some(after) if after.live_bytes > AFTER_DROP_TOLERANCE => {
                problems.push("keeps heap after drop")
            }
            _ => {}
        }
        if self.entries > CAPACITY {
            problems.push("UNBOUNDED");
        }
        if problems.is_empty() {
            "ok".to_string()
        } else {
            problems.join("; ")
        }
    }
}

/// Runs a scenario on its own single-threaded runtime with tokio's paused
/// clock: every byte and task is counted exactly, and the seed's seconds
/// pass as soon as the runtime has nothing else to do.
fn on_paused_runtime<F, Fut, T>(scenario: F) -> T
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a tokio runtime")
        .block_on(async {
            warm_up_runtime(1).await;
            scenario().await
        })
}

/// Builds a cache on a paused runtime, fills it, lets `wait` pass, and
/// measures it then (`entries`, live heap) and once it is dropped (heap and
/// tasks left). The baseline is taken before the cache exists, so its own
/// structures and its sweeper count too.
fn measure_cache<C>(
    build: impl FnOnce() -> C,
    fill: impl FnOnce(&C),
    entries: impl FnOnce(&C) -> usize,
    wait: Duration,
) -> Outcome {
    on_paused_runtime(|| async move {
        let (tasks, heap) = (TaskLeakCheck::start(), LiveBytes::start());
        let cache = build();
        fill(&cache);
        tokio::time::sleep(wait).await;
        let entries = entries(&cache);
        let live_bytes = heap.live_bytes();
        drop(cache);
        let leaked_tasks = tasks.leaked_tasks().await;
        Outcome {
            entries,
            live_bytes,
            after_drop: Some(AfterDrop {
                live_bytes: heap.live_bytes(),
                leaked_tasks,
            }),
        }
    })
}

/// The same for moka, which needs no runtime and reads the real clock: it
/// waits for real, then lets moka finish its pending maintenance.
fn measure_moka(ttl: Duration, fill: impl FnOnce(&MokaCache), wait: Duration) -> Outcome {
    let heap = LiveBytes::start();
    let cache = moka_cache(CAPACITY as u64, ttl);
    fill(&cache);
    std::thread::sleep(wait);
    cache.run_pending_tasks();
    let entries = cache.entry_count() as usize;
    let live_bytes = heap.live_bytes();
    drop(cache);
    Outcome {
        entries,
        live_bytes,
        after_drop: Some(AfterDrop {
            live_bytes: heap.live_bytes(),
            leaked_tasks: 0, // moka spawns no task
        }),
    }
}

type MokaCache = moka::sync::Cache<String, Bytes>;

fn new_good_cache() -> good::TtlCache<String, Bytes> {
    good::TtlCache::new(CAPACITY, SWEEP_INTERVAL)
}

fn global_map_unused() -> Outcome {
    let outcome = on_paused_runtime(|| async {
        let heap = LiveBytes::start();
        bad::fill_global_cache(GLOBAL_ENTRIES, VALUE_BYTES);
        tokio::time::sleep(SEED_WAIT).await;
        Outcome {
            entries: bad::global_cache_len(),
            live_bytes: heap.live_bytes(),
            after_drop: None,
        }
    });
    bad::reset_global_cache(); // as the seed's main does before its next demo
    outcome
}

fn good_cache_unused(count: usize) -> Outcome {
    let fill = |cache: &good::TtlCache<String, Bytes>| {
        for index in 0..count {
            cache.insert(seed_key(index), seed_value(), seed_ttl(index));
        }
    };
    measure_cache(new_good_cache, fill, |cache| cache.len(), SEED_WAIT)
}

fn seed_ttl_cache_unused() -> Outcome {
    let fill = |cache: &Arc<bad::TtlCache>| {
        for index in 0..TTL_ENTRIES {
            cache.set(seed_key(index), seed_value(), seed_ttl(index));
        }
    };
    measure_cache(bad::TtlCache::new, fill, |cache| cache.size(), SEED_WAIT)
}

fn seed_ttl_cache_flooded() -> Outcome {
    let fill = |cache: &Arc<bad::TtlCache>| {
        for index in 0..FLOOD_KEYS {
            cache.set(flood_key(index), flood_value(), FLOOD_TTL);
        }
    };
    measure_cache(
        bad::TtlCache::new,
        fill,
        |cache| cache.size(),
        Duration::ZERO,
    )
}

fn good_cache_flooded() -> Outcome {
    let fill = |cache: &good::TtlCache<String, Bytes>| {
        for index in 0..FLOOD_KEYS {
            cache.insert(flood_key(index), flood_value(), FLOOD_TTL);
        }
    };
    measure_cache(new_good_cache, fill, |cache| cache.len(), Duration::ZERO)
}

/// moka's seed row waits for real: the longest TTL plus a little, instead
/// of the seed's 6 s.
fn moka_unused() -> Outcome {
    let fill = |cache: &MokaCache| {
        for index in 0..GLOBAL_ENTRIES {
            cache.insert(seed_key(index), seed_value());
        }
    };
    measure_moka(LONGEST_TTL, fill, LONGEST_TTL + Duration::from_millis(50))
}

fn moka_flooded() -> Outcome {
    let fill = |cache: &MokaCache| {
        for index in 0..FLOOD_KEYS {
            cache.insert(flood_key(index), flood_value());
        }
    };
    measure_moka(FLOOD_TTL, fill, Duration::ZERO)
}

/// A cache's label and the scenario that measures it.
type Side = (&'static str, fn() -> Outcome);

struct Row {
    scenario: &'static str,
    bad: Side,
    good: Vec<Side>,
}

/// Live heap over time: (seconds, bytes) points.
type HeapSeries = Vec<(f64, i64)>;

fn rows() -> Vec<Row> {
    vec![
        Row {
            scenario: "10 000 × 1 KiB, unused for 6 s",
            bad: ("bad: global map", global_map_unused),
            good: vec![
                ("good: TtlCache", || good_cache_unused(GLOBAL_ENTRIES)),
                ("moka (real 1 s)", moka_unused),
            ],
        },
        Row {
            scenario: "TTL cache, 1 000 × 1 KiB, 6 s",
            bad: ("bad: seed's TTLCache", seed_ttl_cache_unused),
            good: vec![("good: TtlCache", || good_cache_unused(TTL_ENTRIES))],
        },
        Row {
            scenario: "1 000 000 keys in one TTL",
            bad: ("bad: seed's TTLCache", seed_ttl_cache_flooded),
            good: vec![
                ("good: TtlCache", good_cache_flooded),
                ("moka", moka_flooded),
            ],
        },
    ]
}

/// Live heap, sampled every [`SAMPLE_EVERY`], while seed entries arrive at
/// [`ARRIVALS_PER_SECOND`] for [`TRAFFIC_TIME`], until [`CHART_TIME`].
/// Returns (seconds, bytes) points for the global map and the TTL cache.
fn heap_under_traffic() -> (HeapSeries, HeapSeries) {
    let per_sample = ARRIVALS_PER_SECOND * SAMPLE_EVERY.as_millis() as usize / 1000;
    let samples = (CHART_TIME.as_millis() / SAMPLE_EVERY.as_millis()) as usize;
    let arriving =
        |sample: usize| sample < (TRAFFIC_TIME.as_millis() / SAMPLE_EVERY.as_millis()) as usize;
    let seconds = |sample: usize| (sample as u32 * SAMPLE_EVERY).as_secs_f64();
    // Sized up front: growing them would show in the heap they measure.
    let mut global = Vec::with_capacity(samples + 1);
    let mut ttl_cache = Vec::with_capacity(samples + 1);
    on_paused_runtime(|| async {
        let heap = LiveBytes::start();
        for sample in 0..=samples {
            global.push((seconds(sample), heap.live_bytes()));
            if arriving(sample) {
                for index in sample * per_sample..(sample + 1) * per_sample {
                    bad::cache_globally(seed_key(index), vec![0u8; VALUE_BYTES]);
                }
            }
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
    });
    bad::reset_global_cache();
    on_paused_runtime(|| async {
        let cache = good::TtlCache::new(CAPACITY, SWEEP_INTERVAL);
        tokio::task::yield_now().await; // the sweeper's timer belongs to the empty cache
        let heap = LiveBytes::start();
        for sample in 0..=samples {
            ttl_cache.push((seconds(sample), heap.live_bytes()));
            if arriving(sample) {
                for index in sample * per_sample..(sample + 1) * per_sample {
                    cache.insert(seed_key(index), seed_value(), seed_ttl(index));
                }
            }
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
    });
    (global, ttl_cache)
}

fn print_text_chart(
    global: &[(f64, i64)],
    ttl_cache: &[(f64, i64)],
    show_bad: bool,
    show_good: bool,
) {
    // One sparkline over both series, split in two, so both share a scale.
    const EVERY_NTH: usize = 5; // one bar per half second
    let bars = |points: &[(f64, i64)]| -> Vec<f64> {
        points
            .iter()
            .step_by(EVERY_NTH)
            .map(|&(_, bytes)| bytes as f64)
            .collect()
    };
    let (global_bars, ttl_bars) = (bars(global), bars(ttl_cache));
    let line: Vec<char> = sparkline(&[global_bars.clone(), ttl_bars].concat())
        .chars()
        .collect();
    let (global_line, ttl_line) = line.split_at(global_bars.len());
    let summary = |points: &[(f64, i64)]| {
        let peak = points.iter().map(|&(_, bytes)| bytes).max().unwrap_or(0);
        let end = points.last().map_or(0, |&(_, bytes)| bytes);
        format!(
            "peak {}, at {} s {}",
            format_bytes(peak),
            CHART_TIME.as_secs(),
            format_bytes(end)
        )
    };
    println!(
        "\nLive heap under steady traffic: {ARRIVALS_PER_SECOND} new 1 KiB entries/s for {} s, \
         then none; one bar per 0.5 s, {} s in all:",
        TRAFFIC_TIME.as_secs(),
        CHART_TIME.as_secs()
    );
    if show_bad {
        println!(
            "bad  (global map)  {}  {}",
            global_line.iter().collect::<String>(),
            summary(global)
        );
    }
    if show_good {
        println!(
            "good (TtlCache)    {}  {}",
            ttl_line.iter().collect::<String>(),
            summary(ttl_cache)
        );
    }
}

fn write_chart(out_dir: &Path) -> std::io::Result<()> {
    let (global, ttl_cache) = heap_under_traffic();
    let points = |series: &[(f64, i64)]| -> Vec<(f64, f64)> {
        series
            .iter()
            .map(|&(seconds, bytes)| (seconds, bytes as f64))
            .collect()
    };
    let path = out_dir.join("ch3-cache-heap.svg");
    LineChart::new(format!(
        "Live heap: {ARRIVALS_PER_SECOND} new 1 KiB entries/s for {} s, then none",
        TRAFFIC_TIME.as_secs()
    ))
    .x_label("time (s, tokio's paused clock)")
    .y_label("live heap")
    .y_format(|bytes| format_bytes(bytes as i64))
    .series("bad: global map", &points(&global))
    .series("good: TtlCache, swept every 5 s", &points(&ttl_cache))
    .write_svg(&path)?;
    println!("wrote {}", path.display());
    Ok(())
}

/// What tokio's task dump says about the runtime once the seed's cache was
/// dropped: which tasks are alive, and where each one waits.
fn print_sweeper_dump() {
    let traces = on_paused_runtime(|| async {
        drop(bad::TtlCache::new());
        tokio::time::sleep(SEED_WAIT).await;
        task_traces().await
    });
    match traces {
        Ok(traces) => {
            println!(
                "\nTask dump (Handle::dump) after the seed's TTLCache was dropped: {} task(s) alive",
                traces.len()
            );
            for trace in traces {
                println!("{trace}");
            }
        }
        Err(why) => println!("\nNo task dump: {why}"),
    }
}

fn run(show_bad: bool, show_good: bool) {
    println!(
        "ch3-cache: what each cache holds at the end of the seed's scenarios, and what stays \
         once it is dropped\n(tokio's paused clock: the seed's seconds pass instantly, except \
         for moka, which reads the real clock)\n"
    );
    let mut table = Table::new([
        "scenario",
        "cache",
        "entries",
        "live heap",
        "after drop: heap",
        "after drop: task",
        "verdict",
    ]);
    for row in rows() {
        let mut sides = Vec::new();
        if show_bad {
            sides.push(row.bad);
        }
        if show_good {
            sides.extend(row.good);
        }
        for (index, (side, scenario)) in sides.into_iter().enumerate() {
            let mut cells = vec![if index == 0 { row.scenario } else { "" }.to_string()];
            cells.extend(scenario().cells(side));
            table.row(cells);
        }
    }
    print!("{table}");
    println!(
        "\nentries: what the cache holds at the end (moka: entry_count after run_pending_tasks).\n\
         live heap: bytes allocated during the scenario and still live then (jemalloc, this thread).\n\
         after drop: the same, once the last handle to the cache is dropped; task: its sweeper."
    );
    if show_bad {
        print_sweeper_dump();
    }
    let (global, ttl_cache) = heap_under_traffic();
    print_text_chart(&global, &ttl_cache, show_bad, show_good);
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => run(true, true),
        ["bad"] => run(true, false),
        ["good"] => run(false, true),
        ["chart", out_dir] => {
            if let Err(error) = write_chart(Path::new(out_dir)) {
                eprintln!("cannot write the chart into {out_dir}: {error}");
                return ExitCode::FAILURE;
            }
        }
        ["-h" | "--help"] => println!("{USAGE}"),
        _ => {
            eprintln!("unknown arguments: {}\n{USAGE}", args.join(" "));
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
