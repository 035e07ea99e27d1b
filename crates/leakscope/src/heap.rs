//! Heap measurements from jemalloc: process-wide statistics and an exact
//! per-thread live-bytes counter.
//!
//! Two questions come up when memory grows:
//!
//! * *How big is the heap right now, and how much of it is really in use?*
//!   [`HeapStats::read`] answers with jemalloc's own statistics (allocated,
//!   active, resident, mapped, retained, metadata).
//! * *Did this piece of code leave memory behind?* [`LiveBytes`] answers
//!   exactly, for the current thread: bytes this thread allocated since the
//!   scope started, minus bytes it freed. Other threads (say, tests running
//!   in parallel) do not disturb it, so a test on a `current_thread` tokio
//!   runtime can assert on it without tolerance for noise.
//!
//! Both read jemalloc, so the binary (or test crate) must make jemalloc its
//! global allocator; the library never does that itself. Without it every
//! reading is zero: check with [`jemalloc_is_global_allocator`].
//!
//! ```
//! use leakscope::heap::{HeapStats, LiveBytes};
//!
//! #[global_allocator]
//! static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
//!
//! let scope = LiveBytes::start();
//! let kept = vec![0u8; 4096];
//! assert_eq!(scope.live_bytes(), 4096);
//! drop(kept);
//! assert_eq!(scope.live_bytes(), 0);
//!
//! let stats = HeapStats::read().expect("jemalloc statistics");
//! assert!(stats.resident >= stats.active && stats.active >= stats.allocated);
//! ```
//!
//! jemalloc counts *usable* sizes: a 1000-byte allocation lands in the
//! 1024-byte size class and counts as 1024. Claims about "at least N bytes"
//! are therefore safe; claims about "exactly N bytes" should use sizes that
//! are size classes already (powers of two up to 4 KiB, multiples of 4 KiB
//! above).

use std::cell::OnceCell;
use std::fmt;
use std::sync::OnceLock;

use tikv_jemalloc_ctl::{epoch, epoch_mib, stats, thread};

/// The error jemalloc's control interface returns (for example when the
/// statistics were compiled out).
pub type Error = tikv_jemalloc_ctl::Error;

/// A snapshot of jemalloc's process-wide statistics, in bytes.
///
/// From smallest to largest: `allocated ≤ active ≤ resident ≤ mapped`.
/// A leak shows up first in `allocated` (the program holds more); memory
/// the program freed but the allocator has not yet returned to the OS shows
/// up as `resident` staying high while `allocated` falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeapStats {
    /// Bytes the program holds in live allocations (usable sizes).
    pub allocated: u64,
    /// Bytes in active pages: `allocated` plus fragmentation inside them.
    pub active: u64,
    /// Bytes in physically resident pages the allocator maps (close to
    /// what RSS shows for the heap, including freed-but-not-purged pages).
    pub resident: u64,
    /// Bytes in active extents mapped by the allocator.
    pub mapped: u64,
    /// Bytes in virtual memory the allocator kept rather than unmapped.
    pub retained: u64,
    /// Bytes jemalloc uses for its own bookkeeping.
    pub metadata: u64,
}

struct StatsMibs {
    epoch: epoch_mib,
    allocated: stats::allocated_mib,
    active: stats::active_mib,
    resident: stats::resident_mib,
    mapped: stats::mapped_mib,
    retained: stats::retained_mib,
    metadata: stats::metadata_mib,
}

impl StatsMibs {
    fn lookup() -> Result<Self, Error> {
        Ok(Self {
            epoch: epoch::mib()?,
            allocated: stats::allocated::mib()?,
            active: stats::active::mib()?,
            resident: stats::resident::mib()?,
            mapped: stats::mapped::mib()?,
            retained: stats::retained::mib()?,
            metadata: stats::metadata::mib()?,
        })
    }
}

// Name lookups cost more than the reads themselves, so they are done once.
static STATS_MIBS: OnceLock<Result<StatsMibs, Error>> = OnceLock::new();

impl HeapStats {
    /// Reads a fresh snapshot: advances jemalloc's statistics epoch once,
    /// then reads each counter through a cached MIB.
    pub fn read() -> Result<Self, Error> {
        let mibs = STATS_MIBS
            .get_or_init(StatsMibs::lookup)
            .as_ref()
            .map_err(|error| *error)?;
        // jemalloc's totals are refreshed only when the epoch advances.
        mibs.epoch.advance()?;
        Ok(Self {
            allocated: mibs.allocated.read()? as u64,
            active: mibs.active.read()? as u64,
            resident: mibs.resident.read()? as u64,
            mapped: mibs.mapped.read()? as u64,
            retained: mibs.retained.read()? as u64,
            metadata: mibs.metadata.read()? as u64,
        })
    }
}

impl fmt::Display for HeapStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::report::format_bytes;
        write!(
            f,
            "allocated {}, active {}, resident {}, mapped {}, retained {}, metadata {}",
            format_bytes(self.allocated as i64),
            format_bytes(self.active as i64),
            format_bytes(self.resident as i64),
            format_bytes(self.mapped as i64),
            format_bytes(self.retained as i64),
            format_bytes(self.metadata as i64),
        )
    }
}

