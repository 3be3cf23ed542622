//! Cloud-managed AD groups (Group Source of Authority, SPEC §10) and `writeback adopt`,
//! against the lab DC: an AD group converted to cloud management is written back onto
//! itself, in place; protected groups (Domain Admins, adminCount = 1) are never taken over.

mod support;

use ldap3::{Mod, Scope, SearchEntry};
use serde_json::{json, Value};
use std::collections::HashSet;
use support::*;

const GLOBAL_SECURITY: i32 = -2147483646; // 0x80000002
const UNIVERSAL_SECURITY: i32 = -2147483640; // 0x80000008

/// A group "synced from AD" in the tenant: its SID, its members.
async fn synced_group(w: &World, name: &str, sid: &str, members: &[&str]) -> String {
    let binds: Vec<String> = members
        .iter()
        .map(|m| format!("https://graph.microsoft.com/v1.0/directoryObjects/{m}"))
        .collect();
    let (status, v) = w
        .graph(
            "POST",
            "/beta/groups",
            Some(json!({
                "displayName": name, "mailEnabled": false, "mailNickname": name.replace(' ', ""),
                "securityEnabled": true, "onPremisesSyncEnabled": true,
                "onPremisesSecurityIdentifier": sid, "members@odata.bind": binds,
            })),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    v["id"].as_str().unwrap().to_string()
}

async fn set_cloud_managed(w: &World, id: &str, value: bool) {
    let (status, v) = w
        .graph(
            "PATCH",
            &format!("/v1.0/groups/{id}/onPremisesSyncBehavior"),
            Some(json!({"isCloudManaged": value})),
        )
        .await;
    assert_eq!(status, 204, "{v}");
}

async fn add_ad_members(w: &World, group_dn: &str, members: &[&str]) {
    let mut ldap = w.ldap().await;
    let values: HashSet<&str> = members.iter().copied().collect();
    ldap.modify(group_dn, vec![Mod::Add("member", values)])
        .await
        .expect("modify")
        .success()
        .expect("add members");
}

fn outcome<'a>(out: &'a Value, id: &str) -> &'a Value {
    out["groups"]
        .as_array()
        .and_then(|gs| gs.iter().find(|g| g["id"] == id))
        .unwrap_or_else(|| panic!("no outcome for {id}: {out}"))
}

