//! `just run ch10-triage [bad|good]`: runs every workload in a process of
//! its own and prints the doctor's verdict and the RSS of each, bad vs good
//! side by side, then each diagnosis in full.
//!
//! Other commands:
//!
//! * `ch10-triage scenario NAME bad|good` — one workload, in this process;
//!   prints its diagnosis (what the side-by-side run starts for each cell).
//! * `ch10-triage doctor --pid N --seconds S [--metrics-url URL]
//!   [--interval-ms M]` — watches another process: `/proc/N/status` and,
//!   when given, its Prometheus page; prints the verdict.
//! * `ch10-triage serve bad|good` — the listeners workload as a service on
//!   127.0.0.1: one request every 20 ms, `/metrics` and
//!   `/debug/leakscope/doctor`; prints its address, stops when stdin closes.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use ch10_triage::{SCENARIOS, Side, run_arenas, run_in_process};
use leakscope::doctor::{self, DEFAULT_INTERVAL, Sample};
use leakscope::report::{Table, format_bytes};

// jemalloc, counted: the doctor reads jemalloc's statistics and the
// counting allocator's exact live bytes and peak.
#[global_allocator]
static ALLOC: leakscope::alloc::CountingAlloc<tikv_jemallocator::Jemalloc> =
    leakscope::alloc::CountingAlloc::new(tikv_jemallocator::Jemalloc);

const USAGE: &str = "usage: ch10-triage [bad|good]   (no argument: both, side by side)
       ch10-triage scenario NAME bad|good     NAME: listeners waiters burst arenas blocking cache waves arenas-jemalloc
       ch10-triage doctor --pid N --seconds S [--metrics-url http://HOST:PORT/metrics] [--interval-ms M]
       ch10-triage serve bad|good";

/// The line a `scenario` run ends with, for the side-by-side run to read:
/// `RESULT verdict|first anon RSS|last|highest`.
const RESULT: &str = "RESULT ";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["scenario", name, side] => scenario(name, side),
        ["doctor", options @ ..] => watch(options),
        ["serve", side] => match Side::parse(side) {
            Some(side) => serve(side),
            None => usage_error(&args),
        },
        _ => match leaklab_cli::Sides::parse(&words) {
            leaklab_cli::Parsed::Run(sides) => side_by_side(sides),
            leaklab_cli::Parsed::Help => {
                println!("{USAGE}");
                ExitCode::SUCCESS
            }
            leaklab_cli::Parsed::Unknown(_) => usage_error(&args),
        },
    }
}

fn usage_error(args: &[String]) -> ExitCode {
    eprintln!("unknown arguments: {}\n{USAGE}", args.join(" "));
    ExitCode::from(2)
}

/// `ch10-arenas`, next to this binary. `cargo run` builds only the binary
/// it runs, so when started by cargo (which sets `CARGO`) and the arenas
/// binary is missing, build it with the same profile.
fn arenas_binary() -> PathBuf {
    let this = std::env::current_exe().expect("the path of this binary");
    let arenas = this.with_file_name("ch10-arenas");
    if !arenas.exists()
        && let Some(cargo) = std::env::var_os("CARGO")
    {
        let release = this
            .parent()
            .and_then(|dir| dir.file_name())
            .is_some_and(|profile| profile == "release");
        let mut build = Command::new(cargo);
        build.args([
            "build",
            "--quiet",
            "-p",
            "ch10-triage",
            "--bin",
            "ch10-arenas",
        ]);
        if release {
            build.arg("--release");
        }
        let _ = build.status();
    }
    arenas
}

fn scenario(name: &str, side: &str) -> ExitCode {
    let Some(side) = Side::parse(side) else {
        eprintln!("side must be bad or good, not {side:?}\n{USAGE}");
        return ExitCode::from(2);
    };
    let outcome = if *name == *"arenas" {
        let binary = arenas_binary();
        match run_arenas(&binary, side) {
            Ok(outcome) => Some(outcome),
            Err(error) => {
                eprintln!(
                    "could not run {}: {error} (build it with `cargo build -p ch10-triage --bins`)",
                    binary.display()
                );
                return ExitCode::FAILURE;
            }
        }
    } else {
        run_in_process(name, side)
    };
    let Some(outcome) = outcome else {
        eprintln!("unknown scenario {name:?}\n{USAGE}");
        return ExitCode::from(2);
    };
    print!("{}", outcome.diagnosis);
    let [first, last, highest] = outcome.resident();
    println!(
        "{RESULT}{}|{first}|{last}|{highest}",
        outcome.diagnosis.verdict
    );
    ExitCode::SUCCESS
}

