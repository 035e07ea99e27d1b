//! Every claim the chapter 2 page makes, measured. Drops are counted with a
//! counter per test (tests run in parallel); heap with jemalloc's per-thread
//! counter; tasks on a `current_thread` runtime with tokio's paused clock.

use std::rc::Rc;
use std::time::Duration;

use ch2_cycles::bad::Edges;
use ch2_cycles::{
    CHILDREN, CLEANUP_TREE_NODES, DropCounter, POLL_INTERVAL, POLLER_STATE_BYTES, TREE_DATA_BYTES,
    TREE_NODES, bad, deliberate, good,
};
use leakscope::heap::LiveBytes;
use leakscope::tasks::{TaskLeakCheck, warm_up_runtime};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const AN_HOUR: Duration = Duration::from_secs(3600);

/// An hour and half a poll interval: the hour's last poll and the end of
/// the test's sleep would otherwise fall on the same instant, and either
/// timer may fire first.
const AN_HOUR_OF_POLLS: Duration =
    Duration::from_millis((AN_HOUR.as_millis() + POLL_INTERVAL.as_millis() / 2) as u64);

#[test]
fn the_seed_tree_has_11_001_nodes_with_the_seeds_sizes() {
    assert_eq!(TREE_NODES, 11_001);
    assert_eq!(TREE_DATA_BYTES, 1024 + 1000 * 1024 + 10_000 * 512);

    let counter = DropCounter::new();
    let root = good::build_tree(&counter);
    let children = root.children.borrow();
    assert_eq!(children.len(), 1000);
    assert!(
        children
            .iter()
            .all(|child| child.children.borrow().len() == 10)
    );
    assert_eq!(children[999].children.borrow()[9].id, 1_000_010); // i*1000 + j
}

// ANCHOR: bad_tree
#[test]
fn bad_tree_frees_none_of_its_11_001_nodes_when_the_root_is_dropped() {
    let counter = DropCounter::new();
    let heap = LiveBytes::start();
    let root = bad::build_tree(&counter);
    // 1 owner (`root`) + 1000 children's `parent` + 1000 callbacks.
    assert_eq!(Rc::strong_count(&root), 1 + 2 * CHILDREN);
    let built_bytes = heap.live_bytes();
    let root_ref = Rc::downgrade(&root);

    drop(root);

    assert_eq!(counter.dropped(), 0);
    assert_eq!(heap.live_bytes(), built_bytes); // not one byte freed
    assert!(heap.live_bytes() >= TREE_DATA_BYTES as i64);
    assert_eq!(root_ref.strong_count(), 2 * CHILDREN); // the children still own it
    assert!(root_ref.upgrade().is_some());
}
// ANCHOR_END: bad_tree

// ANCHOR: callbacks
#[test]
fn bad_callbacks_keep_their_nodes_and_parents_alive() {
    let counter = DropCounter::new();
    let root = bad::build_tree(&counter);
    let first_child = Rc::clone(&root.children.borrow()[0]);
    drop(root);

    // Reachable only through the cycle, and still working.
    assert_eq!(
        first_child.call_back().as_deref(),
        Some("Node 1 callback, parent: 0")
    );
    // 1 (our clone) + the root's `children` + its own callback
    // + 10 grandchildren's `parent` + 10 grandchildren's callbacks.
    assert_eq!(Rc::strong_count(&first_child), 23);
}

#[test]
fn good_callbacks_work_while_the_nodes_exist_and_return_none_after() {
    let counter = DropCounter::new();
    let root = good::build_tree(&counter);
    let first_child = Rc::clone(&root.children.borrow()[0]);
    assert_eq!(
        first_child.call_back().as_deref(),
        Some("Node 1 callback, parent: 0")
    );

    drop(root);

    assert_eq!(counter.dropped(), TREE_NODES - 11); // all but the child and its 10
    assert_eq!(first_child.call_back(), None); // the parent is gone
    assert!(first_child.parent.borrow().upgrade().is_none());
}
// ANCHOR_END: callbacks

