//! Reuse instead of churn: a request handled with a new buffer, with one
//! from a bounded pool, and with one buffer the caller reuses. Criterion
//! measures the time per request; before it runs, the bytes allocated per
//! request are printed, from jemalloc's per-thread `thread.allocated`.
//!
//! Two response sizes: the seed's 1 KiB, which jemalloc serves from its
//! per-thread cache, and 64 KiB, which it does not.

use std::hint::black_box;
use std::time::Duration;

use ch7_practices::{BUFFER_SIZE, bad, good, thread_allocated_bytes};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const RESPONSE_SIZES: [usize; 2] = [BUFFER_SIZE, 64 * 1024];

const REQUESTS: u64 = 1_000;

/// Bytes allocated per request, averaged over [`REQUESTS`] requests after a
/// first one (which fills a pool or a reused buffer).
fn allocated_per_request(mut handle: impl FnMut(u64) -> u64) -> u64 {
    handle(0);
    let before = thread_allocated_bytes();
    for request_id in 1..=REQUESTS {
        black_box(handle(black_box(request_id)));
    }
    (thread_allocated_bytes() - before) / REQUESTS
}

fn print_allocations() {
    // Blocks up to this size come from a per-thread cache, without locking.
    let thread_cache_max = tikv_jemalloc_ctl::opt::tcache_max::read().expect("opt.tcache_max");
    println!(
        "jemalloc's thread cache holds blocks up to {} KiB",
        thread_cache_max / 1024
    );
    println!("bytes allocated per request (jemalloc thread.allocated, {REQUESTS} requests):");
    for size in RESPONSE_SIZES {
        let pool = good::BufferPool::new();
        let mut reused = Vec::new();
        let new_buffer = allocated_per_request(|id| bad::handle_request_with_new_buffer(id, size));
        let pooled =
            allocated_per_request(|id| good::handle_request_with_pooled_buffer(&pool, id, size));
        let reusing =
            allocated_per_request(|id| good::handle_request_reusing_buffer(&mut reused, id, size));
        println!(
            "  {:>2} KiB response: new_buffer {new_buffer} B, pooled_buffer {pooled} B, \
             reused_buffer {reusing} B",
            size / 1024
        );
    }
}

fn per_request(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_buffer");
    group
        .throughput(Throughput::Elements(1))
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for size in RESPONSE_SIZES {
        let label = format!("{}KiB", size / 1024);
        group.bench_function(BenchmarkId::new("new_buffer", &label), |b| {
            let mut request_id = 0;
            b.iter(|| {
                request_id += 1;
                bad::handle_request_with_new_buffer(black_box(request_id), size)
            })
        });
        let pool = good::BufferPool::new();
        group.bench_function(BenchmarkId::new("pooled_buffer", &label), |b| {
            let mut request_id = 0;
            b.iter(|| {
                request_id += 1;
                good::handle_request_with_pooled_buffer(&pool, black_box(request_id), size)
            })
        });
        let mut reused = Vec::new();
        group.bench_function(BenchmarkId::new("reused_buffer", &label), |b| {
            let mut request_id = 0;
            b.iter(|| {
                request_id += 1;
                good::handle_request_reusing_buffer(&mut reused, black_box(request_id), size)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, per_request);

fn main() {
    print_allocations();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
