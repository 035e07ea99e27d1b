//! The versions that keep more than they need: each holds a few bytes of
//! data and megabytes of memory.

use std::collections::HashMap;

use bytes::Bytes;

use crate::{KEPT_LEN, Sessions};

// ANCHOR: slice_keeps_body
/// Remembers the identifier at the start of a request body, like the seed's
/// `smallSlice := largeSlice[:10]`.
///
/// `Bytes::slice` does not copy: the ten-byte slice shares the body's
/// buffer, and the whole buffer lives as long as the index keeps the slice.
pub fn remember_id(index: &mut HashMap<u64, Bytes>, request_id: u64, body: Bytes) {
    index.insert(request_id, body.slice(..KEPT_LEN));
}
// ANCHOR_END: slice_keeps_body

// ANCHOR: vec_keeps_capacity
/// Keeps the identifier by shortening the body: `truncate` changes the
/// length, never the capacity, so all of the body's allocation is kept.
pub fn id_by_truncating(mut body: Vec<u8>) -> Vec<u8> {
    body.truncate(KEPT_LEN);
    body
}

/// The same with an iterator. `Vec`'s `into_iter` … `collect` reuses the
/// source allocation when it can ("in-place collect"), so the ten-byte
/// result has the body's capacity too.
pub fn id_by_collecting(body: Vec<u8>) -> Vec<u8> {
    body.into_iter().take(KEPT_LEN).collect()
}
// ANCHOR_END: vec_keeps_capacity

// ANCHOR: retain_keeps_table
/// Drops expired sessions. The table keeps every slot it ever grew to:
/// after a burst of a million sessions, a thousand live in a table sized
/// for a million.
pub fn expire_sessions(sessions: &mut Sessions, now: u64) {
    sessions.retain(|_, session| session.expires_at >= now);
}
// ANCHOR_END: retain_keeps_table

// ANCHOR: clear_keeps_buffer
/// Handles one message in a buffer reused across messages, and returns a
/// checksum of it. `clear` keeps the capacity, so one large message grows
/// the buffer for the rest of the connection's life.
pub fn handle_message(buffer: &mut Vec<u8>, message: &[u8]) -> u64 {
    buffer.clear();
    buffer.extend_from_slice(message);
    crate::checksum(buffer)
}
// ANCHOR_END: clear_keeps_buffer

// ANCHOR: free_and_forget
/// Frees a burst of small objects and does nothing else: `allocated` drops
/// at once, but jemalloc keeps the pages they lived on resident, to reuse
/// them, until its decay timer (10 s by default) returns them — and that
/// timer only runs when the arena is busy.
pub fn free_burst(burst: Vec<crate::BurstObject>) {
    drop(burst);
}
// ANCHOR_END: free_and_forget
