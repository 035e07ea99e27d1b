//! A counting global allocator: exact live bytes and allocations for any
//! allocator, process-wide and per thread, cheap to read.
//!
//! Wrap whatever allocator the program already uses — the system allocator,
//! tikv-jemallocator, mimalloc — in [`CountingAlloc`] and make it the global
//! allocator. One line in `main.rs` or in a test file:
//!
//! ```
//! #[global_allocator]
//! static ALLOC: leakscope::alloc::CountingAlloc = leakscope::alloc::CountingAlloc::system();
//!
//! let before = leakscope::alloc::process_counters().expect("installed above");
//! let kept = vec![0u8; 1 << 20];
//! let after = leakscope::alloc::process_counters().unwrap();
//! // Other threads may allocate meanwhile; this thread's view is exact.
//! assert!(after.total_allocated_bytes - before.total_allocated_bytes >= 1 << 20);
//!
//! let scope = leakscope::alloc::thread_counters().unwrap();
//! let more = vec![0u8; 4096];
//! let now = leakscope::alloc::thread_counters().unwrap();
//! assert_eq!(now.live_bytes - scope.live_bytes, 4096);
//! assert_eq!(now.live_allocations - scope.live_allocations, 1);
//! # drop((kept, more));
//! ```
//!
//! With jemalloc underneath: `CountingAlloc::new(tikv_jemallocator::Jemalloc)`;
//! with mimalloc: `CountingAlloc::new(mimalloc::MiMalloc)`.
//!
//! # What it counts
//!
//! Requested sizes (`Layout::size()`), not the allocator's size classes: a
//! 1000-byte `Vec` counts as 1000 bytes here and as 1024 in jemalloc's own
//! statistics. `realloc` counts as the free of the old block and the
//! allocation of the new one.
//!
//! * [`process_counters`] — the whole process: live bytes, live allocations,
//!   totals allocated, and the peak of live bytes.
//! * [`thread_counters`] — what the calling thread allocated and freed since
//!   it started. Memory freed on another thread than the one that
//!   allocated it shows up as a free on the freeing thread, so a single
//!   thread's live bytes can go negative; differences between two readings
//!   on the same thread are exact.
//!
//! # When to use which
//!
//! Per-thread counters are immune to other threads: on a tokio
//! `current_thread` runtime every task runs on the test's thread, so a test
//! can assert exact numbers while other tests run in parallel in the same
//! process ([`heap::LiveBytes`](crate::heap::LiveBytes) does this). On a
//! multi-thread runtime a task's memory is allocated and freed on whichever
//! worker runs it, so only process-wide counters mean anything — and they
//! are exact only when nothing else runs in the process: put such a test in
//! a test file of its own (one file is one process) with a single `#[test]`
//! or `harness = false`.
//!
//! # Cost
//!
//! Each thread owns one of [`SLOTS`] cache-line-sized counter slots, so
//! threads never write to the same cache line and an allocation costs a few
//! plain loads and stores, no atomic read-modify-write. A slot is handed to a
//! new thread when its owner exits. Beyond [`SLOTS`] threads alive at once,
//! the extra threads share one slot with atomic additions: still exact,
//! slower. Reading sums the slots ever used, which is cheap in a process with
//! tens of threads. The chapter 4 bench compares both costs with Go's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

/// Counter slots, one per thread alive at once; threads beyond this share
/// one more slot with atomic additions.
pub const SLOTS: usize = 256;

/// The process-wide peak is tracked in steps of this many bytes per thread:
/// a thread folds its change in live bytes into the process total once it
/// exceeds this, so [`Counters::peak_live_bytes`] may miss a peak by up to
/// this much per thread (and is exact for single-threaded programs up to it).
pub const PEAK_STEP: i64 = 64 * 1024;

/// A global allocator that counts what it hands out and takes back, then
/// forwards to the allocator it wraps.
///
/// ```
/// use leakscope::alloc::CountingAlloc;
///
/// // Over the system allocator:
/// #[global_allocator]
/// static ALLOC: CountingAlloc = CountingAlloc::system();
/// // Over another allocator: CountingAlloc::new(tikv_jemallocator::Jemalloc)
/// # fn main() {}
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingAlloc<A = System> {
    inner: A,
}

