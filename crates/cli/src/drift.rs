//! Drift as a security event: from a cycle's plan, every change made by hand in AD to a
//! group writeback writes — typed ([`DriftKind`]), logged at WARN, kept in the run history.
//!
//! The engine decides what the plan does; this module reads the plan's operations (their
//! values) and tells which of them put back a hand-made change, by the engine's own rules:
//! the cloud side did not change ([`wb_engine::CloudChanges`]) yet AD differs; groupType and
//! anchors only ever change by hand; a CN or OU that differs from what writeback last
//! exported (the join) was renamed or moved by hand; a joined group that must be created
//! again was deleted by hand.

use crate::thresholds::Hold;
use std::collections::BTreeSet;
use tracing::warn;
use wb_engine::naming::dn_key;
use wb_model::{Action, CloudSnapshot, DriftEvent, DriftKind, GroupAttr, Joins, Plan};

/// What a cycle knew before it planned, as the engine got it.
pub struct Before<'a> {
    /// The cloud image of the previous cycle.
    pub cloud: Option<&'a CloudSnapshot>,
    /// The joins as before this cycle.
    pub joins: &'a Joins,
    /// The AD groups (objectGUID, lower case) that changed in AD since the previous cycle's
    /// image; `None` when not known (AD read in full). An operation on a group AD did not
    /// change is no drift: nobody changed it by hand.
    pub ad_changed: Option<&'a BTreeSet<String>>,
}

/// Every drift the plan puts back. `hold`: what the thresholds hold back; `staging`:
/// nothing is written.
pub fn events(
    plan: &Plan,
    before: Before<'_>,
    cloud: &CloudSnapshot,
    hold: &Hold,
    staging: bool,
) -> Vec<DriftEvent> {
    let mut out = Vec::new();
    let Before {
        cloud: previous,
        joins,
        ad_changed,
    } = before;
    let changes = wb_engine::CloudChanges::new(previous, cloud);
    for op in &plan.operations {
        let Some(group) = cloud.groups.get(&op.group) else {
            continue;
        };
        // The AD group the operation is on (a create: the joined one it replaces).
        let guid = match &op.action {
            Action::Create { .. } => joins.get(&op.group).map(|j| j.guid.as_str()),
            other => other.guid(),
        };
        if let (Some(changed), Some(guid)) = (ad_changed, guid) {
            if !changed.contains(&guid.to_ascii_lowercase()) {
                continue;
            }
        }
        let (props_changed, members_changed) = changes.of(group);
        let join = joins.get(&op.group);
        let joined = |guid: &str| join.is_some_and(|j| j.guid.eq_ignore_ascii_case(guid));
        let fix = |done: &str| {
            if staging {
                format!("staging: not {done}")
            } else if hold.holds(&op.action) {
                format!("not {done}: held back by the threshold")
            } else {
                done.to_string()
            }
        };
        let event =
            |kind, attribute: &str, before: Vec<String>, after: Vec<String>, fix| DriftEvent {
                group: op.group.clone(),
                name: op.name.clone(),
                dn: op.action.dn().to_string(),
                kind,
                attribute: attribute.to_string(),
                before,
                after,
                fix,
            };
        match &op.action {
            Action::Create { dn, .. } => {
                if let Some(j) = join {
                    out.push(event(
                        DriftKind::Deleted,
                        "objectGUID",
                        vec![format!("{} ({})", j.guid, j.dn)],
                        vec![dn.clone()],
                        fix("created again (new objectGUID and objectSid: ACLs naming the old SID need the new one)"),
                    ));
                }
            }
            Action::Rename {
                dn, guid, new_dn, ..
            } if joined(guid) => {
                let Some(exported) = join.map(|j| j.dn.as_str()) else {
                    continue;
                };
                let key = |dn: &str| {
                    let k = dn_key(dn);
                    let (rdn, parent) = split_first_rdn(&k);
                    (rdn.to_string(), parent.to_string())
                };
                let (rdn, parent) = key(dn);
                let (new_rdn, new_parent) = key(new_dn);
                let (old_rdn, old_parent) = key(exported);
                let (rdn_text, parent_text) = split_first_rdn(dn);
                let (new_rdn_text, new_parent_text) = split_first_rdn(new_dn);
                if rdn != new_rdn && old_rdn == new_rdn {
                    out.push(event(
                        DriftKind::Renamed,
                        "cn",
                        vec![rdn_text.to_string()],
                        vec![new_rdn_text.to_string()],
                        fix("renamed back"),
                    ));
                }
                if parent != new_parent && old_parent == new_parent {
                    out.push(event(
                        DriftKind::Moved,
                        "parent",
                        vec![parent_text.to_string()],
                        vec![new_parent_text.to_string()],
                        fix("moved back"),
                    ));
                }
            }
            Action::Modify { guid, changes, .. } => {
                for c in changes {
                    let attr = GroupAttr::parse(&c.attr);
                    let anchor = attr.is_some_and(GroupAttr::is_anchor);
                    let kind = if attr == Some(GroupAttr::GroupType) {
                        DriftKind::Retyped
                    } else if anchor && !joined(guid) {
                        continue; // adopted through its other anchor: not drift
                    } else if anchor && c.before.is_empty() {
                        DriftKind::AnchorCleared
                    } else if anchor {
                        DriftKind::AnchorChanged
                    } else if !props_changed {
                        DriftKind::AttributeChanged
                    } else {
                        continue; // updated from the cloud
                    };
                    out.push(event(
                        kind,
                        &c.attr,
                        c.before.clone(),
                        c.after.clone(),
                        fix("put back"),
                    ));
                }
            }
            Action::AddMembers {
                guid: Some(_),
                members,
                ..
            } if !members_changed => {
                for m in members {
                    out.push(event(
                        DriftKind::MemberRemoved,
                        "member",
                        vec![],
                        vec![m.to_string()],
                        fix("put back"),
                    ));
                }
            }
            Action::RemoveMembers { members, .. } if !members_changed => {
                for m in members {
                    out.push(event(
                        DriftKind::MemberAdded,
                        "member",
                        vec![m.to_string()],
                        vec![],
                        fix("removed"),
                    ));
                }
            }
            _ => {}
        }
    }
    out
}

