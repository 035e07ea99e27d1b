//! The traces both detectors are scored on: what a service's heap,
//! allocations and tasks look like when nothing leaks (steady, noisy, a TTL
//! cache's sawtooth, a one-off step) and when something does (slow, fast,
//! tasks only), plus the seed's own scenario recorded for real.
//!
//! The synthetic traces come from a seeded generator, so they are the same
//! on every machine; `traces/*.csv` are its output (a test checks that the
//! files and the generator agree), and `cargo run -p ch6-detector --
//! write-traces` rewrites them. One row per second, ten minutes each.

use leakscope::detect::{Observation, parse_trace};

/// Rows in each synthetic trace: ten minutes at one sample per second.
pub const TRACE_SAMPLES: u64 = 600;
/// Milliseconds between rows (the seed's `SampleInterval`).
pub const TRACE_INTERVAL_MS: u64 = 1000;
/// Row at which the synthetic leaks start: after one quiet minute.
pub const LEAK_START: usize = 60;

const MIB: f64 = 1024.0 * 1024.0;
const KIB: f64 = 1024.0;
/// A mid-sized service at rest: 48 MiB of heap in 150 000 allocations, 24 tasks.
const BASE_HEAP: f64 = 48.0 * MIB;
const BASE_OBJECTS: f64 = 150_000.0;
const BASE_TASKS: f64 = 24.0;

/// A shipped trace: its name, what it shows, and where its leak starts.
#[derive(Debug, Clone, Copy)]
pub struct TraceSpec {
    /// File stem in `traces/`.
    pub name: &'static str,
    /// One line for the table's legend.
    pub description: &'static str,
    /// Row where the leak starts; `None` when nothing leaks.
    pub leak_from: Option<usize>,
}

/// Every shipped trace, in the order the table prints them.
pub const SHIPPED: [TraceSpec; 8] = [
    TraceSpec {
        name: "steady",
        description: "48 MiB, 24 tasks, noise of 32 KiB",
        leak_from: None,
    },
    TraceSpec {
        name: "noisy-steady",
        description: "request bursts: heap noise of 1.5 MiB, spikes of 6 MiB, 0–8 request tasks",
        leak_from: None,
    },
    TraceSpec {
        name: "ttl-sawtooth",
        description: "a TTL cache fills ~2.5 MiB/s and is swept every 5 s (the seed's cleaner)",
        leak_from: None,
    },
    TraceSpec {
        name: "one-off-step",
        description: "a 6 MiB table loaded once at 3 min, then steady",
        leak_from: None,
    },
    TraceSpec {
        name: "slow-leak",
        description: "from 1 min: +48 KiB/s (about 170 MiB an hour) under 256 KiB noise",
        leak_from: Some(LEAK_START),
    },
    TraceSpec {
        name: "fast-leak",
        description: "from 1 min: +1 MiB/s under 512 KiB noise",
        leak_from: Some(LEAK_START),
    },
    TraceSpec {
        name: "task-leak",
        description: "from 1 min: one task leaked every 10 s, 16 KiB each; heap otherwise steady",
        leak_from: Some(LEAK_START),
    },
    TraceSpec {
        name: "seed-scenario",
        description: "the seed's test, recorded: 50 rounds of 200 KB, a task leaked every 5th",
        leak_from: Some(0),
    },
];

/// Path of a shipped trace's file.
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

    /// Normal with mean 0 and this standard deviation (Box–Muller).
    fn normal(&mut self, sigma: f64) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln stays finite
        let u2 = self.uniform();
        sigma * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Uniform integer in 0..=max.
    fn upto(&mut self, max: u64) -> f64 {
        (self.next_u64() % (max + 1)) as f64
    }
}

/// Generates the synthetic trace `name` (every shipped trace except
/// `seed-scenario`, which is recorded), or `None` for an unknown name.
pub fn generate(name: &str) -> Option<Vec<Observation>> {
    // A different seed per trace, fixed forever.
    let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ byte as u64).wrapping_mul(0x0100_0000_01b3)
    });
    generate_with_seed(name, seed)
}

/// The synthetic trace `name` with other noise: the same shape, drawn from
/// the generator seeded with `seed`. Used to check that a detector's score
/// is not luck of one draw.
pub fn generate_with_seed(name: &str, seed: u64) -> Option<Vec<Observation>> {
    let mut noise = Noise(seed);
    let mut rows = Vec::with_capacity(TRACE_SAMPLES as usize);
    let mut cache_fill = 0.0; // ttl-sawtooth: bytes in the cache since the last sweep
    for second in 0..TRACE_SAMPLES {
        let leaking = second.saturating_sub(LEAK_START as u64) as f64;
        let (heap, objects, tasks) = match name {
            "steady" => (
                BASE_HEAP + noise.normal(32.0 * KIB),
                BASE_OBJECTS + noise.normal(50.0),
                BASE_TASKS,
            ),
            "noisy-steady" => {
                let spike = if noise.uniform() < 0.02 {
                    6.0 * MIB
                } else {
                    0.0
                };
                let requests = noise.upto(8);
                (
                    BASE_HEAP + noise.normal(1.5 * MIB) + spike + requests * 64.0 * KIB,
                    BASE_OBJECTS + noise.normal(3000.0) + requests * 40.0,
                    BASE_TASKS + requests,
                )
            }
            "ttl-sawtooth" => {
                // The sweeper runs every 5 s (at seconds ≡ 2 mod 5) and drops
                // everything older than the TTL: the cache empties.
                if second % 5 == 2 {
                    cache_fill = 0.0;
                }
                cache_fill += (2.5 * MIB + noise.normal(256.0 * KIB)).max(0.0);
                (
                    BASE_HEAP + cache_fill + noise.normal(64.0 * KIB),
                    BASE_OBJECTS + (cache_fill / KIB).round() + noise.normal(50.0),
                    BASE_TASKS + 1.0, // the sweeper
                )
            }
            "one-off-step" => {
                let loaded = if second >= 180 { 1.0 } else { 0.0 };
                (
                    BASE_HEAP + loaded * 6.0 * MIB + noise.normal(256.0 * KIB),
                    BASE_OBJECTS + loaded * 4000.0 + noise.normal(200.0),
                    BASE_TASKS,
                )
            }
            "slow-leak" => (
                BASE_HEAP + leaking * 48.0 * KIB + noise.normal(256.0 * KIB),
                BASE_OBJECTS + leaking * 12.0 + noise.normal(200.0),
                BASE_TASKS,
            ),
            "fast-leak" => (
                BASE_HEAP + leaking * MIB + noise.normal(512.0 * KIB),
                BASE_OBJECTS + leaking * 256.0 + noise.normal(200.0),
                BASE_TASKS,
            ),
            "task-leak" => {
                let leaked = (leaking / 10.0).ceil();
                let requests = noise.upto(4);
                (
                    BASE_HEAP + leaked * 16.0 * KIB + noise.normal(256.0 * KIB),
                    BASE_OBJECTS + leaked * 8.0 + noise.normal(200.0),
                    BASE_TASKS + leaked + requests,
                )
            }
            _ => return None,
        };
        rows.push(Observation {
            t_ms: second * TRACE_INTERVAL_MS,
            heap_bytes: heap.max(0.0).round() as u64,
            objects: objects.max(0.0).round() as u64,
            tasks: tasks as u64,
        });
    }
    Some(rows)
}
