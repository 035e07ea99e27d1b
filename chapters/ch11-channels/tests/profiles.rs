//! The matcher on real heap profiles: each bad side's profile is named by
//! its own shape, each good side's by none, and earlier chapters' leaks by
//! theirs. jemalloc samples every allocation here (`lg_prof_sample:0`), so
//! the profiles are exact and the same on every run. A heap profile covers
//! the whole process, so the tests of this file take turns, and each drops
//! what it kept before the next.

use std::future::Future;
use std::sync::Mutex;

use ch5_pprof::SeedService;
use ch11_channels::{
    CALLS, Connection, EVENTS, REQUESTS, UPDATES, bad, broadcast_updates, good, serve_requests,
};
use leakscope::matcher::{self, Match, MatchError};
use leakscope::profile;
use leakscope::tasks::warm_up_runtime;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// Every allocation sampled: exact, deterministic profiles.
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "malloc_conf")]
pub static malloc_conf: &[u8] = b"prof:true,prof_active:true,lg_prof_sample:0\0";

static ONE_PROFILE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `scenario` on a fresh runtime with the paused clock, takes the heap
/// profile (as `/debug/pprof/heap` serves it) while the scenario's result is
/// still held, and returns the profile's gzipped bytes.
fn profile_while_held<F, Fut, K>(scenario: F) -> Vec<u8>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = K>,
{
    let _turn = ONE_PROFILE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        warm_up_runtime(100).await;
        let kept = scenario().await;
        let served = profile::heap_profile().await.expect("heap profiling is on");
        drop(kept);
        served
    })
}

fn shapes_while_held<F, Fut, K>(scenario: F) -> Vec<&'static str>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = K>,
{
    let served = profile_while_held(scenario);
    let matches = matcher::match_profile(&profile::decode(&served).unwrap()).unwrap();
    ids(&matches)
}

fn ids(matches: &[Match]) -> Vec<&'static str> {
    matches.iter().map(|m| m.shape.id).collect()
}

const NONE: [&str; 0] = [];

// ANCHOR: joinset_profile
#[test]
fn a_saved_profile_of_the_unjoined_set_is_named_with_its_evidence() {
    let served = profile_while_held(|| async {
        let mut server = bad::Server::default();
        serve_requests(|id| server.handle(id), REQUESTS).await;
        server
    });
    let file = std::env::temp_dir().join(format!("ch11-joinset-{}.pb.gz", std::process::id()));
    std::fs::write(&file, &served).unwrap();

    let matches = matcher::match_file(&file).unwrap();
    std::fs::remove_file(&file).unwrap();

    assert_eq!(ids(&matches), ["joinset-unreaped"]);
    let evidence = &matches[0].sites[0];
    assert!(evidence.frame.contains("spawn"), "{evidence:?}");
    assert_eq!(evidence.caller, "ch11_channels::bad::Server::handle");
    // Each of the 10 000 tasks keeps its cell: at least a pointer-sized result each.
    assert!(
        matches[0].value >= (REQUESTS * 64) as i64,
        "{:?}",
        matches[0]
    );
    let text = matcher::render(&matches);
    assert!(
        text.contains("ch11-channels.md#a-joinset-nobody-joins"),
        "{text}"
    );
}
// ANCHOR_END: joinset_profile

#[test]
fn the_reaped_set_matches_no_shape() {
    let _turn = ONE_PROFILE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let matches = runtime.block_on(async {
        warm_up_runtime(100).await;
        let mut server = good::Server::default();
        serve_requests(|id| server.handle(id), REQUESTS).await;
        // What a /debug/leakscope/match endpoint would answer.
        matcher::match_current_heap().await.unwrap()
    });
    assert_eq!(ids(&matches), NONE);
    assert!(matcher::render(&matches).starts_with("no known leak shape"));
}

#[test]
fn the_unpolled_futures_set_is_named() {
    let shapes = shapes_while_held(|| async {
        let mut connection = Connection::open(bad::serve_connection);
        connection.send_calls(CALLS).await;
        connection
    });
    assert_eq!(shapes, ["futures-unordered-unpolled"]);
}

#[test]
fn the_polled_futures_set_matches_no_shape() {
    let shapes = shapes_while_held(|| async {
        let mut connection = Connection::open(good::serve_connection);
        connection.send_calls(CALLS).await;
        connection
    });
    assert_eq!(shapes, NONE);
}

