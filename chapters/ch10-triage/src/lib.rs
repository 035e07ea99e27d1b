//! Chapter 10: is it a leak?
//!
//! Seven workloads whose memory grows, one per verdict of
//! `leakscope::doctor`, each with a bad and a good side:
//!
//! | workload | [`bad`] | [`good`] | doctor, bad / good |
//! |---|---|---|---|
//! | listeners | every request registers a listener nobody removes | a guard removes it when the request ends | LEAK / NOT A LEAK |
//! | waiters | every request spawns a task waiting for a reply nobody sends | the request drops the sender, the task ends | TASK LEAK / NOT A LEAK |
//! | burst | a burst of small objects, freed | the same, then a purge | RETENTION / NOT A LEAK |
//! | arenas | 8 threads serve requests in turn on glibc's malloc | `MALLOC_ARENA_MAX=1` | FRAGMENTATION/ARENAS / NOT A LEAK |
//! | blocking | a burst of `spawn_blocking` jobs with thread-local buffers | `max_blocking_threads(4)` | THREADS / NOT A LEAK |
//! | cache | a page cache without a bound | with a bound: warms up to a plateau | LEAK / NOT A LEAK |
//! | waves | waves of requests served at once, then a wave twice as big | at most one wave's worth at a time | RATCHET / NOT A LEAK |
//!
//! Each scenario runs in a process of its own (`ch10-triage scenario NAME
//! SIDE`), since RSS, threads and the allocator's statistics are
//! process-wide. The arenas scenario runs in `ch10-arenas`, a binary that
//! uses glibc's malloc.

pub mod bad;
pub mod good;

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::Duration;

use leakscope::doctor::{Diagnosis, Recorder, Sample, diagnose, purge_probe};

/// Requests each request-driven workload serves.
pub const REQUESTS: u64 = 2048;

/// Samples over those requests (one every `REQUESTS / STEPS`).
pub const STEPS: u64 = 16;

/// The buffer each listener holds: 2048 of them are 8 MiB.
pub const LISTENER_BYTES: usize = 4096;

/// The buffer each waiting task holds.
pub const TASK_BUFFER_BYTES: usize = 1024;

/// Objects in the burst: 262 144 × 64 B = 16 MiB.
pub const BURST_OBJECTS: usize = 262_144;

/// Size of each burst object: a small size class, so they share pages.
pub const BURST_OBJECT_SIZE: usize = 64;

/// Samples taken while the process idles after the burst.
pub const IDLE_SAMPLES: u32 = 6;

/// A rendered page in the cache.
pub const CACHE_VALUE_BYTES: usize = 4096;

/// The bounded cache's capacity: 512 pages, 2 MiB, full after a quarter
/// of the requests.
pub const CACHE_CAPACITY: usize = 512;

/// Requests in a usual wave, and the buffer each holds: 128 × 64 KiB = 8 MiB.
pub const WAVE: usize = 128;

/// Each request's buffer in a wave.
pub const REQUEST_BUFFER_BYTES: usize = 64 * 1024;

/// The waves served: three usual ones, then one twice as big.
pub const WAVES: [usize; 4] = [WAVE, WAVE, WAVE, 2 * WAVE];

/// Blocking jobs in each burst, and bursts.
pub const BLOCKING_JOBS: usize = 64;

/// Bursts of blocking jobs.
pub const BLOCKING_BURSTS: u64 = 16;

/// The bounded blocking pool's size.
pub const BLOCKING_THREADS: usize = 4;

/// What each blocking job's thread keeps in a thread-local scratch buffer.
pub const SCRATCH_BYTES: usize = 256 * 1024;

/// How long each blocking job blocks (a file read, a DNS lookup).
pub const BLOCKING_JOB_TIME: Duration = Duration::from_millis(2);

/// Which version of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The version whose memory grows.
    Bad,
    /// The fixed version.
    Good,
}

impl Side {
    /// `bad` or `good`.
    pub fn name(self) -> &'static str {
        match self {
            Side::Bad => "bad",
            Side::Good => "good",
        }
    }

    /// Parses `bad` or `good`.
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "bad" => Some(Side::Bad),
            "good" => Some(Side::Good),
            _ => None,
        }
    }
}

/// The workloads, in the page's order.
pub const SCENARIOS: [&str; 7] = [
    "listeners",
    "waiters",
    "burst",
    "arenas",
    "blocking",
    "cache",
    "waves",
];

