//! Counting tokio tasks, and checking that a piece of code left none behind.
//!
//! A task that never finishes is the async version of a goroutine leak: it
//! holds its future (and everything the future owns) forever. Go programs
//! catch these with `runtime.NumGoroutine()` and uber-go/goleak; this module
//! is the tokio counterpart, with goleak's discipline:
//!
//! * [`alive_tasks`] — how many tasks the current runtime holds, from tokio's
//!   stable runtime metrics (`RuntimeMetrics::num_alive_tasks`).
//! * [`TaskLeakCheck`] — take a baseline, run the code, then wait for
//!   stragglers (yielding, then sleeping with backoff up to a time budget,
//!   on tokio's paused clock too) before reporting the tasks that outlived
//!   it. With task dumps (feature `taskdump`, `--cfg tokio_unstable`, Linux
//!   on x86/x86-64/AArch64) it compares task *identities*, like goleak's
//!   `IgnoreCurrent`, so a baseline task that ends while a new one leaks
//!   still fails the check, and its failure message says where each leaked
//!   task waits; [`TaskLeakCheck::ignore_waiting_in`] is goleak's
//!   `IgnoreTopFunction`. Without dumps it compares counts.
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
//! # let check = check.settle_budget(Duration::from_millis(20));
//! assert_eq!(check.leaked_tasks().await, 1);
//!
//! worker.abort();
//! check.assert_no_leaks().await;
//! # });
//! ```
//!
//! Counts are exact on a `current_thread` runtime. On a multi-thread runtime
//! other workers may still be finishing tasks when the count is read; the
//! settling loop waits for them up to its budget.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use tokio::runtime::Handle;

/// How many times [`TaskLeakCheck`] yields to the scheduler, waiting for
/// finished or aborted tasks to be released, before it starts sleeping.
pub const SETTLE_ROUNDS: usize = 64;

/// How long [`TaskLeakCheck`] waits, in all, for tasks that are still
/// finishing before it calls them leaked (goleak retries for about as long).
/// On a paused clock this is simulated time and costs nothing.
pub const DEFAULT_SETTLE_BUDGET: Duration = Duration::from_secs(1);

// The first sleep between two looks; it doubles up to MAX_BACKOFF.
const FIRST_BACKOFF: Duration = Duration::from_millis(1);
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// Whether this build can take task dumps (feature `taskdump`, `--cfg
/// tokio_unstable`, Linux on x86, x86-64 or AArch64).
pub const TASK_DUMPS: bool = cfg!(all(
    feature = "taskdump",
    tokio_unstable,
    target_os = "linux",
    any(
        target_arch = "x86",
        target_arch = "x86_64",
        target_arch = "aarch64"
    )
));

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

/// One task as a task dump shows it: its id and where it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskTrace {
    /// tokio's task id, unique among the runtime's tasks.
    pub id: String,
    /// The task's stack at its await point, as tokio prints it.
    pub trace: String,
}

/// Why a task dump could not be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDumpUnavailable;

impl fmt::Display for TaskDumpUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "task dumps are not available in this build: they need leakscope's `taskdump` \
             feature, `--cfg tokio_unstable` for every crate (in RUSTFLAGS or \
             .cargo/config.toml's build.rustflags; a RUSTFLAGS variable replaces the config \
             file's), and Linux on x86, x86-64 or AArch64"
        )
    }
}

impl std::error::Error for TaskDumpUnavailable {}

/// Every task alive in the current runtime, with its id and where it waits,
/// from tokio's task dump (`Handle::dump`). The quickest way to see *which*
/// tasks a [`TaskLeakCheck`] counted.
pub async fn task_dump() -> Result<Vec<TaskTrace>, TaskDumpUnavailable> {
    #[cfg(all(
        feature = "taskdump",
        tokio_unstable,
        target_os = "linux",
        any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        let dump = Handle::current().dump().await;
        Ok(dump
            .tasks()
            .iter()
            .map(|task| TaskTrace {
                id: task.id().to_string(),
                trace: task.trace().to_string(),
            })
            .collect())
    }
    #[cfg(not(all(
        feature = "taskdump",
        tokio_unstable,
        target_os = "linux",
        any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")
    )))]
    {
        Err(TaskDumpUnavailable)
    }
}

/// The stack of every task alive in the current runtime, one string each
/// ([`task_dump`] without the ids).
pub async fn task_traces() -> Result<Vec<String>, TaskDumpUnavailable> {
    Ok(task_dump()
        .await?
        .into_iter()
        .map(|task| task.trace)
        .collect())
}

