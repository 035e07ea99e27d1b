//! Leak checks as test assertions: one call at the end of a test body
//! that fails the test if a task outlived it or its heap did not return to
//! the baseline — goleak's `defer goleak.VerifyNone(t)`, for tokio, plus the
//! heap.
//!
//! [`LeakCheck`] combines [`TaskLeakCheck`] (alive tasks, after letting
//! the runtime settle) and a heap scope. Which heap scope depends on the
//! runtime:
//!
//! * [`LeakCheck::start`] — on a `current_thread` runtime (what
//!   `#[tokio::test]` gives) every task runs on the test's thread, so the
//!   exact per-thread counter ([`LiveBytes`]) sees all the memory the code
//!   keeps, and other tests running in parallel cannot disturb it. Started
//!   on a multi-thread runtime, it panics and says what to use instead: the
//!   tasks allocate on other threads, where a per-thread counter is blind.
//! * [`LeakCheck::process_wide`] — any runtime: the counting allocator's
//!   process-wide live bytes. Exact only when nothing else in the process
//!   allocates meanwhile: put the test in a test file of its own (one file is
//!   one process) with a single test, or `harness = false`.
//!
//! ```
//! use leakscope::check::LeakCheck;
//!
//! #[global_allocator]
//! static ALLOC: leakscope::alloc::CountingAlloc = leakscope::alloc::CountingAlloc::system();
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let check = LeakCheck::start();
//!
//! let worker = tokio::spawn(async { vec![0u8; 1 << 20].len() });
//! assert_eq!(worker.await.unwrap(), 1 << 20);
//!
//! check.assert_no_leaks().await;
//! # });
//! ```
//!
//! A failing check says what leaked and how much:
//!
//! ```text
//! leak check failed: 1 task(s) leaked: 1 alive now, 0 at the baseline;
//! heap +64.0 KiB still live on this thread (tolerance 1.0 KiB)
//! ```
//!
//! Without a counting allocator or jemalloc as the global allocator, the
//! check panics at the start with the line to add; it never reports 0 B
//! because it could not see.
//!
//! # Checking a service, not a function
//!
//! Values the test body still holds when the check runs count as live, and a
//! service keeps state on purpose: a cache, a pool, a connection table.
//! Dropping the service state before the check makes a leaking service look
//! clean — its leak is in that state. For a service: warm it up (one round of
//! the workload), keep the state, start the check, run the same workload
//! again N times, and require that live bytes do not grow per round (a
//! per-round growth is a leak; a one-off is warm-up). The heap tolerance then
//! only absorbs the runtime's own bookkeeping.

use std::fmt;
use std::future::Future;

use tokio::runtime::{Handle, RuntimeFlavor};

use crate::alloc;
use crate::heap::LiveBytes;
use crate::report::{format_bytes, format_bytes_delta};
use crate::tasks::{TaskLeakCheck, TaskReport};

/// Heap tolerance of a check started with [`LeakCheck::start`]: 1 KiB, for
/// the runtime's own bookkeeping (a timer entry, a grown run queue) that a
/// first use of the runtime may keep.
pub const DEFAULT_HEAP_TOLERANCE: i64 = 1024;

/// Which bytes a [`LeakCheck`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeapScope {
    /// Bytes allocated on the test's thread and not freed (exact, immune to
    /// other threads; needs a `current_thread` runtime).
    ThisThread,
    /// Bytes live in the whole process (the counting allocator's
    /// process-wide counters).
    Process,
}

#[derive(Debug)]
enum HeapBaseline {
    Thread(LiveBytes),
    Process(i64),
}

/// A task and heap leak check: start it first, assert at the end.
#[derive(Debug)]
pub struct LeakCheck {
    tasks: TaskLeakCheck,
    heap: HeapBaseline,
    heap_tolerance: i64,
}

/// What a [`LeakCheck`] found: tasks before and after, and the bytes still
/// live.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeakReport {
    /// Alive tasks at the start and after settling.
    pub tasks: TaskReport,
    /// Bytes allocated since the start and not yet freed.
    pub live_bytes: i64,
    /// How many live bytes (either way) still count as clean.
    pub heap_tolerance: i64,
    /// Where `live_bytes` were counted.
    pub heap_scope: HeapScope,
}

impl LeakReport {
    /// Tasks alive now that were not alive at the start.
    pub fn leaked_tasks(&self) -> usize {
        self.tasks.leaked_tasks()
    }

    /// Whether the heap is further from the baseline than the tolerance.
    pub fn heap_leaked(&self) -> bool {
        self.live_bytes.abs() > self.heap_tolerance
    }

    /// No task leaked and the heap is back within the tolerance.
    pub fn is_clean(&self) -> bool {
        self.leaked_tasks() == 0 && !self.heap_leaked()
    }
}

impl fmt::Display for LeakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scope = match self.heap_scope {
            HeapScope::ThisThread => "on this thread",
            HeapScope::Process => "in this process",
        };
        // The task part may end with the leaked tasks' stacks: heap first.
        write!(
            f,
            "heap {} still live {scope} (tolerance {}); {}",
            format_bytes_delta(self.live_bytes),
            format_bytes(self.heap_tolerance),
            self.tasks,
        )
    }
}

