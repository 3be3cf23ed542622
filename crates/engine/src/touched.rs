//! Incremental planning: which cloud groups the changes since the last cycle touch, for
//! [`plan_groups`](crate::plan_groups) to plan those (and what they drag along) only.

use crate::diff::Input;
use crate::members::{device_lookup, synced_group_lookup, user_lookups};
use std::collections::{BTreeSet, HashSet};
use wb_model::{parse_anchor, Lookup, ObjectId};

/// What changed since the last cycle, as the import knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Plan everything: the configuration (engine settings, rules, OUs, schema) changed,
    /// or there is no previous cycle whose plan converged (first cycle, last export
    /// failed or was held back).
    pub everything: bool,
    /// Cloud groups the group delta round reported: added, changed (properties, members,
    /// owners, writebackConfiguration), soft-deleted, restored or deleted.
    pub groups: BTreeSet<ObjectId>,
    /// Cloud users the user delta round reported: added, changed or deleted.
    pub users: BTreeSet<ObjectId>,
    /// objectGUIDs of the AD groups read this cycle (under the managed OUs or joined) that
    /// are new, changed (uSNChanged), or gone since the last cycle.
    pub ad_guids: BTreeSet<String>,
    /// Lookups whose answer changed since the last cycle: found now and not then (or the
    /// reverse), or found as another object, DN or class.
    pub lookups: BTreeSet<Lookup>,
}

/// The cloud groups `changes` touch, for [`plan_groups`](crate::plan_groups): the groups
/// the delta round reported; the groups with a reported user, or a user or synced group
/// whose lookup changed, among their members or owners; the groups owning (by anchor or
/// join) a changed AD group. With `changes.everything` or no previous cloud image, every
/// cloud group. `plan_groups` adds what correctness needs besides (see its contract).
pub fn touched_by(input: &Input, changes: &Changes) -> BTreeSet<ObjectId> {
    touched_parts(input, changes).all
}

/// The cloud groups `changes` touch, and which of them through their own cloud image
/// alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// What [`touched_by`] gives.
    pub all: BTreeSet<ObjectId>,
    /// The groups of `all` that the group delta round reported and nothing else touches:
    /// no reported user or changed lookup among the members or owners they had (members
    /// the round added do not count), no change of their AD group. Empty when everything
    /// is touched. With their last outcomes,
    /// [`plan_groups_with`](crate::plan_groups_with) can plan them from their member delta.
    pub alone: BTreeSet<ObjectId>,
}

/// [`touched_by`], with the groups touched through their own cloud image alone.
pub fn touched_parts(input: &Input, changes: &Changes) -> Touched {
    let cloud = input.cloud;
    if changes.everything || input.previous.is_none() {
        return Touched {
            all: cloud.groups.keys().cloned().collect(),
            alone: BTreeSet::new(),
        };
    }
    // Touched through a user (reported, or with a changed lookup) among the members or
    // owners; through anything else that is not the group's own cloud image (a changed
    // lookup of a synced group, a changed AD group).
    let (mut through_users, mut through_others) = (BTreeSet::new(), BTreeSet::new());
    let mut users: HashSet<&str> = changes.users.iter().map(String::as_str).collect();
    if !changes.lookups.is_empty() {
        for user in cloud.users.values() {
            if user_lookups(user).any(|(l, _)| changes.lookups.contains(&l)) {
                users.insert(&user.id);
            }
        }
        for device in cloud.devices.values() {
            if device_lookup(device).is_some_and(|l| changes.lookups.contains(&l)) {
                users.insert(&device.id);
            }
        }
        for group in cloud.groups.values() {
            if synced_group_lookup(group).is_some_and(|l| changes.lookups.contains(&l)) {
                through_others.insert(group.id.clone());
            }
        }
    }
    if !users.is_empty() {
        for group in cloud.groups.values() {
            let has_user = group
                .members
                .iter()
                .chain(&group.owners)
                .any(|m| users.contains(&*m.id));
            if has_user {
                through_users.insert(group.id.clone());
            }
        }
    }
    if !changes.ad_guids.is_empty() {
        let guids: HashSet<String> = changes
            .ad_guids
            .iter()
            .map(|g| g.to_ascii_lowercase())
            .collect();
        let changed = |guid: &str| guids.contains(&guid.to_ascii_lowercase());
        let changed_sids: HashSet<String> = input
            .ad
            .groups
            .iter()
            .filter(|g| changed(&g.guid))
            .filter_map(|g| g.sid.as_deref().map(|s| s.trim().to_ascii_uppercase()))
            .collect();
        // A cloud-managed AD group owns the AD group its SID names.
        through_others.extend(
            cloud
                .groups
                .values()
                .filter(|g| {
                    g.is_cloud_managed_ad_group()
                        && g.ad_sid()
                            .is_some_and(|s| changed_sids.contains(&s.to_ascii_uppercase()))
                })
                .map(|g| g.id.clone()),
        );
        for g in input.ad.groups.iter().filter(|g| changed(&g.guid)) {
            let anchors = [&g.external_directory_object_id, &g.admin_description];
            through_others.extend(
                anchors
                    .into_iter()
                    .filter_map(|a| a.as_deref().and_then(parse_anchor))
                    .map(str::to_string),
            );
        }
        through_others.extend(
            input
                .joins
                .iter()
                .filter(|(_, j)| changed(&j.guid))
                .map(|(id, _)| id.clone()),
        );
    }
    // Through a user: a reported user, or one whose lookup changed, among the members or
    // owners the group had — members who stay or left, whose DN a member delta takes as
    // the last plan left it. Members the round added do not count: they are resolved
    // afresh either way (a user joining its first group brings new lookups).
    let by_user = |id: &ObjectId| {
        !users.is_empty()
            && input
                .previous
                .and_then(|p| p.groups.get(id))
                .is_none_or(|g| {
                    g.members
                        .iter()
                        .chain(&g.owners)
                        .any(|m| users.contains(&*m.id))
                })
    };
    let alone = changes
        .groups
        .difference(&through_others)
        .filter(|id| !by_user(id))
        .cloned()
        .collect();
    let mut all = through_others;
    all.extend(through_users);
    all.extend(changes.groups.iter().cloned());
    Touched { all, alone }
}
