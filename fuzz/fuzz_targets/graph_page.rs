//! Fuzz target `graph_page`: see `fuzz/checks/graph_page.rs` for what it checks.
#![no_main]

mod checks {
    include!("../checks/graph_page.rs");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
