//! The profiling endpoints, read back the way `go tool pprof` reads them.
//! Heap profiling is per process, switched on by `malloc_conf`, so these
//! claims have their own test binary with the server's own setting.

use std::sync::Arc;

use ch5_pprof::server::{self, App};
use ch5_pprof::{DEFAULT_LEAK_CAP_BYTES, REQUESTS_PER_PHASE, bad};
use leakscope::profile::{self, is_allocator_frame};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// The server's setting: one sample per 512 KiB allocated, on average.
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "malloc_conf")]
pub static malloc_conf: &[u8] = b"prof:true,prof_active:true,lg_prof_sample:19\0";

async fn get(client: &reqwest::Client, url: String) -> (u16, Vec<u8>) {
    let response = client.get(url).send().await.expect("the server answers");
    let code = response.status().as_u16();
    (code, response.bytes().await.expect("a body").to_vec())
}

// ANCHOR: heap_profile_names_the_leak
#[tokio::test(flavor = "current_thread")]
async fn the_served_heap_profile_puts_the_leaky_cache_insert_first() {
    let stop = CancellationToken::new();
    let app = App::new(Arc::new(bad::LeakyService::new()), DEFAULT_LEAK_CAP_BYTES);
    let (addr, server) = server::spawn_on_loopback(app, stop.clone()).await.unwrap();
    let client = reqwest::Client::new();
    for i in 0..REQUESTS_PER_PHASE {
        let (code, _) = get(&client, format!("http://{addr}/leak?id=key-{i}")).await;
        assert_eq!(code, 200);
    }

    // Untrimmed, the dump blames the allocator's own frame. (Symbolizing it
    // also leaves the symbolizer's debug-info cache in the heap.)
    let (_, raw) = get(&client, format!("http://{addr}/debug/pprof/heap?raw=1")).await;
    let raw_top = profile::top(&profile::decode(&raw).unwrap(), 0);
    assert!(
        is_allocator_frame(&raw_top[0].function),
        "{:?}",
        &raw_top[..3]
    );

    let (code, served) = get(&client, format!("http://{addr}/debug/pprof/heap")).await;
    assert_eq!(code, 200);
    let heap = profile::decode(&served).expect("a gzipped pprof profile");
    let value_type = &heap.sample_type[0];
    let name = |index: i64| heap.string_table[index as usize].as_str();
    assert_eq!(
        (name(value_type.r#type), name(value_type.unit)),
        ("inuse_space", "bytes")
    );
    assert!(!heap.sample.is_empty());
    assert!(heap.mapping.iter().all(|mapping| mapping.has_functions));

    let top = profile::top(&heap, 0);
    assert_eq!(
        top[0].function,
        "<ch5_pprof::bad::LeakyService as ch5_pprof::SeedService>::cache_data"
    );
    // 2000 entries of 5 KiB: about 10 MiB, estimated from samples.
    assert!(top[0].flat > 5 << 20, "{:?}", &top[..3]);

    // The flamegraph of the same heap has a tower for the cache insert.
    let (code, svg) = get(&client, format!("http://{addr}/debug/pprof/flamegraph")).await;
    let svg = String::from_utf8(svg).unwrap();
    assert_eq!(code, 200);
    assert!(svg.contains("<svg") && svg.contains("cache_data"));

    // leakscope's matcher, served beside the profile, names the shape.
    let (code, named) = get(&client, format!("http://{addr}/debug/leakscope/match")).await;
    let named = String::from_utf8(named).unwrap();
    assert_eq!(code, 200, "{named}");
    assert!(named.contains("seed-leaky-cache"), "{named}");
    // And a saved profile posted to it: the same answer; not a profile: 400.
    let posted = client
        .post(format!("http://{addr}/debug/leakscope/match"))
        .body(served.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status().as_u16(), 200);
    assert!(posted.text().await.unwrap().contains("seed-leaky-cache"));
    let garbage = client
        .post(format!("http://{addr}/debug/leakscope/match"))
        .body("not a profile")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status().as_u16(), 400);

    drop(client);
    stop.cancel();
    server.await.unwrap().unwrap();
}
// ANCHOR_END: heap_profile_names_the_leak
