//! The leaking versions: shapes reported in public issue threads, rebuilt
//! with the real tokio and futures types.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{broadcast, mpsc};
use tokio::task::{JoinHandle, JoinSet};

use crate::{
    CONSUMER_TIME, Event, LARGE_BROADCAST_CAPACITY, Response, Update, handle_request, run_call,
};

// ANCHOR: unreaped_join_set
/// A server that runs each request's handler as a task of its own, and keeps
/// the tasks in a `JoinSet` so that shutdown could wait for them.
#[derive(Debug, Default)]
pub struct Server {
    handlers: JoinSet<Response>,
}

impl Server {
    /// Starts a handler for the request. Nothing ever joins it: when it
    /// finishes, the set keeps its task, and the task keeps its result.
    pub fn handle(&mut self, request_id: usize) {
        self.handlers.spawn(handle_request(request_id));
    }
}
// ANCHOR_END: unreaped_join_set

impl Server {
    /// Handlers the set holds: running, or finished and not yet joined.
    pub fn handlers_held(&self) -> usize {
        self.handlers.len()
    }
}

// ANCHOR: unpolled_futures
/// Serves one connection: every call the client sends becomes a future in a
/// `FuturesUnordered`, which is polled only once the client has hung up.
pub async fn serve_connection(
    mut incoming: mpsc::UnboundedReceiver<Vec<u8>>,
    completed: Arc<AtomicUsize>,
) -> usize {
    let mut calls = FuturesUnordered::new();
    while let Some(request) = incoming.recv().await {
        calls.push(run_call(request));
    }
    // Only now does any call run.
    let mut served = 0;
    while let Some(bytes) = calls.next().await {
        served += bytes;
        completed.fetch_add(1, Ordering::Relaxed);
    }
    served
}
// ANCHOR_END: unpolled_futures

// ANCHOR: unbounded_queue
/// Events go to a consumer task through an unbounded channel: `publish`
/// never waits, however far behind the consumer is.
#[derive(Debug)]
pub struct EventQueue {
    events: mpsc::UnboundedSender<Event>,
    published: usize,
    handled: Arc<AtomicUsize>,
    consumer: JoinHandle<()>,
}

impl EventQueue {
    /// Starts the consumer.
    pub fn start() -> Self {
        let (events, mut incoming) = mpsc::unbounded_channel::<Event>();
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

    /// Queues the event and returns at once.
    pub fn publish(&mut self, event: Event) {
        self.events
            .send(event)
            .expect("the consumer runs as long as the queue");
        self.published += 1;
    }
}
// ANCHOR_END: unbounded_queue

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
            self.publish(event);
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

// ANCHOR: large_broadcast
/// The hub updates are broadcast through, sized "so that no subscriber ever
/// lags". It keeps a receiver of its own so that `publish` never fails for
/// want of subscribers; that receiver never reads, so every update stays in
/// its slot until it is overwritten, 65 536 sends later.
#[derive(Debug)]
pub struct UpdateHub {
    sender: broadcast::Sender<Update>,
    _keep_open: broadcast::Receiver<Update>,
}

impl UpdateHub {
    /// An open hub.
    pub fn new() -> Self {
        let (sender, keep_open) = broadcast::channel(LARGE_BROADCAST_CAPACITY);
        Self {
            sender,
            _keep_open: keep_open,
        }
    }

    /// Sends the update to every subscriber.
    pub fn publish(&self, update: Update) {
        self.sender
            .send(update)
            .expect("the hub's own receiver keeps it open");
    }
}
// ANCHOR_END: large_broadcast

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
