//! What the read commands print: human text by default, JSON with `--json`.
//! Rendering only: no decisions are made here.

use crate::config::Config;
use crate::cycle::CycleReport;
use serde_json::json;
use std::path::Path;
use wb_model::{Action, AdState, Decision, Fate, GroupOutcome, Plan, PlanCounts};
use wb_store::{RunRecord, Store};

/// Pretty JSON on stdout, serialized straight into a buffered stdout (no intermediate
/// string or value tree: `sync --json` at 10,000 groups is a few megabytes).
fn print_json(v: &impl serde::Serialize) {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let written = serde_json::to_writer_pretty(&mut out, v)
        .map_err(|e| e.to_string())
        .and_then(|()| writeln!(out).map_err(|e| e.to_string()))
        .and_then(|()| out.flush().map_err(|e| e.to_string()));
    if let Err(e) = written {
        eprintln!("error: cannot render JSON: {e}");
    }
}

pub(crate) fn counts_line(c: &PlanCounts) -> String {
    format!(
        "{} created, {} renamed, {} modified, {} member adds, {} member removals, {} deleted",
        c.creates, c.renames, c.modifies, c.member_adds, c.member_removes, c.deletes
    )
}

pub fn decision_text(d: &Decision) -> String {
    match d {
        Decision::Written {
            group_type,
            because,
            ..
        } => {
            format!("written back as {} ({because})", group_type.as_str())
        }
        Decision::NotEnabled { because } => format!("not written back: {because}"),
        Decision::Unsupported { because } => format!("not written back (unsupported): {because}"),
        Decision::SyncedFromAd => "not written back: synced from AD (onPremisesSyncEnabled)".into(),
        Decision::OverLimit { count, limit } => {
            format!("not written back: {count} members exceed the limit of {limit}")
        }
        Decision::Invalid { because } => format!("error: {because}"),
        Decision::SoftDeleted => "soft-deleted in the cloud: AD group kept, not updated".into(),
    }
}

pub(crate) fn state_text(s: &AdState) -> &'static str {
    match s {
        AdState::Absent => "-",
        AdState::ToCreate => "to create",
        AdState::Present => "present",
        AdState::Orphaned => "orphaned",
        AdState::ToDelete => "to delete",
    }
}

/// (written, total) members of a group; stored plans keep the counts, not every fate.
fn member_counts(g: &GroupOutcome) -> (usize, usize) {
    (g.written_count, g.member_count)
}

/// The result of `sync`.
pub fn cycle(r: &CycleReport, json: bool) {
    if json {
        /// The `sync --json` document, borrowed from the report.
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out<'a> {
            run: Option<i64>,
            mode: &'a str,
            status: &'a wb_store::RunStatus,
            staging: bool,
            applied: &'a PlanCounts,
            held_back: &'a PlanCounts,
            graph_requests: u64,
            ldap_writes: u64,
            errors: &'a [wb_store::ObjectError],
            message: &'a Option<String>,
            groups: &'a [GroupOutcome],
            foreign: &'a [wb_model::ForeignObject],
            drift: &'a [wb_model::DriftEvent],
        }
        print_json(&Out {
            run: r.run_id,
            mode: &r.mode,
            status: &r.status,
            staging: r.staging,
            applied: &r.counts,
            held_back: &r.held_back,
            graph_requests: r.graph_requests,
            ldap_writes: r.ldap_writes,
            errors: &r.errors,
            message: &r.message,
            groups: &r.plan.groups,
            foreign: &r.plan.foreign,
            drift: &r.drift,
        });
        return;
    }
    println!(
        "run {}: {} cycle, {}",
        r.run_id
            .map(|i| i.to_string())
            .unwrap_or_else(|| "-".into()),
        r.mode,
        r.status.as_str()
    );
    if r.staging {
        let c = r.plan.counts();
        println!("  staging: would have exported: {}", counts_line(&c));
    } else {
        println!("  exported: {}", counts_line(&r.counts));
    }
    if r.held_back != PlanCounts::default() {
        println!("  held back: {}", counts_line(&r.held_back));
    }
    println!(
        "  graph requests: {}, LDAP writes: {}",
        r.graph_requests, r.ldap_writes
    );
    if let Some(m) = &r.message {
        println!("  {m}");
    }
    for e in &r.errors {
        println!(
            "  error: {} [{}] {}: {}",
            e.name.as_deref().unwrap_or("-"),
            e.dn.as_deref().unwrap_or("-"),
            e.operation,
            e.message
        );
    }
    drift_summary(&r.drift);
}

