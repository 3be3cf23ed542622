//! Planner invariants over random tenants (proptest): no operation on a foreign object,
//! no delete without a join, and idempotence — the plan after applying a plan is empty.

mod fixture;

use fixture::*;
use proptest::collection::vec;
use proptest::prelude::*;
use std::collections::BTreeSet;
use wb_engine::naming::dn_eq;
use wb_engine::{
    plan_groups, plan_groups_with, touched_by, touched_parts, Changes, EngineConfig, Input, Naming,
    Rule, RuleKind, RuleMatch,
};
use wb_model::{
    Action, AdObjectRef, CloudDeletion, CloudGroup, CloudSnapshot, Lookup, MemberKind, MemberRef,
    Plan, GROUP_TYPE_DOMAIN_LOCAL, GROUP_TYPE_GLOBAL, GROUP_TYPE_SECURITY,
};

const GROUPS: u32 = 6;
const USERS_N: u32 = 6;

#[derive(Debug, Clone)]
struct GroupSpec {
    kind: u8,
    is_enabled: Option<bool>,
    group_type: u8,
    name: String,
    soft_deleted: bool,
    present: bool,
    users: Vec<u32>,
    groups: Vec<u32>,
    owners: Vec<u32>,
    description: Option<String>,
}

fn group_spec() -> impl Strategy<Value = GroupSpec> {
    (
        0u8..6,
        prop_oneof![Just(None), Just(Some(true)), Just(Some(false))],
        0u8..6,
        r##"[ A-Za-z,+"#;=<>\\é]{0,16}"##,
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.85),
        vec(0..USERS_N, 0..4),
        vec(0..GROUPS, 0..3),
        vec(0..USERS_N, 0..2),
        prop::option::of("[a-z ]{0,10}"),
    )
        .prop_map(
            |(
                kind,
                is_enabled,
                group_type,
                name,
                soft_deleted,
                present,
                users,
                groups,
                owners,
                description,
            )| GroupSpec {
                kind,
                is_enabled,
                group_type,
                name,
                soft_deleted,
                present,
                users,
                groups,
                owners,
                description,
            },
        )
}

fn build_group(i: u32, s: &GroupSpec) -> CloudGroup {
    let id = gid(i);
    let mut g = match s.kind {
        0 | 1 => m365(&id, &s.name),
        2 => security(&id, &s.name),
        3 => {
            let mut g = security(&id, &s.name);
            g.mail_enabled = Some(true);
            g.security_enabled = Some(false);
            g
        }
        4 => {
            let mut g = security(&id, &s.name);
            g.on_premises_sync_enabled = Some(true);
            g.on_premises_security_identifier = Some(format!("S-1-5-21-7-7-7-{i}"));
            g
        }
        _ => {
            let mut g = security(&id, &s.name);
            g.mail_enabled = Some(true);
            g
        }
    };
    let group_type = match s.group_type {
        1 => Some("universalDistributionGroup"),
        2 => Some("universalSecurityGroup"),
        3 => Some("universalMailEnabledSecurityGroup"),
        4 => Some("bogusGroupType"),
        _ => None,
    };
    g = enabled(g, s.is_enabled, group_type);
    g.description = s.description.clone();
    g.deleted = s.soft_deleted.then_some(CloudDeletion::SoftDeleted);
    g.members = s
        .users
        .iter()
        .map(|u| MemberRef {
            kind: MemberKind::User,
            id: uid(*u).into(),
        })
        .chain(s.groups.iter().filter(|n| **n != i).map(|n| MemberRef {
            kind: MemberKind::Group,
            id: gid(*n).into(),
        }))
        .chain(
            std::iter::once(MemberRef {
                kind: MemberKind::Device,
                id: uid(99).into(),
            })
            .filter(|_| s.kind == 1),
        )
        .collect();
    g.owners = s
        .owners
        .iter()
        .map(|u| MemberRef {
            kind: MemberKind::User,
            id: uid(*u).into(),
        })
        .collect();
    g
}

#[derive(Debug, Clone)]
struct ConfigSpec {
    naming: bool,
    delete_out_of_scope: bool,
    write_owners: bool,
    legacy_v1: bool,
    rule: u8,
}

fn config_spec() -> impl Strategy<Value = ConfigSpec> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.15),
        0u8..4,
    )
        .prop_map(
            |(naming, delete_out_of_scope, write_owners, legacy_v1, rule)| ConfigSpec {
                naming,
                delete_out_of_scope,
                write_owners,
                legacy_v1,
                rule,
            },
        )
}

