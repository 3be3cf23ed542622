// The configuration file (`crates/cli/src/config.rs`, compiled in here as a module: the CLI
// is a binary crate): any text is accepted or refused with an error naming a key — never a
// panic. Loaded as the state commands load it (`Config::load_for_state`: every key checked,
// no secret read, so no input makes the target read a file or the environment).
//
// Input: the file's text (lossy UTF-8).
//
// Shared by the fuzz target `fuzz/fuzz_targets/config.rs` and the test that runs the seed
// corpus `fuzz/corpus/config/` in the normal test suite (`include!`d there).
use std::io::Write;

/// Checks one input; panics on a property that does not hold.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    thread_local! {
        static PATH: std::path::PathBuf = {
            let dir = std::env::temp_dir().join(format!("writeback-fuzz-config-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            dir.join("writeback.toml")
        };
    }
    PATH.with(|path| {
        let mut f = std::fs::File::create(path).expect("write config");
        f.write_all(text.as_bytes()).expect("write config");
        drop(f);
        match crate::config::Config::load_for_state(path) {
            Ok(_) => {}
            Err(e) => assert!(!e.key.trim().is_empty(), "an error without a key: {e}"),
        }
    });
}