/// The tree's nodes and buffers are allocated on this thread and freed on
/// it; nothing else in the scenario allocates. So good means exactly zero.
// ANCHOR: good_tree
#[test]
fn good_tree_frees_all_11_001_nodes_and_every_byte() {
    let counter = DropCounter::new();
    let heap = LiveBytes::start();
    let root = good::build_tree(&counter);
    assert_eq!(Rc::strong_count(&root), 1); // only `root` owns it
    assert_eq!(Rc::weak_count(&root), 2 * CHILDREN); // parents + callbacks
    assert!(heap.live_bytes() >= TREE_DATA_BYTES as i64);
    let root_ref = Rc::downgrade(&root);

    drop(root);

    assert_eq!(counter.dropped(), TREE_NODES);
    assert!(root_ref.upgrade().is_none());
    drop(root_ref); // a `Weak` keeps the root's allocation (not its data)
    assert_eq!(heap.live_bytes(), 0);
}
// ANCHOR_END: good_tree

// ANCHOR: cleanup
#[test]
fn the_seeds_cleanup_walk_frees_the_whole_tree() {
    let counter = DropCounter::new();
    let heap = LiveBytes::start();
    let root = bad::build_cleanup_tree(&counter);

    bad::cleanup_tree(&root);
    drop(root);

    assert_eq!(counter.dropped(), CLEANUP_TREE_NODES); // 101
    assert_eq!(heap.live_bytes(), 0);
}

#[test]
fn a_cleanup_walk_that_forgets_one_edge_frees_no_node() {
    let counter = DropCounter::new();
    let heap = LiveBytes::start();
    let root = bad::build_cleanup_tree(&counter);
    let node_bytes = heap.live_bytes();

    bad::clear_edges(&root, Edges::AllButCallback);
    drop(root);

    assert_eq!(counter.dropped(), 0); // none of the 101 nodes
    // The walk did free the data buffers; the nodes themselves stay.
    let kept = heap.live_bytes();
    assert!(kept > 0 && kept < node_bytes, "kept {kept} of {node_bytes}");
}
// ANCHOR_END: cleanup

// ANCHOR: bad_poller
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bad_poller_outlives_its_owner_with_its_task_and_buffer() {
    let counter = DropCounter::new();
    let tasks = TaskLeakCheck::start();
    let heap = LiveBytes::start();

    let poller = bad::Poller::start(&counter);
    let poller_ref = std::sync::Arc::downgrade(&poller);
    drop(poller); // the last owner the program knows of
    tokio::time::sleep(AN_HOUR_OF_POLLS).await; // paused clock: milliseconds

    assert_eq!(counter.dropped(), 0);
    let zombie = poller_ref
        .upgrade()
        .expect("the task still owns the poller");
    assert_eq!(zombie.state.polls(), 36_000); // an hour at 10 polls a second
    drop(zombie);
    // The leak check waits for stragglers (on the paused clock) before it
    // calls the task leaked: the poller keeps polling meanwhile.
    assert_eq!(tasks.leaked_tasks().await, 1);
    assert!(heap.live_bytes() >= POLLER_STATE_BYTES as i64);
}
// ANCHOR_END: bad_poller

// ANCHOR: good_poller
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_poller_stops_its_task_and_frees_everything_when_dropped() {
    warm_up_runtime(1).await;

    let counter = DropCounter::new();
    let tasks = TaskLeakCheck::start();
    let heap = LiveBytes::start();

    let poller = good::Poller::start(&counter);
    tokio::time::sleep(AN_HOUR_OF_POLLS).await;
    assert_eq!(poller.state.polls(), 36_000);
    drop(poller);

    assert_eq!(counter.dropped(), 1);
    assert_eq!(tasks.leaked_tasks().await, 0);
    assert_eq!(heap.live_bytes(), 0);
}
// ANCHOR_END: good_poller

// ANCHOR: deliberate
#[test]
fn box_leak_and_mem_forget_keep_their_bytes_for_good() {
    let heap = LiveBytes::start();

    let config = deliberate::leak_config(4096);
    deliberate::forget_buffer(8192);

    assert_eq!(config.len(), 4096);
    assert_eq!(heap.live_bytes(), 4096 + 8192);
}

#[test]
fn into_raw_leaks_until_from_raw_takes_it_back() {
    let counter = DropCounter::new();
    let heap = LiveBytes::start();

    let handle = deliberate::into_handle(Rc::new(counter.token()));
    assert_eq!(counter.dropped(), 0);
    assert!(heap.live_bytes() > 0); // owned by nobody Rust can see

    // SAFETY: `handle` came from `into_handle` and is released once.
    drop(unsafe { deliberate::release_handle(handle) });
    assert_eq!(counter.dropped(), 1);
    assert_eq!(heap.live_bytes(), 0);
}
// ANCHOR_END: deliberate
