//! The planner: joins cloud groups to the AD groups writeback owns, and turns every
//! difference into an ordered Plan (renames, creates, modifies, member changes, deletes).

use crate::config::EngineConfig;
use crate::member_delta::{self, member_delta, MemberDelta};
use crate::members::{Directory, DnOrder, MemberDn, Membership, Placement};
use crate::naming::{self, dn_eq, dn_key, is_under_keyed, DnKey};
use crate::scope::{decide, rule_text};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;
use wb_model::{
    anchor_value, Action, AdGroup, AdSchema, AdSnapshot, AdState, AttrChange, AttrValues,
    CloudGroup, CloudSnapshot, Decision, ForeignObject, GroupAttr, GroupOutcome, Interner, Join,
    Joins, MemberKind, ObjectId, OnPremGroupType, Operation, Plan,
};

/// Longest description written to AD (Microsoft: `Left(Trim(description), 448)`), in
/// UTF-16 code units as AD counts (AD itself allows 1,024).
pub const DESCRIPTION_MAX_UNITS: usize = 448;
/// The same limit under its former name.
pub const DESCRIPTION_MAX_CHARS: usize = DESCRIPTION_MAX_UNITS;
/// AD's limit on `displayName`, in UTF-16 code units.
pub const DISPLAY_NAME_MAX_UNITS: usize = 256;

// The managed attributes by their LDAP names (`GroupAttr`: the one list).
const ATTR_GROUP_TYPE: &str = GroupAttr::GroupType.name();
const ATTR_ADMIN_DESCRIPTION: &str = GroupAttr::AdminDescription.name();
const ATTR_EXTERNAL_ID: &str = GroupAttr::ExternalDirectoryObjectId.name();
const ATTR_MANAGED_BY: &str = GroupAttr::ManagedBy.name();
const ATTR_PROXY_ADDRESSES: &str = GroupAttr::ProxyAddresses.name();
const ATTR_DISPLAY_NAME: &str = GroupAttr::DisplayName.name();
const ATTR_DESCRIPTION: &str = GroupAttr::Description.name();
const ATTR_MAIL: &str = GroupAttr::Mail.name();
const ATTR_MAIL_NICKNAME: &str = GroupAttr::MailNickname.name();
const ATTR_SAM_ACCOUNT_NAME: &str = GroupAttr::SamAccountName.name();

/// What changed in the cloud since the previous cycle, to tell drift made by hand in AD from
/// cloud changes. Computed once per plan: the users and groups (by id) whose data a member
/// outcome reads changed, by one merge of the two images.
pub struct CloudChanges<'a> {
    /// The previous image's groups, by id.
    previous: Option<HashMap<&'a str, &'a CloudGroup>>,
    /// Ids of users that differ, and of groups whose name, writeback setting or deletion
    /// differs, between the two images (present in only one of them included).
    members: HashSet<&'a str>,
}

impl<'a> CloudChanges<'a> {
    pub fn new(previous: Option<&'a CloudSnapshot>, cloud: &'a CloudSnapshot) -> Self {
        let mut members = HashSet::default();
        if let Some(p) = previous.filter(|p| !std::ptr::eq(*p, cloud)) {
            // One map shared by both images: no user changed (see `CloudSnapshot::users`).
            if !std::sync::Arc::ptr_eq(&p.users, &cloud.users) {
                changed_keys(&p.users, &cloud.users, |a, b| a == b, &mut members);
            }
            changed_keys(&p.devices, &cloud.devices, |a, b| a == b, &mut members);
            changed_keys(
                &p.groups,
                &cloud.groups,
                |a, b| {
                    (&a.display_name, &a.writeback, a.deleted)
                        == (&b.display_name, &b.writeback, b.deleted)
                },
                &mut members,
            );
        }
        let previous = previous.map(|p| p.groups.iter().map(|(id, g)| (id.as_str(), g)).collect());
        CloudChanges { previous, members }
    }

    /// Whether the cloud side of `group` (its properties, or its membership and the users
    /// in it) changed since the previous cycle; with no previous image, assume it did.
    pub fn of(&self, group: &CloudGroup) -> (bool, bool) {
        let Some(pg) = self
            .previous
            .as_ref()
            .and_then(|p| p.get(group.id.as_str()))
        else {
            return (true, true);
        };
        let properties = !same_properties(pg, group);
        let members = pg.members != group.members
            || (!self.members.is_empty()
                && group.members.iter().any(|m| self.members.contains(&*m.id)));
        (properties, members)
    }
}

impl CloudChanges<'_> {
    /// Whether the user, device or group `id` (as a member) changed since the previous
    /// cycle (see `members`).
    pub(crate) fn member_changed(&self, id: &str) -> bool {
        self.members.contains(id)
    }

    /// Whether any user, device or group changed as a member's data.
    pub(crate) fn any_member_changed(&self) -> bool {
        !self.members.is_empty()
    }

    /// The previous image of a group.
    pub(crate) fn before(&self, id: &str) -> Option<&CloudGroup> {
        self.previous.as_ref().and_then(|p| p.get(id)).copied()
    }
}

/// Adds to `out` the keys whose values differ between `a` and `b` (or that only one has),
/// walking both sorted maps once.
fn changed_keys<'a, V>(
    a: &'a BTreeMap<ObjectId, V>,
    b: &'a BTreeMap<ObjectId, V>,
    same: impl Fn(&V, &V) -> bool,
    out: &mut HashSet<&'a str>,
) {
    let (mut a, mut b) = (a.iter().peekable(), b.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some((k, _)), None) => {
                out.insert(k.as_str());
                a.next();
            }
            (None, Some((k, _))) => {
                out.insert(k.as_str());
                b.next();
            }
            (Some((ka, va)), Some((kb, vb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    out.insert(ka.as_str());
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    out.insert(kb.as_str());
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    if !same(va, vb) {
                        out.insert(ka.as_str());
                    }
                    a.next();
                    b.next();
                }
            },
        }
    }
}

/// Whether two images of a group have the same properties (everything but members).
pub(crate) fn same_properties(a: &CloudGroup, b: &CloudGroup) -> bool {
    // Destructured so a new field is compared (or deliberately left out) here.
    let CloudGroup {
        id,
        display_name,
        description,
        group_types,
        mail_enabled,
        security_enabled,
        mail,
        mail_nickname,
        proxy_addresses,
        on_premises_sync_enabled,
        on_premises_security_identifier,
        writeback,
        members: _,
        owners,
        deleted,
        cloud_managed,
    } = a;
    *id == b.id
        && *display_name == b.display_name
        && *description == b.description
        && *group_types == b.group_types
        && *mail_enabled == b.mail_enabled
        && *security_enabled == b.security_enabled
        && *mail == b.mail
        && *mail_nickname == b.mail_nickname
        && *proxy_addresses == b.proxy_addresses
        && *on_premises_sync_enabled == b.on_premises_sync_enabled
        && *on_premises_security_identifier == b.on_premises_security_identifier
        && *writeback == b.writeback
        && *owners == b.owners
        && *deleted == b.deleted
        && *cloud_managed == b.cloud_managed
}

/// Everything one plan is computed from.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub cloud: &'a CloudSnapshot,
    pub ad: &'a AdSnapshot,
    pub joins: &'a Joins,
    pub config: &'a EngineConfig,
    /// The cloud image of the previous cycle, when there was one. A difference between AD
    /// and the cloud for a group whose cloud side did not change since then was made by
    /// hand in AD: it is reported as drift.
    pub previous: Option<&'a CloudSnapshot>,
    /// The AD groups (objectGUID, lower case) that changed in AD since the previous cycle's
    /// image of them, or `None` when that is not known (no previous image, AD read in
    /// full). A difference in a group AD did not change since then was not made by hand —
    /// a member's account that appeared, a rule or naming change of the configuration — and
    /// is no drift.
    pub ad_changed: Option<&'a BTreeSet<String>>,
}