impl CountingAlloc<System> {
    /// Counts over the system allocator (`malloc` on Linux).
    pub const fn system() -> Self {
        Self { inner: System }
    }
}

impl<A> CountingAlloc<A> {
    /// Counts over `inner`, e.g. `tikv_jemallocator::Jemalloc` or
    /// `mimalloc::MiMalloc`.
    pub const fn new(inner: A) -> Self {
        Self { inner }
    }
}

// SAFETY: every call is forwarded unchanged to `inner`, which upholds the
// `GlobalAlloc` contract; counting touches only this module's statics and
// thread-locals and never allocates.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAlloc<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let ptr = unsafe { self.inner.alloc(layout) };
        if !ptr.is_null() {
            record_alloc(layout.size());
        }
        ptr
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let ptr = unsafe { self.inner.alloc_zeroed(layout) };
        if !ptr.is_null() {
            record_alloc(layout.size());
        }
        ptr
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.inner.dealloc(ptr, layout) };
        record_free(layout.size());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let new_ptr = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if !new_ptr.is_null() {
            record_free(layout.size());
            record_alloc(new_size);
        }
        new_ptr
    }
}

/// Allocation counters, in bytes and allocations (requested sizes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Counters {
    /// Bytes allocated and not yet freed.
    pub live_bytes: i64,
    /// Allocations not yet freed.
    pub live_allocations: i64,
    /// Bytes allocated in all, frees not subtracted.
    pub total_allocated_bytes: u64,
    /// Allocations made in all, frees not subtracted.
    pub total_allocations: u64,
    /// The highest `live_bytes` seen (see [`PEAK_STEP`] for its precision).
    /// Process-wide counters only; per-thread counters report the thread's own
    /// exact peak since it started.
    pub peak_live_bytes: i64,
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::report::format_bytes;
        write!(
            f,
            "{} live in {} allocations (peak {}; {} allocated in {} allocations in all)",
            format_bytes(self.live_bytes),
            self.live_allocations,
            format_bytes(self.peak_live_bytes),
            format_bytes(self.total_allocated_bytes as i64),
            self.total_allocations
        )
    }
}

// One thread's counters. The owning thread is the only writer, so it updates
// with a plain load and store; readers on other threads sum with loads.
#[repr(align(128))] // two cache lines: adjacent-line prefetch shares pairs
struct Slot {
    owned: AtomicBool,
    allocated_bytes: AtomicU64,
    freed_bytes: AtomicU64,
    allocations: AtomicU64,
    frees: AtomicU64,
}

impl Slot {
    const fn new() -> Self {
        Self {
            owned: AtomicBool::new(false),
            allocated_bytes: AtomicU64::new(0),
            freed_bytes: AtomicU64::new(0),
            allocations: AtomicU64::new(0),
            frees: AtomicU64::new(0),
        }
    }
}

#[inline]
fn add_owned(counter: &AtomicU64, n: u64) {
    // Single writer: no read-modify-write needed, and none is paid for.
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

static SLOT_TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];
// Threads that found no free slot (or allocate while their slot is being
// claimed or after it was released) share this one, with atomic additions.
static SHARED_SLOT: Slot = Slot::new();
// Slots 0..SLOTS_USED have had an owner at some point: readers sum those.
static SLOTS_USED: AtomicUsize = AtomicUsize::new(0);
// Whether any allocation went through a CountingAlloc.
static INSTALLED: AtomicBool = AtomicBool::new(false);
// Process live bytes as folded in by threads in PEAK_STEP steps, and its peak.
static FOLDED_LIVE: AtomicI64 = AtomicI64::new(0);
static PEAK_LIVE: AtomicI64 = AtomicI64::new(0);

const UNCLAIMED: usize = usize::MAX;
const CLAIMING: usize = usize::MAX - 1;
const SHARED: usize = usize::MAX - 2;

// What a thread keeps about itself. Const-initialised with no destructor, so
// it can be read at any point of a thread's life, from inside the allocator.
struct Local {
    // The slot index, or one of the states above.
    slot: Cell<usize>,
    // The slot's counters when this thread claimed it (a slot keeps counting
    // across owners, so the process sum never loses anything).
    base: Cell<[u64; 4]>,
    // Live-byte change not yet folded into FOLDED_LIVE.
    unfolded: Cell<i64>,
    // This thread's own live bytes and their peak.
    live: Cell<i64>,
    peak: Cell<i64>,
}

