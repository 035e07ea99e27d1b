//! Chapter 11: task sets and channels.
//!
//! Three shapes that public issue threads keep reporting, each with a
//! version that leaks and one that does not:
//!
//! | scenario | [`bad`] | [`good`] |
//! |---|---|---|
//! | task set | every request handler is spawned into a `JoinSet` that is never joined: each finished handler's result stays in the set | the server reaps finished handlers (`try_join_next`) before spawning the next |
//! | futures set | every call is pushed into a `FuturesUnordered` that is polled only at shutdown | the connection loop polls the set as it reads |
//! | event queue | an unbounded `mpsc` channel in front of a slow consumer: the backlog grows with the difference in speed | a bounded channel: the producer waits when the consumer is behind |
//! | drained queue | events stored inline in the channel's blocks: a drained channel keeps a few blocks of full-size slots | events boxed: the blocks a channel keeps hold pointers |
//! | broadcast | a `broadcast` channel with room for 65 536 updates: every update sent stays alive until it is overwritten | a capacity sized to the lag subscribers may really have |

pub mod bad;
pub mod good;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

/// Requests a server handles in the task-set scenario.
pub const REQUESTS: usize = 10_000;

/// Bytes of each handler's result (a response body).
pub const RESPONSE_BYTES: usize = 4096;

/// A handler's result: a response body.
pub type Response = Vec<u8>;

/// What a request handler does: build a response of [`RESPONSE_BYTES`].
pub async fn handle_request(request_id: usize) -> Response {
    tokio::task::yield_now().await;
    vec![request_id as u8; RESPONSE_BYTES]
}

/// Events the producer publishes in the event-queue scenario.
pub const EVENTS: usize = 10_000;

/// Bytes of one event, stored inline in the channel (the size tokio-rs/tokio#7355 used).
pub const EVENT_BYTES: usize = 256;

/// One event as the producer makes it.
pub type Event = [u8; EVENT_BYTES];

/// The producer publishes one event this often…
pub const PRODUCER_INTERVAL: Duration = Duration::from_millis(1);

/// …and the consumer needs this long to handle one: ten times slower.
pub const CONSUMER_TIME: Duration = Duration::from_millis(10);

/// Capacity of the bounded event channel: how far the consumer may fall behind.
pub const QUEUE_CAPACITY: usize = 64;

/// Slots in one block of tokio's mpsc channels (tokio's `BLOCK_CAP`, see
/// the "Allocation behavior" section of `tokio::sync::mpsc`'s documentation).
pub const MPSC_BLOCK_SLOTS: usize = 32;

/// Updates the publisher sends in the broadcast scenario.
pub const UPDATES: usize = 10_000;

/// Bytes of one update.
pub const UPDATE_BYTES: usize = 1024;

/// One update, shared by every subscriber that receives it.
pub type Update = std::sync::Arc<[u8]>;

/// Subscribers to the broadcast channel.
pub const SUBSCRIBERS: usize = 4;

/// The publisher sends one update this often; subscribers read it at once.
pub const UPDATE_INTERVAL: Duration = Duration::from_millis(1);

/// Capacity of the oversized broadcast channel ("so that nobody ever lags").
pub const LARGE_BROADCAST_CAPACITY: usize = 65_536;

/// Capacity of the right-sized broadcast channel: the lag subscribers may have.
pub const SMALL_BROADCAST_CAPACITY: usize = 64;

/// Calls a client pipelines on one connection in the futures-set scenario.
pub const CALLS: usize = 10_000;

/// Bytes of the state one call's future holds until it is polled.
pub const CALL_BYTES: usize = 1024;

/// One call of the futures-set scenario: it owns its request until it runs.
pub async fn run_call(request: Vec<u8>) -> usize {
    request.len()
}

/// Sends [`REQUESTS`]-style traffic: one request per turn of the runtime, so
/// handlers run and finish while later requests arrive.
pub async fn serve_requests(mut handle: impl FnMut(usize), requests: usize) {
    for request_id in 0..requests {
        handle(request_id);
        tokio::task::yield_now().await;
    }
    // Let the last handlers finish too.
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
}

/// A client connection to a server task, for the futures-set scenario.
#[derive(Debug)]
pub struct Connection {
    requests: mpsc::UnboundedSender<Vec<u8>>,
    sent: usize,
    completed: Arc<AtomicUsize>,
    server: JoinHandle<usize>,
}

impl Connection {
    /// Starts `serve` on a task of its own, as a server does per connection.
    pub fn open<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(mpsc::UnboundedReceiver<Vec<u8>>, Arc<AtomicUsize>) -> Fut,
        Fut: Future<Output = usize> + Send + 'static,
    {
        let (requests, incoming) = mpsc::unbounded_channel();
        let completed = Arc::new(AtomicUsize::new(0));
        let server = tokio::spawn(serve(incoming, Arc::clone(&completed)));
        Self {
            requests,
            sent: 0,
            completed,
            server,
        }
    }

    /// Sends `calls` calls of [`CALL_BYTES`], one per turn of the runtime,
    /// and lets the server read them all.
    pub async fn send_calls(&mut self, calls: usize) {
        for _ in 0..calls {
            self.requests
                .send(vec![0; CALL_BYTES])
                .expect("the server reads while the connection is open");
            self.sent += 1;
            tokio::task::yield_now().await;
        }
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
    }

    /// Calls sent whose future has not completed yet.
    pub fn pending_calls(&self) -> usize {
        self.sent - self.completed.load(Ordering::Relaxed)
    }

    /// Hangs up and waits for the server; returns the bytes it served.
    pub async fn hang_up(self) -> usize {
        drop(self.requests);
        self.server.await.expect("the server does not panic")
    }
}

/// What one subscriber received before the channel closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Updates received.
    pub updates: usize,
    /// Updates missed because the subscriber fell further behind than the
    /// channel's capacity.
    pub missed: u64,
}

/// Starts [`SUBSCRIBERS`] subscribers, then publishes `updates` updates of
/// [`UPDATE_BYTES`], one per [`UPDATE_INTERVAL`], each read by every
/// subscriber at once. Returns the subscriber tasks: they end when the
/// hub is dropped.
pub async fn broadcast_updates(
    subscribe: impl Fn() -> broadcast::Receiver<Update>,
    publish: impl Fn(Update),
    updates: usize,
) -> Vec<JoinHandle<Received>> {
    let subscribers = (0..SUBSCRIBERS)
        .map(|_| {
            let mut receiver = subscribe();
            tokio::spawn(async move {
                let mut received = Received {
                    updates: 0,
                    missed: 0,
                };
                loop {
                    match receiver.recv().await {
                        Ok(update) => {
                            std::hint::black_box(&update);
                            received.updates += 1;
                        }
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            received.missed += missed
                        }
                        Err(broadcast::error::RecvError::Closed) => return received,
                    }
                }
            })
        })
        .collect();
    for update_id in 0..updates {
        let update: Update = vec![update_id as u8; UPDATE_BYTES].into();
        publish(update);
        tokio::time::sleep(UPDATE_INTERVAL).await;
    }
    subscribers
}