/// Logs each drift at WARN: the group, the attribute, the values and the fix.
pub fn log(events: &[DriftEvent]) {
    for e in events {
        warn!(
            group = %e.name,
            id = %e.group,
            dn = %e.dn,
            kind = %e.kind,
            attribute = %e.attribute,
            before = %e.before.join(" | "),
            after = %e.after.join(" | "),
            fix = %e.fix,
            "drift on {}: {}",
            e.name,
            e.detail()
        );
    }
}

/// The first RDN and the parent of `dn`, split as the engine splits DNs.
fn split_first_rdn(dn: &str) -> (&str, &str) {
    wb_engine::naming::split_dn(dn).unwrap_or((dn.trim(), ""))
}

/// Counts per kind, for the summary line (`2 member-added, 1 renamed`).
pub fn kinds_line(events: &[DriftEvent]) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for e in events {
        *counts.entry(e.kind).or_insert(0usize) += 1;
    }
    counts
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use wb_model::{AttrChange, CloudGroup, Join, Operation};

    const OU: &str = "OU=Groups,DC=x";

    fn image(description: &str) -> CloudSnapshot {
        let mut c = CloudSnapshot::default();
        c.groups.insert(
            "g".into(),
            CloudGroup {
                id: "g".into(),
                display_name: Some("SG-G".into()),
                description: Some(description.into()),
                ..CloudGroup::default()
            },
        );
        c
    }

    fn joins(dn: &str) -> Joins {
        Joins::from([(
            "g".to_string(),
            Join {
                group: "g".into(),
                guid: "guid-g".into(),
                sid: None,
                dn: dn.into(),
                adopted: false,
            },
        )])
    }

    fn plan(actions: Vec<Action>) -> Plan {
        Plan {
            operations: actions
                .into_iter()
                .map(|action| Operation {
                    group: "g".into(),
                    name: "SG-G".into(),
                    action,
                    reason: "".into(),
                })
                .collect(),
            ..Plan::default()
        }
    }

    fn modify(attr: &str, before: &[&str], after: &[&str], guid: &str) -> Action {
        Action::Modify {
            dn: format!("CN=Group_g,{OU}"),
            guid: guid.into(),
            changes: vec![AttrChange {
                attr: attr.into(),
                before: before.iter().map(|s| s.to_string()).collect(),
                after: after.iter().map(|s| s.to_string()).collect(),
            }],
        }
    }

    /// What the cycle knew before, AD's changes unknown (as after a full read).
    fn known<'a>(cloud: Option<&'a CloudSnapshot>, joins: &'a Joins) -> Before<'a> {
        Before {
            cloud,
            joins,
            ad_changed: None,
        }
    }

    fn kinds(events: &[DriftEvent]) -> Vec<DriftKind> {
        events.iter().map(|e| e.kind).collect()
    }

    #[test]
    fn an_attribute_differs_by_hand_only_when_the_cloud_did_not_change_it() {
        let joins = joins(&format!("CN=Group_g,{OU}"));
        let p = plan(vec![modify("description", &["hand"], &["cloud"], "guid-g")]);
        let before = image("cloud");
        let same = events(
            &p,
            known(Some(&before), &joins),
            &image("cloud"),
            &Hold::none(),
            false,
        );
        assert_eq!(kinds(&same), [DriftKind::AttributeChanged]);
        let changed = events(
            &p,
            known(Some(&before), &joins),
            &image("new"),
            &Hold::none(),
            false,
        );
        assert!(
            changed.is_empty(),
            "a cloud change is no drift: {changed:?}"
        );
        let first = events(
            &p,
            known(None, &joins),
            &image("cloud"),
            &Hold::none(),
            false,
        );
        assert!(first.is_empty(), "no previous image: no drift");
    }

    #[test]
    fn only_a_group_ad_changed_since_the_last_cycle_has_drift() {
        let joins = joins(&format!("CN=Group_g,{OU}"));
        let c = image("cloud");
        let p = plan(vec![
            modify("description", &["hand"], &["cloud"], "guid-g"),
            Action::Create {
                dn: format!("CN=Group_g,{OU}"),
                attrs: Default::default(),
                members: vec![],
                sam_account_name_fallbacks: vec![],
            },
        ]);
        let with = |changed: &[&str]| {
            let changed: BTreeSet<String> = changed.iter().map(|g| g.to_string()).collect();
            let before = Before {
                cloud: Some(&c),
                joins: &joins,
                ad_changed: Some(&changed),
            };
            kinds(&events(&p, before, &c, &Hold::none(), false))
        };
        assert_eq!(
            with(&["guid-g"]),
            [DriftKind::AttributeChanged, DriftKind::Deleted]
        );
        assert_eq!(with(&["guid-other"]), [], "AD did not change the group");
        assert_eq!(with(&[]), []);
    }

    #[test]
    fn anchors_and_group_type_are_drift_but_adopting_is_not() {
        let joins = joins(&format!("CN=Group_g,{OU}"));
        let c = image("d");
        let p = plan(vec![
            modify("groupType", &["8"], &["-2147483640"], "guid-g"),
            modify("adminDescription", &[], &["Group_g"], "guid-g"),
            modify(
                "msDS-ExternalDirectoryObjectId",
                &["Group_x"],
                &["Group_g"],
                "guid-g",
            ),
            modify("adminDescription", &[], &["Group_g"], "guid-other"),
        ]);
        let e = events(&p, known(Some(&c), &joins), &c, &Hold::none(), false);
        assert_eq!(
            kinds(&e),
            [
                DriftKind::Retyped,
                DriftKind::AnchorCleared,
                DriftKind::AnchorChanged
            ]
        );
        assert_eq!(e[0].before, ["8"]);
        assert_eq!(e[0].after, ["-2147483640"]);
    }

    #[test]
    fn a_rename_or_move_back_to_what_was_exported_is_drift_a_cloud_rename_is_not() {
        let c = image("d");
        let rename = |from: &str, to: &str| {
            plan(vec![Action::Rename {
                dn: from.into(),
                guid: "guid-g".into(),
                new_rdn: String::new(),
                new_parent: None,
                new_dn: to.into(),
            }])
        };
        let exported = format!("CN=Group_g,{OU}");
        let by_hand = rename(&format!("CN=Hand\\, Made,{OU}"), &exported);
        let e = events(
            &by_hand,
            known(Some(&c), &joins(&exported)),
            &c,
            &Hold::none(),
            false,
        );
        assert_eq!(kinds(&e), [DriftKind::Renamed]);
        assert_eq!(e[0].before, ["CN=Hand\\, Made"]);
        let moved = rename("CN=Group_g,OU=Elsewhere,DC=x", &exported);
        let e = events(
            &moved,
            known(Some(&c), &joins(&exported)),
            &c,
            &Hold::none(),
            false,
        );
        assert_eq!(kinds(&e), [DriftKind::Moved]);
        assert_eq!(e[0].before, ["OU=Elsewhere,DC=x"]);
        let cloud = rename(&exported, &format!("CN=SG-New_g,{OU}"));
        let e = events(
            &cloud,
            known(Some(&c), &joins(&exported)),
            &c,
            &Hold::none(),
            false,
        );
        assert!(e.is_empty(), "{e:?}");
    }

    #[test]
    fn members_held_or_staged_say_they_were_not_put_back() {
        let c = image("d");
        let joins = joins(&format!("CN=Group_g,{OU}"));
        let p = plan(vec![
            Action::RemoveMembers {
                dn: format!("CN=Group_g,{OU}"),
                guid: "guid-g".into(),
                members: vec!["CN=a,DC=x".into()],
            },
            Action::AddMembers {
                dn: format!("CN=Group_g,{OU}"),
                guid: Some("guid-g".into()),
                members: vec!["CN=b,DC=x".into()],
            },
        ]);
        let hold = Hold {
            destructive: true,
            ..Hold::none()
        };
        let e = events(&p, known(Some(&c), &joins), &c, &hold, false);
        assert_eq!(
            kinds(&e),
            [DriftKind::MemberAdded, DriftKind::MemberRemoved]
        );
        assert_eq!(e[0].fix, "not removed: held back by the threshold");
        assert_eq!(e[1].fix, "put back");
        let e = events(&p, known(Some(&c), &joins), &c, &Hold::none(), true);
        assert!(e.iter().all(|e| e.fix.starts_with("staging: not")), "{e:?}");
    }

    #[test]
    fn a_joined_group_created_again_was_deleted_by_hand() {
        let c = image("d");
        let p = plan(vec![Action::Create {
            dn: format!("CN=Group_g,{OU}"),
            attrs: Default::default(),
            members: vec![],
            sam_account_name_fallbacks: vec![],
        }]);
        let e = events(
            &p,
            known(Some(&c), &joins(&format!("CN=Group_g,{OU}"))),
            &c,
            &Hold::none(),
            false,
        );
        assert_eq!(kinds(&e), [DriftKind::Deleted]);
        let e = events(&p, known(Some(&c), &Joins::new()), &c, &Hold::none(), false);
        assert!(e.is_empty());
    }
}
