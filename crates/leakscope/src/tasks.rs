//! Counting tokio tasks, and checking that a piece of code left none behind.
//!
//! A task that never finishes is the async version of a goroutine leak: it
//! holds its future (and everything the future owns) forever. Go programs
//! catch these with `runtime.NumGoroutine()` and `goleak`; this module is
//! the tokio counterpart.
//!
//! * [`alive_tasks`] — how many tasks the current runtime holds, from tokio's
//!   stable runtime metrics (`RuntimeMetrics::num_alive_tasks`).
//! * [`TaskLeakCheck`] — take a baseline, run the code, let the runtime settle,
//!   then report (or assert) how many tasks outlived it.
//!
//! ```
//! use std::time::Duration;
//! use leakscope::tasks::TaskLeakCheck;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let check = TaskLeakCheck::start();
//! let worker = tokio::spawn(async {
//!     loop {
//!         tokio::time::sleep(Duration::from_secs(1)).await;
//!     }
//! });
//! assert_eq!(check.leaked_tasks().await, 1);
//!
//! worker.abort();
//! check.assert_no_leaks().await;
//! # });
//! ```
//!
//! Counts are exact on a `current_thread` runtime. On a multi-thread runtime
//! other workers may still be finishing tasks when the count is read; the
//! settling loop makes that unlikely but cannot rule it out.

use std::fmt;

use tokio::runtime::Handle;

/// How many times [`TaskLeakCheck`] yields to the scheduler, waiting for
/// finished or aborted tasks to be released, before it reports.
pub const SETTLE_ROUNDS: usize = 64;

/// Number of tasks alive in the current tokio runtime: spawned and not yet
/// completed (or completed but not yet released by the scheduler).
///
/// # Panics
///
/// Outside a tokio runtime, with a message saying so.
pub fn alive_tasks() -> usize {
    Handle::try_current()
        .expect("leakscope::tasks::alive_tasks must be called from inside a tokio runtime")
        .metrics()
        .num_alive_tasks()
}

/// A goleak-style check: remembers how many tasks were alive when it
/// started, and later tells how many more are alive after the runtime had a
/// chance to finish what was finishing.
#[derive(Debug)]
pub struct TaskLeakCheck {
    handle: Handle,
    baseline: usize,
}

/// The result of a [`TaskLeakCheck`]: what was alive before and after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskReport {
    /// Alive tasks when the check started.
    pub baseline: usize,
    /// Alive tasks after settling.
    pub alive: usize,
}

impl TaskReport {
    /// Tasks alive now that were not alive at the baseline.
    pub fn leaked_tasks(&self) -> usize {
        self.alive.saturating_sub(self.baseline)
    }
}

impl fmt::Display for TaskReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} task(s) leaked: {} alive now, {} at the baseline",
            self.leaked_tasks(),
            self.alive,
            self.baseline
        )
    }
}

impl TaskLeakCheck {
    /// Takes the baseline from the current runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn start() -> Self {
        let handle = Handle::try_current()
            .expect("leakscope::tasks::TaskLeakCheck must be started inside a tokio runtime");
        let baseline = handle.metrics().num_alive_tasks();
        Self { handle, baseline }
    }

    /// Alive tasks when the check started.
    pub fn baseline(&self) -> usize {
        self.baseline
    }

    /// Alive tasks right now, without settling.
    pub fn alive_now(&self) -> usize {
        self.handle.metrics().num_alive_tasks()
    }

    /// Yields to the scheduler (up to [`SETTLE_ROUNDS`] times) until no more
    /// tasks are alive than at the baseline, then reports.
    ///
    /// Yielding lets aborted tasks be cancelled and finished tasks be
    /// released; it does not advance time, so a task sleeping forever stays
    /// counted, as it should.
    pub async fn settle(&self) -> TaskReport {
        for _ in 0..SETTLE_ROUNDS {
            if self.alive_now() <= self.baseline {
                break;
            }
            tokio::task::yield_now().await;
        }
        TaskReport {
            baseline: self.baseline,
            alive: self.alive_now(),
        }
    }

    /// Tasks alive beyond the baseline after settling.
    pub async fn leaked_tasks(&self) -> usize {
        self.settle().await.leaked_tasks()
    }

    /// Panics, saying how many tasks leaked, unless the runtime is back to
    /// its baseline after settling.
    pub async fn assert_no_leaks(&self) {
        let report = self.settle().await;
        assert!(
            report.leaked_tasks() == 0,
            "task leak: {report}. A spawned task is still running (or blocked) after the \
             code under test returned: cancel it, abort it, or await it."
        );
    }
}