/// Domain Admins' DN, SID and members, read independently of writeback.
async fn domain_admins(w: &World) -> (String, String, Vec<String>, Option<String>) {
    let mut ldap = w.ldap().await;
    let (rs, _) = ldap
        .search(
            &w.dc.base_dn,
            Scope::Subtree,
            "(&(objectClass=group)(sAMAccountName=Domain Admins))",
            vec!["objectSid", "member", "adminDescription"],
        )
        .await
        .expect("search")
        .success()
        .expect("search ok");
    let e = rs
        .into_iter()
        .map(SearchEntry::construct)
        .find(|e| !e.dn.is_empty())
        .expect("Domain Admins");
    let sid = sid_text(&e.bin_attrs["objectSid"][0]);
    let mut members = e.attrs.get("member").cloned().unwrap_or_default();
    members.sort();
    let anchor = e
        .attrs
        .get("adminDescription")
        .and_then(|v| v.first().cloned());
    (e.dn, sid, members, anchor)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cloud_managed_ad_group_is_written_back_onto_itself_in_place() {
    let mut w = World::new("soa").await;
    // Kept even with delete_out_of_scope: an adopted group is never deleted.
    w.writeback_toml = "delete_out_of_scope = true".into();
    w.write_config();
    let shares = format!("OU=Shares,{}", w.root_ou);
    w.dc.create_ou(&shares).await;
    let (ann, ann_ad) = w.synced_user("soa-ann", "Ann Soa").await;
    let (bob, bob_ad) = w.synced_user("soa-bob", "Bob Soa").await;
    let old =
        w.dc.create_user(
            &w.people_ou,
            &format!("soaold{}", std::process::id() % 100000),
            "Old Soa",
        )
        .await;
    let share =
        w.dc.create_group(&shares, "FS-Finance", GLOBAL_SECURITY)
            .await;
    add_ad_members(&w, &share.dn, &[&ann_ad.dn, &old.dn]).await;
    // The file share's ACL names the group by SID.
    let acl_sid = share.sid.clone();
    let before = w.ad_groups().await["FS-Finance"].clone();

    let id = synced_group(&w, "FS-Finance", &share.sid, &[&ann]).await;
    let out = w.sync_ok();
    assert_eq!(outcome(&out, &id)["decision"]["decision"], "synced-from-ad");
    assert_eq!(
        w.ad_groups().await["FS-Finance"].usn_changed,
        before.usn_changed,
        "untouched while synced"
    );

    set_cloud_managed(&w, &id, true).await;
    let out = w.sync_ok();
    let o = outcome(&out, &id);
    assert_eq!(o["adopted"], true, "{o}");
    assert_eq!(o["ad_state"], "present", "{o}");
    let after = w.ad_groups().await["FS-Finance"].clone();
    assert_eq!(after.guid, before.guid, "the same object");
    assert_eq!(sid_text(&after.sid), acl_sid, "the SID the ACL names");
    assert_eq!(after.dn, share.dn, "stays in its OU with its CN");
    assert_eq!(
        after.group_type, UNIVERSAL_SECURITY,
        "converted to universal"
    );
    assert_eq!(
        after.admin_description.as_deref(),
        Some(format!("Group_{id}").as_str())
    );
    assert_eq!(
        after.member_set(),
        lower_sorted(&[&ann_ad.dn]),
        "members follow the cloud"
    );
    assert!(w
        .ad_groups()
        .await
        .values()
        .all(|g| g.dn == after.dn || !g.dn.contains("FS-Finance")));

    // A later cloud change is applied to it.
    w.add_member(&id, &bob).await;
    w.patch_group(&id, json!({"description": "Finance share"}))
        .await;
    w.sync_ok();
    let after = w.ad_groups().await["FS-Finance"].clone();
    assert_eq!(after.member_set(), lower_sorted(&[&ann_ad.dn, &bob_ad.dn]));
    assert_eq!(after.description.as_deref(), Some("Finance share"));
    assert_eq!(after.dn, share.dn);

    // Flipped back: left alone (orphaned), not deleted even with delete_out_of_scope.
    set_cloud_managed(&w, &id, false).await;
    w.remove_member(&id, &ann).await;
    let out = w.sync_ok();
    assert_eq!(outcome(&out, &id)["ad_state"], "orphaned", "{out}");
    let kept = w.ad_groups().await["FS-Finance"].clone();
    assert_eq!(kept.guid, before.guid);
    assert_eq!(
        kept.member_set(),
        lower_sorted(&[&ann_ad.dn, &bob_ad.dn]),
        "no longer updated"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cloud_managed_group_naming_a_protected_group_is_refused() {
    let w = World::new("soa-protected").await;
    let (eve, _) = w.synced_user("soa-eve", "Eve Soa").await;
    let (da_dn, da_sid, da_members, da_anchor) = domain_admins(&w).await;
    let id = synced_group(&w, "Domain Admins", &da_sid, &[&eve]).await;
    set_cloud_managed(&w, &id, true).await;
    // adminCount = 1: another protected group.
    let guarded =
        w.dc.create_group(&w.root_ou, "Guarded", GLOBAL_SECURITY)
            .await;
    let mut ldap = w.ldap().await;
    ldap.modify(
        &guarded.dn,
        vec![Mod::Replace("adminCount", HashSet::from(["1"]))],
    )
    .await
    .expect("modify")
    .success()
    .expect("adminCount");
    let id2 = synced_group(&w, "Guarded", &guarded.sid, &[&eve]).await;
    set_cloud_managed(&w, &id2, true).await;

    let out = w.sync_expect(1, &[]);
    for g in [&id, &id2] {
        let o = outcome(&out, g);
        let errors = o["errors"].to_string();
        assert!(
            errors.contains("protected") && errors.contains("never adopts"),
            "{o}"
        );
        assert_ne!(o["adopted"], true);
    }
    let (_, _, after, anchor) = domain_admins(&w).await;
    assert_eq!(after, da_members, "Domain Admins' membership is unchanged");
    assert_eq!(anchor, da_anchor, "no anchor written on {da_dn}");
    let g = &w.ad_groups().await["Guarded"];
    assert!(g.admin_description.is_none() && g.members.is_empty());
    assert_eq!(g.group_type, GLOBAL_SECURITY);
}

#[tokio::test(flavor = "multi_thread")]
async fn adopt_takes_over_a_group_in_place_and_refuses_protected_or_joined_objects() {
    let w = World::new("adopt").await;
    let (ann, ann_ad) = w.synced_user("ad-ann", "Ann Adopt").await;
    let apps = format!("OU=Apps,{}", w.root_ou);
    w.dc.create_ou(&apps).await;
    let legacy =
        w.dc.create_group(&apps, "APP-Legacy", UNIVERSAL_SECURITY)
            .await;
    let cloud = w.security_group("APP-Legacy-Cloud", None, None).await;
    w.add_member(&cloud, &ann).await;
    let written = w.security_group("SG-Written", Some(true), None).await;
    w.sync_ok();
    let written_dn = w.ad_group_of(&written).await.expect("written").dn;

    let (da_dn, _, da_members, _) = domain_admins(&w).await;
    let r = w.writeback(&["adopt", &cloud, "--dn", &da_dn, "--yes"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("protected"), "{}", r.stderr);
    assert_eq!(domain_admins(&w).await.2, da_members);

    let r = w.writeback(&["adopt", &cloud, "--dn", &written_dn, "--yes"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("already joined to group"), "{}", r.stderr);

    // Preview first: nothing written.
    let r = w.writeback(&["adopt", "APP-Legacy-Cloud", "--dn", &legacy.dn]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("preview only"), "{}", r.stdout);
    assert!(w.ad_groups().await["APP-Legacy"]
        .admin_description
        .is_none());

    let r = w.writeback(&["adopt", "APP-Legacy-Cloud", "--dn", &legacy.dn, "--yes"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let g = w.ad_groups().await["APP-Legacy"].clone();
    assert_eq!(
        g.admin_description.as_deref(),
        Some(format!("Group_{cloud}").as_str())
    );

    // Enabled: the next cycle manages it where it is.
    w.patch_group(
        &cloud,
        json!({"writebackConfiguration": {"isEnabled": true}}),
    )
    .await;
    w.sync_ok();
    let g2 = w.ad_groups().await["APP-Legacy"].clone();
    assert_eq!(g2.guid, g.guid);
    assert_eq!(g2.dn, legacy.dn, "not moved into the managed OU");
    assert_eq!(g2.member_set(), lower_sorted(&[&ann_ad.dn]));
    assert_eq!(g2.display_name.as_deref(), Some("APP-Legacy-Cloud"));
}
