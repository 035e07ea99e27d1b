//! dhat, in testing mode, as a second witness for the tree claims: it counts
//! every block the process holds (`curr_blocks`, `curr_bytes`).
//!
//! Process-wide counts need a process where nothing else allocates: this
//! file runs without the test harness (`harness = false`), whose own threads
//! would allocate while the test counts.

use ch2_cycles::{DropCounter, TREE_DATA_BYTES, TREE_NODES, bad, good};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() {
    dhat_sees_the_bad_tree_stay_and_the_good_tree_go();
}

// ANCHOR: dhat
fn dhat_sees_the_bad_tree_stay_and_the_good_tree_go() {
    let _profiler = dhat::Profiler::builder()
        .testing()
        // Written only if an assertion fails.
        .file_name(concat!(
            env!("CARGO_TARGET_TMPDIR"),
            "/ch2-cycles-dhat.json"
        ))
        .build();
    let counter = DropCounter::new();

    let before = dhat::HeapStats::get();
    drop(good::build_tree(&counter));
    let after_good = dhat::HeapStats::get();
    dhat::assert_eq!(counter.dropped(), TREE_NODES);
    dhat::assert_eq!(after_good.curr_blocks, before.curr_blocks);
    dhat::assert_eq!(after_good.curr_bytes, before.curr_bytes);

    drop(bad::build_tree(&counter));
    let after_bad = dhat::HeapStats::get();
    let leaked_blocks = after_bad.curr_blocks - after_good.curr_blocks;
    let leaked_bytes = after_bad.curr_bytes - after_good.curr_bytes;
    // Per node: the `Rc` allocation and its data; per non-root node, a boxed
    // callback; per parent (the root and 1000 children), a `children` Vec.
    dhat::assert_eq!(leaked_blocks, 2 * TREE_NODES + (TREE_NODES - 1) + 1001);
    dhat::assert!(leaked_bytes >= TREE_DATA_BYTES);
    println!("bad tree left {leaked_blocks} blocks, {leaked_bytes} bytes");
}
// ANCHOR_END: dhat
