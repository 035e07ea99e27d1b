//! Peak heap while the good server receives an oversized upload, measured by
//! dhat in testing mode (one profiler per process, hence a file of its own).

use ch9_http::wire::{self, Framing};
use ch9_http::{MAX_BODY_BYTES, OVERSIZED_BODY_BYTES};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

// ANCHOR: good_body
#[test]
fn good_server_answers_413_without_holding_the_body() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let runtime = ch9_http::current_thread_runtime();
    runtime.block_on(async {
        let listener = ch9_http::bind_loopback().unwrap();
        let address = listener.local_addr().unwrap();
        let _server = ch9_http::good::spawn_server(listener, Default::default());

        // Announced by Content-Length: refused from the head alone, before
        // a byte of body is read.
        let before = dhat::HeapStats::get();
        let reply = wire::upload(address, OVERSIZED_BODY_BYTES, Framing::ContentLength).await;
        let peak_growth = dhat::HeapStats::get().max_bytes - before.curr_bytes;
        assert_eq!(reply.unwrap().status, 413);
        dhat::assert!(peak_growth < MAX_BODY_BYTES, "peak grew by {peak_growth} B");

        // Chunked, size unknown: read up to the limit, then refused. The peak
        // is what was read so far plus hyper's read buffer: a few times the
        // limit, never the body.
        let before = dhat::HeapStats::get();
        let reply = wire::upload(address, OVERSIZED_BODY_BYTES, Framing::Chunked).await;
        let peak_growth = dhat::HeapStats::get().max_bytes - before.curr_bytes;
        assert_eq!(reply.unwrap().status, 413);
        dhat::assert!(
            peak_growth < 4 * MAX_BODY_BYTES,
            "peak grew by {peak_growth} B"
        );
    });
}
// ANCHOR_END: good_body