thread_local! {
    static LOCAL: Local = const {
        Local {
            slot: Cell::new(UNCLAIMED),
            base: Cell::new([0; 4]),
            unfolded: Cell::new(0),
            live: Cell::new(0),
            peak: Cell::new(0),
        }
    };
    // Dropped when the thread exits: hands the slot to the next thread.
    static SLOT_RELEASE: SlotRelease = const { SlotRelease };
}

struct SlotRelease;

impl Drop for SlotRelease {
    fn drop(&mut self) {
        let _ = LOCAL.try_with(|local| {
            let slot = local.slot.get();
            // Allocations made after this (by later thread-local destructors)
            // go to the shared slot.
            local.slot.set(SHARED);
            if slot < SLOTS {
                SLOT_TABLE[slot].owned.store(false, Ordering::Release);
            }
        });
    }
}

enum Target {
    Owned(&'static Slot),
    Shared,
}

#[inline]
fn current_target(local: &Local) -> Target {
    match local.slot.get() {
        index if index < SLOTS => Target::Owned(&SLOT_TABLE[index]),
        UNCLAIMED => claim_slot(local),
        _ => Target::Shared,
    }
}

#[cold]
fn claim_slot(local: &Local) -> Target {
    local.slot.set(CLAIMING);
    INSTALLED.store(true, Ordering::Relaxed);
    for (index, slot) in SLOT_TABLE.iter().enumerate() {
        if slot.owned.load(Ordering::Relaxed)
            || slot
                .owned
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            continue;
        }
        SLOTS_USED.fetch_max(index + 1, Ordering::Relaxed);
        local.base.set([
            slot.allocated_bytes.load(Ordering::Relaxed),
            slot.freed_bytes.load(Ordering::Relaxed),
            slot.allocations.load(Ordering::Relaxed),
            slot.frees.load(Ordering::Relaxed),
        ]);
        local.slot.set(index);
        // Registering the destructor may itself allocate; such a nested
        // allocation finds the slot claimed and counts in it.
        if SLOT_RELEASE.try_with(|_| ()).is_err() {
            // The thread is already exiting: give the slot straight back.
            local.slot.set(SHARED);
            slot.owned.store(false, Ordering::Release);
            return Target::Shared;
        }
        return Target::Owned(slot);
    }
    local.slot.set(SHARED);
    Target::Shared
}

#[inline]
fn record_alloc(size: usize) {
    let size = size as u64;
    let counted = LOCAL.try_with(|local| {
        match current_target(local) {
            Target::Owned(slot) => {
                add_owned(&slot.allocated_bytes, size);
                add_owned(&slot.allocations, 1);
            }
            Target::Shared => add_shared_alloc(size),
        }
        track_live(local, size as i64);
    });
    if counted.is_err() {
        add_shared_alloc(size);
    }
}

#[inline]
fn record_free(size: usize) {
    let size = size as u64;
    let counted = LOCAL.try_with(|local| {
        match current_target(local) {
            Target::Owned(slot) => {
                add_owned(&slot.freed_bytes, size);
                add_owned(&slot.frees, 1);
            }
            Target::Shared => add_shared_free(size),
        }
        track_live(local, -(size as i64));
    });
    if counted.is_err() {
        add_shared_free(size);
    }
}

fn add_shared_alloc(size: u64) {
    SHARED_SLOT
        .allocated_bytes
        .fetch_add(size, Ordering::Relaxed);
    SHARED_SLOT.allocations.fetch_add(1, Ordering::Relaxed);
}

fn add_shared_free(size: u64) {
    SHARED_SLOT.freed_bytes.fetch_add(size, Ordering::Relaxed);
    SHARED_SLOT.frees.fetch_add(1, Ordering::Relaxed);
}

// This thread's live bytes and peak, and the process peak in PEAK_STEP steps.
#[inline]
fn track_live(local: &Local, change: i64) {
    let live = local.live.get() + change;
    local.live.set(live);
    if live > local.peak.get() {
        local.peak.set(live);
    }
    let pending = local.unfolded.get() + change;
    if pending.abs() < PEAK_STEP {
        local.unfolded.set(pending);
        return;
    }
    local.unfolded.set(0);
    let process_live = FOLDED_LIVE.fetch_add(pending, Ordering::Relaxed) + pending;
    if pending > 0 {
        PEAK_LIVE.fetch_max(process_live, Ordering::Relaxed);
    }
}

