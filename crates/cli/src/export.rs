//! The exporter: runs a Plan's operations against AD, one at a time, in plan order, each
//! through the ownership guard; one failing object never stops the others.

use crate::config::{dn_is_under, Config};
use std::collections::{BTreeMap, BTreeSet};
use tracing::{debug, warn};
use wb_ad::AdConnector;
use wb_model::{Action, AdSnapshot, AdState, Join, Joins, Operation, Plan, PlanCounts};
use wb_store::ObjectError;

/// Attributes writeback may ever write on a group it owns (SPEC §4: nothing else).
const WRITABLE: &[&str] = &[
    "displayName",
    "description",
    "groupType",
    "adminDescription",
    "msDS-ExternalDirectoryObjectId",
    "mail",
    "mailNickname",
    "proxyAddresses",
    "managedBy",
    "sAMAccountName",
];

/// The one place that decides whether an operation may touch AD: only objects under a
/// managed OU that carry the anchor of a group writeback owns (SPEC §6 "Ownership").
pub struct OwnershipGuard {
    managed_ous: Vec<String>,
    owned: BTreeMap<String, String>, // guid → anchor's cloud id
    created: BTreeSet<String>,       // DNs created by this export (lower-case)
}

impl OwnershipGuard {
    /// Owned: under a managed OU, not foreign, and anchored to a cloud group — by its
    /// anchor attribute, or by the join writeback recorded when it made the group (an
    /// anchor cleared by hand is put back through that join).
    pub fn new(cfg: &Config, plan: &Plan, ad: &AdSnapshot, joins: &Joins) -> Self {
        let managed_ous = cfg.engine.managed_ous();
        let foreign: BTreeSet<String> = plan
            .foreign
            .iter()
            .map(|f| f.dn.to_ascii_lowercase())
            .collect();
        let joined: BTreeMap<String, &str> = joins
            .iter()
            .map(|(id, j)| (j.guid.to_ascii_lowercase(), id.as_str()))
            .collect();
        let owned = ad
            .groups
            .iter()
            .filter(|g| !foreign.contains(&g.dn.to_ascii_lowercase()))
            .filter(|g| managed_ous.iter().any(|ou| dn_is_under(&g.dn, ou)))
            .filter_map(|g| {
                let guid = g.guid.to_ascii_lowercase();
                let id = joined.get(&guid).copied().or(g.anchor())?;
                Some((guid, id.to_string()))
            })
            .collect();
        OwnershipGuard {
            managed_ous,
            owned,
            created: BTreeSet::new(),
        }
    }

    fn under_managed_ou(&self, dn: &str) -> bool {
        self.managed_ous
            .iter()
            .any(|ou| dn_is_under(dn, ou) && !dn_eq_simple(dn, ou))
    }

    fn owns(&self, guid: &str, group: &str) -> Result<(), String> {
        match self.owned.get(&guid.to_ascii_lowercase()) {
            Some(anchor) if anchor.eq_ignore_ascii_case(group) => Ok(()),
            Some(anchor) => Err(format!(
                "object {guid} carries the anchor of {anchor}, not of {group}"
            )),
            None => Err(format!(
                "object {guid} is not owned by writeback (no anchor, or outside the managed OUs)"
            )),
        }
    }