fn build_config(s: &ConfigSpec) -> EngineConfig {
    let mut c = EngineConfig::new(OU);
    c.naming = if s.naming {
        Naming::DisplayName
    } else {
        Naming::ObjectId
    };
    c.delete_out_of_scope = s.delete_out_of_scope;
    c.write_owners = s.write_owners;
    c.legacy_v1 = s.legacy_v1;
    let rule = |kind, enable, ou: Option<&str>| Rule {
        matcher: RuleMatch {
            kind: Some(kind),
            ..Default::default()
        },
        enable,
        ou: ou.map(Into::into),
    };
    match s.rule {
        1 => c
            .rules
            .push(rule(RuleKind::Security, Some(true), Some(SEC_OU))),
        2 => c
            .rules
            .push(rule(RuleKind::Microsoft365, None, Some(SEC_OU))),
        3 => c
            .rules
            .push(rule(RuleKind::Microsoft365, Some(false), None)),
        _ => {}
    }
    c
}

/// Users 0..6: (synced, found in AD, found by which lookup).
fn build_tenant(
    users: &[(bool, bool, u8)],
    groups: &[GroupSpec],
) -> (CloudSnapshot, Vec<(Lookup, AdObjectRef)>) {
    let mut cloud = CloudSnapshot::default();
    let mut found = Vec::new();
    for (n, (synced, in_ad, by)) in users.iter().enumerate() {
        let id = uid(n as u32);
        let name = format!("User {n}");
        if !synced {
            std::sync::Arc::make_mut(&mut cloud.users)
                .insert(id.clone(), cloud_only_user(&id, &name));
            continue;
        }
        let mut u = synced_user(&id, &name);
        u.on_premises_immutable_id = Some(format!("imm{n}AAAAAAAAAAAAAAAAAA=="));
        if *in_ad {
            let lookup = match by {
                0 => Lookup::Sid(
                    u.on_premises_security_identifier
                        .clone()
                        .unwrap_or_default(),
                ),
                1 => Lookup::ImmutableId(u.on_premises_immutable_id.clone().unwrap_or_default()),
                _ => Lookup::Dn(user_dn(&name)),
            };
            found.push((lookup, user_ref(&user_dn(&name), &format!("guid-user-{n}"))));
        }
        std::sync::Arc::make_mut(&mut cloud.users).insert(id, u);
    }
    for (i, s) in groups.iter().enumerate() {
        if s.present {
            let g = build_group(i as u32, s);
            if let Some(sid) = g.on_premises_security_identifier.clone() {
                let group_type = if i % 2 == 0 {
                    GROUP_TYPE_DOMAIN_LOCAL
                } else {
                    GROUP_TYPE_GLOBAL
                };
                found.push((
                    Lookup::Sid(sid),
                    AdObjectRef {
                        dn: format!("CN=Synced {i},OU=AD Groups,DC=lab,DC=example,DC=test"),
                        guid: format!("guid-synced-{i}"),
                        group_type: Some(group_type | GROUP_TYPE_SECURITY),
                        class: wb_model::AdClass::Group,
                    },
                ));
            }
            cloud.groups.insert(g.id.clone(), g);
        }
    }
    (cloud, found)
}

#[derive(Debug, Clone)]
struct Drift {
    group_type: Option<usize>,
    hand_member: Option<usize>,
    drop_member: Option<usize>,
    delete: Option<usize>,
    rename_by_hand: Option<usize>,
}

fn drift() -> impl Strategy<Value = Drift> {
    let pick = || prop::option::of(0usize..8);
    (
        pick(),
        pick(),
        pick(),
        prop::option::weighted(0.2, 0usize..8),
        pick(),
    )
        .prop_map(
            |(group_type, hand_member, drop_member, delete, rename_by_hand)| Drift {
                group_type,
                hand_member,
                drop_member,
                delete,
                rename_by_hand,
            },
        )
}

/// Changes an administrator makes by hand in AD between two cycles; returns the
/// objectGUIDs of the groups changed by hand (whose uSNChanged moves; AD's own updates of
/// `member` values naming a renamed or deleted group do not count).
fn apply_drift(t: &mut Tenant, d: &Drift) -> BTreeSet<String> {
    let mut changed = BTreeSet::new();
    let n = t.ad.groups.len();
    if n == 0 {
        return changed;
    }
    if let Some(i) = d.group_type {
        t.ad.groups[i % n].group_type = GROUP_TYPE_GLOBAL | GROUP_TYPE_SECURITY;
        changed.insert(t.ad.groups[i % n].guid.clone());
    }
    if let Some(i) = d.hand_member {
        t.ad.groups[i % n]
            .members
            .push(user_dn("Hand Added").into());
        changed.insert(t.ad.groups[i % n].guid.clone());
    }
    if let Some(i) = d.drop_member {
        t.ad.groups[i % n].members.pop();
        changed.insert(t.ad.groups[i % n].guid.clone());
    }
    if let Some(i) = d.rename_by_hand {
        let g = &mut t.ad.groups[i % n];
        let old = g.dn.clone();
        g.dn = format!("CN=Renamed by hand {i},{OU}");
        g.cn = format!("Renamed by hand {i}");
        changed.insert(g.guid.clone());
        let new = g.dn.clone();
        for other in t.ad.groups.iter_mut() {
            for m in other.members.iter_mut().filter(|m| dn_eq(m, &old)) {
                *m = new.as_str().into();
            }
        }
    }
    if let Some(i) = d.delete {
        let dn = t.ad.groups[i % n].dn.clone();
        changed.insert(t.ad.groups[i % n].guid.clone());
        t.ad.groups.remove(i % n);
        for other in t.ad.groups.iter_mut() {
            other.members.retain(|m| !dn_eq(m, &dn));
        }
    }
    changed
}

