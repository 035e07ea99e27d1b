//! The fixed versions.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{broadcast, mpsc};
use tokio::task::{JoinError, JoinHandle, JoinSet};

use crate::{
    CONSUMER_TIME, Event, QUEUE_CAPACITY, Response, SMALL_BROADCAST_CAPACITY, Update,
    handle_request, run_call,
};

// ANCHOR: reaped_join_set
/// The same server, reaping: before it starts a handler it takes every
/// finished one out of the set, so the set holds only what still runs.
#[derive(Debug, Default)]
pub struct Server {
    handlers: JoinSet<Response>,
    bytes_served: usize,
    failed: usize,
}

impl Server {
    /// Collects the finished handlers, then starts one for the request.
    pub fn handle(&mut self, request_id: usize) {
        while let Some(finished) = self.handlers.try_join_next() {
            self.record(finished);
        }
        self.handlers.spawn(handle_request(request_id));
    }

    fn record(&mut self, finished: Result<Response, JoinError>) {
        match finished {
            Ok(response) => self.bytes_served += response.len(),
            Err(_) => self.failed += 1,
        }
    }

    /// Waits for the handlers still running; returns the bytes served.
    pub async fn shutdown(mut self) -> usize {
        while let Some(finished) = self.handlers.join_next().await {
            self.record(finished);
        }
        self.bytes_served
    }
}
// ANCHOR_END: reaped_join_set

impl Server {
    /// Handlers the set holds: running, or finished since the last reap.
    pub fn handlers_held(&self) -> usize {
        self.handlers.len()
    }

    /// Handlers that panicked or were aborted.
    pub fn failed(&self) -> usize {
        self.failed
    }
}

// ANCHOR: polled_futures
/// Serves one connection, polling the calls while it reads the next ones:
/// a call runs as soon as it arrives, and the set drops it when it is done.
pub async fn serve_connection(
    mut incoming: mpsc::UnboundedReceiver<Vec<u8>>,
    completed: Arc<AtomicUsize>,
) -> usize {
    let mut calls = FuturesUnordered::new();
    let mut served = 0;
    loop {
        tokio::select! {
            Some(bytes) = calls.next(), if !calls.is_empty() => {
                served += bytes;
                completed.fetch_add(1, Ordering::Relaxed);
            }
            request = incoming.recv() => match request {
                Some(request) => calls.push(run_call(request)),
                None => break,
            },
        }
    }
    while let Some(bytes) = calls.next().await {
        served += bytes;
        completed.fetch_add(1, Ordering::Relaxed);
    }
    served
}
// ANCHOR_END: polled_futures

// ANCHOR: bounded_queue
/// Events go to the consumer through a bounded channel of boxed events:
/// when the consumer is `QUEUE_CAPACITY` events behind, `publish` waits, and
/// the blocks the channel keeps once drained hold pointers, not events.
#[derive(Debug)]
pub struct EventQueue {
    events: mpsc::Sender<Box<Event>>,
    published: usize,
    handled: Arc<AtomicUsize>,
    consumer: JoinHandle<()>,
}

impl EventQueue {
    /// Starts the consumer.
    pub fn start() -> Self {
        let (events, mut incoming) = mpsc::channel::<Box<Event>>(QUEUE_CAPACITY);
        let handled = Arc::new(AtomicUsize::new(0));
        let consumer = tokio::spawn({
            let handled = Arc::clone(&handled);
            async move {
                while let Some(event) = incoming.recv().await {
                    std::hint::black_box(&event);
                    tokio::time::sleep(CONSUMER_TIME).await;
                    handled.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Self {
            events,
            published: 0,
            handled,
            consumer,
        }
    }

    /// Queues the event, waiting while the channel is full.
    pub async fn publish(&mut self, event: Event) {
        let event = Box::new(event);
        self.events
            .send(event)
            .await
            .expect("the consumer runs as long as the queue");
        self.published += 1;
    }
}
// ANCHOR_END: bounded_queue

impl EventQueue {
    /// Events published and not yet handled.
    pub fn backlog(&self) -> usize {
        self.published - self.handled.load(Ordering::Relaxed)
    }

    /// Waits (on tokio's clock) until the consumer has handled every event,
    /// and keeps the channel open.
    pub async fn wait_until_drained(&self) {
        while self.backlog() > 0 {
            tokio::time::sleep(CONSUMER_TIME).await;
        }
    }

    /// Publishes `events` events, one per `PRODUCER_INTERVAL`.
    pub async fn publish_all(&mut self, events: usize) {
        for event_id in 0..events {
            let event = [event_id as u8; crate::EVENT_BYTES];
            self.publish(event).await;
            tokio::time::sleep(crate::PRODUCER_INTERVAL).await;
        }
    }

    /// Closes the channel and waits for the consumer to finish; returns how
    /// many events it handled.
    pub async fn close(self) -> usize {
        drop(self.events);
        self.consumer.await.expect("the consumer does not panic");
        self.handled.load(Ordering::Relaxed)
    }
}

// ANCHOR: small_broadcast
/// The hub without a receiver of its own, sized for the lag a subscriber may
/// really have: an update is dropped as soon as every subscriber has seen it,
/// and a subscriber more than 64 updates behind is told how many it missed
/// (`RecvError::Lagged`) instead of the channel holding them all.
#[derive(Debug)]
pub struct UpdateHub {
    sender: broadcast::Sender<Update>,
}

impl UpdateHub {
    /// An open hub.
    pub fn new() -> Self {
        Self {
            sender: broadcast::channel(SMALL_BROADCAST_CAPACITY).0,
        }
    }

    /// Sends the update to every subscriber. With none, the update is
    /// dropped at once: nobody asked for it.
    pub fn publish(&self, update: Update) {
        let _no_subscribers = self.sender.send(update);
    }
}
// ANCHOR_END: small_broadcast

impl Default for UpdateHub {
    fn default() -> Self {
        Self::new()
    }
}

impl UpdateHub {
    /// A new subscriber, which receives the updates published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Update> {
        self.sender.subscribe()
    }

    /// Updates the channel still holds: sent, and not yet seen by every
    /// receiver nor overwritten (`broadcast::Sender::len`).
    pub fn updates_held(&self) -> usize {
        self.sender.len()
    }
}
