//! Telling a leak from memory the allocator keeps.
//!
//! An RSS graph cannot tell them apart: both are "memory that went up and
//! did not come down". jemalloc's statistics can. A leak (or a growing
//! working set) raises `allocated`, the bytes the program holds. Allocator
//! retention leaves `allocated` where it was and keeps `resident` high:
//! pages that held freed objects and have not been returned yet.

use leakscope::heap::HeapStats;
use leakscope::report::format_bytes;

// ANCHOR: diagnose
/// What a change between two heap snapshots means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Diagnosis {
    /// The program holds more than before: a leak, or a working set that
    /// grew. A heap profile says which (chapter 5).
    HeldMore { grown_by: u64 },
    /// The program holds no more than before, but the allocator keeps
    /// freed pages resident: not a leak. Purging or decay returns them.
    AllocatorRetention { unused_resident: u64 },
    /// Neither grew by more than the threshold.
    Steady,
}

/// Resident bytes that hold neither live objects nor jemalloc's own
/// metadata: freed pages waiting to be reused or returned ("dirty" pages).
pub fn unused_resident(stats: &HeapStats) -> u64 {
    stats.resident.saturating_sub(stats.active + stats.metadata)
}

/// Compares two snapshots of the same process; changes up to `threshold`
/// bytes count as noise.
pub fn diagnose(before: &HeapStats, after: &HeapStats, threshold: u64) -> Diagnosis {
    let grown_by = after.allocated.saturating_sub(before.allocated);
    if grown_by > threshold {
        return Diagnosis::HeldMore { grown_by };
    }
    let unused_resident = unused_resident(after);
    if unused_resident > threshold {
        return Diagnosis::AllocatorRetention { unused_resident };
    }
    Diagnosis::Steady
}
// ANCHOR_END: diagnose

impl std::fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Diagnosis::HeldMore { grown_by } => {
                write!(
                    f,
                    "held more: allocated grew by {}",
                    format_bytes(*grown_by as i64)
                )
            }
            Diagnosis::AllocatorRetention { unused_resident } => write!(
                f,
                "allocator retention: {} resident but unused",
                format_bytes(*unused_resident as i64)
            ),
            Diagnosis::Steady => write!(f, "steady"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn stats(allocated: u64, active: u64, resident: u64) -> HeapStats {
        HeapStats {
            allocated,
            active,
            resident,
            mapped: resident,
            retained: 0,
            metadata: MIB,
        }
    }

    #[test]
    fn growing_allocated_is_held_more_even_with_unused_pages() {
        let before = stats(10 * MIB, 11 * MIB, 20 * MIB);
        let after = stats(50 * MIB, 51 * MIB, 90 * MIB);
        assert_eq!(
            diagnose(&before, &after, MIB),
            Diagnosis::HeldMore { grown_by: 40 * MIB }
        );
    }

    #[test]
    fn flat_allocated_with_high_resident_is_retention() {
        let before = stats(10 * MIB, 11 * MIB, 20 * MIB);
        let after = stats(10 * MIB, 11 * MIB, 80 * MIB);
        assert_eq!(
            diagnose(&before, &after, MIB),
            Diagnosis::AllocatorRetention {
                unused_resident: 68 * MIB
            }
        );
    }

    #[test]
    fn small_changes_are_steady() {
        let before = stats(10 * MIB, 11 * MIB, 12 * MIB);
        let after = stats(10 * MIB + 1000, 11 * MIB, 12 * MIB + 500);
        assert_eq!(diagnose(&before, &after, MIB), Diagnosis::Steady);
        assert_eq!(Diagnosis::Steady.to_string(), "steady");
    }
}
