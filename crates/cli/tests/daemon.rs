//! End-to-end: the daemon (`writeback run`) carries a cloud change to AD on its own and
//! stops cleanly on SIGTERM; a sync killed in the middle of its export converges next time.

mod support;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// `writeback VERB --config …` for world `w`, with its secrets; stdout discarded.
fn writeback(w: &World, verb: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_writeback"));
    cmd.args([verb, "--config"])
        .arg(w.config_path())
        .env("WB_E2E_SECRET", CLIENT_SECRET)
        .env("WB_E2E_AD_PASSWORD", &w.dc.password)
        .stdout(Stdio::null());
    cmd
}

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

    let mut daemon = KillOnDrop(writeback(&w, "run").stderr(Stdio::null()).spawn().unwrap());
    let child = &mut daemon.0;

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

    let mut child = writeback(&w, "sync").stderr(Stdio::null()).spawn().unwrap();
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

/// A daemon stopped when the test ends, whatever way it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (up to 30 s) until `done` holds, failing with `what` and the daemon's log.
async fn until<F, Fut>(child: &mut std::process::Child, log: &std::path::Path, what: &str, done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        let exited = child.try_wait().unwrap();
        if exited.is_some() || Instant::now() >= deadline {
            panic!(
                "{what}: not seen (daemon exited: {exited:?}); its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A daemon keeps its cloud image (and a spare copy it imports into), its AD image and its
/// plan from cycle to cycle, and plans only what changed. With WRITEBACK_CHECK_INCREMENTAL
/// each cycle checks both against the slow way (a full plan; the spare copy equal to the
/// image), so any kind of change it misses makes it fail.
#[tokio::test(flavor = "multi_thread")]
async fn the_daemons_kept_images_follow_every_kind_of_change() {
    let mut w = World::new("daemon-follow").await;
    w.writeback_toml = "interval = \"1s\"\ndelete_out_of_scope = true".into();
    w.write_config();
    let (u1, u1_ad) = w.synced_user("df-u1", "Follow One").await;
    let (u2, u2_ad) = w.synced_user("df-u2", "Follow Two").await;
    let g1 = w.security_group("SG-Follow-1", Some(true), None).await;
    let g2 = w.security_group("SG-Follow-2", Some(true), None).await;
    w.add_member(&g1, &u1).await;
    let log = w.dir.join("daemon-follow.log");
    let mut daemon = KillOnDrop(
        writeback(&w, "run")
            .env("WRITEBACK_CHECK_INCREMENTAL", "1")
            .env("WRITEBACK_STORE_CHUNKED_FROM", "3")
            .env("WRITEBACK_LOG", "writeback=info")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let child = &mut daemon.0;
    let members = |g: String| {
        let w = &w;
        async move { w.ad_group_of(&g).await.map(|x| x.member_set()) }
    };

    until(child, &log, "both groups written", || async {
        members(g1.clone()).await == Some(lower_sorted(&[&u1_ad.dn]))
            && w.ad_group_of(&g2).await.is_some()
    })
    .await;
    // A member added, then one removed (group rounds).
    w.add_member(&g1, &u2).await;
    until(child, &log, "member added", || async {
        members(g1.clone()).await == Some(lower_sorted(&[&u1_ad.dn, &u2_ad.dn]))
    })
    .await;
    w.remove_member(&g1, &u1).await;
    until(child, &log, "member removed", || async {
        members(g1.clone()).await == Some(lower_sorted(&[&u2_ad.dn]))
    })
    .await;
    // A rename (a group's properties).
    w.patch_group(&g2, serde_json::json!({"displayName": "SG-Follow-Renamed"}))
        .await;
    until(child, &log, "rename", || async {
        w.ad_group_of(&g2)
            .await
            .and_then(|x| x.display_name)
            .as_deref()
            == Some("SG-Follow-Renamed")
    })
    .await;
    // Users created and changed (user rounds; a cloud-only user is not written), then a
    // change that needs the image to have followed them.
    let c = w.cloud_user(&format!("dfc{}", &rand_suffix()[..6])).await;
    let (st, v) = w
        .graph(
            "PATCH",
            &format!("/v1.0/users/{c}"),
            Some(serde_json::json!({"displayName": "Follow Cloud Renamed"})),
        )
        .await;
    assert_eq!(st, 204, "{v}");
    w.add_member(&g2, &c).await;
    w.add_member(&g2, &u1).await;
    until(child, &log, "member of the renamed group", || async {
        members(g2.clone()).await == Some(lower_sorted(&[&u1_ad.dn]))
    })
    .await;
    // A new group, and writeback turned off for another (its AD group deleted: SPEC §6,
    // delete_out_of_scope).
    let g3 = w.security_group("SG-Follow-3", Some(true), None).await;
    w.add_member(&g3, &u2).await;
    w.patch_group(
        &g1,
        serde_json::json!({"writebackConfiguration": {"isEnabled": false}}),
    )
    .await;
    until(
        child,
        &log,
        "new group written, disabled one deleted",
        || async {
            members(g3.clone()).await == Some(lower_sorted(&[&u2_ad.dn]))
                && w.ad_group_of(&g1).await.is_none()
        },
    )
    .await;

    assert!(
        child.try_wait().unwrap().is_none(),
        "the daemon stopped: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    sigterm(child.id());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains("panicked"), "{text}");
    // What it left is what a fresh one-shot plan finds: nothing to do.
    let plan = w.writeback(&["plan", "--json"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert_eq!(
        plan.json()["operations"].as_array().map(Vec::len),
        Some(0),
        "{}",
        plan.stdout
    );
}