/// The drift a cycle found: one summary line, then each group with its changes.
fn drift_summary(events: &[wb_model::DriftEvent]) {
    if events.is_empty() {
        return;
    }
    let mut by_group: std::collections::BTreeMap<(&str, &str), Vec<&wb_model::DriftEvent>> =
        std::collections::BTreeMap::new();
    for e in events {
        by_group
            .entry((e.name.as_str(), e.group.as_str()))
            .or_default()
            .push(e);
    }
    println!(
        "  DRIFT: {} change(s) made by hand in AD, in {} group(s): {}",
        events.len(),
        by_group.len(),
        crate::drift::kinds_line(events)
    );
    for ((name, id), list) in by_group {
        println!("    {name} ({id}):");
        for e in list {
            println!("      {}", e.detail());
        }
    }
}

pub(crate) fn action_lines(a: &Action) -> Vec<String> {
    match a {
        Action::Create {
            dn,
            attrs,
            members,
            sam_account_name_fallbacks,
        } => {
            let mut v = vec![format!("create {dn}")];
            for (k, vals) in attrs {
                v.push(format!("    {k}: {}", vals.join(" | ")));
            }
            if !sam_account_name_fallbacks.is_empty() {
                v.push(format!(
                    "    sAMAccountName if taken: {}",
                    sam_account_name_fallbacks.join(" | ")
                ));
            }
            for m in members {
                v.push(format!("    + member {m}"));
            }
            v
        }
        Action::Rename { dn, new_dn, .. } => {
            vec![format!("rename {dn}"), format!("    → {new_dn}")]
        }
        Action::Modify { dn, changes, .. } => {
            let mut v = vec![format!("modify {dn}")];
            for c in changes {
                v.push(format!(
                    "    {}: {} → {}",
                    c.attr,
                    if c.before.is_empty() {
                        "(none)".into()
                    } else {
                        c.before.join(" | ")
                    },
                    if c.after.is_empty() {
                        "(none)".into()
                    } else {
                        c.after.join(" | ")
                    }
                ));
            }
            v
        }
        Action::AddMembers { dn, members, .. } => {
            let mut v = vec![format!("add members to {dn}")];
            v.extend(members.iter().map(|m| format!("    + {m}")));
            v
        }
        Action::RemoveMembers { dn, members, .. } => {
            let mut v = vec![format!("remove members from {dn}")];
            v.extend(members.iter().map(|m| format!("    - {m}")));
            v
        }
        Action::Delete { dn, .. } => vec![format!("delete {dn}")],
    }
}

/// `writeback plan`.
pub fn plan(p: &Plan, json: bool) {
    if json {
        print_json(p);
    } else {
        print!("{}", plan_text(p));
    }
}

/// The human form of a plan: every operation with its reason and values.
pub fn plan_text(p: &Plan) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if p.operations.is_empty() {
        let _ = writeln!(out, "No changes: AD matches the cloud.");
    } else {
        let _ = writeln!(
            out,
            "{} operation(s): {}",
            p.operations.len(),
            counts_line(&p.counts())
        );
    }
    for op in &p.operations {
        let _ = writeln!(out);
        for (i, l) in action_lines(&op.action).iter().enumerate() {
            let _ = writeln!(out, "{l}");
            if i == 0 {
                let _ = writeln!(out, "    group: {} ({})", op.name, op.group);
                let _ = writeln!(out, "    reason: {}", op.reason);
            }
        }
    }
    for n in &p.notices {
        let _ = writeln!(out, "\nnotice: {n}");
    }
    for f in &p.foreign {
        let _ = writeln!(out, "\nforeign (left alone): {} — {}", f.dn, f.reason);
    }
    out
}

