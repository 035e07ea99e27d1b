//! Scenario 4 for real: the burst of small objects under glibc's malloc,
//! freed with and without an object still live above it, then
//! `malloc_trim(0)`.
//!
//! No `#[global_allocator]`, and the chapter's library (which links
//! jemalloc) is not linked: the allocator-neutral `burst` module is
//! included by path. `capture.sh` records its output for the book.

#[path = "../src/burst.rs"]
mod burst;

use burst::{
    BURST_OBJECT_SIZE, BURST_OBJECTS, burst_of_small_objects, glibc_fastbin_bytes, rss_bytes,
    trim_glibc_heap,
};

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Allocates and frees the burst on this thread and prints the RSS at each
/// step. With `keep_one_above`, one object allocated after the burst stays
/// live while the burst is freed.
fn run(keep_one_above: bool) {
    let rss = || rss_bytes().expect("RSS from /proc/self/smaps_rollup");
    println!(
        "{}:",
        if keep_one_above {
            "one object allocated after the burst stays live"
        } else {
            "nothing allocated after the burst"
        }
    );
    println!("  before            RSS {}", mib(rss()));
    let burst = burst_of_small_objects(BURST_OBJECTS);
    let above = keep_one_above.then(|| Box::new([1u8; BURST_OBJECT_SIZE]));
    println!("  burst allocated   RSS {}", mib(rss()));
    drop(burst);
    println!(
        "  burst freed       RSS {}   (in fastbins {})",
        mib(rss()),
        mib(glibc_fastbin_bytes() as u64)
    );
    let released = trim_glibc_heap();
    println!(
        "  malloc_trim(0)    RSS {}   (returned {})",
        mib(rss()),
        u8::from(released)
    );
    drop(above);
}

fn main() {
    println!("glibc malloc, {BURST_OBJECTS} objects of {BURST_OBJECT_SIZE} B\n");
    run(false);
    println!();
    run(true);
}
