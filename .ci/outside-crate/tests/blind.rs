//! No `#[global_allocator]`: leakscope cannot see the heap, and says so with
//! the line to add instead of reporting 0 B.
#![cfg(not(feature = "jemalloc"))]

use leakscope::heap::{HeapError, LiveBytes};
use leakscope::monitor::{Monitor, MonitorConfig};

#[test]
fn live_bytes_refuses_to_start_and_names_the_fix() {
    let error = LiveBytes::try_start().unwrap_err();
    assert_eq!(error, HeapError::Blind);
    assert!(error.to_string().contains("#[global_allocator] static ALLOC: leakscope::alloc::CountingAlloc"), "{error}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
#[should_panic(expected = "Add this line to main.rs or to the test file: #[global_allocator]")]
async fn a_leak_check_panics_instead_of_reporting_zero() {
    let _check = leakscope::check::LeakCheck::start();
    let _leaked: &'static mut [u8] = Box::leak(vec![0u8; 50 << 20].into_boxed_slice());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_monitor_refuses_to_start() {
    let error = Monitor::try_start(MonitorConfig::default()).unwrap_err();
    assert_eq!(error, HeapError::Blind);
}
