//! End-to-end: a cycle reads only what changed in AD (by USN), and still sees everything
//! that concerns it — a user that appears later, a group deleted by hand — while changes
//! elsewhere in the domain leave it quiet; another DC or a USN rollback reads AD in full.

mod support;
use ldap3::Mod;
use serde_json::json;
use std::collections::HashSet;
use std::process::Command;
use support::*;

/// `writeback ARGS` (exit 0 asserted) with info logs, each plan of what changed checked
/// against the full plan (`WRITEBACK_CHECK_INCREMENTAL`, as `World::writeback` does): its
/// output and its log.
fn run_logged(w: &World, args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_writeback"))
        .args(args)
        .arg("--config")
        .arg(w.config_path())
        .env("WB_E2E_SECRET", CLIENT_SECRET)
        .env("WB_E2E_AD_PASSWORD", &w.dc.password)
        .env("WRITEBACK_LOG", "writeback=info")
        .env("WRITEBACK_CHECK_INCREMENTAL", "1")
        .env("WRITEBACK_STORE_CHUNKED_FROM", "3")
        .output()
        .expect("writeback runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    (stdout, stderr)
}

/// `writeback sync --json` with info logs, to read how the AD image was brought up to date.
fn sync_logged(w: &World) -> (serde_json::Value, String) {
    let (stdout, log) = run_logged(w, &["sync", "--json"]);
    (
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}")),
        log,
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
    // Nobody changed the group by hand: the member is new to AD, not put back.
    assert_eq!(out["drift"], json!([]), "{out}");
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

/// The AD image the state keeps (by objectGUID: DN, members, anchor) equals what AD holds,
/// after cycles that create, rename, change members and delete — the image follows
/// writeback's own writes without reading them back.
#[tokio::test(flavor = "multi_thread")]
async fn the_kept_ad_image_follows_writebacks_own_writes_exactly() {
    let mut w = World::new("imagefollows").await;
    w.writeback_toml = "naming = \"display-name\"\ndelete_out_of_scope = true".into();
    w.write_config();
    let (a, _) = w.synced_user("imf-a", "Image A").await;
    let (b, _) = w.synced_user("imf-b", "Image B").await;
    let (c, _) = w.synced_user("imf-c", "Image C").await;
    let (d, _) = w.synced_user("imf-d", "Image D").await;
    let g1 = w.security_group("SG-Image-1", Some(true), None).await;
    let g2 = w.security_group("SG-Image-2", Some(true), None).await;
    w.add_member(&g1, &a).await;
    w.add_member(&g1, &c).await;
    w.add_member(&g1, &d).await;
    w.add_member(&g2, &g1).await;
    w.sync_ok();
    w.patch_group(&g1, json!({"displayName": "SG-Image-1-Renamed"}))
        .await;
    w.add_member(&g1, &b).await;
    w.remove_member(&g1, &a).await;
    w.sync_ok();
    w.patch_group(&g2, json!({"writebackConfiguration": {"isEnabled": false}}))
        .await;
    w.sync_ok();
    w.sync_ok();

    // Read as the next cycle reads it: with the tests' threshold (three members) SG-Image-1
    // keeps its members in chunk rows, SG-Image-2 in its row.
    let kept = wb_store::Store::open(&w.dir.join("state.db"))
        .expect("open state")
        .load_ad()
        .expect("read the AD image")
        .groups;
    let ad = w.ad_groups().await;
    assert_eq!(
        kept.len(),
        ad.len(),
        "same groups: {kept:#?} vs {:?}",
        ad.keys()
    );
    for g in ad.values() {
        let k = kept
            .iter()
            .find(|k| k.dn.eq_ignore_ascii_case(&g.dn))
            .unwrap_or_else(|| panic!("{} is in AD, not in the kept image: {kept:#?}", g.dn));
        let mut members: Vec<String> = k.members.iter().map(|m| m.to_ascii_lowercase()).collect();
        members.sort();
        assert_eq!(members, g.member_set(), "members of {}", g.dn);
        assert_eq!(k.admin_description, g.admin_description, "{}", g.dn);
    }
}

/// A cycle that plans one group keeps every other group's outcome: `status` still lists
/// them all, and the error of a group it did not plan is still the run's error.
#[tokio::test(flavor = "multi_thread")]
async fn a_cycle_planning_one_group_keeps_the_others_outcomes_and_errors() {
    let w = World::new("outcomes").await;
    let ok = w.security_group("SG-Outcome-Ok", Some(true), None).await;
    let bad = w
        .security_group(
            "SG-Outcome-Bad",
            Some(true),
            Some("universalDistributionGroup"),
        )
        .await;
    let (user, _) = w.synced_user("outcome.user", "Outcome User").await;
    let first = w.writeback(&["sync", "--json"]);
    let v = first.json();
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["group"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(names(&v), vec![bad.clone()], "{v}");

    // Only the good group changes: the cycle plans it alone.
    w.add_member(&ok, &user).await;
    let second = w.writeback(&["sync", "--json"]);
    assert_eq!(second.code, first.code, "{}", second.stderr);
    let v = second.json();
    assert_eq!(v["applied"]["member_adds"], 1, "{v}");
    assert_eq!(
        names(&v),
        vec![bad.clone()],
        "the untouched group's error is kept: {v}"
    );

    // And without --json (the cycle then reads only the outcomes with errors).
    let member = w.synced_user("outcome.user2", "Outcome User 2").await.0;
    w.add_member(&ok, &member).await;
    let third = w.writeback(&["sync"]);
    assert_eq!(third.code, first.code, "{}", third.stderr);
    assert!(
        third.stdout.contains("SG-Outcome-Bad"),
        "the untouched group's error is shown: {}",
        third.stdout
    );

    let status = w.writeback(&["status", "--json"]).json();
    let ids: Vec<&str> = status["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["id"].as_str())
        .collect();
    assert!(
        ids.contains(&ok.as_str()) && ids.contains(&bad.as_str()),
        "{status}"
    );
    let good = status["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["id"] == ok.as_str())
        .expect("the good group");
    assert_eq!(good["member_count"], 2, "{good}");
}

/// The LDAP searches and writes of the `cycle finished` log line.
fn cycle_counts(log: &str) -> (u64, u64) {
    let line = log
        .lines()
        .find(|l| l.contains("cycle finished"))
        .unwrap_or_else(|| panic!("no cycle line: {log}"));
    let field = |name: &str| -> u64 {
        let at = line
            .find(&format!("{name}="))
            .unwrap_or_else(|| panic!("{name} in {line}"));
        line[at + name.len() + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .expect("a number")
    };
    (field("ldap_searches"), field("ldap_writes"))
}

/// Groups created are joined by the objectGUID and objectSid the DC gave them, read back
/// together after the creates: a create costs one LDAP add and no read, however many
/// groups a cycle creates — nested groups created in the same cycle included.
#[tokio::test(flavor = "multi_thread")]
async fn created_groups_are_joined_by_their_identity_read_back_after_the_creates() {
    let w = World::new("readback").await;
    let (user, _) = w.synced_user("rb.user", "Readback User").await;
    // A first cycle with one group, then one with eight more (one nesting another, both
    // new): the second reads no more than the first.
    let first = w.security_group("SG-Readback-0", Some(true), None).await;
    w.add_member(&first, &user).await;
    let (_, log) = sync_logged(&w);
    let (searches_one, writes_one) = cycle_counts(&log);
    assert_eq!(writes_one, 1, "{log}");
    let mut ids = vec![first];
    for i in 1..9 {
        let g = w
            .security_group(&format!("SG-Readback-{i}"), Some(true), None)
            .await;
        w.add_member(&g, &user).await;
        ids.push(g);
    }
    w.add_member(&ids[1], &ids[2]).await;
    let (out, log) = sync_logged(&w);
    assert_eq!(out["applied"]["creates"], 8, "{out}");
    assert!(
        out["errors"].as_array().is_none_or(|e| e.is_empty()),
        "{out}"
    );
    let (searches_many, writes_many) = cycle_counts(&log);
    // Eight adds, and the nested member added once the child exists.
    assert_eq!(writes_many, 9, "{log}");
    assert!(
        searches_many <= searches_one + 1,
        "8 creates read {searches_many} times, 1 create {searches_one}: {log}"
    );

    // Each join is the object AD holds for the group.
    let db = rusqlite::Connection::open(w.dir.join("state.db")).expect("open state");
    let mut stmt = db
        .prepare("SELECT group_id, guid, sid, dn FROM joins")
        .expect("prepare");
    let joins: Vec<(String, String, Option<String>, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();
    assert_eq!(joins.len(), ids.len(), "{joins:?}");
    for id in &ids {
        let ad = w.ad_group_of(id).await.expect("written");
        let (_, guid, sid, dn) = joins
            .iter()
            .find(|j| j.0 == *id)
            .unwrap_or_else(|| panic!("no join for {id}: {joins:?}"));
        assert_eq!(
            Some(guid.to_ascii_lowercase()),
            wb_ad::values::guid_text(&ad.guid).map(|g| g.to_ascii_lowercase()),
            "{id}"
        );
        assert_eq!(sid.as_deref(), Some(sid_text(&ad.sid).as_str()), "{id}");
        assert!(dn.eq_ignore_ascii_case(&ad.dn), "{dn} vs {}", ad.dn);
    }
    let child = w.ad_group_of(&ids[2]).await.expect("child");
    assert_eq!(
        w.ad_group_of(&ids[1]).await.expect("parent").member_set(),
        lower_sorted(&[&child.dn, &w.ad_group_of(&ids[0]).await.unwrap().members[0]])
    );
    // Converged: nothing left to write, nothing read back by the next cycle.
    assert_eq!(w.sync_ok()["ldapWrites"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_in_and_one_out_of_a_group_are_planned_from_that_delta() {
    let w = World::new("memdelta").await;
    let g = w.security_group("SG-MemberDelta", Some(true), None).await;
    let mut users = Vec::new();
    for n in 0..4 {
        users.push(
            w.synced_user(&format!("md{n}"), &format!("Delta User {n}"))
                .await,
        );
    }
    for (id, _) in &users[..3] {
        w.add_member(&g, id).await;
    }
    w.sync_ok();
    w.sync_ok();

    // One user in, one out: the group is planned from those two alone.
    w.add_member(&g, &users[3].0).await;
    w.remove_member(&g, &users[0].0).await;
    // `sync` as an administrator runs it.
    let (_, log) = run_logged(&w, &["sync"]);
    assert!(log.contains("from_member_delta=1"), "{log}");
    assert_eq!(
        w.ad_group_of(&g).await.expect("written").member_set(),
        lower_sorted(&[&users[1].1.dn, &users[2].1.dn, &users[3].1.dn])
    );

    // A member added by hand meanwhile: that group is planned in full, and put back.
    let hand = w.synced_user("mdhand", "Delta Hand").await;
    let dn = w.ad_group_of(&g).await.expect("written").dn;
    let mut ldap = w.ldap().await;
    ldap.modify(
        &dn,
        vec![Mod::Add("member", HashSet::from([hand.1.dn.as_str()]))],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    w.remove_member(&g, &users[1].0).await;
    let (_, log) = run_logged(&w, &["sync"]);
    assert!(log.contains("from_member_delta=0"), "{log}");
    assert_eq!(
        w.ad_group_of(&g).await.expect("written").member_set(),
        lower_sorted(&[&users[2].1.dn, &users[3].1.dn])
    );
}
