//! `just run ch7-practices [bad|good]`: runs the five practices, bad and
//! good, and prints what each left behind or cost.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ch7_practices::{
    BUFFER_SIZE, LoopTimer, MESSAGE_INTERVAL, PIPELINE_DEADLINE, add_resources_like_the_seed, bad,
    good, run_periodic_worker, send_messages, thread_allocated_bytes,
};
use leakscope::heap::LiveBytes;
use leakscope::report::{Table, format_bytes, format_bytes_delta};
use leakscope::tasks::TaskLeakCheck;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const USAGE: &str = "usage: ch7-practices [bad|good]   (no argument: both, side by side)";

const AN_HOUR: Duration = Duration::from_secs(3600);

// The task counts below are snapshots: the checks do not wait for stragglers
// (`settle_budget(Duration::ZERO)`), so the paused clock stays where each
// scenario left it and the work counted is the scenario's own.

/// Requests (practice 4) and loop turns (practice 5) the costs are averaged over.
const REPETITIONS: u64 = 10_000;

/// Runs a scenario on its own single-threaded runtime (every task and byte
/// counted exactly) with tokio's paused clock: the seed's durations are
/// kept, and simulated time makes them pass at once.
fn on_paused_runtime<F: Future>(scenario: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a tokio runtime")
        .block_on(scenario)
}

fn seconds(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

/// One practice: what is measured, and how each side measures it (one cell
/// per measure).
struct Practice {
    name: &'static str,
    measures: &'static [&'static str],
    bad: fn() -> Vec<String>,
    good: fn() -> Vec<String>,
    lesson: &'static str,
}

fn practices() -> [Practice; 5] {
    [
        Practice {
            name: "1. 10 workers, 5 s deadline",
            measures: &[
                "caller returned after",
                "tasks alive 1 h later",
                "units of work done by then",
            ],
            bad: || {
                on_paused_runtime(async {
                    let check = TaskLeakCheck::start().settle_budget(Duration::ZERO);
                    let work_done = Arc::new(AtomicUsize::new(0));
                    let started = Instant::now();
                    bad::run_workers_with_deadline_on_the_wait(work_done.clone()).await;
                    let returned_after = started.elapsed();
                    tokio::time::sleep(AN_HOUR).await;
                    vec![
                        seconds(returned_after),
                        check.leaked_tasks().await.to_string(),
                        work_done.load(Ordering::Relaxed).to_string(),
                    ]
                })
            },
            good: || {
                on_paused_runtime(async {
                    let check = TaskLeakCheck::start().settle_budget(Duration::ZERO);
                    let run = good::run_workers_under_deadline(CancellationToken::new()).await;
                    tokio::time::sleep(AN_HOUR).await;
                    vec![
                        seconds(run.all_stopped_after),
                        check.leaked_tasks().await.to_string(),
                        run.ticks_per_worker.iter().sum::<usize>().to_string(),
                    ]
                })
            },
            lesson: "a deadline on the wait does not stop the work",
        },
        Practice {
            name: "2. pipeline, 20 jobs",
            measures: &[
                "results collected",
                "caller returned after",
                "stages alive 1 h later",
            ],
            bad: || pipeline(bad::run_pipeline_with_retry_sender()),
            good: || pipeline(good::run_pipeline(PIPELINE_DEADLINE)),
            lesson: "one stray sender keeps a channel open forever",
        },
        Practice {
            name: "3. resource manager",
            measures: &[
                "resources counted at the end",
                "heap held for them",
                "dropped without close: tasks 1 h later",
                "dropped without close: heap 1 h later",
            ],
            bad: || resource_manager(bad::ResourceManager::new),
            good: || resource_manager(good::ResourceManager::new),
            lesson: "re-slicing keeps what it removed; ownership frees it",
        },
        Practice {
            name: "4. 1 KiB request buffer",
            measures: &["bytes allocated per request", "heap live afterwards"],
            bad: || {
                buffer_costs(|| {
                    for request_id in 0..REPETITIONS {
                        std::hint::black_box(bad::handle_request_with_new_buffer(
                            request_id,
                            BUFFER_SIZE,
                        ));
                    }
                })
            },
            good: || {
                let pool = good::BufferPool::new();
                good::handle_request_with_pooled_buffer(&pool, 0, BUFFER_SIZE); // fills the pool
                buffer_costs(|| {
                    for request_id in 0..REPETITIONS {
                        std::hint::black_box(good::handle_request_with_pooled_buffer(
                            &pool,
                            request_id,
                            BUFFER_SIZE,
                        ));
                    }
                })
            },
            lesson: "churn, not a leak: reuse removes it",
        },
        Practice {
            name: "5. timer in a select! loop",
            measures: &[
                "bytes allocated per loop turn",
                "flushes in 60 s, a message every 0.5 s",
                "messages still waiting",
            ],
            bad: || timers(LoopTimer::NewSleepEachTurn),
            good: || timers(LoopTimer::OneInterval),
            lesson: "no garbage in Rust, but a restarted sleep never fires",
        },
    ]
}

