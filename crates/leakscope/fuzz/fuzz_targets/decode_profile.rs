//! `profile::decode` on arbitrary bytes: an error is fine, a panic, a hang or
//! unbounded memory is not.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(profile) = leakscope::profile::decode(bytes) {
        // What the book does with a decoded profile must not panic either.
        let _ = leakscope::profile::top(&profile, 0);
    }
});