/// One cell of the side-by-side table: a scenario run in its own process.
struct Cell {
    verdict: String,
    resident: [u64; 3],
    report: String,
}

fn run_child(name: &str, side: Side, knob: Option<(&str, &str)>) -> Result<Cell, String> {
    let mut command = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
    command.args(["scenario", name, side.name()]);
    if let Some((variable, value)) = knob {
        command.env(variable, value);
    }
    let output = command.output().map_err(|error| error.to_string())?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!(
            "{name} {}: {}",
            side.name(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let (report, result) = stdout
        .rsplit_once(RESULT)
        .ok_or_else(|| format!("{name} {}: no result line", side.name()))?;
    let fields: Vec<&str> = result.trim().split('|').collect();
    let number = |i: usize| fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0);
    Ok(Cell {
        verdict: fields[0].to_string(),
        resident: [number(1), number(2), number(3)],
        report: report.to_string(),
    })
}

fn mib(bytes: u64) -> String {
    format_bytes(bytes as i64)
}

fn side_by_side(sides: leaklab_cli::Sides) -> ExitCode {
    println!(
        "ch10-triage: each workload in a process of its own, diagnosed by leakscope::doctor\n"
    );
    let mut table = Table::new(sides.header(
        &["workload"],
        &["verdict", "anon RSS first → last (highest)"],
    ));
    let mut reports = Vec::new();
    for name in SCENARIOS {
        let mut cells = vec![name.to_string()];
        for (shown, side) in [(sides.bad, Side::Bad), (sides.good, Side::Good)] {
            if !shown {
                continue;
            }
            match run_child(name, side, None) {
                Ok(cell) => {
                    let [first, last, highest] = cell.resident;
                    cells.push(cell.verdict.clone());
                    cells.push(format!("{} → {} ({})", mib(first), mib(last), mib(highest)));
                    reports.push(format!("── {name}, {} ──\n{}", side.name(), cell.report));
                }
                Err(error) => {
                    eprintln!("{error}");
                    return ExitCode::FAILURE;
                }
            }
        }
        table.row(cells);
    }
    print!("{table}");
    println!(
        "\nverdict: leakscope::doctor on samples taken during the workload.\n\
         anon RSS: RssAnon of the workload's process at the first and last sample, and the highest.\n"
    );
    if sides.bad {
        match knobs() {
            Ok(knobs) => println!("{knobs}"),
            Err(error) => {
                eprintln!("{error}");
                return ExitCode::FAILURE;
            }
        }
    }
    for report in reports {
        println!("{report}");
    }
    ExitCode::SUCCESS
}

// ANCHOR: knobs
/// An allocator setting, tried on a bad side's own workload.
struct Knob {
    workload: &'static str,
    setting: &'static str,
    variable: Option<(&'static str, &'static str)>,
}

const KNOBS: [Knob; 6] = [
    Knob {
        workload: "burst",
        setting: "none (jemalloc's default decay, 10 s)",
        variable: None,
    },
    Knob {
        workload: "burst",
        setting: "MALLOC_CONF=dirty_decay_ms:0",
        variable: Some(("MALLOC_CONF", "dirty_decay_ms:0")),
    },
    Knob {
        workload: "arenas",
        setting: "MALLOC_ARENA_MAX=2",
        variable: Some(("MALLOC_ARENA_MAX", "2")),
    },
    Knob {
        workload: "arenas-jemalloc",
        setting: "jemalloc instead of glibc",
        variable: None,
    },
    Knob {
        workload: "arenas-jemalloc",
        setting: "jemalloc, MALLOC_CONF=narenas:1",
        variable: Some(("MALLOC_CONF", "narenas:1")),
    },
    Knob {
        workload: "arenas-jemalloc",
        setting: "jemalloc, MALLOC_CONF=dirty_decay_ms:0",
        variable: Some(("MALLOC_CONF", "dirty_decay_ms:0")),
    },
];
// ANCHOR_END: knobs

fn knobs() -> Result<Table, String> {
    println!("knobs: a bad side again, with one allocator setting changed\n");
    let mut table = Table::new([
        "workload",
        "setting",
        "verdict",
        "anon RSS first → last (highest)",
    ]);
    for knob in KNOBS {
        let cell = run_child(knob.workload, Side::Bad, knob.variable)?;
        let [first, last, highest] = cell.resident;
        table.row([
            knob.workload.to_string(),
            knob.setting.to_string(),
            cell.verdict,
            format!("{} → {} ({})", mib(first), mib(last), mib(highest)),
        ]);
    }
    Ok(table)
}

/// Parses `--pid N --seconds S [--metrics-url URL] [--interval-ms M]`.
fn watch(options: &[&str]) -> ExitCode {
    let mut pid = None;
    let mut seconds = None;
    let mut url = None;
    let mut interval = DEFAULT_INTERVAL;
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        let Some(value) = rest.next() else {
            eprintln!("{option} needs a value\n{USAGE}");
            return ExitCode::from(2);
        };
        let parsed = match *option {
            "--pid" => value.parse().map(|v| pid = Some(v)).is_ok(),
            "--seconds" => value.parse().map(|v| seconds = Some(v)).is_ok(),
            "--interval-ms" => value
                .parse()
                .map(|v| interval = Duration::from_millis(v))
                .is_ok(),
            "--metrics-url" => {
                url = Some(value.to_string());
                true
            }
            _ => {
                eprintln!("unknown option {option}\n{USAGE}");
                return ExitCode::from(2);
            }
        };
        if !parsed {
            eprintln!("{option} {value}: not a whole number");
            return ExitCode::from(2);
        }
    }
    let (Some(pid), Some(seconds)) = (pid, seconds) else {
        eprintln!("doctor needs --pid and --seconds\n{USAGE}");
        return ExitCode::from(2);
    };
    match doctor::watch_process(pid, Duration::from_secs(seconds), interval, url.as_deref()) {
        Ok(diagnosis) => {
            print!("{diagnosis}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("ch10-triage doctor: {error}");
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: serve
/// The listeners workload as a service: a request every 20 ms, its
/// signals at `/metrics` for `ch10-triage doctor --metrics-url`, and the
/// doctor itself at `/debug/leakscope/doctor`.
fn serve(side: Side) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a local port");
        println!(
            "listening on http://{}",
            listener.local_addr().expect("an address")
        );
        let work = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let metrics_work = work.clone();
        let app =
            axum::Router::new()
                .route(
                    "/metrics",
                    axum::routing::get(move || {
                        let work = metrics_work.load(std::sync::atomic::Ordering::Relaxed);
                        async move {
                            doctor::to_prometheus(&Sample::read_self(Duration::ZERO, Some(work)))
                        }
                    }),
                )
                .merge(doctor::doctor_router());
        tokio::spawn(async move { axum::serve(listener, app).await });
        // Stop when stdin closes (the parent is gone).
        let mut stdin_closed = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin()
                .read_line(&mut sink)
                .is_ok_and(|read| read > 0)
            {}
        });
        let listeners = std::rc::Rc::new(std::cell::RefCell::new(std::collections::HashMap::new()));
        let mut ticks = tokio::time::interval(Duration::from_millis(20));
        let mut request = 0;
        loop {
            tokio::select! {
                _ = &mut stdin_closed => break,
                _ = ticks.tick() => {}
            }
            // 16 requests per tick: 800 a second.
            for _ in 0..16 {
                match side {
                    Side::Bad => ch10_triage::bad::handle_request(&listeners, request),
                    Side::Good => ch10_triage::good::handle_request(&listeners, request),
                }
                request += 1;
            }
            work.store(request, std::sync::atomic::Ordering::Relaxed);
        }
    });
    ExitCode::SUCCESS
}
// ANCHOR_END: serve
