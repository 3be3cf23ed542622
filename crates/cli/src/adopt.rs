//! `writeback adopt GROUP --dn DN [--yes]`: takes over an existing AD group in place for a
//! cloud group — the anchor is written on it and the join recorded; the next cycle manages
//! its members and attributes where it is. The one write goes through the ownership guard.

use crate::config::Config;
use crate::guard::OwnershipGuard;
use time::OffsetDateTime;
use wb_ad::AdConnector;
use wb_engine::naming::dn_eq;
use wb_model::{
    anchor_value, Action, AdGroup, AdSnapshot, AttrChange, CloudGroup, GroupAttr, Join, Operation,
    Plan, PlanCounts,
};
use wb_store::{Commit, RunRecord, RunStatus, Store};

/// Why `adopt` does nothing: each is exit 2 (a refusal), except an unreachable DC (3).
#[derive(Debug, thiserror::Error)]
enum AdoptError {
    #[error("{0}")]
    Refused(String),
    #[error("Active Directory: {0}")]
    Ad(#[from] wb_ad::AdError),
    #[error("state store: {0}")]
    Store(#[from] wb_store::StoreError),
}

impl AdoptError {
    fn exit_code(&self) -> i32 {
        match self {
            AdoptError::Refused(_) | AdoptError::Store(_) => 2,
            AdoptError::Ad(_) => 3,
        }
    }
}

fn refuse(text: impl Into<String>) -> AdoptError {
    AdoptError::Refused(text.into())
}

pub async fn run(cfg: &Config, group: &str, dn: &str, yes: bool, json: bool) -> i32 {
    match adopt(cfg, group, dn, yes).await {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                for line in &report.lines {
                    println!("{line}");
                }
            }
            0
        }
        Err(e) => {
            eprintln!("error: adopt: {e}");
            e.exit_code()
        }
    }
}

#[derive(serde::Serialize)]
struct Report {
    group: String,
    dn: String,
    guid: String,
    written: bool,
    lines: Vec<String>,
}

