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
