//! End-to-end: the lab's secrets (Graph client secret, DC password) appear in no output —
//! not in any command's `--json` or text output, not in the log at trace level (plain and
//! JSON format), not in the state file.

mod support;
use std::process::Command;
use support::*;

fn run(w: &World, args: &[&str], envs: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_writeback"));
    cmd.args(args)
        .arg("--config")
        .arg(w.config_path())
        .env("WB_E2E_SECRET", CLIENT_SECRET)
        .env("WB_E2E_AD_PASSWORD", &w.dc.password);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("writeback runs");
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_in_any_output_log_level_or_the_state_file() {
    let w = World::new("secrets").await;
    let (u, _) = w.synced_user("sec-a", "Secret Keeper").await;
    let g = w.security_group("SG-Secrets", Some(true), None).await;
    w.add_member(&g, &u).await;
    let mut seen = Vec::new();
    for format in ["", "json"] {
        let envs = [("WRITEBACK_LOG", "trace"), ("WRITEBACK_LOG_FORMAT", format)];
        for args in [
            vec!["sync", "--json", "-vv"],
            vec!["sync", "-vv"],
            vec!["plan", "--json", "-vv"],
            vec!["plan", "-vv"],
            vec!["explain", "SG-Secrets", "--json", "-vv"],
            vec!["status", "--json"],
            vec!["status"],
            vec!["runs", "--json"],
            vec!["show", "1", "--json"],
            vec!["drift", "--json"],
            vec!["preflight", "--json", "-vv"],
        ] {
            let text = run(&w, &args, &envs);
            assert!(text.trim().len() > 1, "{args:?} printed something: {text}");
            seen.push((format!("{args:?} (log format {format:?})"), text));
        }
    }
    let trace_lines = seen.iter().map(|(_, t)| t.lines().count()).sum::<usize>();
    assert!(
        trace_lines > 200,
        "trace logging is on: {trace_lines} lines"
    );
    let mut state = Vec::new();
    for f in ["state.db", "state.db-wal"] {
        if let Ok(b) = std::fs::read(w.dir.join(f)) {
            state.extend(b);
        }
    }
    seen.push((
        "the state file".into(),
        String::from_utf8_lossy(&state).into_owned(),
    ));
    for (what, text) in &seen {
        for (name, secret) in [
            ("the Graph client secret", CLIENT_SECRET),
            ("the DC password", w.dc.password.as_str()),
        ] {
            assert!(!text.contains(secret), "{what} shows {name}");
        }
    }
}
