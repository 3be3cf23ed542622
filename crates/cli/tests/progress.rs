//! End-to-end: the exporter shows a progress bar (operations of total, rate, ETA) when
//! stderr is a terminal, and nothing of it when stderr is a pipe or a file.

mod support;
use std::process::Command;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn the_export_shows_progress_on_a_terminal_and_none_in_a_pipe() {
    let w = World::new("progress").await;
    w.write_config();
    for i in 0..30 {
        w.security_group(&format!("SG-Progress-{i:02}"), Some(true), None)
            .await;
    }

    // On a terminal: `script` gives the command a pseudo-terminal and records what it
    // wrote there (stdout and stderr alike).
    let command = format!(
        "{} sync --config {}",
        env!("CARGO_BIN_EXE_writeback"),
        w.config_path().display()
    );
    let tty = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("WB_E2E_SECRET", CLIENT_SECRET)
        .env("WB_E2E_AD_PASSWORD", &w.dc.password)
        .env("WRITEBACK_LOG", "warn")
        .output()
        .expect("script (util-linux) runs");
    let screen = String::from_utf8_lossy(&tty.stdout);
    assert_eq!(tty.status.code(), Some(0), "{screen}");
    assert!(
        screen.contains("exporting [") && screen.contains("/30 operations"),
        "no progress bar on the terminal:\n{screen}"
    );
    assert!(screen.contains("ETA"), "{screen}");

    // In a pipe (as in tests, logs and the journal): no bar.
    for i in 30..40 {
        w.security_group(&format!("SG-Progress-{i:02}"), Some(true), None)
            .await;
    }
    let piped = w.writeback(&["sync"]);
    assert_eq!(piped.code, 0, "{}", piped.stderr);
    assert!(
        !piped.stderr.contains("exporting") && !piped.stderr.contains("operations ·"),
        "a progress bar in a pipe:\n{}",
        piped.stderr
    );
    assert_eq!(w.ad_groups().await.len(), 40);
}
