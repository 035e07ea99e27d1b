//! Every claim the chapter 6 page makes about the two detectors, measured
//! on the corpus (tuning and held-out parts) and on the seed's scenario.

use std::sync::OnceLock;
use std::time::Duration;

use ch6_detector::eval::{
    Outcome, by_family, leakscope_detector, leakscope_detector_with, score, seed_detector, totals,
};
use ch6_detector::traces::{self, Case, Family, Part, SAWTOOTH_PERIODS};
use ch6_detector::{good, scenario};
use leakscope::detect::{DetectorConfig, Observation};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The corpus and each detector's outcome on every trace, computed once.
struct Scored {
    cases: Vec<Case>,
    seed: Vec<Outcome>,
    leakscope: Vec<Outcome>,
}

fn scored() -> &'static Scored {
    static SCORED: OnceLock<Scored> = OnceLock::new();
    SCORED.get_or_init(|| {
        let cases = traces::corpus();
        let seed = cases.iter().map(|c| seed_detector(&c.trace)).collect();
        let leakscope = cases.iter().map(|c| leakscope_detector(&c.trace)).collect();
        Scored {
            cases,
            seed,
            leakscope,
        }
    })
}

/// (case, seed's outcome, leakscope's outcome) for one part.
fn part(part: Part) -> Vec<(&'static Case, &'static Outcome, &'static Outcome)> {
    let all = scored();
    (0..all.cases.len())
        .filter(|&i| all.cases[i].part == part)
        .map(|i| (&all.cases[i], &all.seed[i], &all.leakscope[i]))
        .collect()
}

#[test]
fn the_corpus_has_56_traces_of_13_families_split_in_two_by_draw() {
    let cases = &scored().cases;
    assert_eq!(cases.len(), 56);
    for family in Family::ALL {
        for wanted in [Part::Tuning, Part::HeldOut] {
            let count = cases
                .iter()
                .filter(|c| c.family == family && c.part == wanted)
                .count();
            assert_eq!(count as u64, family.draws() / 2, "{family:?} {wanted:?}");
        }
    }
    assert!(
        cases
            .iter()
            .all(|c| (c.draw % 2 == 1) == (c.part == Part::HeldOut))
    );
    assert_eq!(cases.iter().filter(|c| c.family.leaks()).count(), 24);
    // Heaps from 10 MiB to 8 GiB; the sawtooth periods of each part.
    let heaps: Vec<u64> = cases.iter().map(|c| c.trace[0].heap_bytes).collect();
    assert!(heaps.iter().any(|&h| h < 64 << 20) && heaps.iter().any(|&h| h > 2 << 30));
    assert_eq!(
        SAWTOOTH_PERIODS,
        [5.0, 8.0, 30.0, 45.0, 60.0, 100.0, 180.0, 150.0]
    );
    // The generator is deterministic: the same draw twice is the same trace.
    let again = traces::generate(Family::Burst, 3);
    assert_eq!(
        again.trace,
        cases.iter().find(|c| c.name == "burst-3").unwrap().trace
    );
}

// ANCHOR: held_out
#[test]
fn on_the_held_out_traces_leakscope_catches_every_leak_and_only_a_cycle_misleads_it() {
    let mut misled = Vec::new();
    for (case, _, outcome) in part(Part::HeldOut) {
        let scored = score(outcome, &case.trace, case.leak_from);
        if case.family.leaks() {
            assert!(scored.ms_to_first_true.is_some(), "{} missed", case.name);
            assert_eq!(scored.false_alerts, 0, "{}", case.name);
        } else if scored.false_alerts > 0 {
            misled.push((case.name.as_str(), scored.false_alerts));
        }
    }
    // A load cycle's first rise after warm-up looks like a leak (heap and
    // allocations together): the limit the page shows.
    assert_eq!(misled, [("daily-cycle-1", 2)]);
}

#[test]
fn the_median_time_to_detect_on_the_held_out_leaks_is_11_5_minutes() {
    let held_out = part(Part::HeldOut);
    let cases: Vec<Case> = held_out.iter().map(|(c, _, _)| (*c).clone()).collect();
    let outcomes: Vec<Outcome> = held_out.iter().map(|(_, _, o)| (*o).clone()).collect();
    let total = totals(&by_family(&cases, &outcomes));
    assert_eq!((total.caught, total.leaking), (12, 12));
    let median = total.median_minutes().expect("caught leaks");
    assert_eq!((median * 10.0).round(), 115.0, "{median}");
    // The slowest: a big heap, where 2 % takes longest to accumulate.
    let slowest = total.minutes_to_detect.iter().copied().fold(0.0, f64::max);
    assert!(slowest < 40.0, "{slowest}");
}
// ANCHOR_END: held_out