fn pipeline(run: impl Future<Output = ch7_practices::PipelineRun>) -> Vec<String> {
    on_paused_runtime(async {
        let check = TaskLeakCheck::start().settle_budget(Duration::ZERO);
        let started = Instant::now();
        let run = run.await;
        let returned_after = started.elapsed();
        tokio::time::sleep(AN_HOUR).await;
        vec![
            run.collected.len().to_string(),
            seconds(returned_after),
            check.leaked_tasks().await.to_string(),
        ]
    })
}

fn resource_manager<M: ch7_practices::ManagesResources>(new: fn() -> M) -> Vec<String> {
    on_paused_runtime(async {
        // The first task the runtime aborts leaves 64 bytes of the runtime's
        // own behind; pay for them before measuring.
        let warm_up = TaskLeakCheck::start().settle_budget(Duration::ZERO);
        tokio::spawn(std::future::pending::<()>()).abort();
        warm_up.assert_no_leaks().await;

        let check = TaskLeakCheck::start().settle_budget(Duration::ZERO);
        let heap = LiveBytes::start();
        let manager = new();
        let final_count = *add_resources_like_the_seed(&manager)
            .await
            .last()
            .expect("the seed prints a final count");
        let held = heap.live_bytes();
        drop(manager);
        tokio::time::sleep(AN_HOUR).await;
        let leaked_tasks = check.leaked_tasks().await;
        let left = heap.live_bytes(); // read before the report's own strings exist
        vec![
            final_count.to_string(),
            format_bytes_delta(held),
            leaked_tasks.to_string(),
            format_bytes_delta(left),
        ]
    })
}

fn buffer_costs(requests: impl FnOnce()) -> Vec<String> {
    let heap = LiveBytes::start();
    let allocated_before = thread_allocated_bytes();
    requests();
    let allocated = thread_allocated_bytes() - allocated_before;
    let left = heap.live_bytes(); // read before the report's own strings exist
    vec![
        format_bytes((allocated / REPETITIONS) as i64),
        format_bytes_delta(left),
    ]
}

fn timers(timer: LoopTimer) -> Vec<String> {
    // Per turn: the difference between a long and a short run, so the
    // loop's one-off setup cancels out.
    let short = periodic_worker_allocations(timer, 100);
    let long = periodic_worker_allocations(timer, 100 + REPETITIONS as u32);
    let per_turn = (long - short) / REPETITIONS;

    let batches = on_paused_runtime(async {
        let (messages_tx, messages_rx) = tokio::sync::mpsc::channel(1);
        let messages = (Duration::from_secs(60).as_millis() / MESSAGE_INTERVAL.as_millis()) as u64;
        tokio::spawn(send_messages(messages_tx, messages));
        match timer {
            LoopTimer::NewSleepEachTurn => bad::batcher_new_sleep(messages_rx).await,
            LoopTimer::OneInterval => good::batcher_interval(messages_rx).await,
        }
    });
    vec![
        format_bytes(per_turn as i64),
        batches.flushes.to_string(),
        batches.pending.len().to_string(),
    ]
}

/// Bytes allocated by `turns` turns of the seed's periodic loop, setup included.
fn periodic_worker_allocations(timer: LoopTimer, turns: u32) -> u64 {
    on_paused_runtime(async {
        let allocated_before = thread_allocated_bytes();
        run_periodic_worker(timer, turns).await;
        thread_allocated_bytes() - allocated_before
    })
}

fn main() -> ExitCode {
    let sides = match leaklab_cli::Sides::from_args(USAGE) {
        Ok(sides) => sides,
        Err(exit) => return exit,
    };

    println!("ch7-practices: the seed's best practices, bad and good, measured\n");
    let mut header = vec!["practice", "measured"];
    if sides.bad {
        header.push("bad");
    }
    if sides.good {
        header.push("good");
    }
    if sides.bad && sides.good {
        header.push("lesson");
    }
    let mut table = Table::new(header);
    for practice in practices() {
        let bad_cells = if sides.bad {
            (practice.bad)()
        } else {
            Vec::new()
        };
        let good_cells = if sides.good {
            (practice.good)()
        } else {
            Vec::new()
        };
        for (index, measure) in practice.measures.iter().enumerate() {
            let first = index == 0;
            let mut cells = vec![
                if first { practice.name } else { "" }.to_string(),
                measure.to_string(),
            ];
            cells.extend(bad_cells.get(index).cloned());
            cells.extend(good_cells.get(index).cloned());
            if sides.bad && sides.good {
                cells.push(if first { practice.lesson } else { "" }.to_string());
            }
            table.row(cells);
        }
    }
    print!("{table}");
    println!(
        "\ntime: tokio's paused clock, so the seed's durations (5 s, 3 s, 11 s) and the hour \
         after them pass at once.\n\
         tasks: alive beyond those alive before the scenario. heap: bytes allocated on this \
         thread and still live (jemalloc).\n\
         allocated: jemalloc's per-thread allocation total, frees not subtracted, averaged over \
         {REPETITIONS} requests or loop turns."
    );
    ExitCode::SUCCESS
}