    /// Checks one operation; `Err` says why it must not run.
    pub fn check(&self, op: &Operation) -> Result<(), String> {
        match &op.action {
            Action::Create { dn, attrs, .. } => {
                if !self.under_managed_ou(dn) {
                    return Err(format!("{dn} is not under a managed OU"));
                }
                let anchor = wb_model::anchor_value(&op.group);
                match attrs.get("adminDescription") {
                    Some(v) if v.len() == 1 && v[0] == anchor => {}
                    _ => return Err(format!("create of {dn} lacks the anchor {anchor}")),
                }
                if let Some(bad) = attrs.keys().find(|k| {
                    !WRITABLE.contains(&k.as_str()) && !matches!(k.as_str(), "objectClass" | "cn")
                }) {
                    return Err(format!(
                        "create of {dn} would write {bad}, which writeback does not manage"
                    ));
                }
                Ok(())
            }
            Action::Rename {
                guid,
                new_parent,
                new_dn,
                ..
            } => {
                self.owns(guid, &op.group)?;
                if let Some(p) = new_parent {
                    if !self.managed_ous.iter().any(|ou| dn_is_under(p, ou)) {
                        return Err(format!("new parent {p} is not a managed OU"));
                    }
                }
                if !self.under_managed_ou(new_dn) {
                    return Err(format!("{new_dn} is not under a managed OU"));
                }
                Ok(())
            }
            Action::Modify { guid, changes, .. } => {
                self.owns(guid, &op.group)?;
                if let Some(c) = changes
                    .iter()
                    .find(|c| !WRITABLE.contains(&c.attr.as_str()))
                {
                    return Err(format!("writeback does not manage attribute {}", c.attr));
                }
                Ok(())
            }
            Action::AddMembers { dn, guid, .. } => match guid {
                Some(g) => self.owns(g, &op.group),
                None if self.created.contains(&dn.to_ascii_lowercase()) => Ok(()),
                None => Err(format!("{dn} was not created by this cycle")),
            },
            Action::RemoveMembers { guid, .. } | Action::Delete { guid, .. } => {
                self.owns(guid, &op.group)
            }
        }
    }
}

fn dn_eq_simple(a: &str, b: &str) -> bool {
    dn_is_under(a, b) && dn_is_under(b, a)
}

/// What an export did.
#[derive(Debug, Default)]
pub struct ExportOutcome {
    pub applied: PlanCounts,
    pub held_back: PlanCounts,
    pub errors: Vec<ObjectError>,
    /// cloud id → join for groups created, renamed or found this cycle.
    pub joins: BTreeMap<String, Join>,
    /// cloud ids whose AD group was deleted.
    pub deleted: BTreeSet<String>,
    /// cloud ids whose AD group this export created / deleted.
    pub created: BTreeSet<String>,
    pub removed: BTreeSet<String>,
    staged: bool,
}

impl ExportOutcome {
    /// Staging: nothing is written; joins stay as they were.
    pub fn staged() -> Self {
        ExportOutcome {
            staged: true,
            ..Default::default()
        }
    }

    /// Brings the plan's outcomes to the state after the export: groups created are
    /// present, groups deleted are absent (what `status` shows).
    pub fn settle(&self, plan: &mut Plan) {
        for g in &mut plan.groups {
            if g.ad_state == AdState::ToCreate && self.created.contains(&g.id) {
                g.ad_state = AdState::Present;
                if let Some(j) = self.joins.get(&g.id) {
                    g.ad_dn = Some(j.dn.clone());
                }
            } else if g.ad_state == AdState::ToDelete && self.removed.contains(&g.id) {
                g.ad_state = AdState::Absent;
            } else if let Some(j) = self.joins.get(&g.id) {
                g.ad_dn = Some(j.dn.clone());
            }
        }
    }

    /// The joins after this export, from the joins before it.
    pub fn joins_after(&self, before: &Joins) -> Joins {
        if self.staged {
            return before.clone();
        }
        let mut joins = before.clone();
        for id in &self.deleted {
            joins.remove(id);
        }
        for (id, j) in &self.joins {
            joins.insert(id.clone(), j.clone());
        }
        joins
    }
}

fn count(c: &mut PlanCounts, a: &Action) {
    match a {
        Action::Create { members, .. } => {
            c.creates += 1;
            c.member_adds += members.len();
        }
        Action::Rename { .. } => c.renames += 1,
        Action::Modify { .. } => c.modifies += 1,
        Action::AddMembers { members, .. } => c.member_adds += members.len(),
        Action::RemoveMembers { members, .. } => c.member_removes += members.len(),
        Action::Delete { .. } => c.deletes += 1,
    }
}