impl LeakCheck {
    /// Takes both baselines now, with [`DEFAULT_HEAP_TOLERANCE`], counting
    /// the heap on this thread.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime; on a multi-thread runtime (use
    /// [`LeakCheck::process_wide`]); and when leakscope cannot see the heap,
    /// with the line of code to add.
    pub fn start() -> Self {
        let flavor = Handle::try_current()
            .expect("leakscope::check::LeakCheck must be started inside a tokio runtime")
            .runtime_flavor();
        assert!(
            flavor == RuntimeFlavor::CurrentThread,
            "LeakCheck::start counts the heap on this thread, but this is a multi-thread \
             runtime: its tasks allocate on other worker threads, where a per-thread counter \
             cannot see. Use a current_thread runtime (#[tokio::test] without flavor), or \
             LeakCheck::process_wide() in a test file of its own"
        );
        Self {
            tasks: TaskLeakCheck::start(),
            heap: HeapBaseline::Thread(LiveBytes::start()),
            heap_tolerance: DEFAULT_HEAP_TOLERANCE,
        }
    }

    /// Takes both baselines now, counting the heap of the whole process with
    /// the counting allocator: for multi-thread runtimes. Exact only while
    /// nothing else in the process allocates, so give the test a file of its
    /// own.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, and without [`alloc::CountingAlloc`] as the
    /// global allocator (with the line to add).
    pub fn process_wide() -> Self {
        let live = alloc::process_counters().unwrap_or_else(|error| panic!("{error}"));
        Self {
            tasks: TaskLeakCheck::start(),
            heap: HeapBaseline::Process(live.live_bytes),
            heap_tolerance: DEFAULT_HEAP_TOLERANCE,
        }
    }

    /// Compares tasks by identity where task dumps are available
    /// ([`TaskLeakCheck::ignoring_current`]): the failure message then says
    /// where each leaked task waits.
    pub async fn identify_tasks(mut self) -> Self {
        self.tasks = TaskLeakCheck::ignoring_current().await;
        self
    }

    /// Waits up to `budget` for tasks that are still finishing (see
    /// [`TaskLeakCheck::settle_budget`]).
    pub fn settle_budget(mut self, budget: std::time::Duration) -> Self {
        self.tasks = self.tasks.settle_budget(budget);
        self
    }

    /// Uses `bytes` as the heap tolerance instead (for code that keeps a
    /// known, bounded amount on purpose).
    pub fn heap_tolerance(mut self, bytes: i64) -> Self {
        self.heap_tolerance = bytes;
        self
    }

    /// Lets the runtime settle (finished and aborted tasks are released,
    /// and with them their memory), then measures.
    pub async fn report(&self) -> LeakReport {
        let tasks = self.tasks.settle().await;
        let (live_bytes, heap_scope) = match &self.heap {
            HeapBaseline::Thread(scope) => (scope.live_bytes(), HeapScope::ThisThread),
            HeapBaseline::Process(baseline) => {
                let now = alloc::process_counters()
                    .expect("checked at the start")
                    .live_bytes;
                (now - baseline, HeapScope::Process)
            }
        };
        LeakReport {
            tasks,
            live_bytes,
            heap_tolerance: self.heap_tolerance,
            heap_scope,
        }
    }

    /// Panics with the [`LeakReport`] unless no task leaked and the heap is
    /// back to the baseline within the tolerance.
    pub async fn assert_no_leaks(&self) {
        let report = self.report().await;
        assert!(
            report.is_clean(),
            "leak check failed: {report}\nTasks still alive are running or blocked after the \
             test body returned; live bytes are memory the body allocated and kept."
        );
    }
}

/// Runs `body` between a [`LeakCheck::start`] and its
/// [`assert_no_leaks`](LeakCheck::assert_no_leaks). The body returns
/// nothing, so whatever it allocated is either freed or leaked by the time
/// the check runs.
pub async fn assert_no_leaks_in<F: Future<Output = ()>>(body: F) {
    let check = LeakCheck::start();
    body.await;
    check.assert_no_leaks().await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn finished_work_is_clean() {
        let check = LeakCheck::start();
        let handles: Vec<_> = (0..10)
            .map(|_| tokio::spawn(async { vec![0u8; 4096].len() }))
            .collect();
        for handle in handles {
            assert_eq!(handle.await.unwrap(), 4096);
        }
        let report = check.report().await;
        assert!(report.is_clean(), "{report}");
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_task_holding_memory_is_reported_with_both_numbers() {
        let check = LeakCheck::start();
        let buffer = vec![7u8; 64 * 1024];
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                std::hint::black_box(&buffer);
            }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        let report = check.report().await;
        assert_eq!(report.leaked_tasks(), 1);
        assert!(report.live_bytes >= 64 * 1024, "{report}");
        assert!(report.heap_leaked() && !report.is_clean());
        assert!(report.to_string().starts_with("heap +64."), "{report}");
        assert!(
            report
                .to_string()
                .ends_with("on this thread (tolerance 1.0 KiB); 1 task(s) leaked: 1 alive now, 0 at the baseline"),
            "{report}"
        );
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    #[should_panic(expected = "0 task(s) leaked")]
    async fn kept_memory_alone_fails_the_check() {
        let check = LeakCheck::start();
        let kept = std::hint::black_box(vec![0u8; 8192]);
        check.assert_no_leaks().await; // panics: `kept` is still live
        drop(kept);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn tolerance_admits_a_known_amount() {
        let check = LeakCheck::start().heap_tolerance(16 * 1024);
        let kept = std::hint::black_box(vec![0u8; 8192]);
        check.assert_no_leaks().await;
        drop(kept);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    #[should_panic(expected = "1 task(s) leaked")]
    async fn wrapper_fails_on_a_leaked_task() {
        assert_no_leaks_in(async {
            tokio::spawn(std::future::pending::<()>());
        })
        .await;
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn wrapper_passes_on_cancelled_work() {
        assert_no_leaks_in(async {
            let worker = tokio::spawn(std::future::pending::<()>());
            worker.abort();
        })
        .await;
    }
}
