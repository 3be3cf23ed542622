//! End-to-end: SIGHUP makes `writeback run` read its configuration again. A good one is
//! used from the next cycle (a new scope rule writes its group); a broken one is refused —
//! the log names the key — and the daemon keeps syncing with the one it runs.

mod support;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// `writeback run` for this world, its log (stderr) in a file of the world's directory.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(w: &World) -> Daemon {
        let log = w.dir.join("daemon.log");
        let child = Command::new(env!("CARGO_BIN_EXE_writeback"))
            .args(["run", "--config"])
            .arg(w.config_path())
            .env("WB_E2E_SECRET", CLIENT_SECRET)
            .env("WB_E2E_AD_PASSWORD", &w.dc.password)
            .env("WRITEBACK_CHECK_INCREMENTAL", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon { child, log }
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for a log line holding every one of `parts`; returns it.
    async fn log_line(&mut self, parts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(line) = self
                .log()
                .lines()
                .find(|l| parts.iter().all(|p| l.contains(p)))
            {
                return line.to_string();
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "the daemon exited; its log:\n{}",
                self.log()
            );
            assert!(
                Instant::now() < deadline,
                "no log line with {parts:?}; the log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, and the daemon stops with 0.
    async fn stop(mut self) {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not stop on SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(status.code(), Some(0), "its log:\n{}", self.log());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the cloud group `id` is in AD.
async fn written(w: &World, d: &mut Daemon, id: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while w.ad_group_of(id).await.is_none() {
        assert!(
            d.child.try_wait().unwrap().is_none(),
            "the daemon exited; its log:\n{}",
            d.log()
        );
        assert!(
            Instant::now() < deadline,
            "the daemon did not write {what}; its log:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A world whose daemon cycles every second and serves no dashboard.
async fn world(label: &str) -> World {
    let mut w = World::new(label).await;
    w.writeback_toml = "interval = \"1s\"".into();
    w.rules_toml = "\n[dashboard]\nenabled = false\n".into();
    w.write_config();
    w
}

fn with_rule(w: &mut World, rule: &str) {
    w.rules_toml = format!("{rule}\n\n[dashboard]\nenabled = false\n");
    w.write_config();
}

fn completed_cycles(log: &str) -> usize {
    log.lines().filter(|l| l.contains("cycle done")).count()
}

async fn more_cycles(d: &mut Daemon, than: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while completed_cycles(&d.log()) <= than {
        assert!(
            Instant::now() < deadline,
            "no further cycle; the log:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scope_rule_added_and_reloaded_with_sighup_writes_its_group() {
    let mut w = world("reload").await;
    let enabled = w
        .security_group("SG-Reload-Enabled", Some(true), None)
        .await;
    let by_rule = w.security_group("SG-Reload-ByRule", None, None).await;
    let mut d = Daemon::start(&w);
    written(&w, &mut d, &enabled, "the enabled group").await;
    assert!(
        w.ad_group_of(&by_rule).await.is_none(),
        "no rule enables SG-Reload-ByRule yet"
    );

    with_rule(
        &mut w,
        "[[writeback.rule]]\nmatch = { kind = \"security\", name_prefix = \"SG-Reload-By\" }\nenable = true",
    );
    d.signal("HUP");
    d.log_line(&["configuration reloaded"]).await;
    written(&w, &mut d, &by_rule, "the group the reloaded rule enables").await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_config_on_sighup_is_refused_naming_the_key_and_the_daemon_keeps_syncing() {
    let mut w = world("reload-bad").await;
    let first = w.security_group("SG-Reload-First", Some(true), None).await;
    let mut d = Daemon::start(&w);
    written(&w, &mut d, &first, "the first group").await;

    let good = std::fs::read_to_string(w.config_path()).unwrap();
    with_rule(
        &mut w,
        "[[writeback.rule]]\nmatch = { kind = \"dl\", name_prefix = \"SG-\" }\nenable = true",
    );
    d.signal("HUP");
    let line = d
        .log_line(&[
            "configuration reload refused",
            "writeback.rule[0].match.kind",
        ])
        .await;
    assert!(line.contains("ERROR"), "{line}");
    assert!(!d.log().contains("configuration reloaded"), "{}", d.log());

    // Still cycling, with the configuration it runs: a group enabled in the cloud arrives.
    let cycles = completed_cycles(&d.log());
    let second = w.security_group("SG-Reload-Second", Some(true), None).await;
    more_cycles(&mut d, cycles).await;
    written(
        &w,
        &mut d,
        &second,
        "a group enabled after the refused reload",
    )
    .await;

    // The state file cannot move under a running daemon: refused too, naming the key.
    std::fs::write(
        w.config_path(),
        good.replace("state = \"state.db\"", "state = \"other.db\""),
    )
    .unwrap();
    d.signal("HUP");
    d.log_line(&["configuration reload refused", "writeback.state"])
        .await;
    assert!(!w.dir.join("other.db").exists());
    d.stop().await;
}
