//! `ch10-arenas`: the glibc-arena workload in a process that runs on
//! glibc's malloc. It sets [`arenas::CountingSystem`] (the system allocator,
//! counted) as the global allocator and does not link the chapter's
//! library or leakscope, which link jemalloc.
//!
//! Driven over stdin, one command a line, so the measuring process samples
//! at the right moments: `request` serves the next request (round-robin
//! over the workers), `sample` does nothing; both answer with the process's
//! metrics in Prometheus text followed by a line `end`. End of input stops
//! it. Run it with `MALLOC_ARENA_MAX=1` to see the fix.

#[path = "../arenas.rs"]
mod arenas;

use std::io::{BufRead, Write};

#[global_allocator]
static ALLOC: arenas::CountingSystem = arenas::CountingSystem;

fn main() {
    let pool = arenas::Pool::start();
    let mut served = 0u64;
    let stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "request" => {
                pool.serve_on(served as usize);
                served += 1;
            }
            "sample" => {}
            other => {
                eprintln!("ch10-arenas: unknown command {other:?} (request, sample)");
                std::process::exit(2);
            }
        }
        let mut out = stdout.lock();
        let _ = writeln!(out, "{}end", arenas::metrics(served));
        let _ = out.flush();
    }
    pool.stop();
}
