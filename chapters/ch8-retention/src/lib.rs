//! Chapter 8: memory kept alive by what you keep.
//!
//! Nothing here is lost the way a leaked task is lost: every byte is still
//! owned by something. It is just owned by more than the program needs —
//! a ten-byte slice that keeps its ten-megabyte buffer, a nearly empty map
//! that keeps its million slots, or freed pages the allocator keeps for
//! later.
//!
//! | scenario | [`bad`] | [`good`] |
//! |---|---|---|
//! | slice of a big buffer (seed 000 §3) | `Bytes::slice` keeps the 10 MiB body alive; `truncate` and an in-place `collect` keep its capacity | copy the 10 bytes you keep: `Bytes::copy_from_slice`, `to_vec` |
//! | capacity after removal | a 1 000 000-entry map emptied by `retain` keeps its table; a reused buffer keeps its largest size | shrink a mostly empty map; drop an oversized buffer |
//! | freed but resident | after a burst of small objects is freed, jemalloc keeps the dirty pages resident | purge the arenas (`arena.<i>.purge`), or set `dirty_decay_ms` to 0 |
//! | glibc ([`burst`], `examples/glibc_trim.rs`) | freed small chunks stay in RSS: in the fastbins, or below a live one | `malloc_trim(0)` returns them |
//!
//! [`retention`] tells the last two apart from a leak: a leak grows
//! `allocated`; allocator retention leaves `allocated` flat and `resident`
//! high.

pub mod bad;
pub mod burst;
pub mod good;
pub mod retention;

pub use burst::{BURST_OBJECT_SIZE, BURST_OBJECTS, BurstObject, burst_of_small_objects, rss_bytes};

/// Size of the big buffer: the seed's `make([]byte, 10*1024*1024)` (10 MiB).
pub const BODY_SIZE: usize = 10 * 1024 * 1024;

/// How much of it is really needed: the seed's `largeSlice[:10]`.
pub const KEPT_LEN: usize = 10;

/// Entries in the session table at the peak of a burst (scenario 2).
pub const MAP_ENTRIES: usize = 1_000_000;

/// Sessions still live once the burst is over (scenario 2): the table's
/// steady state, a thousandth of its peak.
pub const STEADY_SESSIONS: usize = 1_000;

/// A request body as it arrives: [`BODY_SIZE`] bytes whose first
/// [`KEPT_LEN`] are an identifier worth keeping.
pub fn read_body(body_id: u8) -> Vec<u8> {
    let mut body = vec![0u8; BODY_SIZE];
    body[..KEPT_LEN].fill(b'0' + body_id % 10);
    body
}

/// A session in the table of scenario 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub user_id: u64,
    /// When it expires, in ticks of whatever clock the caller uses.
    pub expires_at: u64,
}

/// Sessions by id.
pub type Sessions = std::collections::HashMap<u64, Session>;

/// Starts `count` sessions; session `i` expires at tick `i`, so expiring at
/// tick `count - keep` leaves exactly `keep` of them.
pub fn fill_sessions(sessions: &mut Sessions, count: usize) {
    for session_id in 0..count as u64 {
        let session = Session {
            user_id: session_id,
            expires_at: session_id,
        };
        sessions.insert(session_id, session);
    }
}

/// A cheap digest of a message, standing in for whatever a handler does
/// with it.
pub fn checksum(message: &[u8]) -> u64 {
    message.iter().map(|&byte| u64::from(byte)).sum()
}

/// `1000000` as `1,000,000`, for labels that quote the constants above.
pub fn with_thousands_separators(count: usize) -> String {
    let digits = count.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(with_thousands_separators(0), "0");
        assert_eq!(with_thousands_separators(999), "999");
        assert_eq!(with_thousands_separators(1_000), "1,000");
        assert_eq!(with_thousands_separators(1_000_000), "1,000,000");
    }
}
