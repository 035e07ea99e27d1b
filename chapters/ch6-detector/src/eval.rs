//! Scoring a detector on a trace: how many alerts it raised, how many
//! samples after the leak started it first alerted, and how many alerts
//! came when nothing was leaking.

use leakscope::detect::{AlertState, Detector, DetectorConfig, Observation};

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Every alert raised, in order (for the fixed detector: `Raised` ones).
    pub raised: Vec<Raised>,
    /// Alerts saying a condition ended (the seed's detector has none).
    pub cleared: usize,
    /// Observations the detector still held at the end.
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

/// Runs leakscope's detector with other parameters over `trace`.
pub fn leakscope_detector_with(config: DetectorConfig, trace: &[Observation]) -> Outcome {
    let mut detector = Detector::new(config);
    let mut raised = Vec::new();
    let mut cleared = 0;
    for observation in trace {
        for alert in detector.observe(*observation) {
            match alert.state {
                AlertState::Raised => raised.push(Raised {
                    sample: alert.sample,
                    kind: alert.kind.name().to_string(),
                }),
                AlertState::Cleared => cleared += 1,
            }
        }
    }
    Outcome {
        raised,
        cleared,
        retained: detector.retained(),
    }
}

/// A detector's score on a trace whose leak (if any) starts at a known row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Score {
    /// Alerts raised.
    pub alerts: usize,
    /// Samples from the start of the leak to the first alert at or after
    /// it; `None` if it never alerted (or nothing leaks).
    pub samples_to_first_true: Option<usize>,
    /// Alerts raised while nothing leaked: all of them on a trace without a
    /// leak, those before the leak started otherwise.
    pub false_alerts: usize,
}

/// Scores `outcome` against the trace's ground truth.
pub fn score(outcome: &Outcome, leak_from: Option<usize>) -> Score {
    let (samples_to_first_true, false_alerts) = match leak_from {
        None => (None, outcome.raised.len()),
        Some(start) => (
            outcome
                .raised
                .iter()
                .find(|alert| alert.sample >= start)
                .map(|alert| alert.sample - start),
            outcome
                .raised
                .iter()
                .filter(|alert| alert.sample < start)
                .count(),
        ),
    };
    Score {
        alerts: outcome.raised.len(),
        samples_to_first_true,
        false_alerts,
    }
}

/// Noise draws [`robustness`] re-generates each synthetic trace with.
pub const NOISE_DRAWS: u64 = 200;

/// How a detector did over many noise draws of one trace shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Robustness {
    /// Draws on which it raised at least one false alert.
    pub draws_with_false_alerts: u64,
    /// False alerts over all draws.
    pub false_alerts: usize,
    /// The longest wait, over the draws, from leak start to first alert.
    pub worst_samples_to_first_true: Option<usize>,
    /// Draws of a leaking shape on which it never alerted.
    pub missed: u64,
}

/// Scores `detector` on [`NOISE_DRAWS`] re-draws of the synthetic trace
/// `name` (same shape, other noise), so that a score is not the luck of
/// one draw. `None` for a trace that is not synthetic.
pub fn robustness(
    name: &str,
    leak_from: Option<usize>,
    detector: impl Fn(&[Observation]) -> Outcome,
) -> Option<Robustness> {
    let mut total = Robustness::default();
    for seed in 0..NOISE_DRAWS {
        let trace = crate::traces::generate_with_seed(name, seed)?;
        let scored = score(&detector(&trace), leak_from);
        total.false_alerts += scored.false_alerts;
        total.draws_with_false_alerts += (scored.false_alerts > 0) as u64;
        match (leak_from, scored.samples_to_first_true) {
            (Some(_), Some(delay)) => {
                let worst = total.worst_samples_to_first_true.unwrap_or(0).max(delay);
                total.worst_samples_to_first_true = Some(worst);
            }
            (Some(_), None) => total.missed += 1,
            (None, _) => {}
        }
    }
    Some(total)
}