fn check_invariants(t: &Tenant, plan: &Plan) -> Result<(), TestCaseError> {
    for f in &plan.foreign {
        let guid =
            t.ad.groups
                .iter()
                .find(|g| g.dn == f.dn)
                .map(|g| g.guid.clone())
                .unwrap_or_default();
        for op in &plan.operations {
            let touched_guid = match &op.action {
                Action::Rename { guid, .. }
                | Action::Modify { guid, .. }
                | Action::RemoveMembers { guid, .. }
                | Action::Delete { guid, .. } => Some(guid.clone()),
                Action::AddMembers { guid, .. } => guid.clone(),
                Action::Create { .. } => None,
            };
            prop_assert!(
                touched_guid.as_deref() != Some(guid.as_str()),
                "{op:?} touches foreign {f:?}"
            );
            prop_assert!(!dn_eq(op.action.dn(), &f.dn), "{op:?} names foreign {f:?}");
            if let Action::Rename { new_dn, .. } = &op.action {
                prop_assert!(!dn_eq(new_dn, &f.dn), "{op:?} renames onto foreign {f:?}");
            }
        }
    }
    for op in &plan.operations {
        if let Action::Delete { guid, .. } = &op.action {
            let joined = t.joins.get(&op.group).is_some_and(|j| &j.guid == guid);
            prop_assert!(joined, "delete without a join: {op:?}");
        }
    }
    let ids: Vec<&String> = plan.groups.iter().map(|g| &g.id).collect();
    prop_assert_eq!(
        ids.len(),
        t.cloud.groups.len(),
        "one outcome per cloud group"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn plans_touch_only_owned_groups_and_converge_in_one_cycle(
        users in vec((any::<bool>(), prop::bool::weighted(0.7), 0u8..3), USERS_N as usize),
        before in vec(group_spec(), GROUPS as usize),
        after in vec(group_spec(), GROUPS as usize),
        config_before in config_spec(),
        config_after in config_spec(),
        drift in drift(),
        foreign in 0usize..3,
    ) {
        let (cloud, found) = build_tenant(&users, &before);
        let mut t = Tenant { cloud, config: build_config(&config_before), ..Tenant::new() };
        t.ad.resolutions.found.extend(found);
        for n in 0..foreign {
            let mut g = foreign_group(&format!("Foreign {n}"), OU, &format!("guid-foreign-{n}"));
            if n == 1 {
                g.admin_description = Some(format!("Group_{}", gid(77)));
            }
            t.ad.groups.push(g);
        }

        let first = t.plan();
        check_invariants(&t, &first)?;
        t.cycle();
        prop_assert!(t.plan().is_empty(), "not idempotent after the first cycle: {:#?}", t.plan().operations);

        let _ = apply_drift(&mut t, &drift);
        let (cloud, found) = build_tenant(&users, &after);
        t.cloud = cloud;
        t.ad.resolutions.found = found.into_iter().collect();
        t.config = build_config(&config_after);
        let second = t.plan();
        check_invariants(&t, &second)?;
        t.cycle();
        let third = t.plan();
        prop_assert!(third.is_empty(), "not idempotent: {:#?}\nafter {:#?}", third.operations, second.operations);
        prop_assert_eq!(t.plan(), third, "plans are deterministic");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// After a converged cycle, planning only the groups the changes touch gives the
    /// operations of the full plan (same operations, same order) and the same outcomes
    /// for the groups it plans — whatever changed: groups (properties, members, kind,
    /// enablement, names, deletion), users and their resolution, AD by hand, the config.
    #[test]
    fn planning_what_changed_gives_the_full_plan(
        users in vec((any::<bool>(), prop::bool::weighted(0.7), 0u8..3), USERS_N as usize),
        user_changes in vec(prop::option::weighted(0.15, (any::<bool>(), prop::bool::weighted(0.7), 0u8..3)), USERS_N as usize),
        before in vec(group_spec(), GROUPS as usize),
        after in vec(group_spec(), GROUPS as usize),
        keep in vec(prop::bool::weighted(0.8), GROUPS as usize),
        config_before in config_spec(),
        config_after in prop::option::weighted(0.15, config_spec()),
        drift in drift(),
        foreign in 0usize..3,
    ) {
        let (cloud, found) = build_tenant(&users, &before);
        let mut t = Tenant { cloud, config: build_config(&config_before), ..Tenant::new() };
        t.ad.resolutions.found.extend(found);
        for n in 0..foreign {
            let mut g = foreign_group(&format!("Foreign {n}"), OU, &format!("guid-foreign-{n}"));
            if n == 1 {
                g.admin_description = Some(format!("Group_{}", gid(77)));
            }
            t.ad.groups.push(g);
        }
        t.cycle();
        let converged = t.plan();
        prop_assert!(converged.is_empty(), "the first cycle converges");

        // Changes: most groups and users keep their spec, the others take a new one.
        let ad_guids = apply_drift(&mut t, &drift);
        let users_after: Vec<_> = users
            .iter()
            .zip(&user_changes)
            .map(|(u, c)| c.unwrap_or(*u))
            .collect();
        let mixed: Vec<GroupSpec> = before
            .iter()
            .zip(&after)
            .zip(&keep)
            .map(|((b, a), k)| if *k { b.clone() } else { a.clone() })
            .collect();
        let (cloud, found) = build_tenant(&users_after, &mixed);
        let previous_found = std::mem::take(&mut t.ad.resolutions.found);
        t.ad.resolutions.found = found.into_iter().collect();
        let previous = t.previous.clone().unwrap_or_default();
        let changes = Changes {
            everything: config_after.is_some(),
            groups: changed_ids(&previous.groups, &cloud.groups),
            users: changed_ids(&previous.users, &cloud.users),
            ad_guids,
            lookups: changed_ids(&previous_found, &t.ad.resolutions.found),
        };
        t.cloud = cloud;
        if let Some(c) = &config_after {
            t.config = build_config(c);
        }

        let input = Input {
            cloud: &t.cloud,
            ad: &t.ad,
            joins: &t.joins,
            config: &t.config,
            previous: t.previous.as_ref(),
            ad_changed: Some(&changes.ad_guids),
        };
        let parts = touched_parts(&input, &changes);
        let touched = touched_by(&input, &changes);
        prop_assert_eq!(&parts.all, &touched);
        prop_assert!(parts.alone.is_subset(&touched));
        // The lookups a delta needs: each lookup of the new image was needed before, or
        // comes from an object the delta touched (what a daemon's delta cycle resolves).
        if config_after.is_none() {
            let before = wb_engine::lookups(&previous, &t.config);
            let ids = |s: &BTreeSet<String>| s.iter().cloned().collect::<std::collections::HashSet<_>>();
            let added = wb_engine::lookups_of(
                &t.cloud,
                Some(&previous),
                &t.config,
                &ids(&changes.groups),
                &ids(&changes.users),
                &Default::default(),
            );
            for l in wb_engine::lookups(&t.cloud, &t.config) {
                prop_assert!(before.contains(&l) || added.contains(&l), "lookup {:?} missed", l);
            }
        }
        // The full plan of the same input (what changed in AD included).
        let full = wb_engine::plan(&input);
        let part = plan_groups(&input, &touched);
        prop_assert_eq!(&part.operations, &full.operations, "touched {:?}", touched);
        for outcome in &part.groups {
            let whole = full.groups.iter().find(|g| g.id == outcome.id);
            prop_assert_eq!(Some(outcome), whole);
        }
        // With the last outcomes of the groups touched through their own image alone, some
        // are planned from their member delta: the same operations, outcomes slimmed.
        let last: Vec<&wb_model::GroupOutcome> = converged
            .groups
            .iter()
            .filter(|g| parts.alone.contains(&g.id))
            .collect();
        let (quick, _) = plan_groups_with(&input, &touched, &last);
        prop_assert_eq!(&quick.operations, &full.operations, "touched {:?}", touched);
        for outcome in &quick.groups {
            let whole = full.groups.iter().find(|g| g.id == outcome.id).map(wb_model::GroupOutcome::slimmed);
            prop_assert_eq!(Some(outcome.slimmed()), whole);
        }
        for id in touched.iter().filter(|id| t.cloud.groups.contains_key(*id)) {
            prop_assert!(part.groups.iter().any(|g| &g.id == id), "no outcome for touched {}", id);
        }
        prop_assert_eq!(&part.foreign, &full.foreign);
        prop_assert_eq!(&part.notices, &full.notices);
        if changes.everything {
            prop_assert_eq!(&part, &full);
        }
    }
}
