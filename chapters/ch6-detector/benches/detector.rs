//! What detection costs: one observation fed to each detector (the cost
//! paid on every sample of every service), and taking one observation of
//! the live process.

use std::hint::black_box;
use std::time::Duration;

use ch6_detector::bad;
use ch6_detector::traces::{Family, generate};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use leakscope::detect::{Detector, DetectorConfig, Observation, live_allocations};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn detectors(c: &mut Criterion) {
    let trace = generate(Family::Noisy, 1).trace; // one hour, one row a second
    let mut group = c.benchmark_group("per observation");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500))
        .throughput(Throughput::Elements(trace.len() as u64));
    group.bench_function("leakscope Detector::observe", |b| {
        b.iter_batched(
            || Detector::new(DetectorConfig::default()),
            |mut detector| {
                for observation in &trace {
                    black_box(detector.observe(black_box(*observation)).unwrap());
                }
                detector
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("seed MemoryLeakDetector::tick", |b| {
        b.iter_batched(
            || {
                let first = trace[0];
                (
                    bad::MemoryLeakDetector::new(bad::LeakThresholds::default(), first, |_| {}),
                    first.t_ms,
                )
            },
            |(detector, mut period_start)| {
                for observation in &trace[1..] {
                    detector.tick(black_box(*observation), &mut period_start);
                }
                detector
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn sampling(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime");
    let _inside = runtime.enter(); // alive_tasks reads the current runtime
    let mut group = c.benchmark_group("sampling");
    group
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    group.bench_function("live_allocations", |b| {
        b.iter(|| live_allocations().expect("jemalloc statistics"))
    });
    group.bench_function("Observation::now", |b| {
        b.iter(|| Observation::now(black_box(Duration::ZERO)).expect("jemalloc statistics"))
    });
    group.finish();
}

criterion_group!(benches, detectors, sampling);
criterion_main!(benches);
