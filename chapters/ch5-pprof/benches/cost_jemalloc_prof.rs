//! The workload with jemalloc's heap profiler on, at the served rate: one
//! sample per 512 KiB allocated on average.

mod common;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[allow(non_upper_case_globals)]
#[unsafe(export_name = "malloc_conf")]
pub static malloc_conf: &[u8] = b"prof:true,prof_active:true,lg_prof_sample:19\0";

fn profiled(criterion: &mut criterion::Criterion) {
    assert!(leakscope::profile::heap_profiling_enabled());
    common::bench_churn(criterion, "jemalloc + profiling (512 KiB sampling)");
    common::bench_requests(criterion, "jemalloc + profiling (512 KiB sampling)");
}

criterion::criterion_group!(benches, profiled);
criterion::criterion_main!(benches);
