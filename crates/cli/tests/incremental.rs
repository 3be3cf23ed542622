//! End-to-end: a cycle reads only what changed in AD (by USN), and still sees everything
//! that concerns it — a user that appears later, a group deleted by hand — while changes
//! elsewhere in the domain leave it quiet; another DC or a USN rollback reads AD in full.

mod support;
use serde_json::json;
use std::process::Command;
use support::*;

/// `writeback sync --json` with info logs, to read how the AD image was brought up to date.
fn sync_logged(w: &World) -> (serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_writeback"))
        .args(["sync", "--json", "--config"])
        .arg(w.config_path())
        .env("WB_E2E_SECRET", CLIENT_SECRET)
        .env("WB_E2E_AD_PASSWORD", &w.dc.password)
        .env("WRITEBACK_LOG", "writeback=info")
        .output()
        .expect("sync runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    (
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}")),
        stderr,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_appearing_in_ad_later_is_written_by_the_next_cycle() {
    let w = World::new("appears").await;
    let g = w.security_group("SG-Appears", Some(true), None).await;
    let later_dn = format!("CN=Appears Later,{}", w.people_ou);
    // Synced in the cloud, known by its DN, not (yet) in AD.
    let (st, v) = w
        .graph_with(
            "POST",
            "/v1.0/users",
            Some(json!({
                "displayName": "Appears Later",
                "userPrincipalName": "appears.later@lab.example.test",
                "accountEnabled": true,
                "mailNickname": "appearslater",
                "passwordProfile": {"password": "Passw0rd!x", "forceChangePasswordNextSignIn": false},
                "onPremisesSyncEnabled": true,
                "onPremisesDistinguishedName": later_dn,
            })),
            &[],
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let user = v["id"].as_str().expect("id").to_string();
    w.add_member(&g, &user).await;
    w.sync_ok();
    assert!(w.ad_group_of(&g).await.expect("written").members.is_empty());

    // The account appears in AD; nothing changes in the cloud.
    let sam = format!("appears{}", &uuid_suffix()[..6]);
    let created = w.dc.create_user(&w.people_ou, &sam, "Appears Later").await;
    let (out, log) = sync_logged(&w);
    assert_eq!(out["applied"]["member_adds"], 1, "{out}\n{log}");
    assert!(
        log.contains("AD changes since USN"),
        "incremental, not a full read: {log}"
    );
    assert_eq!(
        w.ad_group_of(&g).await.expect("written").member_set(),
        lower_sorted(&[&created.dn])
    );
}

fn uuid_suffix() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
    .chars()
    .rev()
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_elsewhere_in_the_domain_leave_a_cycle_quiet() {
    let w = World::new("elsewhere").await;
    let g = w.security_group("SG-Elsewhere", Some(true), None).await;
    w.sync_ok();
    assert!(w.ad_group_of(&g).await.is_some());
    w.sync_ok();
    // Someone creates a user and a group outside the managed OUs.
    let other = format!("OU=Other,{}", w.root_ou);
    w.dc.create_ou(&other).await;
    w.dc.create_user(
        &other,
        &format!("else{}", &uuid_suffix()[..6]),
        "Someone Else",
    )
    .await;
    w.dc.create_group(
        &other,
        &format!("Else-{}", &uuid_suffix()[..6]),
        -2147483640,
    )
    .await;
    let out = w.sync_ok();
    assert_eq!(
        out["message"], "no change in the cloud or in the managed OUs",
        "quiet: {out}"
    );
    assert!(out["graphRequests"].as_u64().unwrap() <= 2, "{out}");
    assert_eq!(out["ldapWrites"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_deleted_by_hand_is_recreated_by_the_next_incremental_cycle() {
    let w = World::new("delhand").await;
    let g = w.security_group("SG-DelHand", Some(true), None).await;
    w.sync_ok();
    w.sync_ok();
    let before = w.ad_group_of(&g).await.expect("written");
    let mut ldap = w.ldap().await;
    ldap.delete(&before.dn)
        .await
        .expect("delete")
        .success()
        .expect("deleted");
    let (out, log) = sync_logged(&w);
    assert!(log.contains("AD changes since USN"), "incremental: {log}");
    assert_eq!(out["applied"]["creates"], 1, "{out}");
    let after = w.ad_group_of(&g).await.expect("re-created");
    assert_ne!(after.sid, before.sid, "a new object (new SID), reported");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_usn_rollback_or_another_dc_reads_ad_in_full() {
    let w = World::new("rollback").await;
    let g = w.security_group("SG-Rollback", Some(true), None).await;
    w.sync_ok();
    // The stored image claims a USN far ahead of the DC's: as after a restore or a
    // failover to a DC that has not seen those changes.
    let db = rusqlite::Connection::open(w.dir.join("state.db")).expect("open state");
    db.execute(
        "UPDATE meta SET value = json_set(value, '$.dc.highest_usn', 999999999) WHERE key = 'ad_image'",
        [],
    )
    .expect("tamper");
    drop(db);
    // A change by hand that the USN chain would not show from there.
    let ad = w.ad_group_of(&g).await.expect("written");
    let mut ldap = w.ldap().await;
    ldap.modify(
        &ad.dn,
        vec![ldap3::Mod::Replace(
            "description",
            std::collections::HashSet::from(["by hand"]),
        )],
    )
    .await
    .expect("modify")
    .success()
    .expect("modified");
    let (out, log) = sync_logged(&w);
    assert!(log.contains("reading AD in full"), "{log}");
    assert_eq!(
        out["applied"]["modifies"], 1,
        "the hand change is put back: {out}"
    );
    assert_eq!(w.ad_group_of(&g).await.expect("kept").description, None);
}
