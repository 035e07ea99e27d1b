//! The workload under dhat, which records every allocation with its
//! backtrace.

mod common;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn under_dhat(criterion: &mut criterion::Criterion) {
    // Testing mode: profiles as usual but writes no file at the end.
    let _profiler = dhat::Profiler::builder().testing().build();
    common::bench_churn(criterion, "dhat");
    common::bench_requests(criterion, "dhat");
}

criterion::criterion_group!(benches, under_dhat);
criterion::criterion_main!(benches);
