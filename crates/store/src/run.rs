//! The record of one cycle (a *run*): when, how, what it exported or would have exported
//! in staging, and the per-object errors — what `writeback runs` and `status` show.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use wb_model::{ObjectId, Plan, PlanCounts};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    Success,
    CompletedWithErrors,
    StoppedByThreshold,
    Failed,
    Staging,
    /// A cycle in progress (recorded when it starts, replaced when it ends).
    Running,
    /// A cycle whose process ended before it did (killed, crashed, power lost).
    Interrupted,
}

impl RunStatus {
    pub const ALL: [RunStatus; 7] = [
        RunStatus::Success,
        RunStatus::CompletedWithErrors,
        RunStatus::StoppedByThreshold,
        RunStatus::Failed,
        RunStatus::Staging,
        RunStatus::Running,
        RunStatus::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Success => "success",
            RunStatus::CompletedWithErrors => "completed-with-errors",
            RunStatus::StoppedByThreshold => "stopped-by-threshold",
            RunStatus::Failed => "failed",
            RunStatus::Staging => "staging",
            RunStatus::Running => "running",
            RunStatus::Interrupted => "interrupted",
        }
    }

    /// The inverse of [`RunStatus::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A per-object error of a run: the object, the operation, and what the server said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectError {
    pub group: Option<ObjectId>,
    pub name: Option<String>,
    pub dn: Option<String>,
    pub operation: String,
    pub message: String,
}

/// One cycle as recorded in the run history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Assigned by the store; 0 for a run not yet recorded.
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    /// `"delta"` or `"full"`.
    pub mode: String,
    pub status: RunStatus,
    pub staging: bool,
    pub counts: PlanCounts,
    pub graph_requests: u64,
    pub ldap_writes: u64,
    pub errors: Vec<ObjectError>,
    pub message: Option<String>,
    /// What was exported (in staging: what would have been exported).
    pub plan: Option<Plan>,
}
