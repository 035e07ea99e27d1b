//! `just run ch1-tasks [bad|good]`: runs each scenario for real and prints
//! bad vs good side by side.

use std::future::Future;
use std::process::ExitCode;

use ch1_tasks::{GOOD_RUN_TIME, WORKERS, bad, good};
use leakscope::heap::LiveBytes;
use leakscope::report::{Table, format_bytes_delta};
use leakscope::tasks::{TaskLeakCheck, warm_up_runtime};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const USAGE: &str = "usage: ch1-tasks [bad|good]   (no argument: both, side by side)";

/// What one scenario left behind once it returned.
struct Leftovers {
    leaked_tasks: usize,
    live_bytes: i64,
}

impl Leftovers {
    fn cells(&self) -> [String; 2] {
        [
            self.leaked_tasks.to_string(),
            format_bytes_delta(self.live_bytes),
        ]
    }
}

/// Runs a scenario on its own single-threaded runtime (so every byte and
/// task is counted exactly) and measures what is still there afterwards.
/// The runtime is dropped after measuring, which frees whatever leaked.
fn measure<F, Fut>(scenario: F) -> Leftovers
where
    F: FnOnce() -> Fut,
    Fut: Future,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        // Keep the runtime's own one-time setup out of the numbers.
        warm_up_runtime(2 * WORKERS).await;
        let tasks = TaskLeakCheck::start();
        let heap = LiveBytes::start();
        let kept = scenario().await;
        let leaked_tasks = tasks.leaked_tasks().await;
        let live_bytes = heap.live_bytes();
        drop(kept);
        Leftovers {
            leaked_tasks,
            live_bytes,
        }
    })
}

struct Row {
    scenario: &'static str,
    bad: fn() -> Leftovers,
    good: fn() -> Leftovers,
}

fn rows() -> [Row; 3] {
    [
        Row {
            scenario: "100 workers",
            bad: || measure(|| bad::spawn_workers_without_exit(WORKERS)),
            good: || measure(|| good::run_cancellable_workers(WORKERS, GOOD_RUN_TIME)),
        },
        Row {
            scenario: "send nobody reads",
            // The receiver is kept (returned) while the leftovers are measured.
            bad: || measure(bad::send_to_forgotten_receiver),
            good: || measure(good::send_and_receive),
        },
        Row {
            scenario: "dropped JoinHandle",
            bad: || measure(|| async { bad::start_poller_and_drop_handle() }),
            good: || measure(|| async { drop(good::start_poller_owned()) }),
        },
    ]
}

fn verdict(side: &str, leftovers: &Leftovers) -> String {
    match leftovers.leaked_tasks {
        0 => format!("{side} leaves none"),
        leaked => format!("{side} LEAKS {leaked}"),
    }
}

fn main() -> ExitCode {
    let sides = match leaklab_cli::Sides::from_args(USAGE) {
        Ok(sides) => sides,
        Err(exit) => return exit,
    };

    println!("ch1-tasks: tasks and heap left behind after each scenario returns\n");
    let mut header = sides.header(&["scenario"], &["tasks", "heap"]);
    header.push("verdict".into());
    let mut table = Table::new(header);
    for row in rows() {
        let mut cells = vec![row.scenario.to_string()];
        let mut verdicts = Vec::new();
        if sides.bad {
            let leftovers = (row.bad)();
            cells.extend(leftovers.cells());
            verdicts.push(verdict("bad", &leftovers));
        }
        if sides.good {
            let leftovers = (row.good)();
            cells.extend(leftovers.cells());
            verdicts.push(verdict("good", &leftovers));
        }
        cells.push(verdicts.join(", "));
        table.row(cells);
    }
    print!("{table}");
    println!(
        "\ntasks: alive after the scenario returned, beyond those alive before it.\n\
         heap: bytes allocated during the scenario and still live (jemalloc, this thread)."
    );
    ExitCode::SUCCESS
}