/// The stack of every task alive in the current runtime, one string each:
/// where each task waits, from tokio's task dump (`Handle::dump`). The
/// quickest way to see *which* tasks a [`TaskLeakCheck`] counted; see
/// `leakscope::profile::task_sites` for the same grouped by function and line.
///
/// Task dumps are an unstable tokio API: they exist only when every crate is
/// built with `--cfg tokio_unstable`, tokio has its `taskdump` feature, and
/// the target is Linux on x86, x86-64 or AArch64.
#[cfg(all(
    tokio_unstable,
    target_os = "linux",
    any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")
))]
pub async fn task_traces() -> Vec<String> {
    let dump = Handle::current().dump().await;
    dump.tasks()
        .iter()
        .map(|task| task.trace().to_string())
        .collect()
}

/// Makes the current runtime set up what it keeps for the rest of its life,
/// so that a heap baseline taken afterwards measures only the code under test.
///
/// A fresh runtime grows its task list and run queue the first time it holds
/// many tasks, sets its timer up the first time a task sleeps, and allocates
/// a little bookkeeping the first time a task is aborted; it keeps all of it.
/// This spawns `tasks` short sleepers and awaits them, then aborts one task
/// and lets it be released. Pass at least as many tasks as the code under
/// test will hold at once.
///
/// ```
/// use leakscope::{heap::LiveBytes, tasks::warm_up_runtime};
///
/// #[global_allocator]
/// static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// warm_up_runtime(100).await;
/// let heap = LiveBytes::start();
/// let workers: Vec<_> = (0..100)
///     .map(|_| tokio::spawn(tokio::time::sleep(std::time::Duration::from_millis(1))))
///     .collect();
/// for worker in workers {
///     worker.await.unwrap();
/// }
/// assert_eq!(heap.live_bytes(), 0);
/// # });
/// ```
pub async fn warm_up_runtime(tasks: usize) {
    let sleepers: Vec<_> = (0..tasks)
        .map(|_| tokio::spawn(tokio::time::sleep(std::time::Duration::from_millis(1))))
        .collect();
    for sleeper in sleepers {
        sleeper.await.expect("a sleeping task does not panic");
    }
    let check = TaskLeakCheck::start();
    // Dropped, not awaited: the path an `AbortOnDropHandle` takes.
    tokio::spawn(std::future::pending::<()>()).abort();
    check.assert_no_leaks().await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use super::*;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn counts_a_task_that_sleeps_forever() {
        let check = TaskLeakCheck::start();
        let _detached = tokio::spawn(async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let report = check.settle().await;
        assert_eq!(report.leaked_tasks(), 1);
        assert_eq!(
            report.to_string(),
            "1 task(s) leaked: 1 alive now, 0 at the baseline"
        );
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn cancelled_tasks_settle_to_zero() {
        let check = TaskLeakCheck::start();
        let token = CancellationToken::new();
        for _ in 0..10 {
            let token = token.clone();
            tokio::spawn(async move { token.cancelled().await });
        }
        assert_eq!(check.alive_now(), 10);
        token.cancel();
        // Not awaited: settling alone must let them finish and be released.
        check.assert_no_leaks().await;
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn aborted_task_is_released_after_settling() {
        let check = TaskLeakCheck::start();
        let handle = tokio::spawn(std::future::pending::<()>());
        handle.abort();
        assert_eq!(check.leaked_tasks().await, 0);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    #[should_panic(expected = "task leak: 1 task(s) leaked")]
    async fn assert_no_leaks_names_the_leak() {
        let check = TaskLeakCheck::start();
        tokio::spawn(std::future::pending::<()>());
        check.assert_no_leaks().await;
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn after_warm_up_an_aborted_task_leaves_no_bytes() {
        warm_up_runtime(16).await;
        let heap = crate::heap::LiveBytes::start();
        let check = TaskLeakCheck::start();
        drop(tokio_util::task::AbortOnDropHandle::new(tokio::spawn(
            std::future::pending::<()>(),
        )));
        check.assert_no_leaks().await;
        assert!(heap.live_bytes() <= 0, "kept {} bytes", heap.live_bytes());
    }

    #[cfg(all(tokio_unstable, target_os = "linux", target_arch = "x86_64"))]
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn task_traces_show_where_a_leaked_task_waits() {
        let _detached = tokio::spawn(async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        tokio::task::yield_now().await;
        let traces = task_traces().await;
        assert_eq!(traces.len(), 1, "{traces:#?}");
        assert!(traces[0].contains("tokio::time::sleep"), "{}", traces[0]);
    }

    #[test]
    #[should_panic(expected = "inside a tokio runtime")]
    fn outside_a_runtime_the_panic_says_why() {
        alive_tasks();
    }
}
