//! `just run ch9-http [bad|good]`: 200 slow clients against each server,
//! then a stuck upstream and a client per request, printed bad vs good side
//! by side. Everything runs on loopback, on the real clock, with the
//! timeouts shortened so the whole run takes a few seconds.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use ch9_http::good::{FetchError, Limits};
use ch9_http::{LIVE_HEADER_TIMEOUT, SlowClients, connect_slow_clients, current_thread_runtime};
use ch9_http::{MAX_CONNECTIONS, SLOW_CLIENTS, STUCK_REQUESTS, bad, good, wait_until, wire};
use leakscope::heap::LiveBytes;
use leakscope::report::{Table, format_bytes_delta};
use leakscope::tasks::TaskLeakCheck;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const USAGE: &str = "usage: ch9-http [bad|good]   (no argument: both, side by side)";

/// The client deadline for this live run (the chapter's clients use 10 s).
const LIVE_CLIENT_TIMEOUT: Duration = Duration::from_millis(200);

/// How long the run waits before looking again: three timeouts, enough for
/// the good server to cut off both rounds of 100 slow clients.
const LIVE_WAIT: Duration = Duration::from_millis(600);

/// Longest wait for closes the server already sent to reach the clients.
const CLOSE_DELIVERY: Duration = Duration::from_millis(100);

/// Sequential requests in the client-reuse comparison.
const SEQUENTIAL_REQUESTS: usize = 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Bad,
    Good,
}

/// What the server holds at one moment.
struct Snapshot {
    open_connections: usize,
    server_tasks: usize,
    live_bytes: i64,
}

impl Snapshot {
    async fn take(
        clients: &[std::net::TcpStream],
        tasks: &TaskLeakCheck,
        heap: &LiveBytes,
    ) -> Self {
        Self {
            open_connections: wire::count_open_after_closes_land(clients, CLOSE_DELIVERY),
            server_tasks: tasks.leaked_tasks().await,
            live_bytes: heap.live_bytes(),
        }
    }

    fn cells(&self) -> [String; 3] {
        [
            self.open_connections.to_string(),
            self.server_tasks.to_string(),
            format_bytes_delta(self.live_bytes),
        ]
    }
}

/// The moments the slow-client scenario is measured at, in order.
const MOMENTS: [&str; 3] = ["all connected", "600 ms later", "server stopped"];

/// The slow-client scenario: a snapshot per moment in [`MOMENTS`], and what
/// a well-behaved client got after the wait.
struct SlowClientRun {
    snapshots: [Snapshot; 3],
    well_behaved: String,
}

async fn well_behaved_get(address: SocketAddr) -> String {
    match tokio::time::timeout(Duration::from_secs(2), wire::get(address, "/")).await {
        Ok(Ok(reply)) => format!("{} {:?}", reply.status, reply.body),
        Ok(Err(error)) => format!("failed: {error}"),
        Err(_) => "no answer in 2 s".to_string(),
    }
}

/// Runs the slow clients against one server on its own single-threaded
/// runtime, so every task and byte the server holds is counted exactly.
fn run_slow_clients(side: Side) -> SlowClientRun {
    current_thread_runtime().block_on(async {
        let SlowClients {
            tasks,
            heap,
            server,
            address,
            clients: slow_clients,
        } = connect_slow_clients(side == Side::Good).await;
        let served_at_once = match side {
            Side::Bad => SLOW_CLIENTS,
            Side::Good => MAX_CONNECTIONS,
        };
        // The accept loop plus one task per connection served.
        wait_until("the server has taken the clients it will serve", || {
            tasks.alive_now() == tasks.baseline() + 1 + served_at_once
        })
        .await;
        let connected = Snapshot::take(&slow_clients, &tasks, &heap).await;

        tokio::time::sleep(LIVE_WAIT).await;
        let after_wait = Snapshot::take(&slow_clients, &tasks, &heap).await;
        let well_behaved = well_behaved_get(address).await;

        server.stop().await;
        let after_stop = Snapshot::take(&slow_clients, &tasks, &heap).await;
        SlowClientRun {
            snapshots: [connected, after_wait, after_stop],
            well_behaved,
        }
    })
}

/// What requests to an upstream that never answers left behind.
struct StuckRun {
    pending: usize,
    timed_out: usize,
    tasks: usize,
}

