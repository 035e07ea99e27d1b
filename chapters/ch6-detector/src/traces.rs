//! The labelled corpus both detectors are scored on: thirteen families of
//! what a service's heap, live allocations and tasks look like when nothing
//! leaks (steady, noisy, a cache's sawtooth at periods from 5 s to 3 min, a
//! daily-like load cycle, a cache warming up to a plateau, a one-off step,
//! a burst that recovers) and when something does (slow, fast and
//! staircase leaks, a leak under a sawtooth, a slow leak on a big heap, a
//! task leak among noisy request tasks).
//!
//! A seeded generator draws each trace's parameters (heap size from 10 MiB
//! to 8 GiB, period, amplitude, noise, leak rate, start of the leak, task
//! noise), so the corpus is the same on every machine. Each family has
//! [`Family::draws`] traces: the even draws are the **tuning** part (the detector's
//! defaults were chosen looking at these only), the odd draws the
//! **held-out** part the page reports on. `cargo run -p ch6-detector --
//! write-traces DIR` writes them all as CSV files.
//!
//! The seed's own scenario, recorded for real, ships as
//! `traces/seed-scenario.csv`.

use leakscope::detect::{Observation, parse_trace};

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

/// Traces per family; the sawtooth family has twice as many, one per
/// period in [`SAWTOOTH_PERIODS`].
pub const DRAWS: u64 = 4;

/// A kind of trace, with what varies between its draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Flat heap, small noise.
    Steady,
    /// Large noise, spikes, request tasks coming and going.
    Noisy,
    /// A cache filled and swept every period: 5 s, 10 s, … 180 s.
    Sawtooth,
    /// Load following a slow cycle (a day, compressed to 20–40 min).
    DailyCycle,
    /// A cache filling after the start, then flat.
    WarmUp,
    /// One table loaded once (10–60 % of the heap), then flat.
    Step,
    /// A burst of load: heap and tasks climb, hold, and come back down.
    Burst,
    /// A leak of 30–150 % of the heap per hour.
    SlowLeak,
    /// A leak of 5–20 % of the heap per minute.
    FastLeak,
    /// A leak in steps: 3–10 % of the heap every 3–8 min.
    Staircase,
    /// A leak under a cache's 30–120 s sawtooth.
    LeakUnderSawtooth,
    /// 1.5–3 GiB of heap leaking 110–210 MiB an hour.
    BigHeapLeak,
    /// One task leaked a minute among 40–60 request tasks; heap steady.
    TaskLeak,
}

impl Family {
    /// Every family, quiet ones first.
    pub const ALL: [Family; 13] = [
        Family::Steady,
        Family::Noisy,
        Family::Sawtooth,
        Family::DailyCycle,
        Family::WarmUp,
        Family::Step,
        Family::Burst,
        Family::SlowLeak,
        Family::FastLeak,
        Family::Staircase,
        Family::LeakUnderSawtooth,
        Family::BigHeapLeak,
        Family::TaskLeak,
    ];

    /// Short name, used in trace names and tables.
    pub fn name(self) -> &'static str {
        match self {
            Family::Steady => "steady",
            Family::Noisy => "noisy",
            Family::Sawtooth => "sawtooth",
            Family::DailyCycle => "daily-cycle",
            Family::WarmUp => "warm-up",
            Family::Step => "one-off-step",
            Family::Burst => "burst",
            Family::SlowLeak => "slow-leak",
            Family::FastLeak => "fast-leak",
            Family::Staircase => "staircase",
            Family::LeakUnderSawtooth => "leak+sawtooth",
            Family::BigHeapLeak => "big-heap-leak",
            Family::TaskLeak => "task-leak",
        }
    }

    /// One line for the legend.
    pub fn description(self) -> &'static str {
        match self {
            Family::Steady => "flat heap (10 MiB–8 GiB), noise 0.1–0.3 %",
            Family::Noisy => "noise 1–3 %, spikes of 5–15 %, 0–20 request tasks",
            Family::Sawtooth => "cache of 10–50 % of the heap swept every 5 s … 180 s",
            Family::DailyCycle => "load cycle of 20–40 min, ±5–15 % of the heap",
            Family::WarmUp => "cache fills to 20–100 % of the heap in the first 4 min, then flat",
            Family::Step => "one table of 10–60 % of the heap loaded at 10–40 min",
            Family::Burst => {
                "heap +30–80 % and 50–200 tasks: up in 20 s–2 min, held 1–5 min, back in 1 min"
            }
            Family::SlowLeak => "from 8–20 min: +30–150 % of the heap per hour",
            Family::FastLeak => "from 8–20 min: +5–20 % of the heap per minute",
            Family::Staircase => "from 8–20 min: a step of 3–10 % every 3–8 min",
            Family::LeakUnderSawtooth => "30–120 s sawtooth; from 8–20 min +30–100 %/h",
            Family::BigHeapLeak => "1.5–3 GiB heap; from 8–20 min +110–210 MiB/h",
            Family::TaskLeak => "40–60 request tasks; from 8–20 min one task leaked a minute",
        }
    }

    /// Whether its traces leak.
    pub fn leaks(self) -> bool {
        matches!(
            self,
            Family::SlowLeak
                | Family::FastLeak
                | Family::Staircase
                | Family::LeakUnderSawtooth
                | Family::BigHeapLeak
                | Family::TaskLeak
        )
    }

    /// Traces of this family in the corpus.
    pub fn draws(self) -> u64 {
        match self {
            Family::Sawtooth => SAWTOOTH_PERIODS.len() as u64,
            _ => DRAWS,
        }
    }

    /// How long its traces last, in seconds.
    fn duration_s(self) -> u64 {
        match self {
            Family::DailyCycle | Family::BigHeapLeak => 3 * 3600,
            _ => 3600,
        }
    }

    /// Seconds between samples: one a second where a 5 s sawtooth must be
    /// seen, one every 5 s for the long traces (as a scraper might).
    fn interval_s(self) -> u64 {
        match self {
            Family::DailyCycle | Family::BigHeapLeak => 5,
            _ => 1,
        }
    }
}

