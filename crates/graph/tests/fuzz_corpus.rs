//! The fuzz seed corpus `fuzz/corpus/graph_page/` run through the fuzz target's own checks
//! (`fuzz/checks/graph_page.rs`) in the normal test suite: the corpus stays valid input and the
//! properties the fuzzer checks hold on it (the fuzzer itself: `scripts/reliability fuzz`).

mod checks {
    include!("../../../fuzz/checks/graph_page.rs");
}

#[test]
fn the_graph_page_fuzz_corpus_holds_the_fuzz_targets_properties() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/graph_page");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/corpus/graph_page") {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        checks::check(&data);
        n += 1;
    }
    assert!(n > 0, "no corpus in {}", dir.display());
}