/// The SIDs (upper-case) of the AD groups the cloud-managed AD groups written back name:
/// the AD image reads these groups wherever they are in the domain, so the plan can adopt
/// them in place (or say why not).
pub fn adoption_sids(cloud: &CloudSnapshot, config: &EngineConfig) -> BTreeSet<String> {
    cloud
        .groups
        .values()
        .filter(|g| g.is_cloud_managed_ad_group() && decide(g, config).0.is_written())
        .filter_map(|g| g.ad_sid())
        .map(str::to_ascii_uppercase)
        .collect()
}

/// The plan of one cycle. Pure: the same input gives the same plan, byte for byte.
pub fn plan(input: &Input) -> Plan {
    plan_in(input, None, &[]).0
}

/// The part of [`plan`] that concerns the `touched` cloud groups (ids; see [`touched_by`]):
/// what a cycle plans when it knows what changed since the last one.
///
/// Contract: when every group outside `touched` was converged by the last cycle (its
/// plan ran, AD holds what it planned, nothing changed since that [`touched_by`] does not
/// report), the operations are exactly those of `plan(input)` (same operations, same
/// order), and the outcomes are those of `plan(input)` for the groups planned. Planned
/// are the `touched` groups and what correctness needs besides: every group this plan
/// renames, moves, creates or cannot place, the groups that have one of those or a
/// touched group as a member, the owned AD groups of vanished cloud groups, and (with
/// `delete_out_of_scope`) owned groups no longer written back. `foreign` and `notices` are
/// whole. The cost: member work for the planned groups only, plus a pass over all groups'
/// names and DNs (placements and name claims are global).
pub fn plan_groups(input: &Input, touched: &BTreeSet<ObjectId>) -> Plan {
    plan_in(input, Some(touched), &[]).0
}

/// [`plan_groups`], given the last plan's outcomes (slimmed or not) of touched groups that
/// the changes touched through their own cloud image alone ([`Touched::alone`]: not
/// through a user, a lookup or their AD group). Such a group whose only change is a few
/// users added or removed, and whose last outcome is the plain result of a converged plan,
/// is planned from that member delta (see `member_delta`): its operations are those of
/// [`plan`], its outcome that of [`plan`] slimmed (`GroupOutcome::slim`). Any other group
/// is planned as [`plan_groups`] plans it. Also gives how many groups were planned from
/// their member delta.
///
/// [`Touched::alone`]: crate::Touched::alone
pub fn plan_groups_with(
    input: &Input,
    touched: &BTreeSet<ObjectId>,
    last: &[&GroupOutcome],
) -> (Plan, usize) {
    plan_in(input, Some(touched), last)
}

