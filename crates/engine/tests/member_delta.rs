//! Groups planned from their member delta (`plan_groups_with`): after a converged cycle,
//! users added to and removed from groups (with, at random, users changed, found
//! elsewhere, written as another user's DN, of the wrong class, and groups changed by
//! hand in AD) give the full plan's operations, and the full plan's outcomes slimmed.

mod fixture;

use fixture::*;
use proptest::collection::vec;
use proptest::prelude::*;
use std::collections::BTreeSet;
use wb_engine::{plan_groups_with, touched_parts, Changes, Input};
use wb_model::{
    AdObjectRef, CloudSnapshot, GroupOutcome, Lookup, MemberKind, MemberRef, Plan,
    GROUP_TYPE_GLOBAL, GROUP_TYPE_SECURITY,
};

const USERS_N: usize = 8;
const GROUPS_N: usize = 3;

/// A user: synced, found in AD, found by which lookup, written as another user's object
/// (two cloud users, one AD account), found as a group (the wrong class).
#[derive(Debug, Clone, Copy)]
struct UserSpec {
    synced: bool,
    found: bool,
    by: u8,
    twin: Option<u8>,
    wrong_class: bool,
}

fn user_spec() -> impl Strategy<Value = UserSpec> {
    (
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.85),
        0u8..3,
        prop::option::weighted(0.15, 0u8..3),
        prop::bool::weighted(0.05),
    )
        .prop_map(|(synced, found, by, twin, wrong_class)| UserSpec {
            synced,
            found,
            by,
            twin,
            wrong_class,
        })
}

fn build(
    users: &[UserSpec],
    members: &[Vec<bool>],
    nests: bool,
) -> (CloudSnapshot, Vec<(Lookup, AdObjectRef)>) {
    let mut cloud = CloudSnapshot::default();
    let mut found = Vec::new();
    for (n, spec) in users.iter().enumerate() {
        let id = uid(n as u32);
        let name = format!("User {n}");
        if !spec.synced {
            std::sync::Arc::make_mut(&mut cloud.users)
                .insert(id.clone(), cloud_only_user(&id, &name));
            continue;
        }
        let mut u = synced_user(&id, &name);
        u.on_premises_immutable_id = Some(format!("imm{n}AAAAAAAAAAAAAAAAAA=="));
        // The image resolves the users of written groups alone: a user joining its first
        // group brings new lookups.
        let member = members.iter().any(|m| m[n]);
        if spec.found && member {
            let lookup = match spec.by {
                0 => Lookup::Sid(
                    u.on_premises_security_identifier
                        .clone()
                        .unwrap_or_default(),
                ),
                1 => Lookup::ImmutableId(u.on_premises_immutable_id.clone().unwrap_or_default()),
                _ => Lookup::Dn(user_dn(&name)),
            };
            // A twin is written as the AD account of user 0, 1 or 2.
            let (dn, guid) = match spec.twin {
                Some(t) if usize::from(t) != n => {
                    (user_dn(&format!("User {t}")), format!("guid-user-{t}"))
                }
                _ => (user_dn(&name), format!("guid-user-{n}")),
            };
            let object = if spec.wrong_class {
                group_ref(&dn, &guid, GROUP_TYPE_GLOBAL | GROUP_TYPE_SECURITY)
            } else {
                user_ref(&dn, &guid)
            };
            found.push((lookup, object));
        }
        std::sync::Arc::make_mut(&mut cloud.users).insert(id, u);
    }
    for (i, member_of) in members.iter().enumerate() {
        let id = gid(i as u32);
        let mut g = enabled(security(&id, &format!("Group {i}")), Some(true), None);
        g.members = member_of
            .iter()
            .enumerate()
            .filter(|(_, m)| **m)
            .map(|(n, _)| MemberRef {
                kind: MemberKind::User,
                id: uid(n as u32).into(),
            })
            .collect();
        if nests && i == 0 {
            g.members.insert(MemberRef {
                kind: MemberKind::Group,
                id: gid(1).into(),
            });
        }
        cloud.groups.insert(id, g);
    }
    (cloud, found)
}