fn group_table(p: &Plan, drift: &std::collections::BTreeMap<String, usize>) {
    println!(
        "{:<40} {:<10} {:>9} {:>5}  DECISION",
        "GROUP", "AD", "MEMBERS", "DRIFT"
    );
    for g in &p.groups {
        let members = if g.decision.is_written() {
            let (written, total) = member_counts(g);
            format!("{written}/{total}")
        } else {
            "-".into()
        };
        println!(
            "{:<40} {:<10} {:>9} {:>5}  {}",
            truncate(&g.name, 40),
            state_text(&g.ad_state),
            members,
            drift.get(&g.id).copied().unwrap_or(0),
            decision_text(&g.decision)
        );
        for e in &g.errors {
            println!("{:<40}   error: {e}", "");
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

fn open_store(state: &Path) -> Result<Store, i32> {
    Store::open(state).map_err(|e| {
        eprintln!("error: state store {}: {e}", state.display());
        3
    })
}

fn run_line(r: &RunRecord) -> String {
    format!(
        "{:>5}  {}  {:<6} {:<22} {}",
        r.id,
        r.started_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        r.mode,
        r.status.as_str(),
        counts_line(&r.counts)
    )
}

/// `writeback status`.
pub fn status(state: &Path, json: bool) -> i32 {
    let store = match open_store(state) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let last = match store.runs(1) {
        Ok(mut r) => r.pop(),
        Err(e) => {
            eprintln!("error: state store: {e}");
            return 3;
        }
    };
    let plan = store.last_outcomes().ok().flatten();
    let since = time::OffsetDateTime::now_utc() - STATUS_DRIFT_WINDOW;
    let drift = match store.drift_since(since) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: state store: {e}");
            return 3;
        }
    };
    let mut drift_per_group = std::collections::BTreeMap::new();
    for d in &drift {
        *drift_per_group
            .entry(d.event.group.clone())
            .or_insert(0usize) += 1;
    }
    if json {
        print_json(&json!({
            "drift24h": {"total": drift.len(), "groups": drift_per_group},
            "lastRun": last,
            "groups": plan.as_ref().map(|p| &p.groups),
            "foreign": plan.as_ref().map(|p| &p.foreign),
            "orphaned": plan.as_ref().map(|p| p.groups.iter().filter(|g| g.ad_state == AdState::Orphaned).collect::<Vec<_>>()),
        }));
        return 0;
    }
    match &last {
        None => {
            println!("No run yet. Run `writeback sync` (or `writeback plan` to preview).");
            return 0;
        }
        Some(r) => {
            println!("last run: {}", run_line(r));
            if let Some(m) = &r.message {
                println!("  {m}");
            }
            if !r.errors.is_empty() {
                println!("  {} error(s):", r.errors.len());
                for e in &r.errors {
                    println!(
                        "    {} [{}] {}: {}",
                        e.name.as_deref().unwrap_or("-"),
                        e.dn.as_deref().unwrap_or("-"),
                        e.operation,
                        e.message
                    );
                }
            }
        }
    }
    if !drift.is_empty() {
        println!(
            "  DRIFT: {} change(s) made by hand in AD in the last 24 h, put back (`writeback drift`)",
            drift.len()
        );
    }
    if let Some(p) = &plan {
        println!();
        group_table(p, &drift_per_group);
        let orphaned: Vec<_> = p
            .groups
            .iter()
            .filter(|g| g.ad_state == AdState::Orphaned)
            .collect();
        if !orphaned.is_empty() {
            println!("\norphaned (kept in AD, no longer updated):");
            for g in orphaned {
                println!("  {} {}", g.name, g.ad_dn.as_deref().unwrap_or(""));
            }
        }
        if !p.foreign.is_empty() {
            println!("\nforeign objects in the managed OUs (never touched):");
            for f in &p.foreign {
                println!("  {} — {}", f.dn, f.reason);
            }
        }
    }
    0
}

/// The window of `status`'s DRIFT column.
const STATUS_DRIFT_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// `writeback drift`: the drift recorded in the last `since`, newest first.
pub fn drift(state: &Path, since: std::time::Duration, json: bool) -> i32 {
    let store = match open_store(state) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let from = time::OffsetDateTime::now_utc() - since;
    let records = match store.drift_since(from) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: state store: {e}");
            return 3;
        }
    };
    let time_text = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    if json {
        let list: Vec<_> = records
            .iter()
            .map(|r| {
                let e = &r.event;
                json!({"time": time_text(r.at), "run": r.run, "group": e.group, "name": e.name,
                    "dn": e.dn, "kind": e.kind, "attribute": e.attribute, "before": e.before,
                    "after": e.after, "fix": e.fix, "detail": e.detail()})
            })
            .collect();
        print_json(&list);
        return 0;
    }
    if records.is_empty() {
        println!(
            "No drift in the last {}: AD holds what writeback wrote.",
            humantime::format_duration(since)
        );
        return 0;
    }
    println!(
        "{:<20}  {:>5}  {:<30} {:<17} DETAIL",
        "TIME", "RUN", "GROUP", "KIND"
    );
    for r in &records {
        let e = &r.event;
        let values = |v: &[String]| {
            if v.is_empty() {
                "(none)".to_string()
            } else {
                v.join(" | ")
            }
        };
        println!(
            "{:<20}  {:>5}  {:<30} {:<17} {}: {} → {}; {}",
            r.at.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            ))
            .unwrap_or_default(),
            r.run,
            truncate(&e.name, 30),
            e.kind.as_str(),
            e.attribute,
            values(&e.before),
            values(&e.after),
            e.fix
        );
    }
    0
}