#[test]
fn the_tuning_traces_score_the_same_way() {
    for (case, _, outcome) in part(Part::Tuning) {
        let scored = score(outcome, &case.trace, case.leak_from);
        match (case.family.leaks(), case.family) {
            (true, _) => {
                assert!(scored.ms_to_first_true.is_some(), "{}", case.name);
                assert_eq!(scored.false_alerts, 0, "{}", case.name);
            }
            (false, Family::DailyCycle) => assert!(scored.false_alerts <= 2, "{}", case.name),
            (false, _) => assert_eq!(outcome.raised, [], "{}", case.name),
        }
    }
}

// ANCHOR: seed_false_alerts
#[test]
fn the_seed_detector_raises_false_alerts_on_every_quiet_held_out_trace() {
    for (case, outcome, _) in part(Part::HeldOut) {
        let scored = score(outcome, &case.trace, case.leak_from);
        if !case.family.leaks() {
            assert!(scored.false_alerts > 0, "{}", case.name);
        }
    }
    // On the sawtooth and the warm-up, it repeats its alert at nearly every
    // 10 s analysis: hundreds per trace.
    for (case, outcome, _) in part(Part::HeldOut) {
        if matches!(case.family, Family::Sawtooth | Family::WarmUp) {
            assert!(
                outcome.raised.len() >= 100,
                "{}: {}",
                case.name,
                outcome.raised.len()
            );
        }
    }
}
// ANCHOR_END: seed_false_alerts

// ANCHOR: hysteresis
#[test]
fn one_alert_per_condition_instead_of_one_per_analysis() {
    for (case, seed, leakscope) in part(Part::HeldOut) {
        if !case.family.leaks() {
            continue;
        }
        for kind in ["HEAP_GROWTH", "OBJECT_GROWTH", "TASK_GROWTH"] {
            let raised = leakscope.raised.iter().filter(|a| a.kind == kind).count();
            assert!(raised <= 1, "{}: {kind} ×{raised}", case.name);
        }
        assert!(
            seed.raised.len() >= 50,
            "{}: {}",
            case.name,
            seed.raised.len()
        );
    }
}
// ANCHOR_END: hysteresis

// ANCHOR: bounded
#[test]
fn seed_detector_keeps_every_sample_leakscope_keeps_a_window_per_level() {
    let longest = traces::generate(Family::BigHeapLeak, 1).trace; // 3 h, 2160 rows
    assert_eq!(seed_detector(&longest).retained, longest.len() - 1);
    let config = good::config();
    let bound = config.levels * (config.window_blocks + 1);
    assert!(leakscope_detector(&longest).retained <= bound);
    assert_eq!(bound, 90);
}
// ANCHOR_END: bounded

#[test]
fn the_chapter_uses_leakscopes_defaults() {
    assert_eq!(good::config(), DetectorConfig::default());
}

// ANCHOR: guards_matter
#[test]
fn without_min_span_bursts_raise_false_alerts_and_without_warm_up_a_warming_cache_does() {
    let quiet_alerting = |config: DetectorConfig| -> Vec<String> {
        part(Part::Tuning)
            .into_iter()
            .filter(|(case, _, _)| !case.family.leaks() && case.family != Family::DailyCycle)
            .filter(|(case, _, _)| {
                !leakscope_detector_with(config.clone(), &case.trace)
                    .raised
                    .is_empty()
            })
            .map(|(case, _, _)| case.name.clone())
            .collect()
    };
    let no_min_span = DetectorConfig {
        min_span: Duration::ZERO,
        ..good::config()
    };
    assert_eq!(quiet_alerting(no_min_span), ["burst-0", "burst-2"]);
    let no_warm_up = DetectorConfig {
        warm_up: Duration::ZERO,
        ..good::config()
    };
    assert_eq!(quiet_alerting(no_warm_up), ["warm-up-2"]);
    assert_eq!(quiet_alerting(good::config()), Vec::<String>::new());
}
// ANCHOR_END: guards_matter

