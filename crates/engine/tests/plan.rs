//! The planner (SPEC §4–§6): creates, renames, drift, ownership, lifecycle and members.

mod fixture;

use fixture::*;
use wb_engine::naming::{dn_eq, rdn};
use wb_engine::{lookups, Rule, RuleKind, RuleMatch, DOMAIN_LOCAL_ERROR};
use wb_model::{
    Action, AdGroup, AdObjectRef, AdState, CloudDeletion, CloudGroup, Fate, FoundBy, GroupOutcome,
    Join, Lookup, MemberKind, Operation, Plan, GROUP_TYPE_DOMAIN_LOCAL, GROUP_TYPE_GLOBAL,
    GROUP_TYPE_SECURITY, GROUP_TYPE_UNIVERSAL,
};

/// Changes the cloud group `id` (which must exist).
fn edit(t: &mut Tenant, id: &str, change: impl FnOnce(&mut CloudGroup)) {
    change(t.cloud.groups.get_mut(id).expect("the test's group exists"));
}

fn outcome<'a>(plan: &'a Plan, id: &str) -> &'a GroupOutcome {
    plan.groups
        .iter()
        .find(|g| g.id == id)
        .unwrap_or_else(|| panic!("no outcome for {id}"))
}

fn ops_of<'a>(plan: &'a Plan, id: &str) -> Vec<&'a Operation> {
    plan.operations.iter().filter(|o| o.group == id).collect()
}

fn team_dn(name: &str, id: &str) -> String {
    let tail = &id[id.len() - 12..];
    format!("{},{OU}", rdn(&format!("{name}_{tail}")))
}

/// A tenant with one Microsoft 365 group, cycled once so AD holds its group.
fn written_team() -> (Tenant, String) {
    let id = gid(1);
    let mut t = Tenant::new().group(m365(&id, "Team"));
    t.cycle();
    (t, id)
}

#[test]
fn written_group_is_created_with_its_anchor_and_attributes() {
    let id = gid(1);
    let mut g = m365(&id, "Sales, EMEA");
    g.description = Some(format!("  {}  ", "d".repeat(500)));
    let mut t = Tenant::new().group(g);
    t.ad.schema.mail = true;
    t.ad.schema.mail_nickname = true;
    t.ad.schema.proxy_addresses = true;
    let plan = t.plan();
    assert!(plan.notices.is_empty(), "{:?}", plan.notices);
    let [op] = ops_of(&plan, &id)[..] else {
        panic!("{:#?}", plan.operations)
    };
    let Action::Create {
        dn,
        attrs,
        members,
        sam_account_name_fallbacks,
    } = &op.action
    else {
        panic!("{op:?}")
    };
    assert_eq!(dn, &format!("CN=Sales\\, EMEA_{},{OU}", &id[24..]));
    let one = |a: &str| attrs.get(a).cloned().unwrap_or_default();
    assert_eq!(one("objectClass"), vec!["top", "group"]);
    assert_eq!(one("cn"), vec![format!("Sales, EMEA_{}", &id[24..])]);
    assert_eq!(
        one("sAMAccountName"),
        vec![format!("Sales_ EMEA_{}", &id[24..])]
    );
    assert_eq!(one("groupType"), vec!["8"]);
    assert_eq!(one("adminDescription"), vec![format!("Group_{id}")]);
    assert_eq!(
        one("msDS-ExternalDirectoryObjectId"),
        vec![format!("Group_{id}")]
    );
    assert_eq!(one("displayName"), vec!["Sales, EMEA"]);
    assert_eq!(one("description"), vec!["d".repeat(448)]);
    assert_eq!(one("mail"), vec!["Sales,.EMEA@lab.example.test"]);
    assert!(attrs.contains_key("proxyAddresses") && attrs.contains_key("mailNickname"));
    assert!(
        !attrs.contains_key("managedBy"),
        "owners are written only with write_owners"
    );
    assert!(members.is_empty());
    assert!(
        sam_account_name_fallbacks.is_empty(),
        "derived by the exporter"
    );
    let fallbacks = wb_engine::naming::sam_account_name_fallbacks(
        &one("cn")[0],
        &id,
        &one("sAMAccountName")[0],
    );
    assert!(fallbacks[0].ends_with("_00000000"), "{fallbacks:?}");
    assert_eq!(
        &*op.reason,
        "created: writeback enabled (Microsoft 365 default (isEnabled null))"
    );
    let o = outcome(&plan, &id);
    assert_eq!(
        (o.ad_state.clone(), o.ad_dn.as_deref()),
        (AdState::ToCreate, Some(dn.as_str()))
    );
}

#[test]
fn security_group_is_created_without_mail_attributes() {
    let id = gid(2);
    let mut g = enabled(security(&id, "SG-Finance"), Some(true), None);
    g.mail = Some("sg@lab.example.test".into());
    let mut t = Tenant::new().group(g);
    t.ad.schema.mail = true;
    let plan = t.plan();
    let Action::Create { attrs, .. } = &plan.operations[0].action else {
        panic!()
    };
    assert_eq!(
        attrs["groupType"],
        vec![(GROUP_TYPE_UNIVERSAL | GROUP_TYPE_SECURITY).to_string()]
    );
    assert_eq!(attrs["groupType"], vec!["-2147483640"]);
    assert!(!attrs.contains_key("mail"));
}

#[test]
fn attributes_the_schema_lacks_are_one_notice_not_per_group() {
    let mut t = Tenant::new()
        .group(m365(&gid(1), "A"))
        .group(m365(&gid(2), "B"));
    t.ad.schema.mail = true;
    t.ad.schema.proxy_addresses = true;
    let plan = t.plan();
    let lines: Vec<&String> = plan
        .notices
        .iter()
        .filter(|n| n.contains("mailNickname"))
        .collect();
    assert_eq!(lines.len(), 1, "{:?}", plan.notices);
    for op in &plan.operations {
        let Action::Create { attrs, .. } = &op.action else {
            panic!()
        };
        assert!(attrs.contains_key("mail") && !attrs.contains_key("mailNickname"));
    }
}

#[test]
fn no_anchor_schema_falls_back_to_admin_description() {
    let mut t = Tenant::new().group(m365(&gid(1), "A"));
    t.ad.schema.external_directory_object_id = false;
    let plan = t.cycle();
    let Action::Create { attrs, .. } = &plan.operations[0].action else {
        panic!()
    };
    assert!(!attrs.contains_key("msDS-ExternalDirectoryObjectId"));
    assert!(
        t.plan().is_empty(),
        "the adminDescription anchor alone joins the group"
    );
}

#[test]
fn unchanged_group_gives_an_empty_plan() {
    let (t, id) = written_team();
    let plan = t.plan();
    assert!(plan.is_empty(), "{:#?}", plan.operations);
    assert_eq!(outcome(&plan, &id).ad_state, AdState::Present);
}

#[test]
fn renamed_group_is_renamed_in_place() {
    let (mut t, id) = written_team();
    let guid = t.ad_group(&id).map(|g| g.guid.clone()).unwrap_or_default();
    edit(&mut t, &id, |g| {
        g.display_name = Some("Team, renamed".into())
    });
    let plan = t.cycle();
    let kinds: Vec<&str> = plan.operations.iter().map(|o| o.action.name()).collect();
    assert_eq!(kinds, vec!["rename", "modify"]);
    let Action::Rename {
        dn,
        guid: g,
        new_rdn,
        new_parent,
        new_dn,
    } = &plan.operations[0].action
    else {
        panic!()
    };
    assert_eq!(
        (dn.as_str(), g.as_str()),
        (team_dn("Team", &id).as_str(), guid.as_str())
    );
    assert_eq!(new_rdn, &format!("CN=Team\\, renamed_{}", &id[24..]));
    assert_eq!(new_parent, &None);
    assert_eq!(new_dn, &team_dn("Team, renamed", &id));
    assert_eq!(
        &*plan.operations[0].reason,
        "renamed: display name changed 'Team' → 'Team, renamed'"
    );
    let Action::Modify { dn, changes, .. } = &plan.operations[1].action else {
        panic!()
    };
    assert_eq!(
        dn, new_dn,
        "later operations name the DN valid after the rename"
    );
    assert_eq!(
        changes.iter().map(|c| c.attr.as_str()).collect::<Vec<_>>(),
        vec!["displayName"]
    );
    assert_eq!(changes[0].before, vec!["Team"]);
    assert_eq!(changes[0].after, vec!["Team, renamed"]);
    assert_eq!(
        t.ad_group(&id).map(|g| g.guid.clone()),
        Some(guid),
        "same object: same GUID"
    );
    assert!(t.plan().is_empty());
}

