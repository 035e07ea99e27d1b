//! Heap measurements: exact live bytes for the code under test, and the
//! allocator's own statistics.
//!
//! Two questions come up when memory grows:
//!
//! * *Did this piece of code leave memory behind?* [`LiveBytes`] answers
//!   exactly, for the current thread: bytes this thread allocated since the
//!   scope started, minus bytes it freed. Other threads (say, tests running
//!   in parallel) do not disturb it, so a test on a `current_thread` tokio
//!   runtime can assert on it without tolerance for noise.
//! * *How big is the heap right now, and how much of it is really in use?*
//!   `HeapStats::read` (feature `jemalloc`) answers with jemalloc's own
//!   statistics (allocated, active, resident, mapped, retained, metadata).
//!
//! [`LiveBytes`] reads leakscope's [counting allocator](crate::alloc) when it
//! is the global allocator (over any allocator), or else jemalloc's
//! per-thread counters (feature `jemalloc`, with tikv-jemallocator as the
//! global allocator). With neither it does not report 0 B: it fails, and the
//! message is the line to add ([`HeapError::Blind`]). [`source`] tells which
//! one it reads.
//!
//! ```
//! use leakscope::heap::LiveBytes;
//!
//! #[global_allocator]
//! static ALLOC: leakscope::alloc::CountingAlloc = leakscope::alloc::CountingAlloc::system();
//!
//! let scope = LiveBytes::start();
//! let kept = vec![0u8; 4096];
//! assert_eq!(scope.live_bytes(), 4096);
//! drop(kept);
//! assert_eq!(scope.live_bytes(), 0);
//! ```
//!
//! The counting allocator counts requested sizes; jemalloc counts *usable*
//! sizes: a 1000-byte allocation lands in the 1024-byte size class and
//! counts as 1024 there. Claims about "exactly N bytes" read through jemalloc
//! should use sizes that are size classes already (powers of two up to 4 KiB,
//! multiples of 4 KiB above).

use std::fmt;
use std::thread::ThreadId;

use crate::alloc;

#[cfg(feature = "jemalloc")]
pub use jemalloc_stats::{Error, jemalloc_is_global_allocator};

/// Why leakscope could not measure the heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeapError {
    /// Neither leakscope's counting allocator nor jemalloc is the global
    /// allocator: every reading would be 0 B whatever the code does.
    Blind,
    /// A per-thread scope was read on another thread than the one that
    /// started it: the difference of two threads' counters means nothing.
    WrongThread {
        /// The thread that started the scope.
        started_on: ThreadId,
        /// The thread that read it.
        read_on: ThreadId,
    },
    /// The calling thread has no counters of its own (more threads alive
    /// than the counting allocator has slots).
    NoThreadCounters,
}

impl fmt::Display for HeapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeapError::Blind => write!(
                f,
                "leakscope cannot see the heap: neither its counting allocator nor jemalloc is \
                 the global allocator, so every reading would be 0 B. Add this line to main.rs \
                 or to the test file: {}",
                alloc::INSTALL_LINE
            ),
            HeapError::WrongThread {
                started_on,
                read_on,
            } => write!(
                f,
                "a per-thread heap scope started on {started_on:?} was read on {read_on:?}: \
                 per-thread counters of two threads cannot be subtracted. On a multi-thread \
                 runtime use process-wide counters (leakscope::check::LeakCheck::process_wide, \
                 in a test file of its own), or run the code on a current_thread runtime"
            ),
            HeapError::NoThreadCounters => write!(f, "{}", alloc::NotCounting::NoThreadSlot),
        }
    }
}

impl std::error::Error for HeapError {}

/// Where leakscope reads live bytes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeapSource {
    /// [`alloc::CountingAlloc`] is the global allocator: requested sizes.
    CountingAllocator,
    /// jemalloc is the global allocator: its per-thread counters, usable sizes.
    Jemalloc,
}

/// Which counters [`LiveBytes`] reads in this process, or [`HeapError::Blind`].
pub fn source() -> Result<HeapSource, HeapError> {
    if alloc::is_installed() {
        return Ok(HeapSource::CountingAllocator);
    }
    #[cfg(feature = "jemalloc")]
    if jemalloc_is_global_allocator() {
        return Ok(HeapSource::Jemalloc);
    }
    Err(HeapError::Blind)
}

// (allocated, freed) on this thread from `source`, frees included.
fn thread_totals(source: HeapSource) -> Result<(u64, u64), HeapError> {
    match source {
        HeapSource::CountingAllocator => {
            let counters = alloc::thread_counters().map_err(|_| HeapError::NoThreadCounters)?;
            let allocated = counters.total_allocated_bytes;
            Ok((allocated, (allocated as i64 - counters.live_bytes) as u64))
        }
        #[cfg(feature = "jemalloc")]
        HeapSource::Jemalloc => Ok(jemalloc_stats::thread_totals()),
        #[cfg(not(feature = "jemalloc"))]
        HeapSource::Jemalloc => Err(HeapError::Blind),
    }
}

/// A snapshot of jemalloc's process-wide statistics, in bytes
/// (`HeapStats::read`, feature `jemalloc`; all zero without it).
///
/// `allocated ≤ active ≤ resident` always holds; `mapped` and `retained` are
/// about address space and are not ordered with them.
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

