//! Fuzz target `config`: see `fuzz/checks/config.rs` for what it checks.
#![no_main]

#[allow(dead_code)]
#[path = "../../crates/cli/src/config.rs"]
mod config;

mod checks {
    include!("../checks/config.rs");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
