//! The burst of small objects that scenarios 3 and 4 allocate and free,
//! and the view of the process from outside the allocator: RSS, and
//! glibc's `malloc_trim`.
//!
//! This module uses neither jemalloc nor leakscope, so the glibc test and
//! example include it by path instead of linking the library: the library
//! links jemalloc, whose unprefixed `malloc` would replace glibc's in any
//! binary that links it.

/// Small objects allocated in one burst and then freed (scenarios 3 and 4).
pub const BURST_OBJECTS: usize = 1_000_000;

/// Size of each of them: a small size class, so they share pages (slabs).
pub const BURST_OBJECT_SIZE: usize = 64;

/// One object of the burst: a fixed-size record, heap-allocated on its own.
pub type BurstObject = Box<[u8; BURST_OBJECT_SIZE]>;

/// Allocates `count` small objects at once, the way a burst of requests
/// does. Dropping the returned vector frees them all.
pub fn burst_of_small_objects(count: usize) -> Vec<BurstObject> {
    (0..count)
        .map(|index| Box::new([index as u8; BURST_OBJECT_SIZE]))
        .collect()
}

/// The process's resident set size in bytes: what `top`, `ps` and a
/// container's memory graph show.
///
/// Read from `/proc/self/smaps_rollup` (Linux), which the kernel computes
/// from the page tables when asked, so it is exact at the moment of reading.
pub fn rss_bytes() -> std::io::Result<u64> {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup")?;
    rollup
        .lines()
        .find_map(|line| line.strip_prefix("Rss:"))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| std::io::Error::other("no Rss line in /proc/self/smaps_rollup"))
}

// ANCHOR: malloc_trim
/// glibc's counterpart of a purge: consolidates the fastbins and returns
/// the free memory of every malloc arena to the operating system, including
/// free chunks below a live one and small chunks waiting unmerged in the
/// fastbins, which glibc's automatic trimming (it only cuts the top of the
/// heap, when a freed chunk merges into it) never reaches. Returns whether
/// any memory was released.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim_glibc_heap() -> bool {
    unsafe extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: malloc_trim takes no pointers and only walks glibc's own
    // free lists, under its own locks.
    unsafe { malloc_trim(0) == 1 }
}
// ANCHOR_END: malloc_trim

/// Bytes in free chunks that glibc keeps in its fastbins, over all arenas
/// (`mallinfo2().fsmblks`). Chunks of up to 128 bytes (glibc's default
/// `M_MXFAST` on 64-bit Linux) go there when freed, beyond the few a
/// thread's tcache holds. They are not merged with their neighbours or with
/// the top of the heap until something consolidates the heap (a large
/// allocation or free, or `malloc_trim`), so `free` cannot return their
/// pages to the operating system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn glibc_fastbin_bytes() -> usize {
    /// `struct mallinfo2` from glibc's `<malloc.h>` (glibc 2.33 and later).
    #[repr(C)]
    struct MallInfo2 {
        arena: usize,
        ordblks: usize,
        smblks: usize,
        hblks: usize,
        hblkhd: usize,
        usmblks: usize,
        fsmblks: usize,
        uordblks: usize,
        fordblks: usize,
        keepcost: usize,
    }
    unsafe extern "C" {
        fn mallinfo2() -> MallInfo2;
    }
    // SAFETY: mallinfo2 takes no arguments and returns a plain struct of
    // `size_t`s, read under glibc's own arena locks.
    unsafe { mallinfo2() }.fsmblks
}
