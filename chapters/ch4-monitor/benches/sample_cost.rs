//! What one monitor sample costs, part by part, against the ~3.7 µs of Go's
//! `runtime.ReadMemStats` on the same kind of machine.
//!
//! jemalloc refreshes its totals only when the statistics epoch advances,
//! and an advance merges every arena's counters, so the cost grows with the
//! number of arenas in use and with the threads that have a thread cache.
//! The bench keeps 16 threads alive that have allocated, which puts all of
//! jemalloc's automatic arenas (4 per CPU) to work, as a busy service does;
//! `capture.sh` runs it again with `MALLOC_CONF=narenas:1`.
//!
//! Times are the process's CPU time, so other work on a shared machine does
//! not inflate them.

use std::time::Duration;

use common::cpu_time_of;
use criterion::{Criterion, criterion_group, criterion_main};
use leakscope::heap::HeapStats;
use leakscope::monitor::{Sample, rss_bytes};
use tikv_jemalloc_ctl::{epoch, stats};

mod common;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn configure() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

/// The obvious way to read the heap: every call looks each name up.
fn heap_by_name() -> u64 {
    epoch::advance().expect("epoch");
    let reads = [
        stats::allocated::read(),
        stats::active::read(),
        stats::resident::read(),
        stats::mapped::read(),
        stats::retained::read(),
        stats::metadata::read(),
    ];
    reads
        .into_iter()
        .map(|read| read.expect("stat") as u64)
        .sum()
}

fn parts(c: &mut Criterion, group_name: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime");
    let _inside = runtime.enter();
    let epoch_mib = epoch::mib().expect("epoch mib");
    let allocated_mib = stats::allocated::mib().expect("allocated mib");

    let mut group = c.benchmark_group(group_name);
    group.bench_function("heap: names looked up, epoch, 6 stats", |b| {
        b.iter_custom(|iterations| cpu_time_of(iterations, heap_by_name))
    });
    group.bench_function("heap: cached MIBs, epoch, 6 stats", |b| {
        b.iter_custom(|iterations| cpu_time_of(iterations, || HeapStats::read().expect("stats")))
    });
    group.bench_function("heap: epoch advance alone", |b| {
        b.iter_custom(|iterations| cpu_time_of(iterations, || epoch_mib.advance().expect("epoch")))
    });
    group.bench_function("heap: 1 stat by cached MIB, no epoch", |b| {
        b.iter_custom(|iterations| {
            cpu_time_of(iterations, || allocated_mib.read().expect("allocated"))
        })
    });
    group.bench_function("rss: open and read /proc/self/statm", |b| {
        b.iter_custom(|iterations| {
            cpu_time_of(iterations, || {
                std::fs::read_to_string("/proc/self/statm").expect("statm")
            })
        })
    });
    group.bench_function("rss: pread of the kept-open file", |b| {
        b.iter_custom(|iterations| cpu_time_of(iterations, rss_bytes))
    });
    group.bench_function("tasks: runtime metrics", |b| {
        b.iter_custom(|iterations| cpu_time_of(iterations, leakscope::tasks::alive_tasks))
    });
    group.bench_function("Sample::take, all of it", |b| {
        b.iter_custom(|iterations| cpu_time_of(iterations, || Sample::take(Duration::ZERO)))
    });
    group.finish();
}

/// Worker threads kept alive during the measurement, as in a service.
const THREADS: usize = 16;

/// Starts [`THREADS`] threads that each allocate (threads are spread over
/// jemalloc's arenas round-robin, so every automatic arena gets used) and
/// then stay alive, each with its thread cache, until the bench is done:
/// an epoch advance merges every used arena, and walks each thread cache.
/// The group is named after `arenas.narenas`, and after `MALLOC_CONF` when
/// set: `capture.sh` also runs this bench with `narenas:1`.
fn sample_cost(c: &mut Criterion) {
    let kept = common::keep_threads_alive(THREADS);

    let narenas = tikv_jemalloc_ctl::arenas::narenas::read().expect("narenas");
    let name = match std::env::var("MALLOC_CONF") {
        Ok(conf) if !conf.is_empty() => {
            format!("ch4 sample cost, {narenas} arenas ({conf}), {THREADS} threads")
        }
        _ => format!("ch4 sample cost, {narenas} arenas, {THREADS} threads"),
    };
    parts(c, &name);
    drop(kept);
}

criterion_group! {
    name = benches;
    config = configure();
    targets = sample_cost
}
criterion_main!(benches);
