//! Fuzz target `ad_values`: see `fuzz/checks/ad_values.rs` for what it checks.
#![no_main]

mod checks {
    include!("../checks/ad_values.rs");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
