//! `just run ch6-detector [bad|good]`: scores the seed's detector,
//! leakscope's and the Prometheus rules on the held-out part of the corpus.
//! `tuning` scores the tuning part; `eval FILE.csv…` scores the detectors
//! on any trace; `write-traces DIR` writes the corpus; `chart DIR` draws
//! the page's charts.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ch6_detector::eval::{
    DetectorFn, FamilyScore, Outcome, by_family, leakscope_detector, score, seed_detector, totals,
};
use ch6_detector::traces::{self, Case, Family, Part};
use ch6_detector::{good, prom};
use leakscope::chart::LineChart;
use leakscope::detect::{Observation, parse_trace, write_trace};
use leakscope::report::Table;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const USAGE: &str = "\
usage: ch6-detector [bad|good]         score the seed's (bad) and leakscope's (good) detector,
                                       and alerts.yml under promtool, on the held-out traces
       ch6-detector tuning             the same on the tuning traces
       ch6-detector traces tuning|held-out   each trace's first alerts, one row each
       ch6-detector markdown held-out|legend   the held-out table, or the families, in Markdown
       ch6-detector eval FILE.csv[@S]… score both on your own traces (CSV header:
                                       t_ms,heap_bytes,objects,tasks); @S: the leak starts at
                                       S seconds, @none: nothing leaks (ground truth, optional)
       ch6-detector write-traces DIR   write the corpus as CSV files into DIR
       ch6-detector chart DIR          write the page's SVG charts into DIR";

/// Which detectors a run scores.
#[derive(Clone, Copy)]
struct Sides {
    seed: bool,
    leakscope: bool,
}

/// A family's cell: leaks caught and the median time to the first alert,
/// or the quiet traces with false alerts and how many alerts.
fn cell(family: Family, score: &FamilyScore) -> String {
    let alerts = |count: usize| match count {
        1 => "1 alert".to_string(),
        _ => format!("{count} alerts"),
    };
    if family.leaks() {
        let caught = match score.median_minutes() {
            Some(median) => format!("{}/{}, {median:.1} min", score.caught, score.leaking),
            None => format!("0/{}", score.leaking),
        };
        match score.false_alerts {
            0 => caught,
            early => format!("{caught} ({} before)", alerts(early)),
        }
    } else if score.false_alerts == 0 {
        "no alert".to_string()
    } else {
        format!(
            "false on {}/{} ({})",
            score.traces_with_false_alerts,
            score.traces,
            alerts(score.false_alerts)
        )
    }
}

fn total_cells(score: &FamilyScore, quiet_traces: usize) -> [String; 2] {
    [
        format!(
            "{}/{} caught, median {}",
            score.caught,
            score.leaking,
            score
                .median_minutes()
                .map_or("—".to_string(), |m| format!("{m:.1} min"))
        ),
        format!(
            "{}/{quiet_traces} with false alerts",
            score.traces_with_false_alerts
        ),
    ]
}

