//! Every claim of the chapter 8 page about what a version keeps alive,
//! measured with jemalloc's per-thread counter (exact: other tests running
//! in parallel allocate on their own threads).
//!
//! Process-wide claims (resident pages, RSS) are in their own test files,
//! one test each, so nothing else runs in the process while they measure.

use std::collections::HashMap;
use std::sync::LazyLock;

use bytes::Bytes;
use ch8_retention::{
    BODY_SIZE, KEPT_LEN, MAP_ENTRIES, STEADY_SESSIONS, Session, Sessions, bad, fill_sessions, good,
    read_body,
};
use leakscope::heap::LiveBytes;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const KIB: i64 = 1024;

/// Expiring at this tick leaves exactly [`STEADY_SESSIONS`] sessions.
const EXPIRE_AT: u64 = (MAP_ENTRIES - STEADY_SESSIONS) as u64;

// ANCHOR: slice_claims
#[test]
fn bad_slice_of_a_10_mib_body_keeps_all_10_mib_alive() {
    let heap = LiveBytes::start();
    let mut index = HashMap::new();

    bad::remember_id(&mut index, 1, Bytes::from(read_body(1)));

    assert_eq!(index[&1].len(), KEPT_LEN); // ten bytes of data…
    assert!(heap.live_bytes() >= BODY_SIZE as i64); // …and 10 MiB of memory
    assert!(heap.live_bytes() < BODY_SIZE as i64 + KIB);
}

#[test]
fn good_copy_of_the_id_keeps_less_than_1_kib() {
    let heap = LiveBytes::start();
    let mut index = HashMap::new();

    good::remember_id(&mut index, 1, Bytes::from(read_body(1)));

    assert_eq!(&index[&1][..], b"1111111111");
    // The copy, its `Bytes` handle and the index's table: the body is gone.
    assert!(heap.live_bytes() < KIB, "kept {} bytes", heap.live_bytes());
}
// ANCHOR_END: slice_claims

// ANCHOR: vec_claims
#[test]
fn bad_truncate_and_collect_keep_the_whole_body_allocation() {
    let heap = LiveBytes::start();

    let truncated = bad::id_by_truncating(read_body(2));
    let collected = bad::id_by_collecting(read_body(3));

    assert_eq!((truncated.len(), collected.len()), (KEPT_LEN, KEPT_LEN));
    assert_eq!(truncated.capacity(), BODY_SIZE);
    assert_eq!(collected.capacity(), BODY_SIZE);
    assert_eq!(heap.live_bytes(), 2 * BODY_SIZE as i64);
}

#[test]
fn good_to_vec_keeps_exactly_one_16_byte_size_class() {
    let heap = LiveBytes::start();

    let copied = good::id_by_copying(read_body(4));

    assert_eq!(copied, b"4444444444");
    assert_eq!(copied.capacity(), KEPT_LEN);
    assert_eq!(heap.live_bytes(), 16); // 10 bytes round up to jemalloc's 16
}
// ANCHOR_END: vec_claims

/// Bytes one slot of the session table holds, not counting its control byte.
const SLOT_SIZE: usize = size_of::<(u64, Session)>();

// ANCHOR: session_claims
/// The session table at the peak of the burst, filled once per test process
/// and cloned by each test: a clone copies the table's memory in one go,
/// far faster than a million inserts, and has exactly as many slots.
/// Call it before starting a `LiveBytes` scope, so the first call's filling
/// is not counted.
fn table_at_peak() -> &'static Sessions {
    static PEAK: LazyLock<Sessions> = LazyLock::new(|| {
        let mut sessions = Sessions::new();
        fill_sessions(&mut sessions, MAP_ENTRIES);
        sessions
    });
    &PEAK
}

