//! `just run ch5-pprof [bad|good]`: runs the leaky and the fixed service
//! in-process, drives them over HTTP and prints what each holds, what its
//! heap profile blames and what is left after shutdown.
//!
//! `serve` runs one of them for real (`just serve-leaky`, `just serve-fixed`),
//! `demo` is the seed's demo.sh (`just demo`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use ch5_pprof::server::{self, App, Status};
use ch5_pprof::{
    DEFAULT_ADDR, DEFAULT_LEAK_CAP_BYTES, REQUESTS_PER_PHASE, STATUS_INTERVAL, SeedService,
    WORKER_EVERY, bad, good,
};
use leaklab_cli::{Parsed, Sides};
use leakscope::heap::LiveBytes;
use leakscope::profile::{self, FunctionCost};
use leakscope::report::{Table, format_bytes, format_bytes_delta};
use leakscope::tasks::{TaskLeakCheck, warm_up_runtime};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// ANCHOR: malloc_conf
// jemalloc reads this at start-up: profiler on, one sample per 512 KiB
// allocated on average (2^19 bytes, jemalloc's default rate).
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "malloc_conf")]
pub static malloc_conf: &[u8] = b"prof:true,prof_active:true,lg_prof_sample:19\0";
// ANCHOR_END: malloc_conf

const USAGE: &str = "\
usage: ch5-pprof [bad|good]      drive both services (or one) in-process and compare them
       ch5-pprof serve bad|good [--addr HOST:PORT] [--cap MIB] [--no-load]
                                 run one for real (default 127.0.0.1:6060, cap 256 MiB,
                                 with the seed's load loop)
       ch5-pprof demo [--out DIR]  the seed's demo.sh: leak, profile, leak more, profile, diff
(dhat: cargo run -p ch5-pprof --example dhat_heap -- [bad|good])";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Bad,
    Good,
}

impl Side {
    fn parse(word: &str) -> Option<Self> {
        match word {
            "bad" | "leaky" => Some(Self::Bad),
            "good" | "fixed" => Some(Self::Good),
            _ => None,
        }
    }

