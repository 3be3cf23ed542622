//! Privilege escalation through member resolution (SPEC §10): a cloud member is written
//! only when the AD object it resolves to has the class of its cloud type. A cloud user
//! whose onPremises* values point at Domain Admins, another group or a computer must never
//! nest that object; the refusal is reported on the group (plan, status, explain).

mod support;

use ldap3::{Scope, SearchEntry};
use serde_json::{json, Value};
use std::collections::HashSet;
use support::*;
use wb_ad::values::first_binary;

/// objectSid of the domain object: the domain SID.
async fn domain_sid(w: &World) -> String {
    let mut ldap = w.ldap().await;
    let (rs, _) = ldap
        .search(
            &w.dc.base_dn,
            Scope::Base,
            "(objectClass=*)",
            vec!["objectSid"],
        )
        .await
        .expect("search")
        .success()
        .expect("search ok");
    let e = SearchEntry::construct(rs.into_iter().next().expect("the domain object"));
    sid_text(&first_binary(&e, "objectSid").expect("domain objectSid"))
}

/// `member` and `memberOf` of an object, lower-case and sorted.
async fn memberships(w: &World, dn: &str) -> (Vec<String>, Vec<String>) {
    let mut ldap = w.ldap().await;
    let (rs, _) = ldap
        .search(
            dn,
            Scope::Base,
            "(objectClass=*)",
            vec!["member", "memberOf"],
        )
        .await
        .expect("search")
        .success()
        .expect("search ok");
    let e = SearchEntry::construct(rs.into_iter().next().expect("entry"));
    let get = |k: &str| {
        let mut v: Vec<String> = e
            .attrs
            .get(k)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.to_lowercase())
            .collect();
        v.sort();
        v
    };
    (get("member"), get("memberOf"))
}

/// A cloud user marked synced, with exactly the onPremises* values given.
async fn pointing_user(w: &World, nick: &str, on_prem: Value) -> String {
    let mut body = json!({
        "displayName": nick,
        "userPrincipalName": format!("{nick}@lab.example.test"),
        "accountEnabled": true,
        "mailNickname": nick,
        "passwordProfile": {"password": "Passw0rd!x", "forceChangePasswordNextSignIn": false},
        "onPremisesSyncEnabled": true,
    });
    for (k, v) in on_prem.as_object().expect("an object") {
        body[k] = v.clone();
    }
    let (status, v) = w.graph("POST", "/v1.0/users", Some(body)).await;
    assert_eq!(status, 201, "{v}");
    v["id"].as_str().expect("id").to_string()
}

