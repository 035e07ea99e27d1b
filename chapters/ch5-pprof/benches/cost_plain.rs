//! The workload with jemalloc and no heap profiling: the baseline.

mod common;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn plain(criterion: &mut criterion::Criterion) {
    common::bench_churn(criterion, "jemalloc");
    common::bench_requests(criterion, "jemalloc");
}

criterion::criterion_group!(benches, plain);
criterion::criterion_main!(benches);
