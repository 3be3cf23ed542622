//! Benchmark: cloud change → visible in AD, with the daemon running (`writeback run`).
//! Makes LATENCY_CHANGES membership changes one after another (default 60), each timed
//! from the Graph write until an LDAP read shows it; prints p50 / p95 / max.
//! Run through `scripts/bench` (it starts the lab DC and builds the binaries).

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

#[tokio::main]
async fn main() {
    let changes: usize = std::env::var("LATENCY_CHANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let interval = std::env::var("LATENCY_INTERVAL").unwrap_or_else(|_| "2s".into());
    let mut w = World::new("latency").await;
    w.writeback_toml = format!("interval = \"{interval}\"");
    w.write_config();
    let g = w.security_group("SG-Latency", Some(true), None).await;
    let mut users = Vec::new();
    for i in 0..changes {
        users.push(
            w.synced_user(&format!("lat{i:03}"), &format!("Latency {i:03}"))
                .await,
        );
    }
    let profile = std::env::var("WRITEBACK_BIN_PROFILE").unwrap_or_else(|_| "debug".into());
    let mut daemon = Command::new(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../target")
            .join(profile)
            .join("writeback"),
    )
    .args(["run", "--config"])
    .arg(w.config_path())
    .env("WB_E2E_SECRET", CLIENT_SECRET)
    .env("WB_E2E_AD_PASSWORD", &w.dc.password)
    .env("WRITEBACK_LOG", "warn")
    .stdout(Stdio::null())
    .spawn()
    .expect("writeback run starts");

    let deadline = Instant::now() + Duration::from_secs(60);
    while w.ad_group_of(&g).await.is_none() {
        assert!(
            Instant::now() < deadline,
            "the daemon did not create the group"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dn = w.ad_group_of(&g).await.map(|x| x.dn).unwrap_or_default();
    let mut ldap = w.ldap().await;
    let mut lat = Vec::new();
    for (i, (id, u)) in users.iter().enumerate() {
        let t0 = Instant::now();
        w.add_member(&g, id).await;
        let want = u.dn.to_ascii_lowercase();
        loop {
            let (rs, _) = ldap
                .search(&dn, ldap3::Scope::Base, "(objectClass=*)", vec!["member"])
                .await
                .expect("search")
                .success()
                .expect("search ok");
            let e = ldap3::SearchEntry::construct(rs.into_iter().next().expect("group"));
            if e.attrs
                .get("member")
                .is_some_and(|m| m.iter().any(|x| x.to_ascii_lowercase() == want))
            {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "change {i} never arrived"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        lat.push(t0.elapsed());
        // spread the changes over the cycle so they do not all land just after one
        tokio::time::sleep(Duration::from_millis(137 * (i as u64 % 7))).await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();
    lat.sort();
    let pct = |p: f64| {
        lat[((lat.len() as f64 * p).ceil() as usize)
            .saturating_sub(1)
            .min(lat.len() - 1)]
    };
    println!(
        "latency cloud change → AD ({} changes, interval {interval}): p50 {:.2}s  p95 {:.2}s  max {:.2}s",
        lat.len(),
        pct(0.50).as_secs_f64(),
        pct(0.95).as_secs_f64(),
        lat[lat.len() - 1].as_secs_f64()
    );
}
