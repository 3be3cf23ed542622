//! The AD lookups a change needs: [`lookups_of`], the part of [`crate::lookups`] that a
//! delta cycle's touched objects can add, so that a cycle does not walk every membership
//! of the tenant to learn that one user changed.

use crate::members;
use crate::scope::decide;
use crate::EngineConfig;
use std::collections::{BTreeSet, HashSet};
use wb_model::{CloudSnapshot, Lookup, MemberKind};

/// Every lookup [`crate::lookups`] gives that the objects in `groups`, `users` and
/// `devices` (ids; absent ones are skipped) can contribute: the members (and, with
/// `write_owners`, the user owners) of those groups that are written back, those users and
/// devices themselves, and those groups when they are synced from AD (as nested members).
/// A superset of what those objects add to [`crate::lookups`]: a user or group listed here
/// need not be a member of any written group.
pub fn lookups_of(
    cloud: &CloudSnapshot,
    config: &EngineConfig,
    groups: &HashSet<String>,
    users: &HashSet<String>,
    devices: &HashSet<String>,
) -> BTreeSet<Lookup> {
    let mut user_ids: HashSet<&str> = users.iter().map(String::as_str).collect();
    let mut group_ids: HashSet<&str> = groups.iter().map(String::as_str).collect();
    let mut device_ids: HashSet<&str> = devices.iter().map(String::as_str).collect();
    for group in groups
        .iter()
        .filter_map(|id| cloud.groups.get(id))
        .filter(|g| decide(g, config).0.is_written())
    {
        for member in &group.members {
            match member.kind {
                MemberKind::User => user_ids.insert(&member.id),
                MemberKind::Group => group_ids.insert(&member.id),
                MemberKind::Device => device_ids.insert(&member.id),
                _ => false,
            };
        }
        if config.write_owners {
            for owner in group.owners.iter().filter(|o| o.kind == MemberKind::User) {
                user_ids.insert(&owner.id);
            }
        }
    }
    let mut out = BTreeSet::new();
    for user in user_ids.into_iter().filter_map(|id| cloud.users.get(id)) {
        out.extend(members::user_lookups(user).into_iter().map(|(l, _)| l));
    }
    for nested in group_ids
        .into_iter()
        .filter_map(|id| cloud.groups.get(id))
        .filter(|g| g.is_synced_from_ad())
    {
        out.extend(members::synced_group_lookup(nested));
    }
    for device in device_ids
        .into_iter()
        .filter_map(|id| cloud.devices.get(id))
    {
        out.extend(members::device_lookup(device));
    }
    out
}