#[test]
fn group_matched_by_a_rule_with_another_ou_is_moved_not_recreated() {
    let id = gid(3);
    let mut t = Tenant::new().group(enabled(security(&id, "SG-Finance"), Some(true), None));
    t.cycle();
    t.config.rules.push(Rule {
        matcher: RuleMatch {
            kind: Some(RuleKind::Security),
            ..Default::default()
        },
        enable: None,
        ou: Some(SEC_OU.into()),
    });
    let plan = t.cycle();
    let [op] = &plan.operations[..] else {
        panic!("{:#?}", plan.operations)
    };
    let Action::Rename {
        new_parent, new_dn, ..
    } = &op.action
    else {
        panic!("{op:?}")
    };
    assert_eq!(new_parent.as_deref(), Some(SEC_OU));
    assert!(dn_eq(
        new_dn,
        &format!("CN=SG-Finance_{},{SEC_OU}", &id[24..])
    ));
    assert!(op.reason.starts_with("moved to "), "{}", op.reason);
    assert!(t.plan().is_empty());
}

#[test]
fn group_in_a_plain_sub_ou_of_its_target_stays_there() {
    let (mut t, id) = written_team();
    let sub = format!("OU=Archive,{OU}");
    if let Some(g) = t.ad_group_mut(&id) {
        g.dn = g.dn.replace(OU, &sub);
    }
    assert!(t.plan().is_empty(), "{:#?}", t.plan().operations);
}

#[test]
fn naming_mode_change_renames_every_group() {
    let (mut t, id) = written_team();
    t.config.naming = wb_engine::Naming::ObjectId;
    let plan = t.cycle();
    let Action::Rename { new_rdn, .. } = &plan.operations[0].action else {
        panic!()
    };
    assert_eq!(new_rdn, &format!("CN=Group_{id}"));
    assert!(
        plan.operations[0].reason.contains("naming"),
        "{}",
        plan.operations[0].reason
    );
}

#[test]
fn group_type_changed_by_hand_is_put_back_as_drift() {
    let (mut t, id) = written_team();
    if let Some(g) = t.ad_group_mut(&id) {
        g.group_type = GROUP_TYPE_GLOBAL;
        g.description = Some("hand-written".into());
    }
    let plan = t.cycle();
    let [op] = &plan.operations[..] else {
        panic!("{:#?}", plan.operations)
    };
    let Action::Modify { changes, .. } = &op.action else {
        panic!()
    };
    let gt = changes
        .iter()
        .find(|c| c.attr == "groupType")
        .expect("groupType is put back");
    assert_eq!(
        (gt.before.clone(), gt.after.clone()),
        (vec!["2".to_string()], vec!["8".to_string()])
    );
    let desc = changes
        .iter()
        .find(|c| c.attr == "description")
        .expect("description removed");
    assert!(desc.after.is_empty());
    assert!(
        op.reason.contains("drift: groupType changed by hand")
            && op.reason.contains("drift: description changed by hand"),
        "{}",
        op.reason
    );
    assert!(outcome(&plan, &id)
        .drift
        .iter()
        .any(|d| d.starts_with("groupType changed by hand")));
    assert!(t.plan().is_empty());
}

#[test]
fn attributes_set_by_hand_elsewhere_are_left_alone() {
    let (mut t, id) = written_team();
    let before = t.ad_group(&id).cloned();
    if let Some(g) = t.ad_group_mut(&id) {
        g.sam_account_name = Some("renamed-by-hand".into());
    }
    assert!(t.plan().is_empty());
    assert!(before.is_some());
}

