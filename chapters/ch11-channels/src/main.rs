//! `just run ch11-channels [bad|good]`: runs each scenario and prints bad vs
//! good side by side. `ch11-channels match FILE…` names the leak shapes in
//! saved heap profiles (`leakscope::matcher`).

use std::future::Future;
use std::process::ExitCode;

use ch11_channels::{
    CALLS, Connection, EVENTS, REQUESTS, UPDATES, bad, broadcast_updates, good, serve_requests,
};
use leakscope::heap::LiveBytes;
use leakscope::report::{Table, format_bytes_delta};
use leakscope::tasks::{TaskLeakCheck, warm_up_runtime};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const USAGE: &str = "usage: ch11-channels [bad|good]   (no argument: both, side by side)\n       \
                     ch11-channels match FILE…       (name the leak shapes in saved heap profiles)";

/// What a scenario still holds at the moment it is measured.
struct Reading {
    tasks: usize,
    held: usize,
    live_bytes: i64,
}

impl Reading {
    fn cells(&self) -> [String; 3] {
        [
            self.tasks.to_string(),
            self.held.to_string(),
            format_bytes_delta(self.live_bytes),
        ]
    }
}

/// Runs a scenario on its own single-threaded runtime with tokio's paused
/// clock (simulated minutes pass in milliseconds, and every byte and task is
/// counted exactly). The scenario reports how many items it holds; tasks and
/// live bytes are measured around it.
fn measure<F, Fut>(scenario: F) -> Reading
where
    F: FnOnce(TaskLeakCheck, LiveBytes) -> Fut,
    Fut: Future<Output = Reading>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        // Keep the runtime's own one-time setup out of the numbers.
        warm_up_runtime(100).await;
        scenario(TaskLeakCheck::start(), LiveBytes::start()).await
    })
}

/// Alive tasks beyond the baseline, once the runtime has released what was
/// finishing.
async fn tasks_alive(check: &TaskLeakCheck) -> usize {
    check.leaked_tasks().await
}

struct Row {
    scenario: &'static str,
    bad: fn() -> Reading,
    good: fn() -> Reading,
}

fn rows() -> [Row; 5] {
    [
        Row {
            scenario: "JoinSet never joined",
            bad: || {
                measure(|tasks, heap| async move {
                    let mut server = bad::Server::default();
                    serve_requests(|id| server.handle(id), REQUESTS).await;
                    Reading {
                        tasks: tasks_alive(&tasks).await,
                        held: server.handlers_held(),
                        live_bytes: heap.live_bytes(),
                    }
                })
            },
            good: || {
                measure(|tasks, heap| async move {
                    let mut server = good::Server::default();
                    serve_requests(|id| server.handle(id), REQUESTS).await;
                    Reading {
                        tasks: tasks_alive(&tasks).await,
                        held: server.handlers_held(),
                        live_bytes: heap.live_bytes(),
                    }
                })
            },
        },
        Row {
            scenario: "FuturesUnordered unpolled",
            bad: || {
                measure(|tasks, heap| async move {
                    let mut connection = Connection::open(bad::serve_connection);
                    connection.send_calls(CALLS).await;
                    Reading {
                        tasks: tasks_alive(&tasks).await,
                        held: connection.pending_calls(),
                        live_bytes: heap.live_bytes(),
                    }
                })
            },
            good: || {
                measure(|tasks, heap| async move {
                    let mut connection = Connection::open(good::serve_connection);
                    connection.send_calls(CALLS).await;
                    Reading {
                        tasks: tasks_alive(&tasks).await,
                        held: connection.pending_calls(),
                        live_bytes: heap.live_bytes(),
                    }
                })
            },
        },
        Row {
            scenario: "mpsc, slow consumer",
            bad: || {
                measure(|tasks, heap| async move {
                    let mut queue = bad::EventQueue::start();
                    queue.publish_all(EVENTS).await;
                    Reading {
                        tasks: tasks_alive(&tasks).await,
                        held: queue.backlog(),
                        live_bytes: heap.live_bytes(),
                    }
                })
            },
            good: || {
                measure(|tasks, heap| async move {
                    let mut queue = good::EventQueue::start();
                    queue.publish_all(EVENTS).await;
                    Reading {
                        tasks: tasks_alive(&tasks).await,
                        held: queue.backlog(),
                        live_bytes: heap.live_bytes(),
                    }
                })
            },
        },
        Row {
            scenario: "mpsc, drained",
            bad: || {
                measure(|tasks, heap| async move {
                    let mut queue = bad::EventQueue::start();
                    queue.publish_all(EVENTS).await;
                    queue.wait_until_drained().await;
                    Reading {
                        tasks: tasks_alive(&tasks).await,
                        held: queue.backlog(),
                        live_bytes: heap.live_bytes(),
                    }
                })
            },
            good: || {
                measure(|tasks, heap| async move {
                    let mut queue = good::EventQueue::start();
                    queue.publish_all(EVENTS).await;
                    queue.wait_until_drained().await;
                    Reading {
                        tasks: tasks_alive(&tasks).await,
                        held: queue.backlog(),
                        live_bytes: heap.live_bytes(),
                    }
                })
            },
        },
        Row {
            scenario: "broadcast, all read",
            bad: || {
                measure(|tasks, heap| async move {
                    let hub = bad::UpdateHub::new();
                    let _subscribers = broadcast_updates(
                        || hub.subscribe(),
                        |update| hub.publish(update),
                        UPDATES,
                    )
                    .await;
                    Reading {
                        tasks: tasks_alive(&tasks).await,
                        held: hub.updates_held(),
                        live_bytes: heap.live_bytes(),
                    }
                })
            },
            good: || {
                measure(|tasks, heap| async move {
                    let hub = good::UpdateHub::new();
                    let _subscribers = broadcast_updates(
                        || hub.subscribe(),
                        |update| hub.publish(update),
                        UPDATES,
                    )
                    .await;
                    Reading {
                        tasks: tasks_alive(&tasks).await,
                        held: hub.updates_held(),
                        live_bytes: heap.live_bytes(),
                    }
                })
            },
        },
    ]
}

