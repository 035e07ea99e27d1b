//! `just run ch13-clients [bad|good]`: runs each scenario for real, on
//! loopback, and prints bad vs good side by side.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use ch13_clients::loopback::{BufferGauge, HttpServer, RowServer, connection_pool};
use ch13_clients::{
    BUCKET_IDLE_LIMIT, CHURNED_THREADS, GREETING, HANDLED_REQUESTS, LARGE_RESPONSE_BYTES,
    POOL_SIZE, QUIET_CLIENTS, REQUESTS, RateLimitStorage, SMALL_QUERIES, SMALL_RESPONSE_BYTES,
    SPIKE_CLIENTS, ScratchSpace, audience_for, bad, churning_runtime, good,
    render_on_retiring_threads, tenant_id, traffic_spike,
};
use leakscope::heap::{LiveBytes, thread_allocated_bytes};
use leakscope::report::{Table, format_bytes, format_bytes_delta};
use tower::ServiceExt;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const USAGE: &str = "usage: ch13-clients [bad|good]   (no argument: both, side by side)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Bad,
    Good,
}

/// One scenario's result, in its own unit.
#[derive(Debug, Clone, Copy)]
enum Reading {
    Count(usize),
    Bytes(i64),
    BytesDelta(i64),
}

impl Reading {
    fn value(self) -> i64 {
        match self {
            Reading::Count(count) => count as i64,
            Reading::Bytes(bytes) | Reading::BytesDelta(bytes) => bytes,
        }
    }

    fn cell(self) -> String {
        match self {
            Reading::Count(count) => count.to_string(),
            Reading::Bytes(bytes) => format_bytes(bytes),
            Reading::BytesDelta(bytes) => format_bytes_delta(bytes),
        }
    }
}

/// Runs a scenario on a fresh single-threaded runtime, so that every byte
/// its servers, clients and handlers allocate is on this thread.
fn on_fresh_runtime<Fut: Future<Output = Reading>>(scenario: Fut) -> Reading {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(scenario)
}

async fn fetch(side: Side, client: &reqwest::Client, url: &str) -> String {
    let body = match side {
        Side::Bad => bad::fetch_with_new_client(url).await,
        Side::Good => good::fetch(client, url).await,
    };
    body.expect("the loopback server answers")
}

/// Connections the server accepted for [`REQUESTS`] requests.
async fn connections(side: Side) -> Reading {
    let server = HttpServer::start().await.expect("a loopback port");
    let client = good::shared_client();
    for _ in 0..REQUESTS {
        assert_eq!(fetch(side, &client, &server.url()).await, GREETING);
    }
    Reading::Count(server.accepted())
}

/// Bytes allocated per request, freed or not, after one warm-up request.
async fn allocated_per_request(side: Side) -> Reading {
    let server = HttpServer::start().await.expect("a loopback port");
    let client = good::shared_client();
    fetch(side, &client, &server.url()).await;
    let before = thread_allocated_bytes();
    for _ in 0..REQUESTS {
        fetch(side, &client, &server.url()).await;
    }
    Reading::Bytes(((thread_allocated_bytes() - before) / REQUESTS as u64) as i64)
}

/// Heap still live after [`HANDLED_REQUESTS`] token checks.
async fn handler_heap(side: Side) -> Reading {
    let router = match side {
        Side::Bad => bad::router(),
        Side::Good => good::router(),
    };
    let check = |n: usize| {
        let tenant = tenant_id(n);
        let uri = format!("/tenants/{tenant}/tokens/{}", audience_for(&tenant));
        router
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).expect("a valid URI"))
    };
    check(0).await.expect("axum routers are infallible"); // the router's first-use setup
    let heap = LiveBytes::start();
    for n in 0..HANDLED_REQUESTS {
        check(n).await.expect("axum routers are infallible");
    }
    Reading::BytesDelta(heap.live_bytes())
}

/// Scratch space kept after [`CHURNED_THREADS`] jobs, each on a new thread.
fn scratch_kept(side: Side) -> Reading {
    let scratch: Arc<dyn ScratchSpace> = match side {
        Side::Bad => Arc::new(bad::ScratchByThread::default()),
        Side::Good => Arc::new(good::ScratchPool::new(POOL_SIZE)),
    };
    churning_runtime().block_on(render_on_retiring_threads(
        Arc::clone(&scratch),
        CHURNED_THREADS,
    ));
    Reading::Bytes(scratch.retained_bytes() as i64)
}

