//! Chapter 4: a runtime memory monitor.
//!
//! The seed's `MemoryMonitor` samples `runtime.ReadMemStats` every second
//! while `simulateMemoryLeak` runs three phases (normal use, a leak of
//! 200 KB a step, a leak of 500 KB a step), then `Analyze` compares the first
//! and last samples. It finds the leak, and is itself a leak:
//!
//! | | [`bad`] | [`good`] |
//! |---|---|---|
//! | samples kept | every one, in a `Vec` that grows forever | the last N, in a ring buffer allocated once |
//! | stopping | a flag the loop reads after its next tick: the task outlives `stop` by up to one interval | a cancellation token: the task ends at once, on `stop`, on drop, or with the service |
//! | what it reads | jemalloc's allocated heap | jemalloc's six statistics, alive tasks, RSS; also as Prometheus text |
//!
//! Both watch the same scenario, [`run_phases`], ported from the seed with
//! its sizes, counts and step.

pub mod bad;
pub mod good;

use std::time::Duration;

use leakscope::heap::LiveBytes;

/// The seed's sampling interval and the pause between two steps of the
/// scenario (`monitor.Start(time.Second)`, `time.Sleep(time.Second)`).
pub const SEED_STEP: Duration = Duration::from_secs(1);

/// Phase 1, normal use: 5 steps, each allocating 100 KB and dropping it
/// (`make([]byte, 1024*100)`, `_ = data`).
pub const NORMAL_STEPS: usize = 5;
/// Size of phase 1's short-lived buffer.
pub const NORMAL_BYTES: usize = 1024 * 100;

/// Phase 2, the leak starts: 10 steps, each keeping 200 KB (`1024*200`).
pub const LEAK_STEPS: usize = 10;
/// Size of each buffer phase 2 keeps.
pub const LEAK_BYTES: usize = 1024 * 200;

/// Phase 3, the leak grows: 5 steps, each keeping 500 KB (`1024*500`).
pub const WORSE_STEPS: usize = 5;
/// Size of each buffer phase 3 keeps.
pub const WORSE_BYTES: usize = 1024 * 500;

/// Steps in the whole scenario (20, the seed's 20 samples).
pub const TOTAL_STEPS: usize = NORMAL_STEPS + LEAK_STEPS + WORSE_STEPS;

/// Bytes the scenario leaks as the program asks for them:
/// 10 × 200 KiB + 5 × 500 KiB = 4 500 KiB. jemalloc rounds each buffer up to
/// its size class, so the heap grows a little more.
pub const LEAKED_BYTES: usize = LEAK_STEPS * LEAK_BYTES + WORSE_STEPS * WORSE_BYTES;

/// The three phases of the seed's `simulateMemoryLeak`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// 阶段1: 正常内存使用 — allocations that are freed.
    Normal,
    /// 阶段2: 内存泄漏开始 — 200 KB kept per step.
    LeakStarts,
    /// 阶段3: 内存泄漏加剧 — 500 KB kept per step.
    LeakGrows,
}

impl Phase {
    /// The phase a step (0-based) of the scenario belongs to.
    pub fn of_step(step: usize) -> Self {
        if step < NORMAL_STEPS {
            Phase::Normal
        } else if step < NORMAL_STEPS + LEAK_STEPS {
            Phase::LeakStarts
        } else {
            Phase::LeakGrows
        }
    }

    /// A short label for tables and charts.
    pub fn label(self) -> &'static str {
        match self {
            Phase::Normal => "1 normal",
            Phase::LeakStarts => "2 leak starts",
            Phase::LeakGrows => "3 leak grows",
        }
    }
}

// ANCHOR: run_phases
/// The seed's three phases: each step allocates, then waits `step`. Returns
/// the leaked buffers (the seed's `leakedData`), so the caller decides when
/// the leak ends. `after_step` runs after each step's pause.
///
/// The buffers are filled rather than zeroed so their pages become resident
/// and show in RSS, as a real leak's data would.
pub async fn run_phases(step: Duration, mut after_step: impl FnMut(usize, Phase)) -> Vec<Vec<u8>> {
    let mut leaked_data: Vec<Vec<u8>> = Vec::new();
    for step_index in 0..TOTAL_STEPS {
        let phase = Phase::of_step(step_index);
        match phase {
            Phase::Normal => {
                let data = std::hint::black_box(vec![1u8; NORMAL_BYTES]);
                drop(data); // used and released
            }
            Phase::LeakStarts => leaked_data.push(vec![1u8; LEAK_BYTES]),
            Phase::LeakGrows => leaked_data.push(vec![1u8; WORSE_BYTES]),
        }
        tokio::time::sleep(step).await;
        after_step(step_index, phase);
    }
    leaked_data
}
// ANCHOR_END: run_phases

/// What a monitor's own data costs after sampling at 1 Hz for a while:
/// (seconds of sampling, bytes the monitor holds on the heap).
pub type Footprint = Vec<(u64, i64)>;

/// Runs a monitor on a paused-clock, single-threaded runtime until the
/// largest of `checkpoints` (simulated seconds) and measures the bytes it
/// holds at each checkpoint with [`LiveBytes`]. `start` starts
/// the monitor and returns whatever keeps it alive.
pub fn measure_footprint<M>(checkpoints: &[u64], start: impl FnOnce() -> M) -> Footprint {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let mut footprint = Vec::with_capacity(checkpoints.len());
        let heap = LiveBytes::start();
        let monitor = start();
        let mut now = 0;
        for &seconds in checkpoints {
            // Half a second past the tick: no timer ties with the sampler.
            let target = seconds * 1000 + 500;
            tokio::time::sleep(Duration::from_millis(target.saturating_sub(now))).await;
            now = target;
            footprint.push((seconds, heap.live_bytes()));
        }
        drop(monitor);
        footprint
    })
}
