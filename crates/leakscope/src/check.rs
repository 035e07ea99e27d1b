//! Leak checks as test assertions: one call at the end of a test body
//! that fails the test if a task outlived it or its heap did not return to
//! the baseline — goleak's `defer goleak.VerifyNone(t)`, for tokio, plus the
//! heap.
//!
//! [`LeakCheck`] combines [`TaskLeakCheck`] (alive tasks, after letting
//! the runtime settle) and [`LiveBytes`] (bytes allocated on this thread
//! and not freed). On a `current_thread` runtime every task runs on the
//! test's thread, so both numbers are exact and other tests running in
//! parallel cannot disturb them.
//!
//! ```
//! use leakscope::check::LeakCheck;
//!
//! #[global_allocator]
//! static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
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
//! Values the test body still holds when the check runs count as live:
//! drop them first (or compare before and after a warm-up run when the
//! code under test keeps a cache on purpose).

use std::fmt;
use std::future::Future;

use crate::heap::LiveBytes;
use crate::report::{format_bytes, format_bytes_delta};
use crate::tasks::{TaskLeakCheck, TaskReport};

/// Heap tolerance of a check started with [`LeakCheck::start`]: 1 KiB, for
/// the runtime's own bookkeeping (a timer entry, a grown run queue) that a
/// first use of the runtime may keep.
pub const DEFAULT_HEAP_TOLERANCE: i64 = 1024;

/// A task and heap leak check: start it first, assert at the end.
#[derive(Debug)]
pub struct LeakCheck {
    tasks: TaskLeakCheck,
    heap: LiveBytes,
    heap_tolerance: i64,
}

/// What a [`LeakCheck`] found: tasks before and after, and the bytes still
/// live on this thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeakReport {
    /// Alive tasks at the start and after settling.
    pub tasks: TaskReport,
    /// Bytes allocated on this thread since the start and not yet freed.
    pub live_bytes: i64,
    /// How many live bytes (either way) still count as clean.
    pub heap_tolerance: i64,
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
        write!(
            f,
            "{}; heap {} still live on this thread (tolerance {})",
            self.tasks,
            format_bytes_delta(self.live_bytes),
            format_bytes(self.heap_tolerance)
        )
    }
}

impl LeakCheck {
    /// Takes both baselines now, with [`DEFAULT_HEAP_TOLERANCE`].
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn start() -> Self {
        Self {
            tasks: TaskLeakCheck::start(),
            heap: LiveBytes::start(),
            heap_tolerance: DEFAULT_HEAP_TOLERANCE,
        }
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
        LeakReport {
            tasks,
            live_bytes: self.heap.live_bytes(),
            heap_tolerance: self.heap_tolerance,
        }
    }

    /// Panics with the [`LeakReport`] unless no task leaked and the heap is
    /// back to the baseline within the tolerance.
    pub async fn assert_no_leaks(&self) {
        let report = self.report().await;
        assert!(
            report.is_clean(),
            "leak check failed: {report}. Tasks still alive are running or blocked after the \
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
        assert!(
            report
                .to_string()
                .starts_with("1 task(s) leaked: 1 alive now, 0 at the baseline; heap +64."),
            "{report}"
        );
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    #[should_panic(expected = "leak check failed: 0 task(s) leaked")]
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