    fn service(self) -> Arc<dyn SeedService> {
        match self {
            Self::Bad => Arc::new(bad::LeakyService::new()),
            Self::Good => Arc::new(good::FixedService::new()),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Bad => "bad (leaky)",
            Self::Good => "good (fixed)",
        }
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("{message}\n{USAGE}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words[..] {
        ["serve", side, ref options @ ..] => {
            match (Side::parse(side), ServeOptions::parse(options)) {
                (Some(side), Ok(options)) => serve(side, options),
                (None, _) => usage_error(&format!("serve: unknown side '{side}' (bad or good)")),
                (_, Err(message)) => usage_error(&format!("serve: {message}")),
            }
        }
        ["demo"] => demo(Path::new("target/ch5-demo")),
        ["demo", "--out", dir] => demo(Path::new(dir)),
        _ => match Sides::parse(&words) {
            Parsed::Run(sides) => report(sides),
            Parsed::Help => {
                println!("{USAGE}");
                ExitCode::SUCCESS
            }
            Parsed::Unknown(words) => usage_error(&format!("unknown arguments: {words}")),
        },
    }
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Sends `count` `/leak` requests with ids `{prefix}-0`, `{prefix}-1`, …
async fn drive(client: &reqwest::Client, addr: SocketAddr, prefix: &str, count: u64) {
    for i in 0..count {
        fetch(client, addr, &format!("/leak?id={prefix}-{i}")).await;
    }
}

async fn fetch(client: &reqwest::Client, addr: SocketAddr, path: &str) -> Vec<u8> {
    let response = client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .expect("the in-process server answers");
    assert!(
        response.status().is_success(),
        "{path} answered {}",
        response.status()
    );
    response.bytes().await.expect("a whole body").to_vec()
}

async fn fetch_status(client: &reqwest::Client, addr: SocketAddr) -> Status {
    serde_json::from_slice(&fetch(client, addr, "/status").await).expect("/status is JSON")
}

/// What one side left once driven and shut down.
struct Outcome {
    status: Status,
    live_bytes: i64,
    top: Vec<FunctionCost>,
    tasks_left: usize,
}

// ANCHOR: measure
/// Serves one side on its own single-threaded runtime (exact task and byte
/// counts), sends it [`REQUESTS_PER_PHASE`] leak requests, reads its status
/// and heap profile, shuts it down and counts the tasks it left.
fn measure(side: Side) -> Outcome {
    current_thread_runtime().block_on(async {
        // The 100 leaked workers would otherwise grow the runtime's own task
        // list inside the measurement.
        warm_up_runtime(2 * REQUESTS_PER_PHASE as usize / WORKER_EVERY as usize).await;
        let tasks = TaskLeakCheck::start();
        let heap = LiveBytes::start();
        let app = App::new(side.service(), DEFAULT_LEAK_CAP_BYTES);
        let stop = CancellationToken::new();
        let (addr, server) = server::spawn_on_loopback(app.clone(), stop.clone())
            .await
            .expect("a loopback port");
        let client = reqwest::Client::new();

        drive(&client, addr, "report", REQUESTS_PER_PHASE).await;
        let status = fetch_status(&client, addr).await;
        let live_bytes = heap.live_bytes();
        let served = fetch(&client, addr, "/debug/pprof/heap").await;
        let top = profile::decode(&served)
            .map(|heap| profile::top(&heap, 0))
            .unwrap_or_default();

        drop(client);
        stop.cancel();
        server
            .await
            .expect("the server task")
            .expect("a clean shutdown");
        app.service().shutdown().await;
        // Counted while the service still exists, as it would in a server
        // that keeps running.
        let tasks_left = tasks.leaked_tasks().await;
        drop(app);
        Outcome {
            status,
            live_bytes,
            top,
            tasks_left,
        }
    })
}
// ANCHOR_END: measure

fn report(sides: Sides) -> ExitCode {
    println!(
        "ch5-pprof: {REQUESTS_PER_PHASE} requests to /leak on each service (the seed's loop: \
         a 5 KB cache entry each, a subscriber every 10th, a worker every 20th)\n"
    );
    let mut table = Table::new([
        "service",
        "cache",
        "subscribers",
        "workers",
        "heap kept",
        "tasks after shutdown",
    ]);
    let mut profiles = Vec::new();
    let chosen = [(sides.bad, Side::Bad), (sides.good, Side::Good)];
    for side in chosen
        .into_iter()
        .filter_map(|(shown, side)| shown.then_some(side))
    {
        let outcome = measure(side);
        table.row([
            side.label().to_string(),
            outcome.status.stats.cache_entries.to_string(),
            outcome.status.stats.subscribers.to_string(),
            outcome.status.stats.workers.to_string(),
            format_bytes_delta(outcome.live_bytes),
            outcome.tasks_left.to_string(),
        ]);
        profiles.push((side, outcome.top));
    }
    print!("{table}");
    println!(
        "\ncache, subscribers, workers: what /status reported after the requests.\n\
         heap kept: bytes allocated on the server's thread during the requests and still live \
         (jemalloc, exact).\n\
         tasks after shutdown: tasks still alive once the server stopped and the service was \
         asked to shut down (the service itself still held)."
    );
    for (side, top) in profiles {
        println!(
            "\n{}: top of /debug/pprof/heap (flat in-use bytes, estimated from samples taken every \
             512 KiB; the process's whole heap)",
            side.label()
        );
        let shown: Vec<&FunctionCost> = top.iter().filter(|cost| cost.flat > 0).take(3).collect();
        for cost in &shown {
            println!("  {:>9}  {}", format_bytes(cost.flat), cost.function);
        }
        let cache_insert = top
            .iter()
            .find(|cost| cost.function.ends_with("::cache_data"));
        if let Some(cost) = cache_insert.filter(|cost| !shown.contains(cost)) {
            println!(
                "  {:>9}  {}  (further down)",
                format_bytes(cost.flat),
                cost.function
            );
        }
    }
    ExitCode::SUCCESS
}

#[derive(Debug)]
struct ServeOptions {
    addr: SocketAddr,
    cap_bytes: usize,
    load: bool,
}

impl ServeOptions {
    fn parse(words: &[&str]) -> Result<Self, String> {
        let mut options = Self {
            addr: DEFAULT_ADDR.parse().expect("the default address parses"),
            cap_bytes: DEFAULT_LEAK_CAP_BYTES,
            load: true,
        };
        let mut words = words.iter();
        while let Some(word) = words.next() {
            match *word {
                "--addr" => {
                    let value = words.next().ok_or("--addr needs HOST:PORT")?;
                    options.addr = value
                        .parse()
                        .map_err(|_| format!("--addr: '{value}' is not an IP:PORT address"))?;
                }
                "--cap" => {
                    let value = words.next().ok_or("--cap needs a size in MiB")?;
                    options.cap_bytes = match value.parse::<usize>() {
                        Ok(mib @ 1..=4096) => mib << 20,
                        _ => {
                            return Err(format!(
                                "--cap: '{value}' is not a MiB count from 1 to 4096"
                            ));
                        }
                    };
                }
                "--no-load" => options.load = false,
                other => return Err(format!("unknown option '{other}'")),
            }
        }
        Ok(options)
    }
}

// ANCHOR: serve
fn serve(side: Side, options: ServeOptions) -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(options.addr).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("cannot listen on {}: {error}", options.addr);
                return ExitCode::FAILURE;
            }
        };
        if !options.addr.ip().is_loopback() {
            eprintln!(
                "WARNING: listening on {}, reachable from other machines. This server leaks \
                 memory on request (capped at {}).",
                options.addr,
                format_bytes(options.cap_bytes as i64)
            );
        }
        let app = App::new(side.service(), options.cap_bytes);
        let stop = CancellationToken::new();
        let base = format!("http://{}", options.addr);
        println!("{} service on {base} (leak cap {})", app.service().name(), format_bytes(options.cap_bytes as i64));
        println!("  heap profile:  go tool pprof -top {base}/debug/pprof/heap");
        println!("  heap growth:   go tool pprof -seconds 10 -top {base}/debug/pprof/heap   (text: curl '{base}/debug/pprof/heap?debug=1')");
        println!("  task profile:  go tool pprof -top {base}/debug/pprof/goroutine   (text: curl {base}/debug/pprof/tasks)");
        println!("  in a browser:  {base}/debug/pprof/");
        println!("  metrics:       curl {base}/metrics");
        println!("  leak by hand:  curl '{base}/leak?id=test1'; curl {base}/status");
        println!("Ctrl-C stops it.");

        let load = options.load.then(|| tokio::spawn(server::run_load(app.clone(), stop.clone())));
        let reporter = tokio::spawn(print_status_every(app.clone(), stop.clone()));
        let ctrl_c_stop = stop.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            ctrl_c_stop.cancel();
        });

        if let Err(error) = server::serve(listener, app.clone(), stop.clone()).await {
            eprintln!("server error: {error}");
        }
        stop.cancel();
        if let Some(load) = load {
            let turns = load.await.unwrap_or(0);
            println!("load loop ran {turns} turns");
        }
        let _ = reporter.await;
        app.service().shutdown().await;
        let stats = app.service().stats();
        println!(
            "stopped: {} tasks still alive ({} workers the service never stopped)",
            leakscope::tasks::alive_tasks(),
            if app.service().name() == "leaky" { stats.workers } else { 0 }
        );
        ExitCode::SUCCESS
    })
}
// ANCHOR_END: serve

