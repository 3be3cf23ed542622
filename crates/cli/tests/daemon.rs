//! End-to-end: the daemon (`writeback run`) carries a cloud change to AD on its own and
//! stops cleanly on SIGTERM; a sync killed in the middle of its export converges next time.

mod support;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

fn sigterm(pid: u32) {
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_carries_a_change_to_ad_and_stops_on_sigterm() {
    let mut w = World::new("daemon").await;
    w.writeback_toml = "interval = \"1s\"".into();
    w.write_config();
    let (u, u_ad) = w.synced_user("dm-u", "Daemon User").await;
    let g = w.security_group("SG-Daemon", Some(true), None).await;

    let mut child = Command::new(env!("CARGO_BIN_EXE_writeback"))
        .args(["run", "--config"])
        .arg(w.config_path())
        .env("WB_E2E_SECRET", CLIENT_SECRET)
        .env("WB_E2E_AD_PASSWORD", &w.dc.password)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    while w.ad_group_of(&g).await.is_none() {
        assert!(
            Instant::now() < deadline,
            "the daemon did not create the group"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    w.add_member(&g, &u).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if w.ad_group_of(&g).await.map(|x| x.member_set()) == Some(lower_sorted(&[&u_ad.dn])) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not carry the member"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sigterm(child.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sync_killed_during_its_export_converges_on_the_next_cycle() {
    let w = World::new("crash").await;
    let users = w.create_users("cr", 40).await;
    let mut cloud_users = Vec::new();
    for u in &users {
        let (st, v) = w
            .graph(
                "POST",
                "/v1.0/users",
                Some(serde_json::json!({
                    "displayName": u.sam, "userPrincipalName": format!("{}@lab.example.test", u.sam),
                    "accountEnabled": true, "mailNickname": u.sam,
                    "passwordProfile": {"password": "Passw0rd!x", "forceChangePasswordNextSignIn": false},
                    "onPremisesSyncEnabled": true, "onPremisesSecurityIdentifier": u.sid,
                })),
            )
            .await;
        assert_eq!(st, 201, "{v}");
        cloud_users.push(v["id"].as_str().unwrap().to_string());
    }
    let mut groups = Vec::new();
    for i in 0..150 {
        let g = w
            .security_group(&format!("SG-Crash-{i:03}"), Some(true), None)
            .await;
        for k in 0..(i % 7 + 1) {
            w.add_member(&g, &cloud_users[(i * 3 + k) % cloud_users.len()])
                .await;
        }
        groups.push(g);
    }

    let mut child = Command::new(env!("CARGO_BIN_EXE_writeback"))
        .args(["sync", "--config"])
        .arg(w.config_path())
        .env("WB_E2E_SECRET", CLIENT_SECRET)
        .env("WB_E2E_AD_PASSWORD", &w.dc.password)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once the export has started but before it has finished.
    let deadline = Instant::now() + Duration::from_secs(60);
    let partial = loop {
        let n = w.ad_groups().await.len();
        if n >= 10 {
            break n;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "sync finished before it could be killed"
        );
        assert!(Instant::now() < deadline, "the export did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let after_kill = w.ad_groups().await.len();
    assert!(
        after_kill < groups.len(),
        "killed too late to test anything ({after_kill} groups)"
    );
    assert!(partial <= after_kill);

    // The next cycle converges: exactly one AD group per cloud group, with the right
    // members, and a cycle after it has nothing left to do.
    w.sync_ok();
    let ad = w.ad_groups().await;
    assert_eq!(ad.len(), groups.len(), "no duplicates, none missing");
    for (i, g) in groups.iter().enumerate() {
        let x = ad
            .values()
            .find(|x| x.admin_description.as_deref() == Some(format!("Group_{g}").as_str()));
        let x = x.unwrap_or_else(|| panic!("group {i} missing"));
        let want: Vec<&str> = (0..(i % 7 + 1))
            .map(|k| users[(i * 3 + k) % users.len()].dn.as_str())
            .collect();
        let mut want = lower_sorted(&want);
        want.dedup();
        assert_eq!(x.member_set(), want, "members of group {i}");
    }
    let plan = w.writeback(&["plan", "--json"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert_eq!(
        plan.json()["operations"].as_array().unwrap().len(),
        0,
        "nothing left to do"
    );
}
