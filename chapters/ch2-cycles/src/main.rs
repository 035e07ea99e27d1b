//! `just run ch2-cycles [bad|good]`: builds each structure, lets go of it,
//! and prints what was freed, bad vs good side by side.

use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;

use ch2_cycles::bad::Edges;
use ch2_cycles::{
    CLEANUP_TREE_NODES, DropCounter, POLL_INTERVAL, TREE_DATA_BYTES, TREE_NODES, bad, good,
};
use leakscope::heap::LiveBytes;
use leakscope::report::{Table, format_bytes, format_bytes_delta};
use leakscope::tasks::TaskLeakCheck;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const USAGE: &str = "usage: ch2-cycles [bad|good]   (no argument: both, side by side)";

/// How long the poller runs before, and again after, its owner drops it.
const POLLER_RUN_TIME: std::time::Duration = POLL_INTERVAL.saturating_mul(10);

/// What is left once a scenario let go of everything it built.
struct Leftovers {
    dropped: usize,
    live_bytes: i64,
    leaked_tasks: usize,
}

/// Builds a tree, runs `before_drop` on its root, drops the root, and
/// counts what was freed. Whatever leaks stays leaked until the process
/// exits (a few MiB at most).
fn drop_tree<N>(
    build: impl FnOnce(&DropCounter) -> Rc<N>,
    before_drop: impl FnOnce(&Rc<N>),
) -> Leftovers {
    let counter = DropCounter::new();
    let heap = LiveBytes::start();
    let root = build(&counter);
    before_drop(&root);
    drop(root);
    Leftovers {
        dropped: counter.dropped(),
        live_bytes: heap.live_bytes(),
        leaked_tasks: 0,
    }
}

/// Starts a poller on its own single-threaded runtime (so every byte and
/// task is counted exactly), lets it run, drops it, lets time pass, and
/// counts what is still there.
fn drop_poller<P>(start: fn(&DropCounter) -> Arc<P>) -> Leftovers {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        // The first timer, aborted task and leak check make the runtime
        // allocate structures it keeps; pay for them before the baseline.
        let warm_up_tasks = TaskLeakCheck::start();
        let warm_up = good::Poller::start(&DropCounter::new());
        tokio::time::sleep(POLL_INTERVAL).await;
        drop(warm_up);
        warm_up_tasks.assert_no_leaks().await;

        let counter = DropCounter::new();
        let tasks = TaskLeakCheck::start();
        let heap = LiveBytes::start();
        let poller = start(&counter);
        tokio::time::sleep(POLLER_RUN_TIME).await;
        drop(poller);
        tokio::time::sleep(POLLER_RUN_TIME).await;
        Leftovers {
            dropped: counter.dropped(),
            live_bytes: heap.live_bytes(),
            leaked_tasks: tasks.leaked_tasks().await,
        }
    })
    // Dropping the runtime drops the leaked task, and with it the cycle.
}

struct Row {
    scenario: &'static str,
    built: usize,
    bad: fn() -> Leftovers,
    good: fn() -> Leftovers,
}

fn rows() -> [Row; 3] {
    [
        Row {
            scenario: "tree: drop the root",
            built: TREE_NODES,
            bad: || drop_tree(bad::build_tree, |_| {}),
            good: || drop_tree(good::build_tree, |_| {}),
        },
        Row {
            scenario: "tree: clear edges, then drop",
            built: CLEANUP_TREE_NODES,
            // bad: the seed's walk with one edge forgotten; good: the full walk.
            bad: || {
                drop_tree(bad::build_cleanup_tree, |root| {
                    bad::clear_edges(root, Edges::AllButCallback)
                })
            },
            good: || drop_tree(bad::build_cleanup_tree, bad::cleanup_tree),
        },
        Row {
            scenario: "poller owning its task",
            built: 1,
            bad: || drop_poller(bad::Poller::start),
            good: || drop_poller(good::Poller::start),
        },
    ]
}

fn cells(built: usize, leftovers: &Leftovers) -> [String; 3] {
    [
        format!("{} of {built}", leftovers.dropped),
        leftovers.leaked_tasks.to_string(),
        format_bytes_delta(leftovers.live_bytes),
    ]
}

fn verdict(side: &str, built: usize, leftovers: &Leftovers) -> String {
    let kept = built - leftovers.dropped;
    match (kept, leftovers.leaked_tasks) {
        (0, 0) => format!("{side} frees all"),
        (kept, 0) => format!("{side} LEAKS {kept}"),
        (kept, tasks) => format!("{side} LEAKS {kept} + {tasks} task"),
    }
}

fn main() -> ExitCode {
    let sides = match leaklab_cli::Sides::from_args(USAGE) {
        Ok(sides) => sides,
        Err(exit) => return exit,
    };

    println!("ch2-cycles: what is freed once the owner lets go\n");
    let mut header = sides.header(&["scenario", "built"], &["dropped", "tasks", "heap"]);
    header.push("verdict".into());
    let mut table = Table::new(header);
    for row in rows() {
        let mut row_cells = vec![row.scenario.to_string(), row.built.to_string()];
        let mut verdicts = Vec::new();
        if sides.bad {
            let leftovers = (row.bad)();
            row_cells.extend(cells(row.built, &leftovers));
            verdicts.push(verdict("bad", row.built, &leftovers));
        }
        if sides.good {
            let leftovers = (row.good)();
            row_cells.extend(cells(row.built, &leftovers));
            verdicts.push(verdict("good", row.built, &leftovers));
        }
        row_cells.push(verdicts.join(", "));
        table.row(row_cells);
    }
    print!("{table}");
    println!(
        "\nbuilt: nodes (or pollers) created. dropped: how many of them ran their destructor\n\
         after the owner let go. tasks: tasks still alive, beyond those alive before.\n\
         heap: bytes allocated by the scenario and still live (jemalloc, this thread).\n\
         clear edges: bad is the seed's cleanup walk with the callback forgotten, good the full walk."
    );
    println!(
        "The seed's tree holds {} of data (1 KiB + 1000 × 1 KiB + 10 000 × 512 B).",
        format_bytes(TREE_DATA_BYTES as i64)
    );
    ExitCode::SUCCESS
}
