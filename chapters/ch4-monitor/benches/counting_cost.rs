//! What leakscope's counting allocator costs, against Go's own counters:
//!
//! * reading live bytes, live allocations and alive tasks (Go:
//!   `runtime/metrics.Read` of the same three, run by `capture.sh` beside
//!   this bench), and the RSS read from `/proc` on its own;
//! * what counting adds to an allocation-heavy workload (several threads
//!   making small allocations and writing into them) over the bare
//!   allocator, for the system allocator, jemalloc and mimalloc.
//!
//! Both sides of a comparison run in one process, one after the other:
//! `GlobalAlloc` methods can be called on any allocator value, so the bare
//! allocator and the counting wrapper around it are both driven directly.
//! The global allocator is the counting one over jemalloc, with 16 threads
//! alive that have allocated, as in a service.

use std::alloc::{GlobalAlloc, Layout, System};
use std::time::Duration;

use common::cpu_time_of;
use criterion::{Criterion, criterion_group, criterion_main};
use leakscope::alloc::{CountingAlloc, process_counters};
use leakscope::monitor::rss_bytes;

mod common;

#[global_allocator]
static ALLOC: CountingAlloc<tikv_jemallocator::Jemalloc> =
    CountingAlloc::new(tikv_jemallocator::Jemalloc);

fn configure() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

/// Threads kept alive (each has a counter slot) while reads are measured.
const THREADS: usize = 16;

fn read_cost(c: &mut Criterion) {
    let kept = common::keep_threads_alive(THREADS);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime");
    let _inside = runtime.enter();
    let mut group = c.benchmark_group("ch4 counting read");
    group.bench_function("live bytes + live allocations + alive tasks", |b| {
        b.iter_custom(|iterations| {
            cpu_time_of(iterations, || {
                let counters = process_counters().expect("installed");
                (
                    counters.live_bytes,
                    counters.live_allocations,
                    leakscope::tasks::alive_tasks(),
                )
            })
        })
    });
    group.bench_function("rss: pread of /proc/self/statm", |b| {
        b.iter_custom(|iterations| cpu_time_of(iterations, rss_bytes))
    });
    group.finish();
    drop(kept);
}

/// Threads making allocations at once in the workload.
const WORKLOAD_THREADS: usize = 4;
/// Allocations each thread makes per iteration.
const ALLOCATIONS_PER_THREAD: usize = 20_000;
/// Each thread keeps this many blocks alive, freeing the oldest as it goes.
const WINDOW: usize = 64;

/// Small allocations (16 to 511 bytes) from several threads, each filled
/// with a few bytes: the shape of a service building strings and maps.
fn workload<A: GlobalAlloc + Sync>(allocator: &A) {
    std::thread::scope(|scope| {
        for thread in 0..WORKLOAD_THREADS {
            scope.spawn(move || {
                let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ thread as u64;
                let mut window: [(*mut u8, Layout); WINDOW] =
                    [(std::ptr::null_mut(), Layout::new::<u8>()); WINDOW];
                for i in 0..ALLOCATIONS_PER_THREAD {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let size = 16 + (seed % 496) as usize;
                    let layout = Layout::from_size_align(size, 8).expect("a layout");
                    // SAFETY: a non-zero size; every block is freed once,
                    // with the layout it was allocated with.
                    unsafe {
                        let block = allocator.alloc(layout);
                        assert!(!block.is_null());
                        block.write_bytes(i as u8, size.min(64));
                        let (old, old_layout) =
                            std::mem::replace(&mut window[i % WINDOW], (block, layout));
                        if !old.is_null() {
                            allocator.dealloc(old, old_layout);
                        }
                    }
                }
                for (block, layout) in window {
                    if !block.is_null() {
                        // SAFETY: allocated above with this layout.
                        unsafe { allocator.dealloc(block, layout) };
                    }
                }
            });
        }
    });
}

fn allocator_overhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("ch4 counting overhead");
    // CPU time of all threads: other work on the machine does not inflate it.
    group.bench_function("System, bare", |b| {
        b.iter_custom(|n| cpu_time_of(n, || workload(&System)))
    });
    group.bench_function("System, counted", |b| {
        b.iter_custom(|n| cpu_time_of(n, || workload(&CountingAlloc::system())))
    });
    group.bench_function("jemalloc, bare", |b| {
        b.iter_custom(|n| cpu_time_of(n, || workload(&tikv_jemallocator::Jemalloc)))
    });
    group.bench_function("jemalloc, counted", |b| {
        b.iter_custom(|n| {
            cpu_time_of(n, || {
                workload(&CountingAlloc::new(tikv_jemallocator::Jemalloc))
            })
        })
    });
    group.bench_function("mimalloc, bare", |b| {
        b.iter_custom(|n| cpu_time_of(n, || workload(&mimalloc::MiMalloc)))
    });
    group.bench_function("mimalloc, counted", |b| {
        b.iter_custom(|n| cpu_time_of(n, || workload(&CountingAlloc::new(mimalloc::MiMalloc))))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = configure();
    targets = read_cost, allocator_overhead
}
criterion_main!(benches);
