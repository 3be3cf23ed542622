//! End-to-end: the dashboard and service endpoints of `writeback run` against the lab DC and
//! graph-sim — pages render the real run history, `/metrics` parses and moves with cycles
//! and drift, health and readiness, "sync now" needs the token, no secret anywhere, and a
//! real browser (headless Chromium) renders the pages.

mod support;
use ldap3::Mod;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

const DASH_TOKEN: &str = "dash-token-e2e-7f3a9c";

/// A `writeback run` child process, killed on drop; its log in a file of the world's dir.
struct Daemon {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// Configures the world's `[dashboard]` (with or without the token) and `interval`, then
/// starts the daemon and waits until `/healthz` answers.
async fn start_daemon(w: &mut World, interval: &str, token: bool) -> Daemon {
    let port = free_port();
    w.writeback_toml = format!("interval = \"{interval}\"\nnaming = \"display-name\"");
    w.rules_toml = format!(
        "\n[dashboard]\nlisten = \"127.0.0.1:{port}\"\n{}",
        if token {
            "token = { env = \"WB_E2E_DASH_TOKEN\" }"
        } else {
            ""
        }
    );
    w.write_config();
    let log = w.dir.join("daemon.log");
    let child = Command::new(env!("CARGO_BIN_EXE_writeback"))
        .args(["run", "--config"])
        .arg(w.config_path())
        .env("WB_E2E_SECRET", CLIENT_SECRET)
        .env("WB_E2E_AD_PASSWORD", &w.dc.password)
        .env("WB_E2E_DASH_TOKEN", DASH_TOKEN)
        .env("WRITEBACK_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("daemon log"))
        .spawn()
        .expect("writeback run starts");
    let d = Daemon {
        child,
        base: format!("http://127.0.0.1:{port}"),
        log,
    };
    let http = client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{}/healthz", d.base)).send().await {
            assert_eq!(r.status(), 200);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard did not come up:\n{}",
            d.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

/// What maud makes of a text: `&`, `<`, `>` and `"` escaped.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Every page and answer the test saw, to look for secrets in at the end.
#[derive(Default)]
struct Seen(Vec<(String, String)>);

impl Seen {
    async fn get(&mut self, http: &reqwest::Client, url: &str, token: bool) -> (u16, String) {
        let mut req = http.get(url);
        if token {
            req = req.bearer_auth(DASH_TOKEN);
        }
        let r = req.send().await.expect("dashboard answers");
        let status = r.status().as_u16();
        let mut text = format!("{:?}\n", r.headers());
        text.push_str(&r.text().await.unwrap_or_default());
        self.0.push((url.to_string(), text.clone()));
        (status, text)
    }
}

fn scrape(text: &str) -> prometheus_parse::Scrape {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("the Prometheus text format parses")
}

/// The value of a metric (summed over the series whose labels include `labels`).
fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for sample in s.samples.iter().filter(|x| x.metric == name) {
        if labels.iter().all(|(k, v)| sample.labels.get(k) == Some(*v)) {
            let v = match sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => continue,
            };
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

async fn metrics(http: &reqwest::Client, d: &Daemon, token: bool) -> prometheus_parse::Scrape {
    let mut req = http.get(format!("{}/metrics", d.base));
    if token {
        req = req.bearer_auth(DASH_TOKEN);
    }
    let r = req.send().await.expect("metrics answer");
    assert_eq!(r.status(), 200);
    scrape(&r.text().await.expect("metrics text"))
}

/// Polls `/metrics` until `pred` holds.
async fn metrics_until(
    http: &reqwest::Client,
    d: &Daemon,
    token: bool,
    what: &str,
    pred: impl Fn(&prometheus_parse::Scrape) -> bool,
) -> prometheus_parse::Scrape {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let s = metrics(http, d, token).await;
        if pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed {what}:\n{}",
            d.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ready(http: &reqwest::Client, d: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let r = http
            .get(format!("{}/readyz", d.base))
            .send()
            .await
            .expect("readyz answers");
        if r.status() == 200 {
            return;
        }
        assert_eq!(r.status(), 503);
        assert!(Instant::now() < deadline, "never ready:\n{}", d.log_tail());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn cycles(s: &prometheus_parse::Scrape) -> f64 {
    value(s, "writeback_cycles_total", &[]).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_runs_groups_drift_and_metrics_behind_the_token() {
    let mut w = World::new("dash").await;
    let (u, u_ad) = w.synced_user("dash-u", "Dana Admin").await;
    let (_, u2) = w.synced_user("dash-v", "Hand Added").await;
    let cloud_only = w.cloud_user("dash-cloud-only").await;
    let name = "SG-Dash <Ops> & \"Co\" 🎉";
    let g = w.security_group(name, Some(true), None).await;
    w.add_member(&g, &u).await;
    w.add_member(&g, &cloud_only).await;
    let off = w.m365_group("M365-Dash-Off", Some(false), None).await;
    w.writeback_toml = "naming = \"display-name\"".into();
    w.write_config();
    let first = w.sync_ok();
    let first_run = first["run"].as_i64().expect("run id");
    let dn = first["groups"]
        .as_array()
        .and_then(|gs| gs.iter().find(|x| x["id"] == g.as_str()))
        .and_then(|x| x["ad_dn"].as_str())
        .expect("the group's DN")
        .to_string();

    let d = start_daemon(&mut w, "1s", true).await;
    let http = client();
    let mut seen = Seen::default();
    ready(&http, &d).await;
    let (st, _) = seen.get(&http, &format!("{}/healthz", d.base), false).await;
    assert_eq!(st, 200);
    let (st, _) = seen.get(&http, &format!("{}/readyz", d.base), false).await;
    assert_eq!(st, 200);

    // Without the token: the login form, nothing of the directory.
    for path in ["/", &format!("/groups/{g}"), &format!("/runs/{first_run}")] {
        let (st, body) = seen.get(&http, &format!("{}{path}", d.base), false).await;
        assert_eq!(st, 401, "{path} without the token");
        assert!(body.contains("Sign in"), "{body}");
        assert!(!body.contains("SG-Dash"), "{path} leaks: {body}");
    }
    let r = http
        .get(format!("{}/metrics", d.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "/metrics without the token");

    // The login form sets a session cookie (not the token); a wrong token gets none.
    let r = http
        .post(format!("{}/login", d.base))
        .form(&[("token", "not-the-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    let r = http
        .post(format!("{}/login", d.base))
        .form(&[("token", DASH_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie")
        .to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(!cookie.contains(DASH_TOKEN), "the cookie is not the token");
    let session = cookie.split(';').next().unwrap().to_string();
    let r = http
        .get(format!("{}/", d.base))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the session cookie opens the dashboard");

    // The overview: state, the groups with their decisions, the run history.
    let (st, main) = seen.get(&http, &format!("{}/", d.base), true).await;
    assert_eq!(st, 200, "{main}");
    for want in [
        "active",
        "Run history",
        "Sync now",
        &esc(name),
        &format!("/groups/{g}"),
        &format!("/runs/{first_run}"),
        "M365-Dash-Off",
        "not written back",
        "1 created",
    ] {
        assert!(main.contains(want), "overview lacks {want:?}:\n{main}");
    }
    assert!(!main.contains(name), "the name is escaped");
    assert!(main.contains(&format!("/groups/{off}")));

    // The first run in full: its create, with the DN and the reason.
    let (st, run) = seen
        .get(&http, &format!("{}/runs/{first_run}", d.base), true)
        .await;
    assert_eq!(st, 200, "{run}");
    for want in [
        "success",
        &format!("create {}", esc(&dn)),
        "reason",
        "1 created",
    ] {
        assert!(run.contains(want), "run page lacks {want:?}:\n{run}");
    }
    let (st, _) = seen
        .get(&http, &format!("{}/runs/999999", d.base), true)
        .await;
    assert_eq!(st, 404);

    // Counters move with a cycle.
    // (Ready may come from the one-shot sync's run in the store, before the daemon's first.)
    let before = metrics_until(&http, &d, true, "a cycle", |s| cycles(s) >= 1.0).await;
    let n = cycles(&before);
    let after = metrics_until(&http, &d, true, "another cycle", |s| cycles(s) > n).await;
    assert!(value(&after, "writeback_graph_requests_total", &[]).unwrap_or(0.0) >= 2.0);
    assert!(
        value(
            &after,
            "writeback_ldap_operations_total",
            &[("kind", "search")]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    assert_eq!(value(&after, "writeback_groups_in_scope", &[]), Some(1.0));
    assert_eq!(
        value(&after, "writeback_objects", &[("outcome", "written")]),
        Some(1.0)
    );
    assert!(value(&after, "writeback_lag_seconds", &[]).is_some());
    assert!(
        value(&after, "writeback_cycle_duration_seconds_count", &[]).is_some()
            || after
                .samples
                .iter()
                .any(|s| s.metric == "writeback_cycle_duration_seconds")
    );
    assert_eq!(
        value(&after, "writeback_drift_total", &[("kind", "member-added")]),
        Some(0.0)
    );

    // A member added by hand in AD: drift, put back, counted and shown.
    let mut ldap = w.ldap().await;
    let ad_dn = w.ad_group_of(&g).await.expect("written").dn;
    ldap.modify(
        &ad_dn,
        vec![Mod::Add("member", HashSet::from([u2.dn.as_str()]))],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    let drifted = metrics_until(&http, &d, true, "member-added drift", |s| {
        value(s, "writeback_drift_total", &[("kind", "member-added")]).unwrap_or(0.0) >= 1.0
    })
    .await;
    assert!(
        value(
            &drifted,
            "writeback_operations_total",
            &[("kind", "member-remove")]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    let (_, main) = seen.get(&http, &format!("{}/", d.base), true).await;
    assert!(main.contains("member-added"), "overview drift:\n{main}");

    // The group's page: decision and why, DN, members with their fates, drift.
    let (st, page) = seen
        .get(&http, &format!("{}/groups/{g}", d.base), true)
        .await;
    assert_eq!(st, 200, "{page}");
    for want in [
        esc(name),
        esc(&dn),
        "written back as universalSecurityGroup".to_string(),
        "writebackConfiguration".to_string(),
        "Dana Admin".to_string(),
        esc(&u_ad.dn),
        "cloud-only user".to_string(),
        "member-added".to_string(),
        esc(&u2.dn),
    ] {
        assert!(page.contains(&want), "group page lacks {want:?}:\n{page}");
    }
    let (st, _) = seen
        .get(&http, &format!("{}/groups/{off}", d.base), true)
        .await;
    assert_eq!(st, 200);
    let (st, _) = seen
        .get(&http, &format!("{}/groups/no-such-group", d.base), true)
        .await;
    assert_eq!(st, 404);

    // Every run listed renders; no page, header or metric carries a secret.
    let runs: Vec<String> = main
        .match_indices("href=\"/runs/")
        .map(|(i, _)| {
            main[i + 12..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect()
        })
        .collect::<HashSet<String>>()
        .into_iter()
        .collect();
    assert!(runs.len() >= 3, "{runs:?}");
    for id in runs {
        let (st, _) = seen
            .get(&http, &format!("{}/runs/{id}", d.base), true)
            .await;
        assert_eq!(st, 200);
    }
    let (_, _) = seen.get(&http, &format!("{}/metrics", d.base), true).await;
    let (_, _) = seen.get(&http, &format!("{}/login", d.base), false).await;
    for (url, text) in &seen.0 {
        for (what, secret) in [
            ("the Graph client secret", CLIENT_SECRET),
            ("the DC password", w.dc.password.as_str()),
            ("the dashboard token", DASH_TOKEN),
        ] {
            assert!(!text.contains(secret), "{url} shows {what}");
        }
    }
    let log = std::fs::read_to_string(&d.log).unwrap_or_default();
    assert!(
        !log.contains(DASH_TOKEN),
        "the log shows the dashboard token"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_now_runs_a_cycle_only_with_the_token() {
    let mut w = World::new("dash-sync").await;
    w.security_group("SG-Dash-Sync", Some(true), None).await;
    // One cycle an hour: any further cycle is the one "sync now" asked for.
    let d = start_daemon(&mut w, "1h", true).await;
    let http = client();
    ready(&http, &d).await;
    let s = metrics_until(&http, &d, true, "the first cycle", |s| cycles(s) >= 1.0).await;
    assert_eq!(cycles(&s), 1.0);

    let r = http.post(format!("{}/sync", d.base)).send().await.unwrap();
    assert_eq!(r.status(), 401, "sync now without the token");
    let r = http
        .post(format!("{}/sync", d.base))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "sync now with a wrong token");
    let r = http
        .post(format!("{}/sync", d.base))
        .bearer_auth(DASH_TOKEN)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "sync now from another site");

    let r = http
        .post(format!("{}/sync", d.base))
        .bearer_auth(DASH_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers().get("location").and_then(|v| v.to_str().ok()),
        Some("/?sync=requested")
    );
    let s = metrics_until(&http, &d, true, "the cycle sync now asked for", |s| {
        cycles(s) >= 2.0
    })
    .await;
    // Exactly one more: the refused requests started nothing.
    assert_eq!(cycles(&s), 2.0);
    let r = http
        .get(format!("{}/?sync=requested", d.base))
        .bearer_auth(DASH_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("Sync requested"));
}

// ---- a real browser ----

/// Debian's chromium: installed with apt when missing (as root), else a loud failure.
fn chromium() -> PathBuf {
    let which = |name: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
    };
    if let Some(p) = which("chromium") {
        return p;
    }
    let policy = Command::new("apt-cache")
        .args(["policy", "chromium"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if !policy.contains("Candidate:") || policy.contains("Candidate: (none)") {
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
    }
    let installed = Command::new("apt-get")
        .args([
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "chromium",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    match which("chromium") {
        Some(p) if installed => p,
        _ => panic!(
            "headless Chromium is needed for the dashboard's browser test and could not be \
             installed: run `apt-get install -y chromium` as root (scripts/test does)"
        ),
    }
}

fn headless(chromium: &Path, profile: &Path, extra: &[&str], url: &str) -> std::process::Output {
    Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium runs")
}

fn screenshot(chromium: &Path, profile: &Path, url: &str, file: &Path) {
    let _ = std::fs::remove_file(file);
    let out = headless(
        chromium,
        profile,
        &[&format!("--screenshot={}", file.display())],
        url,
    );
    let png = std::fs::read(file).unwrap_or_else(|e| {
        panic!(
            "no screenshot of {url} ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{url}: not a PNG");
    assert!(
        png.len() > 20_000,
        "{url}: a blank page? {} bytes",
        png.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_renders_the_overview_a_run_and_a_group() {
    let chromium = chromium();
    let mut w = World::new("dash-ui").await;
    let (a, _) = w.synced_user("ui-a", "Anna Álvarez").await;
    let (b, _) = w.synced_user("ui-b", "Ben Okafor").await;
    let c = w.cloud_user("ui-cloud-only").await;
    let fin = w
        .security_group("SG-NL-Finance-Department", Some(true), None)
        .await;
    for m in [&a, &b, &c] {
        w.add_member(&fin, m).await;
    }
    let sap = w.m365_group("DSG-AVD-PUBAPP-SAP", None, None).await;
    w.add_member(&sap, &a).await;
    w.security_group("SG-Not-Enabled", None, None).await;
    w.m365_group("M365 \"Marketing\" <EU>", Some(false), None)
        .await;
    // The daemon's own first cycle: its plan (every member's fate) is in its memory.
    let d = start_daemon(&mut w, "1s", false).await;
    let first = 1;
    let http = client();
    ready(&http, &d).await;

    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&out_dir).unwrap();
    let profile = w.dir.join("chromium-profile");
    let pages = [
        ("dashboard-main.png", format!("{}/", d.base)),
        ("dashboard-run.png", format!("{}/runs/{first}", d.base)),
        ("dashboard-group.png", format!("{}/groups/{fin}", d.base)),
    ];
    for (file, url) in &pages {
        screenshot(&chromium, &profile, url, &out_dir.join(file));
    }
    // What the browser built from the page (no JavaScript needed): the groups are there.
    let dom = headless(&chromium, &profile, &["--dump-dom"], &pages[0].1);
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("SG-NL-Finance-Department"), "{dom}");
    // (The DOM's serializer escapes `&`, `<`, `>` in text; quotes stay.)
    assert!(dom.contains("M365 \"Marketing\" &lt;EU&gt;"), "{dom}");
    // `WRITEBACK_SCREENSHOTS=docs` refreshes the README's pictures.
    if std::env::var("WRITEBACK_SCREENSHOTS").as_deref() == Ok("docs") {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs");
        for (file, _) in &pages {
            std::fs::copy(out_dir.join(file), docs.join(file)).expect("copy to docs/");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dashboard_address_that_cannot_be_bound_stops_the_daemon_naming_the_key() {
    let mut w = World::new("dash-busy").await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().unwrap().port();
    w.rules_toml = format!("\n[dashboard]\nlisten = \"127.0.0.1:{port}\"\n");
    w.write_config();
    let r = w.writeback(&["run"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("dashboard.listen"), "{}", r.stderr);
    drop(taken);
}
