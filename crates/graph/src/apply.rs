//! Folds the changes of a delta round into the cloud image: a full round rebuilds the
//! groups it lists, a delta round merges into it. Replays of a change are harmless. A group
//! leaves the image only on positive evidence: `@removed` with reason `deleted`, or
//! [`Presence::Gone`] confirmed by Graph for a group a full round did not list.

use crate::delta::{
    DeltaRound, DeviceChange, GroupChange, GroupPatch, Tristate, UserChange, UserPatch,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use wb_model::{
    CloudDeletion, CloudDevice, CloudGroup, CloudSnapshot, CloudUser, MemberKind, MemberRef,
    ObjectId,
};

/// What Graph says of a group that a full round did not list
/// ([`GraphClient::confirm_gone`](crate::GraphClient::confirm_gone)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// `GET /groups/{id}` answers 200: the round omitted a live group.
    Alive,
    /// Not a live group, but in `directory/deletedItems`: restorable.
    SoftDeleted,
    /// Neither a live group nor in deleted items: permanently deleted.
    Gone,
}

fn set<T>(field: &mut Option<T>, change: Tristate<T>) {
    if let Some(value) = change {
        *field = value;
    }
}

fn set_list<T>(field: &mut Vec<T>, change: Tristate<Vec<T>>) {
    if let Some(value) = change {
        *field = value.unwrap_or_default();
    }
}

fn apply_refs(set: &mut BTreeSet<MemberRef>, added: &[MemberRef], removed: &[MemberRef]) {
    if added.is_empty() && removed.is_empty() {
        return;
    }
    // By id: a removal entry may carry a less precise @odata.type than the addition did.
    // An added id keeps only the kind of its last addition. One pass over the set, whatever
    // the number of changes: groups reach 250,000 members.
    let removed: HashSet<&str> = removed.iter().map(|r| &*r.id).collect();
    let kinds: HashMap<&str, MemberKind> = added.iter().map(|a| (&*a.id, a.kind)).collect();
    set.retain(|m| !removed.contains(&*m.id) && kinds.get(&*m.id).is_none_or(|k| *k == m.kind));
    set.extend(
        added
            .iter()
            .filter(|a| kinds.get(&*a.id) == Some(&a.kind))
            .cloned(),
    );
}

fn apply_group_patch(g: &mut CloudGroup, p: &GroupPatch) {
    set(&mut g.display_name, p.display_name.clone());
    set(&mut g.description, p.description.clone());
    set_list(&mut g.group_types, p.group_types.clone());
    set(&mut g.mail_enabled, p.mail_enabled);
    set(&mut g.security_enabled, p.security_enabled);
    set(&mut g.mail, p.mail.clone());
    set(&mut g.mail_nickname, p.mail_nickname.clone());
    set_list(&mut g.proxy_addresses, p.proxy_addresses.clone());
    set(&mut g.on_premises_sync_enabled, p.on_premises_sync_enabled);
    set(
        &mut g.on_premises_security_identifier,
        p.on_premises_security_identifier.clone(),
    );
    if let Some(config) = &p.writeback_configuration {
        g.writeback = config.clone().unwrap_or_default();
    }
    apply_refs(&mut g.members, &p.members_added, &p.members_removed);
    apply_refs(&mut g.owners, &p.owners_added, &p.owners_removed);
    // Seen alive: a soft-deleted group that shows up again was restored.
    g.deleted = None;
}

