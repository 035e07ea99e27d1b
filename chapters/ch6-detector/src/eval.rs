//! Scoring a detector on a trace: how many alerts it raised, how long after
//! the leak started it first alerted, and how many alerts came when nothing
//! was leaking; and the same summed up per family of the corpus.

use leakscope::detect::{AlertState, Detector, DetectorConfig, Observation};

use crate::traces::{Case, Family};
use crate::{bad, good};

/// One alert raised, reduced to what scoring needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raised {
    /// Row of the trace that completed the analysis.
    pub sample: usize,
    /// The alert's kind, as the detector names it.
    pub kind: String,
}

/// What a detector did over a whole trace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Every alert raised, in order (for leakscope: `Raised` ones).
    pub raised: Vec<Raised>,
    /// Alerts saying a condition ended (the seed's detector has none).
    pub cleared: usize,
    /// Observations or floors the detector still held at the end.
    pub retained: usize,
}

impl Outcome {
    /// Whether any alert of `kind` was raised.
    pub fn raised_kind(&self, kind: &str) -> bool {
        self.raised.iter().any(|alert| alert.kind == kind)
    }

    /// Row of the first alert of `kind`.
    pub fn first(&self, kind: &str) -> Option<usize> {
        self.raised
            .iter()
            .find(|alert| alert.kind == kind)
            .map(|alert| alert.sample)
    }
}

/// Runs the seed's detector (with the seed's thresholds) over `trace`.
pub fn seed_detector(trace: &[Observation]) -> Outcome {
    let (alerts, retained) = bad::replay(bad::LeakThresholds::default(), trace);
    Outcome {
        raised: alerts
            .into_iter()
            .map(|alert| Raised {
                sample: alert.sample,
                kind: alert.kind.to_string(),
            })
            .collect(),
        cleared: 0,
        retained,
    }
}

/// Runs the fixed detector (leakscope's, as configured in [`good`]) over
/// `trace`.
pub fn leakscope_detector(trace: &[Observation]) -> Outcome {
    leakscope_detector_with(good::config(), trace)
}

/// Runs leakscope's detector with other parameters over `trace` (in time
/// order, as [`leakscope::detect::parse_trace`] guarantees).
pub fn leakscope_detector_with(config: DetectorConfig, trace: &[Observation]) -> Outcome {
    let mut detector = Detector::new(config);
    let mut outcome = Outcome::default();
    for observation in trace {
        let alerts = detector
            .observe(*observation)
            .expect("a trace is in time order");
        for alert in alerts {
            match alert.state {
                AlertState::Raised => outcome.raised.push(Raised {
                    sample: alert.sample,
                    kind: alert.kind.name().to_string(),
                }),
                AlertState::Cleared => outcome.cleared += 1,
            }
        }
    }
    outcome.retained = detector.retained();
    outcome
}

/// A detector's score on a trace whose leak (if any) starts at a known row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Score {
    /// Alerts raised.
    pub alerts: usize,
    /// Rows from the start of the leak to the first alert at or after it;
    /// `None` if it never alerted (or nothing leaks).
    pub samples_to_first_true: Option<usize>,
    /// Milliseconds from the start of the leak to that alert.
    pub ms_to_first_true: Option<u64>,
    /// Alerts raised while nothing leaked: all of them on a trace without a
    /// leak, those before the leak started otherwise.
    pub false_alerts: usize,
}

/// Scores `outcome` on `trace` against its ground truth.
pub fn score(outcome: &Outcome, trace: &[Observation], leak_from: Option<usize>) -> Score {
    let (first_true, false_alerts) = match leak_from {
        None => (None, outcome.raised.len()),
        Some(start) => (
            outcome.raised.iter().find(|alert| alert.sample >= start),
            outcome
                .raised
                .iter()
                .filter(|alert| alert.sample < start)
                .count(),
        ),
    };
    let start = leak_from.unwrap_or(0);
    Score {
        alerts: outcome.raised.len(),
        samples_to_first_true: first_true.map(|alert| alert.sample - start),
        ms_to_first_true: first_true.map(|alert| trace[alert.sample].t_ms - trace[start].t_ms),
        false_alerts,
    }
}

/// A detector over one corpus trace.
pub type DetectorFn = fn(&[Observation]) -> Outcome;

/// How a detector did on one family's traces.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FamilyScore {
    /// Traces scored.
    pub traces: usize,
    /// Leaking traces on which it alerted after the leak started.
    pub caught: usize,
    /// Leaking traces.
    pub leaking: usize,
    /// Traces with at least one false alert.
    pub traces_with_false_alerts: usize,
    /// False alerts over all traces.
    pub false_alerts: usize,
    /// Minutes from each caught leak's start to the first alert.
    pub minutes_to_detect: Vec<f64>,
}

impl FamilyScore {
    /// Adds one trace's score.
    pub fn add(&mut self, leaks: bool, score: &Score) {
        self.traces += 1;
        self.leaking += leaks as usize;
        self.false_alerts += score.false_alerts;
        self.traces_with_false_alerts += (score.false_alerts > 0) as usize;
        if let Some(ms) = score.ms_to_first_true {
            self.caught += 1;
            self.minutes_to_detect.push(ms as f64 / 60_000.0);
        }
    }

    /// The median of [`minutes_to_detect`](Self::minutes_to_detect).
    pub fn median_minutes(&self) -> Option<f64> {
        median(&self.minutes_to_detect)
    }
}

/// The median of `values`, `None` for none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[middle]),
        _ => Some((sorted[middle - 1] + sorted[middle]) / 2.0),
    }
}

/// Scores `outcomes` (one per case, in order) per family.
pub fn by_family(cases: &[Case], outcomes: &[Outcome]) -> Vec<(Family, FamilyScore)> {
    let mut families: Vec<(Family, FamilyScore)> = Vec::new();
    for (case, outcome) in cases.iter().zip(outcomes) {
        let scored = score(outcome, &case.trace, case.leak_from);
        let index = match families.iter().position(|(f, _)| *f == case.family) {
            Some(index) => index,
            None => {
                families.push((case.family, FamilyScore::default()));
                families.len() - 1
            }
        };
        families[index].1.add(case.family.leaks(), &scored);
    }
    families
}

/// Totals over families: (leaks caught, leaking traces, quiet traces with
/// a false alert, quiet traces, false alerts, every time to detect).
pub fn totals(families: &[(Family, FamilyScore)]) -> FamilyScore {
    let mut total = FamilyScore::default();
    for (_, score) in families {
        total.traces += score.traces;
        total.caught += score.caught;
        total.leaking += score.leaking;
        total.traces_with_false_alerts += score.traces_with_false_alerts;
        total.false_alerts += score.false_alerts;
        total
            .minutes_to_detect
            .extend(score.minutes_to_detect.iter().copied());
    }
    total
}
