//! The fixed versions: keep only what you need, give back what you no
//! longer use.

use std::collections::HashMap;
use std::io;

use bytes::Bytes;

use crate::{KEPT_LEN, Sessions};

// ANCHOR: copy_what_you_keep
/// Remembers the identifier by copying it, like the seed's fix
/// (`copy(smallSlice, largeSlice[:10])`). The index owns ten bytes of its
/// own, and the body is freed when the caller drops it.
pub fn remember_id(index: &mut HashMap<u64, Bytes>, request_id: u64, body: Bytes) {
    index.insert(request_id, Bytes::copy_from_slice(&body[..KEPT_LEN]));
}
// ANCHOR_END: copy_what_you_keep

// ANCHOR: vec_copy
/// Copies the identifier into a vector of its own size; the body is freed
/// when it goes out of scope here.
pub fn id_by_copying(body: Vec<u8>) -> Vec<u8> {
    body[..KEPT_LEN].to_vec()
}
// ANCHOR_END: vec_copy

// ANCHOR: shrink_mostly_empty
/// A table is shrunk once fewer than one slot in this many is used. Waiting
/// until it is mostly empty keeps a table whose size goes up and down
/// from reallocating on every expiry.
pub const SHRINK_BELOW_ONE_IN: usize = 4;

/// Drops expired sessions, then gives back the table's memory when it is
/// mostly empty: `shrink_to_fit` moves the survivors into a table sized
/// for them and frees the old one.
pub fn expire_sessions(sessions: &mut Sessions, now: u64) {
    sessions.retain(|_, session| session.expires_at >= now);
    if sessions.len() * SHRINK_BELOW_ONE_IN < sessions.capacity() {
        sessions.shrink_to_fit();
    }
}
// ANCHOR_END: shrink_mostly_empty

// ANCHOR: bounded_buffer
/// The largest buffer kept between messages. Larger messages still work;
/// their buffer is freed once they are handled.
pub const MAX_KEPT_BUFFER: usize = 64 * 1024;

/// Handles one message in a reused buffer, and drops the buffer when a
/// large message has grown it past [`MAX_KEPT_BUFFER`].
pub fn handle_message(buffer: &mut Vec<u8>, message: &[u8]) -> u64 {
    buffer.clear();
    buffer.extend_from_slice(message);
    let checksum = crate::checksum(buffer);
    if buffer.capacity() > MAX_KEPT_BUFFER {
        *buffer = Vec::new();
    }
    checksum
}
// ANCHOR_END: bounded_buffer

// ANCHOR: purge
/// Frees a burst of small objects, then asks jemalloc to return every
/// arena's unused pages to the operating system now, instead of when its
/// decay timer gets round to it.
pub fn free_burst_and_purge(burst: Vec<crate::BurstObject>) -> io::Result<()> {
    drop(burst);
    purge_unused_pages()
}

/// `arena.<i>.purge` for every arena (`MALLCTL_ARENAS_ALL` is 4096).
pub fn purge_unused_pages() -> io::Result<()> {
    // A control that neither reads nor writes a value: tikv-jemalloc-ctl
    // always passes one, so call mallctl directly with null pointers.
    // SAFETY: the name is NUL-terminated, and no pointers are passed.
    let status = unsafe {
        tikv_jemalloc_sys::mallctl(
            c"arena.4096.purge".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    match status {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}
// ANCHOR_END: purge

// ANCHOR: decay
/// Makes the calling thread's arena return freed pages at once
/// (`dirty_decay_ms` = 0) and returns the previous setting (10 000 ms by
/// default). Each emptied page then costs a system call; a service would
/// rather pick a short decay for all arenas at start-up with
/// `MALLOC_CONF=dirty_decay_ms:1000`.
pub fn return_freed_pages_at_once() -> Result<isize, tikv_jemalloc_ctl::Error> {
    set_dirty_decay_ms(0)
}

/// Sets `dirty_decay_ms` of the calling thread's arena (-1: never return
/// pages; 0: at once) and returns the previous value.
pub fn set_dirty_decay_ms(decay_ms: isize) -> Result<isize, tikv_jemalloc_ctl::Error> {
    // SAFETY: `thread.arena` is an unsigned, `arena.<i>.dirty_decay_ms` an
    // ssize_t, as jemalloc documents them; both names are NUL-terminated.
    unsafe {
        let arena: u32 = tikv_jemalloc_ctl::raw::read(b"thread.arena\0")?;
        let control = format!("arena.{arena}.dirty_decay_ms\0");
        tikv_jemalloc_ctl::raw::update(control.as_bytes(), decay_ms)
    }
}
// ANCHOR_END: decay
