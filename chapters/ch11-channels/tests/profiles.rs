//! The matcher on real heap profiles: each bad side's profile is named by
//! its own shape, each good side's by none. jemalloc samples every
//! allocation here (`lg_prof_sample:0`), so the profiles are exact and the
//! same on every run. A heap profile covers the whole process, so the tests
//! of this file take turns, and each drops what it kept before the next.

use std::future::Future;
use std::sync::Mutex;

use ch11_channels::{CALLS, Connection, EVENTS, REQUESTS, UPDATES, bad, broadcast_updates, good, serve_requests};
use leakscope::matcher::{self, Match};
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
/// profile while the scenario's result is still held, and matches it.
fn matches_while_held<F, Fut, K>(scenario: F) -> Vec<Match>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = K>,
{
    let _turn = ONE_PROFILE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        warm_up_runtime(100).await;
        let kept = scenario().await;
        let served = profile::heap_profile().await.expect("heap profiling is on");
        let heap = profile::decode(&served).unwrap();
        let matches = matcher::match_profile(&heap).unwrap();
        if std::env::var("SHOW").is_ok() {
            let mut st = profile::stacks(&heap, 0);
            st.sort_by_key(|s| -s.1);
            for (stack, v) in st.iter().take(4) { eprintln!("{v}: {:?}", &stack[..stack.len().min(12)]); }
        }
        drop(kept);
        eprintln!("{}", matcher::render(&matches));
        matches
    })
}

fn ids(matches: &[Match]) -> Vec<&'static str> {
    matches.iter().map(|m| m.shape.id).collect()
}

#[test]
fn explore_joinset() {
    let matches = matches_while_held(|| async {
        let mut server = bad::Server::default();
        serve_requests(|id| server.handle(id), REQUESTS).await;
        server
    });
    assert_eq!(ids(&matches), ["joinset-unreaped"]);
}

#[test]
fn explore_good_joinset() {
    let matches = matches_while_held(|| async {
        let mut server = good::Server::default();
        serve_requests(|id| server.handle(id), REQUESTS).await;
        server
    });
    assert_eq!(ids(&matches), [] as [&str; 0]);
}

#[test]
fn explore_rest() {
    for m in [
        matches_while_held(|| async { let mut c = Connection::open(bad::serve_connection); c.send_calls(CALLS).await; c }),
        matches_while_held(|| async { let mut c = Connection::open(good::serve_connection); c.send_calls(CALLS).await; c }),
        matches_while_held(|| async { let mut q = bad::EventQueue::start(); q.publish_all(EVENTS).await; q }),
        matches_while_held(|| async { let mut q = good::EventQueue::start(); q.publish_all(EVENTS).await; q }),
        matches_while_held(|| async { let hub = bad::UpdateHub::new(); let s = broadcast_updates(|| hub.subscribe(), |u| hub.publish(u), UPDATES).await; (hub, s) }),
        matches_while_held(|| async { let hub = good::UpdateHub::new(); let s = broadcast_updates(|| hub.subscribe(), |u| hub.publish(u), UPDATES).await; (hub, s) }),
    ] {
        eprintln!("{:?}", ids(&m));
    }
}
