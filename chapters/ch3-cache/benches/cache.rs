//! What a bound costs: `get` and `insert` on the hand-written
//! [`good::TtlCache`], on moka, and on the seed's unbounded TTL cache, plus
//! the heap each keeps per entry.
//!
//! Workload: the flood's entries (short keys, 64-byte values, a 1 s TTL),
//! caches bounded to 10 000 entries. Inserts cycle through 20 000 distinct
//! keys, so once full a bounded cache evicts on every insert, while the
//! seed's cache settles at 20 000 entries (its memory stays bounded during
//! the run).

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use ch3_cache::{
    CAPACITY, FLOOD_TTL, FLOOD_VALUE_BYTES, bad, flood_key, flood_value, good, moka_cache,
};
use criterion::{Criterion, criterion_group};
use leakscope::heap::LiveBytes;
use leakscope::report::format_bytes;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Distinct keys the insert benchmark cycles through: twice the capacity.
const KEY_SPACE: usize = 2 * CAPACITY;

static VALUE: [u8; FLOOD_VALUE_BYTES] = [0; FLOOD_VALUE_BYTES];

/// A value whose clones do not allocate, so the benchmark times the cache.
fn shared_value() -> Bytes {
    Bytes::from_static(&VALUE)
}

fn keys() -> Vec<String> {
    (0..KEY_SPACE).map(flood_key).collect()
}

/// A runtime for the hand-written caches' sweepers. The benchmark never
/// runs it, so the sweepers never interrupt a measurement.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn bench_insert(c: &mut Criterion) {
    let runtime = runtime();
    let _entered = runtime.enter();
    let keys = keys();
    let mut group = c.benchmark_group("insert");

    let ttl_cache = good::TtlCache::new(CAPACITY, Duration::from_secs(5));
    let mut next = keys.iter().cycle();
    group.bench_function("good::TtlCache", |b| {
        b.iter(|| ttl_cache.insert(next.next().unwrap().clone(), shared_value(), FLOOD_TTL))
    });

    let moka = moka_cache(CAPACITY as u64, FLOOD_TTL);
    let mut next = keys.iter().cycle();
    group.bench_function("moka", |b| {
        b.iter(|| moka.insert(next.next().unwrap().clone(), shared_value()))
    });

    let seed_cache = bad::TtlCache::new();
    let mut next = keys.iter().cycle();
    group.bench_function("seed TTLCache (unbounded)", |b| {
        b.iter(|| seed_cache.set(next.next().unwrap().clone(), shared_value(), FLOOD_TTL))
    });
    group.finish();
}

fn bench_get(c: &mut Criterion) {
    let runtime = runtime();
    let _entered = runtime.enter();
    // Every key is present: these are hits.
    let keys: Vec<String> = (0..CAPACITY).map(flood_key).collect();
    let mut group = c.benchmark_group("get (hit)");

    let ttl_cache = good::TtlCache::new(CAPACITY, Duration::from_secs(5));
    let moka = moka_cache(CAPACITY as u64, Duration::from_secs(3600));
    let seed_cache = bad::TtlCache::new();
    for key in &keys {
        ttl_cache.insert(key.clone(), shared_value(), Duration::from_secs(3600));
        moka.insert(key.clone(), shared_value());
        seed_cache.set(key.clone(), shared_value(), Duration::from_secs(3600));
    }
    moka.run_pending_tasks();

    let mut next = keys.iter().cycle();
    group.bench_function("good::TtlCache", |b| {
        b.iter(|| black_box(ttl_cache.get(next.next().unwrap().as_str())))
    });
    let mut next = keys.iter().cycle();
    group.bench_function("moka", |b| {
        b.iter(|| black_box(moka.get(next.next().unwrap().as_str())))
    });
    let mut next = keys.iter().cycle();
    group.bench_function("seed TTLCache (unbounded)", |b| {
        b.iter(|| black_box(seed_cache.get(next.next().unwrap())))
    });
    group.finish();
}

/// Heap per entry once each cache holds [`CAPACITY`] flood entries (fresh
/// 64-byte values and keys, counted too), measured on this thread.
fn print_heap_per_entry() {
    let runtime = runtime();
    let _entered = runtime.enter();
    let per_entry = |bytes: i64| format_bytes(bytes / CAPACITY as i64);

    let heap = LiveBytes::start();
    let ttl_cache = good::TtlCache::new(CAPACITY, Duration::from_secs(5));
    for index in 0..CAPACITY {
        ttl_cache.insert(flood_key(index), flood_value(), FLOOD_TTL);
    }
    let ttl_cache_bytes = heap.live_bytes();
    drop(ttl_cache);

    let heap = LiveBytes::start();
    let moka = moka_cache(CAPACITY as u64, FLOOD_TTL);
    for index in 0..CAPACITY {
        moka.insert(flood_key(index), flood_value());
    }
    moka.run_pending_tasks();
    let moka_bytes = heap.live_bytes();
    drop(moka);

    let heap = LiveBytes::start();
    let seed_cache = bad::TtlCache::new();
    for index in 0..CAPACITY {
        seed_cache.set(flood_key(index), flood_value(), FLOOD_TTL);
    }
    let seed_bytes = heap.live_bytes();

    println!("heap per entry, {CAPACITY} entries of {FLOOD_VALUE_BYTES} B values and short keys:");
    println!(
        "  good::TtlCache             {}",
        per_entry(ttl_cache_bytes)
    );
    println!("  moka                       {}", per_entry(moka_bytes));
    println!("  seed TTLCache (unbounded)  {}", per_entry(seed_bytes));
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_insert, bench_get
}

fn main() {
    print_heap_per_entry();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