/// A workload's diagnosis and the samples it rests on.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The doctor's verdict, evidence and next step.
    pub diagnosis: Diagnosis,
    /// The samples, oldest first.
    pub samples: Vec<Sample>,
}

impl Outcome {
    fn new(recorder: Recorder, probe: Option<leakscope::doctor::PurgeProbe>) -> Self {
        Self {
            diagnosis: diagnose(recorder.samples(), probe),
            samples: recorder.samples().to_vec(),
        }
    }

    /// Anonymous RSS at the first sample, the last, and the highest.
    pub fn resident(&self) -> [u64; 3] {
        let anon: Vec<u64> = self
            .samples
            .iter()
            .map(|sample| sample.rss.map_or(0, |rss| rss.anon))
            .collect();
        [
            anon.first().copied().unwrap_or(0),
            anon.last().copied().unwrap_or(0),
            anon.iter().copied().max().unwrap_or(0),
        ]
    }
}

/// Runs a workload in this process and gives the doctor's diagnosis.
/// `arenas` is not here: it runs in `ch10-arenas` ([`run_arenas`]).
pub fn run_in_process(scenario: &str, side: Side) -> Option<Outcome> {
    let recorder = match scenario {
        "listeners" => listeners(side),
        "waiters" => waiters(side),
        "burst" => return Some(burst(side)),
        "blocking" => blocking(side),
        "cache" => cache(side),
        "waves" => waves(side),
        "arenas-jemalloc" => arenas_on_this_allocator(),
        _ => return None,
    };
    Some(Outcome::new(recorder, None))
}

// ANCHOR: sample_per_step
fn listeners(side: Side) -> Recorder {
    let listeners: bad::Listeners = Rc::new(RefCell::new(HashMap::new()));
    let mut recorder = Recorder::new();
    recorder.sample_self(Some(0));
    for request in 0..REQUESTS {
        match side {
            Side::Bad => bad::handle_request(&listeners, request),
            Side::Good => good::handle_request(&listeners, request),
        }
        if (request + 1) % (REQUESTS / STEPS) == 0 {
            recorder.sample_self(Some(request + 1));
        }
    }
    recorder
}
// ANCHOR_END: sample_per_step

fn waiters(side: Side) -> Recorder {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let mut pending = Vec::new();
        let mut recorder = Recorder::new();
        recorder.sample_self(Some(0));
        for request in 0..REQUESTS {
            match side {
                Side::Bad => bad::request_with_reply(&mut pending),
                Side::Good => good::request_with_reply(),
            }
            if (request + 1) % (REQUESTS / STEPS) == 0 {
                // Let the spawned tasks run (and the finished ones go).
                for _ in 0..4 {
                    tokio::task::yield_now().await;
                }
                recorder.sample_self(Some(request + 1));
            }
        }
        recorder
    })
}

fn burst(side: Side) -> Outcome {
    let mut recorder = Recorder::new();
    recorder.sample_self(Some(0));
    match side {
        Side::Bad => bad::burst(BURST_OBJECTS),
        Side::Good => good::burst_then_purge(BURST_OBJECTS),
    }
    recorder.sample_self(Some(1));
    for _ in 0..IDLE_SAMPLES {
        std::thread::sleep(Duration::from_millis(10));
        recorder.sample_self(Some(1));
    }
    // The probe measures what a purge gives back now.
    Outcome::new(recorder, purge_probe())
}

fn cache(side: Side) -> Recorder {
    let mut unbounded = bad::UnboundedCache::default();
    let mut bounded = good::BoundedCache::new(CACHE_CAPACITY);
    let mut recorder = Recorder::new();
    recorder.sample_self(Some(0));
    for request in 0..REQUESTS {
        // Every request asks for a page not seen before (a crawler, or
        // query strings in the key).
        let page = match side {
            Side::Bad => unbounded.get(request).len(),
            Side::Good => bounded.get(request).len(),
        };
        std::hint::black_box(page);
        if (request + 1) % (REQUESTS / STEPS) == 0 {
            recorder.sample_self(Some(request + 1));
        }
    }
    recorder
}

