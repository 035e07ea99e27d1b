//! The seed's `testMemoryLeakDetector`, run for real and recorded as a
//! trace: 50 rounds, each keeping a 200 KB buffer, a task blocked forever
//! every 5th round, 500 ms between rounds, then 15 s of waiting — sampled
//! once a second, on tokio's paused clock (40 seconds in a few
//! milliseconds).

use std::time::Duration;

use leakscope::detect::{Observation, live_allocations};
use leakscope::heap::LiveBytes;
use leakscope::tasks::alive_tasks;
use tokio::sync::oneshot;
use tokio::time::{Instant, interval, sleep};

use crate::{
    SCENARIO_FINAL_WAIT, SCENARIO_LEAK_BYTES, SCENARIO_ROUND_PAUSE, SCENARIO_ROUNDS,
    SCENARIO_TASK_EVERY, SEED_SAMPLE_INTERVAL,
};

/// Samples taken: one at the start (the seed's baseline), then one per
/// second until the scenario ends (25 s of leaking + 15 s of waiting).
pub fn scenario_samples() -> usize {
    (scenario_duration().as_millis() / SEED_SAMPLE_INTERVAL.as_millis()) as usize + 1
}

// ANCHOR: seed_scenario
/// The seed's leaking loop: what it keeps is returned so the caller decides
/// when it is freed (dropping the senders ends the blocked tasks).
async fn leak_like_the_seed() -> (Vec<Vec<u8>>, Vec<oneshot::Sender<bool>>) {
    let mut leaked_data = Vec::with_capacity(SCENARIO_ROUNDS);
    let mut leaked_tasks = Vec::with_capacity(SCENARIO_ROUNDS / SCENARIO_TASK_EVERY);
    for round in 0..SCENARIO_ROUNDS {
        leaked_data.push(vec![1u8; SCENARIO_LEAK_BYTES]);
        if round % SCENARIO_TASK_EVERY == 0 {
            let (never_sent, blocked) = oneshot::channel::<bool>();
            leaked_tasks.push(never_sent);
            tokio::spawn(async move {
                let _ = blocked.await; // `<-ch`: blocks forever
            });
        }
        sleep(SCENARIO_ROUND_PAUSE).await;
    }
    sleep(SCENARIO_FINAL_WAIT).await;
    (leaked_data, leaked_tasks)
}
// ANCHOR_END: seed_scenario

/// Runs the scenario on a fresh `current_thread` runtime with a paused
/// clock and returns the trace.
///
/// `heap_bytes` is the bytes the scenario's thread allocated and still holds
/// ([`LiveBytes`], exact: 204 800 bytes per round),
/// `objects` the process's live allocations
/// ([`live_allocations`]), `tasks` the runtime's alive tasks, the scenario's own
/// task included (as the seed's count includes `main` and the detector).
pub fn record() -> Vec<Observation> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let samples = scenario_samples();
        let mut trace = Vec::with_capacity(samples);
        let heap = LiveBytes::start();
        let start = Instant::now();
        let leaking = tokio::spawn(leak_like_the_seed());
        let mut ticker = interval(SEED_SAMPLE_INTERVAL);
        for _ in 0..samples {
            ticker.tick().await;
            trace.push(Observation {
                t_ms: start.elapsed().as_millis() as u64,
                heap_bytes: heap.live_bytes().max(0) as u64,
                objects: live_allocations().unwrap_or(0),
                tasks: alive_tasks() as u64,
            });
        }
        let kept = leaking.await.expect("the scenario does not panic");
        drop(kept);
        trace
    })
}

/// How long a recorded scenario lasts on the paused clock.
pub fn scenario_duration() -> Duration {
    SCENARIO_ROUND_PAUSE * SCENARIO_ROUNDS as u32 + SCENARIO_FINAL_WAIT
}
