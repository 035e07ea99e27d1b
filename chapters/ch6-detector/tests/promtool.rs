//! The Prometheus alert rules in `alerts.yml`: valid (`promtool check
//! rules`), doing what their unit tests say (`promtool test rules
//! alerts_test.yml`), and written against metrics leakscope exports.
//!
//! promtool comes from Debian's `prometheus` package (`.ci/install-promtool`).
//! Under CI (the `CI` variable set) a missing promtool fails the tests;
//! elsewhere they print why they were skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn chapter_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs promtool, or returns `None` (after saying so) when it is missing
/// outside CI.
fn promtool(args: &[&str], dir: &Path) -> Option<Output> {
    match Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
    {
        Ok(output) => Some(output),
        Err(error) if std::env::var_os("CI").is_some() => {
            panic!("promtool is required under CI ({error}): run .ci/install-promtool")
        }
        Err(error) => {
            eprintln!(
                "SKIPPED: promtool not available ({error}); install it with .ci/install-promtool"
            );
            None
        }
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

// ANCHOR: promtool
#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let Some(check) = promtool(&["check", "rules", "alerts.yml"], chapter_dir()) else {
        return;
    };
    assert!(check.status.success(), "{}", text(&check));
    assert!(
        text(&check).contains("SUCCESS: 2 rules found"),
        "{}",
        text(&check)
    );

    let Some(unit) = promtool(&["test", "rules", "alerts_test.yml"], chapter_dir()) else {
        return;
    };
    assert!(unit.status.success(), "{}", text(&unit));
}
// ANCHOR_END: promtool

#[test]
fn promtool_rejects_a_broken_rule_and_a_wrong_expectation() {
    let scratch: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ch6-promtool");
    std::fs::create_dir_all(&scratch).unwrap();
    let rules = std::fs::read_to_string(chapter_dir().join("alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(chapter_dir().join("alerts_test.yml")).unwrap();

    // A syntax error in an expression.
    let broken = rules.replace("[30m:1m]", "[30m:1m");
    std::fs::write(scratch.join("alerts.yml"), &broken).unwrap();
    let Some(check) = promtool(&["check", "rules", "alerts.yml"], &scratch) else {
        return;
    };
    assert!(!check.status.success(), "{}", text(&check));

    // Valid rules, but a unit test expecting the steady instance to alert.
    std::fs::write(scratch.join("alerts.yml"), &rules).unwrap();
    let wrong = tests.replacen("instance: leaky", "instance: steady", 1);
    std::fs::write(scratch.join("alerts_test.yml"), wrong).unwrap();
    let Some(unit) = promtool(&["test", "rules", "alerts_test.yml"], &scratch) else {
        return;
    };
    assert!(!unit.status.success(), "{}", text(&unit));
}

#[test]
fn the_rules_use_metrics_leakscope_exports() {
    let exported = leakscope::monitor::Sample::default().to_prometheus();
    let rules = std::fs::read_to_string(chapter_dir().join("alerts.yml")).unwrap();
    for metric in ["jemalloc_allocated_bytes", "tokio_alive_tasks"] {
        assert!(rules.contains(metric), "alerts.yml should use {metric}");
        assert!(
            exported.contains(&format!("\n{metric} ")),
            "leakscope::monitor exports no {metric}"
        );
    }
}

// ANCHOR: corpus
#[test]
fn alerts_yml_under_promtool_on_the_held_out_corpus() {
    use ch6_detector::eval::{by_family, totals};
    use ch6_detector::prom::{self, PromError};
    use ch6_detector::traces::{self, Family, Part};

    let cases = traces::part(Part::HeldOut);
    let named: Vec<(&str, &[leakscope::detect::Observation])> = cases
        .iter()
        .map(|case| (case.name.as_str(), case.trace.as_slice()))
        .collect();
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ch6-promtool-corpus");
    let outcomes = match prom::evaluate(&chapter_dir().join("alerts.yml"), &scratch, &named) {
        Ok(outcomes) => outcomes,
        Err(PromError::Missing(error)) if std::env::var_os("CI").is_none() => {
            eprintln!(
                "SKIPPED: promtool not available ({error}); install it with .ci/install-promtool"
            );
            return;
        }
        Err(error) => panic!("{error}"),
    };
    let families = by_family(&cases, &outcomes);
    let family = |wanted: Family| &families.iter().find(|(f, _)| *f == wanted).unwrap().1;
    // Two 1-hour leaks are too slow for its 30-minute comparisons and
    // `for:` durations; the others are caught, about 25 minutes in.
    assert_eq!(family(Family::BigHeapLeak).caught, 0);
    assert_eq!(family(Family::TaskLeak).caught, 0);
    let all = totals(&families);
    assert_eq!((all.caught, all.leaking), (8, 12));
    assert_eq!((all.median_minutes().unwrap() * 10.0).round(), 253.0);
    // Its floors are 5-minute minima: a step, a warming cache and one
    // slow sawtooth read as a heap that will double.
    let quiet: Vec<(Family, usize)> = families
        .iter()
        .filter(|(f, s)| !f.leaks() && s.traces_with_false_alerts > 0)
        .map(|(f, s)| (*f, s.traces_with_false_alerts))
        .collect();
    assert_eq!(
        quiet,
        [
            (Family::Sawtooth, 1),
            (Family::WarmUp, 2),
            (Family::Step, 2)
        ]
    );
}
// ANCHOR_END: corpus