#[test]
fn the_unbounded_backlog_is_named() {
    let shapes = shapes_while_held(|| async {
        let mut queue = bad::EventQueue::start();
        queue.publish_all(EVENTS).await;
        queue
    });
    assert_eq!(shapes, ["mpsc-unbounded-backlog"]);
}

#[test]
fn the_bounded_queue_matches_no_shape() {
    let shapes = shapes_while_held(|| async {
        let mut queue = good::EventQueue::start();
        queue.publish_all(EVENTS).await;
        queue
    });
    assert_eq!(shapes, NONE);
}

/// Channels in the drained-queue profiles: one per connection of a small service.
const DRAINED_CHANNELS: usize = 20;

// ANCHOR: drained_profile
#[test]
fn the_blocks_many_drained_channels_keep_are_named() {
    let shapes = shapes_while_held(|| async {
        let mut queues: Vec<_> = (0..DRAINED_CHANNELS)
            .map(|_| bad::EventQueue::start())
            .collect();
        futures::future::join_all(queues.iter_mut().map(|queue| queue.publish_all(EVENTS))).await;
        for queue in &queues {
            queue.wait_until_drained().await;
        }
        queues
    });
    assert_eq!(shapes, ["mpsc-unbounded-backlog"]);
}

#[test]
fn many_drained_channels_of_boxed_events_match_no_shape() {
    let shapes = shapes_while_held(|| async {
        let mut queues: Vec<_> = (0..DRAINED_CHANNELS)
            .map(|_| good::EventQueue::start())
            .collect();
        futures::future::join_all(queues.iter_mut().map(|queue| queue.publish_all(EVENTS))).await;
        for queue in &queues {
            queue.wait_until_drained().await;
        }
        queues
    });
    assert_eq!(shapes, NONE);
}
// ANCHOR_END: drained_profile

#[test]
fn the_oversized_broadcast_is_named() {
    let shapes = shapes_while_held(|| async {
        let hub = bad::UpdateHub::new();
        let subscribers =
            broadcast_updates(|| hub.subscribe(), |update| hub.publish(update), UPDATES).await;
        (hub, subscribers)
    });
    assert_eq!(shapes, ["broadcast-ring"]);
}

#[test]
fn the_right_sized_broadcast_matches_no_shape() {
    let shapes = shapes_while_held(|| async {
        let hub = good::UpdateHub::new();
        let subscribers =
            broadcast_updates(|| hub.subscribe(), |update| hub.publish(update), UPDATES).await;
        (hub, subscribers)
    });
    assert_eq!(shapes, NONE);
}

// ANCHOR: seed_profiles
#[test]
fn chapter_5_leaky_service_cache_and_workers_are_named() {
    let shapes = shapes_while_held(|| async {
        let service = ch5_pprof::bad::LeakyService::new();
        for i in 0..ch5_pprof::REQUESTS_PER_PHASE {
            service.cache_data(format!("key-{i}"), ch5_pprof::CACHE_ENTRY_BYTES);
            if i % ch5_pprof::WORKER_EVERY == 0 {
                service.start_worker(i);
            }
        }
        service
    });
    // Largest first: 2 000 cache entries of 5 KiB, then 100 workers of 10 KiB.
    assert_eq!(shapes, ["seed-leaky-cache", "seed-leaky-workers"]);
}

/// Empties chapter 3's global cache when dropped, before the next profile.
struct GlobalCacheFilled;

impl Drop for GlobalCacheFilled {
    fn drop(&mut self) {
        ch3_cache::bad::reset_global_cache();
    }
}

#[test]
fn chapter_3_global_cache_is_named() {
    let shapes = shapes_while_held(|| async {
        ch3_cache::bad::fill_global_cache(10_000, 1024);
        GlobalCacheFilled
    });
    assert_eq!(shapes, ["cache-only-grows"]);
}
// ANCHOR_END: seed_profiles

#[test]
fn a_file_that_is_not_a_profile_gets_a_clear_error() {
    let file = std::env::temp_dir().join(format!("ch11-not-a-profile-{}.txt", std::process::id()));
    std::fs::write(&file, b"\x1f\x8b this is not gzip").unwrap();
    let error = matcher::match_file(&file).unwrap_err();
    std::fs::remove_file(&file).unwrap();
    assert!(matches!(error, MatchError::Profile(_)));
    assert!(
        error.to_string().starts_with("not a pprof profile"),
        "{error}"
    );
}
