//! Bytes allocated per request with one shared client and with a new client
//! per request, counted by dhat in testing mode (one profiler per process,
//! hence a file of its own).

use ch9_http::{CLIENT_TIMEOUT, GREETING, bad, good};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Requests per measurement, after one warm-up request on each side.
const REQUESTS: u64 = 20;

// ANCHOR: allocations_per_request
#[test]
fn a_new_client_per_request_allocates_far_more_per_request_than_a_shared_one() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let runtime = ch9_http::current_thread_runtime();
    runtime.block_on(async {
        let listener = ch9_http::bind_loopback().unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let _server = good::spawn_server(listener, Default::default());
        let shared = good::client();
        let allocated_bytes = || dhat::HeapStats::get().total_bytes;

        good::fetch(&shared, &url, CLIENT_TIMEOUT).await.unwrap(); // connects once
        let before = allocated_bytes();
        for _ in 0..REQUESTS {
            assert_eq!(
                good::fetch(&shared, &url, CLIENT_TIMEOUT).await.unwrap(),
                GREETING
            );
        }
        let shared_per_request = (allocated_bytes() - before) / REQUESTS;

        bad::fetch_with_new_client(&url).await.unwrap();
        let before = allocated_bytes();
        for _ in 0..REQUESTS {
            assert_eq!(bad::fetch_with_new_client(&url).await.unwrap(), GREETING);
        }
        let new_client_per_request = (allocated_bytes() - before) / REQUESTS;

        // Both sides include the server's work for the request. The new
        // client adds its own pool and connector, a TCP handshake, and a new
        // connection's buffers on both ends: well over twice the bytes.
        dhat::assert!(
            new_client_per_request > 2 * shared_per_request,
            "{new_client_per_request} B per request with a new client, \
             {shared_per_request} B with a shared one"
        );
    });
}
// ANCHOR_END: allocations_per_request