/// A goleak-style check: remembers which tasks were alive when it started,
/// and later tells which others are alive after the runtime had a chance to
/// finish what was finishing.
#[derive(Debug)]
pub struct TaskLeakCheck {
    handle: Handle,
    baseline: usize,
    // Ids of the tasks alive at the start, when dumps are available.
    baseline_ids: Option<BTreeSet<String>>,
    ignored: Vec<String>,
    budget: Duration,
}

/// The result of a [`TaskLeakCheck`]: what was alive before and after, and
/// (with task dumps) which tasks leaked and where they wait.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskReport {
    /// Alive tasks when the check started.
    pub baseline: usize,
    /// Alive tasks after settling.
    pub alive: usize,
    /// With task dumps: the tasks alive now that were not at the start and
    /// are not ignored. `None` when dumps are unavailable (counts only).
    pub leaked: Option<Vec<TaskTrace>>,
}

impl TaskReport {
    /// Tasks alive now that were not alive at the baseline: by identity
    /// with task dumps, by count without.
    pub fn leaked_tasks(&self) -> usize {
        match &self.leaked {
            Some(leaked) => leaked.len(),
            None => self.alive.saturating_sub(self.baseline),
        }
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
        )?;
        if let Some(leaked) = &self.leaked {
            for task in leaked {
                write!(
                    f,
                    "\n--- leaked task {} waits at:\n{}",
                    task.id,
                    task.trace.trim_end()
                )?;
            }
        }
        Ok(())
    }
}

