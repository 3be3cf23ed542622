//! Accident protection (SPEC §6, §10): from a plan's counts, which kinds of operations a
//! cycle holds back, and what it tells the administrator. Pure: the cycle asks, the
//! exporter obeys.
//!
//! - Over `delete_threshold` group deletes or `member_removal_threshold` membership removals:
//!   the *destructive* operations (deletes, member removals) are held; `--allow-deletes`.
//! - Over `create_threshold` group creates (every cycle but the first): *creates* are held —
//!   no group is created, and so nothing of a group not created runs (its later member
//!   adds; its DN as a member of other groups); `--allow-creates`.
//!
//! Either way the rest of the plan still runs (renames, attribute fixes, member adds, and the
//! kind not held), the run is recorded as stopped by threshold (exit 4), and the message
//! says how to let the cycle through.
//!
//! The *first export* — every cycle until one completes — is exempt from the create
//! threshold: it creates everything in scope, which `writeback plan` previews. A first
//! export cut short (the DC lost mid-export, the process killed) is resumed by the next
//! cycle, which is still exempt although it finds joins of the groups already made. Once a
//! cycle has completed, a flood of creates (a rule or tenant-default change bringing a
//! thousand groups into scope) needs a confirmation.

use crate::config::Config;
use crate::cycle::CycleOptions;
use std::borrow::Cow;
use std::collections::BTreeSet;
use wb_engine::naming::dn_key;
use wb_model::{Action, Operation, Plan, PlanCounts};

/// What a cycle holds back, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hold {
    /// Deletes and member removals are not applied.
    pub destructive: bool,
    /// No group is created (nor anything that needs a group not created).
    pub creates: bool,
    /// What tripped and how to proceed; `None` when nothing is held.
    pub message: Option<String>,
}

impl Hold {
    /// Nothing held: every operation runs.
    pub fn none() -> Hold {
        Hold::default()
    }

    /// Whether the cycle is stopped by a threshold (exit 4).
    pub fn stopped(&self) -> bool {
        self.destructive || self.creates
    }

    /// Whether `action` itself is of a kind held back.
    pub fn holds(&self, action: &Action) -> bool {
        (self.destructive && action.is_destructive())
            || (self.creates && matches!(action, Action::Create { .. }))
    }
}

/// One operation of the plan under a [`Hold`].
#[derive(Debug)]
pub enum Admitted<'a> {
    /// To run — as planned, or without the member values that name groups not created.
    Run(Cow<'a, Operation>),
    /// Held back by the threshold.
    Held(&'a Operation),
}

/// The plan's operations in order, each to run or held under `hold`: an operation of a held
/// kind is held; so is every operation of a group whose create is held (its later member
/// adds), and member values naming a group not created are dropped from the other groups'
/// member adds (the operation is held when none is left).
pub fn admit<'a>(plan: &'a Plan, hold: &Hold) -> Vec<Admitted<'a>> {
    let not_created: BTreeSet<&str> = plan
        .operations
        .iter()
        .filter(|op| hold.creates && matches!(op.action, Action::Create { .. }))
        .map(|op| op.group.as_str())
        .collect();
    let not_created_dns: BTreeSet<String> = plan
        .operations
        .iter()
        .filter(|op| not_created.contains(op.group.as_str()))
        .filter(|op| matches!(op.action, Action::Create { .. }))
        .map(|op| dn_key(op.action.dn()))
        .collect();
    plan.operations
        .iter()
        .map(|op| {
            if hold.holds(&op.action) || not_created.contains(op.group.as_str()) {
                return Admitted::Held(op);
            }
            match &op.action {
                Action::AddMembers { dn, guid, members }
                    if members.iter().any(|m| not_created_dns.contains(&dn_key(m))) =>
                {
                    let members: Vec<_> = members
                        .iter()
                        .filter(|m| !not_created_dns.contains(&dn_key(m)))
                        .cloned()
                        .collect();
                    if members.is_empty() {
                        return Admitted::Held(op);
                    }
                    Admitted::Run(Cow::Owned(Operation {
                        action: Action::AddMembers {
                            dn: dn.clone(),
                            guid: guid.clone(),
                            members,
                        },
                        ..op.clone()
                    }))
                }
                _ => Admitted::Run(Cow::Borrowed(op)),
            }
        })
        .collect()
}