/// What a cycle after `change` plans: the full plan, the plan from what changed with the
/// last outcomes, the ids of the groups touched through their own image alone, and how
/// many groups were planned from their member delta.
fn plan_after(
    users: &[UserSpec],
    members: &[Vec<bool>],
    nests: bool,
    change: impl FnOnce(&mut Vec<UserSpec>, &mut Vec<Vec<bool>>),
    hand_added: Option<usize>,
    slim_last: bool,
) -> (Plan, Plan, BTreeSet<String>, usize) {
    let (cloud, found) = build(users, members, nests);
    let mut t = Tenant {
        cloud,
        ..Tenant::new()
    };
    t.ad.resolutions.found.extend(found);
    t.cycle();
    let converged = t.plan();
    assert!(converged.operations.is_empty(), "the first cycle converges");

    let (mut users_after, mut members_after) = (users.to_vec(), members.to_vec());
    change(&mut users_after, &mut members_after);
    let mut ad_guids = BTreeSet::new();
    if let Some(i) = hand_added {
        let n = t.ad.groups.len();
        if n > 0 {
            let g = &mut t.ad.groups[i % n];
            g.members.push(user_dn("Hand Added").into());
            ad_guids.insert(g.guid.clone());
        }
    }
    let (cloud, found) = build(&users_after, &members_after, nests);
    let previous_found = std::mem::take(&mut t.ad.resolutions.found);
    t.ad.resolutions.found = found.into_iter().collect();
    let previous = t.previous.clone().unwrap_or_default();
    let changes = Changes {
        everything: false,
        groups: changed_ids(&previous.groups, &cloud.groups),
        users: changed_ids(&previous.users, &cloud.users),
        ad_guids,
        lookups: changed_ids(&previous_found, &t.ad.resolutions.found),
    };
    t.cloud = cloud;
    let input = Input {
        cloud: &t.cloud,
        ad: &t.ad,
        joins: &t.joins,
        config: &t.config,
        previous: t.previous.as_ref(),
        ad_changed: Some(&changes.ad_guids),
    };
    let touched = touched_parts(&input, &changes);
    let last: Vec<GroupOutcome> = converged
        .groups
        .iter()
        .filter(|g| touched.alone.contains(&g.id))
        .map(|g| if slim_last { g.slimmed() } else { g.clone() })
        .collect();
    let (part, from_delta) =
        plan_groups_with(&input, &touched.all, &last.iter().collect::<Vec<_>>());
    (wb_engine::plan(&input), part, touched.alone, from_delta)
}

fn assert_same(full: &Plan, part: &Plan) -> Result<(), TestCaseError> {
    prop_assert_eq!(&part.operations, &full.operations);
    for outcome in &part.groups {
        let whole = full
            .groups
            .iter()
            .find(|g| g.id == outcome.id)
            .map(GroupOutcome::slimmed);
        prop_assert_eq!(Some(outcome.slimmed()), whole);
    }
    prop_assert_eq!(&part.foreign, &full.foreign);
    prop_assert_eq!(&part.notices, &full.notices);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn a_member_delta_plans_what_the_full_plan_plans(
        users in vec(user_spec(), USERS_N),
        members in vec(vec(prop::bool::weighted(0.5), USERS_N), GROUPS_N),
        flips in vec(vec(prop::bool::weighted(0.15), USERS_N), GROUPS_N),
        user_changes in vec(prop::option::weighted(0.08, user_spec()), USERS_N),
        hand_added in prop::option::weighted(0.1, 0usize..GROUPS_N),
        nests in prop::bool::weighted(0.2),
        slim_last in any::<bool>(),
    ) {
        let (full, part, _, _) = plan_after(
            &users,
            &members,
            nests,
            |u, m| {
                for (spec, change) in u.iter_mut().zip(&user_changes) {
                    if let Some(c) = change {
                        *spec = *c;
                    }
                }
                for (group, flip) in m.iter_mut().zip(&flips) {
                    for (member, f) in group.iter_mut().zip(flip) {
                        *member ^= *f;
                    }
                }
            },
            hand_added,
            slim_last,
        );
        assert_same(&full, &part)?;
    }
}

fn plain_users() -> Vec<UserSpec> {
    vec![
        UserSpec {
            synced: true,
            found: true,
            by: 0,
            twin: None,
            wrong_class: false,
        };
        USERS_N
    ]
}

#[test]
fn a_user_added_and_one_removed_are_planned_from_the_delta() {
    let members = vec![vec![true, true, true, false, false, false, false, false]; GROUPS_N];
    let (full, part, alone, from_delta) = plan_after(
        &plain_users(),
        &members,
        false,
        |_, m| {
            m[0][0] = false;
            m[0][5] = true;
        },
        None,
        true,
    );
    assert_same(&full, &part).unwrap();
    assert_eq!(alone, BTreeSet::from([gid(0)]));
    assert_eq!(from_delta, 1);
    let outcome = part
        .groups
        .iter()
        .find(|g| g.id == gid(0))
        .expect("planned");
    assert_eq!((outcome.member_count, outcome.written_count), (3, 3));
    let counts = part.counts();
    assert_eq!((counts.member_adds, counts.member_removes), (1, 1));
}

#[test]
fn a_user_who_leaves_while_a_twin_stays_is_planned_in_full_and_keeps_the_value() {
    // Users 0 and 3 are written as the same AD account: AD holds it once.
    let mut users = plain_users();
    users[3].twin = Some(0);
    let members = vec![vec![true, true, false, true, false, false, false, false]; GROUPS_N];
    let (full, part, _, from_delta) =
        plan_after(&users, &members, false, |_, m| m[0][0] = false, None, true);
    assert_same(&full, &part).unwrap();
    assert_eq!(from_delta, 0);
    assert!(part.operations.is_empty(), "{:#?}", part.operations);
}

#[test]
fn a_group_changed_by_hand_is_planned_in_full() {
    let members = vec![vec![true, true, false, false, false, false, false, false]; GROUPS_N];
    let (full, part, alone, from_delta) = plan_after(
        &plain_users(),
        &members,
        false,
        |_, m| m[0][4] = true,
        Some(0),
        true,
    );
    assert_same(&full, &part).unwrap();
    assert!(!alone.contains(&gid(0)));
    assert_eq!(from_delta, 0);
}
