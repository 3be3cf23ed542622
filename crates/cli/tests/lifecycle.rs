//! End-to-end: a group's whole life (SPEC §6) from one delta cycle to the next, and drift
//! made by hand in AD, checked by LDAP reads and the run history.

mod support;
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn membership_changes_flow_in_delta_cycles() {
    let w = World::new("members").await;
    let (a, a_ad) = w.synced_user("m-a", "Member A").await;
    let (b, b_ad) = w.synced_user("m-b", "Member B").await;
    let g = w.security_group("SG-Members", Some(true), None).await;
    w.add_member(&g, &a).await;
    let first = w.sync_ok();
    assert_eq!(first["mode"], "full");
    assert_eq!(
        w.ad_group_of(&g).await.unwrap().member_set(),
        lower_sorted(&[&a_ad.dn])
    );

    w.add_member(&g, &b).await;
    w.remove_member(&g, &a).await;
    let out = w.sync_ok();
    assert_eq!(out["mode"], "delta");
    assert_eq!(out["applied"]["member_adds"], 1);
    assert_eq!(out["applied"]["member_removes"], 1);
    assert_eq!(
        w.ad_group_of(&g).await.unwrap().member_set(),
        lower_sorted(&[&b_ad.dn])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_no_change_cycle_costs_at_most_two_graph_requests_and_no_writes() {
    let w = World::new("nochange").await;
    let g = w.security_group("SG-Quiet", Some(true), None).await;
    w.sync_ok();
    assert!(w.ad_group_of(&g).await.is_some());
    let out = w.sync_ok();
    assert_eq!(out["ldapWrites"], 0);
    assert!(out["graphRequests"].as_u64().unwrap() <= 2, "{out}");
    assert_eq!(
        out["message"], "no change in the cloud or in the managed OUs",
        "a quiet cycle"
    );
    assert!(
        out["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == g.as_str()),
        "a quiet cycle still reports every group's outcome: {out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configuration_change_alone_is_acted_on_by_the_next_cycle() {
    let mut w = World::new("cfgchange").await;
    let g = w.security_group("SG-Cfg-Later", None, None).await;
    w.sync_ok();
    assert!(w.ad_group_of(&g).await.is_none());
    w.sync_ok(); // quiet
    w.rules_toml =
        "[[writeback.rule]]\nmatch = { name_prefix = \"SG-Cfg-\" }\nenable = true\n".into();
    w.write_config();
    let out = w.sync_ok();
    assert_eq!(out["applied"]["creates"], 1, "{out}");
    assert!(w.ad_group_of(&g).await.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn disabling_writeback_orphans_the_group_and_delete_out_of_scope_deletes_it() {
    let mut w = World::new("disable").await;
    let g = w.security_group("SG-Disable", Some(true), None).await;
    w.sync_ok();
    let before = w.ad_group_of(&g).await.expect("written");

    w.patch_group(&g, json!({"writebackConfiguration": {"isEnabled": false}}))
        .await;
    w.patch_group(&g, json!({"displayName": "SG-Disabled-Renamed"}))
        .await;
    let out = w.sync_ok();
    let kept = w
        .ad_group_of(&g)
        .await
        .expect("kept when writeback is switched off");
    assert_eq!(kept.guid, before.guid);
    assert_eq!(
        kept.display_name.as_deref(),
        Some("SG-Disable"),
        "orphans are no longer updated"
    );
    let outcome = outcome_of(&out, &g);
    assert_eq!(outcome["ad_state"], "orphaned");
    let status = w.writeback(&["status", "--json"]);
    assert_eq!(status.code, 0);
    assert!(status.json()["orphaned"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["id"] == g.as_str()));

    w.writeback_toml = "delete_out_of_scope = true".into();
    w.write_config();
    let out = w.sync_ok();
    assert_eq!(out["applied"]["deletes"], 1);
    assert!(w.ad_group_of(&g).await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn soft_delete_keeps_restore_resumes_permanent_delete_deletes() {
    let w = World::new("softdel").await;
    let (a, a_ad) = w.synced_user("sd-a", "Soft A").await;
    let g = w.security_group("SG-SoftDelete", Some(true), None).await;
    w.sync_ok();
    let created = w.ad_group_of(&g).await.expect("written");

    let (st, v) = w.graph("DELETE", &format!("/v1.0/groups/{g}"), None).await;
    assert_eq!(st, 204, "{v}");
    w.sync_ok();
    assert_eq!(
        w.ad_group_of(&g)
            .await
            .expect("kept while soft-deleted")
            .guid,
        created.guid
    );

    let (st, v) = w
        .graph(
            "POST",
            &format!("/v1.0/directory/deletedItems/{g}/restore"),
            None,
        )
        .await;
    assert!(st == 200 || st == 201, "{st} {v}");
    w.add_member(&g, &a).await;
    w.sync_ok();
    let restored = w.ad_group_of(&g).await.expect("still there");
    assert_eq!(
        restored.guid, created.guid,
        "updates resume on the same AD object"
    );
    assert_eq!(restored.member_set(), lower_sorted(&[&a_ad.dn]));

    let (st, _) = w.graph("DELETE", &format!("/v1.0/groups/{g}"), None).await;
    assert_eq!(st, 204);
    let (st, v) = w
        .graph("DELETE", &format!("/v1.0/directory/deletedItems/{g}"), None)
        .await;
    assert_eq!(st, 204, "{v}");
    let out = w.sync_ok();
    assert_eq!(out["applied"]["deletes"], 1);
    assert!(
        w.ad_group_of(&g).await.is_none(),
        "permanently deleted in the cloud → deleted in AD"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_made_by_hand_is_put_back() {
    use ldap3::Mod;
    use std::collections::HashSet;
    let w = World::new("drift").await;
    let (a, a_ad) = w.synced_user("d-a", "Drift A").await;
    let (_b, b_ad) = w.synced_user("d-b", "Drift B").await;
    let g = w.security_group("SG-Drift", Some(true), None).await;
    w.add_member(&g, &a).await;
    w.sync_ok();
    let ad = w.ad_group_of(&g).await.unwrap();

    let mut ldap = w.ldap().await;
    // a member added by hand, the cloud member removed by hand, the type changed to global
    ldap.modify(
        &ad.dn,
        vec![Mod::Add("member", HashSet::from([b_ad.dn.as_str()]))],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    ldap.modify(
        &ad.dn,
        vec![Mod::Delete("member", HashSet::from([a_ad.dn.as_str()]))],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    ldap.modify(
        &ad.dn,
        vec![Mod::Replace("groupType", HashSet::from(["-2147483646"]))],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    ldap.modify(
        &ad.dn,
        vec![Mod::Replace("displayName", HashSet::from(["hand edited"]))],
    )
    .await
    .unwrap()
    .success()
    .unwrap();

    let out = w.sync_ok();
    let after = w.ad_group_of(&g).await.unwrap();
    assert_eq!(
        after.member_set(),
        lower_sorted(&[&a_ad.dn]),
        "membership is authoritative from the cloud"
    );
    assert_eq!(after.group_type, -2147483640, "scope put back to universal");
    assert_eq!(after.display_name.as_deref(), Some("SG-Drift"));
    let outcome = outcome_of(&out, &g);
    assert!(
        !outcome["drift"].as_array().unwrap().is_empty(),
        "drift is reported: {outcome}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_deleted_by_hand_in_ad_is_created_again() {
    let w = World::new("handdel").await;
    let g = w.security_group("SG-Hand-Deleted", Some(true), None).await;
    w.sync_ok();
    let first = w.ad_group_of(&g).await.unwrap();
    let mut ldap = w.ldap().await;
    ldap.delete(&first.dn).await.unwrap().success().unwrap();
    let out = w.sync_ok();
    let again = w.ad_group_of(&g).await.expect("re-created");
    assert_ne!(again.sid, first.sid);
    let outcome = outcome_of(&out, &g);
    assert!(
        outcome["drift"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d.as_str().unwrap_or("").contains("SID")),
        "the SID change is reported: {outcome}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_delta_token_leads_to_a_full_round_that_deletes_nothing_that_exists() {
    let w = World::new("expired").await;
    let (a, a_ad) = w.synced_user("e-a", "Expired A").await;
    let g = w.security_group("SG-Expired", Some(true), None).await;
    w.add_member(&g, &a).await;
    w.sync_ok();
    let before = w.ad_group_of(&g).await.unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{}/_sim/expire-delta-tokens", w.sim.url))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let out = w.sync_ok();
    assert_eq!(out["mode"], "full");
    assert_eq!(out["ldapWrites"], 0, "{out}");
    let after = w.ad_group_of(&g).await.unwrap();
    assert_eq!(after.guid, before.guid);
    assert_eq!(after.member_set(), lower_sorted(&[&a_ad.dn]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_type_change_in_the_cloud_changes_the_ad_group_type_in_place() {
    let w = World::new("typechg").await;
    let g = w
        .m365_group(
            "M365 Type Change",
            Some(true),
            Some("universalDistributionGroup"),
        )
        .await;
    w.sync_ok();
    let before = w.ad_group_of(&g).await.unwrap();
    assert_eq!(before.group_type, 8);
    w.patch_group(
        &g,
        json!({"writebackConfiguration": {"isEnabled": true, "onPremisesGroupType": "universalSecurityGroup"}}),
    )
    .await;
    let out = w.sync_ok();
    assert_eq!(out["applied"]["modifies"], 1, "{out}");
    let after = w.ad_group_of(&g).await.unwrap();
    assert_eq!(after.group_type, -2147483640);
    assert_eq!(after.guid, before.guid);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_that_becomes_synced_later_is_written_and_one_gone_from_ad_is_reported() {
    let w = World::new("latersync").await;
    let g = w.security_group("SG-Later", Some(true), None).await;
    let cloud_only = w.cloud_user("later-user").await;
    let (gone, gone_ad) = w.synced_user("gone-u", "Gone User").await;
    w.add_member(&g, &cloud_only).await;
    w.add_member(&g, &gone).await;
    w.sync_ok();
    assert_eq!(
        w.ad_group_of(&g).await.unwrap().member_set(),
        lower_sorted(&[&gone_ad.dn])
    );

    // The cloud-only user gets synced from AD (its AD account now exists) ...
    let u =
        w.dc.create_user(&w.people_ou, &format!("ls{}", &g[..8]), "Later Synced")
            .await;
    let (st, v) = w
        .graph_with(
            "PATCH",
            &format!("/v1.0/users/{cloud_only}"),
            Some(json!({"onPremisesSyncEnabled": true, "onPremisesSecurityIdentifier": u.sid})),
            &[("X-Graph-Sim-Seed", "true")],
        )
        .await;
    assert!(st == 204 || st == 200, "seeding PATCH: {st} {v}");
    // ... and the other disappears from AD.
    let mut ldap = w.ldap().await;
    ldap.delete(&gone_ad.dn).await.unwrap().success().unwrap();

    let out = w.sync_ok();
    assert_eq!(
        w.ad_group_of(&g).await.unwrap().member_set(),
        lower_sorted(&[&u.dn])
    );
    let outcome = outcome_of(&out, &g);
    let fates: Vec<&str> = outcome["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["fate"].as_str().unwrap())
        .collect();
    assert!(fates.contains(&"written"), "{outcome}");
    assert!(fates.contains(&"not-found-on-premises"), "{outcome}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cn_renamed_and_an_anchor_cleared_by_hand_are_put_back() {
    use ldap3::Mod;
    use std::collections::HashSet;
    let w = World::new("anchordrift").await;
    let g = w.security_group("SG-Anchor-Drift", Some(true), None).await;
    w.sync_ok();
    let before = w.ad_group_of(&g).await.unwrap();
    let mut ldap = w.ldap().await;
    ldap.modifydn(&before.dn, "CN=Renamed-By-Hand", true, None)
        .await
        .unwrap()
        .success()
        .unwrap();
    let by_hand = format!("CN=Renamed-By-Hand,{}", w.groups_ou);
    // Both anchors gone: only the join (objectGUID) still says the group is writeback's.
    ldap.modify(
        &by_hand,
        vec![
            Mod::Replace("adminDescription", HashSet::<&str>::new()),
            Mod::Replace("msDS-ExternalDirectoryObjectId", HashSet::<&str>::new()),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();

    let out = w.sync_ok();
    let after = w.ad_group_of(&g).await.expect("anchor put back");
    assert_eq!(after.guid, before.guid, "the same object, not a new one");
    assert_eq!(after.cn, before.cn, "CN put back");
    assert_eq!(w.ad_groups().await.len(), 1);
    let outcome = outcome_of(&out, &g);
    assert!(
        !outcome["drift"].as_array().unwrap().is_empty(),
        "{outcome}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_going_over_the_member_limit_is_not_written_and_said_loudly() {
    let mut w = World::new("overlimit").await;
    w.writeback_toml = "security_member_limit = 2".into();
    w.write_config();
    let (a, a_ad) = w.synced_user("ol-a", "Over A").await;
    let (b, b_ad) = w.synced_user("ol-b", "Over B").await;
    let (c, _) = w.synced_user("ol-c", "Over C").await;
    let g = w.security_group("SG-Over", Some(true), None).await;
    w.add_member(&g, &a).await;
    w.add_member(&g, &b).await;
    w.sync_ok();
    let members = lower_sorted(&[&a_ad.dn, &b_ad.dn]);
    assert_eq!(w.ad_group_of(&g).await.unwrap().member_set(), members);

    // A third member: over the limit of 2.
    w.add_member(&g, &c).await;
    let r = w.writeback(&["sync", "--json"]);
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    let warned: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("group over the member limit"))
        .collect();
    assert_eq!(warned.len(), 1, "stderr: {}", r.stderr);
    assert!(
        warned[0].contains(&g) && warned[0].contains("count=3"),
        "{}",
        warned[0]
    );
    let out: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let outcome = outcome_of(&out, &g);
    assert_eq!(outcome["decision"]["decision"], "over-limit", "{outcome}");
    // Not written: its AD group keeps the two members it had.
    assert_eq!(w.ad_group_of(&g).await.unwrap().member_set(), members);
}
