//! End-to-end: what writeback must never do — touch what it does not own, delete en masse
//! without being told, write in staging — and how it reports bad input.

mod support;
use ldap3::Mod;
use serde_json::json;
use std::collections::HashSet;
use support::*;

async fn permanently_delete(w: &World, id: &str) {
    let (st, v) = w.graph("DELETE", &format!("/v1.0/groups/{id}"), None).await;
    assert_eq!(st, 204, "{v}");
    let (st, v) = w
        .graph(
            "DELETE",
            &format!("/v1.0/directory/deletedItems/{id}"),
            None,
        )
        .await;
    assert_eq!(st, 204, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn mass_group_delete_over_the_threshold_stops_until_allowed() {
    let mut w = World::new("thresh").await;
    w.writeback_toml = "delete_threshold = 1".into();
    w.write_config();
    let a = w.security_group("SG-Thresh-A", Some(true), None).await;
    let b = w.security_group("SG-Thresh-B", Some(true), None).await;
    w.sync_ok();
    permanently_delete(&w, &a).await;
    permanently_delete(&w, &b).await;

    let out = w.sync_expect(4, &[]);
    assert_eq!(out["status"], "stopped-by-threshold");
    assert!(out["message"].as_str().unwrap().contains("--allow-deletes"));
    assert!(
        w.ad_group_of(&a).await.is_some() && w.ad_group_of(&b).await.is_some(),
        "nothing deleted"
    );
    let runs = w.writeback(&["runs", "--json"]).json();
    assert_eq!(runs[0]["status"], "stopped-by-threshold");

    let out = w.sync_expect(0, &["--allow-deletes"]);
    assert_eq!(out["applied"]["deletes"], 2);
    assert!(w.ad_group_of(&a).await.is_none() && w.ad_group_of(&b).await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn mass_member_removal_over_the_threshold_stops_until_allowed() {
    let mut w = World::new("mthresh").await;
    w.writeback_toml = "member_removal_threshold = 2".into();
    w.write_config();
    let g = w.security_group("SG-MThresh", Some(true), None).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let (id, _) = w
            .synced_user(&format!("mt-{i}"), &format!("MThresh {i}"))
            .await;
        w.add_member(&g, &id).await;
        ids.push(id);
    }
    w.sync_ok();
    for id in &ids {
        w.remove_member(&g, id).await;
    }
    let out = w.sync_expect(4, &[]);
    assert_eq!(out["heldBack"]["member_removes"], 3);
    assert_eq!(w.ad_group_of(&g).await.unwrap().members.len(), 3);
    w.sync_expect(0, &["--allow-deletes"]);
    assert_eq!(w.ad_group_of(&g).await.unwrap().members.len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn staging_writes_nothing_and_records_what_it_would_export() {
    let mut w = World::new("staging").await;
    let kept = w
        .security_group("SG-Staging-Existing", Some(true), None)
        .await;
    let (u1, _) = w.synced_user("st-a", "Staging A").await;
    let (u2, _) = w.synced_user("st-b", "Staging B").await;
    w.add_member(&kept, &u1).await;
    w.sync_ok();
    let before = w.ad_groups().await;
    let stamps = w.change_stamps().await;
    w.writeback_toml = "staging = true".into();
    w.write_config();
    let g = w.security_group("SG-Staging-New", Some(true), None).await;
    w.add_member(&g, &u1).await;
    w.patch_group(&kept, json!({"displayName": "SG-Staging-Renamed"}))
        .await;
    w.remove_member(&kept, &u1).await;
    w.add_member(&kept, &u2).await;
    let out = w.sync_ok();
    assert_eq!(out["status"], "staging");
    assert_eq!(out["ldapWrites"], 0);
    // Every object under the test's OU (groups, users, OUs): not one change.
    assert_eq!(
        stamps,
        w.change_stamps().await,
        "staging changed the directory"
    );
    let after = w.ad_groups().await;
    assert_eq!(before.len(), after.len());
    for (cn, g) in &before {
        assert_eq!(
            g.usn_changed, after[cn].usn_changed,
            "{cn} changed in staging"
        );
    }
    assert!(w.ad_group_of(&g).await.is_none());
    let run = out["run"].as_i64().unwrap();
    let shown = w.writeback(&["show", &run.to_string(), "--json"]).json();
    let ops = shown["plan"]["operations"].as_array().unwrap();
    assert!(
        ops.iter()
            .any(|o| o["op"] == "create" && o["group"] == g.as_str()),
        "{shown}"
    );

    // Switching to active: no re-import needed, the next cycle exports.
    w.writeback_toml = String::new();
    w.write_config();
    w.sync_ok();
    assert!(w.ad_group_of(&g).await.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn decoys_in_and_around_the_managed_ou_are_never_touched() {
    let mut w = World::new("decoys").await;
    let (u, u_ad) = w.synced_user("dc-u", "Decoy User").await;
    let disabled = w
        .security_group("SG-Decoy-Disabled", Some(false), None)
        .await;
    let g = w.security_group("SG-Real", Some(true), None).await;
    w.add_member(&g, &u).await;

    // (1) in the OU, no anchor; (2) a forged anchor outside the OU; (3) an anchor naming a
    // group that is not written back.
    let t = wb_model::GROUP_TYPE_GLOBAL | wb_model::GROUP_TYPE_SECURITY;
    let d1 = w.dc.create_group(&w.groups_ou, "Decoy-No-Anchor", t).await;
    let d2 = w.dc.create_group(&w.people_ou, "Decoy-Outside", t).await;
    let d3 =
        w.dc.create_group(&w.groups_ou, "Decoy-Not-In-Scope", t)
            .await;
    let mut ldap = w.ldap().await;
    let anchor_g = format!("Group_{g}");
    let anchor_d = format!("Group_{disabled}");
    ldap.modify(
        &d2.dn,
        vec![Mod::Replace(
            "adminDescription",
            HashSet::from([anchor_g.as_str()]),
        )],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    ldap.modify(
        &d3.dn,
        vec![Mod::Replace(
            "adminDescription",
            HashSet::from([anchor_d.as_str()]),
        )],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    for d in [&d1, &d3] {
        ldap.modify(
            &d.dn,
            vec![Mod::Add("member", HashSet::from([u_ad.dn.as_str()]))],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    }
    let snapshot = |all: &std::collections::BTreeMap<String, AdView>| {
        ["Decoy-No-Anchor", "Decoy-Outside", "Decoy-Not-In-Scope"]
            .iter()
            .map(|cn| {
                (
                    all[*cn].usn_changed.clone(),
                    all[*cn].member_set(),
                    all[*cn].group_type,
                )
            })
            .collect::<Vec<_>>()
    };
    let before = snapshot(&w.ad_groups().await);

    w.writeback_toml = "delete_out_of_scope = true".into();
    w.write_config();
    for round in 0..4 {
        let r = w.writeback(&["sync", "--json", "--allow-deletes"]);
        assert_eq!(r.code, 0, "round {round}: {}\n{}", r.stdout, r.stderr);
        // churn
        w.patch_group(&g, json!({"displayName": format!("SG-Real-{round}")}))
            .await;
        if round == 1 {
            w.remove_member(&g, &u).await;
        }
        if round == 2 {
            w.add_member(&g, &u).await;
        }
    }
    let out = w.sync_ok();
    let foreign = out["foreign"].as_array().unwrap();
    assert!(foreign
        .iter()
        .any(|f| f["dn"].as_str().unwrap().contains("Decoy-No-Anchor")));
    assert!(foreign
        .iter()
        .any(|f| f["dn"].as_str().unwrap().contains("Decoy-Not-In-Scope")));
    assert_eq!(before, snapshot(&w.ad_groups().await), "decoys changed");
}

#[test]
fn a_config_mistake_exits_2_and_names_the_key() {
    let dir = std::env::temp_dir().join(format!("wb-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("writeback.toml");
    std::fs::write(
        &cfg,
        r#"
[graph]
tenant = "t"
client_id = "c"
client_secret = "s"
[ad]
url = "ldap://127.0.0.1"
bind_dn = "CN=a,DC=x"
password = "p"
base_dn = "DC=x"
ou = "OU=g,DC=x"
[writeback]
delete_threshold = "many"
"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_writeback"))
        .args(["sync", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("writeback.delete_threshold"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_exit_3_and_say_who_refused() {
    let w = World::new("creds").await;
    let r = std::process::Command::new(env!("CARGO_BIN_EXE_writeback"))
        .args(["sync", "--config"])
        .arg(w.config_path())
        .env("WB_E2E_SECRET", "wrong-secret")
        .env("WB_E2E_AD_PASSWORD", &w.dc.password)
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(3));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("AADSTS"), "Graph's words are shown: {err}");
    assert!(!err.contains("wrong-secret"), "secrets are never printed");

    let r = std::process::Command::new(env!("CARGO_BIN_EXE_writeback"))
        .args(["sync", "--config"])
        .arg(w.config_path())
        .env("WB_E2E_SECRET", CLIENT_SECRET)
        .env("WB_E2E_AD_PASSWORD", "wrong-password")
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(3));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("49"), "the LDAP result code is shown: {err}");
    assert!(!err.contains("wrong-password"));
}
