//! `just run ch8-retention [bad|good]`: runs each scenario for real and
//! prints what the bad and the good version keep alive.

use std::collections::HashMap;
use std::process::ExitCode;

use bytes::Bytes;
use ch8_retention::retention::{Diagnosis, diagnose};
use ch8_retention::{
    BODY_SIZE, BURST_OBJECT_SIZE, BURST_OBJECTS, MAP_ENTRIES, STEADY_SESSIONS, Sessions, bad,
    burst_of_small_objects, fill_sessions, good, read_body, rss_bytes, with_thousands_separators,
};
use leaklab_cli::Sides;
use leakscope::heap::{HeapStats, LiveBytes};
use leakscope::report::{Table, format_bytes, format_bytes_delta};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const USAGE: &str = "usage: ch8-retention [bad|good]   (no argument: both, side by side)";

/// Changes smaller than this between two heap snapshots are noise
/// (jemalloc's own metadata, the runtime's first allocations).
const NOISE: u64 = 4 << 20;

/// Bytes allocated on this thread by `scenario` and still live while its
/// result is held; the result is dropped afterwards.
fn kept_bytes<T>(scenario: impl FnOnce() -> T) -> i64 {
    let heap = LiveBytes::start();
    let kept = scenario();
    let live_bytes = heap.live_bytes();
    drop(kept);
    live_bytes
}

struct Row {
    scenario: String,
    bad: fn() -> i64,
    good: fn() -> i64,
}

const EXPIRE_AT: u64 = (MAP_ENTRIES - STEADY_SESSIONS) as u64;

fn rows() -> [Row; 5] {
    [
        Row {
            scenario: "10 B id of a 10 MiB body: Bytes".into(),
            bad: || {
                kept_bytes(|| {
                    let mut index = HashMap::new();
                    bad::remember_id(&mut index, 1, Bytes::from(read_body(1)));
                    index
                })
            },
            good: || {
                kept_bytes(|| {
                    let mut index = HashMap::new();
                    good::remember_id(&mut index, 1, Bytes::from(read_body(1)));
                    index
                })
            },
        },
        Row {
            scenario: "10 B id of a 10 MiB body: truncate".into(),
            bad: || kept_bytes(|| bad::id_by_truncating(read_body(1))),
            good: || kept_bytes(|| good::id_by_copying(read_body(1))),
        },
        Row {
            scenario: "10 B id of a 10 MiB body: collect".into(),
            bad: || kept_bytes(|| bad::id_by_collecting(read_body(1))),
            good: || kept_bytes(|| good::id_by_copying(read_body(1))),
        },
        Row {
            scenario: format!(
                "{} sessions, {} left",
                with_thousands_separators(MAP_ENTRIES),
                with_thousands_separators(STEADY_SESSIONS)
            ),
            bad: || {
                kept_bytes(|| {
                    let mut sessions = Sessions::new();
                    fill_sessions(&mut sessions, MAP_ENTRIES);
                    bad::expire_sessions(&mut sessions, EXPIRE_AT);
                    sessions
                })
            },
            good: || {
                kept_bytes(|| {
                    let mut sessions = Sessions::new();
                    fill_sessions(&mut sessions, MAP_ENTRIES);
                    good::expire_sessions(&mut sessions, EXPIRE_AT);
                    sessions
                })
            },
        },
        Row {
            scenario: "buffer after a 10 MiB message".into(),
            bad: || kept_bytes(|| reuse_buffer(bad::handle_message)),
            good: || kept_bytes(|| reuse_buffer(good::handle_message)),
        },
    ]
}

/// One large message, then a small one, through the same buffer; returns
/// the buffer as it is kept for the next message.
fn reuse_buffer(handle_message: fn(&mut Vec<u8>, &[u8]) -> u64) -> Vec<u8> {
    let mut buffer = Vec::new();
    let large = vec![1u8; BODY_SIZE];
    handle_message(&mut buffer, &large);
    drop(large);
    handle_message(&mut buffer, b"a small message");
    buffer
}