fn plan_in(
    input: &Input,
    touched: Option<&BTreeSet<ObjectId>>,
    last: &[&GroupOutcome],
) -> (Plan, usize) {
    let Input {
        cloud,
        ad,
        joins,
        config,
        previous,
        ad_changed,
    } = *input;
    let managed = config.managed_ous();
    // Every AD group's DN key, and the managed OUs': computed once, compared many times.
    let ad_keys: HashMap<&str, DnKey> = ad
        .groups
        .iter()
        .map(|g| (g.dn.as_str(), DnKey::of(&g.dn)))
        .collect();
    let managed_keys: Vec<(&str, DnKey)> =
        managed.iter().map(|m| (m.as_str(), DnKey::of(m))).collect();
    let mut decisions: HashMap<&str, Decision> = cloud
        .groups
        .iter()
        .map(|(id, g)| (id.as_str(), decide(g, config).0))
        .collect();
    // Hash indexes of the images' maps, for the lookups by id done per group.
    let groups_by_id: HashMap<&str, &CloudGroup> = cloud
        .groups
        .iter()
        .map(|(id, g)| (id.as_str(), g))
        .collect();
    let joins_by_id: HashMap<&str, &Join> = joins.iter().map(|(id, j)| (id.as_str(), j)).collect();
    let ownership = Ownership::claim(
        cloud,
        ad,
        &joins_by_id,
        &groups_by_id,
        &decisions,
        &ad_keys,
        &managed_keys,
    );

    let mut by_name: Vec<&CloudGroup> = cloud.groups.values().collect();
    by_name.sort_by(|a, b| (a.name(), &a.id).cmp(&(b.name(), &b.id)));
    let placed = place(
        &by_name,
        &decisions,
        &ownership,
        joins,
        config,
        &ad_keys,
        &managed_keys,
    );
    let scope = touched.map(|t| scope(t, cloud, &placed, &decisions, &ownership, config));
    let in_scope = |id: &str| scope.as_ref().is_none_or(|s| s.contains(id));
    let placements: HashMap<&str, Placement> = placed
        .iter()
        .map(|(id, p)| {
            let placement = match p {
                Place::Existing { dn, key, .. } => Placement::At {
                    dn,
                    key: key.clone(),
                },
                Place::Create { dn, key, .. } => Placement::At {
                    dn,
                    key: key.clone(),
                },
                Place::Blocked { .. } => Placement::Pending,
            };
            (*id, placement)
        })
        .collect();
    // Old key → new DN of the groups this plan renames.
    let renamed: HashMap<Rc<str>, &str> = placed
        .values()
        .filter_map(|p| match p {
            Place::Existing {
                ad: current,
                dn,
                rename: Some(_),
                ..
            } => Some((ad_keys[current.dn.as_str()].key.clone(), dn.as_ref())),
            _ => None,
        })
        .collect();
    let created: HashSet<&str> = placed
        .iter()
        .filter(|(_, p)| matches!(p, Place::Create { .. }))
        .map(|(id, _)| *id)
        .collect();
    let changes = CloudChanges::new(previous, cloud);
    // The groups planned from their member delta (see `plan_groups_with`): never when
    // everything is planned.
    let deltas: HashMap<&str, MemberDelta> = match touched {
        Some(_) if !last.is_empty() => {
            // A group nesting one whose DN this plan sets is planned in full: its values
            // change with that DN.
            let sets_dn = |id: &str| placed.get(id).is_some_and(Place::sets_dn);
            let any_set = placed.values().any(Place::sets_dn);
            last.iter()
                .filter(|o| in_scope(&o.id))
                .filter_map(|o| {
                    let group = groups_by_id.get(o.id.as_str())?;
                    let placed_as_is = matches!(
                        placed.get(o.id.as_str()),
                        Some(Place::Existing {
                            rename: None,
                            error: None,
                            ..
                        })
                    );
                    if !placed_as_is
                        || ownership.duplicates.contains_key(o.id.as_str())
                        || ownership.adopted.contains(o.id.as_str())
                    {
                        return None;
                    }
                    let nests_set = any_set
                        && group
                            .members
                            .iter()
                            .any(|m| m.kind == MemberKind::Group && sets_dn(&m.id));
                    if nests_set {
                        return None;
                    }
                    let before = changes.before(&group.id)?;
                    let delta =
                        member_delta(group, before, o, &decisions[o.id.as_str()], &changes)?;
                    Some((o.id.as_str(), delta))
                })
                .collect()
        }
        _ => HashMap::default(),
    };
    let dir = Directory::new(
        cloud,
        &ad.resolutions,
        &placements,
        by_name.iter().copied().filter(|g| {
            in_scope(&g.id)
                && decisions[g.id.as_str()].is_written()
                && !deltas.contains_key(g.id.as_str())
        }),
    );

    let mut notices = notices(&decisions, &ad.schema);
    let mut ops = Phases::default();
    ops.creates.reserve_exact(created.len());
    let mut outcomes = Vec::with_capacity(match &scope {
        Some(scope) => scope.len(),
        None => by_name.len(),
    });
    // The sAMAccountNames taken (lower case), read when the plan creates a group.
    let mut sams: Option<HashSet<String>> = None;
    // One copy of each reason text: a first export's creates mostly share theirs.
    let mut reasons = Interner::default();
    // The groups planned from their member delta.
    let mut from_delta = 0;
    for group in by_name.iter().filter(|g| in_scope(&g.id)) {
        // Each group is planned once: its decision moves into its outcome.
        let Some(decision) = decisions.remove(group.id.as_str()) else {
            continue;
        };
        let mut outcome = GroupOutcome {
            id: group.id.clone(),
            name: group.name().to_string(),
            kind: group.kind(),
            // Set below, once the match on the decision is done with it.
            decision: Decision::SoftDeleted,
            ad_state: AdState::Absent,
            ad_dn: None,
            members: Vec::new(),
            errors: Vec::new(),
            drift: Vec::new(),
            member_count: 0,
            written_count: 0,
            adopted: ownership.adopted.contains(group.id.as_str()),
        };
        let mut op = |action: Action, reason: String| Operation {
            group: group.id.clone(),
            name: group.name().to_string(),
            action,
            reason: reasons.intern(&reason),
        };
        match (&decision, placed.get(group.id.as_str())) {
            (
                Decision::Written {
                    group_type,
                    because,
                    ..
                },
                Some(place),
            ) => {
                let quick = match (deltas.get(group.id.as_str()), place) {
                    (Some(delta), Place::Existing { ad: current, .. }) => {
                        member_delta::plan(&dir, group, current, delta).inspect(|_| from_delta += 1)
                    }
                    _ => None,
                };
                let mut wanted = wanted_attrs(group, *group_type, &dir, config, &ad.schema);
                let membership = match quick {
                    Some(q) => {
                        outcome.members = q.outcomes;
                        outcome.member_count = q.member_count;
                        outcome.written_count = q.written_count;
                        outcome.errors = q.errors;
                        Members::Delta {
                            add: q.add,
                            remove: q.remove,
                        }
                    }
                    None => {
                        let mut membership = dir.membership(group);
                        outcome.members = std::mem::take(&mut membership.outcomes);
                        outcome.member_count = outcome.members.len();
                        outcome.written_count = outcome
                            .members
                            .iter()
                            .filter(|m| matches!(m.fate, wb_model::Fate::Written { .. }))
                            .count();
                        outcome.errors.extend(membership.errors.iter().cloned());
                        Members::Full(membership)
                    }
                };
                match place {
                    Place::Existing {
                        ad: current,
                        dn,
                        rename,
                        error,
                        ..
                    } => {
                        outcome.ad_state = AdState::Present;
                        outcome.ad_dn = Some(dn.to_string());
                        outcome.errors.extend(error.iter().cloned());
                        if let Some(dns) = ownership.duplicates.get(group.id.as_str()) {
                            outcome.errors.push(format!(
                                "anchor {} is also held by {} (not writeback's group: left \
                                 alone; delete it or clear its anchor)",
                                anchor_value(&group.id),
                                dns.join("; ")
                            ));
                        }
                        if let Some((action, reason)) = rename.as_deref() {
                            ops.renames.push(op(action.clone(), reason.clone()));
                        }
                        let (props_changed, members_changed) = changes.of(group);
                        // Made by hand only if AD changed the group since the last cycle.
                        let ad_untouched = ad_changed
                            .is_some_and(|c| !c.contains(&current.guid.to_ascii_lowercase()));
                        let joined = joins_by_id
                            .get(group.id.as_str())
                            .is_some_and(|j| j.guid.eq_ignore_ascii_case(&current.guid));
                        if let Some((_, reason)) = rename.as_deref() {
                            if reason.starts_with("drift:") {
                                outcome.drift.push(reason.clone());
                            }
                        }
                        // An AD group taken over in place: its first plan is no drift, and
                        // its groupType goes in a modify of its own, so that AD refusing the
                        // conversion to universal leaves the anchor and members written.
                        let adopted = outcome.adopted;
                        let adopting = adopted && !joined;
                        let retype = if adopted {
                            wanted.remove(ATTR_GROUP_TYPE).filter(|after| {
                                !same_values(
                                    ATTR_GROUP_TYPE,
                                    &current_attr(current, ATTR_GROUP_TYPE),
                                    after,
                                )
                            })
                        } else {
                            None
                        };
                        if let Some((changes, reason, drift)) = attr_changes(
                            current,
                            &wanted,
                            joined,
                            !props_changed && !adopting,
                            !ad_untouched,
                        ) {
                            outcome.drift.extend(drift);
                            let reason = if adopting {
                                format!("adopted in place: {}; {reason}", adoption_text(group))
                            } else {
                                reason
                            };
                            ops.modifies.push(op(
                                Action::Modify {
                                    dn: dn.to_string(),
                                    guid: current.guid.clone(),
                                    changes,
                                },
                                reason,
                            ));
                        }
                        if let Some(after) = retype {
                            let before = current_attr(current, ATTR_GROUP_TYPE);
                            let reason = if adopting {
                                format!(
                                    "adopted: groupType {} ({}) → {} (universal)",
                                    before.join(","),
                                    scope_name(current.group_type),
                                    after.join(",")
                                )
                            } else {
                                outcome.drift.push(format!(
                                    "groupType changed by hand: {} → put back to {}",
                                    before.join(","),
                                    after.join(",")
                                ));
                                "drift: groupType changed by hand".to_string()
                            };
                            ops.modifies.push(op(
                                Action::Modify {
                                    dn: dn.to_string(),
                                    guid: current.guid.clone(),
                                    changes: vec![AttrChange {
                                        attr: ATTR_GROUP_TYPE.to_string(),
                                        before,
                                        after: after.into_vec(),
                                    }],
                                },
                                reason,
                            ));
                        }
                        let (add, remove) = match membership {
                            Members::Full(membership) => member_changes(
                                current,
                                &unique_dns(&membership, &dir),
                                &renamed,
                                &dir,
                            ),
                            Members::Delta { add, remove } => (add, remove),
                        };
                        // Only when the cloud side did not change, and AD changed the group,
                        // can a difference have been made by hand in AD (an adoption's first
                        // plan is none: the cloud takes over what AD held).
                        let by_hand = !members_changed && !adopting && !ad_untouched;
                        if by_hand {
                            outcome.drift.extend(
                                remove
                                    .iter()
                                    .map(|m| format!("member added by hand removed: {m}")),
                            );
                            outcome.drift.extend(
                                add.iter()
                                    .map(|m| format!("member removed by hand put back: {m}")),
                            );
                        }
                        if !add.is_empty() {
                            let reason = if by_hand {
                                format!("drift: {} member(s) removed by hand put back", add.len())
                            } else {
                                format!("members: {} cloud member(s) added", add.len())
                            };
                            let action = Action::AddMembers {
                                dn: dn.to_string(),
                                guid: Some(current.guid.clone()),
                                members: add,
                            };
                            ops.adds.push(op(action, reason));
                        }
                        if !remove.is_empty() {
                            let reason = if by_hand {
                                format!("drift: {} member(s) added by hand removed", remove.len())
                            } else {
                                format!(
                                    "members: {} value(s) no longer members in the cloud removed",
                                    remove.len()
                                )
                            };
                            let action = Action::RemoveMembers {
                                dn: dn.to_string(),
                                guid: current.guid.clone(),
                                members: remove,
                            };
                            ops.removes.push(op(action, reason));
                        }
                    }
                    Place::Create { dn, cn, .. } => {
                        outcome.ad_state = AdState::ToCreate;
                        outcome.ad_dn = Some(dn.clone());
                        let cn = cn.clone();
                        let sams = sams.get_or_insert_with(|| {
                            let mut taken = HashSet::default();
                            taken.reserve(ad.groups.len() + created.len());
                            taken.extend(
                                ad.groups
                                    .iter()
                                    .filter_map(|g| g.sam_account_name.as_deref())
                                    .map(str::to_lowercase),
                            );
                            taken
                        });
                        // Skip the candidates known to be taken (by groups under the managed
                        // OUs or created earlier in this plan); the exporter tries those after
                        // the one chosen (naming::sam_account_name_fallbacks) when AD says it
                        // is taken elsewhere in the domain. The default alone is made when
                        // it is free, as it almost always is.
                        let default = naming::sam_account_name(&cn);
                        let sam = if sams.contains(&default.to_lowercase()) {
                            let mut candidates =
                                naming::sam_account_name_candidates(&cn, &group.id);
                            let first_free = candidates
                                .iter()
                                .position(|c| !sams.contains(&c.to_lowercase()))
                                .unwrap_or(candidates.len() - 1);
                            candidates.swap_remove(first_free)
                        } else {
                            default
                        };
                        sams.insert(sam.to_lowercase());
                        let mut attrs = wanted;
                        attrs.retain(|_, v| !v.is_empty());
                        let object_class = vec!["top".to_string(), "group".to_string()];
                        attrs.insert("objectClass".into(), object_class.into());
                        attrs.insert("cn".into(), cn.into());
                        attrs.insert(ATTR_SAM_ACCOUNT_NAME.into(), sam.into());
                        // A group to create is never planned from a member delta.
                        let membership = match membership {
                            Members::Full(m) => m,
                            Members::Delta { .. } => dir.membership(group),
                        };
                        let (later, inline): (Vec<_>, Vec<_>) = unique_dns(&membership, &dir)
                            .into_iter()
                            .partition(|m| m.nested.is_some_and(|n| created.contains(n)));
                        let reason = if joins_by_id.contains_key(group.id.as_str()) {
                            outcome
                                .drift
                                .push("re-created; the group's SID changes".into());
                            format!("created again: the AD group was deleted by hand; writeback enabled ({because})")
                        } else {
                            format!("created: writeback enabled ({because})")
                        };
                        let action = Action::Create {
                            dn: dn.clone(),
                            attrs,
                            members: inline.into_iter().map(|m| Arc::clone(&m.value)).collect(),
                            sam_account_name_fallbacks: Vec::new(),
                        };
                        ops.creates.push(op(action, reason));
                        if !later.is_empty() {
                            let reason =
                                "members: groups created in this cycle added after their creation"
                                    .to_string();
                            let action = Action::AddMembers {
                                dn: dn.clone(),
                                guid: None,
                                members: later.into_iter().map(|m| Arc::clone(&m.value)).collect(),
                            };
                            ops.adds.push(op(action, reason));
                        }
                    }
                    Place::Blocked { error } => outcome.errors.push(error.clone()),
                }
            }
            (decision, _) => {
                if let Some(current) = ownership.owned_by_id.get(group.id.as_str()) {
                    outcome.ad_dn = Some(current.dn.clone());
                    // An adopted AD group existed before writeback: never deleted, only
                    // left alone (orphaned), even with delete_out_of_scope.
                    if config.delete_out_of_scope && !outcome.adopted {
                        outcome.ad_state = AdState::ToDelete;
                        let reason = format!(
                            "deleted: {} and delete_out_of_scope = true",
                            decision_text(decision)
                        );
                        ops.deletes.push(op(
                            Action::Delete {
                                dn: current.dn.clone(),
                                guid: current.guid.clone(),
                            },
                            reason,
                        ));
                    } else {
                        outcome.ad_state = AdState::Orphaned;
                    }
                }
            }
        }
        outcome.decision = decision;
        outcomes.push(outcome);
    }

    for (id, current) in &ownership.owned {
        let in_cloud = groups_by_id.contains_key(id);
        if !in_cloud && ownership.adopted.contains(id) {
            notices.push(format!(
                "{} was adopted (it existed before writeback) for group {id}, which is gone                  from the cloud: kept, no longer updated",
                current.dn
            ));
        } else if !in_cloud {
            ops.deletes.push(Operation {
                group: id.to_string(),
                name: current
                    .display_name
                    .clone()
                    .unwrap_or_else(|| current.cn.clone()),
                action: Action::Delete {
                    dn: current.dn.clone(),
                    guid: current.guid.clone(),
                },
                reason: "deleted: permanently deleted in the cloud".into(),
            });
        }
    }

    let mut foreign = ownership.foreign;
    foreign.sort_by_cached_key(|f| (dn_key(&f.dn), f.reason.clone()));
    let operations = ops.into_ordered(|dn| match ad_keys.get(dn) {
        Some(k) => Cow::Borrowed(&*k.key),
        None => dir.key_of(dn),
    });
    let plan = Plan {
        operations,
        groups: outcomes,
        foreign,
        notices,
    };
    (plan, from_delta)
}