/// The seed's status line, every [`STATUS_INTERVAL`].
async fn print_status_every(app: App, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(STATUS_INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let status = app.status();
        println!(
            "status - cache: {}, subscribers: {}, workers: {}, heap: {}, tasks: {}",
            status.stats.cache_entries,
            status.stats.subscribers,
            status.stats.workers,
            format_bytes(status.allocated_bytes as i64),
            status.alive_tasks
        );
    }
}

/// jemalloc's sampling interval for the demo: 2^16 = 64 KiB, finer than the
/// served default so that "nothing grew" is not lost in sampling noise.
const DEMO_LG_SAMPLE: usize = 16;

// ANCHOR: demo
/// The seed's demo.sh: for each service, leak, take heap profile 1, leak as
/// much again, take profile 2, and show what grew between them (`go tool
/// pprof -base`), plus where the alive tasks wait.
fn demo(out_dir: &Path) -> ExitCode {
    if let Err(error) = std::fs::create_dir_all(out_dir) {
        eprintln!("cannot create {}: {error}", out_dir.display());
        return ExitCode::FAILURE;
    }
    // Restarts sampling at the finer rate (and forgets earlier samples).
    // SAFETY: "prof.reset" is a writable size_t control (jemalloc(3)).
    if unsafe { tikv_jemalloc_ctl::raw::write(b"prof.reset\0", DEMO_LG_SAMPLE) }.is_err() {
        eprintln!("jemalloc profiling is off in this build: the demo needs it");
        return ExitCode::FAILURE;
    }
    for side in [Side::Bad, Side::Good] {
        let name = side.service().name();
        println!("=== {} service ===", name);
        let saved = current_thread_runtime().block_on(demo_side(side, out_dir));
        match saved {
            Ok(files) => {
                let [heap1, heap2] = &files;
                println!(
                    "saved {} and {}\n  compare: go tool pprof -top -base {} {}\n",
                    heap1.display(),
                    heap2.display(),
                    heap1.display(),
                    heap2.display()
                );
            }
            Err(error) => {
                eprintln!("cannot save profiles: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

async fn demo_side(side: Side, out_dir: &Path) -> std::io::Result<[PathBuf; 2]> {
    let app = App::new(side.service(), DEFAULT_LEAK_CAP_BYTES);
    let stop = CancellationToken::new();
    let (addr, server) = server::spawn_on_loopback(app.clone(), stop.clone()).await?;
    let client = reqwest::Client::new();
    let name = app.service().name();
    let mut files = Vec::new();
    let mut profiles = Vec::new();
    // Symbolizing the first profile fills a debug-info cache that stays in
    // the heap; taking one before phase 1 keeps that out of the diff.
    fetch(&client, addr, "/debug/pprof/heap").await;
    for phase in 1..=2 {
        drive(&client, addr, &format!("phase{phase}"), REQUESTS_PER_PHASE).await;
        let status = fetch_status(&client, addr).await;
        println!(
            "after {} requests: cache {}, subscribers {}, workers {}, tasks {}",
            phase * REQUESTS_PER_PHASE,
            status.stats.cache_entries,
            status.stats.subscribers,
            status.stats.workers,
            status.alive_tasks
        );
        let bytes = fetch(&client, addr, "/debug/pprof/heap").await;
        let file = out_dir.join(format!("{name}-heap{phase}.pb.gz"));
        std::fs::write(&file, &bytes)?;
        profiles.push(profile::decode(&bytes).expect("the server serves pprof"));
        files.push(file);
    }
    println!("what grew between profile 1 and profile 2 (flat, top 3):");
    let diff = profile::top_diff(&profiles[0], &profiles[1], 0);
    for cost in diff.iter().filter(|cost| cost.flat != 0).take(3) {
        println!("  {:>11}  {}", format_bytes_delta(cost.flat), cost.function);
    }
    let tasks =
        String::from_utf8_lossy(&fetch(&client, addr, "/debug/pprof/tasks").await).into_owned();
    println!("where the tasks wait (/debug/pprof/tasks):");
    for line in tasks.lines().take(4) {
        println!("  {line}");
    }
    std::fs::write(
        out_dir.join(format!("{name}-heap.svg")),
        fetch(&client, addr, "/debug/pprof/flamegraph").await,
    )?;
    drop(client);
    stop.cancel();
    server.await??;
    app.service().shutdown().await;
    let [heap1, heap2]: [PathBuf; 2] = files.try_into().expect("two phases");
    Ok([heap1, heap2])
}
// ANCHOR_END: demo