/// Bad against good: how many times more heap the bad side keeps.
fn verdict(live_bytes: &[i64]) -> String {
    match live_bytes {
        [bad, good] if *good > 0 => format!("bad keeps {}× good's heap", bad / good),
        [bad, _] => format!("bad keeps {}, good none", format_bytes_delta(*bad)),
        [one] => format!("keeps {}", format_bytes_delta(*one)),
        _ => String::new(),
    }
}

fn match_files(files: &[String]) -> ExitCode {
    if files.is_empty() {
        eprintln!("match: give at least one profile file\n{USAGE}");
        return ExitCode::from(2);
    }
    let mut failed = false;
    for file in files {
        match leakscope::matcher::match_file(std::path::Path::new(file)) {
            Ok(matches) => {
                println!("{file}:");
                print!("{}", leakscope::matcher::render(&matches));
            }
            Err(error) => {
                eprintln!("{file}: {error}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("match") {
        return match_files(&args[1..]);
    }
    let sides = match leaklab_cli::Sides::from_args(USAGE) {
        Ok(sides) => sides,
        Err(exit) => return exit,
    };

    println!("ch11-channels: what each scenario holds once its traffic has passed\n");
    let mut header = sides.header(&["scenario"], &["tasks", "held", "heap"]);
    header.push("verdict".into());
    let mut table = Table::new(header);
    for row in rows() {
        let mut cells = vec![row.scenario.to_string()];
        let mut held = Vec::new();
        for (shown, run) in [(sides.bad, row.bad), (sides.good, row.good)] {
            if shown {
                let reading = run();
                cells.extend(reading.cells());
                held.push(reading.live_bytes);
            }
        }
        cells.push(verdict(&held));
        table.row(cells);
    }
    print!("{table}");
    println!(
        "\ntasks: alive beyond those alive before the scenario (tokio's runtime metrics).\n\
         held: handlers in the JoinSet (JoinSet::len), calls not yet run, events not yet\n\
         handled, updates the broadcast channel still holds (Sender::len).\n\
         heap: bytes allocated during the scenario and still live (jemalloc, this thread).\n\
         Simulated time (tokio's paused clock): {EVENTS} events at 1 ms, handled at 10 ms each."
    );
    ExitCode::SUCCESS
}