fn waves(side: Side) -> Recorder {
    let mut recorder = Recorder::new();
    recorder.sample_self(Some(0));
    let mut served = 0;
    for wave in WAVES {
        match side {
            Side::Bad => bad::serve_wave(wave),
            Side::Good => good::serve_wave(wave, WAVE),
        }
        served += wave as u64;
        recorder.sample_self(Some(served));
    }
    // The same usual wave again after the big one.
    for _ in 0..2 {
        match side {
            Side::Bad => bad::serve_wave(WAVE),
            Side::Good => good::serve_wave(WAVE, WAVE),
        }
        served += WAVE as u64;
        recorder.sample_self(Some(served));
    }
    recorder
}

thread_local! {
    // A per-thread scratch buffer, kept for the thread's life: a common
    // way to avoid allocating per job.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

// ANCHOR: blocking_job
/// A blocking job: fills its thread's scratch buffer, then blocks.
fn blocking_job(job: usize) {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        scratch.resize(SCRATCH_BYTES, 0);
        scratch.fill(job as u8);
    });
    std::thread::sleep(BLOCKING_JOB_TIME);
}
// ANCHOR_END: blocking_job

fn blocking(side: Side) -> Recorder {
    let runtime = match side {
        Side::Bad => bad::runtime(),
        Side::Good => good::runtime(BLOCKING_THREADS),
    };
    let recorder = runtime.block_on(async {
        let mut recorder = Recorder::new();
        recorder.sample_self(Some(0));
        for burst in 0..BLOCKING_BURSTS {
            let jobs: Vec<_> = (0..BLOCKING_JOBS)
                .map(|job| tokio::task::spawn_blocking(move || blocking_job(job)))
                .collect();
            for job in jobs {
                job.await.expect("a blocking job does not panic");
            }
            recorder.sample_self(Some((burst + 1) * BLOCKING_JOBS as u64));
        }
        recorder
    });
    // Do not wait 10 s for idle blocking threads to time out.
    runtime.shutdown_background();
    recorder
}

/// The arenas workload in this process, on whatever allocator it runs
/// (jemalloc in `ch10-triage`): the "different allocator" fix.
fn arenas_on_this_allocator() -> Recorder {
    let pool = arenas::Pool::start();
    let mut recorder = Recorder::new();
    recorder.sample_self(Some(0));
    for request in 0..arenas_requests() {
        pool.serve_on(request);
        recorder.sample_self(Some(request as u64 + 1));
    }
    pool.stop();
    recorder
}

/// Runs the arenas workload in `arenas_binary` (`ch10-arenas`), with
/// `MALLOC_ARENA_MAX=1` on the good side (the bad side keeps this
/// process's `MALLOC_ARENA_MAX`, if any), and diagnoses it from outside:
/// `/proc/PID/status` plus the metrics it prints after each request.
pub fn run_arenas(arenas_binary: &Path, side: Side) -> std::io::Result<Outcome> {
    let mut command = Command::new(arenas_binary);
    command.stdin(Stdio::piped()).stdout(Stdio::piped());
    if side == Side::Good {
        command.env("MALLOC_ARENA_MAX", "1");
    }
    let mut child = command.spawn()?;
    let pid = child.id();
    let mut input = child.stdin.take().expect("piped stdin");
    let mut output = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut recorder = Recorder::new();
    let started = std::time::Instant::now();
    {
        let mut step = |command: &str, recorder: &mut Recorder| -> std::io::Result<()> {
            writeln!(input, "{command}")?;
            input.flush()?;
            let mut page = String::new();
            loop {
                let mut line = String::new();
                if output.read_line(&mut line)? == 0 {
                    return Err(std::io::Error::other("ch10-arenas ended early"));
                }
                if line.trim() == "end" {
                    break;
                }
                page.push_str(&line);
            }
            let mut sample =
                Sample::read_process(pid, started.elapsed()).map_err(std::io::Error::other)?;
            sample.merge_prometheus(&page);
            recorder.record(sample);
            Ok(())
        };
        step("sample", &mut recorder)?;
        for _ in 0..arenas_requests() {
            step("request", &mut recorder)?;
        }
    }
    drop(input);
    child.wait()?;
    Ok(Outcome::new(recorder, None))
}

/// Requests the arenas workload serves: every worker, every round.
pub fn arenas_requests() -> usize {
    arenas::WORKERS * arenas::ROUNDS
}

#[path = "arenas.rs"]
#[allow(dead_code)]
mod arenas;
