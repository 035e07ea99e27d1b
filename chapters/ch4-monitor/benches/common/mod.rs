//! CPU time for the benches: on a machine shared with other work, wall time
//! includes the moments the OS ran someone else; the process's CPU time does
//! not.

use std::time::Duration;

/// CPU time this process has used so far, all threads together.
pub fn process_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill in.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    assert_eq!(status, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Runs `routine` `iterations` times and returns the CPU time it took: for
/// criterion's `iter_custom`.
pub fn cpu_time_of<T>(iterations: u64, mut routine: impl FnMut() -> T) -> Duration {
    let start = process_cpu_time();
    for _ in 0..iterations {
        std::hint::black_box(routine());
    }
    process_cpu_time() - start
}

/// Threads that have allocated and stay alive, each with its allocator
/// state (a jemalloc thread cache and arena, a counting-allocator slot), as a
/// service's threads do, until this is dropped.
#[allow(dead_code)] // not every bench keeps threads
pub struct KeptThreads {
    done: Option<std::sync::mpsc::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Starts `count` threads that each allocate 64 KiB and then wait, and
/// returns once all of them have allocated.
#[allow(dead_code)] // not every bench keeps threads
pub fn keep_threads_alive(count: usize) -> KeptThreads {
    let (done, wait_until_done) = std::sync::mpsc::channel::<()>();
    let wait_until_done = std::sync::Arc::new(std::sync::Mutex::new(wait_until_done));
    let ready = std::sync::Arc::new(std::sync::Barrier::new(count + 1));
    let threads = (0..count)
        .map(|_| {
            let ready = ready.clone();
            let wait_until_done = wait_until_done.clone();
            std::thread::spawn(move || {
                let kept = std::hint::black_box(vec![1u8; 64 << 10]);
                ready.wait();
                // Every sender dropped means the bench is over.
                let _ = wait_until_done.lock().map(|receiver| receiver.recv());
                drop(kept);
            })
        })
        .collect();
    ready.wait();
    KeptThreads {
        done: Some(done),
        threads,
    }
}

impl Drop for KeptThreads {
    fn drop(&mut self) {
        drop(self.done.take());
        for thread in self.threads.drain(..) {
            thread.join().expect("a kept thread");
        }
    }
}