/// Whether a [`CountingAlloc`] is the global allocator (more exactly: whether
/// any allocation went through one). The first call allocates one byte to
/// find out; the answer is then remembered.
pub fn is_installed() -> bool {
    static PROBED: AtomicBool = AtomicBool::new(false);
    if !INSTALLED.load(Ordering::Relaxed) && !PROBED.swap(true, Ordering::Relaxed) {
        drop(std::hint::black_box(Box::new(0u8)));
    }
    INSTALLED.load(Ordering::Relaxed)
}

/// Why counters could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotCounting {
    /// No [`CountingAlloc`] is the global allocator.
    NotInstalled,
    /// This thread shares the overflow slot (more than [`SLOTS`] threads were
    /// alive when it started), so it has no counters of its own.
    NoThreadSlot,
}

/// The line of code that installs the counting allocator, for error messages.
pub const INSTALL_LINE: &str = "#[global_allocator] static ALLOC: leakscope::alloc::CountingAlloc = leakscope::alloc::CountingAlloc::system();";

impl fmt::Display for NotCounting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotCounting::NotInstalled => write!(
                f,
                "leakscope's counting allocator is not the global allocator: add this line to \
                 main.rs or to the test file: {INSTALL_LINE}"
            ),
            NotCounting::NoThreadSlot => write!(
                f,
                "this thread has no counters of its own (more than {SLOTS} threads were alive \
                 when it started); use process_counters() instead"
            ),
        }
    }
}

impl std::error::Error for NotCounting {}

/// The whole process's counters.
///
/// Exact when no other thread allocates during the reading; otherwise each
/// counter is a value it had during the reading. Costs one load per counter
/// per thread slot used so far, and allocates nothing.
pub fn process_counters() -> Result<Counters, NotCounting> {
    if !is_installed() {
        return Err(NotCounting::NotInstalled);
    }
    let used = SLOTS_USED.load(Ordering::Relaxed);
    let mut sum = [0u64; 4];
    for slot in SLOT_TABLE[..used]
        .iter()
        .chain(std::iter::once(&SHARED_SLOT))
    {
        // Frees before allocations: a block allocated and freed between the
        // two loads then adds to both or to neither, never only to frees.
        sum[1] = sum[1].wrapping_add(slot.freed_bytes.load(Ordering::Relaxed));
        sum[3] = sum[3].wrapping_add(slot.frees.load(Ordering::Relaxed));
        sum[0] = sum[0].wrapping_add(slot.allocated_bytes.load(Ordering::Relaxed));
        sum[2] = sum[2].wrapping_add(slot.allocations.load(Ordering::Relaxed));
    }
    let live_bytes = sum[0].wrapping_sub(sum[1]) as i64;
    Ok(Counters {
        live_bytes,
        live_allocations: sum[2].wrapping_sub(sum[3]) as i64,
        total_allocated_bytes: sum[0],
        total_allocations: sum[2],
        peak_live_bytes: PEAK_LIVE.load(Ordering::Relaxed).max(live_bytes),
    })
}

/// The calling thread's counters since it started: exact, and undisturbed by
/// other threads. Allocates nothing.
pub fn thread_counters() -> Result<Counters, NotCounting> {
    if !is_installed() {
        return Err(NotCounting::NotInstalled);
    }
    LOCAL
        .try_with(|local| {
            let index = local.slot.get();
            if index >= SLOTS {
                return None;
            }
            let slot = &SLOT_TABLE[index];
            let base = local.base.get();
            let allocated = slot.allocated_bytes.load(Ordering::Relaxed) - base[0];
            let allocations = slot.allocations.load(Ordering::Relaxed) - base[2];
            let frees = slot.frees.load(Ordering::Relaxed) - base[3];
            let live_bytes = local.live.get();
            Some(Counters {
                live_bytes,
                live_allocations: allocations as i64 - frees as i64,
                total_allocated_bytes: allocated,
                total_allocations: allocations,
                peak_live_bytes: local.peak.get().max(live_bytes),
            })
        })
        .ok()
        .flatten()
        .ok_or(NotCounting::NoThreadSlot)
}
