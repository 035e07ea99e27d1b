//! The monitor's `/metrics` text checked by Prometheus's own linter,
//! `promtool check metrics` (format, HELP and TYPE lines, naming and unit
//! conventions).
//!
//! promtool comes from Debian's `prometheus` package (`.ci/install-promtool`).
//! Under CI (the `CI` variable set) a missing promtool fails the test;
//! elsewhere it prints why it was skipped.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use leakscope::monitor::{Monitor, MonitorConfig};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Feeds `metrics` to `promtool check metrics`, or returns `None` (after
/// saying so) when promtool is missing outside CI.
fn promtool_check_metrics(metrics: &str) -> Option<Output> {
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) if std::env::var_os("CI").is_some() => {
            panic!("promtool is required under CI ({error}): run .ci/install-promtool")
        }
        Err(error) => {
            eprintln!(
                "SKIPPED: promtool not available ({error}); install it with .ci/install-promtool"
            );
            return None;
        }
    };
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(metrics.as_bytes())
        .expect("promtool reads its input");
    Some(child.wait_with_output().expect("promtool runs"))
}

// ANCHOR: promtool
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn promtool_finds_nothing_to_complain_about() {
    let monitor = Monitor::start(MonitorConfig::default());
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let metrics = monitor.stop().await.to_prometheus();

    let Some(check) = promtool_check_metrics(&metrics) else {
        return;
    };

    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(check.status.success(), "{complaints}\n{metrics}");
    assert_eq!(complaints.trim(), "", "{metrics}");
}
// ANCHOR_END: promtool

#[test]
fn promtool_would_complain_about_a_badly_named_metric() {
    // The check above can fail: a counter without `_total` is refused.
    let badly_named = "# HELP samples Samples.\n# TYPE samples counter\nsamples 3\n";
    let Some(check) = promtool_check_metrics(badly_named) else {
        return;
    };
    let complaints = String::from_utf8_lossy(&check.stdout).to_string()
        + &String::from_utf8_lossy(&check.stderr);
    assert!(complaints.contains("_total"), "{complaints}");
}