fn verdict(bad_bytes: Option<i64>, good_bytes: Option<i64>) -> String {
    match (bad_bytes, good_bytes) {
        (Some(bad_bytes), Some(good_bytes)) if good_bytes > 0 => {
            format!("bad keeps {}x more", bad_bytes / good_bytes)
        }
        (Some(bad_bytes), _) => format!("bad keeps {}", format_bytes(bad_bytes)),
        (None, Some(good_bytes)) => format!("good keeps {}", format_bytes(good_bytes)),
        (None, None) => String::new(),
    }
}

/// One step of the freed-but-resident scenario: jemalloc's process-wide
/// statistics and the RSS the operating system reports.
fn snapshot_row(table: &mut Table, step: &str, baseline: &HeapStats) -> HeapStats {
    let stats = HeapStats::read().expect("jemalloc statistics");
    let rss = rss_bytes().map_or_else(|_| "n/a".to_string(), |bytes| format_bytes(bytes as i64));
    let diagnosis = match diagnose(baseline, &stats, NOISE) {
        Diagnosis::Steady if step == "before" => String::from("baseline"),
        diagnosis => diagnosis.to_string(),
    };
    table.row([
        step.to_string(),
        format_bytes(stats.allocated as i64),
        format_bytes(stats.resident as i64),
        rss,
        diagnosis,
    ]);
    stats
}

fn freed_but_resident(sides: Sides) -> Table {
    // Start from an allocator with no freed pages left over from the
    // scenarios above, so the steps show this burst only.
    good::purge_unused_pages().expect("jemalloc purge");
    let mut table = Table::new(["step", "allocated", "resident", "RSS", "diagnosis"]);
    let baseline = snapshot_row(&mut table, "before", &HeapStats::default());
    let burst = burst_of_small_objects(BURST_OBJECTS);
    snapshot_row(&mut table, "burst allocated", &baseline);
    if sides.bad {
        bad::free_burst(burst);
        snapshot_row(&mut table, "bad: freed", &baseline);
        if sides.good {
            good::purge_unused_pages().expect("jemalloc purge");
            snapshot_row(&mut table, "good: then purged", &baseline);
        }
    } else {
        good::free_burst_and_purge(burst).expect("jemalloc purge");
        snapshot_row(&mut table, "good: freed and purged", &baseline);
    }
    if sides.good {
        // The other fix: this thread's arena returns pages as they empty.
        let previous = good::return_freed_pages_at_once().expect("jemalloc decay setting");
        let burst = burst_of_small_objects(BURST_OBJECTS);
        bad::free_burst(burst);
        snapshot_row(
            &mut table,
            &format!("good: dirty_decay_ms {previous} -> 0, burst again, freed"),
            &baseline,
        );
    }
    table
}

fn main() -> ExitCode {
    let sides = match leaklab_cli::Sides::from_args(USAGE) {
        Ok(sides) => sides,
        Err(exit) => return exit,
    };

    println!("ch8-retention: memory kept alive by what each version keeps\n");
    let mut header = sides.header(&["scenario"], &["kept"]);
    header.push("verdict".into());
    let mut table = Table::new(header);
    for row in rows() {
        let bad_bytes = sides.bad.then(row.bad);
        let good_bytes = sides.good.then(row.good);
        let mut cells = vec![row.scenario];
        cells.extend(bad_bytes.map(format_bytes_delta));
        cells.extend(good_bytes.map(format_bytes_delta));
        cells.push(verdict(bad_bytes, good_bytes));
        table.row(cells);
    }
    print!("{table}");
    println!(
        "\nkept: bytes allocated during the scenario and still live while its result is held\n\
         (jemalloc, this thread; a 10-byte copy counts as 16, its size class).\n"
    );

    println!(
        "Freed but resident: {} objects of {BURST_OBJECT_SIZE} B allocated, then freed\n",
        with_thousands_separators(BURST_OBJECTS)
    );
    print!("{}", freed_but_resident(sides));
    println!(
        "\nallocated: bytes in live objects; resident: pages jemalloc holds in memory, used or\n\
         not (both process-wide); RSS: the process's resident set, as `top` shows it."
    );
    ExitCode::SUCCESS
}
