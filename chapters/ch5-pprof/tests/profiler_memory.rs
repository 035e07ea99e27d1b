//! The profiler's own memory stays out of the heap profiles it serves, and
//! stays visible: the first profile fills the symbolizer's debug-info cache
//! (tens of MiB, kept for the life of the process), which the next profile
//! must not show as growth — in a release build too, where the symbolizer's
//! frames have short names (`insert`, `push`, `parse`) that no name filter
//! recognises. `release-checks.sh` runs this file with `--release`.

use leakscope::profile::{self, HeapView};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[allow(non_upper_case_globals)]
#[unsafe(export_name = "malloc_conf")]
pub static malloc_conf: &[u8] = b"prof:true,prof_active:true,lg_prof_sample:19\0";

// ANCHOR: profiler_memory
#[tokio::test(flavor = "current_thread")]
async fn the_symbolizer_s_cache_is_counted_but_never_profiled() {
    // Something for the dumps to name: 16 MiB the program keeps.
    let kept: Vec<Vec<u8>> = (0..16).map(|_| vec![1u8; 1 << 20]).collect();
    // Untrimmed dumps: nothing is filtered by frame name.
    let first = profile::take_heap(HeapView::Raw).await.unwrap();
    let kept_by_profiler = profile::profiler_retained_bytes();
    let second = profile::take_heap(HeapView::Raw).await.unwrap();

    // The first dump's symbolization kept its cache: counted...
    assert!(kept_by_profiler > 1 << 20, "{kept_by_profiler} bytes");
    // ...and the next profile does not show it. Nothing else ran in between;
    // a sample stands for 512 KiB, so allow two.
    let growth = profile::total(&second, 0) - profile::total(&first, 0);
    assert!(
        growth < 1 << 20,
        "the heap profile grew by {growth} bytes between two dumps; \
         the profiler kept {kept_by_profiler}:\n{:#?}",
        profile::top(&second, 0).iter().take(5).collect::<Vec<_>>()
    );
    // Later dumps reuse the cache: the profiler's count stays put.
    let third = profile::take_heap(HeapView::Raw).await.unwrap();
    let more = profile::profiler_retained_bytes() - kept_by_profiler;
    assert!(more.abs() < kept_by_profiler / 10, "{more} more bytes");
    drop(third);
    drop(kept);
}
// ANCHOR_END: profiler_memory
