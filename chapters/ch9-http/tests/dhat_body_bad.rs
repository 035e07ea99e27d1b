//! Peak heap while the bad server receives an oversized upload, measured by
//! dhat in testing mode (one profiler per process, hence a file of its own).

use ch9_http::OVERSIZED_BODY_BYTES;
use ch9_http::wire::{self, Framing};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

// ANCHOR: bad_body
#[test]
fn bad_server_holds_a_whole_oversized_body_in_memory() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let runtime = ch9_http::current_thread_runtime();
    runtime.block_on(async {
        let listener = ch9_http::bind_loopback().unwrap();
        let address = listener.local_addr().unwrap();
        let _server = ch9_http::bad::spawn_server(listener);
        let before = dhat::HeapStats::get();

        let reply = wire::upload(address, OVERSIZED_BODY_BYTES, Framing::ContentLength)
            .await
            .unwrap();

        let peak_growth = dhat::HeapStats::get().max_bytes - before.curr_bytes;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.body,
            format!("received {OVERSIZED_BODY_BYTES} bytes\n")
        );
        // Twice the body at the peak: axum collects the received chunks,
        // then copies them into one contiguous buffer while they are alive.
        dhat::assert!(
            peak_growth >= 2 * OVERSIZED_BODY_BYTES,
            "peak grew by {peak_growth} B"
        );
    });
}
// ANCHOR_END: bad_body
