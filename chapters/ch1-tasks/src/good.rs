//! The fixed versions: every task has an owner that can stop it and wait
//! for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc::{self, error::SendError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};

use crate::{ANSWER, STARTUP_WAIT};

// ANCHOR: cancellable_workers
/// The seed's `goroutineLeakGood`: workers do a unit of work every 100 ms
/// until their token is cancelled.
pub async fn worker_until_cancelled(shutdown: CancellationToken, exited: Arc<AtomicUsize>) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(100)) => { /* one unit of work */ }
        }
    }
    exited.fetch_add(1, Ordering::Relaxed);
}

/// Runs `count` workers for `run_for`, then cancels them and waits until
/// every one has returned. Returns how many exited cleanly.
pub async fn run_cancellable_workers(count: usize, run_for: Duration) -> usize {
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let exited = Arc::new(AtomicUsize::new(0));
    for _ in 0..count {
        tracker.spawn(worker_until_cancelled(shutdown.clone(), exited.clone()));
    }
    tokio::time::sleep(run_for).await;

    shutdown.cancel(); // Go: cancel()
    tracker.close();
    tracker.wait().await; // Go: wg.Wait()
    exited.load(Ordering::Relaxed)
}
// ANCHOR_END: cancellable_workers

// ANCHOR: receive_the_result
/// Fix 1 for the blocked send: the caller actually receives what it asked for.
pub async fn send_and_receive() -> Option<i32> {
    let (results_tx, mut results_rx) = mpsc::channel(1);
    tokio::spawn(async move {
        results_tx.send(ANSWER).await.ok();
    });
    tokio::time::sleep(STARTUP_WAIT).await;
    results_rx.recv().await
}
// ANCHOR_END: receive_the_result

// ANCHOR: drop_the_receiver
/// Fix 2: a caller that no longer wants the result drops the receiver.
///
/// In Rust a send to a channel whose receiver is gone fails at once with
/// `SendError`, handing the value back, so the sender finishes instead of
/// waiting. Returns what the sending task saw.
pub async fn send_after_receiver_dropped() -> Result<(), SendError<i32>> {
    let (results_tx, results_rx) = mpsc::channel(1);
    drop(results_rx); // not interested any more
    let sender = tokio::spawn(async move { results_tx.send(ANSWER).await });
    sender.await.expect("the sending task does not panic")
}
// ANCHOR_END: drop_the_receiver

// ANCHOR: abort_on_drop
/// Starts the same background poller, owned through an `AbortOnDropHandle`:
/// when the owner drops it, the task is aborted.
pub fn start_poller_owned() -> AbortOnDropHandle<()> {
    AbortOnDropHandle::new(tokio::spawn(crate::bad::worker_without_exit(0)))
}
// ANCHOR_END: abort_on_drop
