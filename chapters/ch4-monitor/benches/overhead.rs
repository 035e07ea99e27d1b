//! What a running monitor costs a busy service: the same allocation-heavy
//! workload on a two-worker runtime with no monitor, a monitor at 1 Hz (the
//! seed's rate) and one at 100 Hz. Times are the process's CPU time, all
//! threads, so the monitor's own work on a worker counts, and other work on
//! a shared machine does not. `capture.sh` turns the three into ratios.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use common::cpu_time_of;
use criterion::{Criterion, criterion_group, criterion_main};
use leakscope::monitor::{Monitor, MonitorConfig};

mod common;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Tasks per iteration, each doing [`busy_work`].
const TASKS: usize = 4;

/// Builds and drops a map of 2 000 short strings: thousands of small
/// allocations and frees, the kind of churn a request handler makes.
fn busy_work() -> usize {
    let mut map = HashMap::new();
    for key in 0..2_000 {
        map.insert(key, format!("value number {key}"));
    }
    map.values().map(String::len).sum()
}

fn workload(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut group = c.benchmark_group("ch4 busy workload");
    for (name, interval) in [
        ("no monitor", None),
        ("monitor at 1 Hz", Some(Duration::from_secs(1))),
        ("monitor at 100 Hz", Some(Duration::from_millis(10))),
    ] {
        let monitor = interval.map(|interval| {
            let _inside = runtime.enter();
            Monitor::start(MonitorConfig::default().interval(interval))
        });
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                cpu_time_of(iterations, || {
                    runtime.block_on(async {
                        let tasks: Vec<_> = (0..TASKS)
                            .map(|_| tokio::spawn(async { busy_work() }))
                            .collect();
                        for task in tasks {
                            black_box(task.await.expect("busy work does not panic"));
                        }
                    })
                })
            })
        });
        if let Some(monitor) = monitor {
            let summary = runtime.block_on(monitor.stop()).summary();
            eprintln!(
                "{name}: {} samples taken in {:.1} s of benchmarking",
                summary.samples_taken,
                summary.last.elapsed.as_secs_f64()
            );
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = workload
}
criterion_main!(benches);
