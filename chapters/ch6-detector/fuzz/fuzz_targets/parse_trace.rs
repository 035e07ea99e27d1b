//! Any text: `parse_trace` returns a trace or an error naming a line and
//! column, never panics; a trace it accepts runs through the detector
//! (in time order, so `observe` never refuses it) and round-trips.
#![no_main]

use leakscope::detect::{Detector, DetectorConfig, parse_trace, write_trace};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_trace(text) {
        Ok(trace) => {
            assert_eq!(parse_trace(&write_trace(&trace)).as_ref(), Ok(&trace));
            let mut detector = Detector::new(DetectorConfig::default());
            for observation in trace {
                detector.observe(observation).expect("parse_trace keeps time order");
            }
        }
        Err(error) => assert!(error.line >= 1 && error.column >= 1, "{error}"),
    }
});