fn run_stuck_upstream(side: Side) -> StuckRun {
    current_thread_runtime().block_on(async {
        // Bound and never accepted from: the kernel takes each connection
        // and request, and nothing ever answers.
        let stuck_upstream = ch9_http::bind_loopback().expect("bind loopback");
        let url = format!(
            "http://{}/",
            stuck_upstream.local_addr().expect("an address")
        );
        let client = match side {
            Side::Bad => bad::client(),
            Side::Good => good::client(),
        };
        let tasks = TaskLeakCheck::start();
        let requests: Vec<_> = (0..STUCK_REQUESTS)
            .map(|_| {
                let (client, url) = (client.clone(), url.clone());
                // true when the request ended with a timeout error
                tokio::spawn(async move {
                    match side {
                        Side::Bad => bad::fetch(&client, &url)
                            .await
                            .is_err_and(|e| e.is_timeout()),
                        Side::Good => matches!(
                            good::fetch(&client, &url, LIVE_CLIENT_TIMEOUT).await,
                            Err(FetchError::TimedOut { .. })
                        ),
                    }
                })
            })
            .collect();
        tokio::time::sleep(3 * LIVE_CLIENT_TIMEOUT).await;
        let leftover_tasks = tasks.leaked_tasks().await;
        let mut run = StuckRun {
            pending: 0,
            timed_out: 0,
            tasks: leftover_tasks,
        };
        for request in requests {
            if !request.is_finished() {
                run.pending += 1;
                request.abort();
            } else if request.await.expect("a request task does not panic") {
                run.timed_out += 1;
            }
        }
        drop(stuck_upstream);
        run
    })
}

/// Connections the server accepted for [`SEQUENTIAL_REQUESTS`] GETs, and
/// the mean time per GET.
fn run_client_reuse(side: Side) -> (usize, Duration) {
    current_thread_runtime().block_on(async {
        let listener = ch9_http::bind_loopback().expect("bind loopback");
        let url = format!("http://{}/", listener.local_addr().expect("an address"));
        let server = good::spawn_server(listener, Limits::default());
        let shared = good::client();
        let started = std::time::Instant::now();
        for _ in 0..SEQUENTIAL_REQUESTS {
            let body = match side {
                Side::Bad => bad::fetch_with_new_client(&url)
                    .await
                    .map_err(|e| e.to_string()),
                Side::Good => good::fetch(&shared, &url, Duration::from_secs(2))
                    .await
                    .map_err(|e| e.to_string()),
            };
            body.expect("the local server answers");
        }
        let per_request = started.elapsed() / SEQUENTIAL_REQUESTS as u32;
        let accepted = server.stats().accepted();
        drop(shared);
        server.shutdown().await;
        (accepted, per_request)
    })
}

fn main() -> ExitCode {
    let sides: &[Side] = match leaklab_cli::Sides::from_args(USAGE) {
        Ok(leaklab_cli::Sides {
            bad: true,
            good: true,
        }) => &[Side::Bad, Side::Good],
        Ok(leaklab_cli::Sides { bad: true, .. }) => &[Side::Bad],
        Ok(_) => &[Side::Good],
        Err(exit) => return exit,
    };
    let name = |side: &Side| match side {
        Side::Bad => "bad",
        Side::Good => "good",
    };

    println!(
        "ch9-http: {SLOW_CLIENTS} slow clients (half a request each) against each server;\n\
         the good server's header-read timeout is {LIVE_HEADER_TIMEOUT:?} for this run\n"
    );
    let mut header = vec!["moment".to_string()];
    for side in sides {
        for column in ["open", "tasks", "heap"] {
            header.push(format!("{}: {column}", name(side)));
        }
    }
    let mut table = Table::new(header);
    let runs: Vec<SlowClientRun> = sides.iter().map(|side| run_slow_clients(*side)).collect();
    for (moment_index, moment) in MOMENTS.iter().enumerate() {
        let mut cells = vec![moment.to_string()];
        for run in &runs {
            cells.extend(run.snapshots[moment_index].cells());
        }
        table.row(cells);
    }
    print!("{table}");
    for (side, run) in sides.iter().zip(&runs) {
        println!(
            "{}: a well-behaved GET / after 600 ms: {}",
            name(side),
            run.well_behaved
        );
    }
    println!(
        "\nopen: slow clients whose connection is still open (served, or waiting in the backlog).\n\
         tasks: tasks alive beyond the runtime's baseline (accept loop + one per connection).\n\
         heap: bytes allocated on the server's thread since the baseline and still live.\n\
         stopped: bad = its serve task aborted, good = graceful shutdown.\n"
    );

    println!(
        "{STUCK_REQUESTS} requests to an upstream that never answers, {:?} later \
         (good client deadline {LIVE_CLIENT_TIMEOUT:?})\n",
        3 * LIVE_CLIENT_TIMEOUT
    );
    let mut table = Table::new(["side", "pending", "timed out", "tasks"]);
    for side in sides {
        let run = run_stuck_upstream(*side);
        table.row([
            name(side).to_string(),
            run.pending.to_string(),
            run.timed_out.to_string(),
            run.tasks.to_string(),
        ]);
    }
    print!("{table}");

    println!("\n{SEQUENTIAL_REQUESTS} GETs one after another\n");
    let mut table = Table::new(["side", "client", "connections opened", "time per GET"]);
    for side in sides {
        let client = match side {
            Side::Bad => "a new one per request",
            Side::Good => "one, shared",
        };
        let (connections, per_request) = run_client_reuse(*side);
        table.row([
            name(side).to_string(),
            client.to_string(),
            connections.to_string(),
            format!("{} µs", per_request.as_micros()),
        ]);
    }
    print!("{table}");
    ExitCode::SUCCESS
}
