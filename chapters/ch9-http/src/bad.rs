//! The leaking versions: an HTTP service and client with nothing that
//! bounds how long a connection or a request may last, or how much a
//! request may send.

use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::routes;

// ANCHOR: server_without_limits
/// The server most tutorials write: `axum::serve` on the routes.
///
/// `axum::serve` gives hyper no timer, so hyper's header-read timeout (30 s
/// by default, but only when a timer is set) never runs: a client that
/// sends half a request keeps its connection task, and the buffers hyper
/// allocated for it, for as long as it likes. There is no cap on
/// connections either, nor on how long a handler may take. The body limit
/// is switched off, as services that accept uploads often do, so `/upload`
/// reads any body whole into memory.
pub fn spawn_server(listener: TcpListener) -> JoinHandle<()> {
    let app = routes().layer(DefaultBodyLimit::disable());
    tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .expect("axum::serve never returns: it retries failed accepts");
    })
}
// ANCHOR_END: server_without_limits

// ANCHOR: client_without_timeout
/// A client with `reqwest`'s defaults, as `reqwest::Client::new()` makes
/// it: no timeout at all, so a request to a server that never answers never
/// ends.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy() // loopback only: never route through a proxy from the environment
        .build()
        .expect("a reqwest client with no TLS settings always builds")
}

/// Fetches `url` and returns the body as text.
pub async fn fetch(client: &reqwest::Client, url: &str) -> Result<String, reqwest::Error> {
    client.get(url).send().await?.text().await
}
// ANCHOR_END: client_without_timeout

// ANCHOR: client_per_request
/// Builds a new client for every request: a new connection pool, so a new
/// TCP connection (and its handshake) every time, closed again when the
/// client is dropped.
pub async fn fetch_with_new_client(url: &str) -> Result<String, reqwest::Error> {
    let client = client();
    fetch(&client, url).await
}
// ANCHOR_END: client_per_request

// ANCHOR: held_responses
/// The seed's unclosed body, in Rust: the responses are kept (in a list, a
/// struct, a task that has not finished) and their bodies never read. Each
/// one keeps its connection checked out of the client's pool, so every
/// request opens a new connection, and each stays open on both ends for as
/// long as its response is held.
pub async fn fetch_and_keep_responses(
    client: &reqwest::Client,
    url: &str,
    count: usize,
) -> Result<Vec<reqwest::Response>, reqwest::Error> {
    let mut responses = Vec::with_capacity(count);
    for _ in 0..count {
        responses.push(client.get(url).send().await?);
    }
    Ok(responses)
}
// ANCHOR_END: held_responses

// ANCHOR: status_only
/// Reads the status and drops the response with its body unread: no leak
/// (the drop releases the connection), but the connection cannot be
/// reused for the next request unless the body was read to its end.
pub async fn fetch_status_only(
    client: &reqwest::Client,
    url: &str,
) -> Result<reqwest::StatusCode, reqwest::Error> {
    Ok(client.get(url).send().await?.status())
}
// ANCHOR_END: status_only
