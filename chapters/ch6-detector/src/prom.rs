//! The Prometheus rules in `alerts.yml`, evaluated on the corpus by
//! Prometheus itself: every trace becomes an instance's series in a
//! `promtool test rules` file (one sample every 15 s, a common scrape
//! interval), each rule is expected to be silent at every minute, and
//! promtool's list of failed expectations is the list of minutes at which
//! each instance's alert was firing.

use std::path::Path;
use std::process::Command;

use leakscope::detect::Observation;

use crate::eval::{Outcome, Raised};

/// Seconds between the samples promtool is fed (a scrape interval).
pub const SCRAPE_INTERVAL_S: u64 = 15;

/// The alerts `alerts.yml` defines.
pub const RULES: [&str; 2] = ["HeapFloorWillDoubleWithinSixHours", "AliveTasksGrowing"];

/// Why the rules could not be evaluated.
#[derive(Debug)]
pub enum PromError {
    /// promtool is not installed.
    Missing(std::io::Error),
    /// promtool ran but said something this module cannot read.
    Unexpected(String),
}

impl std::fmt::Display for PromError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PromError::Missing(error) => write!(f, "promtool not available ({error})"),
            PromError::Unexpected(text) => write!(f, "unexpected promtool output: {text}"),
        }
    }
}

/// The values of one series in promtool's notation, one per scrape.
fn series_values(trace: &[Observation], value: impl Fn(&Observation) -> u64) -> String {
    let mut next_scrape = 0;
    let mut values = Vec::new();
    for observation in trace {
        if observation.t_ms >= next_scrape {
            values.push(value(observation).to_string());
            next_scrape = observation.t_ms - observation.t_ms % (SCRAPE_INTERVAL_S * 1000)
                + SCRAPE_INTERVAL_S * 1000;
        }
    }
    values.join(" ")
}

/// A `promtool test rules` file feeding `traces` (named instances) to
/// `rules_file`, expecting no alert at any whole minute.
pub fn rule_test_file(rules_file: &str, traces: &[(&str, &[Observation])]) -> String {
    let mut text = format!(
        "rule_files:\n  - {rules_file}\nevaluation_interval: 1m\ntests:\n  - interval: {SCRAPE_INTERVAL_S}s\n    input_series:\n"
    );
    let mut longest_min = 0;
    for (name, trace) in traces {
        let heap = series_values(trace, |o| o.heap_bytes);
        let tasks = series_values(trace, |o| o.tasks);
        text.push_str(&format!(
            "      - series: 'jemalloc_allocated_bytes{{instance=\"{name}\"}}'\n        values: '{heap}'\n\
             \x20     - series: 'tokio_alive_tasks{{instance=\"{name}\"}}'\n        values: '{tasks}'\n"
        ));
        let minutes = trace.last().map_or(0, |o| o.t_ms / 60_000);
        longest_min = longest_min.max(minutes);
    }
    text.push_str("    alert_rule_test:\n");
    for minute in 1..=longest_min {
        for rule in RULES {
            text.push_str(&format!(
                "      - eval_time: {minute}m\n        alertname: {rule}\n        exp_alerts: []\n"
            ));
        }
    }
    text
}

/// Parses a Go duration as promtool prints it (`1h5m`, `45m`, `30s`) into
/// seconds.
fn parse_duration_s(text: &str) -> Option<u64> {
    let mut total = 0;
    let mut number = String::new();
    for c in text.chars() {
        match c {
            '0'..='9' => number.push(c),
            'h' | 'm' | 's' => {
                let value: u64 = number.parse().ok()?;
                total += value
                    * match c {
                        'h' => 3600,
                        'm' => 60,
                        _ => 1,
                    };
                number.clear();
            }
            _ => return None,
        }
    }
    number.is_empty().then_some(total)
}

