//! The cost of one GET on loopback: through one shared client (a kept-alive
//! connection) against a new client per request (a new connection each).

use std::time::Duration;

use ch9_http::{CLIENT_TIMEOUT, bad, good};
use criterion::{Criterion, criterion_group, criterion_main};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn client_reuse(c: &mut Criterion) {
    let runtime = ch9_http::current_thread_runtime();
    let (url, server) = runtime.block_on(async {
        let listener = ch9_http::bind_loopback().expect("bind loopback");
        let url = format!("http://{}/", listener.local_addr().expect("an address"));
        (url, good::spawn_server(listener, Default::default()))
    });
    let shared = good::client();

    let mut group = c.benchmark_group("GET / on loopback");
    group
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    group.bench_function("one shared client", |b| {
        b.iter(|| {
            runtime
                .block_on(good::fetch(&shared, &url, CLIENT_TIMEOUT))
                .expect("served")
        })
    });
    group.bench_function("a new client per request", |b| {
        b.iter(|| {
            runtime
                .block_on(bad::fetch_with_new_client(&url))
                .expect("served")
        })
    });
    group.finish();
    runtime.block_on(server.shutdown());
}

criterion_group!(benches, client_reuse);
criterion_main!(benches);
