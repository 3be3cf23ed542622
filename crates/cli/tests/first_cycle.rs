//! End-to-end: the first writeback cycle against a real Samba AD DC and graph-sim —
//! scope, types, naming, anchors and member fates (SPEC §2–§5), checked by LDAP reads.

mod support;
use support::*;

const DOMAIN_LOCAL_ERROR: &str = "A universal group cannot have a local group as a member";

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_story_is_written_back_as_step_5_shows() {
    let w = World::new("seed").await;
    let (anna, anna_ad) = w.synced_user("s-anna", "Anna de Wit").await;
    let (bram, bram_ad) = w.synced_user("s-bram", "Bram Jansen").await;
    let (carla, carla_ad) = w.synced_user("s-carla", "Carla Visser").await;
    let (daan, daan_ad) = w.synced_user("s-daan", "Daan Bakker").await;
    let guest = w.cloud_user("guest-consultant").await;
    let auditor = w.cloud_user("ext-auditor").await;

    let finance = w
        .security_group(
            "SG-NL-Finance-Department",
            Some(true),
            Some("universalSecurityGroup"),
        )
        .await;
    for m in [&anna, &bram, &carla] {
        w.add_member(&finance, m).await;
    }
    let sap = w
        .security_group(
            "DSG-AVD-PUBAPP-SAP",
            Some(true),
            Some("universalSecurityGroup"),
        )
        .await;
    for m in [&anna, &bram, &carla, &daan, &guest, &auditor] {
        w.add_member(&sap, m).await;
    }
    let m365_off = w.m365_group("Marketing Team", Some(false), None).await;
    let m365_dl = w
        .m365_group(
            "All Company News",
            Some(true),
            Some("universalDistributionGroup"),
        )
        .await;
    w.add_member(&m365_dl, &bram).await;
    let default_sg = w.security_group("SG-Default-NoWriteback", None, None).await;

    // A group nesting a domain-local AD group (synced from AD).
    let local =
        w.dc.create_group(
            &w.people_ou,
            "DL-FileShare-Local",
            wb_model::GROUP_TYPE_DOMAIN_LOCAL | wb_model::GROUP_TYPE_SECURITY,
        )
        .await;
    let (st, v) = w
        .graph(
            "POST",
            "/beta/groups",
            Some(serde_json::json!({
                "displayName": "DL-FileShare-Local", "mailEnabled": false, "mailNickname": "dlfs",
                "securityEnabled": true, "groupTypes": [],
                "onPremisesSyncEnabled": true, "onPremisesSecurityIdentifier": local.sid,
            })),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let local_cloud = v["id"].as_str().unwrap().to_string();
    let share = w
        .security_group(
            "SG-FileShare-Access",
            Some(true),
            Some("universalSecurityGroup"),
        )
        .await;
    w.add_member(&share, &anna).await;
    w.add_member(&share, &local_cloud).await;

    // One group has an error (the domain-local member): exit 1, the rest is applied.
    let out = w.sync_expect(1, &[]);
    let errors = out["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e["message"] == DOMAIN_LOCAL_ERROR),
        "expected Microsoft's error text: {errors:?}"
    );

    let ad = w.ad_groups().await;
    // object-id naming by default: CN = Group_<objectId>
    let fin = &ad[&format!("Group_{finance}")];
    assert_eq!(fin.group_type, -2147483640, "universal security");
    assert_eq!(
        fin.admin_description.as_deref(),
        Some(format!("Group_{finance}").as_str())
    );
    assert_eq!(
        fin.ext_id.as_deref(),
        Some(format!("Group_{finance}").as_str()),
        "2016 schema anchor"
    );
    assert_eq!(
        fin.display_name.as_deref(),
        Some("SG-NL-Finance-Department")
    );
    assert_eq!(
        fin.member_set(),
        lower_sorted(&[&anna_ad.dn, &bram_ad.dn, &carla_ad.dn])
    );

    let sapg = &ad[&format!("Group_{sap}")];
    assert_eq!(
        sapg.members.len(),
        4,
        "4 of 6 members: the 2 cloud-only users are not written"
    );
    assert_eq!(
        sapg.member_set(),
        lower_sorted(&[&anna_ad.dn, &bram_ad.dn, &carla_ad.dn, &daan_ad.dn])
    );

    let dl = &ad[&format!("Group_{m365_dl}")];
    assert_eq!(
        dl.group_type, 8,
        "Microsoft 365 group as universal distribution group"
    );
    assert_eq!(dl.member_set(), lower_sorted(&[&bram_ad.dn]));

    let fs = &ad[&format!("Group_{share}")];
    assert_eq!(
        fs.member_set(),
        lower_sorted(&[&anna_ad.dn]),
        "the domain-local group is not nested"
    );

    for id in [&m365_off, &default_sg, &local_cloud] {
        assert!(
            !ad.contains_key(&format!("Group_{id}")),
            "{id} must not be written back"
        );
    }
    // Only the four written groups (+ the domain-local AD group of the test) exist.
    assert_eq!(ad.len(), 5, "{:?}", ad.keys().collect::<Vec<_>>());

    // The outcomes say why.
    let groups = out["groups"].as_array().unwrap();
    let outcome = |id: &str| groups.iter().find(|g| g["id"] == id).unwrap().clone();
    assert_eq!(outcome(&m365_off)["decision"]["decision"], "not-enabled");
    assert_eq!(outcome(&default_sg)["decision"]["decision"], "not-enabled");
    assert_eq!(
        outcome(&local_cloud)["decision"]["decision"],
        "synced-from-ad"
    );
    let sap_members = outcome(&sap)["members"].as_array().unwrap().clone();
    assert_eq!(
        sap_members
            .iter()
            .filter(|m| m["fate"] == "cloud-only")
            .count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_sync_makes_no_ldap_writes() {
    let w = World::new("idem").await;
    let (u1, _) = w.synced_user("i-u1", "Idem One").await;
    let (u2, _) = w.synced_user("i-u2", "Idem Two").await;
    let g = w.security_group("SG-Idem", Some(true), None).await;
    w.add_member(&g, &u1).await;
    w.add_member(&g, &u2).await;
    let m = w.m365_group("Idem M365", None, None).await;
    w.add_member(&m, &u1).await;

    let first = w.sync_ok();
    assert!(first["ldapWrites"].as_u64().unwrap() > 0);
    let before = w.ad_groups().await;
    let second = w.sync_ok();
    assert_eq!(second["ldapWrites"], 0, "second sync wrote: {second}");
    let after = w.ad_groups().await;
    for (cn, g) in &before {
        assert_eq!(g.usn_changed, after[cn].usn_changed, "{cn} changed");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cloud_rename_renames_in_place_keeping_guid_and_sid() {
    let mut w = World::new("rename").await;
    w.writeback_toml = "naming = \"display-name\"".into();
    w.write_config();
    let g = w.security_group("SG-Before-Rename", Some(true), None).await;
    w.sync_ok();
    let before = w.ad_group_of(&g).await.expect("written");
    assert_eq!(
        before.cn,
        format!("SG-Before-Rename_{}", &g[g.len() - 12..])
    );

    w.patch_group(&g, serde_json::json!({"displayName": "SG-After-Rename"}))
        .await;
    w.sync_ok();
    let after = w.ad_group_of(&g).await.expect("still there");
    assert_eq!(after.cn, format!("SG-After-Rename_{}", &g[g.len() - 12..]));
    assert_eq!(after.guid, before.guid, "objectGUID must not change");
    assert_eq!(after.sid, before.sid, "objectSid must not change");
    assert_eq!(after.display_name.as_deref(), Some("SG-After-Rename"));
    assert_eq!(w.ad_groups().await.len(), 1, "no second group");
}

#[tokio::test(flavor = "multi_thread")]
async fn display_names_with_rfc4514_specials_round_trip() {
    let mut w = World::new("escape").await;
    w.writeback_toml = "naming = \"display-name\"".into();
    w.write_config();
    let name = "  #Sales, \"EMEA\" + R&D \\ <core>; a=b  ";
    let g = w.security_group(name, Some(true), None).await;
    w.sync_ok();
    let ad = w.ad_group_of(&g).await.expect("written");
    let trimmed: String = name.trim().chars().take(51).collect();
    assert_eq!(ad.cn, format!("{trimmed}_{}", &g[g.len() - 12..]));
    assert_eq!(ad.display_name.as_deref(), Some(name));
    let sam = ad.sam.clone().unwrap();
    assert!(
        !sam.chars().any(|c| "\"/\\[]:;|=,+*?<>".contains(c)),
        "{sam}"
    );
    assert!(sam.chars().count() <= 64);
    // and nothing to do on the next cycle
    assert_eq!(w.sync_ok()["ldapWrites"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_security_group_typed_as_distribution_is_an_error_and_not_written() {
    let w = World::new("badtype").await;
    let g = w
        .security_group(
            "SG-Wrong-Type",
            Some(true),
            Some("universalDistributionGroup"),
        )
        .await;
    let ok = w.security_group("SG-Right-Type", Some(true), None).await;
    let out = w.sync_expect(1, &[]);
    assert!(out["errors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["message"]
            == "security groups can only be written back as universalSecurityGroup"));
    assert!(w.ad_group_of(&g).await.is_none());
    assert!(
        w.ad_group_of(&ok).await.is_some(),
        "one bad group never stops the others"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn m365_types_map_to_ad_group_types() {
    let w = World::new("types").await;
    let default = w.m365_group("M365 Default", None, None).await;
    let sec = w
        .m365_group(
            "M365 As Security",
            Some(true),
            Some("universalSecurityGroup"),
        )
        .await;
    let mesg = w
        .m365_group(
            "M365 Mail Security",
            Some(true),
            Some("universalMailEnabledSecurityGroup"),
        )
        .await;
    w.sync_ok();
    assert_eq!(w.ad_group_of(&default).await.unwrap().group_type, 8);
    assert_eq!(w.ad_group_of(&sec).await.unwrap().group_type, -2147483640);
    assert_eq!(w.ad_group_of(&mesg).await.unwrap().group_type, -2147483640);
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_enable_security_groups_and_place_them_but_explicit_false_wins() {
    let mut w = World::new("rules").await;
    let sec_ou = format!("OU=Security,{}", w.root_ou);
    w.dc.create_ou(&sec_ou).await;
    w.rules_toml = format!(
        "[[writeback.rule]]\nmatch = {{ kind = \"security\", name_prefix = \"SG-\" }}\nenable = true\nou = \"{sec_ou}\"\n"
    );
    w.write_config();
    let by_rule = w.security_group("SG-By-Rule", None, None).await;
    let explicit_off = w.security_group("SG-Explicit-Off", Some(false), None).await;
    let no_match = w.security_group("Other-Group", None, None).await;
    w.sync_ok();
    let g = w.ad_group_of(&by_rule).await.expect("enabled by the rule");
    assert!(
        g.dn.to_ascii_lowercase()
            .ends_with(&sec_ou.to_ascii_lowercase()),
        "{}",
        g.dn
    );
    assert!(
        w.ad_group_of(&explicit_off).await.is_none(),
        "isEnabled false wins over a rule"
    );
    assert!(w.ad_group_of(&no_match).await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_of_3000_members_is_written_and_read_back_with_range_retrieval() {
    use ldap3::{Scope, SearchEntry};
    let w = World::new("big").await;
    let g = w.security_group("SG-Big", Some(true), None).await;
    let users = w.create_users("big", 3000).await;
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
        w.add_member(&g, v["id"].as_str().unwrap()).await;
    }
    w.sync_ok();
    let dn = w.ad_group_of(&g).await.expect("written").dn;
    // Samba never forces ranging: ask for ranges explicitly, as Windows AD would require.
    let mut ldap = w.ldap().await;
    let mut all = Vec::new();
    let mut start = 0usize;
    loop {
        let attr = format!("member;range={start}-{}", start + 1499);
        let (rs, _) = ldap
            .search(&dn, Scope::Base, "(objectClass=*)", vec![attr.as_str()])
            .await
            .unwrap()
            .success()
            .unwrap();
        let e = SearchEntry::construct(rs.into_iter().next().expect("entry"));
        let (k, v) = e
            .attrs
            .iter()
            .find(|(k, _)| k.starts_with("member;range="))
            .expect("a ranged member attribute");
        all.extend(v.clone());
        if k.ends_with('*') {
            break;
        }
        start += v.len();
    }
    assert_eq!(all.len(), 3000);
    let want = lower_sorted(&users.iter().map(|u| u.dn.as_str()).collect::<Vec<_>>());
    let mut got: Vec<String> = all.iter().map(|m| m.to_ascii_lowercase()).collect();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(w.sync_ok()["ldapWrites"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn nested_groups_written_back_or_synced_from_ad_become_members_others_do_not() {
    let w = World::new("nested").await;
    let child = w.security_group("SG-Child", Some(true), None).await;
    let not_enabled = w.security_group("SG-Not-Enabled", None, None).await;
    let ad_global =
        w.dc.create_group(
            &w.people_ou,
            "GG-From-AD",
            wb_model::GROUP_TYPE_GLOBAL | wb_model::GROUP_TYPE_SECURITY,
        )
        .await;
    let (st, v) = w
        .graph(
            "POST",
            "/beta/groups",
            Some(serde_json::json!({
                "displayName": "GG-From-AD", "mailEnabled": false, "mailNickname": "ggfromad",
                "securityEnabled": true, "groupTypes": [],
                "onPremisesSyncEnabled": true, "onPremisesSecurityIdentifier": ad_global.sid,
            })),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let synced = v["id"].as_str().unwrap().to_string();
    let parent = w.security_group("SG-Parent", Some(true), None).await;
    for m in [&child, &not_enabled, &synced] {
        w.add_member(&parent, m).await;
    }
    let out = w.sync_ok();
    let child_dn = w.ad_group_of(&child).await.unwrap().dn;
    assert_eq!(
        w.ad_group_of(&parent).await.unwrap().member_set(),
        lower_sorted(&[&child_dn, &ad_global.dn])
    );
    let outcome = outcome_of(&out, &parent);
    assert!(outcome["members"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["fate"] == "nested-group-not-enabled"));
    assert_eq!(w.sync_ok()["ldapWrites"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_2016_schema_the_anchor_is_admin_description_only() {
    let w = World::new_2012("schema2012").await;
    let g = w.security_group("SG-Old-Schema", Some(true), None).await;
    let out = w.sync_ok();
    let ad = w.ad_group_of(&g).await.expect("written");
    assert_eq!(
        ad.admin_description.as_deref(),
        Some(format!("Group_{g}").as_str())
    );
    assert_eq!(ad.ext_id, None);
    assert_eq!(out["errors"].as_array().unwrap().len(), 0);
    assert_eq!(w.sync_ok()["ldapWrites"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_distribution_group_gets_its_mail_attributes_where_the_schema_has_them() {
    let w = World::new("mail").await;
    let (st, v) = w
        .graph(
            "POST",
            "/beta/groups",
            Some(serde_json::json!({
                "displayName": "Sales News", "mailEnabled": true, "mailNickname": "salesnews",
                "securityEnabled": false, "groupTypes": ["Unified"],
                "writebackConfiguration": {"isEnabled": true, "onPremisesGroupType": "universalDistributionGroup"},
            })),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let g = v["id"].as_str().unwrap().to_string();
    let (_, cloud) = w
        .graph(
            "GET",
            &format!("/v1.0/groups/{g}?$select=mail,proxyAddresses"),
            None,
        )
        .await;
    let out = w.sync_ok();
    let mut ldap = w.ldap().await;
    let dn = w.ad_group_of(&g).await.unwrap().dn;
    let (rs, _) = ldap
        .search(
            &dn,
            ldap3::Scope::Base,
            "(objectClass=*)",
            vec!["mail", "proxyAddresses", "mailNickname"],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    let e = ldap3::SearchEntry::construct(rs.into_iter().next().unwrap());
    if let Some(mail) = cloud["mail"].as_str() {
        assert_eq!(e.attrs.get("mail").map(|v| v[0].as_str()), Some(mail));
    }
    // Samba has no Exchange schema: mailNickname is skipped and said once per run.
    assert!(!e.attrs.contains_key("mailNickname"));
    let notices = w.writeback(&["plan", "--json"]).json()["notices"].clone();
    assert!(
        notices.to_string().contains("mailNickname"),
        "{notices} / {out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_tells_the_decision_each_members_fate_and_the_last_export() {
    let w = World::new("explain").await;
    let (a, a_ad) = w.synced_user("x-a", "Explain A").await;
    let guest = w.cloud_user("explain-guest").await;
    let g = w.security_group("SG-Explain", Some(true), None).await;
    w.add_member(&g, &a).await;
    w.add_member(&g, &guest).await;
    let off = w.security_group("SG-Explain-Off", None, None).await;
    let run = w.sync_ok()["run"].as_i64().unwrap();

    let r = w.writeback(&["explain", "SG-Explain"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("written back as universalSecurityGroup"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(&format!("written as {}", a_ad.dn)),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("cloud-only user"), "{}", r.stdout);
    assert!(
        r.stdout.contains(&format!("last export: run {run}")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("next cycle: no change"), "{}", r.stdout);

    let j = w.writeback(&["explain", &off, "--json"]).json();
    assert_eq!(j["group"]["decision"]["decision"], "not-enabled");
    assert_eq!(j["operations"].as_array().unwrap().len(), 0);

    let missing = w.writeback(&["explain", "No Such Group"]);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("No Such Group"));
    let _ = guest;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_write_owners_the_first_owner_in_ad_becomes_managed_by() {
    let mut w = World::new("owners").await;
    w.writeback_toml = "write_owners = true".into();
    w.write_config();
    let cloud_owner = w.cloud_user("owner-cloud").await;
    let (owner, owner_ad) = w.synced_user("ow-a", "Owner A").await;
    let g = w.security_group("SG-Owned", Some(true), None).await;
    for o in [&cloud_owner, &owner] {
        let (st, v) = w
            .graph(
                "POST",
                &format!("/v1.0/groups/{g}/owners/$ref"),
                Some(serde_json::json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/users/{o}")})),
            )
            .await;
        assert_eq!(st, 204, "{v}");
    }
    w.sync_ok();
    let dn = w.ad_group_of(&g).await.unwrap().dn;
    let mut ldap = w.ldap().await;
    let (rs, _) = ldap
        .search(
            &dn,
            ldap3::Scope::Base,
            "(objectClass=*)",
            vec!["managedBy"],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    let e = ldap3::SearchEntry::construct(rs.into_iter().next().unwrap());
    assert_eq!(
        e.attrs.get("managedBy").map(|v| v[0].to_ascii_lowercase()),
        Some(owner_ad.dn.to_ascii_lowercase()),
        "the cloud-only owner cannot be managedBy; the synced one is"
    );
    assert_eq!(w.sync_ok()["ldapWrites"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cycle_over_ldaps_with_a_certificate_client_assertion() {
    let w = World::new_secure("secure").await;
    let text = std::fs::read_to_string(w.config_path()).unwrap();
    assert!(
        text.contains("ldaps://") && text.contains("certificate = {"),
        "{text}"
    );
    let (a, a_ad) = w.synced_user("tls-a", "Tls A").await;
    let g = w.security_group("SG-Over-TLS", Some(true), None).await;
    w.add_member(&g, &a).await;
    w.sync_ok();
    assert_eq!(
        w.ad_group_of(&g).await.unwrap().member_set(),
        lower_sorted(&[&a_ad.dn])
    );
}