#[cfg(feature = "jemalloc")]
mod jemalloc_stats {
    use std::cell::OnceCell;
    use std::sync::OnceLock;

    use tikv_jemalloc_ctl::{epoch, epoch_mib, stats, thread};

    use super::HeapStats;

    /// The error jemalloc's control interface returns (for example when the
    /// statistics were compiled out).
    pub type Error = tikv_jemalloc_ctl::Error;

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

    /// This thread's (allocated, freed) bytes from jemalloc, (0, 0) without it.
    pub(super) fn thread_totals() -> (u64, u64) {
        THREAD_COUNTERS.with(|cell| match cell.get_or_init(lookup_thread_counters) {
            Some((allocated, deallocated)) => (allocated.get(), deallocated.get()),
            None => (0, 0),
        })
    }

    /// Whether jemalloc is the global allocator of this process.
    ///
    /// Allocates and frees 4 KiB and looks for it in this thread's jemalloc
    /// counter. Useful for a clear error instead of readings that are all zero.
    pub fn jemalloc_is_global_allocator() -> bool {
        static SEEN: OnceLock<bool> = OnceLock::new();
        *SEEN.get_or_init(|| {
            let (before, _) = thread_totals();
            let probe = std::hint::black_box(vec![1u8; 4096]);
            let (after, _) = thread_totals();
            drop(probe);
            after - before >= 4096
        })
    }
}

/// Bytes this thread has allocated since it started, frees not subtracted.
///
/// [`LiveBytes`] answers "what is still live"; churn — a buffer allocated and
/// freed on every request — leaves nothing live, so counting it takes the
/// allocation total: read this before and after, and subtract. Reading it
/// allocates nothing.
///
/// # Panics
///
/// With [`HeapError::Blind`]'s message when leakscope cannot see the heap.
pub fn thread_allocated_bytes() -> u64 {
    match source().and_then(thread_totals) {
        Ok((allocated, _)) => allocated,
        Err(error) => panic!("{error}"),
    }
}

/// Counts the bytes allocated on the current thread since [`LiveBytes::start`]
/// that have not been freed on it since.
///
/// Exact, and immune to other threads. On a tokio `current_thread` runtime
/// every task runs on the calling thread, so a scope around a scenario sees
/// all the memory its tasks keep alive. Read on another thread, it fails
/// ([`HeapError::WrongThread`]) rather than subtract unrelated counters.
///
/// Memory allocated before the scope and freed inside it counts as negative;
/// memory allocated in the scope but freed on another thread stays counted.
#[derive(Debug, Clone, Copy)]
pub struct LiveBytes {
    source: HeapSource,
    thread: ThreadId,
    baseline: i64,
}

impl LiveBytes {
    /// Starts counting from the current thread's present state.
    ///
    /// # Panics
    ///
    /// When leakscope cannot see the heap, with the line of code to add.
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|error| panic!("{error}"))
    }

    /// Starts counting, or says why it cannot.
    pub fn try_start() -> Result<Self, HeapError> {
        let source = source()?;
        let (allocated, freed) = thread_totals(source)?;
        Ok(Self {
            source,
            thread: std::thread::current().id(),
            baseline: allocated as i64 - freed as i64,
        })
    }

    /// Bytes allocated on this thread since `start` and not yet freed.
    ///
    /// # Panics
    ///
    /// On another thread than the one that started the scope.
    pub fn live_bytes(&self) -> i64 {
        self.try_live_bytes()
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// Bytes allocated on this thread since `start` and not yet freed, or
    /// [`HeapError::WrongThread`].
    pub fn try_live_bytes(&self) -> Result<i64, HeapError> {
        let read_on = std::thread::current().id();
        if read_on != self.thread {
            return Err(HeapError::WrongThread {
                started_on: self.thread,
                read_on,
            });
        }
        let (allocated, freed) = thread_totals(self.source)?;
        Ok(allocated as i64 - freed as i64 - self.baseline)
    }

    /// Which counters this scope reads.
    pub fn source(&self) -> HeapSource {
        self.source
    }
}

// The library's unit tests run with jemalloc as the global allocator when the
// feature is on (lib.rs), so these see jemalloc's usable sizes.
#[cfg(all(test, feature = "jemalloc"))]
mod tests {
    use super::*;

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

#[cfg(test)]
mod scope_tests {
    use super::*;

    #[test]
    fn a_scope_read_on_another_thread_says_so() {
        let scope = LiveBytes::start();
        let error = std::thread::spawn(move || scope.try_live_bytes())
            .join()
            .unwrap()
            .unwrap_err();
        assert!(matches!(error, HeapError::WrongThread { .. }), "{error}");
        assert!(
            error.to_string().contains("cannot be subtracted"),
            "{error}"
        );
        // On the thread that started it the scope reads fine.
        assert!(scope.try_live_bytes().is_ok());
    }

    #[test]
    #[should_panic(expected = "per-thread counters of two threads cannot be subtracted")]
    fn live_bytes_panics_on_another_thread() {
        let scope = LiveBytes::start();
        let result = std::thread::spawn(move || scope.live_bytes()).join();
        std::panic::resume_unwind(result.unwrap_err());
    }
}