/// Firing alerts promtool reported: (alert, instance, eval time in seconds).
pub fn parse_failures(output: &str) -> Result<Vec<(String, String, u64)>, PromError> {
    let mut firing = Vec::new();
    let mut current: Option<(String, u64)> = None;
    for line in output.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("alertname: ") {
            let (name, time) = rest
                .split_once(", time: ")
                .ok_or_else(|| PromError::Unexpected(line.to_string()))?;
            let time = time.trim_end_matches([',', ' ']);
            let seconds =
                parse_duration_s(time).ok_or_else(|| PromError::Unexpected(line.to_string()))?;
            current = Some((name.to_string(), seconds));
        } else if let Some(labels) = line.strip_prefix("Labels:{") {
            let (alert, seconds) = current
                .clone()
                .ok_or_else(|| PromError::Unexpected(line.to_string()))?;
            let instance = labels
                .split(", ")
                .find_map(|label| label.strip_prefix("instance=\""))
                .and_then(|value| value.split('"').next())
                .ok_or_else(|| PromError::Unexpected(line.to_string()))?;
            firing.push((alert, instance.to_string(), seconds));
        }
    }
    Ok(firing)
}

/// Evaluates `alerts.yml` on `traces` with promtool in `scratch` and
/// returns, per trace, the alerts raised: one per firing episode (an alert
/// that starts firing), at the row of the trace at that minute.
pub fn evaluate(
    rules: &Path,
    scratch: &Path,
    traces: &[(&str, &[Observation])],
) -> Result<Vec<Outcome>, PromError> {
    std::fs::create_dir_all(scratch).map_err(PromError::Missing)?;
    std::fs::copy(rules, scratch.join("alerts.yml")).map_err(PromError::Missing)?;
    std::fs::write(
        scratch.join("corpus_test.yml"),
        rule_test_file("alerts.yml", traces),
    )
    .map_err(PromError::Missing)?;
    let output = Command::new("promtool")
        .args(["test", "rules", "corpus_test.yml"])
        .current_dir(scratch)
        .output()
        .map_err(PromError::Missing)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() && !text.contains("FAILED:") {
        return Err(PromError::Unexpected(text));
    }
    let firing = parse_failures(&text)?;
    let outcomes = traces
        .iter()
        .map(|(name, trace)| {
            let mut raised = Vec::new();
            for rule in RULES {
                let mut minutes: Vec<u64> = firing
                    .iter()
                    .filter(|(alert, instance, _)| alert == rule && instance == name)
                    .map(|(_, _, seconds)| *seconds)
                    .collect();
                minutes.sort_unstable();
                minutes.dedup();
                let mut previous = None;
                for seconds in minutes {
                    // A new episode unless it was firing a minute before.
                    if previous != Some(seconds - 60) {
                        let row = trace.partition_point(|o| o.t_ms <= seconds * 1000);
                        raised.push(Raised {
                            sample: row.saturating_sub(1),
                            kind: rule.to_string(),
                        });
                    }
                    previous = Some(seconds);
                }
            }
            raised.sort_by_key(|alert| alert.sample);
            Outcome {
                raised,
                cleared: 0,
                retained: 0,
            }
        })
        .collect();
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_failures_parse() {
        assert_eq!(parse_duration_s("1h5m"), Some(3900));
        assert_eq!(parse_duration_s("45m"), Some(2700));
        assert_eq!(parse_duration_s("5m30s"), Some(330));
        assert_eq!(parse_duration_s("5x"), None);
        let output = "  FAILED:\n    alertname: A, time: 1h2m, \n        exp:[], \n        got:[\n            0:\n              Labels:{alertname=\"A\", instance=\"slow-leak-1\"}\n";
        assert_eq!(
            parse_failures(output).unwrap(),
            [("A".to_string(), "slow-leak-1".to_string(), 3720)]
        );
    }

    #[test]
    fn series_are_sampled_every_scrape_interval() {
        let trace: Vec<Observation> = (0..61)
            .map(|s| Observation {
                t_ms: s * 1000,
                heap_bytes: s,
                objects: 0,
                tasks: 1,
            })
            .collect();
        assert_eq!(series_values(&trace, |o| o.heap_bytes), "0 15 30 45 60");
    }
}