#[test]
fn foreign_group_in_managed_ou_is_never_touched() {
    let mut t = Tenant::new().group(m365(&gid(1), "Team"));
    t.ad.groups
        .push(foreign_group("Printers", OU, "guid-foreign"));
    let mut stale = foreign_group("Old", OU, "guid-stale");
    stale.admin_description = Some(format!("Group_{}", gid(99)));
    t.ad.groups.push(stale);
    let plan = t.plan();
    assert!(plan
        .operations
        .iter()
        .all(|o| !o.action.dn().contains("Printers") && !o.action.dn().contains("Old")));
    let reasons: Vec<(&str, &str)> = plan
        .foreign
        .iter()
        .map(|f| (f.dn.as_str(), f.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 2);
    assert!(
        reasons[0]
            .1
            .starts_with("anchor of a group not written back"),
        "{reasons:?}"
    );
    assert!(reasons[1].1.starts_with("no anchor"), "{reasons:?}");
}

#[test]
fn group_with_the_anchor_of_a_disabled_group_is_foreign_unless_joined() {
    let id = gid(1);
    let mut t = Tenant::new().group(enabled(m365(&id, "Team"), Some(false), None));
    let mut g = foreign_group("Team", OU, "guid-1");
    g.admin_description = Some(format!("Group_{id}"));
    t.ad.groups.push(g);
    t.config.delete_out_of_scope = true;
    let plan = t.plan();
    assert!(plan.is_empty());
    assert_eq!(plan.foreign.len(), 1);
    t.joins.insert(
        id.clone(),
        Join {
            group: id.clone(),
            guid: "guid-1".into(),
            sid: None,
            dn: String::new(),
            adopted: false,
        },
    );
    let plan = t.plan();
    assert_eq!(plan.operations.len(), 1);
    assert!(matches!(plan.operations[0].action, Action::Delete { .. }));
}

#[test]
fn duplicate_anchor_prefers_the_joined_group() {
    let (mut t, id) = written_team();
    let mut copy = t.ad_group(&id).cloned().expect("created");
    copy.dn = format!("CN=AAA copy,{OU}");
    copy.guid = "guid-copy".into();
    t.ad.groups.push(copy);
    let plan = t.plan();
    assert!(plan.is_empty(), "{:#?}", plan.operations);
    assert_eq!(plan.foreign.len(), 1);
    assert!(plan.foreign[0].dn.contains("AAA copy"));
    assert!(plan.foreign[0].reason.starts_with("duplicate anchor"));
    // The owned group says so loudly: an error naming the copy.
    let o = outcome(&plan, &id);
    assert!(
        o.errors.iter().any(|e| e.contains("AAA copy")),
        "{:?}",
        o.errors
    );
    // Without the join, neither is written and no third is created: an error says why.
    t.joins.clear();
    let plan = t.plan();
    assert!(plan.is_empty(), "{:#?}", plan.operations);
    assert_eq!(plan.foreign.len(), 2, "{:?}", plan.foreign);
    let o = outcome(&plan, &id);
    assert!(
        o.errors.iter().any(|e| e.contains("held by 2 AD objects")),
        "{:?}",
        o.errors
    );
}

#[test]
fn a_joined_group_outside_the_managed_ous_is_moved_not_recreated() {
    let (mut t, id) = written_team();
    let old_ou = "OU=Old,DC=lab,DC=example,DC=test";
    let g = t.ad_group_mut(&id).expect("written");
    let name = g.dn.split_once(',').expect("rdn").0.to_string();
    g.dn = format!("{name},{old_ou}");
    let guid = g.guid.clone();
    let plan = t.plan();
    assert_eq!(plan.operations.len(), 1, "{:#?}", plan.operations);
    match &plan.operations[0].action {
        Action::Rename {
            guid: g,
            new_parent,
            new_dn,
            ..
        } => {
            assert_eq!(g, &guid);
            assert_eq!(new_parent.as_deref(), Some(OU));
            assert_eq!(new_dn, &format!("{name},{OU}"));
        }
        other => panic!("expected a move, got {other:?}"),
    }
    // Not joined, the same object out there is foreign, and the group is created.
    t.joins.clear();
    let plan = t.plan();
    assert!(matches!(plan.operations[0].action, Action::Create { .. }));
    assert!(plan.foreign.iter().any(|f| f.dn.contains("OU=Old")));
}

#[test]
fn disabled_group_is_orphaned_and_kept() {
    let (mut t, id) = written_team();
    edit(&mut t, &id, |g| g.writeback.is_enabled = Some(false));
    let plan = t.plan();
    assert!(plan.is_empty());
    let o = outcome(&plan, &id);
    assert_eq!(o.ad_state, AdState::Orphaned);
    assert_eq!(o.ad_dn.as_deref(), Some(team_dn("Team", &id).as_str()));
}

#[test]
fn disabled_group_is_deleted_when_delete_out_of_scope() {
    let (mut t, id) = written_team();
    edit(&mut t, &id, |g| g.writeback.is_enabled = Some(false));
    t.config.delete_out_of_scope = true;
    let plan = t.cycle();
    let [op] = &plan.operations[..] else { panic!() };
    assert!(matches!(op.action, Action::Delete { .. }));
    assert!(op.reason.contains("delete_out_of_scope"), "{}", op.reason);
    assert_eq!(outcome(&plan, &id).ad_state, AdState::ToDelete);
    assert!(t.ad.groups.is_empty());
}

#[test]
fn soft_deleted_group_is_kept_and_resumes_on_the_same_object_when_restored() {
    let (mut t, id) = written_team();
    let guid = t.ad_group(&id).map(|g| g.guid.clone());
    edit(&mut t, &id, |g| {
        g.deleted = Some(CloudDeletion::SoftDeleted)
    });
    edit(&mut t, &id, |g| g.display_name = Some("Team 2".into()));
    let plan = t.cycle();
    assert!(plan.is_empty());
    assert_eq!(outcome(&plan, &id).ad_state, AdState::Orphaned);
    edit(&mut t, &id, |g| g.deleted = None);
    let plan = t.cycle();
    assert_eq!(plan.operations[0].action.name(), "rename");
    assert_eq!(t.ad_group(&id).map(|g| g.guid.clone()), guid);
}

#[test]
fn permanently_deleted_group_is_deleted_only_when_joined() {
    let (mut t, id) = written_team();
    t.cloud.groups.clear();
    let plan = t.plan();
    let [op] = &plan.operations[..] else { panic!() };
    assert!(matches!(&op.action, Action::Delete { dn, .. } if dn_eq(dn, &team_dn("Team", &id))));
    assert_eq!(&*op.reason, "deleted: permanently deleted in the cloud");
    t.joins.clear();
    let plan = t.plan();
    assert!(plan.is_empty());
    assert_eq!(plan.foreign.len(), 1);
}

#[test]
fn group_deleted_by_hand_is_recreated_and_the_sid_change_reported() {
    let (mut t, id) = written_team();
    t.ad.groups.clear();
    let plan = t.plan();
    let [op] = &plan.operations[..] else { panic!() };
    assert!(matches!(op.action, Action::Create { .. }));
    assert_eq!(
        outcome(&plan, &id).drift,
        vec!["re-created; the group's SID changes".to_string()]
    );
}

#[test]
fn create_onto_a_dn_held_by_a_foreign_object_is_an_error_not_an_operation() {
    let id = gid(1);
    let mut t = Tenant::new().group(m365(&id, "Team"));
    t.ad.groups
        .push(foreign_group(&format!("Team_{}", &id[24..]), OU, "guid-f"));
    let plan = t.plan();
    assert!(plan.is_empty());
    let o = outcome(&plan, &id);
    assert_eq!(o.ad_state, AdState::Absent);
    assert!(o.errors[0].starts_with("cannot create"), "{:?}", o.errors);
}

#[test]
fn taken_sam_account_name_uses_the_fallback() {
    let id = gid(1);
    let mut t = Tenant::new().group(m365(&id, "Team"));
    let mut other = foreign_group("Elsewhere", OU, "guid-f");
    other.sam_account_name = Some(format!("team_{}", &id[24..]));
    t.ad.groups.push(other);
    let plan = t.plan();
    let Action::Create {
        attrs,
        sam_account_name_fallbacks,
        ..
    } = &plan.operations[0].action
    else {
        panic!()
    };
    assert!(attrs["sAMAccountName"][0].ends_with("_00000000"));
    assert!(!sam_account_name_fallbacks.contains(&attrs["sAMAccountName"][0]));
}

// ---- members (SPEC §5)

fn member_tenant() -> (Tenant, String) {
    let id = gid(10);
    let t = Tenant::new().group(enabled(security(&id, "SG-Members"), Some(true), None));
    (t, id)
}

fn add_member(t: &mut Tenant, group: &str, kind: MemberKind, member: &str) {
    if let Some(g) = t.cloud.groups.get_mut(group) {
        g.members.insert(wb_model::MemberRef {
            kind,
            id: member.into(),
        });
    }
}

fn fate_of(plan: &Plan, group: &str, member: &str) -> Fate {
    outcome(plan, group)
        .members
        .iter()
        .find(|m| &*m.member.id == member)
        .map(|m| m.fate.clone())
        .unwrap_or_else(|| panic!("no fate for {member}"))
}

#[test]
fn synced_user_is_found_by_sid_then_immutable_id_then_dn() {
    let (mut t, id) = member_tenant();
    let mut by_sid = synced_user(&uid(1), "Ann");
    by_sid.on_premises_immutable_id = Some("AAAAAAAAAAAAAAAAAAAAAA==".into());
    let mut by_imm = synced_user(&uid(2), "Bob");
    by_imm.on_premises_immutable_id = Some("BBBBBBBBBBBBBBBBBBBBBB==".into());
    let by_dn = synced_user(&uid(3), "Cid");
    let lost = synced_user(&uid(4), "Dan");
    for u in [&by_sid, &by_imm, &by_dn, &lost] {
        t = t.user(u.clone());
        add_member(&mut t, &id, MemberKind::User, &u.id);
    }
    let found = &mut t.ad.resolutions.found;
    let sid = |u: &wb_model::CloudUser| {
        Lookup::Sid(
            u.on_premises_security_identifier
                .clone()
                .unwrap_or_default(),
        )
    };
    found.insert(sid(&by_sid), user_ref(&user_dn("Ann"), "g1"));
    found.insert(
        Lookup::ImmutableId("AAAAAAAAAAAAAAAAAAAAAA==".into()),
        user_ref("CN=Wrong,OU=Users,DC=lab,DC=example,DC=test", "gx"),
    );
    found.insert(
        Lookup::ImmutableId("BBBBBBBBBBBBBBBBBBBBBB==".into()),
        user_ref(&user_dn("Bob"), "g2"),
    );
    found.insert(Lookup::Dn(user_dn("Cid")), user_ref(&user_dn("Cid"), "g3"));
    let plan = t.plan();
    let by = |u: &str| match fate_of(&plan, &id, u) {
        Fate::Written { dn, by } => (dn.to_string(), by),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        by(&uid(1)),
        (user_dn("Ann"), FoundBy::OnPremisesSecurityIdentifier)
    );
    assert_eq!(
        by(&uid(2)),
        (user_dn("Bob"), FoundBy::OnPremisesImmutableId)
    );
    assert_eq!(
        by(&uid(3)),
        (user_dn("Cid"), FoundBy::OnPremisesDistinguishedName)
    );
    assert_eq!(fate_of(&plan, &id, &uid(4)), Fate::NotFoundOnPremises);
    let Action::Create { members, .. } = &plan.operations[0].action else {
        panic!()
    };
    assert_eq!(
        members,
        &shared([user_dn("Ann"), user_dn("Bob"), user_dn("Cid")])
    );
}

#[test]
fn members_that_are_not_ad_objects_get_their_fate_and_are_not_written() {
    let (mut t, id) = member_tenant();
    t = t.user(cloud_only_user(&uid(1), "Eve"));
    add_member(&mut t, &id, MemberKind::User, &uid(1));
    add_member(&mut t, &id, MemberKind::User, &uid(2)); // not in cloud.users
    add_member(&mut t, &id, MemberKind::Device, &uid(3));
    add_member(&mut t, &id, MemberKind::ServicePrincipal, &uid(4));
    add_member(&mut t, &id, MemberKind::OrgContact, &uid(5));
    let plan = t.plan();
    assert_eq!(fate_of(&plan, &id, &uid(1)), Fate::CloudOnly);
    assert_eq!(fate_of(&plan, &id, &uid(2)), Fate::UnknownObject);
    // A device the cloud image does not know (device delta did not list it).
    assert_eq!(fate_of(&plan, &id, &uid(3)), Fate::UnknownObject);
    for n in 4..=5 {
        assert_eq!(fate_of(&plan, &id, &uid(n)), Fate::UnsupportedKind);
    }
    let Action::Create { members, .. } = &plan.operations[0].action else {
        panic!()
    };
    assert!(members.is_empty());
}

#[test]
fn nested_groups_are_written_only_when_they_are_in_ad() {
    let (mut t, id) = member_tenant();
    let nested_written = m365(&gid(11), "Nested");
    let nested_off = security(&gid(12), "Not enabled");
    let mut synced = security(&gid(13), "Synced");
    synced.on_premises_sync_enabled = Some(true);
    synced.on_premises_security_identifier = Some("S-1-5-21-1-2-3-777".into());
    let mut synced_lost = security(&gid(14), "Synced lost");
    synced_lost.on_premises_sync_enabled = Some(true);
    synced_lost.on_premises_security_identifier = Some("S-1-5-21-1-2-3-778".into());
    for g in [nested_written, nested_off, synced, synced_lost] {
        let gid = g.id.clone();
        t = t.group(g);
        add_member(&mut t, &id, MemberKind::Group, &gid);
    }
    let synced_dn = "CN=Synced,OU=AD Groups,DC=lab,DC=example,DC=test";
    t.ad.resolutions.found.insert(
        Lookup::Sid("S-1-5-21-1-2-3-777".into()),
        AdObjectRef {
            dn: synced_dn.into(),
            guid: "gs".into(),
            group_type: Some(GROUP_TYPE_GLOBAL | GROUP_TYPE_SECURITY),
            class: wb_model::AdClass::Group,
        },
    );
    let plan = t.cycle();
    assert_eq!(
        fate_of(&plan, &id, &gid(11)),
        Fate::Written {
            dn: team_dn("Nested", &gid(11)).into(),
            by: FoundBy::WrittenBackGroup
        }
    );
    assert_eq!(fate_of(&plan, &id, &gid(12)), Fate::NestedGroupNotEnabled);
    assert!(matches!(fate_of(&plan, &id, &gid(13)), Fate::Written { dn, .. } if &*dn == synced_dn));
    assert_eq!(fate_of(&plan, &id, &gid(14)), Fate::SyncedGroupNotFound);
    // The nested group is created in the same cycle: it is added after its creation.
    let kinds: Vec<&str> = ops_of(&plan, &id).iter().map(|o| o.action.name()).collect();
    assert_eq!(kinds, vec!["create", "add-members"]);
    let members = &t.ad_group(&id).expect("created").members;
    assert_eq!(members.len(), 2);
    assert!(t.plan().is_empty(), "{:#?}", t.plan().operations);
}

#[test]
fn domain_local_nested_group_gives_microsofts_error() {
    let (mut t, id) = member_tenant();
    let mut local = security(&gid(20), "Local");
    local.on_premises_sync_enabled = Some(true);
    local.on_premises_security_identifier = Some("S-1-5-21-1-2-3-900".into());
    t = t.group(local).user_in_ad(synced_user(&uid(1), "Ann"));
    add_member(&mut t, &id, MemberKind::Group, &gid(20));
    add_member(&mut t, &id, MemberKind::User, &uid(1));
    let local_dn = "CN=Local,OU=AD Groups,DC=lab,DC=example,DC=test";
    t.ad.resolutions.found.insert(
        Lookup::Sid("S-1-5-21-1-2-3-900".into()),
        AdObjectRef {
            dn: local_dn.into(),
            guid: "gl".into(),
            group_type: Some(GROUP_TYPE_DOMAIN_LOCAL | GROUP_TYPE_SECURITY),
            class: wb_model::AdClass::Group,
        },
    );
    let plan = t.plan();
    let o = outcome(&plan, &id);
    assert_eq!(
        o.errors,
        vec!["A universal group cannot have a local group as a member".to_string()]
    );
    assert_eq!(DOMAIN_LOCAL_ERROR, o.errors[0]);
    assert_eq!(
        fate_of(&plan, &id, &gid(20)),
        Fate::DomainLocalGroup {
            dn: local_dn.into()
        }
    );
    let Action::Create { members, .. } = &plan.operations[0].action else {
        panic!()
    };
    assert_eq!(
        members,
        &shared([user_dn("Ann")]),
        "the rest of the group's changes still happen"
    );
}

#[test]
fn membership_is_authoritative_from_the_cloud() {
    let (mut t, id) = member_tenant();
    t = t
        .user_in_ad(synced_user(&uid(1), "Ann"))
        .user_in_ad(synced_user(&uid(2), "Bob"));
    add_member(&mut t, &id, MemberKind::User, &uid(1));
    add_member(&mut t, &id, MemberKind::User, &uid(2));
    t.cycle();
    let by_hand = user_dn("Mallory");
    if let Some(g) = t.ad_group_mut(&id) {
        g.members.retain(|m| !dn_eq(m, &user_dn("Bob")));
        g.members.push(by_hand.as_str().into());
        g.members
            .iter_mut()
            .for_each(|m| *m = m.to_uppercase().into()); // AD may return another case
    }
    let plan = t.cycle();
    let kinds: Vec<&str> = plan.operations.iter().map(|o| o.action.name()).collect();
    assert_eq!(kinds, vec!["add-members", "remove-members"]);
    assert!(
        matches!(&plan.operations[0].action, Action::AddMembers { members, .. } if members == &shared([user_dn("Bob")]))
    );
    assert!(
        matches!(&plan.operations[1].action, Action::RemoveMembers { members, .. } if dn_eq(&members[0], &by_hand))
    );
    let drift = &outcome(&plan, &id).drift;
    assert!(
        drift
            .iter()
            .any(|d| d.starts_with("member added by hand removed: ") && d.contains("MALLORY")),
        "{drift:?}"
    );
    assert!(drift.iter().any(|d| d.contains("Bob")), "{drift:?}");
    assert!(plan
        .operations
        .iter()
        .all(|o| o.reason.starts_with("drift: ")));
    assert!(t.plan().is_empty());
}

#[test]
fn member_dn_of_a_renamed_nested_group_is_its_new_dn() {
    let (mut t, id) = member_tenant();
    t = t.group(m365(&gid(11), "Nested"));
    add_member(&mut t, &id, MemberKind::Group, &gid(11));
    t.cycle();
    t.cycle();
    edit(&mut t, &gid(11), |g| {
        g.display_name = Some("Nested 2".into())
    });
    let plan = t.plan();
    // The parent's member value follows the rename by itself (AD updates links): no member op.
    assert!(
        plan.operations.iter().all(|o| o.group == gid(11)),
        "{:#?}",
        plan.operations
    );
    let new_dn = team_dn("Nested 2", &gid(11));
    assert_eq!(
        fate_of(&plan, &id, &gid(11)),
        Fate::Written {
            dn: new_dn.clone().into(),
            by: FoundBy::WrittenBackGroup
        }
    );
    t.cycle();
    assert!(t
        .ad_group(&id)
        .expect("parent")
        .members
        .iter()
        .any(|m| dn_eq(m, &new_dn)));
    assert!(t.plan().is_empty());
}

#[test]
fn owner_resolving_to_an_ad_user_becomes_managed_by() {
    let (mut t, id) = member_tenant();
    t.config.write_owners = true;
    t = t
        .user(cloud_only_user(&uid(1), "Cloud owner"))
        .user_in_ad(synced_user(&uid(2), "Ann"));
    if let Some(g) = t.cloud.groups.get_mut(&id) {
        for n in [1, 2] {
            g.owners.insert(wb_model::MemberRef {
                kind: MemberKind::User,
                id: uid(n).into(),
            });
        }
    }
    let plan = t.cycle();
    let Action::Create { attrs, .. } = &plan.operations[0].action else {
        panic!()
    };
    assert_eq!(attrs["managedBy"], vec![user_dn("Ann")]);
    assert!(lookups(&t.cloud, &t.config).contains(&Lookup::Sid(
        t.cloud.users[&uid(2)]
            .on_premises_security_identifier
            .clone()
            .unwrap_or_default()
    )));
    t.config.write_owners = false;
    assert!(
        t.plan().is_empty(),
        "without write_owners, managedBy is left alone"
    );
}

#[test]
fn lookups_cover_members_of_written_groups_only() {
    let (mut t, id) = member_tenant();
    let mut ann = synced_user(&uid(1), "Ann");
    ann.on_premises_immutable_id = Some("AAAAAAAAAAAAAAAAAAAAAA==".into());
    t = t
        .user(ann)
        .user(synced_user(&uid(2), "Bob"))
        .user(cloud_only_user(&uid(3), "Eve"));
    t = t.group(security(&gid(30), "Not written"));
    add_member(&mut t, &id, MemberKind::User, &uid(1));
    add_member(&mut t, &id, MemberKind::User, &uid(3));
    add_member(&mut t, &gid(30), MemberKind::User, &uid(2));
    let asked = lookups(&t.cloud, &t.config);
    let expected: std::collections::BTreeSet<Lookup> = [
        Lookup::Sid(
            t.cloud.users[&uid(1)]
                .on_premises_security_identifier
                .clone()
                .unwrap_or_default(),
        ),
        Lookup::ImmutableId("AAAAAAAAAAAAAAAAAAAAAA==".into()),
        Lookup::Dn(user_dn("Ann")),
    ]
    .into();
    assert_eq!(asked, expected);
}

#[test]
fn operations_come_in_phase_order() {
    let (mut t, id) = written_team();
    t = t.user_in_ad(synced_user(&uid(1), "Ann"));
    add_member(&mut t, &id, MemberKind::User, &uid(1));
    edit(&mut t, &id, |g| g.display_name = Some("Team 2".into()));
    t = t.group(m365(&gid(2), "New"));
    let gone = AdGroup {
        dn: format!("CN=Gone,{OU}"),
        guid: "guid-gone".into(),
        admin_description: Some(format!("Group_{}", gid(3))),
        members: shared([user_dn("Hand")]),
        ..Default::default()
    };
    t.joins.insert(
        gid(3),
        Join {
            group: gid(3),
            guid: "guid-gone".into(),
            sid: None,
            dn: gone.dn.clone(),
            adopted: false,
        },
    );
    t.ad.groups.push(gone);
    if let Some(g) = t.ad_group_mut(&id) {
        g.members.push(user_dn("Hand").into());
    }
    let plan = t.cycle();
    let kinds: Vec<&str> = plan.operations.iter().map(|o| o.action.name()).collect();
    assert_eq!(
        kinds,
        vec![
            "rename",
            "create",
            "modify",
            "add-members",
            "remove-members",
            "delete"
        ]
    );
    assert!(t.plan().is_empty());
}

#[test]
fn group_anchored_by_admin_description_alone_gets_the_second_anchor_without_drift() {
    let (mut t, id) = written_team();
    if let Some(g) = t.ad_group_mut(&id) {
        g.external_directory_object_id = None;
    }
    // Adopted, not made by this writeback: no join yet.
    t.joins.clear();
    let plan = t.cycle();
    let [op] = &plan.operations[..] else {
        panic!("{:#?}", plan.operations)
    };
    assert_eq!(&*op.reason, "anchor msDS-ExternalDirectoryObjectId added");
    assert!(outcome(&plan, &id).drift.is_empty());
    assert!(t.plan().is_empty());
}

#[test]
fn anchor_changed_by_hand_is_put_back_as_drift() {
    let (mut t, id) = written_team();
    if let Some(g) = t.ad_group_mut(&id) {
        g.admin_description = Some("edited".into());
    }
    let plan = t.cycle();
    let [op] = &plan.operations[..] else {
        panic!("{:#?}", plan.operations)
    };
    assert!(
        op.reason.starts_with("drift: anchor adminDescription"),
        "{}",
        op.reason
    );
    assert_eq!(outcome(&plan, &id).drift.len(), 1);
    assert!(t.plan().is_empty());
}

#[test]
fn large_tenant_is_planned_and_converges() {
    let mut t = Tenant::new();
    for n in 0..400 {
        t = t.user_in_ad(synced_user(&uid(n), &format!("User {n}")));
    }
    for g in 0..1_000u32 {
        let members: Vec<String> = (0..20).map(|k| uid((g * 7 + k) % 400)).collect();
        let mut refs: Vec<(MemberKind, &str)> = members
            .iter()
            .map(|m| (MemberKind::User, m.as_str()))
            .collect();
        let nested = gid(g.saturating_sub(1));
        if g > 0 {
            refs.push((MemberKind::Group, nested.as_str()));
        }
        t = t.group(with_members(m365(&gid(g), &format!("Team {g}")), &refs));
    }
    let started = std::time::Instant::now();
    let plan = t.plan();
    eprintln!("planned 1,000 groups in {:?}", started.elapsed());
    let (ad, joins) = apply(&plan, &t.ad, &t.joins);
    eprintln!("applied in {:?}", started.elapsed());
    t.ad = ad;
    t.joins = joins;
    assert_eq!(plan.counts().creates, 1_000);
    assert_eq!(plan.counts().member_adds, 1_000 * 20 + 999);
    assert!(t.plan().is_empty());
    eprintln!("planned again in {:?}", started.elapsed());
}

#[test]
fn member_changes_made_in_the_cloud_are_not_reported_as_drift() {
    let (mut t, id) = member_tenant();
    t = t
        .user_in_ad(synced_user(&uid(1), "Ann"))
        .user_in_ad(synced_user(&uid(2), "Bob"));
    add_member(&mut t, &id, MemberKind::User, &uid(1));
    t.cycle();
    add_member(&mut t, &id, MemberKind::User, &uid(2));
    let plan = t.cycle();
    assert_eq!(plan.operations.len(), 1);
    assert!(
        plan.operations[0].reason.starts_with("members: "),
        "{}",
        plan.operations[0].reason
    );
    assert!(outcome(&plan, &id).drift.is_empty());
}

/// A member whose AD account appears after the group was written, or a groupType that
/// differs, in a group AD did not change since the last cycle: nobody changed it by hand,
/// so it is put right without being called drift. In a group AD changed, it is drift;
/// when AD's changes are not known (a full read), the cloud side alone decides, as before.
#[test]
fn a_difference_in_a_group_ad_did_not_change_is_no_drift() {
    let (mut t, id) = member_tenant();
    let late = synced_user(&uid(1), "Late");
    t = t.user(late.clone());
    add_member(&mut t, &id, MemberKind::User, &late.id);
    t.cycle();
    let guid = t.ad_group(&id).expect("written").guid.clone();
    assert!(t.ad_group(&id).expect("written").members.is_empty());
    // The account appears in AD; nothing changed in the cloud.
    t = t.user_in_ad(late);
    let quiet = t.plan_knowing_ad_changed(&[]);
    let [op] = &quiet.operations[..] else {
        panic!("{:#?}", quiet.operations)
    };
    assert_eq!(op.action.name(), "add-members");
    assert!(op.reason.starts_with("members: "), "{}", op.reason);
    assert!(outcome(&quiet, &id).drift.is_empty());
    let by_hand = t.plan_knowing_ad_changed(&[&guid.to_ascii_uppercase()]);
    assert!(by_hand.operations[0].reason.starts_with("drift: "));
    assert_eq!(outcome(&by_hand, &id).drift.len(), 1);
    let unknown = t.plan();
    assert_eq!(unknown.operations, by_hand.operations);

    // groupType: drift only when AD changed the group.
    let (mut t, id) = written_team();
    if let Some(g) = t.ad_group_mut(&id) {
        g.group_type = GROUP_TYPE_GLOBAL;
    }
    let guid = t.ad_group(&id).expect("written").guid.clone();
    let quiet = t.plan_knowing_ad_changed(&[]);
    assert_eq!(quiet.operations.len(), 1);
    assert!(
        !quiet.operations[0].reason.contains("drift"),
        "{}",
        quiet.operations[0].reason
    );
    assert!(outcome(&quiet, &id).drift.is_empty());
    let by_hand = t.plan_knowing_ad_changed(&[&guid]);
    assert!(by_hand.operations[0]
        .reason
        .contains("drift: groupType changed by hand"));
    assert_eq!(
        quiet.operations[0].action, by_hand.operations[0].action,
        "the same fix"
    );
}

#[test]
fn a_group_whose_anchors_were_cleared_by_hand_is_still_owned_through_its_join() {
    let (mut t, id) = written_team();
    if let Some(g) = t.ad_group_mut(&id) {
        g.external_directory_object_id = None;
        g.admin_description = None;
    }
    let plan = t.cycle();
    assert!(plan.foreign.is_empty(), "{:?}", plan.foreign);
    let [op] = &plan.operations[..] else {
        panic!("{:#?}", plan.operations)
    };
    assert_eq!(op.action.name(), "modify");
    assert_eq!(
        outcome(&plan, &id).drift.len(),
        2,
        "{:?}",
        outcome(&plan, &id).drift
    );
    assert!(t.plan().is_empty());
}

// ---- member class (SPEC §10): a member is written only as an object of its own class

const DOMAIN_ADMINS: &str = "CN=Domain Admins,CN=Users,DC=lab,DC=example,DC=test";

/// Every member value the plan would write, lower-case.
fn written_values(plan: &Plan) -> Vec<String> {
    plan.operations
        .iter()
        .flat_map(|op| match &op.action {
            Action::Create { members, .. } | Action::AddMembers { members, .. } => members.clone(),
            _ => Vec::new(),
        })
        .map(|m| m.to_lowercase())
        .collect()
}

/// `member` of group `id` is refused: not written anywhere, its fate not Written, and the
/// group carries an error an admin sees in status.
fn assert_refused(plan: &Plan, id: &str, member: &str, target_dn: &str) {
    assert!(
        !written_values(plan).contains(&target_dn.to_lowercase()),
        "{target_dn} must not be written: {:#?}",
        plan.operations
    );
    let fate = fate_of(plan, id, member);
    assert!(!matches!(fate, Fate::Written { .. }), "{fate:?}");
    assert!(
        matches!(fate, Fate::ClassMismatch(ref m) if &*m.dn == target_dn),
        "{fate:?}"
    );
    let errors = &outcome(plan, id).errors;
    assert!(
        errors
            .iter()
            .any(|e| e.contains("not written") && e.contains(target_dn)),
        "{errors:?}"
    );
}

/// A synced user (whose AD object is Ann) added to the member tenant, plus `mallory`.
fn tenant_with_mallory(mallory: wb_model::CloudUser) -> (Tenant, String) {
    let (mut t, id) = member_tenant();
    t = t.user_in_ad(synced_user(&uid(1), "Ann"));
    add_member(&mut t, &id, MemberKind::User, &uid(1));
    let m = mallory.id.clone();
    t = t.user(mallory);
    add_member(&mut t, &id, MemberKind::User, &m);
    (t, id)
}

fn mallory() -> wb_model::CloudUser {
    let mut u = synced_user(&uid(66), "Mallory");
    u.on_premises_security_identifier = None;
    u.on_premises_distinguished_name = None;
    u
}

#[test]
fn a_user_whose_sid_names_a_group_does_not_nest_that_group() {
    let mut u = mallory();
    u.on_premises_security_identifier = Some("S-1-5-21-1-2-3-512".into());
    let (mut t, id) = tenant_with_mallory(u);
    t.ad.resolutions.found.insert(
        Lookup::Sid("S-1-5-21-1-2-3-512".into()),
        group_ref(
            DOMAIN_ADMINS,
            "g-da",
            GROUP_TYPE_GLOBAL | GROUP_TYPE_SECURITY,
        ),
    );
    let plan = t.plan();
    assert_refused(&plan, &id, &uid(66), DOMAIN_ADMINS);
    assert_eq!(
        fate_of(&plan, &id, &uid(66)),
        Fate::ClassMismatch(Box::new(wb_model::ClassMismatch {
            dn: DOMAIN_ADMINS.into(),
            expected: wb_model::AdClass::User,
            found: wb_model::AdClass::Group,
        }))
    );
    assert!(fate_of(&plan, &id, &uid(66))
        .text()
        .contains("a group object, not a user"));
    assert_eq!(written_values(&plan), vec![user_dn("Ann").to_lowercase()]);
}

#[test]
fn a_user_whose_immutable_id_names_a_computer_is_not_written() {
    let mut u = mallory();
    u.on_premises_immutable_id = Some("Q29tcHV0ZXJHdWlkMTIzNA==".into());
    let (mut t, id) = tenant_with_mallory(u);
    let pc = "CN=PC-01,CN=Computers,DC=lab,DC=example,DC=test";
    t.ad.resolutions.found.insert(
        Lookup::ImmutableId("Q29tcHV0ZXJHdWlkMTIzNA==".into()),
        computer_ref(pc, "g-pc"),
    );
    let plan = t.plan();
    assert_refused(&plan, &id, &uid(66), pc);
}

#[test]
fn a_user_whose_dn_names_a_group_is_not_written() {
    let mut u = mallory();
    let admins = "CN=Administrators,CN=Builtin,DC=lab,DC=example,DC=test";
    u.on_premises_distinguished_name = Some(admins.into());
    let (mut t, id) = tenant_with_mallory(u);
    t.ad.resolutions.found.insert(
        Lookup::Dn(admins.into()),
        group_ref(
            admins,
            "g-adm",
            GROUP_TYPE_DOMAIN_LOCAL | GROUP_TYPE_SECURITY,
        ),
    );
    let plan = t.plan();
    assert_refused(&plan, &id, &uid(66), admins);
}

#[test]
fn the_first_lookup_that_finds_the_wrong_class_refuses_the_member_even_if_a_later_one_is_a_user() {
    let mut u = mallory();
    u.on_premises_security_identifier = Some("S-1-5-21-1-2-3-512".into());
    u.on_premises_distinguished_name = Some(user_dn("Mallory"));
    let (mut t, id) = tenant_with_mallory(u);
    t.ad.resolutions.found.insert(
        Lookup::Sid("S-1-5-21-1-2-3-512".into()),
        group_ref(
            DOMAIN_ADMINS,
            "g-da",
            GROUP_TYPE_GLOBAL | GROUP_TYPE_SECURITY,
        ),
    );
    t.ad.resolutions.found.insert(
        Lookup::Dn(user_dn("Mallory")),
        user_ref(&user_dn("Mallory"), "g-m"),
    );
    let plan = t.plan();
    assert_refused(&plan, &id, &uid(66), DOMAIN_ADMINS);
    assert!(!written_values(&plan).contains(&user_dn("Mallory").to_lowercase()));
}

#[test]
fn a_group_synced_from_ad_whose_sid_names_a_user_is_not_written() {
    let (mut t, id) = member_tenant();
    let mut synced = security(&gid(30), "Synced but a user");
    synced.on_premises_sync_enabled = Some(true);
    synced.on_premises_security_identifier = Some("S-1-5-21-1-2-3-1105".into());
    t = t.group(synced);
    add_member(&mut t, &id, MemberKind::Group, &gid(30));
    t.ad.resolutions.found.insert(
        Lookup::Sid("S-1-5-21-1-2-3-1105".into()),
        user_ref(&user_dn("Ann"), "g-ann"),
    );
    let plan = t.plan();
    assert_refused(&plan, &id, &gid(30), &user_dn("Ann"));
    assert!(matches!(
        fate_of(&plan, &id, &gid(30)),
        Fate::ClassMismatch(m) if (&m.expected, &m.found)
            == (&wb_model::AdClass::Group, &wb_model::AdClass::User)
    ));
}

#[test]
fn an_owner_resolving_to_a_group_or_a_computer_never_becomes_managed_by() {
    let (mut t, id) = member_tenant();
    t.config.write_owners = true;
    let mut to_group = mallory();
    to_group.id = uid(1);
    to_group.on_premises_security_identifier = Some("S-1-5-21-1-2-3-512".into());
    let mut to_pc = mallory();
    to_pc.id = uid(2);
    to_pc.on_premises_distinguished_name = Some("CN=PC-01,DC=lab,DC=example,DC=test".into());
    t = t.user(to_group).user(to_pc);
    t.ad.resolutions.found.insert(
        Lookup::Sid("S-1-5-21-1-2-3-512".into()),
        group_ref(
            DOMAIN_ADMINS,
            "g-da",
            GROUP_TYPE_GLOBAL | GROUP_TYPE_SECURITY,
        ),
    );
    t.ad.resolutions.found.insert(
        Lookup::Dn("CN=PC-01,DC=lab,DC=example,DC=test".into()),
        computer_ref("CN=PC-01,DC=lab,DC=example,DC=test", "g-pc"),
    );
    if let Some(g) = t.cloud.groups.get_mut(&id) {
        for n in [1, 2] {
            g.owners.insert(wb_model::MemberRef {
                kind: MemberKind::User,
                id: uid(n).into(),
            });
        }
    }
    let plan = t.plan();
    let Action::Create { attrs, .. } = &plan.operations[0].action else {
        panic!()
    };
    assert!(!attrs.contains_key("managedBy"), "{attrs:?}");
}

// ---- hostile names (SPEC §10): lengths in UTF-16 units, ids, collisions

fn utf16(s: &str) -> usize {
    s.encode_utf16().count()
}

fn create_attrs(
    plan: &Plan,
    id: &str,
) -> std::collections::BTreeMap<std::borrow::Cow<'static, str>, wb_model::AttrValues> {
    ops_of(plan, id)
        .iter()
        .find_map(|op| match &op.action {
            Action::Create { attrs, .. } => Some(attrs.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no create for {id}: {:#?}", plan.operations))
}

#[test]
fn names_ad_counts_in_utf16_units_are_cut_to_fit_and_stay_put() {
    let names = [
        "😀".repeat(30),
        "\u{20000}".repeat(26),
        "x".repeat(300),
        "😀".repeat(200),
    ];
    let mut t = Tenant::new();
    for (n, name) in names.iter().enumerate() {
        let mut g = m365(&gid(n as u32 + 1), name);
        g.description = Some("😀".repeat(300));
        t = t.group(g);
    }
    let plan = t.cycle();
    for (n, name) in names.iter().enumerate() {
        let attrs = create_attrs(&plan, &gid(n as u32 + 1));
        let cn = &attrs["cn"][0];
        assert!(utf16(cn) <= 64, "cn {cn:?} has {} units", utf16(cn));
        let display = &attrs["displayName"][0];
        assert!(
            utf16(display) <= 256,
            "displayName has {} units",
            utf16(display)
        );
        assert!(name.starts_with(display.as_str()));
        let description = &attrs["description"][0];
        assert!(utf16(description) <= 448, "{}", utf16(description));
        let sam = &attrs["sAMAccountName"][0];
        assert!(utf16(sam) <= 64, "{sam:?}");
    }
    assert_eq!(
        create_attrs(&plan, &gid(3))["displayName"][0],
        "x".repeat(256)
    );
    assert_eq!(
        create_attrs(&plan, &gid(4))["displayName"][0],
        "😀".repeat(128)
    );
    assert_eq!(
        create_attrs(&plan, &gid(1))["cn"][0],
        format!("{}_{}", "😀".repeat(25), &gid(1)[24..])
    );
    let second = t.plan();
    assert!(second.is_empty(), "{:#?}", second.operations);
}

#[test]
fn control_and_bidi_characters_never_reach_cn_or_sam_account_name() {
    let id = gid(1);
    let mut t = Tenant::new().group(m365(
        &id,
        "Pay\u{202E}roll\u{0}\u{1}\u{7f}\u{85}\u{2066}Team\n",
    ));
    let plan = t.cycle();
    let attrs = create_attrs(&plan, &id);
    let bad =
        |c: char| c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    for attr in ["cn", "sAMAccountName"] {
        assert!(
            !attrs[attr][0].chars().any(bad),
            "{attr}: {:?}",
            attrs[attr][0]
        );
    }
    assert_eq!(attrs["cn"][0], format!("PayrollTeam_{}", &id[24..]));
    assert!(
        !attrs["displayName"][0].contains('\0'),
        "AD refuses NUL in displayName"
    );
    assert!(t.plan().is_empty());
}

#[test]
fn a_name_with_nothing_left_after_stripping_still_gets_a_valid_cn() {
    let id = gid(1);
    let mut t = Tenant::new().group(m365(&id, "\u{202E}\u{1} \u{7}  "));
    let plan = t.cycle();
    let attrs = create_attrs(&plan, &id);
    let cn = &attrs["cn"][0];
    assert!(cn.contains(&id[24..]) && !cn.trim().is_empty(), "{cn:?}");
    assert!(!attrs["sAMAccountName"][0].is_empty());
    assert!(t.plan().is_empty());
}

#[test]
fn a_group_whose_id_is_not_a_guid_is_invalid_and_the_others_go_on() {
    let bad_ids = [
        "not-a-guid",
        "",
        "../../etc",
        "00000000-0000-4000-8000-00000000000",
        "00000000-0000-4000-8000-0000000000zz",
        "Group_00000000-0000-4000-8000-000000000001",
        "00000000,0000-4000-8000-000000000001",
    ];
    let mut t = Tenant::new().group(m365(&gid(1), "Fine"));
    for bad in bad_ids {
        t = t.group(m365(bad, "Hostile"));
    }
    let plan = t.plan();
    for bad in bad_ids {
        let o = outcome(&plan, bad);
        assert!(
            matches!(&o.decision, wb_model::Decision::Invalid { because } if because.contains("GUID")),
            "{bad:?}: {:?}",
            o.decision
        );
        assert!(ops_of(&plan, bad).is_empty(), "{bad:?}");
    }
    assert_eq!(ops_of(&plan, &gid(1)).len(), 1);
}

#[test]
fn two_groups_whose_cns_collide_get_one_group_and_one_clear_error() {
    // Same last 12 characters of the id, names equal but for case and what truncation cut.
    let a = "00000000-0000-4000-8000-00000000abcd".to_string();
    let b = "99999999-0000-4000-8000-00000000abcd".to_string();
    let mut t = Tenant::new()
        .group(m365(&a, &format!("{}Alpha", "Q".repeat(51))))
        .group(m365(&b, &format!("{}beta", "q".repeat(51))));
    let plan = t.cycle();
    let created: Vec<&str> = [&a, &b]
        .into_iter()
        .filter(|id| !ops_of(&plan, id).is_empty())
        .map(String::as_str)
        .collect();
    assert_eq!(created.len(), 1, "{:#?}", plan.operations);
    let other = if created[0] == a { &b } else { &a };
    let errors = &outcome(&plan, other).errors;
    assert!(
        errors.iter().any(|e| e.contains(created[0])),
        "the error names the group that holds the DN: {errors:?}"
    );
    // Converges: the next plan has nothing to do but the same error.
    assert!(t.plan().is_empty());
}

#[test]
fn taken_sam_account_names_move_on_to_the_next_candidate() {
    let id = gid(1);
    let mut t = Tenant::new().group(m365(&id, "Team"));
    let candidates =
        wb_engine::naming::sam_account_name_candidates(&format!("Team_{}", &id[24..]), &id);
    for (n, taken) in candidates[..2].iter().enumerate() {
        let mut other = foreign_group(&format!("Elsewhere{n}"), OU, &format!("guid-f{n}"));
        other.sam_account_name = Some(taken.to_uppercase());
        t.ad.groups.push(other);
    }
    let plan = t.plan();
    let Action::Create {
        attrs,
        sam_account_name_fallbacks,
        ..
    } = &plan.operations[0].action
    else {
        panic!()
    };
    assert_eq!(attrs["sAMAccountName"], vec![candidates[2].clone()]);
    // The exporter tries the candidates after the one chosen, derived from the plan.
    assert!(sam_account_name_fallbacks.is_empty());
    assert_eq!(
        wb_engine::naming::sam_account_name_fallbacks(&attrs["cn"][0], &id, &candidates[2])[..],
        candidates[3..]
    );
}

// ---- Cloud-managed AD groups (Group Source of Authority) and devices ----

const SHARES: &str = "OU=Shares,DC=lab,DC=example,DC=test";
const SOA_SID: &str = "S-1-5-21-1-2-3-4101";

/// A cloud-managed AD group (converted from synced) with one synced member (Ann, in AD),
/// and its AD group: global security, outside the managed OUs, with Ann and Old as members.
fn soa_tenant() -> (Tenant, String) {
    let id = gid(40);
    let mut g = security(&id, "Share-Finance");
    g.on_premises_security_identifier = Some(SOA_SID.into());
    g.cloud_managed = Some(true);
    let ann = synced_user(&uid(1), "Ann");
    let mut t = Tenant::new()
        .user_in_ad(ann)
        .group(with_members(g, &[(MemberKind::User, &uid(1))]));
    t.ad.groups.push(AdGroup {
        dn: format!("CN=Share-Finance,{SHARES}"),
        guid: "guid-share".into(),
        sid: Some(SOA_SID.into()),
        cn: "Share-Finance".into(),
        sam_account_name: Some("Share-Finance".into()),
        group_type: GROUP_TYPE_GLOBAL | GROUP_TYPE_SECURITY,
        members: shared([user_dn("Ann"), user_dn("Old")]),
        ..Default::default()
    });
    (t, id)
}

#[test]
fn a_cloud_managed_group_adopts_its_ad_group_in_place() {
    let (mut t, id) = soa_tenant();
    let plan = t.cycle();
    let o = outcome(&plan, &id);
    assert!(o.adopted, "{o:?}");
    assert_eq!(o.ad_state, AdState::Present);
    assert_eq!(
        o.ad_dn.as_deref(),
        Some(format!("CN=Share-Finance,{SHARES}").as_str())
    );
    assert!(o.drift.is_empty(), "an adoption is no drift: {:?}", o.drift);
    let ops = ops_of(&plan, &id);
    assert!(
        ops.iter().all(|op| !matches!(
            op.action,
            Action::Create { .. } | Action::Rename { .. } | Action::Delete { .. }
        )),
        "written in place: {ops:?}"
    );
    // Anchors and attributes in one modify, the conversion to universal in its own.
    let modifies: Vec<_> = ops
        .iter()
        .filter_map(|op| match &op.action {
            Action::Modify { guid, changes, .. } => Some((guid, changes, &op.reason)),
            _ => None,
        })
        .collect();
    assert_eq!(modifies.len(), 2, "{modifies:?}");
    assert!(modifies[0].1.iter().any(|c| c.attr == "adminDescription"));
    assert!(
        modifies[0].2.starts_with("adopted in place"),
        "{}",
        modifies[0].2
    );
    assert_eq!(modifies[1].1.len(), 1);
    assert_eq!(modifies[1].1[0].attr, "groupType");
    assert_eq!(
        modifies[1].1[0].after,
        vec![(GROUP_TYPE_UNIVERSAL | GROUP_TYPE_SECURITY).to_string()]
    );
    assert!(modifies.iter().all(|(g, _, _)| g.as_str() == "guid-share"));
    // Members follow the cloud.
    assert!(ops.iter().any(|op| matches!(&op.action, Action::RemoveMembers { members, .. } if members == &shared([user_dn("Old")]))));

    let ad = t.ad_group(&id).expect("anchored");
    assert_eq!(ad.guid, "guid-share");
    assert_eq!(ad.dn, format!("CN=Share-Finance,{SHARES}"));
    assert_eq!(ad.group_type, GROUP_TYPE_UNIVERSAL | GROUP_TYPE_SECURITY);
    let join = &t.joins[&id];
    assert!(join.adopted && join.guid == "guid-share");
    assert!(t.plan().operations.is_empty(), "converged");

    // A rename in the cloud updates displayName; CN and OU stay.
    edit(&mut t, &id, |g| {
        g.display_name = Some("Share-Finance-EU".into())
    });
    let plan = t.cycle();
    let ops = ops_of(&plan, &id);
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert!(
        matches!(&ops[0].action, Action::Modify { changes, .. } if changes[0].attr == "displayName")
    );
    assert_eq!(
        t.ad_group(&id).unwrap().dn,
        format!("CN=Share-Finance,{SHARES}")
    );
}

#[test]
fn an_adopted_group_moves_only_when_a_rule_with_an_ou_matches_it() {
    let (mut t, id) = soa_tenant();
    t.cycle();
    t.config.rules.push(Rule {
        matcher: RuleMatch {
            name_prefix: Some("Share-".into()),
            ..Default::default()
        },
        enable: None,
        ou: Some(SEC_OU.into()),
    });
    let plan = t.cycle();
    let ops = ops_of(&plan, &id);
    let Action::Rename {
        new_dn,
        new_parent,
        guid,
        ..
    } = &ops[0].action
    else {
        panic!("a move: {ops:?}")
    };
    assert_eq!(new_dn, &format!("CN=Share-Finance,{SEC_OU}"), "CN kept");
    assert_eq!(new_parent.as_deref(), Some(SEC_OU));
    assert_eq!(guid, "guid-share");
}

#[test]
fn a_protected_ad_group_is_never_adopted() {
    for protect in ["adminCount", "critical", "rid"] {
        let (mut t, id) = soa_tenant();
        let ad = &mut t.ad.groups[0];
        match protect {
            "adminCount" => ad.admin_count = true,
            "critical" => ad.critical = true,
            _ => {
                ad.sid = Some("S-1-5-21-1-2-3-512".into());
                t.cloud
                    .groups
                    .get_mut(&id)
                    .unwrap()
                    .on_premises_security_identifier = Some("S-1-5-21-1-2-3-512".into());
            }
        }
        let plan = t.plan();
        assert!(
            ops_of(&plan, &id).is_empty(),
            "{protect}: {:?}",
            plan.operations
        );
        let o = outcome(&plan, &id);
        assert!(!o.adopted);
        assert!(
            o.errors
                .iter()
                .any(|e| e.contains("protected") && e.contains("never adopts")),
            "{protect}: {:?}",
            o.errors
        );
        assert!(plan
            .foreign
            .iter()
            .any(|f| f.reason.starts_with("protected object")));
    }
}

#[test]
fn a_cloud_managed_group_whose_ad_group_is_missing_or_taken_gets_no_new_group() {
    let (mut t, id) = soa_tenant();
    t.ad.groups.clear();
    let plan = t.plan();
    assert!(
        ops_of(&plan, &id).is_empty(),
        "never created anew: {:?}",
        plan.operations
    );
    assert!(outcome(&plan, &id).errors[0].contains("was not found in AD"));

    let (mut t, id) = soa_tenant();
    t.ad.groups[0].admin_description = Some(format!("Group_{}", gid(41)));
    let plan = t.plan();
    assert!(ops_of(&plan, &id).is_empty());
    assert!(outcome(&plan, &id).errors[0].contains("belongs to another group"));
}

#[test]
fn a_group_flipped_back_leaves_its_adopted_ad_group_orphaned_never_deleted() {
    let (mut t, id) = soa_tenant();
    t.cycle();
    t.config.delete_out_of_scope = true;
    edit(&mut t, &id, |g| g.cloud_managed = Some(false));
    let plan = t.plan();
    let o = outcome(&plan, &id);
    assert_eq!(o.ad_state, AdState::Orphaned);
    assert!(o.adopted);
    assert!(plan.operations.is_empty(), "{:?}", plan.operations);
    // Gone from the cloud altogether: still kept.
    t.cloud.groups.remove(&id);
    let plan = t.plan();
    assert!(plan.operations.is_empty(), "{:?}", plan.operations);
    assert!(plan.notices.iter().any(|n| n.contains("was adopted")));
}

#[test]
fn a_hybrid_device_is_written_as_its_computer_account_and_others_are_not() {
    let (mut t, id) = member_tenant();
    let pc = wb_model::CloudDevice {
        id: uid(1),
        display_name: Some("PC-0001".into()),
        on_premises_sync_enabled: Some(true),
        on_premises_security_identifier: Some("S-1-5-21-1-2-3-6001".into()),
        ..Default::default()
    };
    let phone = wb_model::CloudDevice {
        id: uid(2),
        display_name: Some("Phone".into()),
        ..Default::default()
    };
    let odd = wb_model::CloudDevice {
        id: uid(3),
        on_premises_sync_enabled: Some(true),
        on_premises_security_identifier: Some("S-1-5-21-1-2-3-6003".into()),
        ..Default::default()
    };
    for d in [pc, phone, odd] {
        add_member(&mut t, &id, MemberKind::Device, &d.id);
        t.cloud.devices.insert(d.id.clone(), d);
    }
    let pc_dn = "CN=PC-0001,OU=Computers,DC=lab,DC=example,DC=test";
    t.ad.resolutions.found.insert(
        Lookup::Sid("S-1-5-21-1-2-3-6001".into()),
        computer_ref(pc_dn, "guid-pc"),
    );
    t.ad.resolutions.found.insert(
        Lookup::Sid("S-1-5-21-1-2-3-6003".into()),
        user_ref(&user_dn("Eve"), "guid-eve"),
    );
    assert!(lookups(&t.cloud, &t.config).contains(&Lookup::Sid("S-1-5-21-1-2-3-6001".into())));
    let plan = t.plan();
    assert!(matches!(fate_of(&plan, &id, &uid(1)), Fate::Written { dn, .. } if &*dn == pc_dn));
    assert_eq!(fate_of(&plan, &id, &uid(2)), Fate::CloudOnlyDevice);
    assert!(matches!(
        fate_of(&plan, &id, &uid(3)),
        Fate::ClassMismatch(_)
    ));
    let Action::Create { members, .. } = &plan.operations[0].action else {
        panic!()
    };
    assert_eq!(members, &shared([pc_dn.to_string()]));
}

/// DNs as plans and AD images hold them (shared strings).
fn shared<const N: usize>(dns: [String; N]) -> Vec<std::sync::Arc<str>> {
    dns.into_iter().map(Into::into).collect()
}
