//! The seed's unclosed response body, in Rust: what a held `Response` and
//! an unread body do to the client's connections, counted by the server on
//! real loopback sockets. Server and client share one `current_thread`
//! runtime on the real clock (nothing here waits for a timeout).

use std::net::SocketAddr;

use ch9_http::good::Limits;
use ch9_http::{DOWNLOAD_BYTES, bad, good, wait_until};
use tokio::net::TcpListener;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Requests in each scenario.
const REQUESTS: usize = 20;

fn bind_loopback() -> (TcpListener, SocketAddr) {
    let listener = ch9_http::bind_loopback().expect("bind loopback");
    let address = listener
        .local_addr()
        .expect("a bound listener has an address");
    (listener, address)
}

fn download_url(address: SocketAddr) -> String {
    format!("http://{address}/download")
}

// ANCHOR: held_responses
#[tokio::test(flavor = "current_thread")]
async fn held_responses_keep_one_open_connection_each_until_they_are_dropped() {
    let (listener, address) = bind_loopback();
    let server = good::spawn_server(listener, Limits::default());
    let client = bad::client();

    let responses = bad::fetch_and_keep_responses(&client, &download_url(address), REQUESTS)
        .await
        .unwrap();

    assert_eq!(server.stats().accepted(), REQUESTS); // no reuse while held
    assert_eq!(server.stats().open(), REQUESTS);
    drop(responses);
    wait_until("every held connection closed", || {
        server.stats().open() == 0
    })
    .await;
}
// ANCHOR_END: held_responses

// ANCHOR: unread_bodies
#[tokio::test(flavor = "current_thread")]
async fn a_dropped_unread_response_closes_its_connection_instead_of_reusing_it() {
    let (listener, address) = bind_loopback();
    let server = good::spawn_server(listener, Limits::default());
    let client = bad::client();

    for _ in 0..REQUESTS {
        let status = bad::fetch_status_only(&client, &download_url(address))
            .await
            .unwrap();
        assert_eq!(status, 200);
    }

    // Each dropped body closed its connection: nothing is held, and
    // nothing was reused either.
    assert_eq!(server.stats().accepted(), REQUESTS);
    wait_until("every connection closed", || server.stats().open() == 0).await;
}

#[tokio::test(flavor = "current_thread")]
async fn read_bodies_let_every_request_reuse_one_connection() {
    let (listener, address) = bind_loopback();
    let server = good::spawn_server(listener, Limits::default());
    let client = bad::client();

    for _ in 0..REQUESTS {
        let body = bad::fetch(&client, &download_url(address)).await.unwrap();
        assert_eq!(body.len(), DOWNLOAD_BYTES);
    }

    assert_eq!(server.stats().accepted(), 1);
    assert_eq!(server.stats().open(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_body_that_arrived_with_the_headers_frees_its_connection_even_when_held() {
    let (listener, address) = bind_loopback();
    let server = good::spawn_server(listener, Limits::default());
    let client = bad::client();

    let greeting_url = format!("http://{address}/");
    let responses = bad::fetch_and_keep_responses(&client, &greeting_url, REQUESTS)
        .await
        .unwrap();

    assert_eq!(responses.len(), REQUESTS);
    assert_eq!(server.stats().accepted(), 1);
}
// ANCHOR_END: unread_bodies