/// The groups [`plan_groups`] plans for `touched` (see its contract): the touched ones,
/// those whose DN this plan sets (rename, move, create) or cannot give (blocked), the
/// groups with one of those as a member, and with `delete_out_of_scope` the owned groups
/// no longer written back.
fn scope<'a>(
    touched: &'a BTreeSet<ObjectId>,
    cloud: &'a CloudSnapshot,
    placed: &HashMap<&'a str, Place>,
    decisions: &HashMap<&str, Decision>,
    ownership: &Ownership<'a>,
    config: &EngineConfig,
) -> HashSet<&'a str> {
    let mut moved: HashSet<&str> = touched.iter().map(String::as_str).collect();
    for (id, place) in placed {
        if place.sets_dn() {
            moved.insert(id);
        }
    }
    let mut scope = moved.clone();
    for group in cloud.groups.values() {
        let nests_moved = group
            .members
            .iter()
            .any(|m| m.kind == MemberKind::Group && moved.contains(&*m.id));
        if nests_moved {
            scope.insert(group.id.as_str());
        }
    }
    if config.delete_out_of_scope {
        scope.extend(
            ownership
                .owned
                .keys()
                .filter(|id| !decisions.get(*id).is_some_and(Decision::is_written)),
        );
    }
    scope
}

/// Which AD groups writeback owns, by cloud id; the rest is foreign. Owned: under a managed
/// OU with the anchor of a cloud group, or joined (made by writeback, recorded by
/// objectGUID) wherever it is now — so a changed OU moves a group instead of duplicating it.
/// A string compared and hashed as AD compares GUIDs (ASCII case-insensitively), without
/// a lower-case copy.
#[derive(Clone, Copy)]
struct Caseless<'s>(&'s str);

impl PartialEq for Caseless<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(other.0)
    }
}

impl Eq for Caseless<'_> {}

impl std::hash::Hash for Caseless<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut buf = [0u8; 64];
        for chunk in self.0.as_bytes().chunks(buf.len()) {
            let lower = &mut buf[..chunk.len()];
            lower.copy_from_slice(chunk);
            lower.make_ascii_lowercase();
            state.write(lower);
        }
        state.write_u8(0xff);
    }
}

struct Ownership<'a> {
    owned: BTreeMap<&'a str, &'a AdGroup>,
    /// `owned` as a hash map, for lookups.
    owned_by_id: HashMap<&'a str, &'a AdGroup>,
    /// Owned groups that existed before writeback (adopted in place: a cloud-managed AD
    /// group, or a join recorded by `writeback adopt`).
    adopted: HashSet<&'a str>,
    /// Cloud-managed AD groups whose AD group cannot be adopted, with why.
    refused: BTreeMap<&'a str, String>,
    foreign: Vec<ForeignObject>,
    /// Cloud id → the DNs of the other AD objects that carry its anchor. Said loudly on the
    /// group; a group whose anchor is contested by unjoined objects gets no object at all
    /// (none is written, none created).
    duplicates: BTreeMap<&'a str, Vec<String>>,
}

