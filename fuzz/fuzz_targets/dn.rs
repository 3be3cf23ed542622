//! Fuzz target `dn`: see `fuzz/checks/dn.rs` for what it checks.
#![no_main]

mod checks {
    include!("../checks/dn.rs");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