/// `writeback runs`.
pub fn runs(state: &Path, limit: usize, json: bool) -> i32 {
    let store = match open_store(state) {
        Ok(s) => s,
        Err(c) => return c,
    };
    match store.runs(limit) {
        Ok(runs) => {
            if json {
                let slim: Vec<_> = runs
                    .iter()
                    .map(|r| {
                        json!({"id": r.id, "startedAt": r.started_at, "finishedAt": r.finished_at,
                            "mode": r.mode, "status": r.status, "staging": r.staging, "counts": r.counts,
                            "graphRequests": r.graph_requests, "ldapWrites": r.ldap_writes,
                            "errors": r.errors.len(), "message": r.message})
                    })
                    .collect();
                print_json(&slim);
            } else {
                println!(
                    "{:>5}  {:<20}  {:<6} {:<22} COUNTS",
                    "RUN", "STARTED", "MODE", "STATUS"
                );
                for r in &runs {
                    println!("{}", run_line(r));
                }
            }
            0
        }
        Err(e) => {
            eprintln!("error: state store: {e}");
            3
        }
    }
}

/// `writeback show RUN`.
pub fn show_run(state: &Path, id: i64, json: bool) -> i32 {
    let store = match open_store(state) {
        Ok(s) => s,
        Err(c) => return c,
    };
    match store.run(id) {
        Ok(Some(r)) => {
            if json {
                print_json(&r);
            } else {
                println!("{}", run_line(&r));
                println!(
                    "  graph requests: {}, LDAP writes: {}",
                    r.graph_requests, r.ldap_writes
                );
                if let Some(m) = &r.message {
                    println!("  {m}");
                }
                for e in &r.errors {
                    println!(
                        "  error: {} [{}] {}: {}",
                        e.name.as_deref().unwrap_or("-"),
                        e.dn.as_deref().unwrap_or("-"),
                        e.operation,
                        e.message
                    );
                }
                if let Some(p) = &r.plan {
                    println!(
                        "\n{} {}:",
                        if r.staging {
                            "would have exported"
                        } else {
                            "planned"
                        },
                        counts_line(&p.counts())
                    );
                    plan(p, false);
                }
            }
            0
        }
        Ok(None) => {
            eprintln!("error: no run {id}");
            2
        }
        Err(e) => {
            eprintln!("error: state store: {e}");
            3
        }
    }
}