/// Runs the plan. `hold_destructive`: the threshold tripped, so deletes and member
/// removals are skipped (counted in `held_back`).
pub async fn export(
    ad: &mut AdConnector,
    cfg: &Config,
    plan: &Plan,
    snapshot: &AdSnapshot,
    joins: &Joins,
    hold_destructive: bool,
) -> ExportOutcome {
    let mut guard = OwnershipGuard::new(cfg, plan, snapshot, joins);
    let mut out = ExportOutcome::default();
    let mut failed_groups: BTreeSet<String> = BTreeSet::new();

    // Joins for groups that exist and are kept: the engine placed them in outcomes.
    let by_dn: BTreeMap<String, &wb_model::AdGroup> = snapshot
        .groups
        .iter()
        .map(|g| (g.dn.to_ascii_lowercase(), g))
        .collect();
    for g in &plan.groups {
        if let Some(dn) = &g.ad_dn {
            if let Some(adg) = by_dn.get(&dn.to_ascii_lowercase()) {
                if adg.anchor().is_some_and(|a| a.eq_ignore_ascii_case(&g.id)) {
                    out.joins.insert(
                        g.id.clone(),
                        Join {
                            group: g.id.clone(),
                            guid: adg.guid.clone(),
                            sid: adg.sid.clone(),
                            dn: adg.dn.clone(),
                        },
                    );
                }
            }
        }
    }
    // Joins whose AD object vanished (deleted by hand) are dropped unless re-created below.
    let present: BTreeSet<String> = snapshot
        .groups
        .iter()
        .map(|g| g.guid.to_ascii_lowercase())
        .collect();
    for (id, j) in joins {
        if !present.contains(&j.guid.to_ascii_lowercase()) {
            out.deleted.insert(id.clone());
        }
    }

    for op in &plan.operations {
        if hold_destructive && op.action.is_destructive() {
            count(&mut out.held_back, &op.action);
            continue;
        }
        if failed_groups.contains(&op.group) && !matches!(op.action, Action::Create { .. }) {
            debug!(group = %op.group, op = op.action.name(), "skipped: an earlier operation on this group failed");
            continue;
        }
        if let Err(why) = guard.check(op) {
            warn!(group = %op.group, dn = op.action.dn(), op = op.action.name(), %why, "refused by the ownership guard");
            out.errors.push(ObjectError {
                group: Some(op.group.clone()),
                name: Some(op.name.clone()),
                dn: Some(op.action.dn().to_string()),
                operation: op.action.name().into(),
                message: format!("refused by the ownership guard: {why}"),
            });
            continue;
        }
        match ad.apply(&op.action).await {
            Ok(applied) => {
                count(&mut out.applied, &op.action);
                for me in &applied.member_errors {
                    out.errors.push(ObjectError {
                        group: Some(op.group.clone()),
                        name: Some(op.name.clone()),
                        dn: Some(applied.dn.clone()),
                        operation: format!("{} {}", op.action.name(), me.member),
                        message: format!("rc {} {}", me.code, me.message),
                    });
                }
                match &op.action {
                    Action::Create { .. } => {
                        guard.created.insert(applied.dn.to_ascii_lowercase());
                        out.created.insert(op.group.clone());
                        if let Some(guid) = &applied.guid {
                            guard
                                .owned
                                .insert(guid.to_ascii_lowercase(), op.group.clone());
                            out.deleted.remove(&op.group);
                            out.joins.insert(
                                op.group.clone(),
                                Join {
                                    group: op.group.clone(),
                                    guid: guid.clone(),
                                    sid: applied.sid.clone(),
                                    dn: applied.dn.clone(),
                                },
                            );
                        }
                    }
                    Action::Rename { new_dn, .. } => {
                        if let Some(j) = out.joins.get_mut(&op.group) {
                            j.dn = new_dn.clone();
                        }
                    }
                    Action::Delete { .. } => {
                        out.joins.remove(&op.group);
                        out.deleted.insert(op.group.clone());
                        out.removed.insert(op.group.clone());
                    }
                    _ => {}
                }
            }
            Err(e) => {
                warn!(group = %op.group, op = op.action.name(), error = %e, "export failed");
                if matches!(op.action, Action::Create { .. } | Action::Rename { .. }) {
                    failed_groups.insert(op.group.clone());
                }
                out.errors.push(ObjectError {
                    group: Some(op.group.clone()),
                    name: Some(op.name.clone()),
                    dn: Some(op.action.dn().to_string()),
                    operation: op.action.name().into(),
                    message: e.to_string(),
                });
            }
        }
    }
    out
}
