//! End-to-end: the lab's secrets (Graph client secret, DC password) and the Graph access
//! token appear in no output — not in any command's `--json` or text output, not in the log
//! at any level (error … trace, every crate: `WRITEBACK_LOG=trace` also turns on reqwest,
//! hyper, rustls and ldap3) in plain and JSON format, not on the error paths (wrong DC
//! password, wrong client secret, Graph and LDAP refusals), not in the state file (its bytes,
//! WAL included). The Debug output of the configuration is checked in `config.rs`.

mod support;
use std::process::Command;
use support::*;

/// Every access token graph-sim issues starts so (`gsim.` + 32 random bytes, base64url).
const TOKEN_PREFIX: &str = "gsim.";

/// Whether `haystack` holds `needle`, byte for byte (the state file is binary).
fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The state file, its WAL and shared memory, byte for byte.
fn state_bytes(w: &World) -> Vec<u8> {
    let mut state = Vec::new();
    for f in ["state.db", "state.db-wal", "state.db-shm"] {
        if let Ok(b) = std::fs::read(w.dir.join(f)) {
            state.extend(b);
        }
    }
    state
}

fn run(w: &World, args: &[&str], envs: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_writeback"));
    cmd.args(args)
        .arg("--config")
        .arg(w.config_path())
        // writeback reads WRITEBACK_LOG; RUST_LOG too, for anything that would read it.
        .env("RUST_LOG", "trace")
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
    // Not "secrets": the world's directory name would contain the client secret's text.
    let w = World::new("leaks").await;
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
            vec!["preflight", "-vv"],
            vec!["cloud", "status", "--json", "-vv"],
            vec!["cloud", "status", "-vv"],
            vec!["explain", "SG-Secrets", "-vv"],
        ] {
            let text = run(&w, &args, &envs);
            assert!(text.trim().len() > 1, "{args:?} printed something: {text}");
            seen.push((format!("{args:?} (log format {format:?})"), text));
        }
    }
    // Every log level, by WRITEBACK_LOG and by the flags.
    for level in ["error", "warn", "info", "debug", "trace"] {
        for format in ["", "json"] {
            let envs = [("WRITEBACK_LOG", level), ("WRITEBACK_LOG_FORMAT", format)];
            for args in [vec!["sync", "--full"], vec!["plan", "--json"]] {
                let text = run(&w, &args, &envs);
                seen.push((format!("{args:?} at {level} (log format {format:?})"), text));
            }
        }
    }
    for flag in ["-q", "-v", "-vv"] {
        let envs = [("WRITEBACK_LOG_FORMAT", "")];
        let text = run_without_log_env(&w, &["sync", "--full", flag], &envs);
        seen.push((format!("sync --full {flag}"), text));
    }
    let trace_lines = seen.iter().map(|(_, t)| t.lines().count()).sum::<usize>();
    assert!(
        trace_lines > 200,
        "trace logging is on: {trace_lines} lines"
    );
    // The log shows who we are, so it would show the secrets next to it if it showed them.
    assert!(
        seen.iter().any(|(_, t)| t.contains(&w.dc.bind_dn)),
        "the bind DN is logged"
    );
    let state = state_bytes(&w);
    assert!(state.len() > 4096, "the state file was written");
    for (name, secret) in [
        ("the Graph client secret", CLIENT_SECRET),
        ("the DC password", w.dc.password.as_str()),
        ("an access token", TOKEN_PREFIX),
    ] {
        assert!(!holds(&state, secret), "the state file holds {name}");
        for (what, text) in &seen {
            assert!(!text.contains(secret), "{what} shows {name}:\n{text}");
        }
    }
}