/// Applies a group delta round to `snapshot.groups`; returns the groups of the image that a
/// full round did not list (none for a delta round).
///
/// A full round rebuilds every group it lists from what it says (a soft-deleted group keeps
/// what the previous image knew of it). A group it does not list is **kept as it was**:
/// absence is no evidence (a malformed or truncated answer looks the same); the caller asks
/// Graph about each with [`GraphClient::confirm_gone`](crate::GraphClient::confirm_gone) and
/// hands the answers to [`apply_presence`]. A delta round merges: an absent property is
/// unchanged, null clears it, a value sets it; members and owners are added and removed; a
/// soft-deleted group is kept and marked, an upsert of it restores it; a permanently
/// deleted group (`@removed` reason `deleted`) is removed.
#[must_use = "groups a full round did not list are kept until Graph confirms they are gone"]
pub fn apply_group_changes(
    snapshot: &mut CloudSnapshot,
    round: &DeltaRound<GroupChange>,
) -> Vec<ObjectId> {
    let mut previous = if round.full {
        std::mem::take(&mut snapshot.groups)
    } else {
        Default::default()
    };
    let groups = &mut snapshot.groups;
    for change in &round.changes {
        match change {
            GroupChange::Upsert(p) => {
                let g = groups.entry(p.id.clone()).or_insert_with(|| CloudGroup {
                    id: p.id.clone(),
                    ..CloudGroup::default()
                });
                apply_group_patch(g, p);
            }
            GroupChange::SoftDeleted(id) => {
                let g = groups.entry(id.clone()).or_insert_with(|| {
                    previous.get(id).cloned().unwrap_or_else(|| CloudGroup {
                        id: id.clone(),
                        ..CloudGroup::default()
                    })
                });
                g.deleted = Some(CloudDeletion::SoftDeleted);
            }
            GroupChange::Deleted(id) => {
                groups.remove(id);
                previous.remove(id);
            }
        }
    }
    let mut absent = Vec::new();
    for (id, group) in previous {
        if let std::collections::btree_map::Entry::Vacant(slot) = groups.entry(id) {
            absent.push(slot.key().clone());
            slot.insert(group);
        }
    }
    absent
}

/// Applies what Graph said of the groups a full round did not list: `Gone` leaves the image
/// (the engine then deletes its AD group), `SoftDeleted` is kept and marked, `Alive` is kept
/// as the previous image knew it.
pub fn apply_presence(snapshot: &mut CloudSnapshot, presence: &BTreeMap<ObjectId, Presence>) {
    for (id, p) in presence {
        match p {
            Presence::Gone => {
                snapshot.groups.remove(id);
            }
            Presence::SoftDeleted => {
                if let Some(g) = snapshot.groups.get_mut(id) {
                    g.deleted = Some(CloudDeletion::SoftDeleted);
                }
            }
            Presence::Alive => {}
        }
    }
}

fn apply_user_patch(u: &mut CloudUser, p: &UserPatch) {
    set(&mut u.user_principal_name, p.user_principal_name.clone());
    set(&mut u.display_name, p.display_name.clone());
    set(&mut u.on_premises_sync_enabled, p.on_premises_sync_enabled);
    set(
        &mut u.on_premises_security_identifier,
        p.on_premises_security_identifier.clone(),
    );
    set(
        &mut u.on_premises_immutable_id,
        p.on_premises_immutable_id.clone(),
    );
    set(
        &mut u.on_premises_distinguished_name,
        p.on_premises_distinguished_name.clone(),
    );
    set(
        &mut u.on_premises_sam_account_name,
        p.on_premises_sam_account_name.clone(),
    );
    set(
        &mut u.on_premises_domain_name,
        p.on_premises_domain_name.clone(),
    );
}

/// Applies a user delta round to `snapshot.users` (a full round replaces them).
pub fn apply_user_changes(snapshot: &mut CloudSnapshot, round: &DeltaRound<UserChange>) {
    if round.full {
        snapshot.users = Default::default();
    }
    if round.changes.is_empty() {
        return;
    }
    // The image's users are shared with the previous image until a change comes.
    let users = std::sync::Arc::make_mut(&mut snapshot.users);
    for change in &round.changes {
        match change {
            UserChange::Upsert(p) => {
                let u = users.entry(p.id.clone()).or_insert_with(|| CloudUser {
                    id: p.id.clone(),
                    ..CloudUser::default()
                });
                apply_user_patch(u, p);
            }
            UserChange::Deleted(id) => {
                users.remove(id);
            }
        }
    }
}

