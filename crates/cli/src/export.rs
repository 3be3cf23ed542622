//! The exporter: runs a Plan's operations against AD, one at a time, in plan order, each
//! through the ownership guard; one failing object never stops the others. The identity of
//! the groups it created is read back once, after the operations (`read_back`).

use crate::config::Config;
use crate::guard::OwnershipGuard;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tracing::{debug, warn};
use wb_ad::{AdConnector, CreateMark};
use wb_engine::naming::{dn_key, split_dn};
use wb_model::{Action, AdSnapshot, AdState, GroupAttr, Join, Joins, Plan, PlanCounts};
use wb_store::ObjectError;

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
    /// The export stopped early: the connection to the DC was lost (the message says
    /// where). What was acknowledged before is counted; the rest waits for the next cycle.
    pub aborted: Option<String>,
    /// Every operation the DC acknowledged, in order, with what it did (the AD image is
    /// brought along from these instead of being read again).
    pub done: Vec<(Action, wb_ad::Applied)>,
    /// objectGUIDs of groups whose operations failed or were refused: read again.
    pub unsure: BTreeSet<String>,
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

    /// The group is joined to an AD group this export made or took over: it is not deleted.
    fn joined(&mut self, join: Join) {
        self.deleted.remove(&join.group);
        self.joins.insert(join.group.clone(), join);
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

    /// What this export changed in the joins `before` it: the joins to write, and the
    /// groups whose join goes (their AD group was deleted and not re-created).
    pub fn join_changes(&self, before: &Joins) -> (Vec<Join>, Vec<String>) {
        if self.staged {
            return (Vec::new(), Vec::new());
        }
        let upsert = self
            .joins
            .values()
            .filter(|j| before.get(&j.group) != Some(*j))
            .cloned()
            .collect();
        let remove = self
            .deleted
            .iter()
            .filter(|id| !self.joins.contains_key(*id) && before.contains_key(*id))
            .cloned()
            .collect();
        (upsert, remove)
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

/// Runs the plan. `hold`: what the thresholds hold back (`crate::thresholds`): those
/// operations are skipped (counted in `held_back`).
#[allow(clippy::too_many_arguments)]
pub async fn export(
    ad: &mut AdConnector,
    cfg: &Config,
    plan: &Plan,
    snapshot: &AdSnapshot,
    joins: &Joins,
    cloud: &wb_model::CloudSnapshot,
    hold: &crate::thresholds::Hold,
    planned: Option<&std::collections::HashSet<String>>,
) -> ExportOutcome {
    use crate::adimage::lower;
    let mut guard =
        OwnershipGuard::for_groups(cfg.engine.managed_ous(), plan, snapshot, joins, planned)
            .adopting(cloud, snapshot);
    let mut out = ExportOutcome::default();
    let mut failed_groups: BTreeSet<String> = BTreeSet::new();
    // The groups whose outcomes this cycle computed (`planned`; all without it): the joins
    // of the others stay as they are.
    let in_plan = |id: &str| planned.is_none_or(|p| p.contains(id));

    // Joins for groups that exist and are kept: the engine placed them in outcomes. An AD
    // group is found by its DN; a few planned groups look theirs up by their join's
    // objectGUID first (no DN key computed for every group of the image).
    let by_guid: std::collections::HashMap<std::borrow::Cow<str>, &wb_model::AdGroup> = snapshot
        .groups
        .iter()
        .map(|g| (lower(&g.guid), g))
        .collect();
    let mut by_dn: Option<BTreeMap<String, &wb_model::AdGroup>> = None;
    let joined_guid: BTreeMap<&str, &str> = joins
        .iter()
        .map(|(id, j)| (id.as_str(), j.guid.as_str()))
        .collect();
    for g in plan.groups.iter().filter(|g| in_plan(&g.id)) {
        if let Some(dn) = &g.ad_dn {
            let found = joined_guid
                .get(g.id.as_str())
                .and_then(|guid| by_guid.get(lower(guid).as_ref()))
                .filter(|adg| wb_engine::naming::dn_eq(&adg.dn, dn))
                .copied()
                .or_else(|| {
                    by_dn
                        .get_or_insert_with(|| {
                            snapshot
                                .groups
                                .iter()
                                .map(|g| (wb_engine::naming::dn_key(&g.dn), g))
                                .collect()
                        })
                        .get(&wb_engine::naming::dn_key(dn))
                        .copied()
                });
            if let Some(adg) = found {
                let anchored = adg.anchor().is_some_and(|a| a.eq_ignore_ascii_case(&g.id));
                let joined = joined_guid
                    .get(g.id.as_str())
                    .is_some_and(|j| j.eq_ignore_ascii_case(&adg.guid));
                if anchored || joined {
                    out.joins.insert(
                        g.id.clone(),
                        Join {
                            group: g.id.clone(),
                            guid: adg.guid.clone(),
                            sid: adg.sid.clone(),
                            dn: adg.dn.clone(),
                            adopted: g.adopted
                                || joins.get(&g.id).is_some_and(|j| {
                                    j.adopted && j.guid.eq_ignore_ascii_case(&adg.guid)
                                }),
                        },
                    );
                }
            }
        }
    }
    let adopted: BTreeSet<&str> = plan
        .groups
        .iter()
        .filter(|g| g.adopted)
        .map(|g| g.id.as_str())
        .collect();
    // Joins whose AD object vanished (deleted by hand) are dropped unless re-created below.
    for (id, j) in joins.iter().filter(|(id, _)| in_plan(id)) {
        if !by_guid.contains_key(lower(&j.guid).as_ref()) {
            out.deleted.insert(id.clone());
        }
    }

    // Groups created, joined once their identity is read back after the operations, from
    // the DC's USN before the first create.
    let mut mark: Option<CreateMark> = None;
    let mut created: Vec<Created> = Vec::new();
    // DN keys of groups created by this export that an operation failed on: read again.
    let mut unsure_created: BTreeSet<String> = BTreeSet::new();

    let admitted = crate::thresholds::admit(plan, hold);
    let progress = crate::progress::bar(admitted.len(), "operations");
    progress.set_message("exporting");
    for (done, admitted) in admitted.iter().enumerate() {
        progress.set_position(done as u64);
        let op: &wb_model::Operation = match admitted {
            crate::thresholds::Admitted::Run(op) => op,
            crate::thresholds::Admitted::Held(op) => {
                count(&mut out.held_back, &op.action);
                continue;
            }
        };
        if failed_groups.contains(&op.group) && !matches!(op.action, Action::Create { .. }) {
            debug!(group = %op.group, op = op.action.name(), "skipped: an earlier operation on this group failed");
            continue;
        }
        let checked = match guard.check(op) {
            Ok(c) => c,
            Err(why) => {
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
        };
        let result = match (&op.action, mark) {
            (Action::Create { .. }, None) => match ad.mark_creates().await {
                Ok(m) => {
                    mark = Some(m);
                    ad.apply(&with_fallbacks(checked.action(), &op.group)).await
                }
                Err(e) => Err(e),
            },
            (Action::Create { .. }, _) => {
                ad.apply(&with_fallbacks(checked.action(), &op.group)).await
            }
            _ => ad.apply(checked.action()).await,
        };
        match result {
            Ok(applied) => {
                guard.record(&checked, &applied);
                count(&mut out.applied, &op.action);
                out.done.push((checked.action().clone(), applied.clone()));
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
                        out.created.insert(op.group.clone());
                        if applied.guid.is_none() {
                            created.push(Created {
                                group: op.group.clone(),
                                name: op.name.clone(),
                                dn: applied.dn.clone(),
                                done: out.done.len() - 1,
                            });
                        }
                        if let Some(guid) = &applied.guid {
                            out.joined(Join {
                                group: op.group.clone(),
                                guid: guid.clone(),
                                sid: applied.sid.clone(),
                                dn: applied.dn.clone(),
                                adopted: false,
                            });
                        }
                    }
                    Action::Rename { new_dn, .. } => {
                        if let Some(j) = out.joins.get_mut(&op.group) {
                            j.dn = new_dn.clone();
                        }
                    }
                    // The anchor stamped on an AD group taken over in place: the DC
                    // acknowledged it, so the group is joined from now on.
                    Action::Modify { guid, changes, .. }
                        if changes.iter().any(|c| {
                            GroupAttr::parse(&c.attr) == Some(GroupAttr::AdminDescription)
                        }) && !out.joins.contains_key(&op.group) =>
                    {
                        if let Some(adg) = snapshot
                            .groups
                            .iter()
                            .find(|g| g.guid.eq_ignore_ascii_case(guid))
                        {
                            out.joined(Join {
                                group: op.group.clone(),
                                guid: adg.guid.clone(),
                                sid: adg.sid.clone(),
                                dn: adg.dn.clone(),
                                adopted: adopted.contains(op.group.as_str()),
                            });
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
            // The DC is gone: every further operation would fail the same way. Stop here;
            // the next cycle plans again from what AD then holds.
            Err(e) if e.is_unreachable_or_refused() => {
                let message = format!(
                    "connection to the DC lost after {} acknowledged writes: {e}",
                    ad.writes()
                );
                // WARN, not ERROR: the cycle fails with this message, and its caller says so
                // once (the daemon's one ERROR line per outage, `sync`'s `error:` line).
                warn!(group = %op.group, op = op.action.name(), %message, "export aborted");
                out.aborted = Some(message);
                break;
            }
            Err(e) => {
                warn!(group = %op.group, op = op.action.name(), error = %e, "export failed");
                match checked.action().guid() {
                    Some(guid) => {
                        out.unsure.insert(guid.to_ascii_lowercase());
                    }
                    None => {
                        unsure_created.insert(dn_key(checked.action().dn()));
                    }
                }
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
    progress.finish_and_clear();
    if let (Some(mark), None) = (mark, &out.aborted) {
        read_back(ad, mark, &created, &unsure_created, &mut out).await;
    }
    out
}

/// A group this export created, waiting for its identity.
struct Created {
    group: String,
    name: String,
    dn: String,
    /// Its create in `ExportOutcome::done`.
    done: usize,
}

/// Reads back the objectGUID and objectSid of the groups this export created — one paged
/// search per OU they were created in, matched by DN — and joins them. The operations
/// addressed to them by DN are completed with the objectGUID (the AD image follows them).
/// A group not found, or whose OU could not be read, gets an error naming it and no join:
/// the next cycle finds it by its anchor, as after a crash between create and read-back.
async fn read_back(
    ad: &mut AdConnector,
    mark: CreateMark,
    created: &[Created],
    unsure: &BTreeSet<String>,
    out: &mut ExportOutcome,
) {
    let mut by_parent: BTreeMap<String, (&str, Vec<&Created>)> = BTreeMap::new();
    for c in created {
        let parent = split_dn(&c.dn).map(|(_, p)| p).unwrap_or_default();
        by_parent
            .entry(dn_key(parent))
            .or_insert((parent, Vec::new()))
            .1
            .push(c);
    }
    // DN key → objectGUID of each created group found.
    let mut found: HashMap<String, String> = HashMap::with_capacity(created.len());
    for (parent, groups) in by_parent.into_values() {
        let error = |c: &Created, message: String| ObjectError {
            group: Some(c.group.clone()),
            name: Some(c.name.clone()),
            dn: Some(c.dn.clone()),
            operation: "read back created group".into(),
            message,
        };
        let read = match ad.read_back_created(parent, mark).await {
            Ok(read) => read,
            Err(e) => {
                warn!(ou = parent, error = %e, groups = groups.len(), "could not read back the groups created");
                if e.is_unreachable_or_refused() && out.aborted.is_none() {
                    out.aborted = Some(format!(
                        "connection to the DC lost reading back the groups created: {e}"
                    ));
                }
                for c in groups {
                    out.errors.push(error(
                        c,
                        format!(
                            "created, but its objectGUID could not be read back ({e}); the next \
                             cycle finds it by its anchor"
                        ),
                    ));
                }
                continue;
            }
        };
        let mut read: HashMap<String, wb_ad::CreatedGroup> =
            read.into_iter().map(|g| (dn_key(&g.dn), g)).collect();
        for c in groups {
            let key = dn_key(&c.dn);
            // Not matched by DN (the server may spell an unusual name otherwise than it was
            // sent): read that one by the DN it was created at.
            let g = match read.remove(&key) {
                Some(g) => Some(g),
                None => match ad.read_created(&c.dn).await {
                    Ok(g) => g,
                    Err(e) => {
                        warn!(group = %c.group, dn = %c.dn, error = %e, "could not read back a created group");
                        if e.is_unreachable_or_refused() && out.aborted.is_none() {
                            out.aborted = Some(format!(
                                "connection to the DC lost reading back the groups created: {e}"
                            ));
                        }
                        out.errors.push(error(
                            c,
                            format!(
                                "created, but its objectGUID could not be read back ({e}); the \
                                 next cycle finds it by its anchor"
                            ),
                        ));
                        continue;
                    }
                },
            };
            let Some(g) = g else {
                warn!(group = %c.group, dn = %c.dn, "created group not found when read back");
                out.errors.push(error(
                    c,
                    format!(
                        "created, but not found under {parent} when read back (moved or \
                         deleted meanwhile?); the next cycle finds it by its anchor"
                    ),
                ));
                continue;
            };
            if let Some((_, applied)) = out.done.get_mut(c.done) {
                applied.guid = Some(g.guid.clone());
                applied.sid = g.sid.clone();
            }
            out.joined(Join {
                group: c.group.clone(),
                guid: g.guid.clone(),
                sid: g.sid,
                dn: c.dn.clone(),
                adopted: false,
            });
            found.insert(key, g.guid);
        }
    }
    for (action, _) in &mut out.done {
        if let Action::AddMembers {
            dn,
            guid: guid @ None,
            ..
        } = action
        {
            *guid = found.get(&dn_key(dn)).cloned();
        }
    }
    for key in unsure {
        if let Some(guid) = found.get(key) {
            out.unsure.insert(guid.to_ascii_lowercase());
        }
    }
}

/// A create with the sAMAccountNames to try after the one it chose (the engine's plans
/// name only that one: see `Action::Create`); other actions as they are.
fn with_fallbacks<'a>(action: &'a Action, group: &str) -> Cow<'a, Action> {
    let Action::Create {
        dn,
        attrs,
        members,
        sam_account_name_fallbacks,
    } = action
    else {
        return Cow::Borrowed(action);
    };
    let first = |attr: &str| attrs.get(attr).and_then(|v| v.first());
    let (Some(cn), Some(chosen)) = (first("cn"), first("sAMAccountName")) else {
        return Cow::Borrowed(action);
    };
    if !sam_account_name_fallbacks.is_empty() {
        return Cow::Borrowed(action);
    }
    Cow::Owned(Action::Create {
        dn: dn.clone(),
        attrs: attrs.clone(),
        members: members.clone(),
        sam_account_name_fallbacks: wb_engine::naming::sam_account_name_fallbacks(
            cn, group, chosen,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(group: &str, guid: &str, dn: &str) -> Join {
        Join {
            group: group.into(),
            guid: guid.into(),
            sid: None,
            dn: dn.into(),
            adopted: false,
        }
    }

    #[test]
    fn a_create_runs_with_the_candidates_after_the_sam_account_name_it_chose() {
        let id = "7a9e4d21-0b3c-4f5e-8d6a-1e2f3a4b5c60";
        let candidates = wb_engine::naming::sam_account_name_candidates("Team", id);
        let create = |sam: &str, fallbacks: Vec<String>| Action::Create {
            dn: "CN=Team,OU=W".into(),
            attrs: BTreeMap::from([
                ("cn".into(), "Team".to_string().into()),
                ("sAMAccountName".into(), sam.to_string().into()),
            ]),
            members: vec!["CN=u,OU=U".into()],
            sam_account_name_fallbacks: fallbacks,
        };
        let plain = create(&candidates[1], vec![]);
        let Action::Create {
            sam_account_name_fallbacks,
            members,
            ..
        } = &*with_fallbacks(&plain, id)
        else {
            panic!("a create")
        };
        assert_eq!(sam_account_name_fallbacks[..], candidates[2..]);
        assert_eq!(members.len(), 1);
        // Given ones are tried as they are; other actions are untouched.
        let given = create(&candidates[0], vec!["Mine".into()]);
        assert!(matches!(with_fallbacks(&given, id), Cow::Borrowed(a) if *a == given));
        let delete = Action::Delete {
            dn: "CN=Team,OU=W".into(),
            guid: "g".into(),
        };
        assert!(matches!(with_fallbacks(&delete, id), Cow::Borrowed(_)));
    }

    #[test]
    fn join_changes_applied_to_the_joins_before_give_the_joins_after() {
        let before: Joins = [
            join("a", "1", "CN=A,OU=W"),
            join("b", "2", "CN=B,OU=W"),
            join("c", "3", "CN=C,OU=W"),
            join("d", "4", "CN=D,OU=W"),
        ]
        .into_iter()
        .map(|j| (j.group.clone(), j))
        .collect();
        let mut out = ExportOutcome::default();
        // a: unchanged; b: renamed; c: deleted by hand; d: deleted then re-created; e: new.
        for j in [
            join("a", "1", "CN=A,OU=W"),
            join("b", "2", "CN=B2,OU=W"),
            join("d", "5", "CN=D,OU=W"),
            join("e", "6", "CN=E,OU=W"),
        ] {
            out.joins.insert(j.group.clone(), j);
        }
        out.deleted = ["c", "d", "x"].iter().map(|s| s.to_string()).collect();
        let (upsert, remove) = out.join_changes(&before);
        assert_eq!(
            upsert.iter().map(|j| j.group.as_str()).collect::<Vec<_>>(),
            ["b", "d", "e"]
        );
        assert_eq!(remove, ["c"]);
        let mut applied = before.clone();
        for id in &remove {
            applied.remove(id);
        }
        for j in upsert {
            applied.insert(j.group.clone(), j);
        }
        assert_eq!(applied, out.joins_after(&before));
        // Staging changes nothing.
        assert_eq!(
            ExportOutcome::staged().join_changes(&before),
            (Vec::new(), Vec::new())
        );
    }
}
