//! Snapshot of the plans for the seed's sample tenant (LAB.md "The sample tenant"): the
//! first cycle, then a cycle after cloud changes and changes made by hand in AD.

mod fixture;

use fixture::*;
use wb_engine::{Rule, RuleKind, RuleMatch};
use wb_model::{AdObjectRef, Lookup, MemberKind, GROUP_TYPE_DOMAIN_LOCAL, GROUP_TYPE_SECURITY};

const FINANCE: &str = "3f2b8c1e-5a47-4d0b-9e61-0c7d2a9f4b10";
const SAP: &str = "7a9e4d21-0b3c-4f5e-8d6a-1e2f3a4b5c60";
const TEAM_OFF: &str = "11c0ffee-2222-4333-8444-555566667777";
const TEAM_OFF_2: &str = "22c0ffee-2222-4333-8444-555566667778";
const TEAM_ON: &str = "33c0ffee-2222-4333-8444-555566667779";
const DEFAULT_SG: &str = "44c0ffee-2222-4333-8444-55556666777a";
const SYNCED: &str = "55c0ffee-2222-4333-8444-55556666777b";
const NESTING: &str = "66c0ffee-2222-4333-8444-55556666777c";
const LOCAL: &str = "77c0ffee-2222-4333-8444-55556666777d";

fn seed_tenant() -> Tenant {
    let mut t = Tenant::new();
    t.ad.schema.mail = true;
    t.ad.schema.proxy_addresses = true;
    for n in 1..=7 {
        t = t.user_in_ad(synced_user(&uid(n), &format!("Employee {n}")));
    }
    for n in 8..=9 {
        t = t.user(cloud_only_user(&uid(n), &format!("Guest {n}")));
    }
    let users = |ns: &[u32]| ns.iter().map(|n| uid(*n)).collect::<Vec<_>>();

    let finance_users = users(&[1, 2, 3]);
    let finance_refs: Vec<(MemberKind, &str)> = finance_users
        .iter()
        .map(|u| (MemberKind::User, u.as_str()))
        .collect();
    let finance = enabled(
        security(FINANCE, "SG-NL-Finance-Department"),
        Some(true),
        Some("universalSecurityGroup"),
    );
    t = t.group(with_members(finance, &finance_refs));

    let sap_users = users(&[2, 3, 4, 5, 8, 9]);
    let sap_refs: Vec<(MemberKind, &str)> = sap_users
        .iter()
        .map(|u| (MemberKind::User, u.as_str()))
        .collect();
    let mut sap = enabled(security(SAP, "DSG-AVD-PUBAPP-SAP"), Some(true), None);
    sap.group_types = vec!["DynamicMembership".into()];
    t = t.group(with_members(sap, &sap_refs));

    t = t.group(enabled(m365(TEAM_OFF, "Project Apollo"), Some(false), None));
    t = t.group(enabled(
        m365(TEAM_OFF_2, "Marketing, \"Brand\" team"),
        Some(false),
        None,
    ));
    let on_users = users(&[6, 7, 9]);
    let on_refs: Vec<(MemberKind, &str)> = on_users
        .iter()
        .map(|u| (MemberKind::User, u.as_str()))
        .collect();
    let mut on = enabled(
        m365(TEAM_ON, "Sales, EMEA"),
        Some(true),
        Some("universalDistributionGroup"),
    );
    on.description = Some("  Sales team for Europe, Middle East & Africa  ".into());
    t = t.group(with_members(on, &on_refs));
    t = t.group(with_members(
        security(DEFAULT_SG, "SG-Left-At-Default"),
        &[(MemberKind::User, &uid(1))],
    ));

    let mut synced = security(SYNCED, "GG-Synced-From-AD");
    synced.on_premises_sync_enabled = Some(true);
    synced.on_premises_security_identifier = Some("S-1-5-21-1-2-3-5001".into());
    t = t.group(synced);
    let mut local = security(LOCAL, "DL-Printers");
    local.on_premises_sync_enabled = Some(true);
    local.on_premises_security_identifier = Some("S-1-5-21-1-2-3-5002".into());
    t = t.group(local);
    t.ad.resolutions.found.insert(
        Lookup::Sid("S-1-5-21-1-2-3-5001".into()),
        AdObjectRef {
            dn: "CN=GG-Synced-From-AD,OU=AD Groups,DC=lab,DC=example,DC=test".into(),
            guid: "guid-gg".into(),
            group_type: Some(0x2 | GROUP_TYPE_SECURITY),
            class: wb_model::AdClass::Group,
        },
    );
    t.ad.resolutions.found.insert(
        Lookup::Sid("S-1-5-21-1-2-3-5002".into()),
        AdObjectRef {
            dn: "CN=DL-Printers,OU=AD Groups,DC=lab,DC=example,DC=test".into(),
            guid: "guid-dl".into(),
            group_type: Some(GROUP_TYPE_DOMAIN_LOCAL | GROUP_TYPE_SECURITY),
            class: wb_model::AdClass::Group,
        },
    );
    let nesting = enabled(security(NESTING, "SG-Nesting"), Some(true), None);
    t = t.group(with_members(
        nesting,
        &[
            (MemberKind::Group, LOCAL),
            (MemberKind::Group, SYNCED),
            (MemberKind::Group, FINANCE),
            (MemberKind::User, &uid(7)),
            (MemberKind::Device, "88c0ffee-2222-4333-8444-55556666777e"),
        ],
    ));
    t.ad.groups
        .push(foreign_group("Printers-Admins", OU, "guid-foreign"));
    t
}

#[test]
fn seed_tenant_first_cycle_plan() {
    let t = seed_tenant();
    insta::assert_json_snapshot!("seed_tenant_first_cycle", t.plan());
}

#[test]
fn seed_tenant_after_cloud_changes_and_hand_edits_plan() {
    let mut t = seed_tenant();
    t.cycle();
    // Cloud: a rename, a member leaves, writeback switched off, a rule moves security groups.
    if let Some(g) = t.cloud.groups.get_mut(FINANCE) {
        g.display_name = Some("SG-NL-Finance".into());
    }
    if let Some(g) = t.cloud.groups.get_mut(SAP) {
        g.members.retain(|m| *m.id != *uid(5));
    }
    if let Some(g) = t.cloud.groups.get_mut(TEAM_ON) {
        g.writeback.is_enabled = Some(false);
    }
    t.config.rules.push(Rule {
        matcher: RuleMatch {
            kind: Some(RuleKind::Security),
            name_prefix: Some("SG-".into()),
            ..Default::default()
        },
        enable: None,
        ou: Some(SEC_OU.into()),
    });
    // By hand in AD: a member added, a groupType changed.
    for g in t.ad.groups.iter_mut() {
        match g.anchor() {
            Some(SAP) => g.members.push(user_dn("Intruder").into()),
            Some(NESTING) => g.group_type = 0x2 | GROUP_TYPE_SECURITY,
            _ => {}
        }
    }
    insta::assert_json_snapshot!("seed_tenant_second_cycle", t.plan());
}