/// `writeback explain GROUP`.
/// The history of one group in the runs kept: its last export and its latest errors.
#[derive(Debug, Default, serde::Serialize)]
pub struct GroupHistory {
    /// Run id, time and the operations of the last run that exported something for it.
    pub last_export: Option<(i64, String, Vec<String>)>,
    /// Errors of this group in the latest run.
    pub last_errors: Vec<wb_store::ObjectError>,
}

/// Reads a group's history from the store (runs newest first; plans are kept for the
/// newest runs only, see the store).
pub fn group_history(state: &Path, id: &str) -> GroupHistory {
    let mut h = GroupHistory::default();
    let Ok(store) = Store::open(state) else {
        return h;
    };
    let Ok(runs) = store.runs(wb_store::PLANS_KEPT) else {
        return h;
    };
    if let Some(last) = runs.first() {
        h.last_errors = last
            .errors
            .iter()
            .filter(|e| e.group.as_deref() == Some(id))
            .cloned()
            .collect();
    }
    h.last_export = runs.iter().filter(|r| !r.staging).find_map(|r| {
        let ops: Vec<String> = r
            .plan
            .as_ref()?
            .operations
            .iter()
            .filter(|o| o.group == id)
            .map(|o| format!("{} {}", o.action.name(), o.action.dn()))
            .collect();
        (!ops.is_empty()).then(|| {
            let at = r
                .finished_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            (r.id, at, ops)
        })
    });
    h
}