impl<'a> Ownership<'a> {
    fn claim(
        cloud: &'a CloudSnapshot,
        ad: &'a AdSnapshot,
        joins: &HashMap<&'a str, &'a Join>,
        groups_by_id: &HashMap<&str, &CloudGroup>,
        decisions: &HashMap<&str, Decision>,
        ad_keys: &HashMap<&str, DnKey>,
        managed: &[(&str, DnKey)],
    ) -> Self {
        let mut groups: Vec<(&DnKey, &AdGroup)> = ad
            .groups
            .iter()
            .map(|g| (&ad_keys[g.dn.as_str()], g))
            .collect();
        groups.sort_by(|(ka, a), (kb, b)| (&ka.key, &a.guid).cmp(&(&kb.key, &b.guid)));
        let mut foreign = Vec::new();
        // Anchor → the AD groups holding it, in the order above.
        let mut by_anchor: HashMap<&str, Vec<&AdGroup>> = HashMap::default();
        by_anchor.reserve(ad.groups.len());
        let mut refused: BTreeMap<&str, String> = BTreeMap::new();
        let joined_by_guid: HashMap<Caseless, &str> = joins
            .iter()
            .map(|(id, j)| (Caseless(&j.guid), *id))
            .collect();
        // Cloud-managed AD groups written back, by the SID of the AD group they name.
        let cloud_managed: HashMap<Caseless, &str> = cloud
            .groups
            .values()
            .filter(|g| g.is_cloud_managed_ad_group())
            .filter(|g| {
                decisions
                    .get(g.id.as_str())
                    .is_some_and(Decision::is_written)
            })
            .filter_map(|g| Some((Caseless(g.ad_sid()?), g.id.as_str())))
            .collect();
        for (key, g) in groups {
            let named_by = g
                .sid
                .as_deref()
                .filter(|_| !cloud_managed.is_empty())
                .and_then(|sid| cloud_managed.get(&Caseless(sid.trim())).copied());
            // Critical or protected objects are never adopted nor written, whatever the
            // cloud or the state says: a cloud administrator must not become a domain
            // administrator through writeback.
            if let Some(why) = g.protection() {
                if let Some(id) = named_by {
                    refused.insert(
                        id,
                        format!(
                            "its AD group {} is protected ({why}): writeback never adopts nor \
                             writes it",
                            g.dn
                        ),
                    );
                }
                foreign.push(foreign_object(
                    g,
                    format!("protected object ({why}): never adopted nor written"),
                ));
                continue;
            }
            // A group writeback made keeps its join (objectGUID) even if its anchor was
            // cleared by hand (the anchor is put back) or it sits outside the managed OUs
            // (it is moved back) — but not if its anchor now names another group.
            let guid = Caseless(&g.guid);
            let joined = joined_by_guid
                .get(&guid)
                .copied()
                .filter(|id| g.anchor().is_none_or(|a| a.eq_ignore_ascii_case(id)));
            // The AD group a cloud-managed group names by SID, wherever it is, taken over
            // in place — unless it carries another group's anchor or is joined to another.
            let adoptable = named_by.filter(|id| {
                let free = g.anchor().is_none_or(|a| a.eq_ignore_ascii_case(id))
                    && joined_by_guid
                        .get(&guid)
                        .is_none_or(|j| j.eq_ignore_ascii_case(id));
                if !free {
                    refused.insert(
                        id,
                        format!(
                            "its AD group {} belongs to another group (anchor {}): not adopted",
                            g.dn,
                            g.admin_description
                                .as_deref()
                                .or(g.external_directory_object_id.as_deref())
                                .unwrap_or("joined")
                        ),
                    );
                }
                free
            });
            let in_managed = managed
                .iter()
                .any(|(ou, ou_key)| is_under_keyed(&g.dn, key, ou, ou_key));
            match (joined.or(adoptable), in_managed) {
                (Some(id), _) => by_anchor.entry(id).or_default().push(g),
                (None, false) => foreign.push(foreign_object(g, "not under a managed OU".into())),
                (None, true) => match g.anchor() {
                    None => foreign.push(foreign_object(
                        g,
                        "no anchor (adminDescription / msDS-ExternalDirectoryObjectId)".into(),
                    )),
                    Some(id) => by_anchor.entry(id).or_default().push(g),
                },
            }
        }
        // Collected, then made a map in one sorted pass (anchors come in hash order).
        let mut owned = Vec::with_capacity(by_anchor.len());
        let mut duplicates: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (id, candidates) in by_anchor {
            let joined = joins.get(id).map(|j| j.guid.as_str());
            let is_joined =
                |g: &AdGroup| joined.is_some_and(|guid| guid.eq_ignore_ascii_case(&g.guid));
            let written = decisions.get(id).is_some_and(Decision::is_written);
            let owner = candidates
                .iter()
                .find(|g| is_joined(g))
                .or_else(|| {
                    // Unjoined: only an object that is the only one with the anchor.
                    (candidates.len() == 1 && written)
                        .then(|| candidates.first())
                        .flatten()
                })
                .copied();
            if candidates.len() > 1 {
                duplicates.insert(
                    id,
                    candidates
                        .iter()
                        .filter(|g| !owner.is_some_and(|o| std::ptr::eq(o, **g)))
                        .map(|g| g.dn.clone())
                        .collect(),
                );
            }
            for g in candidates {
                if owner.is_some_and(|o| std::ptr::eq(o, g)) {
                    owned.push((id, g));
                } else if let Some(o) = owner {
                    let reason = format!(
                        "duplicate anchor {} (writeback owns {})",
                        anchor_value(id),
                        o.dn
                    );
                    foreign.push(foreign_object(g, reason));
                } else if written {
                    let reason = format!(
                        "duplicate anchor {}: held by several objects, none of them joined; \
                         writeback writes none of them",
                        anchor_value(id)
                    );
                    foreign.push(foreign_object(g, reason));
                } else {
                    let why = match decisions.get(id) {
                        Some(d) => decision_text(d),
                        None => "not in the cloud and never joined".to_string(),
                    };
                    let reason = format!(
                        "anchor of a group not written back ({}: {why})",
                        anchor_value(id)
                    );
                    foreign.push(foreign_object(g, reason));
                }
            }
        }
        let owned: BTreeMap<&str, &AdGroup> = owned.into_iter().collect();
        let sid_of = |id: &str| {
            groups_by_id
                .get(id)
                .filter(|g| g.is_cloud_managed_ad_group())
                .and_then(|g| g.ad_sid())
        };
        let adopted = owned
            .iter()
            .filter(|(id, g)| {
                joins
                    .get(**id)
                    .is_some_and(|j| j.adopted && j.guid.eq_ignore_ascii_case(&g.guid))
                    || sid_of(id).is_some_and(|sid| {
                        g.sid
                            .as_deref()
                            .is_some_and(|s| s.trim().eq_ignore_ascii_case(sid))
                    })
            })
            .map(|(id, _)| *id)
            .collect();
        Ownership {
            owned_by_id: owned.iter().map(|(id, g)| (*id, *g)).collect(),
            owned,
            adopted,
            refused,
            foreign,
            duplicates,
        }
    }
}

fn foreign_object(g: &AdGroup, reason: String) -> ForeignObject {
    ForeignObject {
        dn: g.dn.clone(),
        reason,
    }
}

/// Where a written-back group's AD group will be after this plan.
enum Place<'a> {
    /// An owned AD group; `dn` is its DN after the (optional) rename.
    Existing {
        ad: &'a AdGroup,
        /// Borrowed from `ad` unless renamed.
        dn: Cow<'a, str>,
        /// The key of `dn` (shared with the claims and placements).
        key: Rc<str>,
        /// Boxed: most groups have none.
        rename: Option<Box<(Action, String)>>,
        error: Option<String>,
    },
    Create {
        dn: String,
        key: Rc<str>,
        /// The CN (unescaped) of `dn`.
        cn: String,
    },
    /// No AD group and none can be created this cycle.
    Blocked { error: String },
}

