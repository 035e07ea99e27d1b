//! Chapter 2: reference cycles.
//!
//! Go's garbage collector frees a cycle of pointers once nothing outside
//! reaches it. Rust's `Rc` and `Arc` count references instead, and a cycle
//! keeps every count above zero: the memory is never freed. This crate ports
//! the Go seed's tree (section 2.6.3, §2) and shows the leak, the seed's
//! remedy, and the Rust fix:
//!
//! | scenario | [`bad`] | [`good`] |
//! |---|---|---|
//! | tree | children hold an `Rc` of their parent, callbacks capture `Rc`s: dropping the root frees none of the 11 001 nodes | parent pointers and callbacks hold `Weak`: dropping the root frees every node |
//! | the seed's cleanup walk | clearing every edge by hand frees the tree; forget one edge (the callback) and none of the nodes is freed | not needed: no edge points back up |
//! | poller task | a struct owns its task, the task holds an `Arc` of the struct: neither ever ends | the task holds a `Weak`; dropping the struct aborts the task |
//!
//! [`deliberate`] shows the leaks Rust offers on purpose (`Box::leak`,
//! `mem::forget`, `Rc::into_raw`) and what they are for.

pub mod bad;
pub mod deliberate;
pub mod good;

use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Data held by the root (`root := &Node{id: 0, data: make([]byte, 1024)}`).
pub const ROOT_DATA_BYTES: usize = 1024;

/// Children of the root (`for i := 1; i <= 1000; i++`).
pub const CHILDREN: usize = 1000;

/// Data held by each child (`data: make([]byte, 1024)`).
pub const CHILD_DATA_BYTES: usize = 1024;

/// Grandchildren under each child (`for j := 1; j <= 10; j++`).
pub const GRANDCHILDREN_PER_CHILD: usize = 10;

/// Data held by each grandchild (`data: make([]byte, 512)`).
pub const GRANDCHILD_DATA_BYTES: usize = 512;

/// Nodes in the seed's tree, counting the root: 1 + 1000 + 10 000.
pub const TREE_NODES: usize = 1 + CHILDREN + CHILDREN * GRANDCHILDREN_PER_CHILD;

/// Bytes of `data` in the seed's tree: 1 KiB + 1000 × 1 KiB + 10 000 × 512 B.
pub const TREE_DATA_BYTES: usize = ROOT_DATA_BYTES
    + CHILDREN * CHILD_DATA_BYTES
    + CHILDREN * GRANDCHILDREN_PER_CHILD * GRANDCHILD_DATA_BYTES;

/// Children in the tree the seed builds again to show its cleanup walk
/// (`for i := 1; i <= 100; i++`, each with 1 KiB and no grandchildren).
pub const CLEANUP_CHILDREN: usize = 100;

/// Nodes in the cleanup tree, counting the root.
pub const CLEANUP_TREE_NODES: usize = 1 + CLEANUP_CHILDREN;

/// How often the poller of the task scenario does its work.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// State the poller keeps (a buffer it refreshes on each poll).
pub const POLLER_STATE_BYTES: usize = 1 << 20;

/// Counts how many of the values holding one of its [`DropToken`]s have been
/// dropped.
///
/// Each test makes its own counter, so tests running in parallel do not
/// disturb each other's counts (a global static would).
#[derive(Debug, Clone, Default)]
pub struct DropCounter(Arc<AtomicUsize>);

impl DropCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// A token to store in a value: when the value is dropped, the token is
    /// too, and the count goes up by one.
    pub fn token(&self) -> DropToken {
        DropToken(Arc::clone(&self.0))
    }

    /// How many tokens have been dropped so far.
    pub fn dropped(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// Held by a value to report its drop to a [`DropCounter`].
#[derive(Debug)]
pub struct DropToken(Arc<AtomicUsize>);

impl Drop for DropToken {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

// ANCHOR: build_tree
/// Builds the seed's tree: a root with 1 KiB of data, 1000 children with
/// 1 KiB each, and 10 grandchildren of 512 B under every child. The node type
/// and how a child is attached (`AddChild`) are the caller's: the bad and the
/// good tree build the same shape.
pub fn build_seed_tree<N>(
    new_node: impl Fn(usize, usize) -> Rc<N>, // (id, data bytes)
    add_child: impl Fn(&Rc<N>, &Rc<N>),       // (parent, child)
) -> Rc<N> {
    let root = new_node(0, ROOT_DATA_BYTES);
    for i in 1..=CHILDREN {
        let child = new_node(i, CHILD_DATA_BYTES);
        add_child(&root, &child);
        for j in 1..=GRANDCHILDREN_PER_CHILD {
            let grandchild = new_node(i * 1000 + j, GRANDCHILD_DATA_BYTES);
            add_child(&child, &grandchild);
        }
    }
    root
}
// ANCHOR_END: build_tree

/// Builds the smaller tree of the seed's cleanup demonstration: a root with
/// 1 KiB and 100 children of 1 KiB, attached with `add_child`.
pub fn build_cleanup_tree<N>(
    new_node: impl Fn(usize, usize) -> Rc<N>,
    add_child: impl Fn(&Rc<N>, &Rc<N>),
) -> Rc<N> {
    let root = new_node(0, ROOT_DATA_BYTES);
    for i in 1..=CLEANUP_CHILDREN {
        add_child(&root, &new_node(i, CHILD_DATA_BYTES));
    }
    root
}

/// What the poller of the task scenario holds and does, the same on both
/// sides: a 1 MiB buffer it updates on every poll.
#[derive(Debug)]
pub struct PollerState {
    buffer: Mutex<Vec<u8>>,
    polls: AtomicUsize,
    _dropped: DropToken,
}

impl PollerState {
    /// A fresh state whose drop `counter` will see.
    pub fn new(counter: &DropCounter) -> Self {
        Self {
            buffer: Mutex::new(vec![0; POLLER_STATE_BYTES]),
            polls: AtomicUsize::new(0),
            _dropped: counter.token(),
        }
    }

    /// One unit of the poller's work: touches one byte of the buffer.
    pub fn poll_once(&self) {
        let poll = self.polls.fetch_add(1, Ordering::Relaxed);
        let mut buffer = self
            .buffer
            .lock()
            .expect("the poller's lock is never poisoned");
        let slot = poll % buffer.len();
        buffer[slot] = buffer[slot].wrapping_add(1);
    }

    /// How many polls have run.
    pub fn polls(&self) -> usize {
        self.polls.load(Ordering::Relaxed)
    }
}
