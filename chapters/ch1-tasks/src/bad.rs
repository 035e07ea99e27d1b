//! The leaking versions: faithful ports of the seed's goroutine leaks.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{ANSWER, STARTUP_WAIT};

// ANCHOR: worker_without_exit
/// One worker of the seed's `goroutineLeakBad`: it wakes every second and
/// has no way to stop.
pub async fn worker_without_exit(worker_id: usize) {
    let _ = worker_id;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        // No exit condition: nothing can tell this loop to end.
    }
}

/// Spawns `count` workers that never exit, waits for them to start, and
/// returns. Every one of them is still alive when this function is done.
pub async fn spawn_workers_without_exit(count: usize) {
    for worker_id in 0..count {
        tokio::spawn(worker_without_exit(worker_id));
    }
    tokio::time::sleep(STARTUP_WAIT).await;
}
// ANCHOR_END: worker_without_exit

// ANCHOR: forgotten_receiver
/// The seed's `channelGoroutineLeak`: a task sends a result nobody reads.
///
/// Go's unbuffered channel blocks the first send. A tokio channel has room
/// for at least one value, so the task sends two: the first fills the
/// buffer, the second waits for room that never comes. The caller keeps the
/// receiver (here: returns it to be stored) but never reads from it.
pub async fn send_to_forgotten_receiver() -> mpsc::Receiver<i32> {
    let (results_tx, results_rx) = mpsc::channel(1);
    tokio::spawn(async move {
        results_tx.send(ANSWER - 1).await.ok(); // fills the buffer
        results_tx.send(ANSWER).await.ok(); // waits forever: nobody reads
        println!("send complete"); // never runs
    });
    tokio::time::sleep(STARTUP_WAIT).await;
    results_rx
}
// ANCHOR_END: forgotten_receiver

// ANCHOR: dropped_handle
/// Starts a background poller and drops its `JoinHandle`.
///
/// Dropping a `JoinHandle` *detaches* the task: it keeps running, and now
/// nobody can stop it or even see it.
pub fn start_poller_and_drop_handle() {
    let poller: JoinHandle<()> = tokio::spawn(worker_without_exit(0));
    drop(poller); // the task is not cancelled by this
}
// ANCHOR_END: dropped_handle