impl Place<'_> {
    /// Whether this plan sets the group's DN (renames or moves it, creates it) or cannot
    /// give it one: the `member` values naming it change.
    fn sets_dn(&self) -> bool {
        match self {
            Place::Existing { rename, .. } => rename.is_some(),
            Place::Create { .. } | Place::Blocked { .. } => true,
        }
    }
}

/// Decides renames, moves and creates for the written-back groups, refusing any target
/// DN that another object already holds or another group of this plan claims.
fn place<'a>(
    by_name: &[&'a CloudGroup],
    decisions: &HashMap<&str, Decision>,
    ownership: &Ownership<'a>,
    joins: &Joins,
    config: &EngineConfig,
    ad_keys: &HashMap<&str, DnKey>,
    managed_keys: &[(&str, DnKey)],
) -> HashMap<&'a str, Place<'a>> {
    let occupied: HashSet<&str> = ad_keys.values().map(|k| &*k.key).collect();
    // The groups' target OUs are few: their keys are computed once.
    let mut ou_keys: HashMap<&str, DnKey> = HashMap::default();
    // DN keys claimed by a group of this plan, with the group's id and name: two cloud
    // groups whose CNs are equal as AD compares them (case-insensitively, after truncation)
    // cannot both have the DN, and the one left out is told which group holds it.
    // Sized once (a hash map grown by doubling leaves its former tables as holes in the
    // heap: at 100,000 groups, tens of MiB of peak memory).
    let mut claimed: HashMap<Rc<str>, (&str, &str)> = HashMap::default();
    claimed.reserve(by_name.len());
    let held_by = |claimed: &HashMap<Rc<str>, (&str, &str)>, key: &str| match claimed.get(key) {
        Some((id, name)) => format!("the group '{name}' ({id}) of this plan has the same name"),
        None => "that DN is taken by another object (see foreign objects)".to_string(),
    };
    let mut placed = HashMap::default();
    placed.reserve(by_name.len());
    // The groups written back, in name order (looked up once: both passes walk them).
    let written: Vec<&'a CloudGroup> = by_name
        .iter()
        .copied()
        .filter(|g| decisions[g.id.as_str()].is_written())
        .collect();
    // The OU a group belongs in.
    let target_ou = |g: &CloudGroup| match &decisions[g.id.as_str()] {
        Decision::Written { ou, .. } => &**ou,
        _ => &*config.default_ou,
    };
    // What put a group in its OU (for the reason of a move).
    let placed_by = |g: &CloudGroup| match config.first_matching_rule(g) {
        Some(i) if config.rules[i].ou.is_some() => rule_text(config, i),
        _ => "the default OU".to_string(),
    };

    for group in &written {
        let Some(current) = ownership.owned_by_id.get(group.id.as_str()).copied() else {
            continue;
        };
        let current_key = &ad_keys[current.dn.as_str()];
        let current_cn = naming::cn_of_dn(&current.dn).unwrap_or_else(|| current.cn.clone());
        // An adopted AD group keeps its CN and stays where it is, unless a rule with an
        // `ou` matches its cloud group (then it moves there, CN kept).
        let adopted = ownership.adopted.contains(group.id.as_str());
        let (cn, ou) = if adopted {
            let rule_ou = config
                .first_matching_rule(group)
                .and_then(|i| config.rules[i].ou.as_deref());
            (current_cn.clone(), rule_ou.unwrap_or(""))
        } else {
            (naming::cn(group, config.naming), target_ou(group))
        };
        let home = managed_keys
            .iter()
            .filter(|(m, key)| is_under_keyed(&current.dn, current_key, m, key))
            .max_by_key(|(_, key)| key.key.len());
        let ou_key = &ou_keys.entry(ou).or_insert_with(|| DnKey::of(ou)).key;
        // Outside every managed OU (the OU setting changed, or moved by hand): move it back.
        let moving = !(adopted && ou.is_empty()) && home.is_none_or(|(_, h)| &h.key != ou_key);
        let mut place = Place::Existing {
            ad: current,
            dn: Cow::Borrowed(current.dn.as_str()),
            key: current_key.key.clone(),
            rename: None,
            error: None,
        };
        if cn != current_cn || moving {
            let parent = match naming::split_dn(&current.dn) {
                Some((_, parent)) if !moving => parent,
                _ => ou,
            };
            let new_rdn = naming::rdn(&cn);
            let new_dn = format!("{new_rdn},{parent}");
            let key: Rc<str> = Rc::from(dn_key(&new_dn));
            if key != current_key.key && (occupied.contains(&*key) || claimed.contains_key(&key)) {
                if let Place::Existing { error, .. } = &mut place {
                    let why = match claimed.get(&key) {
                        Some(_) => held_by(&claimed, &key),
                        None => "that DN is taken by another object".to_string(),
                    };
                    *error = Some(format!("cannot rename {} to {new_dn}: {why}", current.dn));
                }
            } else {
                claimed.insert(key.clone(), (group.id.as_str(), group.name()));
                let mut why = Vec::new();
                if cn != current_cn {
                    let before = current
                        .display_name
                        .clone()
                        .unwrap_or_else(|| current_cn.clone());
                    let exported_cn = joins
                        .get(&group.id)
                        .filter(|j| j.guid.eq_ignore_ascii_case(&current.guid))
                        .and_then(|j| naming::cn_of_dn(&j.dn));
                    if exported_cn.as_deref() == Some(cn.as_str()) {
                        why.push(format!(
                            "drift: renamed by hand to '{current_cn}'; put back to '{cn}'"
                        ));
                    } else if before != group.name() {
                        why.push(format!(
                            "renamed: display name changed '{before}' → '{}'",
                            group.name()
                        ));
                    } else {
                        why.push(format!("renamed: CN '{current_cn}' → '{cn}' (naming)"));
                    }
                }
                if moving {
                    why.push(format!("moved to {ou} ({})", placed_by(group)));
                }
                let action = Action::Rename {
                    dn: current.dn.clone(),
                    guid: current.guid.clone(),
                    new_rdn,
                    new_parent: moving.then(|| ou.to_string()),
                    new_dn: new_dn.clone(),
                };
                place = Place::Existing {
                    ad: current,
                    dn: Cow::Owned(new_dn),
                    key,
                    rename: Some(Box::new((action, why.join("; ")))),
                    error: None,
                };
            }
        }
        if let Place::Existing { key, .. } = &place {
            if !claimed.contains_key(key) {
                claimed.insert(key.clone(), (group.id.as_str(), group.name()));
            }
        }
        placed.insert(group.id.as_str(), place);
    }

    for group in &written {
        if ownership.owned_by_id.contains_key(group.id.as_str()) {
            continue;
        }
        if let Some(dns) = ownership.duplicates.get(group.id.as_str()) {
            placed.insert(
                group.id.as_str(),
                Place::Blocked {
                    error: format!(
                        "anchor {} is held by {} AD objects ({}), none of them joined to this \
                         group: writeback writes none of them and creates no other; delete or \
                         clear the anchor of all but one",
                        anchor_value(&group.id),
                        dns.len(),
                        dns.join("; ")
                    ),
                },
            );
            continue;
        }
        if group.is_cloud_managed_ad_group() {
            // Written onto its own AD group, never created anew in a managed OU.
            let error = ownership
                .refused
                .get(group.id.as_str())
                .cloned()
                .unwrap_or_else(|| {
                    format!(
                        "its AD group (onPremisesSecurityIdentifier {}) was not found in AD: a \
                     cloud-managed AD group is written onto that group, never created anew",
                        group.ad_sid().unwrap_or_default()
                    )
                });
            placed.insert(group.id.as_str(), Place::Blocked { error });
            continue;
        }
        let ou = target_ou(group);
        let cn = naming::cn(group, config.naming);
        let dn = format!("{},{ou}", naming::rdn(&cn));
        let key: Rc<str> = Rc::from(dn_key(&dn));
        let place = if occupied.contains(&*key) || claimed.contains_key(&key) {
            Place::Blocked {
                error: format!("cannot create {dn}: {}", held_by(&claimed, &key)),
            }
        } else {
            claimed.insert(key.clone(), (group.id.as_str(), group.name()));
            Place::Create { dn, key, cn }
        };
        placed.insert(group.id.as_str(), place);
    }
    placed
}