pub fn explain(p: &Plan, group: &str, cfg: &Config, json: bool) -> i32 {
    let found: Vec<&GroupOutcome> = p
        .groups
        .iter()
        .filter(|g| g.id.eq_ignore_ascii_case(group) || g.name == group)
        .collect();
    let g = match found.as_slice() {
        [g] => *g,
        [] => {
            eprintln!("error: no group with id or display name {group:?} in the tenant");
            return 2;
        }
        many => {
            eprintln!(
                "error: {} groups are named {group:?}; give the object id:",
                many.len()
            );
            for g in many {
                eprintln!("  {}", g.id);
            }
            return 2;
        }
    };
    let ops: Vec<_> = p.operations.iter().filter(|o| o.group == g.id).collect();
    let history = group_history(&cfg.state, &g.id);
    if json {
        print_json(&json!({"group": g, "operations": ops, "history": history}));
        return 0;
    }
    println!("{} ({})", g.name, g.id);
    println!("  kind: {}", g.kind.as_str());
    println!("  decision: {}", decision_text(&g.decision));
    if let Decision::Written { ou, .. } = &g.decision {
        println!("  target OU: {ou}");
    }
    println!(
        "  AD: {} {}",
        state_text(&g.ad_state),
        g.ad_dn.as_deref().unwrap_or("")
    );
    for e in &g.errors {
        println!("  error: {e}");
    }
    for d in &g.drift {
        println!("  drift: {d}");
    }
    if !g.members.is_empty() {
        println!(
            "  members ({} of {} written):",
            member_counts(g).0,
            member_counts(g).1
        );
        for m in &g.members {
            let who = m.name.as_deref().unwrap_or(&m.member.id);
            match &m.fate {
                Fate::Written { dn, by } => println!("    {who}: written as {dn} (found by {by})"),
                other => println!("    {who}: not written — {}", other.text()),
            }
        }
    }
    match &history.last_export {
        Some((run, at, exported)) => {
            println!("  last export: run {run} at {at}");
            for e in exported {
                println!("    {e}");
            }
        }
        None => println!("  last export: none in the runs kept"),
    }
    for e in &history.last_errors {
        println!("  error in the last run: {}: {}", e.operation, e.message);
    }
    if ops.is_empty() {
        println!("  next cycle: no change");
    } else {
        println!("  next cycle:");
        for op in ops {
            println!("    {} — {}", action_lines(&op.action)[0], op.reason);
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use wb_model::{AttrChange, ForeignObject, Operation};

    fn op(group: &str, name: &str, action: Action, reason: &str) -> Operation {
        Operation {
            group: group.into(),
            name: name.into(),
            action,
            reason: reason.into(),
        }
    }

    #[test]
    fn plan_text_shows_every_operation_with_values_and_reason() {
        let ou = "OU=Groups,OU=Writeback,DC=lab,DC=example,DC=test";
        let mut attrs = BTreeMap::new();
        attrs.insert(
            "objectClass".into(),
            vec!["top".to_string(), "group".to_string()].into(),
        );
        attrs.insert("groupType".into(), vec!["-2147483640".to_string()].into());
        attrs.insert(
            "adminDescription".into(),
            vec!["Group_e27129bc-c041-4ba7-9fee-06ae22d147bd".to_string()].into(),
        );
        let plan = Plan {
            operations: vec![
                op(
                    "0c1f",
                    "SG-Renamed",
                    Action::Rename {
                        dn: format!("CN=SG-Old_06ae22d147bd,{ou}"),
                        guid: "g1".into(),
                        new_rdn: "CN=SG-Renamed_06ae22d147bd".into(),
                        new_parent: None,
                        new_dn: format!("CN=SG-Renamed_06ae22d147bd,{ou}"),
                    },
                    "renamed: display name changed 'SG-Old' → 'SG-Renamed'",
                ),
                op(
                    "e27129bc-c041-4ba7-9fee-06ae22d147bd",
                    "DSG-AVD-PUBAPP-SAP",
                    Action::Create {
                        dn: format!("CN=DSG-AVD-PUBAPP-SAP_06ae22d147bd,{ou}"),
                        attrs,
                        members: vec!["CN=Anna de Wit,OU=People,DC=lab,DC=example,DC=test".into()],
                        sam_account_name_fallbacks: vec!["x".into(), "y".into()],
                    },
                    "created: writeback enabled (writebackConfiguration.isEnabled = true)",
                ),
                op(
                    "0c1f",
                    "SG-Renamed",
                    Action::Modify {
                        dn: format!("CN=SG-Renamed_06ae22d147bd,{ou}"),
                        guid: "g1".into(),
                        changes: vec![AttrChange {
                            attr: "description".into(),
                            before: vec![],
                            after: vec!["Finance".into()],
                        }],
                    },
                    "description changed in the cloud",
                ),
                op(
                    "0c1f",
                    "SG-Renamed",
                    Action::RemoveMembers {
                        dn: format!("CN=SG-Renamed_06ae22d147bd,{ou}"),
                        guid: "g1".into(),
                        members: vec!["CN=Hand Added,OU=People,DC=lab,DC=example,DC=test".into()],
                    },
                    "drift: member added by hand",
                ),
            ],
            groups: vec![],
            foreign: vec![ForeignObject {
                dn: format!("CN=Print Operators EMEA,{ou}"),
                reason: "no anchor".into(),
            }],
            notices: vec!["the schema has no mailNickname: skipped".into()],
        };
        insta::assert_snapshot!(plan_text(&plan));
    }

    #[test]
    fn an_empty_plan_says_so() {
        assert_eq!(
            plan_text(&Plan::default()),
            "No changes: AD matches the cloud.\n"
        );
    }
}
