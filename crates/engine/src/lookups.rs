//! The AD lookups a plan consults: [`lookups`] for a whole cloud image, and [`lookups_of`]
//! for the objects a delta cycle touched, so that a cycle does not walk every membership of
//! the tenant to learn that one user changed.

use crate::members;
use crate::scope::decide;
use crate::EngineConfig;
use std::collections::{BTreeSet, HashSet};
use wb_model::{CloudGroup, CloudSnapshot, Lookup, MemberKind, MemberRef};

/// Every AD lookup [`crate::plan`] will consult for this cloud image: the members of the
/// groups decided Written (synced users by SID, immutable id and DN; groups synced from AD
/// by SID) and, when `write_owners`, their user owners.
pub fn lookups(cloud: &CloudSnapshot, config: &EngineConfig) -> BTreeSet<Lookup> {
    Ids::default()
        .of_groups(cloud.groups.values(), None, config)
        .lookups(cloud)
}

/// Every lookup [`lookups`] gives that the objects in `groups`, `users` and `devices` (ids;
/// absent ones are skipped) can contribute: the members (and, with `write_owners`, the user
/// owners) of those groups that are written back, those users and devices themselves, and
/// those groups when they are synced from AD (as nested members). A superset of what those
/// objects add to [`lookups`]: a user or group listed here need not be a member of any
/// written group.
///
/// With `previous` (the image before the delta, whose lookups were all consulted by the
/// cycle that made it, under the same configuration), a group already written back there
/// contributes only the members (and owners) it did not have: one member added to a group
/// of 250,000 is one user's lookups, not 250,000. The users whose identifiers changed are
/// among `users`.
pub fn lookups_of<'a>(
    cloud: &'a CloudSnapshot,
    previous: Option<&'a CloudSnapshot>,
    config: &EngineConfig,
    groups: &'a HashSet<String>,
    users: &'a HashSet<String>,
    devices: &'a HashSet<String>,
) -> BTreeSet<Lookup> {
    let ids = Ids {
        users: users.iter().map(String::as_str).collect(),
        groups: groups.iter().map(String::as_str).collect(),
        devices: devices.iter().map(String::as_str).collect(),
    };
    ids.of_groups(
        groups.iter().filter_map(|id| cloud.groups.get(id)),
        previous,
        config,
    )
    .lookups(cloud)
}

/// The distinct objects whose lookups are wanted: each once, a user in 500 groups is looked
/// up once, not 500 times.
#[derive(Default)]
struct Ids<'a> {
    users: HashSet<&'a str>,
    groups: HashSet<&'a str>,
    devices: HashSet<&'a str>,
}

impl<'a> Ids<'a> {
    /// Adds the members (and, with `write_owners`, the user owners) of those of `groups`
    /// that are written back — of a group written back in `previous` too, those it did
    /// not have there.
    fn of_groups(
        mut self,
        groups: impl Iterator<Item = &'a CloudGroup>,
        previous: Option<&'a CloudSnapshot>,
        config: &EngineConfig,
    ) -> Self {
        for group in groups.filter(|g| decide(g, config).0.is_written()) {
            let before = previous
                .and_then(|p| p.groups.get(&group.id))
                .filter(|p| decide(p, config).0.is_written());
            for member in new_refs(&group.members, before.map(|p| &p.members)) {
                match member.kind {
                    MemberKind::User => self.users.insert(&member.id),
                    MemberKind::Group => self.groups.insert(&member.id),
                    MemberKind::Device => self.devices.insert(&member.id),
                    _ => false,
                };
            }
            if config.write_owners {
                let owners = new_refs(&group.owners, before.map(|p| &p.owners));
                for owner in owners.filter(|o| o.kind == MemberKind::User) {
                    self.users.insert(&owner.id);
                }
            }
        }
        self
    }

    /// The lookups of those objects: users by their on-premises identifiers, groups synced
    /// from AD by SID, devices synced from AD by SID.
    fn lookups(self, cloud: &CloudSnapshot) -> BTreeSet<Lookup> {
        let mut out = BTreeSet::new();
        for user in self.users.into_iter().filter_map(|id| cloud.users.get(id)) {
            out.extend(members::user_lookups(user).map(|(l, _)| l));
        }
        for nested in self
            .groups
            .into_iter()
            .filter_map(|id| cloud.groups.get(id))
            .filter(|g| g.is_synced_from_ad())
        {
            out.extend(members::synced_group_lookup(nested));
        }
        for device in self
            .devices
            .into_iter()
            .filter_map(|id| cloud.devices.get(id))
        {
            out.extend(members::device_lookup(device));
        }
        out
    }
}

/// The references of `now` that `before` lacks (all of them without `before`), in one
/// merge of the two ordered sets.
fn new_refs<'s>(
    now: &'s BTreeSet<MemberRef>,
    before: Option<&'s BTreeSet<MemberRef>>,
) -> Box<dyn Iterator<Item = &'s MemberRef> + 's> {
    match before {
        Some(before) => Box::new(now.difference(before)),
        None => Box::new(now.iter()),
    }
}