/// Like [`run`], without WRITEBACK_LOG: the level comes from the flags alone.
fn run_without_log_env(w: &World, args: &[&str], envs: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_writeback"));
    cmd.args(args)
        .arg("--config")
        .arg(w.config_path())
        .env_remove("WRITEBACK_LOG")
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

/// Runs with the exit code, for the error paths.
fn run_code(w: &World, args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
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
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_on_the_error_paths_at_trace_level() {
    let w = World::new("leaks-err").await;
    let g = w.security_group("SG-Secrets-Err", Some(true), None).await;
    const WRONG_PASSWORD: &str = "Wrong-AD-Passw0rd-7f3a";
    const WRONG_SECRET: &str = "wrong-client-secret-9c1e";
    let mut seen = Vec::new();
    for format in ["", "json"] {
        let trace = [("WRITEBACK_LOG", "trace"), ("WRITEBACK_LOG_FORMAT", format)];
        // The DC refuses the bind (LDAP rc 49): exit 3.
        let mut envs = trace.to_vec();
        envs.push(("WB_E2E_AD_PASSWORD", WRONG_PASSWORD));
        for args in [
            vec!["sync", "--json"],
            vec!["sync"],
            vec!["preflight", "--json"],
        ] {
            let (code, text) = run_code(&w, &args, &envs);
            assert_eq!(code, 3, "{args:?} with a wrong DC password: {text}");
            seen.push((format!("{args:?}, wrong DC password ({format:?})"), text));
        }
        // Graph refuses the client secret (401 invalid_client): exit 3.
        let mut envs = trace.to_vec();
        envs.push(("WB_E2E_SECRET", WRONG_SECRET));
        for args in [
            vec!["sync", "--json"],
            vec!["sync"],
            vec!["cloud", "status", "--json"],
            vec!["preflight"],
        ] {
            let (code, text) = run_code(&w, &args, &envs);
            assert_ne!(code, 0, "{args:?} with a wrong client secret: {text}");
            assert!(
                text.contains("AADSTS") || text.contains("invalid_client"),
                "{text}"
            );
            seen.push((format!("{args:?}, wrong client secret ({format:?})"), text));
        }
        // Graph refuses a request with a valid token (404 on a group that does not exist).
        let (code, text) = run_code(
            &w,
            &["cloud", "disable", "00000000-0000-0000-0000-0000000000ff"],
            &trace,
        );
        assert_ne!(code, 0, "{text}");
        seen.push((
            format!("cloud disable of an unknown group ({format:?})"),
            text,
        ));
    }
    // The secrets written as literals in the file, and the file broken near them.
    let path = w.config_path();
    let text = std::fs::read_to_string(&path).expect("config");
    let literal = text
        .replace(
            "{ env = \"WB_E2E_SECRET\" }",
            &format!("\"{CLIENT_SECRET}\""),
        )
        .replace(
            "{ env = \"WB_E2E_AD_PASSWORD\" }",
            &format!("\"{}\"", w.dc.password),
        );
    assert_ne!(literal, text, "the secrets are now literals");
    std::fs::write(&path, &literal).expect("config");
    let trace = [("WRITEBACK_LOG", "trace")];
    let (code, out) = run_code(&w, &["sync", "--json", "-vv"], &trace);
    assert_eq!(code, 0, "{out}");
    seen.push(("sync with literal secrets".into(), out));
    for (broken, why) in [
        (
            literal.replace(
                &format!("\"{CLIENT_SECRET}\""),
                &format!("\"{CLIENT_SECRET}"),
            ),
            "an unterminated client secret",
        ),
        (
            literal.replace(
                &format!("\"{}\"", w.dc.password),
                &format!("[\"{}\", 1]", w.dc.password),
            ),
            "a password of the wrong type",
        ),
        (
            literal.replace(
                &format!("\"{}\"", w.dc.password),
                &format!("\"{}\" oops", w.dc.password),
            ),
            "garbage after the password",
        ),
    ] {
        std::fs::write(&path, broken).expect("config");
        let (code, out) = run_code(&w, &["sync", "--json"], &trace);
        assert_eq!(code, 2, "{why}: {out}");
        seen.push((format!("a config with {why}"), out));
    }
    let _ = g;
    let state = state_bytes(&w);
    for (name, secret) in [
        ("the Graph client secret", CLIENT_SECRET),
        ("the DC password", w.dc.password.as_str()),
        ("the wrong DC password", WRONG_PASSWORD),
        ("the wrong client secret", WRONG_SECRET),
        ("an access token", TOKEN_PREFIX),
    ] {
        assert!(!holds(&state, secret), "the state file holds {name}");
        for (what, text) in &seen {
            assert!(!text.contains(secret), "{what} shows {name}:\n{text}");
        }
    }
}
