//! What detection costs: taking one observation of the live process, and
//! running each detector over a ten-minute trace (600 samples).

use std::hint::black_box;
use std::time::Duration;

use ch6_detector::eval::{leakscope_detector, seed_detector};
use ch6_detector::traces;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use leakscope::detect::{Observation, live_allocations};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn detectors(c: &mut Criterion) {
    let trace = traces::load("noisy-steady");
    let mut group = c.benchmark_group("detector");
    group
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .throughput(Throughput::Elements(trace.len() as u64));
    group.bench_function("leakscope, per 600-sample trace", |b| {
        b.iter(|| leakscope_detector(black_box(&trace)))
    });
    group.bench_function("seed, per 600-sample trace", |b| {
        b.iter(|| seed_detector(black_box(&trace)))
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
