//! Measure memory and task leaks in tokio services.
//!
//! leakscope answers the questions a growing memory graph raises, with
//! numbers that tests can assert on:
//!
//! * [`heap`] — how big the heap is (jemalloc's statistics), and exactly how
//!   many bytes a piece of code left live on this thread.
//! * [`tasks`] — how many tokio tasks are alive, and a goleak-style check that
//!   a scope left none behind.
//! * [`report`] and [`chart`] — tables, sparklines and SVG charts for
//!   showing those numbers to people.
//!
//! ```
//! use leakscope::{heap::LiveBytes, tasks::TaskLeakCheck};
//!
//! #[global_allocator]
//! static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let tasks = TaskLeakCheck::start();
//! let heap = LiveBytes::start();
//!
//! let worker = tokio::spawn(async { vec![0u8; 64 * 1024].len() });
//! assert_eq!(worker.await.unwrap(), 64 * 1024);
//!
//! tasks.assert_no_leaks().await;
//! assert_eq!(heap.live_bytes(), 0);
//! # });
//! ```
//!
//! The library reads jemalloc but never installs it: a binary or test crate
//! that wants heap numbers sets `#[global_allocator]` to
//! `tikv_jemallocator::Jemalloc` itself.

pub mod chart;
pub mod heap;
pub mod report;
pub mod tasks;