/// The attributes writeback manages on a group, with the values the cloud wants (an
/// empty list: the attribute must be absent). sAMAccountName, cn and objectClass are
/// set on create only and are not here.
fn wanted_attrs(
    group: &CloudGroup,
    group_type: OnPremGroupType,
    dir: &Directory,
    config: &EngineConfig,
    schema: &AdSchema,
) -> BTreeMap<Cow<'static, str>, AttrValues> {
    let text = |v: Option<&str>| match v.filter(|v| !v.is_empty()) {
        Some(v) => AttrValues::One(v.to_string()),
        None => AttrValues::default(),
    };
    let one = AttrValues::One;
    let mut attrs: BTreeMap<Cow<'static, str>, AttrValues> = BTreeMap::new();
    let mut put = |attr: &'static str, values: AttrValues| {
        attrs.insert(Cow::Borrowed(attr), values);
    };
    put(ATTR_GROUP_TYPE, one(group_type.ad_group_type().to_string()));
    put(ATTR_ADMIN_DESCRIPTION, one(anchor_value(&group.id)));
    if schema.external_directory_object_id {
        put(ATTR_EXTERNAL_ID, one(anchor_value(&group.id)));
    }
    // Display names and descriptions keep what AD accepts, cut to AD's length in UTF-16
    // units; NUL is dropped (Windows AD refuses it in a string value).
    let without_nul = |v: &str| v.replace('\0', "");
    let display_name = group.display_name.as_deref().map(without_nul);
    put(
        ATTR_DISPLAY_NAME,
        text(
            display_name
                .as_deref()
                .map(|d| naming::left_utf16(d, DISPLAY_NAME_MAX_UNITS)),
        ),
    );
    let description = group.description.as_deref().map(without_nul);
    put(
        ATTR_DESCRIPTION,
        text(
            description
                .as_deref()
                .map(|d| naming::left_utf16(d.trim(), DESCRIPTION_MAX_UNITS)),
        ),
    );
    if group_type.is_mail_enabled() {
        if schema.mail {
            put(ATTR_MAIL, text(group.mail.as_deref()));
        }
        if schema.mail_nickname {
            put(ATTR_MAIL_NICKNAME, text(group.mail_nickname.as_deref()));
        }
        if schema.proxy_addresses {
            let set: BTreeSet<&String> = group
                .proxy_addresses
                .iter()
                .filter(|p| !p.is_empty())
                .collect();
            put(
                ATTR_PROXY_ADDRESSES,
                AttrValues::Many(set.into_iter().cloned().collect()),
            );
        }
    }
    if config.write_owners {
        let manager = dir.manager(group).into_iter().collect::<Vec<_>>();
        put(ATTR_MANAGED_BY, manager.into());
    }
    attrs
}

fn current_attr(g: &AdGroup, attr: &str) -> Vec<String> {
    GroupAttr::parse(attr)
        .map(|a| a.values(g))
        .unwrap_or_default()
}

/// `same_values(attr, &current_attr(current, attr), after)`, without copying the values of
/// single-valued attributes (most groups have nothing to change).
fn same_as_current(current: &AdGroup, attr: &str, after: &[String]) -> bool {
    let one = |v: &Option<String>| match v.as_deref().filter(|v| !v.is_empty()) {
        Some(v) => after.len() == 1 && after[0] == v,
        None => after.is_empty(),
    };
    // `attr` is a `GroupAttr::name`: matched exactly first (cheap), case-insensitively else.
    let parsed = GroupAttr::ALL
        .into_iter()
        .find(|a| a.name() == attr)
        .or_else(|| GroupAttr::parse(attr));
    match parsed {
        Some(GroupAttr::SamAccountName) => one(&current.sam_account_name),
        Some(GroupAttr::AdminDescription) => one(&current.admin_description),
        Some(GroupAttr::ExternalDirectoryObjectId) => one(&current.external_directory_object_id),
        Some(GroupAttr::DisplayName) => one(&current.display_name),
        Some(GroupAttr::Description) => one(&current.description),
        Some(GroupAttr::Mail) => one(&current.mail),
        Some(GroupAttr::MailNickname) => one(&current.mail_nickname),
        _ => same_values(attr, &current_attr(current, attr), after),
    }
}

fn same_values(attr: &str, before: &[String], after: &[String]) -> bool {
    match attr {
        ATTR_MANAGED_BY => {
            before.len() == after.len() && before.iter().zip(after).all(|(a, b)| dn_eq(a, b))
        }
        ATTR_PROXY_ADDRESSES => {
            let a: BTreeSet<&String> = before.iter().collect();
            let b: BTreeSet<&String> = after.iter().collect();
            a == b
        }
        _ => before == after,
    }
}

/// The attribute changes that bring `current` to `wanted`, the operation's reason, and the
/// drift lines (groupType and anchors only change by hand: the cloud never changes them
/// without a type change, which is reported the same way). `cloud_unchanged`: the group's
/// cloud side did not change; `ad_changed`: AD changed the group since the last cycle (or
/// that is not known) — a difference is drift only then.
fn attr_changes(
    current: &AdGroup,
    wanted: &BTreeMap<Cow<'static, str>, AttrValues>,
    joined: bool,
    cloud_unchanged: bool,
    ad_changed: bool,
) -> Option<(Vec<AttrChange>, String, Vec<String>)> {
    let changes: Vec<AttrChange> = wanted
        .iter()
        .filter(|(attr, after)| !same_as_current(current, attr, after))
        .map(|(attr, after)| AttrChange {
            attr: attr.to_string(),
            before: current_attr(current, attr),
            after: after.to_vec(),
        })
        .collect();
    if changes.is_empty() {
        return None;
    }
    let mut reasons = Vec::new();
    let mut drift = Vec::new();
    let mut updated = Vec::new();
    for c in &changes {
        match c.attr.as_str() {
            // groupType and the anchors change only by hand — in a group AD changed.
            ATTR_GROUP_TYPE if ad_changed => {
                reasons.push("drift: groupType changed by hand".to_string());
                drift.push(format!(
                    "groupType changed by hand: {} → put back to {}",
                    c.before.join(","),
                    c.after.join(",")
                ));
            }
            // A group adopted through its other anchor attribute lacks this one: not drift.
            ATTR_ADMIN_DESCRIPTION | ATTR_EXTERNAL_ID if c.before.is_empty() && !joined => {
                reasons.push(format!("anchor {} added", c.attr));
            }
            ATTR_ADMIN_DESCRIPTION | ATTR_EXTERNAL_ID if ad_changed => {
                reasons.push(format!("drift: anchor {} changed by hand", c.attr));
                drift.push(format!(
                    "anchor {} changed by hand: put back to {}",
                    c.attr,
                    c.after.join(",")
                ));
            }
            other if cloud_unchanged && ad_changed => {
                reasons.push(format!("drift: {other} changed by hand"));
                drift.push(format!("{other} changed by hand: put back"));
            }
            other => updated.push(other.to_string()),
        }
    }
    if !updated.is_empty() {
        reasons.push(format!("updated from the cloud: {}", updated.join(", ")));
    }
    Some((changes, reasons.join("; "), drift))
}