impl TaskLeakCheck {
    /// Takes the baseline from the current runtime: how many tasks are alive.
    /// The check compares counts, so a baseline task that ends while a new
    /// one leaks cancels out; [`TaskLeakCheck::ignoring_current`] compares
    /// identities where task dumps are available.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn start() -> Self {
        let handle = Handle::try_current()
            .expect("leakscope::tasks::TaskLeakCheck must be started inside a tokio runtime");
        let baseline = handle.metrics().num_alive_tasks();
        Self {
            handle,
            baseline,
            baseline_ids: None,
            ignored: Vec::new(),
            budget: DEFAULT_SETTLE_BUDGET,
        }
    }

    /// Takes the baseline by identity (goleak's `IgnoreCurrent`): with task
    /// dumps ([`TASK_DUMPS`]), the tasks alive now are ignored by id, and the
    /// check reports every other task alive at the end, with where it waits.
    /// Without dumps it is [`TaskLeakCheck::start`].
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub async fn ignoring_current() -> Self {
        let mut check = Self::start();
        check.baseline_ids = task_dump()
            .await
            .ok()
            .map(|tasks| tasks.into_iter().map(|task| task.id).collect());
        check
    }

    /// Waits up to `budget` in all (instead of [`DEFAULT_SETTLE_BUDGET`]) for
    /// tasks that are still finishing.
    pub fn settle_budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    /// Does not count tasks whose stack in the task dump contains `pattern`
    /// (goleak's `IgnoreTopFunction`): a background task the code under test
    /// starts on purpose. Dumps name a frame by its location
    /// (`src/flusher.rs:42:17`) and by its function where the symbol has one,
    /// so a file name, a `file:line` or a type name work. Needs task dumps;
    /// without them it has no effect.
    pub fn ignore_waiting_at(mut self, pattern: &str) -> Self {
        self.ignored.push(pattern.to_owned());
        self
    }

    /// Alive tasks when the check started.
    pub fn baseline(&self) -> usize {
        self.baseline
    }

    /// Alive tasks right now, without settling.
    pub fn alive_now(&self) -> usize {
        self.handle.metrics().num_alive_tasks()
    }

    async fn look(&self) -> TaskReport {
        let alive = self.alive_now();
        let leaked = match &self.baseline_ids {
            Some(baseline_ids) => task_dump().await.ok().map(|tasks| {
                tasks
                    .into_iter()
                    .filter(|task| !baseline_ids.contains(&task.id))
                    .filter(|task| !self.ignored.iter().any(|f| task.trace.contains(f.as_str())))
                    .collect()
            }),
            None => None,
        };
        TaskReport {
            baseline: self.baseline,
            alive,
            leaked,
        }
    }

    /// Waits for tasks that are still finishing, then reports: yields to the
    /// scheduler (up to [`SETTLE_ROUNDS`] times), then sleeps with doubling
    /// backoff until nothing leaked or the budget is spent.
    ///
    /// Yielding lets aborted tasks be cancelled and finished tasks be
    /// released; sleeping lets a task that is about to end (a short timer, a
    /// reply in flight) end. A task sleeping forever stays counted, as it
    /// should. On a paused clock the sleeps advance simulated time.
    pub async fn settle(&self) -> TaskReport {
        for _ in 0..SETTLE_ROUNDS {
            if self.alive_now() <= self.baseline && self.baseline_ids.is_none() {
                break;
            }
            tokio::task::yield_now().await;
        }
        let mut report = self.look().await;
        let mut waited = Duration::ZERO;
        let mut backoff = FIRST_BACKOFF;
        while report.leaked_tasks() > 0 && waited < self.budget {
            let pause = backoff.min(self.budget - waited);
            tokio::time::sleep(pause).await;
            waited += pause;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            report = self.look().await;
        }
        report
    }

    /// Tasks alive beyond the baseline after settling.
    pub async fn leaked_tasks(&self) -> usize {
        self.settle().await.leaked_tasks()
    }

    /// Panics, saying how many tasks leaked (and, with task dumps, where each
    /// waits), unless none did after settling.
    pub async fn assert_no_leaks(&self) {
        let report = self.settle().await;
        assert!(
            report.leaked_tasks() == 0,
            "task leak: {report}\nA spawned task is still running (or blocked) after the \
             code under test returned: cancel it, abort it, or await it."
        );
    }
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
/// static ALLOC: leakscope::alloc::CountingAlloc = leakscope::alloc::CountingAlloc::system();
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

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn task_traces_show_where_a_leaked_task_waits_or_say_why_not() {
        let _detached = tokio::spawn(async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        tokio::task::yield_now().await;
        match (TASK_DUMPS, task_traces().await) {
            (true, Ok(traces)) => {
                assert_eq!(traces.len(), 1, "{traces:#?}");
                assert!(traces[0].contains("tokio::time::sleep"), "{}", traces[0]);
            }
            (false, Err(why)) => {
                assert!(why.to_string().contains("--cfg tokio_unstable"), "{why}");
            }
            (dumps, result) => panic!("TASK_DUMPS is {dumps} but the dump gave {result:?}"),
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_task_that_ends_shortly_after_is_not_a_leak() {
        let check = TaskLeakCheck::start();
        tokio::spawn(tokio::time::sleep(Duration::from_millis(1)));
        tokio::spawn(tokio::time::sleep(Duration::from_millis(300)));
        // Yielding alone cannot finish them; the backoff's sleeps do.
        check.assert_no_leaks().await;
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_task_outliving_the_budget_is_a_leak() {
        let check = TaskLeakCheck::start().settle_budget(Duration::from_millis(500));
        tokio::spawn(tokio::time::sleep(Duration::from_secs(2)));
        let started = tokio::time::Instant::now();
        assert_eq!(check.leaked_tasks().await, 1);
        // The whole budget was waited, and not more.
        assert_eq!(started.elapsed(), Duration::from_millis(500));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn by_count_a_baseline_task_ending_hides_a_new_leak_by_identity_it_does_not() {
        let baseline_worker = tokio::spawn(std::future::pending::<()>());
        let by_count = TaskLeakCheck::start();
        let by_identity = TaskLeakCheck::ignoring_current().await;
        baseline_worker.abort();
        let _leaked = tokio::spawn(std::future::pending::<()>());
        // One ended, one leaked: the count is back to the baseline.
        assert_eq!(by_count.leaked_tasks().await, 0);
        let report = by_identity.settle().await;
        if TASK_DUMPS {
            assert_eq!(report.leaked_tasks(), 1, "{report}");
            assert!(report.to_string().contains("leaked task"), "{report}");
        } else {
            assert_eq!(report.leaked, None);
            assert_eq!(report.leaked_tasks(), 0);
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn ignored_functions_are_not_leaks_with_task_dumps() {
        const FLUSHER_WAITS_AT: u32 = line!() + 3;
        async fn background_flusher() {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        let check = TaskLeakCheck::ignoring_current()
            .await
            .ignore_waiting_at(&format!("tasks.rs:{FLUSHER_WAITS_AT}:"))
            .settle_budget(Duration::from_millis(10));
        let _flusher = tokio::spawn(background_flusher());
        let report = check.settle().await;
        if TASK_DUMPS {
            assert_eq!(report.leaked_tasks(), 0, "{report}");
        } else {
            assert_eq!(report.leaked_tasks(), 1, "{report}");
        }
    }

    #[test]
    #[should_panic(expected = "inside a tokio runtime")]
    fn outside_a_runtime_the_panic_says_why() {
        alive_tasks();
    }
}
