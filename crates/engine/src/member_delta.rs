//! A written-back group planned from its member delta.
//!
//! When the only change to a group since a cycle that converged is a few users added to or
//! removed from its cloud members, the values AD must gain and lose follow from those
//! users alone: AD holds, as the last plan left it, one value per written member. So a
//! plan resolves the users that came and went and looks their DNs up among the group's
//! values, instead of resolving, ranking and comparing every member — at 250,000 members
//! that was most of a cycle. The operations are the full plan's; the group's outcome is
//! the full plan's, slimmed (`GroupOutcome::slim`: written members are counted, not
//! listed), built from the last plan's outcome.
//!
//! Whenever a condition of that reasoning does not hold, the group is planned in full:
//! see [`member_delta`] and [`plan`].

use crate::diff::{same_properties, CloudChanges};
use crate::members::{member_error, Directory};
use crate::naming::{dn_key, first_value_alnum, first_value_alnum_parsed, is_lower_case_keyed};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::sync::Arc;
use wb_model::{
    AdGroup, AdState, CloudGroup, Decision, Fate, GroupOutcome, MemberKind, MemberOutcome,
    MemberRef,
};

/// At most this many members added and removed in all: beyond, the group is planned in
/// full (the delta's lookups in the group's values grow with it).
const MAX_CHANGED: usize = 256;

/// The users a group gained and lost since the last cycle, and its outcome then.
pub(crate) struct MemberDelta<'g> {
    /// In member order.
    added: Vec<&'g MemberRef>,
    /// In member order.
    removed: Vec<&'g MemberRef>,
    last: &'g GroupOutcome,
}

/// The member delta of `group` since `before` (its previous image), when the group can be
/// planned from it: its properties are the same and only users came and went (at most
/// [`MAX_CHANGED`]); no member it keeps, nor a user it lost, changed as a member (a user's
/// data, a nested group's name or setting); and its last outcome (`last`) is the plain
/// result of a converged plan — the same decision, its AD group present and not adopted,
/// no error or drift, counts of `before`'s members.
///
/// The caller vouches for the rest (see `plan_groups_with`): the last cycle converged, and
/// nothing about the group changed in AD or in its members' lookups since.
pub(crate) fn member_delta<'g>(
    group: &'g CloudGroup,
    before: &'g CloudGroup,
    last: &'g GroupOutcome,
    decision: &Decision,
    changes: &CloudChanges,
) -> Option<MemberDelta<'g>> {
    let plain_last = last.decision == *decision
        && last.errors.is_empty()
        && last.drift.is_empty()
        && !last.adopted
        && last.ad_state == AdState::Present
        && last.member_count == before.members.len();
    if !plain_last || !same_properties(before, group) {
        return None;
    }
    let users = |set: std::collections::btree_set::Difference<'g, MemberRef>| {
        let mut out = Vec::new();
        for m in set {
            if m.kind != MemberKind::User || out.len() == MAX_CHANGED {
                return None;
            }
            out.push(m);
        }
        Some(out)
    };
    let added = users(group.members.difference(&before.members))?;
    let removed = users(before.members.difference(&group.members))?;
    if added.len() + removed.len() > MAX_CHANGED
        || removed.iter().any(|m| changes.member_changed(&m.id))
    {
        return None;
    }
    if changes.any_member_changed() {
        let came: HashSet<&str> = added.iter().map(|m| &*m.id).collect();
        let kept_changed = group
            .members
            .iter()
            .any(|m| changes.member_changed(&m.id) && !came.contains(&*m.id));
        if kept_changed {
            return None;
        }
    }
    Some(MemberDelta {
        added,
        removed,
        last,
    })
}

/// What a group planned from its member delta gets: its outcome's member part, and the
/// values to add and remove.
pub(crate) struct DeltaPlan {
    /// The members that are not written, with why (the slimmed outcome's), in member order.
    pub outcomes: Vec<MemberOutcome>,
    pub member_count: usize,
    pub written_count: usize,
    pub errors: Vec<String>,
    /// Values to add, in key order.
    pub add: Vec<Arc<str>>,
    /// Values to remove (as AD holds them), in key order.
    pub remove: Vec<Arc<str>>,
}

