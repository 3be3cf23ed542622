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
    let cloud = input.cloud;
    if changes.everything || input.previous.is_none() {
        return cloud.groups.keys().cloned().collect();
    }
    let mut out = changes.groups.clone();
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
                out.insert(group.id.clone());
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
                out.insert(group.id.clone());
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
        out.extend(
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
            out.extend(
                anchors
                    .into_iter()
                    .filter_map(|a| a.as_deref().and_then(parse_anchor))
                    .map(str::to_string),
            );
        }
        out.extend(
            input
                .joins
                .iter()
                .filter(|(_, j)| changed(&j.guid))
                .map(|(id, _)| id.clone()),
        );
    }
    out
}
