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
