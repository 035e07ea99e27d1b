//! `just run ch6-detector [bad|good]`: scores the seed's detector and the
//! fixed one on every shipped trace. `eval FILE.csv…` scores them on any
//! trace; `write-traces` regenerates `traces/`; `chart DIR` draws the
//! page's charts.

use std::path::Path;
use std::process::ExitCode;

use ch6_detector::eval::{
    NOISE_DRAWS, Outcome, Score, leakscope_detector, robustness, score, seed_detector,
};
use ch6_detector::{good, scenario, traces};
use leakscope::chart::LineChart;
use leakscope::detect::{Observation, parse_trace, write_trace};
use leakscope::report::Table;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const USAGE: &str = "\
usage: ch6-detector [bad|good]        score the seed's (bad) and leakscope's (good) detector
                                      on the shipped traces (no argument: both)
       ch6-detector eval FILE.csv…    score both on your own traces
                                      (CSV header: t_ms,heap_bytes,objects,tasks)
       ch6-detector write-traces      regenerate traces/*.csv (synthetic + seed scenario)
       ch6-detector chart DIR         write the page's SVG charts into DIR";

#[derive(Clone, Copy)]
struct Sides {
    seed: bool,
    leakscope: bool,
}

fn first_true(score: &Score, leak_from: Option<usize>) -> String {
    match (leak_from, score.samples_to_first_true) {
        (None, _) => "—".to_string(),
        (Some(_), Some(samples)) => format!("+{samples}"),
        (Some(_), None) => "missed".to_string(),
    }
}

/// Raised kinds with the row each was first raised at, e.g. `TASK_GROWTH@14`.
fn kinds(outcome: &Outcome) -> String {
    let mut seen: Vec<(String, usize, usize)> = Vec::new();
    for alert in &outcome.raised {
        match seen.iter_mut().find(|(kind, _, _)| *kind == alert.kind) {
            Some((_, _, count)) => *count += 1,
            None => seen.push((alert.kind.clone(), alert.sample, 1)),
        }
    }
    if seen.is_empty() {
        return "none".to_string();
    }
    seen.iter()
        .map(|(kind, first, count)| match count {
            1 => format!("{kind}@{first}"),
            _ => format!("{kind}@{first} ×{count}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn score_table(sides: Sides, rows: &[(String, Option<usize>, Vec<Observation>)]) -> String {
    let mut header = vec!["trace", "samples"];
    if sides.seed {
        header.extend(["seed: alerts", "seed: first true", "seed: false"]);
    }
    if sides.leakscope {
        header.extend([
            "leakscope: alerts",
            "leakscope: first true",
            "leakscope: false",
        ]);
    }
    let mut table = Table::new(header);
    let mut details = Table::new([
        "trace",
        "detector",
        "alerts raised (kind@row, first of each)",
    ]);
    for (name, leak_from, trace) in rows {
        let mut cells = vec![name.clone(), trace.len().to_string()];
        let mut outcomes = Vec::new();
        if sides.seed {
            outcomes.push(("seed", seed_detector(trace)));
        }
        if sides.leakscope {
            outcomes.push(("leakscope", leakscope_detector(trace)));
        }
        for (detector, outcome) in &outcomes {
            let score = score(outcome, *leak_from);
            cells.extend([
                score.alerts.to_string(),
                first_true(&score, *leak_from),
                score.false_alerts.to_string(),
            ]);
            details.row([name.clone(), detector.to_string(), kinds(outcome)]);
        }
        table.row(cells);
    }
    format!("{table}\n{details}")
}

fn shipped(sides: Sides) {
    println!("ch6-detector: both detectors on the shipped traces (one row per second)\n");
    let rows: Vec<_> = traces::SHIPPED
        .iter()
        .map(|spec| {
            (
                spec.name.to_string(),
                spec.leak_from,
                traces::load(spec.name),
            )
        })
        .collect();
    print!("{}", score_table(sides, &rows));
    println!(
        "\nalerts: alerts raised (the seed repeats an alert at every 10 s analysis while its \
         condition holds;\n        leakscope raises once and clears once).\n\
         first true: rows from the start of the leak to the first alert (— no leak; missed: none).\n\
         false: alerts raised while nothing leaked (on a quiet trace, or before the leak began)."
    );
    println!("\nThe same shapes with {NOISE_DRAWS} other noise draws each (is the score luck?):\n");
    let mut header = vec!["trace"];
    if sides.seed {
        header.extend(["seed: draws with false alerts", "seed: worst first true"]);
    }
    if sides.leakscope {
        header.extend([
            "leakscope: draws with false alerts",
            "leakscope: worst first true",
        ]);
    }
    let mut draws = Table::new(header);
    for spec in traces::SHIPPED {
        let mut cells = vec![spec.name.to_string()];
        let mut detectors: Vec<fn(&[Observation]) -> Outcome> = Vec::new();
        if sides.seed {
            detectors.push(seed_detector);
        }
        if sides.leakscope {
            detectors.push(leakscope_detector);
        }
        for detector in detectors {
            let Some(result) = robustness(spec.name, spec.leak_from, detector) else {
                continue; // recorded, not generated
            };
            let worst = match (result.worst_samples_to_first_true, result.missed) {
                (_, missed) if missed > 0 => format!("missed {missed}×"),
                (Some(worst), _) => format!("+{worst}"),
                (None, _) => "—".to_string(),
            };
            cells.extend([
                format!(
                    "{} ({} alerts)",
                    result.draws_with_false_alerts, result.false_alerts
                ),
                worst,
            ]);
        }
        if cells.len() > 1 {
            draws.row(cells);
        }
    }
    print!("{draws}");

    let mut legend = Table::new(["trace", "what it shows"]);
    for spec in traces::SHIPPED {
        legend.row([spec.name, spec.description]);
    }
    println!("\n{legend}");
    let long = traces::load("steady");
    println!(
        "memory after {} samples: the seed's detector holds {} observations, leakscope's {}.",
        long.len(),
        seed_detector(&long).retained,
        leakscope_detector(&long).retained
    );
}

fn eval_files(paths: &[String]) -> ExitCode {
    let mut rows = Vec::new();
    for path in paths {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) => {
                eprintln!("{path}: {error}");
                return ExitCode::FAILURE;
            }
        };
        match parse_trace(&text) {
            Ok(trace) => rows.push((path.clone(), None, trace)),
            Err(error) => {
                eprintln!("{path}: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    let sides = Sides {
        seed: true,
        leakscope: true,
    };
    print!("{}", score_table(sides, &rows));
    println!("\n(no ground truth for your files: every alert counts as raised, none as false)");
    for (path, _, trace) in &rows {
        println!("\nleakscope's alerts on {path}:");
        let mut detector = good::detector();
        let alerts: Vec<_> = trace.iter().flat_map(|o| detector.observe(*o)).collect();
        if alerts.is_empty() {
            println!("  none");
        }
        for alert in alerts {
            println!("  {alert}");
        }
    }
    ExitCode::SUCCESS
}

fn write_traces() -> ExitCode {
    for spec in traces::SHIPPED {
        let trace = traces::generate(spec.name).unwrap_or_else(scenario::record);
        let path = traces::path(spec.name);
        if let Err(error) = std::fs::write(&path, write_trace(&trace)) {
            eprintln!("{}: {error}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {} ({} rows)", path.display(), trace.len());
    }
    ExitCode::SUCCESS
}

/// One trace's heap as a line, with each detector's alerts marked where
/// they were raised.
fn chart_trace(name: &str, title: &str, out: &Path) -> std::io::Result<()> {
    let trace = traces::load(name);
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let seconds = |row: usize| trace[row].t_ms as f64 / 1000.0;
    let heap: Vec<(f64, f64)> = (0..trace.len())
        .map(|row| (seconds(row), mib(trace[row].heap_bytes)))
        .collect();
    let marks = |outcome: Outcome| -> Vec<(f64, f64)> {
        outcome
            .raised
            .iter()
            .map(|alert| (seconds(alert.sample), mib(trace[alert.sample].heap_bytes)))
            .collect()
    };
    LineChart::new(title)
        .x_label("time (s)")
        .y_label("heap (MiB)")
        .y_format(|value| format!("{value:.0}"))
        .series("heap", &heap)
        .markers("seed's alerts", &marks(seed_detector(&trace)))
        .markers("leakscope's alerts", &marks(leakscope_detector(&trace)))
        .write_svg(out.join(format!("ch6-detector-{name}.svg")))
}

fn charts(dir: &str) -> ExitCode {
    let dir = Path::new(dir);
    let charts = [
        (
            "seed-scenario",
            "The seed's scenario: heap, and where each detector alerted",
        ),
        ("slow-leak", "A slow leak: +48 KiB/s from the first minute"),
    ];
    for (name, title) in charts {
        if let Err(error) = chart_trace(name, title, dir) {
            eprintln!("{}: {error}", dir.display());
            return ExitCode::FAILURE;
        }
        println!(
            "wrote {}",
            dir.join(format!("ch6-detector-{name}.svg")).display()
        );
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let both = Sides {
        seed: true,
        leakscope: true,
    };
    match words[..] {
        [] => shipped(both),
        ["bad"] => shipped(Sides {
            leakscope: false,
            ..both
        }),
        ["good"] => shipped(Sides {
            seed: false,
            ..both
        }),
        ["eval", _, ..] => return eval_files(&args[1..]),
        ["write-traces"] => return write_traces(),
        ["chart", dir] => return charts(dir),
        ["-h" | "--help"] => println!("{USAGE}"),
        _ => {
            eprintln!("unknown arguments: {}\n{USAGE}", args.join(" "));
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