/// Read buffers the pool's connections hold after a spike of large
/// responses and [`SMALL_QUERIES`] small ones.
async fn pooled_buffers(side: Side) -> Reading {
    let server = RowServer::start().await.expect("a loopback port");
    let gauge = BufferGauge::default();
    let pool = connection_pool(server.addr, gauge.clone());
    let query = |bytes: usize| {
        let pool = pool.clone();
        async move {
            let read = match side {
                Side::Bad => bad::query(&pool, bytes).await,
                Side::Good => good::query(&pool, bytes).await,
            };
            assert_eq!(read.expect("the loopback server answers"), bytes);
        }
    };
    futures::future::join_all((0..POOL_SIZE).map(|_| query(LARGE_RESPONSE_BYTES))).await;
    for _ in 0..SMALL_QUERIES {
        query(SMALL_RESPONSE_BYTES).await;
    }
    Reading::Bytes(gauge.bytes() as i64)
}

/// Heap the rate limiter holds for [`QUIET_CLIENTS`] buckets after a spike
/// of [`SPIKE_CLIENTS`] and the sweep an hour later.
async fn map_after_spike(side: Side) -> Reading {
    let heap = LiveBytes::start();
    let mut storage = RateLimitStorage::default();
    let spike = tokio::time::Instant::now();
    traffic_spike(&mut storage, SPIKE_CLIENTS, spike);
    let an_hour_later = spike + BUCKET_IDLE_LIMIT + Duration::from_secs(60);
    traffic_spike(&mut storage, QUIET_CLIENTS, an_hour_later);
    match side {
        Side::Bad => bad::remove_idle(&mut storage, an_hour_later),
        Side::Good => good::remove_idle(&mut storage, an_hour_later),
    }
    assert_eq!(storage.buckets.len(), QUIET_CLIENTS);
    Reading::BytesDelta(heap.live_bytes())
}

struct Row {
    scenario: &'static str,
    measure: &'static str,
    run: fn(Side) -> Reading,
}

fn rows() -> [Row; 6] {
    [
        Row {
            scenario: "client per request",
            measure: "connections for 20 requests",
            run: |side| on_fresh_runtime(connections(side)),
        },
        Row {
            scenario: "client per request",
            measure: "bytes allocated per request",
            run: |side| on_fresh_runtime(allocated_per_request(side)),
        },
        Row {
            scenario: "Box::leak in a handler",
            measure: "heap kept after 1000 requests",
            run: |side| on_fresh_runtime(handler_heap(side)),
        },
        Row {
            scenario: "scratch per thread",
            measure: "scratch kept after 50 threads",
            run: scratch_kept,
        },
        Row {
            scenario: "pooled connections",
            measure: "read buffers after the spike",
            run: |side| on_fresh_runtime(pooled_buffers(side)),
        },
        Row {
            scenario: "map after a spike",
            measure: "heap kept for 10 buckets",
            run: |side| on_fresh_runtime(map_after_spike(side)),
        },
    ]
}

fn verdict(bad: Option<Reading>, good: Option<Reading>) -> String {
    match (bad, good) {
        (Some(bad), Some(good)) if good.value() > 0 => {
            format!("bad: {:.0}× good", bad.value() as f64 / good.value() as f64)
        }
        (Some(_), Some(_)) => "good keeps nothing".to_string(),
        _ => String::new(),
    }
}

fn main() -> ExitCode {
    let sides = match leaklab_cli::Sides::from_args(USAGE) {
        Ok(sides) => sides,
        Err(exit) => return exit,
    };

    println!("ch13-clients: what each scenario leaves behind, on loopback\n");
    let mut header = sides.header(&["scenario", "measure"], &["value"]);
    header.push("verdict".into());
    let mut table = Table::new(header);
    for row in rows() {
        let bad = sides.bad.then(|| (row.run)(Side::Bad));
        let good = sides.good.then(|| (row.run)(Side::Good));
        let mut cells = vec![row.scenario.to_string(), row.measure.to_string()];
        cells.extend(bad.into_iter().chain(good).map(Reading::cell));
        cells.push(verdict(bad, good));
        table.row(cells);
    }
    print!("{table}");
    println!(
        "\nconnections: accepted by the loopback server. bytes allocated: jemalloc's count for this\n\
         thread, frees not subtracted. heap kept: bytes allocated during the scenario and still\n\
         live (jemalloc, this thread). scratch kept, read buffers: the capacity the structure holds."
    );
    ExitCode::SUCCESS
}
