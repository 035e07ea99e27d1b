//! The seed's workload under dhat, the second profiler: writes
//! `dhat-heap.json`, which DHAT's viewer opens
//! (<https://nnethercote.github.io/dh_view/dh_view.html>).
//!
//! `cargo run -p ch5-pprof --example dhat_heap -- [bad|good]`

use std::process::ExitCode;
use std::sync::Arc;

use ch5_pprof::server::App;
use ch5_pprof::{
    CACHE_ENTRY_BYTES, DEFAULT_LEAK_CAP_BYTES, REQUESTS_PER_PHASE, SeedService, bad, good,
};
use leakscope::report::format_bytes;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let service: Arc<dyn SeedService> = match args.iter().map(String::as_str).collect::<Vec<_>>()[..]
    {
        [] | ["bad"] => Arc::new(bad::LeakyService::new()),
        ["good"] => Arc::new(good::FixedService::new()),
        _ => {
            eprintln!("usage: dhat_heap [bad|good]   (writes dhat-heap.json)");
            return ExitCode::from(2);
        }
    };
    let profiler = dhat::Profiler::new_heap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let app = App::new(service, DEFAULT_LEAK_CAP_BYTES);
        for i in 0..REQUESTS_PER_PHASE {
            app.iterate(format!("cache_key_{i}"), CACHE_ENTRY_BYTES)
                .expect("far below the cap");
        }
        let stats = dhat::HeapStats::get();
        println!(
            "{} service after {REQUESTS_PER_PHASE} turns of the seed's loop:\n  \
             in use now:         {:>10} in {:>5} blocks   (pprof: inuse_space, inuse_objects)\n  \
             allocated in total: {:>10} in {:>5} blocks   (pprof: alloc_space, alloc_objects)\n  \
             peak:               {:>10} in {:>5} blocks",
            app.service().name(),
            format_bytes(stats.curr_bytes as i64),
            stats.curr_blocks,
            format_bytes(stats.total_bytes as i64),
            stats.total_blocks,
            format_bytes(stats.max_bytes as i64),
            stats.max_blocks,
        );
        app.service().shutdown().await;
    });
    drop(profiler); // writes dhat-heap.json and prints dhat's summary
    ExitCode::SUCCESS
}