fn fate_of(outcome: &Value, member: &str) -> Value {
    outcome["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["member"]["id"] == member)
        .unwrap_or_else(|| panic!("no fate for {member}: {outcome}"))
        .clone()
}

#[tokio::test]
async fn a_cloud_user_carrying_the_sid_of_domain_admins_does_not_nest_domain_admins() {
    let w = World::new("escalate-sid").await;
    let da_sid = format!("{}-512", domain_sid(&w).await);
    let da_dn = format!("CN=Domain Admins,CN=Users,{}", w.dc.base_dn);
    let before = memberships(&w, &da_dn).await;

    let (anna, anna_ad) = w.synced_user("anna", "Anna Esc").await;
    let mallory = pointing_user(
        &w,
        "mallory-sid",
        json!({"onPremisesSecurityIdentifier": da_sid}),
    )
    .await;
    let group = w
        .security_group("SG-Innocent", Some(true), Some("universalSecurityGroup"))
        .await;
    w.add_member(&group, &anna).await;
    w.add_member(&group, &mallory).await;

    // The refusal is a per-group error: exit 1, the rest is applied.
    let out = w.sync_expect(1, &[]);
    let written = w.ad_group_of(&group).await.expect("the group is created");
    assert_eq!(written.member_set(), lower_sorted(&[&anna_ad.dn]));
    assert_eq!(
        memberships(&w, &da_dn).await,
        before,
        "Domain Admins' member and memberOf are unchanged"
    );

    let fate = fate_of(&outcome_of(&out, &group), &mallory);
    assert_eq!(fate["fate"], "class-mismatch", "{fate}");
    assert_eq!(fate["found"], "group", "{fate}");
    assert_eq!(fate["expected"], "user", "{fate}");
    let errors = out["errors"].as_array().expect("errors");
    assert!(
        errors.iter().any(|e| {
            let m = e["message"].as_str().unwrap_or_default();
            e["group"] == group.as_str()
                && m.contains("not written")
                && m.to_lowercase().contains(&da_dn.to_lowercase())
        }),
        "{errors:?}"
    );

    let explain = w.writeback(&["explain", &group]);
    assert!(
        explain
            .stdout
            .contains("a group object, not a user: not written"),
        "{}",
        explain.stdout
    );
    let status = w.writeback(&["status"]);
    assert!(
        status.stdout.contains("not written"),
        "status shows the refusal: {}",
        status.stdout
    );

    // Every cycle refuses it again; nothing is written for it.
    let again = w.sync_expect(1, &[]);
    assert_eq!(again["ldapWrites"], 0, "{again}");
    assert_eq!(memberships(&w, &da_dn).await, before);
}

#[tokio::test]
async fn members_pointing_at_a_group_a_computer_or_a_user_of_the_wrong_kind_are_refused() {
    let w = World::new("escalate-kinds").await;
    let (anna, anna_ad) = w.synced_user("anna", "Anna Kinds").await;
    let target =
        w.dc.create_group(
            &w.people_ou,
            "GG-Target",
            wb_model::GROUP_TYPE_GLOBAL | wb_model::GROUP_TYPE_SECURITY,
        )
        .await;
    // A computer account: objectClass user *and* computer.
    let pc_dn = format!("CN=PC-Esc,{}", w.people_ou);
    let pc_guid = {
        let mut ldap = w.ldap().await;
        let sam = format!("pc{}$", &anna[..8]);
        ldap.add(
            &pc_dn,
            vec![
                ("objectClass", HashSet::from(["computer"])),
                ("sAMAccountName", HashSet::from([sam.as_str()])),
            ],
        )
        .await
        .expect("add computer")
        .success()
        .expect("computer added");
        let (rs, _) = ldap
            .search(&pc_dn, Scope::Base, "(objectClass=*)", vec!["objectGUID"])
            .await
            .expect("search")
            .success()
            .expect("search ok");
        let e = SearchEntry::construct(rs.into_iter().next().expect("computer"));
        first_binary(&e, "objectGUID").expect("objectGUID")
    };
    use base64::Engine;
    let pc_immutable = base64::engine::general_purpose::STANDARD.encode(&pc_guid);

    let by_dn = pointing_user(
        &w,
        "mallory-dn",
        json!({"onPremisesDistinguishedName": target.dn}),
    )
    .await;
    let by_immutable = pointing_user(
        &w,
        "mallory-imm",
        json!({"onPremisesImmutableId": pc_immutable}),
    )
    .await;
    // A "group synced from AD" whose SID is a user's.
    let (st, v) = w
        .graph(
            "POST",
            "/beta/groups",
            Some(json!({
                "displayName": "GG-Not-A-Group", "mailEnabled": false, "mailNickname": "ggnag",
                "securityEnabled": true, "groupTypes": [],
                "onPremisesSyncEnabled": true, "onPremisesSecurityIdentifier": anna_ad.sid,
            })),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let fake_group = v["id"].as_str().expect("id").to_string();

    let group = w.security_group("SG-Kinds", Some(true), None).await;
    for m in [&anna, &by_dn, &by_immutable, &fake_group] {
        w.add_member(&group, m).await;
    }
    let out = w.sync_expect(1, &[]);
    let written = w.ad_group_of(&group).await.expect("created");
    assert_eq!(written.member_set(), lower_sorted(&[&anna_ad.dn]));
    let (target_members, target_member_of) = memberships(&w, &target.dn).await;
    assert!(target_member_of.is_empty(), "{target_member_of:?}");
    assert!(target_members.is_empty());

    let outcome = outcome_of(&out, &group);
    for (member, found, expected) in [
        (&by_dn, "group", "user"),
        (&by_immutable, "computer", "user"),
        (&fake_group, "user", "group"),
    ] {
        let fate = fate_of(&outcome, member);
        assert_eq!(fate["fate"], "class-mismatch", "{fate}");
        assert_eq!(fate["found"], found, "{fate}");
        assert_eq!(fate["expected"], expected, "{fate}");
    }
    assert_eq!(
        outcome["errors"].as_array().expect("errors").len(),
        3,
        "one error per refused member: {outcome}"
    );
    assert_eq!(w.sync_expect(1, &[])["ldapWrites"], 0);
}