/// Applies a device delta round to `snapshot.devices` (a full round replaces them).
pub fn apply_device_changes(snapshot: &mut CloudSnapshot, round: &DeltaRound<DeviceChange>) {
    if round.full {
        snapshot.devices.clear();
    }
    for change in &round.changes {
        match change {
            DeviceChange::Upsert(p) => {
                let d = snapshot
                    .devices
                    .entry(p.id.clone())
                    .or_insert_with(|| CloudDevice {
                        id: p.id.clone(),
                        ..CloudDevice::default()
                    });
                set(&mut d.display_name, p.display_name.clone());
                set(&mut d.device_id, p.device_id.clone());
                set(&mut d.on_premises_sync_enabled, p.on_premises_sync_enabled);
                set(
                    &mut d.on_premises_security_identifier,
                    p.on_premises_security_identifier.clone(),
                );
            }
            DeviceChange::Deleted(id) => {
                snapshot.devices.remove(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wb_model::WritebackConfiguration;

    fn user(id: &str) -> MemberRef {
        MemberRef {
            kind: MemberKind::User,
            id: id.into(),
        }
    }

    fn round(full: bool, changes: Vec<GroupChange>) -> DeltaRound<GroupChange> {
        DeltaRound {
            changes,
            delta_link: "https://graph.example/beta/groups/delta?$deltatoken=x".into(),
            full,
        }
    }

    fn full_patch(id: &str, name: &str, members: &[&str]) -> GroupPatch {
        GroupPatch {
            id: id.into(),
            display_name: Some(Some(name.into())),
            description: Some(Some("about".into())),
            group_types: Some(Some(vec!["Unified".into()])),
            mail_enabled: Some(Some(true)),
            security_enabled: Some(Some(false)),
            mail: Some(Some(format!("{name}@example.test"))),
            writeback_configuration: Some(Some(WritebackConfiguration {
                is_enabled: Some(true),
                on_premises_group_type: Some("universalDistributionGroup".into()),
            })),
            members_added: members.iter().map(|m| user(m)).collect(),
            ..GroupPatch::default()
        }
    }

    fn base() -> CloudSnapshot {
        let mut s = CloudSnapshot::default();
        let _ = apply_group_changes(
            &mut s,
            &round(
                true,
                vec![
                    GroupChange::Upsert(full_patch("g1", "One", &["u1", "u2"])),
                    GroupChange::Upsert(full_patch("g2", "Two", &["u3"])),
                ],
            ),
        );
        s
    }

    /// The former algorithm (a pass over the set per change), as the reference.
    fn apply_refs_one_by_one(
        set: &mut BTreeSet<MemberRef>,
        added: &[MemberRef],
        removed: &[MemberRef],
    ) {
        for r in removed {
            set.retain(|m| m.id != r.id);
        }
        for a in added {
            set.retain(|m| m.id != a.id || m.kind == a.kind);
            set.insert(a.clone());
        }
    }

    #[test]
    fn member_changes_apply_by_id_the_last_kind_winning() {
        let r = |kind, id: &str| MemberRef {
            kind,
            id: id.into(),
        };
        let start: BTreeSet<MemberRef> = [
            r(MemberKind::User, "a"),
            r(MemberKind::Group, "b"),
            r(MemberKind::Other, "c"),
            r(MemberKind::User, "d"),
        ]
        .into();
        let added = [
            r(MemberKind::User, "b"),
            r(MemberKind::Group, "c"),
            r(MemberKind::User, "c"),
            r(MemberKind::User, "e"),
            r(MemberKind::User, "a"),
        ];
        let removed = [
            r(MemberKind::Other, "a"),
            r(MemberKind::User, "d"),
            r(MemberKind::User, "e"),
        ];
        let (mut fast, mut slow) = (start.clone(), start);
        apply_refs(&mut fast, &added, &removed);
        apply_refs_one_by_one(&mut slow, &added, &removed);
        assert_eq!(fast, slow);
        assert_eq!(
            fast.iter().map(|m| (m.kind, &*m.id)).collect::<Vec<_>>(),
            vec![
                (MemberKind::User, "a"),
                (MemberKind::User, "b"),
                (MemberKind::User, "c"),
                (MemberKind::User, "e"),
            ]
        );
    }

    #[test]
    fn a_group_of_250000_members_takes_a_delta_of_100000_changes_quickly() {
        let id = |n: usize| format!("{n:08x}-0000-4000-8000-000000000000");
        let mut set: BTreeSet<MemberRef> = (0..250_000).map(|n| user(&id(n))).collect();
        let removed: Vec<MemberRef> = (0..50_000).map(|n| user(&id(n * 5))).collect();
        let added: Vec<MemberRef> = (250_000..300_000).map(|n| user(&id(n))).collect();
        let started = std::time::Instant::now();
        apply_refs(&mut set, &added, &removed);
        // One pass: well under a second even in a debug build (the former algorithm, a pass
        // per change, needed 100,000 passes over 250,000 members).
        assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
        assert_eq!(set.len(), 250_000);
        assert!(!set.contains(&user(&id(5))));
        assert!(set.contains(&user(&id(299_999))));
    }

    #[test]
    fn full_round_keeps_the_groups_it_does_not_list_and_names_them() {
        let mut s = base();
        let before = s.clone();
        let absent = apply_group_changes(
            &mut s,
            &round(
                true,
                vec![GroupChange::Upsert(full_patch("g3", "Three", &[]))],
            ),
        );
        assert_eq!(absent, vec!["g1".to_string(), "g2".to_string()]);
        assert_eq!(s.groups.keys().collect::<Vec<_>>(), vec!["g1", "g2", "g3"]);
        assert_eq!(s.groups["g1"], before.groups["g1"], "kept as it was");
    }

    #[test]
    fn empty_full_round_deletes_nothing_by_itself() {
        let mut s = base();
        let before = s.clone();
        let absent = apply_group_changes(&mut s, &round(true, vec![]));
        assert_eq!(absent.len(), 2);
        assert_eq!(s, before);
    }

    #[test]
    fn confirmed_presence_removes_gone_marks_soft_deleted_and_keeps_alive() {
        let mut s = base();
        let _ = apply_group_changes(
            &mut s,
            &round(
                false,
                vec![GroupChange::Upsert(full_patch("g3", "Three", &[]))],
            ),
        );
        let presence = BTreeMap::from([
            ("g1".to_string(), Presence::Gone),
            ("g2".to_string(), Presence::SoftDeleted),
            ("g3".to_string(), Presence::Alive),
        ]);
        apply_presence(&mut s, &presence);
        assert!(!s.groups.contains_key("g1"));
        assert_eq!(s.groups["g2"].deleted, Some(CloudDeletion::SoftDeleted));
        assert_eq!(s.groups["g2"].display_name.as_deref(), Some("Two"));
        assert_eq!(s.groups["g3"].deleted, None);
    }

    #[test]
    fn full_round_with_removed_deleted_removes_without_asking() {
        let mut s = base();
        let absent = apply_group_changes(
            &mut s,
            &round(
                true,
                vec![
                    GroupChange::Deleted("g1".into()),
                    GroupChange::Upsert(full_patch("g2", "Two", &["u3"])),
                ],
            ),
        );
        assert!(absent.is_empty(), "{absent:?}");
        assert!(!s.groups.contains_key("g1"));
    }

    #[test]
    fn absent_property_is_kept_and_null_clears_it() {
        let mut s = base();
        let patch = GroupPatch {
            id: "g1".into(),
            description: Some(None),
            group_types: Some(None),
            writeback_configuration: Some(None),
            ..GroupPatch::default()
        };
        let _ = apply_group_changes(&mut s, &round(false, vec![GroupChange::Upsert(patch)]));
        let g = &s.groups["g1"];
        assert_eq!(g.display_name.as_deref(), Some("One"), "absent: unchanged");
        assert_eq!(
            g.mail.as_deref(),
            Some("One@example.test"),
            "absent: unchanged"
        );
        assert_eq!(g.description, None, "null: cleared");
        assert!(g.group_types.is_empty(), "null list: cleared");
        assert_eq!(g.writeback, WritebackConfiguration::default());
        assert_eq!(g.members.len(), 2, "no members@delta: members unchanged");
    }

    #[test]
    fn members_are_added_and_removed_and_replays_change_nothing() {
        let mut s = base();
        let patch = GroupPatch {
            id: "g1".into(),
            display_name: Some(Some("Renamed".into())),
            members_added: vec![user("u9")],
            members_removed: vec![user("u1")],
            ..GroupPatch::default()
        };
        let r = round(false, vec![GroupChange::Upsert(patch)]);
        let _ = apply_group_changes(&mut s, &r);
        let once = s.clone();
        let _ = apply_group_changes(&mut s, &r);
        assert_eq!(s, once, "a replayed round is harmless");
        let g = &s.groups["g1"];
        assert_eq!(g.display_name.as_deref(), Some("Renamed"));
        assert_eq!(
            g.members.iter().map(|m| &*m.id).collect::<Vec<_>>(),
            vec!["u2", "u9"]
        );
    }

    #[test]
    fn order_of_independent_changes_does_not_matter() {
        let a = GroupChange::Upsert(GroupPatch {
            id: "g1".into(),
            members_added: vec![user("u7")],
            ..GroupPatch::default()
        });
        let b = GroupChange::Upsert(GroupPatch {
            id: "g1".into(),
            description: Some(Some("new".into())),
            members_removed: vec![user("u2")],
            ..GroupPatch::default()
        });
        let c = GroupChange::Deleted("g2".into());
        let mut one = base();
        let _ = apply_group_changes(
            &mut one,
            &round(false, vec![a.clone(), b.clone(), c.clone()]),
        );
        let mut two = base();
        let _ = apply_group_changes(&mut two, &round(false, vec![c, b, a]));
        assert_eq!(one, two);
        assert!(!one.groups.contains_key("g2"));
    }

    #[test]
    fn soft_deleted_group_is_kept_and_restored_by_a_later_sighting() {
        let mut s = base();
        let _ = apply_group_changes(
            &mut s,
            &round(false, vec![GroupChange::SoftDeleted("g1".into())]),
        );
        let g = &s.groups["g1"];
        assert_eq!(g.deleted, Some(CloudDeletion::SoftDeleted));
        assert_eq!(g.display_name.as_deref(), Some("One"), "kept as it was");
        assert_eq!(g.members.len(), 2);

        let restore = GroupPatch {
            id: "g1".into(),
            ..GroupPatch::default()
        };
        let _ = apply_group_changes(&mut s, &round(false, vec![GroupChange::Upsert(restore)]));
        assert_eq!(s.groups["g1"].deleted, None);
        assert_eq!(s.groups["g1"].members.len(), 2);
    }

    #[test]
    fn soft_deleted_group_in_a_full_round_keeps_what_was_known() {
        let mut s = base();
        let _ = apply_group_changes(
            &mut s,
            &round(
                true,
                vec![
                    GroupChange::SoftDeleted("g1".into()),
                    GroupChange::Upsert(full_patch("g2", "Two", &["u3"])),
                ],
            ),
        );
        assert_eq!(s.groups.len(), 2);
        assert_eq!(s.groups["g1"].display_name.as_deref(), Some("One"));
        assert_eq!(s.groups["g1"].deleted, Some(CloudDeletion::SoftDeleted));
    }

    #[test]
    fn permanently_deleted_group_is_removed_and_replay_is_harmless() {
        let mut s = base();
        let r = round(false, vec![GroupChange::Deleted("g1".into())]);
        let _ = apply_group_changes(&mut s, &r);
        let _ = apply_group_changes(&mut s, &r);
        assert!(!s.groups.contains_key("g1"));
        assert!(s.groups.contains_key("g2"));
    }

    #[test]
    fn user_round_merges_and_deletes() {
        let mut s = CloudSnapshot::default();
        let full = DeltaRound {
            changes: vec![
                UserChange::Upsert(UserPatch {
                    id: "u1".into(),
                    display_name: Some(Some("Ann".into())),
                    on_premises_security_identifier: Some(Some("S-1-5-21-1".into())),
                    ..UserPatch::default()
                }),
                UserChange::Upsert(UserPatch {
                    id: "u2".into(),
                    ..UserPatch::default()
                }),
            ],
            delta_link: "l".into(),
            full: true,
        };
        apply_user_changes(&mut s, &full);
        let delta = DeltaRound {
            changes: vec![
                UserChange::Upsert(UserPatch {
                    id: "u1".into(),
                    on_premises_security_identifier: Some(None),
                    ..UserPatch::default()
                }),
                UserChange::Deleted("u2".into()),
            ],
            delta_link: "l2".into(),
            full: false,
        };
        // The image before the round: a copy sharing its users.
        let before = s.clone();
        apply_user_changes(&mut s, &delta);
        assert_eq!(s.users.len(), 1);
        assert_eq!(s.users["u1"].display_name.as_deref(), Some("Ann"));
        assert_eq!(s.users["u1"].on_premises_security_identifier, None);
        // The copy keeps the users as they were; a round without user changes shares them.
        assert_eq!(before.users.len(), 2);
        assert!(before.users["u1"].on_premises_security_identifier.is_some());
        let copy = s.clone();
        let quiet = DeltaRound {
            changes: vec![],
            delta_link: "l3".into(),
            full: false,
        };
        apply_user_changes(&mut s, &quiet);
        assert!(std::sync::Arc::ptr_eq(&s.users, &copy.users));
    }
}