/// The verdict for a plan with `counts`, under `cfg`'s thresholds and the caller's
/// `--allow-deletes` / `--allow-creates`; `first_cycle`: no cycle has completed yet.
pub fn decide(counts: &PlanCounts, cfg: &Config, opts: &CycleOptions, first_cycle: bool) -> Hold {
    decide_with(
        counts,
        Limits {
            deletes: cfg.delete_threshold,
            member_removals: cfg.member_removal_threshold,
            creates: cfg.create_threshold,
        },
        opts,
        first_cycle,
    )
}

/// The thresholds of the configuration.
#[derive(Debug, Clone, Copy)]
struct Limits {
    deletes: usize,
    member_removals: usize,
    creates: usize,
}

fn decide_with(counts: &PlanCounts, limits: Limits, opts: &CycleOptions, first: bool) -> Hold {
    let mut why = Vec::new();
    let over_deletes = counts.deletes > limits.deletes;
    let over_removals = counts.member_removes > limits.member_removals;
    let destructive = (over_deletes || over_removals) && !opts.allow_deletes;
    if destructive && over_deletes {
        why.push(format!(
            "{} group deletes exceed delete_threshold {}",
            counts.deletes, limits.deletes
        ));
    }
    if destructive && over_removals {
        why.push(format!(
            "{} membership removals exceed member_removal_threshold {}",
            counts.member_removes, limits.member_removals
        ));
    }
    let creates = !first && counts.creates > limits.creates && !opts.allow_creates;
    if creates {
        why.push(format!(
            "{} group creates exceed create_threshold {}",
            counts.creates, limits.creates
        ));
    }
    if why.is_empty() {
        return Hold::none();
    }
    let mut held = Vec::new();
    let mut flags = Vec::new();
    let mut intended = Vec::new();
    if destructive {
        held.push("nothing destructive was applied");
        flags.push("--allow-deletes");
        intended.push("deletes");
    }
    if creates {
        held.push("no group was created");
        flags.push("--allow-creates");
        intended.push("creates");
    }
    Hold {
        destructive,
        creates,
        message: Some(format!(
            "stopped by threshold: {}; {}. Check `writeback plan`; if the {} are intended, run \
             `writeback sync {}` once",
            why.join(" and "),
            held.join(" and "),
            intended.join(" and "),
            flags.join(" ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        deletes: 500,
        member_removals: 10_000,
        creates: 1_000,
    };

    fn counts(creates: usize, deletes: usize, member_removes: usize) -> PlanCounts {
        PlanCounts {
            creates,
            deletes,
            member_removes,
            ..PlanCounts::default()
        }
    }

    fn opts(allow_deletes: bool, allow_creates: bool) -> CycleOptions {
        CycleOptions {
            allow_deletes,
            allow_creates,
            ..CycleOptions::default()
        }
    }

    #[test]
    fn within_every_threshold_nothing_is_held() {
        let h = decide_with(
            &counts(1_000, 500, 10_000),
            LIMITS,
            &opts(false, false),
            false,
        );
        assert_eq!(h, Hold::none());
        assert!(!h.stopped());
    }

    #[test]
    fn over_the_create_threshold_creates_are_held_and_the_way_on_is_named() {
        let h = decide_with(&counts(1_001, 0, 0), LIMITS, &opts(false, false), false);
        assert!(h.creates && !h.destructive && h.stopped());
        let m = h.message.unwrap();
        assert!(
            m.contains("1001 group creates exceed create_threshold 1000"),
            "{m}"
        );
        assert!(m.contains("no group was created"), "{m}");
        assert!(m.contains("writeback sync --allow-creates"), "{m}");
        assert!(!m.contains("--allow-deletes"), "{m}");
    }

    #[test]
    fn the_first_cycle_creates_everything_it_plans() {
        let h = decide_with(&counts(50_000, 0, 0), LIMITS, &opts(false, false), true);
        assert_eq!(h, Hold::none());
    }

    #[test]
    fn the_first_cycle_is_still_bound_by_the_delete_thresholds() {
        let h = decide_with(
            &counts(50_000, 0, 10_001),
            LIMITS,
            &opts(false, false),
            true,
        );
        assert!(h.destructive && !h.creates);
    }

    #[test]
    fn allow_creates_lets_creates_through_but_not_deletes() {
        let h = decide_with(&counts(2_000, 501, 0), LIMITS, &opts(false, true), false);
        assert!(h.destructive && !h.creates);
        let m = h.message.unwrap();
        assert!(
            m.contains("--allow-deletes") && !m.contains("--allow-creates"),
            "{m}"
        );
        let h = decide_with(&counts(2_000, 501, 0), LIMITS, &opts(true, false), false);
        assert!(!h.destructive && h.creates);
        let h = decide_with(&counts(2_000, 501, 0), LIMITS, &opts(true, true), false);
        assert_eq!(h, Hold::none());
    }

    #[test]
    fn both_thresholds_over_name_both_flags() {
        let h = decide_with(
            &counts(2_000, 600, 20_000),
            LIMITS,
            &opts(false, false),
            false,
        );
        let m = h.message.unwrap();
        assert!(
            m.contains("600 group deletes")
                && m.contains("20000 membership removals")
                && m.contains("2000 group creates"),
            "{m}"
        );
        assert!(
            m.contains("writeback sync --allow-deletes --allow-creates"),
            "{m}"
        );
    }

    fn op(group: &str, action: Action) -> Operation {
        Operation {
            group: group.into(),
            name: group.into(),
            action,
            reason: "test".into(),
        }
    }

    #[test]
    fn under_a_create_hold_nothing_needs_a_group_not_created() {
        let ou = "OU=G,DC=x";
        let create = |g: &str| Action::Create {
            dn: format!("CN={g},{ou}"),
            attrs: Default::default(),
            members: vec!["CN=u,DC=x".into()],
            sam_account_name_fallbacks: vec![],
        };
        let plan = Plan {
            operations: vec![
                op(
                    "old",
                    Action::Rename {
                        dn: format!("CN=x,{ou}"),
                        guid: "g0".into(),
                        new_rdn: "CN=old".into(),
                        new_parent: None,
                        new_dn: format!("CN=old,{ou}"),
                    },
                ),
                op("new1", create("new1")),
                op("new2", create("new2")),
                op(
                    "new1",
                    Action::AddMembers {
                        dn: format!("CN=new1,{ou}"),
                        guid: None,
                        members: vec![format!("CN=new2,{ou}").into()],
                    },
                ),
                op(
                    "old",
                    Action::AddMembers {
                        dn: format!("CN=old,{ou}"),
                        guid: Some("g0".into()),
                        members: vec![format!("cn=NEW1,{ou}").into(), "CN=u,DC=x".into()],
                    },
                ),
                op(
                    "old2",
                    Action::AddMembers {
                        dn: format!("CN=old2,{ou}"),
                        guid: Some("g2".into()),
                        members: vec![format!("CN=new2,{ou}").into()],
                    },
                ),
                op(
                    "old",
                    Action::RemoveMembers {
                        dn: format!("CN=old,{ou}"),
                        guid: "g0".into(),
                        members: vec!["CN=v,DC=x".into()],
                    },
                ),
            ],
            ..Plan::default()
        };
        let hold = Hold {
            creates: true,
            ..Hold::none()
        };
        let admitted = admit(&plan, &hold);
        let run: Vec<(&str, &str, usize)> = admitted
            .iter()
            .filter_map(|a| match a {
                Admitted::Run(op) => Some((
                    op.group.as_str(),
                    op.action.name(),
                    match &op.action {
                        Action::AddMembers { members, .. } => members.len(),
                        _ => 0,
                    },
                )),
                Admitted::Held(_) => None,
            })
            .collect();
        assert_eq!(
            run,
            [
                ("old", "rename", 0),
                ("old", "add-members", 1),
                ("old", "remove-members", 0)
            ]
        );
        let everything = admit(&plan, &Hold::none());
        assert!(everything.iter().all(|a| matches!(a, Admitted::Run(_))));
    }

    #[test]
    fn a_hold_names_the_actions_it_holds() {
        let create = Action::Create {
            dn: "CN=a".into(),
            attrs: Default::default(),
            members: vec![],
            sam_account_name_fallbacks: vec![],
        };
        let delete = Action::Delete {
            dn: "CN=a".into(),
            guid: "g".into(),
        };
        let add = Action::AddMembers {
            dn: "CN=a".into(),
            guid: Some("g".into()),
            members: vec!["CN=m".into()],
        };
        let creates = Hold {
            creates: true,
            ..Hold::none()
        };
        assert!(creates.holds(&create) && !creates.holds(&delete) && !creates.holds(&add));
        let destructive = Hold {
            destructive: true,
            ..Hold::none()
        };
        assert!(!destructive.holds(&create) && destructive.holds(&delete));
    }
}