/// Which part of the corpus a trace belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Looked at while choosing the detector's defaults.
    Tuning,
    /// Never looked at while tuning: the page reports on these.
    HeldOut,
}

/// One labelled trace.
#[derive(Debug, Clone)]
pub struct Case {
    /// `family-draw`, e.g. `sawtooth-3`.
    pub name: String,
    /// Its family.
    pub family: Family,
    /// Its draw (the generator's seed within the family).
    pub draw: u64,
    /// Tuning (even draws) or held out (odd draws).
    pub part: Part,
    /// Row where the leak starts; `None` when nothing leaks.
    pub leak_from: Option<usize>,
    /// The observations.
    pub trace: Vec<Observation>,
}

/// The whole corpus: every family, [`Family::draws`] draws each.
pub fn corpus() -> Vec<Case> {
    Family::ALL
        .into_iter()
        .flat_map(|family| (0..family.draws()).map(move |draw| generate(family, draw)))
        .collect()
}

/// One part of the corpus.
pub fn part(part: Part) -> Vec<Case> {
    corpus()
        .into_iter()
        .filter(|case| case.part == part)
        .collect()
}

/// Path of a shipped (recorded) trace's file.
pub fn path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("traces")
        .join(format!("{name}.csv"))
}

/// Reads a shipped trace from `traces/`.
///
/// # Panics
///
/// If the file is missing or malformed (it is part of the crate).
pub fn load(name: &str) -> Vec<Observation> {
    let path = path(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    parse_trace(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// SplitMix64: a tiny, well-mixed generator; enough for noise, and the same
/// on every platform.
#[derive(Debug, Clone)]
struct Noise(u64);

impl Noise {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [low, high).
    fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.uniform()
    }

    /// Log-uniform in [low, high): as likely 10–100 MiB as 100 MiB–1 GiB.
    fn log_between(&mut self, low: f64, high: f64) -> f64 {
        (low.ln() + (high.ln() - low.ln()) * self.uniform()).exp()
    }

    /// Normal with mean 0 and this standard deviation (Box–Muller).
    fn normal(&mut self, sigma: f64) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln stays finite
        let u2 = self.uniform();
        sigma * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Uniform integer in low..=high.
    fn int(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }
}

/// The sawtooth family's periods in seconds, by draw: the tuning part
/// (even draws) has 5, 30, 60 and 180 s, the held-out part 8, 45, 100 and
/// 150 s.
pub const SAWTOOTH_PERIODS: [f64; 8] = [5.0, 8.0, 30.0, 45.0, 60.0, 100.0, 180.0, 150.0];

/// Generates draw `draw` of `family`.
pub fn generate(family: Family, draw: u64) -> Case {
    // A seed per family and draw, fixed forever.
    let seed = family
        .name()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
            (hash ^ byte as u64).wrapping_mul(0x0100_0000_01b3)
        })
        ^ draw.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut rng = Noise(seed);
    let duration = family.duration_s();
    let interval = family.interval_s();

    // What every trace has: a heap, bytes per allocation, resident tasks.
    let mut heap = rng.log_between(10.0 * MIB, 8.0 * GIB);
    if family == Family::BigHeapLeak {
        heap = rng.between(1.5 * GIB, 3.0 * GIB);
    }
    let bytes_per_object = rng.between(64.0, 512.0);
    let base_tasks = rng.int(8, 200) as f64;
    let mut noise = heap * rng.between(0.001, 0.003);
    let mut request_tasks = (0, rng.int(0, 20));
    let leak_start_s = (rng.between(8.0, 20.0) * 60.0).round() as u64;

    // The family's own parameters.
    let period = match family {
        Family::Sawtooth => SAWTOOTH_PERIODS[draw as usize % SAWTOOTH_PERIODS.len()],
        Family::LeakUnderSawtooth => [30.0, 60.0, 120.0][(draw % 3) as usize],
        Family::DailyCycle => rng.between(20.0, 40.0) * 60.0,
        Family::Staircase => rng.between(3.0, 8.0) * 60.0,
        _ => 0.0,
    };
    let amplitude = heap
        * match family {
            Family::Sawtooth => rng.between(0.1, 0.5),
            Family::LeakUnderSawtooth => rng.between(0.1, 0.3),
            Family::DailyCycle => rng.between(0.05, 0.15),
            Family::WarmUp => rng.between(0.2, 1.0),
            Family::Step => rng.between(0.1, 0.6),
            Family::Burst => rng.between(0.3, 0.8),
            Family::Staircase => rng.between(0.03, 0.10),
            _ => 0.0,
        };
    let phase = rng.uniform();
    // Leak rate in bytes per second.
    let rate = match family {
        Family::SlowLeak => heap * rng.between(0.3, 1.5) / 3600.0,
        Family::FastLeak => heap * rng.between(0.05, 0.2) / 60.0,
        Family::LeakUnderSawtooth => heap * rng.between(0.3, 1.0) / 3600.0,
        Family::BigHeapLeak => rng.between(110.0, 210.0) * MIB / 3600.0,
        _ => 0.0,
    };
    let event_s = rng.between(10.0, 40.0) * 60.0; // step or burst
    let fill_s = rng.between(30.0, 240.0); // warm-up
    let burst = (rng.between(20.0, 120.0), rng.between(60.0, 300.0)); // ramp, hold
    let burst_tasks = rng.between(50.0, 200.0);
    match family {
        Family::Noisy => noise = heap * rng.between(0.01, 0.03),
        Family::TaskLeak => request_tasks = (40, 60),
        _ => {}
    }

    let mut rows = Vec::with_capacity((duration / interval) as usize);
    let mut leak_from = None;
    for second in (0..duration).step_by(interval as usize) {
        let t = second as f64;
        let leaking = family.leaks() && second >= leak_start_s;
        if leaking && leak_from.is_none() {
            leak_from = Some(rows.len());
        }
        let since_leak = if leaking {
            (second - leak_start_s) as f64
        } else {
            0.0
        };
        let mut extra_heap = 0.0;
        let mut extra_tasks = 0.0;
        match family {
            Family::Noisy if rng.uniform() < 0.02 => extra_heap = heap * rng.between(0.05, 0.15),
            Family::Sawtooth | Family::LeakUnderSawtooth => {
                extra_heap = amplitude * ((t / period + phase) % 1.0);
            }
            Family::DailyCycle => {
                extra_heap = amplitude * (std::f64::consts::TAU * (t / period + phase)).sin();
            }
            Family::WarmUp => extra_heap = amplitude * (t / fill_s).min(1.0),
            Family::Step if t >= event_s => extra_heap = amplitude,
            Family::Burst => {
                let (ramp, hold) = burst;
                let into = t - event_s;
                let level = if into < 0.0 {
                    0.0
                } else if into < ramp {
                    into / ramp
                } else if into < ramp + hold {
                    1.0
                } else {
                    (1.0 - (into - ramp - hold) / 60.0).max(0.0)
                };
                extra_heap = amplitude * level;
                extra_tasks = (burst_tasks * level).round();
            }
            Family::Staircase => extra_heap = amplitude * (since_leak / period).ceil(),
            _ => {}
        }
        extra_heap += rate * since_leak;
        let leaked_tasks = if family == Family::TaskLeak {
            (since_leak / 60.0).ceil()
        } else {
            0.0
        };
        let requests = rng.int(request_tasks.0, request_tasks.1) as f64;
        let heap_now = heap + extra_heap + noise * rng.normal(1.0) + leaked_tasks * 16_384.0;
        let objects = heap_now / bytes_per_object + leaked_tasks * 8.0 + rng.normal(20.0);
        rows.push(Observation {
            t_ms: second * 1000,
            heap_bytes: heap_now.max(0.0).round() as u64,
            objects: objects.max(0.0).round() as u64,
            tasks: (base_tasks + requests + extra_tasks + leaked_tasks) as u64,
        });
    }
    Case {
        name: format!("{}-{draw}", family.name()),
        family,
        draw,
        part: if draw.is_multiple_of(2) {
            Part::Tuning
        } else {
            Part::HeldOut
        },
        leak_from,
        trace: rows,
    }
}
