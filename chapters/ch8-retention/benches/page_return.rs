//! What giving freed pages back costs: a burst of small objects allocated
//! and freed, with jemalloc's default decay (pages kept for reuse), with a
//! purge after each burst, and with `dirty_decay_ms` set to 0.

use std::hint::black_box;
use std::time::Duration;

use ch8_retention::{BURST_OBJECTS, bad, burst_of_small_objects, good};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A tenth of the chapter's burst (about 6 MiB), so one iteration stays
/// short.
const OBJECTS: usize = 100_000;
const _: () = assert!(OBJECTS * 10 == BURST_OBJECTS, "a tenth of the burst");

fn burst_and_free(c: &mut Criterion) {
    let mut group = c.benchmark_group("burst_and_free");
    group
        .throughput(Throughput::Elements(OBJECTS as u64))
        .sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));

    group.bench_function("default_decay_keeps_pages", |b| {
        b.iter(|| bad::free_burst(black_box(burst_of_small_objects(OBJECTS))))
    });
    group.bench_function("purge_after_each_burst", |b| {
        b.iter(|| good::free_burst_and_purge(black_box(burst_of_small_objects(OBJECTS))))
    });
    let previous = good::return_freed_pages_at_once().expect("jemalloc decay setting");
    group.bench_function("zero_dirty_decay", |b| {
        b.iter(|| bad::free_burst(black_box(burst_of_small_objects(OBJECTS))))
    });
    good::set_dirty_decay_ms(previous).expect("jemalloc decay setting");
    group.finish();
}

criterion_group!(benches, burst_and_free);
criterion_main!(benches);