/// Plans `group`, whose AD group is `current` (not renamed by this plan, nor nesting a
/// group this plan renames, moves or creates), from its member delta. `None` when AD does
/// not hold what the last plan left — a value count other than the written members' (two
/// members written as one DN count once: the full plan dedups them), or the DN of a user
/// who left missing: the group is then planned in full.
pub(crate) fn plan(
    dir: &Directory,
    group: &CloudGroup,
    current: &AdGroup,
    delta: &MemberDelta,
) -> Option<DeltaPlan> {
    let last = delta.last;
    if last.written_count != current.members.len() {
        return None;
    }
    let key_of = |dn: &crate::members::MemberDn| dir.key_text(&dn.key).to_string();
    let mut written_removed = 0;
    let mut removed_keys: Vec<String> = Vec::new();
    for m in &delta.removed {
        let (outcome, dn) = dir.fate(m);
        if matches!(outcome.fate, Fate::Written { .. }) {
            written_removed += 1;
        }
        removed_keys.extend(dn.as_ref().map(key_of));
    }
    let mut added = Vec::with_capacity(delta.added.len());
    for m in &delta.added {
        let (outcome, dn) = dir.fate(m);
        let value = dn.as_ref().map(|d| (key_of(d), Arc::clone(&d.value)));
        added.push((outcome, value));
    }
    let targets: HashSet<&str> = removed_keys
        .iter()
        .map(String::as_str)
        .chain(
            added
                .iter()
                .filter_map(|(_, v)| v.as_ref().map(|(k, _)| k.as_str())),
        )
        .collect();
    let held = values_with_keys(&current.members, &targets);
    let wanted: HashSet<&str> = added
        .iter()
        .filter_map(|(_, v)| v.as_ref().map(|(k, _)| k.as_str()))
        .collect();

    let mut remove: Vec<(&str, Arc<str>)> = Vec::new();
    for key in &removed_keys {
        if wanted.contains(key.as_str()) || remove.iter().any(|(k, _)| k == key) {
            continue;
        }
        // The DN of a written member that left is a value: else AD is not as the last plan
        // left it.
        let value = held.get(key.as_str())?;
        remove.push((key, Arc::clone(value)));
    }
    let mut add: Vec<(&str, Arc<str>)> = Vec::new();
    for (_, value) in &added {
        let Some((key, value)) = value else { continue };
        // Held already (by a member who stays, or one who left with the same DN), or
        // added by an earlier member of the delta: AD compares DNs by key.
        if held.contains_key(key.as_str()) || add.iter().any(|(k, _)| k == key) {
            continue;
        }
        add.push((key, Arc::clone(value)));
    }
    add.sort_by(|a, b| a.0.cmp(b.0));
    remove.sort_by(|a, b| a.0.cmp(b.0));

    // The outcome: the last one's members that are not written, less those who left, with
    // those who came that are not written, in member order (kind, then id).
    let gone: HashSet<(MemberKind, &str)> =
        delta.removed.iter().map(|m| (m.kind, &*m.id)).collect();
    let mut came = added
        .iter()
        .map(|(o, _)| o)
        .filter(|o| !matches!(o.fate, Fate::Written { .. }))
        .peekable();
    // Member order: kind, then id (that of `MemberRef`).
    fn order(o: &MemberOutcome) -> (MemberKind, &str) {
        (o.member.kind, &o.member.id)
    }
    let mut outcomes = Vec::new();
    for o in last.members.iter().filter(|o| {
        !matches!(o.fate, Fate::Written { .. }) && !gone.contains(&(o.member.kind, &*o.member.id))
    }) {
        while let Some(c) = came.next_if(|c| order(c) < order(o)) {
            outcomes.push(c.clone());
        }
        outcomes.push(o.clone());
    }
    outcomes.extend(came.cloned());
    // The last outcome had no error: the members that came alone can bring one.
    let mut domain_local = false;
    let errors = added
        .iter()
        .filter_map(|(o, _)| member_error(o, &mut domain_local))
        .collect();
    let written_added = added
        .iter()
        .filter(|(o, _)| matches!(o.fate, Fate::Written { .. }))
        .count();
    Some(DeltaPlan {
        outcomes,
        member_count: group.members.len(),
        written_count: last.written_count - written_removed + written_added,
        errors,
        add: add.into_iter().map(|(_, v)| v).collect(),
        remove: remove.into_iter().map(|(_, v)| v).collect(),
    })
}

/// The values among `values` whose DN key is one of `keys`, by key (the first such value).
/// One pass: a value whose key is its lower case (almost all) is compared with the keys of
/// its length, without computing its key.
fn values_with_keys<'v, 'k>(
    values: &'v [Arc<str>],
    keys: &HashSet<&'k str>,
) -> HashMap<&'k str, &'v Arc<str>> {
    let mut found: HashMap<&'k str, &'v Arc<str>> = HashMap::default();
    if keys.is_empty() {
        return found;
    }
    let mut by_len: HashMap<usize, Vec<&'k str>> = HashMap::default();
    for k in keys {
        by_len.entry(k.len()).or_default().push(k);
    }
    // The letters and digits of the keys' first values: a value whose own differ has
    // another key (a name with an escaped comma, "Smith\, Ann", is not lower-case keyed).
    let firsts: Option<HashSet<String>> =
        keys.iter().map(|k| first_value_alnum_parsed(k)).collect();
    for value in values {
        let key = if is_lower_case_keyed(value) {
            by_len
                .get(&value.len())
                .and_then(|ks| ks.iter().find(|k| value.eq_ignore_ascii_case(k)))
                .copied()
        } else {
            let other = match (&firsts, first_value_alnum(value)) {
                (Some(firsts), Some(first)) => !firsts.contains(&first),
                _ => false,
            };
            if other {
                continue;
            }
            keys.get(dn_key(value).as_str()).copied()
        };
        if let Some(key) = key {
            found.entry(key).or_insert(value);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_found_by_key_whatever_their_case_or_escaping() {
        let values: Vec<Arc<str>> = [
            "CN=Ann,OU=Users,DC=lab",
            "CN=Smith\\, Bob,OU=Users,DC=lab",
            "cn=Eve , ou=Users,DC=lab",
        ]
        .into_iter()
        .map(Arc::from)
        .collect();
        let ann = dn_key("cn=ANN,ou=users,dc=LAB");
        let bob = dn_key("CN=Smith\\2C Bob,OU=Users,DC=lab");
        let eve = dn_key("CN=Eve,OU=Users,DC=lab");
        let zoe = dn_key("CN=Zoe,OU=Users,DC=lab");
        let keys: HashSet<&str> = [&ann, &bob, &eve, &zoe]
            .map(String::as_str)
            .into_iter()
            .collect();
        let found = values_with_keys(&values, &keys);
        assert_eq!(
            found.get(ann.as_str()).map(|v| &***v),
            Some("CN=Ann,OU=Users,DC=lab")
        );
        assert_eq!(
            found.get(bob.as_str()).map(|v| &***v),
            Some("CN=Smith\\, Bob,OU=Users,DC=lab")
        );
        assert_eq!(
            found.get(eve.as_str()).map(|v| &***v),
            Some("cn=Eve , ou=Users,DC=lab")
        );
        assert_eq!(found.get(zoe.as_str()), None);
    }
}
