//! The frames that name each shape in a jemalloc heap profile, as chapter 5's
//! `/debug/pprof/heap` serves it: the good sides first, then the bad sides,
//! in one process. Heap profiling is per process, so this file has its own
//! `malloc_conf`, with every allocation sampled so the bytes are exact.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use ch13_clients::loopback::{BufferGauge, ConnectionPool, RowServer, connection_pool};
use ch13_clients::{
    BUCKET_IDLE_LIMIT, CHURNED_THREADS, HANDLED_REQUESTS, LARGE_RESPONSE_BYTES, POOL_SIZE,
    QUIET_CLIENTS, RateLimitStorage, SPIKE_CLIENTS, ScratchSpace, audience_for, bad,
    churning_runtime, good, render_on_retiring_threads, tenant_id, traffic_spike,
};
use leakscope::profile;
use tower::ServiceExt;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[allow(non_upper_case_globals)]
#[unsafe(export_name = "malloc_conf")]
pub static malloc_conf: &[u8] = b"prof:true,prof_active:true,lg_prof_sample:0\0";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Bad,
    Good,
}

/// What each side's scenarios keep alive while the profile is taken.
struct Kept {
    _scratch: Arc<dyn ScratchSpace>,
    _pool: (RowServer, ConnectionPool),
    _storage: RateLimitStorage,
}

async fn run_scenarios(side: Side, scratch: Arc<dyn ScratchSpace>) -> Kept {
    let router = match side {
        Side::Bad => bad::router(),
        Side::Good => good::router(),
    };
    for n in 0..HANDLED_REQUESTS {
        let tenant = tenant_id(n);
        let uri = format!("/tenants/{tenant}/tokens/{}", audience_for(&tenant));
        let request = Request::get(uri).body(Body::empty()).unwrap();
        router.clone().oneshot(request).await.unwrap();
    }

    let server = RowServer::start().await.unwrap();
    let pool = connection_pool(server.addr, BufferGauge::default());
    let spike = (0..POOL_SIZE).map(|_| {
        let pool = pool.clone();
        async move {
            match side {
                Side::Bad => bad::query(&pool, LARGE_RESPONSE_BYTES).await.unwrap(),
                Side::Good => good::query(&pool, LARGE_RESPONSE_BYTES).await.unwrap(),
            }
        }
    });
    futures::future::join_all(spike).await;

    let mut storage = RateLimitStorage::default();
    let spike = tokio::time::Instant::now();
    traffic_spike(&mut storage, SPIKE_CLIENTS, spike);
    let an_hour_later = spike + BUCKET_IDLE_LIMIT + Duration::from_secs(60);
    traffic_spike(&mut storage, QUIET_CLIENTS, an_hour_later);
    match side {
        Side::Bad => bad::remove_idle(&mut storage, an_hour_later),
        Side::Good => good::remove_idle(&mut storage, an_hour_later),
    }
    Kept {
        _scratch: scratch,
        _pool: (server, pool),
        _storage: storage,
    }
}

/// In-use bytes per shape, summed over the stacks whose frames name it.
#[derive(Debug)]
struct ShapeBytes {
    /// What leakscope's matcher names in the profile (threshold lowered to
    /// 16 KiB: the handler leaks 32 bytes a request, 32 000 in this run).
    matched: Vec<&'static str>,
    leaked_in_handler: i64,
    scratch_on_blocking_threads: i64,
    connection_read_buffers: i64,
    rate_limit_table: i64,
}

async fn profile_by_shape() -> ShapeBytes {
    let heap = profile::decode(&profile::heap_profile().await.unwrap()).unwrap();
    let stacks = profile::stacks(&heap, 0);
    let bytes_where = |names: &dyn Fn(&[String]) -> bool| -> i64 {
        stacks
            .iter()
            .filter(|(stack, _)| names(stack))
            .map(|(_, bytes)| bytes)
            .sum()
    };
    let has = |stack: &[String], part: &str| stack.iter().any(|frame| frame.contains(part));
    let matched =
        leakscope::matcher::match_profile_with(&heap, leakscope::matcher::SHAPES, 16 * 1024)
            .expect("a heap profile")
            .iter()
            .map(|found| found.shape.id)
            .collect();
    ShapeBytes {
        matched,
        // ANCHOR: shape_frames
        leaked_in_handler: bytes_where(&|stack| {
            has(stack, "::check_token") && has(stack, "axum::handler")
        }),
        scratch_on_blocking_threads: bytes_where(&|stack| {
            has(stack, "with_scratch") && has(stack, "tokio::runtime::blocking")
        }),
        connection_read_buffers: bytes_where(&|stack| stack[0].contains("BytesMut::reserve_inner")),
        rate_limit_table: bytes_where(&|stack| has(stack, "RateLimitStorage::check")),
        // ANCHOR_END: shape_frames
    }
}

// ANCHOR: heap_profile_frames
#[test]
fn each_bad_side_shows_in_the_heap_profile_under_its_own_frames() {
    let runtime = churning_runtime();

    let pool: Arc<dyn ScratchSpace> = Arc::new(good::ScratchPool::new(POOL_SIZE));
    runtime.block_on(render_on_retiring_threads(
        Arc::clone(&pool),
        CHURNED_THREADS,
    ));
    let _good = runtime.block_on(run_scenarios(Side::Good, pool));
    let good = runtime.block_on(profile_by_shape());
    assert_eq!(good.leaked_in_handler, 0, "{good:?}");
    // One scratch buffer, and the pool's short list of idle buffers.
    assert!(good.scratch_on_blocking_threads < 2 * 64 * 1024, "{good:?}");
    assert_eq!(good.connection_read_buffers, 0, "{good:?}");
    assert!(good.rate_limit_table < 4096, "{good:?}");
    assert!(good.matched.is_empty(), "{good:?}");

    let by_thread: Arc<dyn ScratchSpace> = Arc::new(bad::ScratchByThread::default());
    runtime.block_on(render_on_retiring_threads(
        Arc::clone(&by_thread),
        CHURNED_THREADS,
    ));
    let _bad = runtime.block_on(run_scenarios(Side::Bad, by_thread));
    let bad = runtime.block_on(profile_by_shape());
    // Every allocation is sampled, so these are the bytes each side keeps.
    assert_eq!(bad.leaked_in_handler, 1000 * 32, "{bad:?}");
    assert!(
        bad.scratch_on_blocking_threads >= (50 + 1) * 64 * 1024,
        "{bad:?}"
    );
    assert!(bad.connection_read_buffers >= 4 * 1024 * 1024, "{bad:?}");
    assert!(bad.rate_limit_table >= 6 * 1024 * 1024, "{bad:?}");
    for shape in [
        "leaked-in-handler",
        "scratch-per-thread",
        "pooled-read-buffer",
        "map-after-spike",
    ] {
        assert!(bad.matched.contains(&shape), "{shape}: {bad:?}");
    }
}
// ANCHOR_END: heap_profile_frames