thread_local! {
    // Pointers to this thread's jemalloc counters, looked up once per thread.
    static THREAD_COUNTERS: OnceCell<Option<(thread::ThreadLocal<u64>, thread::ThreadLocal<u64>)>> =
        const { OnceCell::new() };
}

fn lookup_thread_counters() -> Option<(thread::ThreadLocal<u64>, thread::ThreadLocal<u64>)> {
    let allocated = thread::allocatedp::mib().ok()?.read().ok()?;
    let deallocated = thread::deallocatedp::mib().ok()?.read().ok()?;
    Some((allocated, deallocated))
}

/// Bytes this thread has allocated minus bytes it has freed, since the
/// thread started (usable sizes).
///
/// The absolute value means little (memory freed on another thread makes it
/// drift); differences between two readings on the same thread are exact.
/// Prefer [`LiveBytes`], which takes the difference for you.
pub fn thread_live_bytes() -> i64 {
    THREAD_COUNTERS.with(|cell| match cell.get_or_init(lookup_thread_counters) {
        Some((allocated, deallocated)) => allocated.get() as i64 - deallocated.get() as i64,
        None => 0,
    })
}

/// Bytes this thread has allocated since it started, frees not subtracted
/// (jemalloc's `thread.allocated`, usable sizes).
///
/// [`LiveBytes`] answers "what is still live"; churn — a buffer allocated and
/// freed on every request — leaves nothing live, so counting it takes the
/// allocation total: read this before and after, and subtract. Reading it
/// allocates nothing. Zero without jemalloc as the global allocator.
pub fn thread_allocated_bytes() -> u64 {
    THREAD_COUNTERS.with(|cell| match cell.get_or_init(lookup_thread_counters) {
        Some((allocated, _)) => allocated.get(),
        None => 0,
    })
}

/// Counts the bytes allocated on the current thread since [`LiveBytes::start`]
/// that have not been freed on it since.
///
/// Exact, and immune to other threads. On a tokio `current_thread` runtime
/// every task runs on the calling thread, so a scope around a scenario sees
/// all the memory its tasks keep alive.
///
/// Memory allocated before the scope and freed inside it counts as negative;
/// memory allocated in the scope but freed on another thread stays counted.
#[derive(Debug, Clone, Copy)]
pub struct LiveBytes {
    baseline: i64,
}

impl LiveBytes {
    /// Starts counting from the current thread's present state.
    pub fn start() -> Self {
        Self {
            baseline: thread_live_bytes(),
        }
    }

    /// Bytes allocated on this thread since `start` and not yet freed.
    pub fn live_bytes(&self) -> i64 {
        thread_live_bytes() - self.baseline
    }
}

/// Whether jemalloc is the global allocator of this process.
///
/// Allocates and frees 4 KiB and looks for it in this thread's jemalloc
/// counter. Useful for a clear error instead of readings that are all zero.
pub fn jemalloc_is_global_allocator() -> bool {
    let scope = LiveBytes::start();
    let probe = std::hint::black_box(vec![1u8; 4096]);
    let seen = scope.live_bytes() >= 4096;
    drop(probe);
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

    #[test]
    fn live_bytes_counts_what_is_kept_and_forgets_what_is_freed() {
        assert!(jemalloc_is_global_allocator());
        let scope = LiveBytes::start();
        let kept: Vec<Vec<u8>> = (0..100).map(|_| vec![0u8; 1024]).collect();
        // 100 buffers of 1 KiB plus the outer Vec's 100 × 24-byte headers
        // (2400 bytes, in jemalloc's 2560-byte size class).
        assert_eq!(scope.live_bytes(), 100 * 1024 + 2560);
        drop(kept);
        assert_eq!(scope.live_bytes(), 0);
    }

    #[test]
    fn churn_counts_in_allocated_bytes_but_not_in_live_bytes() {
        let live = LiveBytes::start();
        let allocated_before = thread_allocated_bytes();
        for _ in 0..10 {
            std::hint::black_box(vec![0u8; 4096]);
        }
        assert_eq!(thread_allocated_bytes() - allocated_before, 10 * 4096);
        assert_eq!(live.live_bytes(), 0);
    }

    #[test]
    fn size_classes_round_up() {
        let scope = LiveBytes::start();
        let odd = std::hint::black_box(vec![0u8; 1000]);
        assert_eq!(scope.live_bytes(), 1024);
        drop(odd);
    }

    #[test]
    fn other_threads_do_not_disturb_the_count() {
        let scope = LiveBytes::start();
        let noise = std::thread::spawn(|| std::hint::black_box(vec![0u8; 1 << 20]).len());
        assert_eq!(noise.join().unwrap(), 1 << 20);
        // The spawned thread's megabyte (and the thread's own bookkeeping,
        // allocated on the new thread) is not counted here; only the join
        // handle's small allocations on this thread may be.
        assert!(scope.live_bytes() < 1024, "{}", scope.live_bytes());
    }

    #[test]
    fn heap_stats_see_a_large_allocation() {
        let big = std::hint::black_box(vec![1u8; 64 << 20]);
        let during = HeapStats::read().unwrap();
        // Process-wide, so only what this test holds is certain: tests running
        // in parallel may free memory between two readings.
        assert!(during.allocated >= big.len() as u64);
        assert!(during.resident >= during.active);
        assert!(during.active >= during.allocated);
        drop(big);
    }
}
