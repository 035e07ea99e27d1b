//! The versions that grow: each is what the cited thread reported, reduced
//! to the part that keeps the memory.

use std::collections::HashMap;
use std::io;
use std::sync::Mutex;
use std::thread::ThreadId;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::time::Instant;

use crate::loopback::{ConnectionPool, pool_error};
use crate::{BUCKET_IDLE_LIMIT, RateLimitStorage, SCRATCH_BYTES, ScratchSpace, audience_for};

// ANCHOR: client_per_request
/// Fetches `url` with a client built for this request alone: a new
/// connection pool, a new connector, a new TCP connection and handshake,
/// all thrown away when the function returns.
pub async fn fetch_with_new_client(url: &str) -> reqwest::Result<String> {
    let client = reqwest::Client::builder()
        .no_proxy() // loopback only: never route through a proxy from the environment
        .build()?;
    client.get(url).send().await?.text().await
}
// ANCHOR_END: client_per_request

// ANCHOR: static_rules
/// What a token must carry to be accepted. Like many library types, it
/// asks for a `&'static str`, and a value built per request is not one.
#[derive(Debug, Clone, Copy)]
pub struct TokenRules {
    audience: &'static str,
}

impl TokenRules {
    /// Rules for tokens issued to `audience`.
    pub fn new(audience: &'static str) -> Self {
        Self { audience }
    }

    /// Whether a token for `presented` passes.
    pub fn accepts(&self, presented: &str) -> bool {
        self.audience == presented
    }
}
// ANCHOR_END: static_rules

// ANCHOR: leaking_handler
/// `GET /tenants/{tenant}/tokens/{audience}`: checks a token's audience
/// against the tenant's. `Box::leak` makes the per-request string
/// `'static`, and so it lives until the process exits: every request leaks
/// one string.
async fn check_token(Path((tenant, presented)): Path<(String, String)>) -> StatusCode {
    let audience: &'static str = Box::leak(audience_for(&tenant).into_boxed_str());
    match TokenRules::new(audience).accepts(&presented) {
        true => StatusCode::OK,
        false => StatusCode::FORBIDDEN,
    }
}
// ANCHOR_END: leaking_handler

/// The service with the leaking handler.
pub fn router() -> Router {
    Router::new().route("/tenants/{tenant}/tokens/{audience}", get(check_token))
}

// ANCHOR: scratch_per_thread
/// Scratch buffers kept per thread, so that threads never contend for one.
/// A thread that exits never comes back for its buffer, and nothing removes
/// it: with a blocking pool that retires idle threads and starts new ones,
/// the map gains an entry for every thread that ever ran a job.
#[derive(Debug, Default)]
pub struct ScratchByThread {
    buffers: Mutex<HashMap<ThreadId, Vec<u8>>>,
}

impl ScratchSpace for ScratchByThread {
    fn with_scratch(&self, work: &mut dyn FnMut(&mut Vec<u8>)) {
        let me = std::thread::current().id();
        let taken = self.buffers.lock().unwrap().remove(&me);
        let mut buffer = taken.unwrap_or_else(|| Vec::with_capacity(SCRATCH_BYTES));
        work(&mut buffer);
        self.buffers.lock().unwrap().insert(me, buffer);
    }

    fn retained_bytes(&self) -> usize {
        let buffers = self.buffers.lock().unwrap();
        buffers.values().map(Vec::capacity).sum()
    }
}
// ANCHOR_END: scratch_per_thread

impl ScratchByThread {
    /// Threads that have a buffer here.
    pub fn threads_kept(&self) -> usize {
        self.buffers.lock().unwrap().len()
    }
}

// ANCHOR: pooled_query
/// Runs a query on a pooled connection and hands the connection back with
/// whatever read buffer the response left it.
pub async fn query(pool: &ConnectionPool, bytes: usize) -> io::Result<usize> {
    let mut connection = pool.get().await.map_err(pool_error)?;
    connection.query(bytes).await
}
// ANCHOR_END: pooled_query

// ANCHOR: sweep_without_shrink
/// Removes the buckets of clients idle for longer than the limit. The
/// entries go; the table they lived in keeps its size.
pub fn remove_idle(storage: &mut RateLimitStorage, now: Instant) {
    storage
        .buckets
        .retain(|_, bucket| now.duration_since(bucket.last_seen) <= BUCKET_IDLE_LIMIT);
}
// ANCHOR_END: sweep_without_shrink