#[test]
fn bad_retain_keeps_a_table_for_a_million_sessions_to_hold_a_thousand() {
    let mut sessions = table_at_peak().clone();
    let heap = LiveBytes::start();

    bad::expire_sessions(&mut sessions, EXPIRE_AT);

    assert_eq!(sessions.len(), STEADY_SESSIONS);
    assert_eq!(heap.live_bytes(), 0); // nothing was freed
    let table_bytes = LiveBytes::start();
    drop(sessions);
    assert!(-table_bytes.live_bytes() >= (MAP_ENTRIES * SLOT_SIZE) as i64);
}

/// A table for 1 000 sessions: 2 048 slots of 24 bytes plus a control byte
/// each, 51 216 bytes, in jemalloc's 56 KiB size class.
const STEADY_TABLE_MAX: i64 = 64 * KIB;

#[test]
fn good_expiry_shrinks_the_table_to_fit_the_thousand_left() {
    let peak = table_at_peak();
    let heap = LiveBytes::start();
    let mut sessions = peak.clone();

    good::expire_sessions(&mut sessions, EXPIRE_AT);

    assert_eq!(sessions.len(), STEADY_SESSIONS);
    assert!(sessions.capacity() < 2 * STEADY_SESSIONS);
    assert!(
        heap.live_bytes() <= STEADY_TABLE_MAX,
        "{}",
        heap.live_bytes()
    );
}

#[test]
fn emptied_table_is_kept_whole_by_bad_and_freed_entirely_by_good() {
    let after_every_session = MAP_ENTRIES as u64;
    let peak = table_at_peak();
    let heap = LiveBytes::start();
    let mut sessions = peak.clone();

    bad::expire_sessions(&mut sessions, after_every_session);
    assert!(sessions.is_empty());
    assert!(heap.live_bytes() >= (MAP_ENTRIES * SLOT_SIZE) as i64);

    good::expire_sessions(&mut sessions, after_every_session);
    assert_eq!(sessions.capacity(), 0);
    assert_eq!(heap.live_bytes(), 0); // not one byte of the table is left
}

#[test]
fn good_expiry_leaves_a_table_more_than_a_quarter_full_alone() {
    let mut sessions = table_at_peak().clone();
    let heap = LiveBytes::start();

    // Half the sessions expire: the table is not mostly empty yet.
    good::expire_sessions(&mut sessions, (MAP_ENTRIES / 2) as u64);

    assert_eq!(sessions.len(), MAP_ENTRIES / 2);
    assert_eq!(heap.live_bytes(), 0); // no new table, the old one kept
}
// ANCHOR_END: session_claims

/// One 10 MiB message, then a small one, through the same buffer.
fn buffer_after_messages(handle_message: fn(&mut Vec<u8>, &[u8]) -> u64) -> (Vec<u8>, u64) {
    let mut buffer = Vec::new();
    let large = vec![1u8; BODY_SIZE];
    let mut checksum = handle_message(&mut buffer, &large);
    drop(large);
    checksum += handle_message(&mut buffer, b"small");
    (buffer, checksum)
}

// ANCHOR: buffer_claims
#[test]
fn bad_reused_buffer_keeps_10_mib_after_one_large_message() {
    let heap = LiveBytes::start();

    let (buffer, _) = buffer_after_messages(bad::handle_message);

    assert_eq!(buffer.len(), "small".len());
    assert_eq!(buffer.capacity(), BODY_SIZE);
    assert_eq!(heap.live_bytes(), BODY_SIZE as i64);
}

#[test]
fn good_reused_buffer_drops_back_below_the_64_kib_cap() {
    let heap = LiveBytes::start();

    let (buffer, checksum) = buffer_after_messages(good::handle_message);

    assert!(buffer.capacity() <= good::MAX_KEPT_BUFFER);
    assert!(heap.live_bytes() <= good::MAX_KEPT_BUFFER as i64);
    // Same work done as the bad version.
    assert_eq!(checksum, buffer_after_messages(bad::handle_message).1);
}
// ANCHOR_END: buffer_claims
