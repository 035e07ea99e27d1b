//! The glibc-arena workload, allocator-neutral: worker threads that each
//! serve a request in turn, allocating a burst of small objects, keeping
//! one small result and freeing the rest.
//!
//! glibc gives each thread its own malloc arena (up to 8 per core). A
//! request's burst is freed into the arena of the thread that served it,
//! below the small result allocated after it, so glibc cannot trim it; the
//! next request on *another* thread cannot reuse it. Every worker ends up
//! holding one burst. With `MALLOC_ARENA_MAX=1` they share one arena and
//! reuse one burst's memory.
//!
//! This file uses neither jemalloc nor leakscope: the `ch10-arenas`
//! binary includes it by path, so the process runs on glibc's malloc
//! (leakscope links jemalloc, whose unprefixed `malloc` would replace
//! glibc's in any binary that links it). It counts its own live bytes with
//! [`CountingSystem`] and reports in the Prometheus text leakscope reads.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Worker threads, all alive at once (a thread pool).
pub const WORKERS: usize = 8;

/// Small objects a request allocates and frees: 32 768 × 128 B = 4 MiB.
pub const BURST_OBJECTS: usize = 32_768;

/// Size of each (a small size class, as request parsing produces).
pub const BURST_OBJECT_SIZE: usize = 128;

/// Rounds of requests: every worker serves one request per round.
pub const ROUNDS: usize = 2;

/// The system allocator, counting live bytes, their peak and the total
/// allocated. (leakscope has a counting allocator; linking leakscope would
/// link jemalloc, which this workload must not.)
#[derive(Debug)]
pub struct CountingSystem;

static LIVE: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);
static TOTAL: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for CountingSystem {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            let size = layout.size() as u64;
            TOTAL.fetch_add(size, Ordering::Relaxed);
            let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(pointer, layout) };
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
    }
}

// ANCHOR: request
/// One request: a burst of small objects, one small result kept, the rest
/// freed. The result is allocated after the burst, so it sits above it.
fn serve_request(results: &mut Vec<Vec<u8>>) {
    let burst: Vec<Box<[u8; BURST_OBJECT_SIZE]>> = (0..BURST_OBJECTS)
        .map(|index| Box::new([index as u8; BURST_OBJECT_SIZE]))
        .collect();
    results.push(vec![burst[0][0]; 64]);
    drop(burst);
}
// ANCHOR_END: request

/// A pool of [`WORKERS`] threads; [`Pool::serve_on`] runs one request on
/// one of them and waits for it.
#[derive(Debug)]
pub struct Pool {
    senders: Vec<mpsc::Sender<mpsc::Sender<()>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts the workers. Each allocates once at start, so each is bound
    /// to its arena before the first request.
    pub fn start() -> Self {
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        for _ in 0..WORKERS {
            let (sender, requests) = mpsc::channel::<mpsc::Sender<()>>();
            senders.push(sender);
            threads.push(std::thread::spawn(move || {
                let mut results = Vec::with_capacity(ROUNDS);
                for done in requests {
                    serve_request(&mut results);
                    let _ = done.send(());
                }
            }));
        }
        Self { senders, threads }
    }

    /// Serves one request on worker `worker` and waits until it is done.
    pub fn serve_on(&self, worker: usize) {
        let (done, finished) = mpsc::channel();
        self.senders[worker % WORKERS]
            .send(done)
            .expect("the worker is running");
        finished.recv().expect("the worker answers");
    }

    /// Stops the workers and waits for them.
    pub fn stop(self) {
        drop(self.senders);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// The process's signals as Prometheus text, under leakscope's names: the
/// counting allocator's, and glibc's `mallinfo2` and arena count.
pub fn metrics(work_done: u64) -> String {
    let mut text = String::new();
    let mut gauge = |name: &str, value: u64| {
        let _ = writeln!(text, "{name} {value}");
    };
    gauge("leakscope_live_bytes", LIVE.load(Ordering::Relaxed));
    gauge("leakscope_peak_live_bytes", PEAK.load(Ordering::Relaxed));
    gauge(
        "leakscope_allocated_bytes_total",
        TOTAL.load(Ordering::Relaxed),
    );
    gauge("work_done_total", work_done);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads glibc's counters.
        let info = unsafe { libc::mallinfo2() };
        gauge(
            "glibc_malloc_in_use_bytes",
            (info.uordblks + info.hblkhd) as u64,
        );
        gauge("glibc_malloc_free_bytes", info.fordblks as u64);
        if let Some(arenas) = glibc_arenas() {
            gauge("glibc_malloc_arenas", arenas);
        }
    }
    text
}

/// Counts the `<heap nr=` elements of `malloc_info`'s XML: one per arena.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn glibc_arenas() -> Option<u64> {
    let mut buffer: *mut libc::c_char = std::ptr::null_mut();
    let mut length: libc::size_t = 0;
    // SAFETY: open_memstream writes the buffer pointer and length it is
    // given; the stream is closed before they are read, and the buffer is
    // freed with `free`, as open_memstream requires.
    unsafe {
        let stream = libc::open_memstream(&mut buffer, &mut length);
        if stream.is_null() {
            return None;
        }
        let status = libc::malloc_info(0, stream);
        libc::fclose(stream);
        if buffer.is_null() {
            return None;
        }
        let xml = std::slice::from_raw_parts(buffer as *const u8, length);
        let arenas = String::from_utf8_lossy(xml).matches("<heap nr=").count() as u64;
        libc::free(buffer.cast());
        (status == 0).then_some(arenas)
    }
}