/// The Prometheus rules' outcomes, or why there are none.
fn prometheus(cases: &[Case]) -> Result<Vec<Outcome>, prom::PromError> {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("alerts.yml");
    let scratch =
        std::env::temp_dir().join(format!("ch6-detector-promtool-{}", std::process::id()));
    let traces: Vec<(&str, &[Observation])> = cases
        .iter()
        .map(|case| (case.name.as_str(), case.trace.as_slice()))
        .collect();
    let result = prom::evaluate(&rules, &scratch, &traces);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// Prints `rows` as a Markdown table (for the page: it wraps to fit).
fn markdown(header: &[String], rows: &[Vec<String>]) {
    println!("| {} |", header.join(" | "));
    println!("|{}", "---|".repeat(header.len()));
    for row in rows {
        println!("| {} |", row.join(" | "));
    }
}

fn corpus_table(sides: Sides, part: Part, as_markdown: bool) {
    let cases = traces::part(part);
    let what = match part {
        Part::HeldOut => "held-out",
        Part::Tuning => "tuning",
    };
    if !as_markdown {
        println!(
            "ch6-detector: {} {what} traces of {} families (1 h or 3 h each)\n",
            cases.len(),
            Family::ALL.len()
        );
    }
    let mut detectors: Vec<(&str, Vec<Outcome>)> = Vec::new();
    let run = |detector: DetectorFn| -> Vec<Outcome> {
        cases.iter().map(|case| detector(&case.trace)).collect()
    };
    if sides.seed {
        detectors.push(("seed", run(seed_detector)));
    }
    if sides.leakscope {
        detectors.push(("leakscope", run(leakscope_detector)));
    }
    let mut prometheus_note = None;
    if sides.leakscope {
        match prometheus(&cases) {
            Ok(outcomes) => detectors.push(("alerts.yml", outcomes)),
            Err(error) => prometheus_note = Some(format!("alerts.yml column left out: {error}")),
        }
    }
    let scores: Vec<(&str, Vec<(Family, FamilyScore)>)> = detectors
        .iter()
        .map(|(name, outcomes)| (*name, by_family(&cases, outcomes)))
        .collect();

    let mut header = vec!["family".to_string(), "traces".to_string()];
    header.extend(scores.iter().map(|(name, _)| name.to_string()));
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (index, family) in Family::ALL.into_iter().enumerate() {
        let mut cells = vec![
            family.name().to_string(),
            scores[0].1[index].1.traces.to_string(),
        ];
        cells.extend(scores.iter().map(|(_, s)| cell(family, &s[index].1)));
        rows.push(cells);
    }
    let quiet_traces = cases.iter().filter(|c| !c.family.leaks()).count();
    for line in 0..2 {
        let mut cells = vec![
            if line == 0 { "all leaks" } else { "all quiet" }.to_string(),
            if line == 0 {
                (cases.len() - quiet_traces).to_string()
            } else {
                quiet_traces.to_string()
            },
        ];
        for (_, families) in &scores {
            let quiet: Vec<_> = families
                .iter()
                .filter(|(f, _)| !f.leaks())
                .cloned()
                .collect();
            let all = totals(families);
            cells.push(if line == 0 {
                total_cells(&all, quiet_traces)[0].clone()
            } else {
                total_cells(&totals(&quiet), quiet_traces)[1].clone()
            });
        }
        rows.push(cells);
    }
    if as_markdown {
        markdown(&header, &rows);
        return;
    }
    let mut table = Table::new(header);
    for row in rows {
        table.row(row);
    }
    print!("{table}");
    println!(
        "\nleaking families: traces caught (an alert after the leak started), the median time from\n\
         the start of the leak to that first alert, and alerts raised before the leak began.\n\
         quiet families: traces with false alerts, and how many alerts (the seed repeats its\n\
         alert at every 10 s analysis while its condition holds, leakscope raises once per\n\
         condition, alerts.yml counts firing episodes)."
    );
    if let Some(note) = prometheus_note {
        println!("{note}");
    }
    let mut legend = Table::new(["family", "what varies between its traces"]);
    for family in Family::ALL {
        legend.row([family.name(), family.description()]);
    }
    println!("\n{legend}");
}

/// Every trace of a part, one row each: where its leak starts, and the
/// first alerts of each detector (kind@minute).
fn per_trace(part: Part) {
    let mut table = Table::new(["trace", "leak from", "seed", "leakscope"]);
    let minute = |trace: &[Observation], row: usize| trace[row].t_ms as f64 / 60_000.0;
    for case in traces::part(part) {
        let describe = |outcome: Outcome| -> String {
            let scored = score(&outcome, &case.trace, case.leak_from);
            let mut kinds: Vec<String> = Vec::new();
            for alert in &outcome.raised {
                let text = format!("{}@{:.1}", alert.kind, minute(&case.trace, alert.sample));
                if kinds.len() < 3 && !kinds.iter().any(|k| k.starts_with(&alert.kind)) {
                    kinds.push(text);
                }
            }
            format!(
                "{} alerts, {} false: {}",
                scored.alerts,
                scored.false_alerts,
                kinds.join(" ")
            )
        };
        let leak = case.leak_from.map_or("—".to_string(), |row| {
            format!("{:.1} min", minute(&case.trace, row))
        });
        table.row([
            case.name.clone(),
            leak,
            describe(seed_detector(&case.trace)),
            describe(leakscope_detector(&case.trace)),
        ]);
    }
    print!("{table}");
}

/// A file argument: its path and, after `@`, the leak's start in seconds
/// (`none`: no leak). Without `@`, the truth is unknown.
fn parse_truth(argument: &str) -> Result<(String, Option<Option<u64>>), String> {
    match argument.rsplit_once('@') {
        None => Ok((argument.to_string(), None)),
        Some((path, "none")) => Ok((path.to_string(), Some(None))),
        Some((path, seconds)) => match seconds.parse() {
            Ok(seconds) => Ok((path.to_string(), Some(Some(seconds)))),
            Err(_) => Err(format!(
                "{argument}: after @, the leak's start in seconds or `none`, not `{seconds}`"
            )),
        },
    }
}

fn eval_files(arguments: &[String]) -> ExitCode {
    let mut files = Vec::new();
    for argument in arguments {
        let (path, truth) = match parse_truth(argument) {
            Ok(parsed) => parsed,
            Err(message) => {
                eprintln!("{message}\n{USAGE}");
                return ExitCode::from(2);
            }
        };
        let trace = match std::fs::read_to_string(&path)
            .map_err(|error| error.to_string())
            .and_then(|text| parse_trace(&text).map_err(|error| error.to_string()))
        {
            Ok(trace) => trace,
            Err(error) => {
                eprintln!("{path}: {error}");
                return ExitCode::FAILURE;
            }
        };
        files.push((path, truth, trace));
    }
    let mut table = Table::new([
        "trace",
        "rows",
        "detector",
        "alerts",
        "first alert",
        "first true",
        "false",
    ]);
    for (path, truth, trace) in &files {
        let leak_from = truth
            .flatten()
            .map(|seconds| trace.partition_point(|o| o.t_ms < seconds * 1000));
        for (name, detector) in [
            ("seed", seed_detector as DetectorFn),
            ("leakscope", leakscope_detector),
        ] {
            let outcome = detector(trace);
            let scored = score(&outcome, trace, leak_from);
            let first_alert = outcome.raised.first().map_or("—".to_string(), |alert| {
                format!("{:.1} min", trace[alert.sample].t_ms as f64 / 60_000.0)
            });
            let (first_true, false_alerts) = match truth {
                None => ("?".to_string(), "?".to_string()),
                Some(None) => ("—".to_string(), scored.false_alerts.to_string()),
                Some(Some(_)) => (
                    scored.ms_to_first_true.map_or("missed".to_string(), |ms| {
                        format!("+{:.1} min", ms as f64 / 60_000.0)
                    }),
                    scored.false_alerts.to_string(),
                ),
            };
            table.row([
                path.clone(),
                trace.len().to_string(),
                name.to_string(),
                scored.alerts.to_string(),
                first_alert,
                first_true,
                false_alerts,
            ]);
        }
    }
    print!("{table}");
    println!(
        "\nfirst alert: time of the first alert from the start of the trace. first true: from the\n\
         start of the leak to the first alert after it; false: alerts before the leak (or any,\n\
         on a trace marked @none). `?`: no ground truth given (FILE.csv@SECONDS or @none)."
    );
    for (path, _, trace) in &files {
        println!("\nleakscope's alerts on {path}:");
        let mut detector = good::detector();
        let alerts: Vec<_> = trace
            .iter()
            .flat_map(|o| detector.observe(*o).expect("parse_trace checks the order"))
            .collect();
        if alerts.is_empty() {
            println!("  none");
        }
        for alert in alerts {
            println!("  {alert}");
        }
    }
    ExitCode::SUCCESS
}

fn write_traces(dir: &str) -> ExitCode {
    let dir = PathBuf::from(dir);
    if let Err(error) = std::fs::create_dir_all(&dir) {
        eprintln!("{}: {error}", dir.display());
        return ExitCode::FAILURE;
    }
    let mut labels = String::from("trace,family,part,leak_from_s\n");
    for case in traces::corpus() {
        let path = dir.join(format!("{}.csv", case.name));
        if let Err(error) = std::fs::write(&path, write_trace(&case.trace)) {
            eprintln!("{}: {error}", path.display());
            return ExitCode::FAILURE;
        }
        let leak = case.leak_from.map_or("none".to_string(), |row| {
            (case.trace[row].t_ms / 1000).to_string()
        });
        let part = match case.part {
            Part::Tuning => "tuning",
            Part::HeldOut => "held-out",
        };
        labels.push_str(&format!(
            "{},{},{part},{leak}\n",
            case.name,
            case.family.name()
        ));
    }
    let path = dir.join("labels.csv");
    if let Err(error) = std::fs::write(&path, labels) {
        eprintln!("{}: {error}", path.display());
        return ExitCode::FAILURE;
    }
    println!("wrote the corpus and labels.csv into {}", dir.display());
    ExitCode::SUCCESS
}

/// One trace's heap as a line (above its lowest value, so that the shape
/// fills the chart), with the floors over 32 s and 4.3 min as steps, the
/// start of the leak, and leakscope's alerts marked where they were raised.
fn chart_case(case: &Case, title: &str, out: &Path) -> std::io::Result<()> {
    let trace = &case.trace;
    let lowest = trace.iter().map(|o| o.heap_bytes).min().unwrap_or(0);
    let mib = |bytes: u64| (bytes - lowest) as f64 / (1024.0 * 1024.0);
    let minutes = |row: usize| trace[row].t_ms as f64 / 60_000.0;
    let heap: Vec<(f64, f64)> = (0..trace.len())
        .map(|row| (minutes(row), mib(trace[row].heap_bytes)))
        .collect();
    let floors = |block: usize| -> Vec<(f64, f64)> {
        trace
            .chunks(block)
            .enumerate()
            .flat_map(|(index, chunk)| {
                let low = chunk.iter().map(|o| o.heap_bytes).min().unwrap_or(lowest);
                let start = index * block;
                let end = (start + chunk.len()).min(trace.len() - 1);
                [(minutes(start), mib(low)), (minutes(end), mib(low))]
            })
            .collect()
    };
    let alerts: Vec<(f64, f64)> = leakscope_detector(trace)
        .raised
        .iter()
        .map(|alert| (minutes(alert.sample), mib(trace[alert.sample].heap_bytes)))
        .collect();
    let mut chart = LineChart::new(title)
        .x_label("time (min)")
        .y_label("heap above its lowest (MiB)")
        .y_format(|value| format!("{value:.0}"))
        .series("heap", &heap)
        .series("floor over 32 s", &floors(32))
        .series("floor over 4.3 min", &floors(256));
    if let Some(start) = case.leak_from {
        let highest = trace.iter().map(|o| o.heap_bytes).max().unwrap_or(lowest);
        chart = chart.series(
            "leak starts",
            &[(minutes(start), 0.0), (minutes(start), mib(highest))],
        );
    }
    chart
        .markers("leakscope's alerts", &alerts)
        .write_svg(out.join(format!("ch6-detector-{}.svg", case.name)))
}

fn charts(dir: &str) -> ExitCode {
    let dir = Path::new(dir);
    let charts = [
        (Family::Sawtooth, 7, "A cache swept every 150 s: no leak"),
        (Family::LeakUnderSawtooth, 1, "A leak under a 60 s sawtooth"),
    ];
    for (family, draw, title) in charts {
        let case = traces::generate(family, draw);
        if let Err(error) = chart_case(&case, title, dir) {
            eprintln!("{}: {error}", dir.display());
            return ExitCode::FAILURE;
        }
        println!(
            "wrote {}",
            dir.join(format!("ch6-detector-{}.svg", case.name))
                .display()
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
        [] => corpus_table(both, Part::HeldOut, false),
        ["tuning"] => corpus_table(both, Part::Tuning, false),
        ["markdown", "held-out"] => corpus_table(both, Part::HeldOut, true),
        ["markdown", "legend"] => {
            let rows: Vec<Vec<String>> = Family::ALL
                .iter()
                .map(|f| {
                    vec![
                        f.name().to_string(),
                        if f.leaks() { "yes" } else { "no" }.to_string(),
                        f.description().to_string(),
                    ]
                })
                .collect();
            markdown(
                &[
                    "family".into(),
                    "leaks".into(),
                    "what varies between its traces".into(),
                ],
                &rows,
            );
        }
        ["traces", "tuning"] => per_trace(Part::Tuning),
        ["traces", "held-out"] => per_trace(Part::HeldOut),
        ["bad"] => corpus_table(
            Sides {
                leakscope: false,
                ..both
            },
            Part::HeldOut,
            false,
        ),
        ["good"] => corpus_table(
            Sides {
                seed: false,
                ..both
            },
            Part::HeldOut,
            false,
        ),
        ["eval", _, ..] => return eval_files(&args[1..]),
        ["write-traces", dir] => return write_traces(dir),
        ["chart", dir] => return charts(dir),
        ["-h" | "--help"] => println!("{USAGE}"),
        _ => {
            eprintln!("unknown arguments: {}\n{USAGE}", args.join(" "));
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