/// A written group's members as a plan computes them.
enum Members<'d> {
    /// Every member resolved.
    Full(Membership<'d>),
    /// Planned from the member delta (`member_delta`): the values to add and to remove.
    Delta {
        add: Vec<Arc<str>>,
        remove: Vec<Arc<str>>,
    },
}

/// The members that should be values of `member`, one per DN (as AD compares DNs: the
/// first in member order), in key order.
fn unique_dns<'m, 'd>(membership: &'m Membership<'d>, dir: &Directory) -> Vec<&'m MemberDn<'d>> {
    let mut dns: Vec<&MemberDn> = membership.dns.iter().collect();
    // Stable: of equal keys the first in member order comes first and is kept.
    dns.sort_by(|a, b| dir.cmp_order(&a.key, &b.key));
    dns.dedup_by(|later, kept| later.key == kept.key);
    dns
}

/// Values to add and to remove so `member` equals the cloud's resolved members, each in
/// key order. Current values naming a group renamed by this plan are read under their new
/// DN, as AD will show them after the rename.
fn member_changes<'a>(
    current: &'a AdGroup,
    want: &[&MemberDn],
    renamed: &HashMap<Rc<str>, &str>,
    dir: &Directory<'a>,
) -> (Vec<Arc<str>>, Vec<Arc<str>>) {
    let mut have: Vec<(&str, DnOrder)> = current
        .members
        .iter()
        .map(|m| {
            let key = dir.order_of_value(m);
            if renamed.is_empty() {
                return (&**m, key);
            }
            match renamed.get(dir.key_text(&key)) {
                Some(dn) => (*dn, dir.order_of(dn)),
                None => (&**m, key),
            }
        })
        .collect();
    have.sort_by(|a, b| dir.cmp_order(&a.1, &b.1));
    have.dedup_by(|later, kept| later.1 == kept.1);
    let (mut add, mut remove) = (Vec::new(), Vec::new());
    let (mut w, mut h) = (want.iter().peekable(), have.iter().peekable());
    loop {
        match (w.peek(), h.peek()) {
            (None, None) => break,
            (Some(x), None) => {
                add.push(Arc::clone(&x.value));
                w.next();
            }
            (None, Some(y)) => {
                remove.push(Arc::from(y.0));
                h.next();
            }
            (Some(x), Some(y)) => match dir.cmp_order(&x.key, &y.1) {
                std::cmp::Ordering::Less => {
                    add.push(Arc::clone(&x.value));
                    w.next();
                }
                std::cmp::Ordering::Greater => {
                    remove.push(Arc::from(y.0));
                    h.next();
                }
                std::cmp::Ordering::Equal => {
                    w.next();
                    h.next();
                }
            },
        }
    }
    (add, remove)
}

/// "cloud-managed AD group, SID S-1-5-21-…" or "joined by writeback adopt".
fn adoption_text(group: &CloudGroup) -> String {
    match group.ad_sid() {
        Some(sid) if group.is_cloud_managed_ad_group() => {
            format!("cloud-managed AD group (SID {sid})")
        }
        _ => "adopted by hand (writeback adopt)".to_string(),
    }
}

/// The scope a groupType value names, for messages.
fn scope_name(group_type: i32) -> &'static str {
    use wb_model::{GROUP_TYPE_DOMAIN_LOCAL, GROUP_TYPE_GLOBAL, GROUP_TYPE_UNIVERSAL};
    if group_type & GROUP_TYPE_UNIVERSAL != 0 {
        "universal"
    } else if group_type & GROUP_TYPE_DOMAIN_LOCAL != 0 {
        "domain-local"
    } else if group_type & GROUP_TYPE_GLOBAL != 0 {
        "global"
    } else {
        "no scope"
    }
}

/// Why a group is not written back, in a few words.
fn decision_text(d: &Decision) -> String {
    match d {
        Decision::Written { because, .. } => format!("written back ({because})"),
        Decision::NotEnabled { because } => format!("not enabled for writeback ({because})"),
        Decision::Unsupported { because } | Decision::Invalid { because } => because.clone(),
        Decision::SyncedFromAd => "synced from AD".into(),
        Decision::OverLimit { count, limit } => {
            format!("over the member limit ({count} members, limit {limit})")
        }
        Decision::SoftDeleted => "soft-deleted in the cloud".into(),
    }
}

/// Run-wide notes: attributes the AD schema lacks, said once rather than per group.
fn notices(decisions: &HashMap<&str, Decision>, schema: &AdSchema) -> Vec<String> {
    let mut out = Vec::new();
    let written: Vec<OnPremGroupType> = decisions
        .values()
        .filter_map(|d| match d {
            Decision::Written { group_type, .. } => Some(*group_type),
            _ => None,
        })
        .collect();
    if !written.is_empty() && !schema.external_directory_object_id {
        out.push(
            "the AD schema has no msDS-ExternalDirectoryObjectId (Windows Server 2016 schema): the anchor is adminDescription alone"
                .to_string(),
        );
    }
    if written.iter().any(|t| t.is_mail_enabled()) {
        for attr in [
            GroupAttr::Mail,
            GroupAttr::MailNickname,
            GroupAttr::ProxyAddresses,
        ] {
            let (has, attr) = (attr.in_schema(schema), attr.name());
            if !has {
                out.push(format!(
                    "the AD schema has no {attr} attribute on groups: {attr} is not written for mail-enabled groups"
                ));
            }
        }
    }
    out
}

/// Operations by phase; the plan runs them phase after phase.
#[derive(Default)]
struct Phases {
    renames: Vec<Operation>,
    creates: Vec<Operation>,
    modifies: Vec<Operation>,
    adds: Vec<Operation>,
    removes: Vec<Operation>,
    deletes: Vec<Operation>,
}

impl Phases {
    /// The operations phase after phase, each phase in the order of its DNs' keys (given by
    /// `key`), then of group ids.
    fn into_ordered<'k>(self, key: impl Fn(&str) -> Cow<'k, str>) -> Vec<Operation> {
        let Phases {
            renames,
            creates,
            modifies,
            adds,
            removes,
            deletes,
        } = self;
        let mut phases = [renames, creates, modifies, adds, removes, deletes];
        for phase in &mut phases {
            // Sorted as `sort_by_cached_key` does (stable), with keys borrowed where known:
            // the (key, index) pairs are sorted, then the operations permuted in place.
            let mut order: Vec<(Cow<str>, usize)> = phase
                .iter()
                .enumerate()
                .map(|(i, o)| (key(o.action.dn()), i))
                .collect();
            order.sort_by(|(ka, a), (kb, b)| {
                (ka, &phase[*a].group, a).cmp(&(kb, &phase[*b].group, b))
            });
            for i in 0..order.len() {
                let mut index = order[i].1;
                while index < i {
                    index = order[index].1;
                }
                order[i].1 = index;
                phase.swap(i, index);
            }
        }
        // Joined in the largest phase's vector (grown in place — a first plan's creates are
        // most of it — rather than copied into a new one beside it).
        let total: usize = phases.iter().map(Vec::len).sum();
        let biggest = (0..phases.len())
            .max_by_key(|i| (phases[*i].len(), std::cmp::Reverse(*i)))
            .unwrap_or(0);
        let mut out = std::mem::take(&mut phases[biggest]);
        out.reserve_exact(total - out.len());
        let before: Vec<Operation> = phases[..biggest]
            .iter_mut()
            .flat_map(|p| p.drain(..))
            .collect();
        out.splice(0..0, before);
        for phase in &mut phases[biggest + 1..] {
            out.append(phase);
        }
        out
    }
}