/// The cloud group named by object id or exact display name, from the cloud image the last
/// cycle stored (run `writeback sync` first for a group created since).
fn find_group<'a>(
    groups: impl Iterator<Item = &'a CloudGroup>,
    query: &str,
) -> Result<&'a CloudGroup, AdoptError> {
    let matches: Vec<&CloudGroup> = groups
        .filter(|g| g.id.eq_ignore_ascii_case(query) || g.name() == query)
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(refuse(format!(
            "no cloud group has the object id or exact display name {query:?} in the state \
             (run `writeback sync` first)"
        ))),
        many => Err(refuse(format!(
            "{} cloud groups are named {query:?}: give the object id ({})",
            many.len(),
            many.iter()
                .map(|g| g.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

async fn adopt(cfg: &Config, query: &str, dn: &str, yes: bool) -> Result<Report, AdoptError> {
    let mut store = Store::open(&cfg.state)?;
    let state = store.load()?;
    let group = find_group(state.cloud.groups.values(), query)?;
    let id = group.id.clone();
    let mut ad = AdConnector::connect(&cfg.ad.connector()).await?;
    let schema = ad.detect_schema().await?;
    let target = ad
        .read_groups(dn, &schema)
        .await?
        .into_iter()
        .find(|g| dn_eq(&g.dn, dn))
        .ok_or_else(|| refuse(format!("{dn} is not a group in AD")))?;
    check(&target, &id, &state.joins)?;

    let (decision, _) = wb_engine::decide(group, &cfg.engine);
    let anchor = anchor_value(&id);
    let mut changes = Vec::new();
    let anchors = GroupAttr::ALL
        .into_iter()
        .filter(|a| a.is_anchor() && a.in_schema(&schema));
    for attr in anchors {
        changes.push(AttrChange {
            attr: attr.name().to_string(),
            before: attr.values(&target),
            after: vec![anchor.clone()],
        });
    }
    let mut lines = vec![
        format!(
            "group {} ({id}) → {} (objectGUID {}, SID {})",
            group.name(),
            target.dn,
            target.guid,
            target.sid.as_deref().unwrap_or("-")
        ),
        format!(
            "  write: {} = {anchor}; record the join (adopted: never moved unless a rule's ou \
             says so, never deleted)",
            changes
                .iter()
                .map(|c| c.attr.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!(
            "  then the next cycle: {} — members and attributes from the cloud, groupType \
             universal",
            if decision.is_written() {
                "manages it".to_string()
            } else {
                format!("leaves it orphaned (the group is not written back: {decision:?})")
            }
        ),
    ];
    if !yes {
        lines.push("preview only: nothing written (add --yes to adopt)".into());
        return Ok(Report {
            group: id,
            dn: target.dn.clone(),
            guid: target.guid.clone(),
            written: false,
            lines,
        });
    }

    // The join first (in memory), so the guard owns the object for this group; the
    // guard still refuses a protected object, another group's anchor or another object.
    let join = Join {
        group: id.clone(),
        guid: target.guid.clone(),
        sid: target.sid.clone(),
        dn: target.dn.clone(),
        adopted: true,
    };
    let mut joins = state.joins.clone();
    joins.insert(id.clone(), join.clone());
    let snapshot = AdSnapshot {
        schema,
        groups: vec![target.clone()],
        ..AdSnapshot::default()
    };
    let guard = OwnershipGuard::new(
        cfg.engine.managed_ous(),
        &Plan::default(),
        &snapshot,
        &joins,
    );
    let op = Operation {
        group: id.clone(),
        name: group.name().to_string(),
        action: Action::Modify {
            dn: target.dn.clone(),
            guid: target.guid.clone(),
            changes,
        },
        reason: "adopted in place (writeback adopt)".into(),
    };
    let checked = guard
        .check(&op)
        .map_err(|why| refuse(format!("refused by the ownership guard: {why}")))?;
    let started_at = OffsetDateTime::now_utc();
    ad.apply(checked.action()).await?;
    let _ = ad.unbind().await;
    let mut commit = Commit::for_run(RunRecord {
        id: 0,
        started_at,
        finished_at: OffsetDateTime::now_utc(),
        mode: "delta".into(),
        status: RunStatus::Success,
        staging: false,
        counts: PlanCounts {
            modifies: 1,
            ..PlanCounts::default()
        },
        graph_requests: 0,
        ldap_writes: 1,
        errors: Vec::new(),
        message: Some(format!(
            "adopt: {} now belongs to {} ({id})",
            target.dn,
            group.name()
        )),
        plan: None,
    });
    commit.joins_upsert = vec![join];
    // The next cycle must look again (its quiet fingerprint no longer holds).
    commit.quiet_fingerprint = Some(String::new());
    store.commit(&commit)?;
    lines.push("adopted: anchor written, join recorded".into());
    Ok(Report {
        group: id,
        dn: target.dn.clone(),
        guid: target.guid.clone(),
        written: true,
        lines,
    })
}

/// The refusals: a protected object, an object joined to or anchored by another group, a
/// group that already owns another object.
fn check(target: &AdGroup, id: &str, joins: &wb_model::Joins) -> Result<(), AdoptError> {
    if let Some(why) = target.protection() {
        return Err(refuse(format!(
            "{} is protected ({why}): writeback never adopts nor writes it",
            target.dn
        )));
    }
    if let Some((other, _)) = joins
        .iter()
        .find(|(g, j)| j.guid.eq_ignore_ascii_case(&target.guid) && !g.eq_ignore_ascii_case(id))
    {
        return Err(refuse(format!(
            "{} is already joined to group {other}: not adopted",
            target.dn
        )));
    }
    if let Some(a) = target.anchor().filter(|a| !a.eq_ignore_ascii_case(id)) {
        return Err(refuse(format!(
            "{} carries the anchor of group {a}: not adopted",
            target.dn
        )));
    }
    if let Some(j) = joins
        .get(id)
        .filter(|j| !j.guid.eq_ignore_ascii_case(&target.guid))
    {
        return Err(refuse(format!(
            "group {id} already has its AD group {} (objectGUID {}): not adopted",
            j.dn, j.guid
        )));
    }
    Ok(())
}
