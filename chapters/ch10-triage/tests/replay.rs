//! The peak replay, for a ratchet: the same wave again and again leaves
//! nothing per cycle; a bigger wave raises resident memory once. Resident
//! memory is process-wide, so this file (one process) has one test.

use ch10_triage::{REQUEST_BUFFER_BYTES, WAVE, bad};
use leakscope::doctor::replay_peak;

#[global_allocator]
static ALLOC: leakscope::alloc::CountingAlloc<tikv_jemallocator::Jemalloc> =
    leakscope::alloc::CountingAlloc::new(tikv_jemallocator::Jemalloc);

/// Resident memory may move by a few pages per cycle (jemalloc's metadata,
/// the test harness's own thread).
const RESIDENT_NOISE: i64 = 512 * 1024;

// ANCHOR: replay
#[test]
fn the_same_wave_replayed_leaves_nothing_and_a_bigger_one_raises_the_peak() {
    let usual = replay_peak(5, || bad::serve_wave(WAVE));
    usual.assert_no_live_growth(0);
    // The second wave still maps a little more; from the third on, the
    // pages are reused.
    usual.skip(1).assert_no_resident_growth(RESIDENT_NOISE);

    let bigger = replay_peak(3, || bad::serve_wave(2 * WAVE));
    // The first bigger wave needs WAVE more buffers' pages than ever
    // before; the ones after it reuse them.
    let wave_bytes = (WAVE * REQUEST_BUFFER_BYTES) as i64;
    assert!(
        bigger.resident_after_cycle[0] >= wave_bytes * 9 / 10,
        "{:?}",
        bigger.resident_after_cycle
    );
    bigger.assert_no_live_growth(0);
    bigger.skip(1).assert_no_resident_growth(RESIDENT_NOISE);
}
// ANCHOR_END: replay
