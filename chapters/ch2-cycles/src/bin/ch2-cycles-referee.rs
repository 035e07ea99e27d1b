//! `ch2-cycles-referee bad|good|zombie`: the scenarios for leak checkers the
//! project did not write (valgrind, LeakSanitizer).
//!
//! Unlike the main binary it keeps the system allocator, which both tools
//! need to see every allocation: it sets no `#[global_allocator]` and uses
//! nothing from leakscope (so jemalloc is not linked in; `verify.sh` checks).
//!
//! - `bad`: builds the leaking tree and drops its root, then runs the seed's
//!   cleanup walk with the callback forgotten. Both leak.
//! - `good`: the `Weak` tree, and the cleanup walk that clears every edge.
//!   Nothing leaks.
//! - `zombie`: the bad poller, still polling when the process exits. Its
//!   memory is reachable from the runtime, so the tools report no leak.

use std::process::ExitCode;

use ch2_cycles::bad::Edges;
use ch2_cycles::{DropCounter, POLL_INTERVAL, bad, good};

const USAGE: &str = "usage: ch2-cycles-referee bad|good|zombie";

fn leak_trees() -> usize {
    let counter = DropCounter::new();
    drop(bad::build_tree(&counter));
    let root = bad::build_cleanup_tree(&counter);
    bad::clear_edges(&root, Edges::AllButCallback);
    drop(root);
    counter.dropped()
}

fn free_trees() -> usize {
    let counter = DropCounter::new();
    drop(good::build_tree(&counter));
    let root = bad::build_cleanup_tree(&counter);
    bad::cleanup_tree(&root);
    drop(root);
    counter.dropped()
}

/// Leaves a poller running and exits without shutting the runtime down,
/// as a process killed in production would.
fn exit_with_zombie_poller() -> ! {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        drop(bad::Poller::start(&DropCounter::new()));
        tokio::time::sleep(POLL_INTERVAL * 3).await;
    });
    println!("exiting with the poller still alive");
    std::process::exit(0)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenario: fn() -> usize = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["bad"] => leak_trees,
        ["good"] => free_trees,
        ["zombie"] => exit_with_zombie_poller(),
        ["-h" | "--help"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        [] => {
            eprintln!("which scenario?\n{USAGE}");
            return ExitCode::from(2);
        }
        _ => {
            eprintln!("unknown arguments: {}\n{USAGE}", args.join(" "));
            return ExitCode::from(2);
        }
    };
    // A thread of its own: once it has exited, no stale pointer left in its
    // stack can make a conservative scanner think the leaked nodes are
    // still reachable.
    let dropped = std::thread::spawn(scenario)
        .join()
        .expect("the scenario does not panic");
    println!(
        "{} nodes built, {dropped} dropped",
        ch2_cycles::TREE_NODES + ch2_cycles::CLEANUP_TREE_NODES
    );
    ExitCode::SUCCESS
}
