//! The workloads every profiling-cost bench runs, so only the allocator's
//! configuration differs between them: 1000 inserts of the seed's 5 KB
//! entries into the fixed cache (each also evicting an old one once the cache
//! is full), nothing but allocation; and 1000 `/leak` requests through the
//! fixed service's router, the same allocations inside a service's work.

use std::time::Duration;

use ch5_pprof::{CACHE_ENTRY_BYTES, SeedService, good::FixedService};
use criterion::Criterion;

/// Inserts per measured iteration.
pub const INSERTS: u64 = 1000;

fn churn(service: &FixedService, first_key: u64) {
    for i in first_key..first_key + INSERTS {
        service.cache_data(format!("cache_key_{i}"), CACHE_ENTRY_BYTES);
    }
}

/// Benches [`INSERTS`] inserts under the name `label`.
pub fn bench_churn(criterion: &mut Criterion, label: &str) {
    let service = FixedService::new();
    churn(&service, 0); // fill the cache: every measured insert also evicts
    let mut next_key = INSERTS;
    let mut group = criterion.benchmark_group("1000 cache inserts of 5 KB");
    group
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    group.bench_function(label, |bencher| {
        bencher.iter(|| {
            churn(&service, next_key);
            next_key += INSERTS;
        })
    });
    group.finish();
}

/// Benches [`INSERTS`] `/leak` requests through the fixed service's router
/// (routing, query parsing, the seed's turn, a JSON answer) under the name
/// `label`: the same 5 KB per request, with a service's work around it.
pub fn bench_requests(criterion: &mut Criterion, label: &str) {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use ch5_pprof::DEFAULT_LEAK_CAP_BYTES;
    use ch5_pprof::server::{App, router};
    use tower::ServiceExt;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let routes = router(App::new(
        Arc::new(FixedService::new()),
        DEFAULT_LEAK_CAP_BYTES,
    ));
    let mut next_key = 0u64;
    let mut group = criterion.benchmark_group("1000 /leak requests through the router");
    group
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    group.bench_function(label, |bencher| {
        bencher.iter(|| {
            runtime.block_on(async {
                for _ in 0..INSERTS {
                    let request = Request::get(format!("/leak?id=key-{next_key}"))
                        .body(Body::empty())
                        .expect("a valid request");
                    let response = routes.clone().oneshot(request).await.expect("infallible");
                    assert!(response.status().is_success());
                    next_key += 1;
                }
            })
        })
    });
    group.finish();
}
