//! The daemon's Prometheus metrics (`/metrics`, text format through `prometheus-client`):
//! fed from each cycle's report, and from the process-wide Graph and LDAP counters.

use crate::cycle::{CycleError, CycleReport};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use time::OffsetDateTime;
use wb_model::{AdState, Decision, DriftKind, Plan};
use wb_store::RunStatus;

/// The message of a quiet cycle's report (`cycle.rs`): how a quiet cycle is told from a
/// delta cycle that found nothing to do.
const QUIET_MESSAGE_START: &str = "no change in the cloud";

/// quiet, delta or full: what kind of cycle a report is.
pub fn cycle_kind(r: &CycleReport) -> &'static str {
    if r.mode == "full" {
        "full"
    } else if r
        .message
        .as_deref()
        .is_some_and(|m| m.starts_with(QUIET_MESSAGE_START))
    {
        "quiet"
    } else {
        "delta"
    }
}

/// The statuses of a cycle that ran to its end (its lag is measured from the last one).
pub const GOOD: [RunStatus; 3] = [
    RunStatus::Success,
    RunStatus::CompletedWithErrors,
    RunStatus::Staging,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CycleLabels {
    kind: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Every metric of the daemon, in one registry.
pub struct Metrics {
    registry: Registry,
    cycle_duration: Histogram,
    cycles: Family<CycleLabels, Counter>,
    objects: Family<OutcomeLabels, Gauge>,
    operations: Family<KindLabels, Counter>,
    drift: Family<KindLabels, Counter>,
    graph_requests: Counter,
    graph_throttled: Counter,
    ldap_operations: Family<KindLabels, Counter>,
    ldap_errors: Counter,
    lag: Gauge<f64, AtomicU64>,
    last_success: Gauge<f64, AtomicU64>,
    groups_in_scope: Gauge,
    /// The process-wide counters as of the last sync into the registry.
    seen_throttled: AtomicU64,
    seen_searches: AtomicU64,
    /// When the process started: the lag's base until a cycle has run to its end.
    started: OffsetDateTime,
}

/// Outcome labels of `writeback_objects`, so every series exists from the start.
const OUTCOMES: [&str; 6] = [
    "written",
    "not-written",
    "orphaned",
    "with-errors",
    "foreign",
    "to-delete",
];

const OPERATION_KINDS: [&str; 6] = [
    "create",
    "rename",
    "modify",
    "member-add",
    "member-remove",
    "delete",
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("writeback");
        let m = Metrics {
            cycle_duration: Histogram::new([
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
            ]),
            cycles: Family::default(),
            objects: Family::default(),
            operations: Family::default(),
            drift: Family::default(),
            graph_requests: Counter::default(),
            graph_throttled: Counter::default(),
            ldap_operations: Family::default(),
            ldap_errors: Counter::default(),
            lag: Gauge::default(),
            last_success: Gauge::default(),
            groups_in_scope: Gauge::default(),
            seen_throttled: AtomicU64::new(wb_graph::throttled_total()),
            seen_searches: AtomicU64::new(wb_ad::searches_total()),
            registry: Registry::default(),
            started: OffsetDateTime::now_utc(),
        };
        registry.register(
            "cycle_duration_seconds",
            "Duration of a cycle (import, plan, export, commit)",
            m.cycle_duration.clone(),
        );
        registry.register(
            "cycles",
            "Cycles run, by kind (quiet, delta, full; unknown for a cycle that failed before it knew) and status",
            m.cycles.clone(),
        );
        registry.register(
            "objects",
            "Groups of the latest plan by outcome: written (managed in AD), not-written (out of scope, unsupported, ...), orphaned, with-errors, to-delete; foreign: objects in the managed OUs writeback does not own",
            m.objects.clone(),
        );
        registry.register(
            "operations",
            "AD operations applied (in staging: planned), by kind; member-add and member-remove count members",
            m.operations.clone(),
        );
        registry.register(
            "drift",
            "Changes made by hand in AD that cycles found and put back, by kind",
            m.drift.clone(),
        );
        registry.register(
            "graph_requests",
            "HTTP requests sent to Microsoft Graph (retries included)",
            m.graph_requests.clone(),
        );
        registry.register(
            "graph_throttled_requests",
            "Graph requests throttled (429/503/504) and retried",
            m.graph_throttled.clone(),
        );
        registry.register(
            "ldap_operations",
            "LDAP operations: write (acknowledged by the DC) and search (each page)",
            m.ldap_operations.clone(),
        );
        registry.register(
            "ldap_errors",
            "LDAP errors: per-object export errors, and cycles that failed on the directory",
            m.ldap_errors.clone(),
        );
        registry.register(
            "lag_seconds",
            "Seconds since the last cycle that ran to its end (success, completed-with-errors or staging; before the first one: since the daemon started)",
            m.lag.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "Unix time of the end of the last cycle that ran to its end",
            m.last_success.clone(),
        );
        registry.register(
            "groups_in_scope",
            "Cloud groups written back (in scope) in the latest plan",
            m.groups_in_scope.clone(),
        );
        for kind in ["quiet", "delta", "full"] {
            for status in [RunStatus::Success, RunStatus::Failed] {
                let _ = m.cycles.get_or_create(&CycleLabels {
                    kind,
                    status: status.as_str(),
                });
            }
        }
        for outcome in OUTCOMES {
            let _ = m.objects.get_or_create(&OutcomeLabels { outcome });
        }
        for kind in OPERATION_KINDS {
            let _ = m.operations.get_or_create(&KindLabels { kind });
        }
        for kind in DriftKind::ALL {
            let _ = m.drift.get_or_create(&KindLabels {
                kind: kind.as_str(),
            });
        }
        for kind in ["write", "search"] {
            let _ = m.ldap_operations.get_or_create(&KindLabels { kind });
        }
        Metrics { registry, ..m }
    }

    /// A cycle that ran (whatever its status).
    pub fn cycle_done(&self, r: &CycleReport, took: Duration) {
        self.cycle_duration.observe(took.as_secs_f64());
        self.cycles
            .get_or_create(&CycleLabels {
                kind: cycle_kind(r),
                status: r.status.as_str(),
            })
            .inc();
        let c = &r.counts;
        for (kind, n) in [
            ("create", c.creates),
            ("rename", c.renames),
            ("modify", c.modifies),
            ("member-add", c.member_adds),
            ("member-remove", c.member_removes),
            ("delete", c.deletes),
        ] {
            self.operations
                .get_or_create(&KindLabels { kind })
                .inc_by(n as u64);
        }
        for d in &r.drift {
            self.drift
                .get_or_create(&KindLabels {
                    kind: d.kind.as_str(),
                })
                .inc();
        }
        self.graph_requests.inc_by(r.graph_requests);
        self.ldap_operations
            .get_or_create(&KindLabels { kind: "write" })
            .inc_by(r.ldap_writes);
        // Plan-level errors (`plan`) are not LDAP's; the rest are what the DC answered.
        let ldap_errors = r.errors.iter().filter(|e| e.operation != "plan").count();
        self.ldap_errors.inc_by(ldap_errors as u64);
        self.set_plan(&r.plan);
        if GOOD.contains(&r.status) {
            self.succeeded_at(OffsetDateTime::now_utc());
        }
        self.sync_process_counters();
    }

    /// A cycle that could not run.
    pub fn cycle_failed(&self, e: &CycleError, took: Duration) {
        self.cycle_duration.observe(took.as_secs_f64());
        self.cycles
            .get_or_create(&CycleLabels {
                kind: "unknown",
                status: RunStatus::Failed.as_str(),
            })
            .inc();
        if matches!(e, CycleError::Ad(_) | CycleError::ExportAborted(_)) {
            self.ldap_errors.inc();
        }
        self.sync_process_counters();
    }

    /// The gauges that describe the latest plan.
    pub fn set_plan(&self, p: &Plan) {
        let mut n = [0i64; OUTCOMES.len()];
        let mut at = |o: &str| {
            if let Some(i) = OUTCOMES.iter().position(|x| *x == o) {
                n[i] += 1;
            }
        };
        let mut in_scope = 0;
        for g in &p.groups {
            if matches!(g.decision, Decision::Written { .. }) {
                in_scope += 1;
            }
            match g.ad_state {
                AdState::Orphaned => at("orphaned"),
                AdState::ToDelete => at("to-delete"),
                _ if g.decision.is_written() => at("written"),
                _ => at("not-written"),
            }
            if !g.errors.is_empty() {
                at("with-errors");
            }
        }
        for _ in &p.foreign {
            at("foreign");
        }
        for (outcome, v) in OUTCOMES.iter().zip(n) {
            self.objects
                .get_or_create(&OutcomeLabels { outcome })
                .set(v);
        }
        self.groups_in_scope.set(in_scope);
    }

    /// The end of the last cycle that ran to its end (also from the store at start).
    pub fn succeeded_at(&self, at: OffsetDateTime) {
        self.last_success.set(unix_seconds(at));
    }

    /// Adds what the process-wide Graph and LDAP counters moved since the last call.
    fn sync_process_counters(&self) {
        let throttled = wb_graph::throttled_total();
        let before = self.seen_throttled.swap(throttled, Ordering::Relaxed);
        self.graph_throttled
            .inc_by(throttled.saturating_sub(before));
        let searches = wb_ad::searches_total();
        let before = self.seen_searches.swap(searches, Ordering::Relaxed);
        self.ldap_operations
            .get_or_create(&KindLabels { kind: "search" })
            .inc_by(searches.saturating_sub(before));
    }

    /// The text exposition, with the lag as of now.
    pub fn encode(&self) -> String {
        self.sync_process_counters();
        let last = self.last_success.get();
        // No cycle ever ran to its end: the lag grows from the start of the process.
        let since = if last > 0.0 {
            last
        } else {
            unix_seconds(self.started)
        };
        let lag = (unix_seconds(OffsetDateTime::now_utc()) - since).max(0.0);
        self.lag.set(lag);
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

fn unix_seconds(t: OffsetDateTime) -> f64 {
    t.unix_timestamp_nanos() as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(mode: &str, message: Option<&str>) -> CycleReport {
        CycleReport {
            run_id: Some(1),
            mode: mode.into(),
            status: RunStatus::Success,
            staging: false,
            counts: wb_model::PlanCounts {
                creates: 2,
                member_adds: 5,
                ..Default::default()
            },
            graph_requests: 4,
            ldap_writes: 3,
            errors: Vec::new(),
            message: message.map(String::from),
            plan: Plan::default().into(),
            held_back: Default::default(),
            drift: Vec::new(),
        }
    }

    #[test]
    fn cycles_are_counted_by_kind_and_status() {
        assert_eq!(
            cycle_kind(&report(
                "delta",
                Some("no change in the cloud or in the managed OUs")
            )),
            "quiet"
        );
        assert_eq!(cycle_kind(&report("delta", None)), "delta");
        assert_eq!(cycle_kind(&report("full", None)), "full");
        let m = Metrics::new();
        m.cycle_done(&report("full", None), Duration::from_millis(300));
        let text = m.encode();
        assert!(
            text.contains("writeback_cycles_total{kind=\"full\",status=\"success\"} 1"),
            "{text}"
        );
        assert!(text.contains("writeback_operations_total{kind=\"create\"} 2"));
        assert!(text.contains("writeback_operations_total{kind=\"member-add\"} 5"));
        assert!(text.contains("writeback_graph_requests_total 4"));
        assert!(text.contains("writeback_ldap_operations_total{kind=\"write\"} 3"));
        assert!(text.contains("writeback_drift_total{kind=\"member-added\"} 0"));
        assert!(text.contains("writeback_cycle_duration_seconds_count 1"));
        assert!(text.contains("writeback_lag_seconds "));
    }
}