fn tasks_leaked(trace: &[Observation]) -> u64 {
    let first = trace.first().expect("a trace").tasks;
    trace.iter().map(|o| o.tasks).max().unwrap_or(first) - first
}

// ANCHOR: seed_misses_tasks
#[test]
fn seed_detector_never_sees_the_ten_tasks_its_own_test_leaks() {
    for trace in [traces::load("seed-scenario"), scenario::record()] {
        assert_eq!(tasks_leaked(&trace), 10);
        assert_eq!(trace.iter().map(|o| o.tasks).max(), Some(11)); // the scenario's task too
        let seed = seed_detector(&trace);
        assert!(!seed.raised_kind("GOROUTINE_GROWTH"), "{seed:?}");
        assert_eq!(seed.first("MEMORY_TREND"), Some(10));
        assert_eq!(seed.first("MEMORY_GROWTH"), Some(20));
        // 40 s after a start is warm-up for leakscope: nothing is judged yet.
        assert_eq!(leakscope_detector(&trace).raised, []);
    }
}
// ANCHOR_END: seed_misses_tasks

#[test]
fn the_task_leak_stays_under_the_seeds_absolute_100() {
    for (case, seed, leakscope) in part(Part::HeldOut) {
        if case.family != Family::TaskLeak {
            continue;
        }
        let most = case.trace.iter().map(|o| o.tasks).max().unwrap();
        if most <= 100 {
            assert!(!seed.raised_kind("GOROUTINE_GROWTH"), "{}", case.name);
        }
        assert!(leakscope.raised_kind("TASK_GROWTH"), "{}", case.name);
        assert!(!leakscope.raised_kind("HEAP_GROWTH"), "{}", case.name);
    }
}

#[test]
fn a_fresh_recording_of_the_seed_scenario_is_the_shipped_one() {
    let shipped = traces::load("seed-scenario");
    let fresh = scenario::record();
    assert_eq!(fresh.len(), shipped.len());
    let heap_and_tasks = |trace: &[Observation]| -> Vec<(u64, u64, u64)> {
        trace
            .iter()
            .map(|o| (o.t_ms, o.heap_bytes, o.tasks))
            .collect()
    };
    // The shipped trace was recorded with `--cfg tokio_unstable`, as the
    // workspace builds; without it tokio's task cells are smaller, so the
    // heap column differs by a little per alive task, and only that.
    if cfg!(tokio_unstable) {
        assert_eq!(heap_and_tasks(&fresh), heap_and_tasks(&shipped));
    } else {
        const TASK_CELL_DIFFERENCE: u64 = 256;
        for (now, then) in heap_and_tasks(&fresh).iter().zip(heap_and_tasks(&shipped)) {
            assert_eq!((now.0, now.2), (then.0, then.2));
            assert!(
                now.1.abs_diff(then.1) <= TASK_CELL_DIFFERENCE * now.2,
                "{now:?} {then:?}"
            );
        }
    }
}

// ANCHOR: seed_live
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn seed_detector_running_live_ignores_ten_leaked_tasks_and_hoards_samples() {
    use ch6_detector::bad::{LeakThresholds, MemoryLeakDetector};
    use std::sync::{Arc, Mutex};

    let start = tokio::time::Instant::now();
    let read = move || Observation {
        t_ms: start.elapsed().as_millis() as u64,
        tasks: leakscope::tasks::alive_tasks() as u64,
        ..Observation::default()
    };
    let alerts = Arc::new(Mutex::new(Vec::new()));
    let inbox = alerts.clone();
    let detector = MemoryLeakDetector::new(LeakThresholds::default(), read(), move |alert| {
        inbox.lock().unwrap().push(alert.kind)
    });
    let monitor = detector.start(read).expect("not started yet");

    let mut leaked = Vec::new();
    for _ in 0..10 {
        leaked.push(tokio::spawn(std::future::pending::<()>()));
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
    tokio::time::sleep(Duration::from_millis(15_500)).await; // now t = 40.5 s

    assert_eq!(*alerts.lock().unwrap(), Vec::<&str>::new()); // 11 tasks < 100
    assert_eq!(detector.samples_retained(), 40); // one per second, all kept

    detector.stop();
    tokio::task::yield_now().await;
    assert!(
        !monitor.is_finished(),
        "Stop is noticed only at the next tick"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(monitor.is_finished());
    assert_eq!(detector.samples_retained(), 41);
    leaked.iter().for_each(|task| task.abort());
}
// ANCHOR_END: seed_live
