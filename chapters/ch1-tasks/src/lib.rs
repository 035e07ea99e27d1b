//! Chapter 1: task leaks.
//!
//! Three ways a tokio task outlives its purpose, each ported from the Go
//! seed's goroutine leaks, and their fixes:
//!
//! | scenario | [`bad`] | [`good`] |
//! |---|---|---|
//! | workers | 100 tasks loop forever with no exit condition | the same workers stop on a `CancellationToken` and are awaited through a `TaskTracker` |
//! | blocked send | a task waits forever to send on a full channel whose receiver is kept but never read | the receiver reads the value, or is dropped, and the send ends at once |
//! | detached handle | dropping a `JoinHandle` leaves the task running | an `AbortOnDropHandle` aborts the task when dropped |

pub mod bad;
pub mod good;

use std::time::Duration;

/// Workers started by the first scenario, as in the seed (`for i := 0; i < 100; i++`).
pub const WORKERS: usize = 100;

/// How long the seed waits for goroutines to start before counting them.
pub const STARTUP_WAIT: Duration = Duration::from_millis(100);

/// How long the good workers run before they are cancelled (the seed's 500 ms).
pub const GOOD_RUN_TIME: Duration = Duration::from_millis(500);

/// The value the blocked-send scenario tries to deliver (the seed's `42`).
pub const ANSWER: i32 = 42;
