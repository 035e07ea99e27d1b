//! The versions that do not grow.

use std::io;
use std::sync::Mutex;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::time::Instant;

use crate::loopback::{ConnectionPool, pool_error};
use crate::{
    BUCKET_IDLE_LIMIT, BUFFER_TARGET, RateLimitStorage, SCRATCH_BYTES, ScratchSpace, audience_for,
};

// ANCHOR: shared_client
/// One client for the whole service, built once: its pool keeps the
/// connection alive between requests.
pub fn shared_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy() // loopback only: never route through a proxy from the environment
        .build()
        .expect("a reqwest client with no TLS settings always builds")
}

/// Fetches `url` with the shared client.
pub async fn fetch(client: &reqwest::Client, url: &str) -> reqwest::Result<String> {
    client.get(url).send().await?.text().await
}
// ANCHOR_END: shared_client

// ANCHOR: borrowed_rules
/// The same rules, borrowing the audience for as long as they live: a
/// request's string will do.
#[derive(Debug, Clone, Copy)]
pub struct TokenRules<'a> {
    audience: &'a str,
}

impl<'a> TokenRules<'a> {
    /// Rules for tokens issued to `audience`.
    pub fn new(audience: &'a str) -> Self {
        Self { audience }
    }

    /// Whether a token for `presented` passes.
    pub fn accepts(&self, presented: &str) -> bool {
        self.audience == presented
    }
}

/// The same handler: the audience is an owned `String`, dropped with the
/// request.
async fn check_token(Path((tenant, presented)): Path<(String, String)>) -> StatusCode {
    let audience = audience_for(&tenant);
    match TokenRules::new(&audience).accepts(&presented) {
        true => StatusCode::OK,
        false => StatusCode::FORBIDDEN,
    }
}
// ANCHOR_END: borrowed_rules

/// The service with the fixed handler.
pub fn router() -> Router {
    Router::new().route("/tenants/{tenant}/tokens/{audience}", get(check_token))
}

// ANCHOR: scratch_pool
/// Scratch buffers in a pool, not tied to any thread: a job takes one and
/// puts it back. The pool holds at most as many buffers as jobs ever ran at
/// once, and never more than `max_idle`, however many threads come and go.
#[derive(Debug)]
pub struct ScratchPool {
    idle: Mutex<Vec<Vec<u8>>>,
    max_idle: usize,
}

impl ScratchPool {
    /// A pool that keeps at most `max_idle` buffers between jobs.
    pub fn new(max_idle: usize) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }
}

impl ScratchSpace for ScratchPool {
    fn with_scratch(&self, work: &mut dyn FnMut(&mut Vec<u8>)) {
        let taken = self.idle.lock().unwrap().pop();
        let mut buffer = taken.unwrap_or_else(|| Vec::with_capacity(SCRATCH_BYTES));
        work(&mut buffer);
        let mut idle = self.idle.lock().unwrap();
        if idle.len() < self.max_idle {
            idle.push(buffer);
        } // else: dropped here, freed
    }

    fn retained_bytes(&self) -> usize {
        self.idle.lock().unwrap().iter().map(Vec::capacity).sum()
    }
}
// ANCHOR_END: scratch_pool

// ANCHOR: pooled_query
/// Runs a query on a pooled connection, then shrinks its read buffer back to
/// [`BUFFER_TARGET`] before the connection goes back to the pool.
pub async fn query(pool: &ConnectionPool, bytes: usize) -> io::Result<usize> {
    let mut connection = pool.get().await.map_err(pool_error)?;
    let read = connection.query(bytes).await?;
    connection.shrink_buffer(BUFFER_TARGET);
    Ok(read)
}
// ANCHOR_END: pooled_query

// ANCHOR: sweep_and_shrink
/// Removes the buckets of idle clients, then gives the table's spare room
/// back: what LemmyNet/lemmy#3536 added to its rate limiter's sweep.
pub fn remove_idle(storage: &mut RateLimitStorage, now: Instant) {
    storage
        .buckets
        .retain(|_, bucket| now.duration_since(bucket.last_seen) <= BUCKET_IDLE_LIMIT);
    storage.buckets.shrink_to_fit();
}
// ANCHOR_END: sweep_and_shrink
