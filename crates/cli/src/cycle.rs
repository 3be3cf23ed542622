//! One writeback cycle: import (Graph delta + AD read), plan (the pure engine), export
//! (through the ownership guard), then commit state — delta links only after export.

use crate::config::{Config, GraphCredential};
use crate::export::{export, ExportOutcome};
use std::collections::{BTreeMap, HashSet};
use std::time::Instant;
use time::OffsetDateTime;
use tracing::{debug, info, info_span, warn, Instrument};
use wb_ad::{AdConnector, AdError};
use wb_graph::{Credential, GraphClient, GraphConfig, GraphError};
use wb_model::{CloudSnapshot, Decision, Plan, PlanCounts};
use wb_store::{Commit, ObjectError, RunRecord, RunStatus, Store, StoreError};

/// What the caller asked of this cycle.
#[derive(Debug, Clone, Copy, Default)]
pub struct CycleOptions {
    /// Start Graph delta rounds from scratch and re-read everything.
    pub full: bool,
    /// Let one cycle through the accident thresholds.
    pub allow_deletes: bool,
    /// Let one cycle through the create threshold.
    pub allow_creates: bool,
    /// Plan only: nothing written to AD, nothing committed (the `plan` command).
    pub plan_only: bool,
    /// The report carries every group's outcome (`sync --json`), not only the outcomes of
    /// the groups this cycle planned. A daemon's reports always do.
    pub all_outcomes: bool,
}

/// Why a cycle could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    #[error("Microsoft Graph: {0}")]
    Graph(#[from] GraphError),
    #[error("Active Directory: {0}")]
    Ad(#[from] AdError),
    #[error("state store (writeback.state): {0}")]
    Store(#[from] StoreError),
    /// The configuration does not match the directory (e.g. a managed OU that does not
    /// exist): named by its key, like any configuration mistake.
    #[error("configuration {0}")]
    Config(#[from] crate::config::ConfigError),
    /// The export stopped: the connection to the DC was lost. What the DC acknowledged
    /// before is kept; the next cycle resumes from what AD then holds.
    #[error("Active Directory: {0}; the next cycle resumes")]
    ExportAborted(String),
}

impl CycleError {
    /// Exit code per SPEC §8.
    pub fn exit_code(&self) -> i32 {
        match self {
            CycleError::Graph(GraphError::Config { .. })
            | CycleError::Store(_)
            | CycleError::Config(_) => 2,
            _ => 3,
        }
    }
}

/// The result of a cycle, for printing and exit codes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CycleReport {
    pub run_id: Option<i64>,
    pub mode: String,
    pub status: RunStatus,
    pub staging: bool,
    pub counts: PlanCounts,
    pub graph_requests: u64,
    pub ldap_writes: u64,
    pub errors: Vec<ObjectError>,
    pub message: Option<String>,
    /// Shared: a daemon's quiet cycles report the last plan without copying it.
    pub plan: std::sync::Arc<Plan>,
    pub held_back: PlanCounts,
    /// Changes made by hand in AD that this cycle found (and put back).
    pub drift: Vec<wb_model::DriftEvent>,
}

impl CycleReport {
    pub fn exit_code(&self) -> i32 {
        match self.status {
            RunStatus::StoppedByThreshold => 4,
            _ if !self.errors.is_empty() => 1,
            _ => 0,
        }
    }
}

pub fn graph_client(cfg: &Config) -> Result<GraphClient, GraphError> {
    GraphClient::new(graph_config(cfg))
}

/// The Graph client's settings from the configuration (the secret passed on, redacted in
/// its Debug output as in ours).
pub fn graph_config(cfg: &Config) -> GraphConfig {
    let credential = match &cfg.graph.credential {
        GraphCredential::Secret(s) => Credential::Secret(s.expose().to_string()),
        GraphCredential::Certificate { cert_pem, key_pem } => Credential::Certificate {
            cert_pem: cert_pem.clone(),
            key_pem: key_pem.expose().to_string(),
        },
    };
    GraphConfig {
        tenant: cfg.graph.tenant.clone(),
        client_id: cfg.graph.client_id.clone(),
        credential,
        graph_url: cfg.graph.graph_url.clone(),
        login_url: cfg.graph.login_url.clone(),
        timeout: cfg.graph.timeout,
        max_retries: 8,
    }
}

/// The imported cloud side of a cycle and what changed in it.
struct CloudImport {
    cloud: CloudSnapshot,
    /// The ids this import may have changed (a superset), so a cycle compares those alone.
    touched: Touched,
    full: bool,
    group_delta_link: Option<String>,
    user_delta_link: Option<String>,
    /// `None` when devices were not read this cycle (the stored link stays).
    device_delta_link: Option<String>,
    config_refreshed: bool,
}

/// The ids of the cloud image's objects an import may have changed, by kind: `None` when a
/// kind was read in full (any of them may have changed). Every change made to the image
/// between the store (or memory) and the commit goes through [`Touched`], so that a delta
/// cycle compares, commits and copies the objects it touched, not the whole tenant.
#[derive(Debug, Default)]
struct Touched {
    groups: Option<HashSet<String>>,
    users: Option<HashSet<String>>,
    devices: Option<HashSet<String>>,
}

impl Touched {
    fn all() -> Self {
        Touched {
            groups: None,
            users: None,
            devices: None,
        }
    }

    fn group(&mut self, id: &str) {
        if let Some(set) = &mut self.groups {
            set.insert(id.to_string());
        }
    }

    fn has_group(&self, id: &str) -> bool {
        self.groups.as_ref().is_none_or(|s| s.contains(id))
    }
}

/// Of `after`'s entries, those that differ from `before` (all when `full`), and the keys
/// `before` has that `after` lost — among `touched` only, when the import knows them.
fn diff_map<'a, T: PartialEq>(
    before: &BTreeMap<String, T>,
    after: &'a BTreeMap<String, T>,
    touched: Option<&HashSet<String>>,
    full: bool,
) -> (Vec<&'a String>, Vec<String>) {
    let Some(touched) = touched.filter(|_| !full) else {
        let upsert = after
            .iter()
            .filter(|(k, v)| full || before.get(*k) != Some(*v))
            .map(|(k, _)| k)
            .collect();
        let remove = before
            .keys()
            .filter(|k| !after.contains_key(*k))
            .cloned()
            .collect();
        return (upsert, remove);
    };
    let mut upsert = Vec::new();
    let mut remove = Vec::new();
    let mut ids: Vec<&String> = touched.iter().collect();
    ids.sort();
    for id in ids {
        match (before.get(id), after.get_key_value(id)) {
            (b, Some((k, v))) if b != Some(v) => upsert.push(k),
            (Some(_), None) => remove.push(id.clone()),
            _ => {}
        }
    }
    (upsert, remove)
}

/// Brings `copy` (the image before this cycle) to `now` by the ids the cycle `touched`;
/// `None` when it read a kind in full (the copy is dropped, and made again when needed).
fn follow(
    mut copy: CloudSnapshot,
    now: &CloudSnapshot,
    touched: &Touched,
) -> Option<CloudSnapshot> {
    fn one<T: Clone>(
        copy: &mut BTreeMap<String, T>,
        now: &BTreeMap<String, T>,
        ids: &HashSet<String>,
    ) {
        for id in ids {
            match now.get(id) {
                Some(v) => {
                    copy.insert(id.clone(), v.clone());
                }
                None => {
                    copy.remove(id);
                }
            }
        }
    }
    one(&mut copy.groups, &now.groups, touched.groups.as_ref()?);
    let users = touched.users.as_ref()?;
    // Shared with `now` when the cycle changed no user (see `CloudSnapshot::users`).
    if !users.is_empty() && !std::sync::Arc::ptr_eq(&copy.users, &now.users) {
        one(std::sync::Arc::make_mut(&mut copy.users), &now.users, users);
    }
    one(&mut copy.devices, &now.devices, touched.devices.as_ref()?);
    Some(copy)
}

/// The delta rounds of one cycle, read but not yet applied to the image.
struct Rounds {
    users: wb_graph::DeltaRound<wb_graph::UserChange>,
    groups: wb_graph::DeltaRound<wb_graph::GroupChange>,
    /// Read only once a group has had a device member (see `fetch_rounds`).
    devices: Option<wb_graph::DeltaRound<wb_graph::DeviceChange>>,
    full: bool,
}

impl Rounds {
    fn is_empty(&self) -> bool {
        !self.full
            && self.users.changes.is_empty()
            && self.groups.changes.is_empty()
            && self.devices.as_ref().is_none_or(|d| d.changes.is_empty())
    }
}

async fn fetch_rounds(
    graph: &GraphClient,
    group_link: Option<String>,
    user_link: Option<String>,
    device_link: Option<String>,
    mut full: bool,
) -> Result<Rounds, GraphError> {
    let group_link = own_link(graph, "group", group_link);
    let user_link = own_link(graph, "user", user_link);
    let device_link = own_link(graph, "device", device_link);
    if group_link.is_none() || user_link.is_none() {
        full = true;
    }
    // Users first: member resolution of the groups' changes needs them.
    let users = match graph
        .user_delta(if full { None } else { user_link.as_deref() })
        .await
    {
        Err(GraphError::DeltaExpired { message }) => {
            warn!(%message, "user delta token no longer valid: starting a full round");
            full = true;
            graph.user_delta(None).await?
        }
        r => r?,
    };
    let groups = match graph
        .group_delta(if full { None } else { group_link.as_deref() })
        .await
    {
        Err(GraphError::DeltaExpired { message }) => {
            warn!(%message, "group delta token no longer valid: starting a full round");
            full = true;
            graph.group_delta(None).await?
        }
        r => r?,
    };
    let users = if full && !users.full {
        // The group round had to restart from scratch: re-read users in full too, so the
        // whole image is from one moment.
        graph.user_delta(None).await?
    } else {
        users
    };
    // Devices (members written as their computer accounts) have a round of their own,
    // read once a group has had a device member — a tenant without device members pays no
    // request for them — and restarted alone when its link is missing or expired.
    let device_members = groups.changes.iter().any(|c| match c {
        wb_graph::GroupChange::Upsert(p) => p
            .members_added
            .iter()
            .any(|m| m.kind == wb_model::MemberKind::Device),
        _ => false,
    });
    let devices = if device_link.is_some() || device_members {
        let from = if full { None } else { device_link.as_deref() };
        Some(match graph.device_delta(from).await {
            Err(GraphError::DeltaExpired { message }) => {
                warn!(%message, "device delta token no longer valid: reading devices in full");
                graph.device_delta(None).await?
            }
            r => r?,
        })
    } else {
        None
    };
    Ok(Rounds {
        users,
        groups,
        devices,
        full,
    })
}

fn config_refresh_due(cfg: &Config, last_refresh: Option<OffsetDateTime>) -> bool {
    match last_refresh {
        None => true,
        Some(t) => (OffsetDateTime::now_utc() - t) >= cfg.config_refresh,
    }
}

async fn import_cloud(
    graph: &GraphClient,
    cfg: &Config,
    mut cloud: CloudSnapshot,
    rounds: Rounds,
    last_refresh: Option<OffsetDateTime>,
) -> Result<CloudImport, GraphError> {
    let Rounds {
        users,
        groups,
        devices,
        full,
    } = rounds;
    let ids = |full: bool, ids: &mut dyn Iterator<Item = &str>| -> Option<HashSet<String>> {
        (!full).then(|| ids.map(str::to_string).collect())
    };
    let mut touched = Touched {
        groups: ids(
            groups.full,
            &mut groups.changes.iter().map(wb_graph::GroupChange::id),
        ),
        users: ids(
            users.full,
            &mut users.changes.iter().map(wb_graph::UserChange::id),
        ),
        devices: match &devices {
            Some(d) => ids(
                d.full,
                &mut d.changes.iter().map(wb_graph::DeviceChange::id),
            ),
            None => Some(HashSet::new()),
        },
    };
    if full {
        touched = Touched::all();
    }
    // The users and devices before this round (users shared, not copied): a full round that
    // leaves out members the groups still name is checked against them.
    let users_before = users.full.then(|| cloud.users.clone());
    let devices_before = devices
        .as_ref()
        .is_some_and(|d| d.full)
        .then(|| cloud.devices.clone());
    wb_graph::apply_user_changes(&mut cloud, &users);
    if let Some(devices) = &devices {
        wb_graph::apply_device_changes(&mut cloud, devices);
    }
    let absent = wb_graph::apply_group_changes(&mut cloud, &groups);
    for id in &absent {
        touched.group(id);
    }
    confirm_absent(graph, &mut cloud, &absent).await?;
    if let Some(before) = users_before {
        confirm_absent_members(graph, &mut cloud, Absent::Users(&before)).await?;
    }
    if let Some(before) = devices_before {
        confirm_absent_members(graph, &mut cloud, Absent::Devices(&before)).await?;
    }
    refresh_config(
        graph,
        cfg,
        cloud,
        touched,
        full,
        [
            Some(groups.delta_link),
            Some(users.delta_link),
            devices.map(|d| d.delta_link),
        ],
        last_refresh,
    )
    .await
}

/// A delta link stored by an earlier cycle, unless it names another origin than the
/// configured graph_url (the configuration changed since): such a link is never used — the
/// token would go there — and the round starts from scratch.
fn own_link(graph: &GraphClient, kind: &str, link: Option<String>) -> Option<String> {
    let link = link?;
    if graph.is_graph_origin(&link) {
        return Some(link);
    }
    warn!(stored = %wb_graph::display_url(&link), "the stored {kind} delta link is not on the configured graph_url: discarded, starting a full round");
    None
}

/// A full round does not list some groups of the image: absence alone is no evidence (a
/// truncated or malformed answer looks the same), so Graph confirms each one. Gone → it
/// leaves the image (and its AD group is deleted); in deleted items → kept, soft-deleted;
/// still there → kept as known. Any other answer fails the cycle: nothing is applied.
async fn confirm_absent(
    graph: &GraphClient,
    cloud: &mut CloudSnapshot,
    absent: &[String],
) -> Result<(), GraphError> {
    if absent.is_empty() {
        return Ok(());
    }
    let presence = graph.confirm_gone(absent).await?;
    for (id, p) in &presence {
        if *p == wb_graph::Presence::Alive {
            warn!(group = %id, "the full round did not list this group, but Graph still has it: kept");
        }
    }
    wb_graph::apply_presence(cloud, &presence);
    Ok(())
}

/// The users or devices of the image before a full round (see [`confirm_absent_members`]).
enum Absent<'a> {
    Users(&'a std::collections::BTreeMap<String, wb_model::CloudUser>),
    Devices(&'a std::collections::BTreeMap<String, wb_model::CloudDevice>),
}

/// A full user (or device) round does not list some that groups still name as members or
/// owners: absence alone is no evidence (a truncated answer looks the same), and one dropped
/// from the image leaves every group it is in. So Graph confirms each one: still there →
/// kept as the image had it (said at WARN); gone (404) → left out. Any other answer fails
/// the cycle: nothing is applied. Those no group names are not asked about.
async fn confirm_absent_members(
    graph: &GraphClient,
    cloud: &mut CloudSnapshot,
    before: Absent<'_>,
) -> Result<(), GraphError> {
    use wb_model::MemberKind;
    let (kind, collection) = match before {
        Absent::Users(_) => (MemberKind::User, "users"),
        Absent::Devices(_) => (MemberKind::Device, "devices"),
    };
    // In the image before the round, not in it now.
    let left_out = |id: &str| match &before {
        Absent::Users(b) => b.contains_key(id) && !cloud.users.contains_key(id),
        Absent::Devices(b) => b.contains_key(id) && !cloud.devices.contains_key(id),
    };
    let named: std::collections::BTreeSet<&str> = cloud
        .groups
        .values()
        .flat_map(|g| g.members.iter().chain(&g.owners))
        .filter(|m| m.kind == kind)
        .map(|m| &*m.id)
        .filter(|id| left_out(id))
        .collect();
    if named.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = named.into_iter().map(str::to_string).collect();
    let alive = graph.confirm_present(collection, &ids).await?;
    for id in alive
        .into_iter()
        .filter_map(|(id, alive)| alive.then_some(id))
    {
        warn!(id = %id, "the full round did not list this member of a group ({collection}), but Graph still has it: kept");
        match before {
            Absent::Users(b) => {
                if let Some(u) = b.get(&id) {
                    std::sync::Arc::make_mut(&mut cloud.users).insert(id, u.clone());
                }
            }
            Absent::Devices(b) => {
                if let Some(d) = b.get(&id) {
                    cloud.devices.insert(id, d.clone());
                }
            }
        }
    }
    Ok(())
}

/// Whether group delta reports a change of writebackConfiguration alone is not documented:
/// re-read it for all groups every `config_refresh` and on every full round (SPEC §1).
async fn refresh_config(
    graph: &GraphClient,
    cfg: &Config,
    mut cloud: CloudSnapshot,
    mut touched: Touched,
    full: bool,
    [group_delta_link, user_delta_link, device_delta_link]: [Option<String>; 3],
    last_refresh: Option<OffsetDateTime>,
) -> Result<CloudImport, GraphError> {
    let due = config_refresh_due(cfg, last_refresh);
    let mut config_refreshed = false;
    if full || due {
        let configs = graph.writeback_configurations().await?;
        for (id, wb) in configs {
            if let Some(g) = cloud.groups.get_mut(&id) {
                if g.writeback != wb {
                    g.writeback = wb;
                    touched.group(&id);
                }
            }
        }
        config_refreshed = true;
    }
    Ok(CloudImport {
        cloud,
        touched,
        full,
        group_delta_link,
        user_delta_link,
        device_delta_link,
        config_refreshed,
    })
}

/// Group delta does not carry owners: for `write_owners`, read the owners of the groups
/// written back — all of them on a full round (which rebuilds the image), else those new or
/// changed in this round (a delta merge keeps the owners already known).
async fn refresh_owners(
    graph: &GraphClient,
    cfg: &Config,
    before: &CloudSnapshot,
    import: &mut CloudImport,
) -> Result<(), GraphError> {
    let ids: Vec<String> = import
        .cloud
        .groups
        .values()
        .filter(|g| wb_engine::decide(g, &cfg.engine).0.is_written())
        .filter(|g| {
            import.full || (import.touched.has_group(&g.id) && before.groups.get(&g.id) != Some(*g))
        })
        .map(|g| g.id.clone())
        .collect();
    for id in ids {
        let owners = graph.group_owners(&id).await?;
        if let Some(g) = import.cloud.groups.get_mut(&id) {
            g.owners = owners.into_iter().collect();
            import.touched.group(&id);
        }
    }
    Ok(())
}

/// Group Source of Authority: `isCloudManaged` is a resource of its own
/// (`/groups/{id}/onPremisesSyncBehavior`), not a property group delta carries. Converting a
/// group shows in delta as a change of the group (its `onPremisesSyncEnabled` is no longer
/// true), so it is read for the groups that name an AD group by SID and are not synced
/// (any more): all of them on a full round, else those new or changed in this round.
async fn refresh_sync_behavior(
    graph: &GraphClient,
    before: &CloudSnapshot,
    import: &mut CloudImport,
) -> Result<(), GraphError> {
    let mut ids = Vec::new();
    for g in import.cloud.groups.values_mut() {
        if g.is_synced_from_ad() || g.ad_sid().is_none() || g.deleted.is_some() {
            if g.cloud_managed.take().is_some() {
                import.touched.group(&g.id);
            }
            continue;
        }
        if import.full
            || g.cloud_managed.is_none()
            || (import.touched.has_group(&g.id) && before.groups.get(&g.id) != Some(&*g))
        {
            ids.push(g.id.clone());
        }
    }
    for id in ids {
        let managed = graph.group_is_cloud_managed(&id).await?;
        if let Some(g) = import.cloud.groups.get_mut(&id) {
            if g.cloud_managed != Some(managed) {
                g.cloud_managed = Some(managed);
                import.touched.group(&id);
            }
        }
    }
    Ok(())
}

/// What a quiet cycle compares: the configuration that shapes the plan, the DC, and its
/// highest committed USN when the last cycle that left nothing to retry ended.
fn quiet_fingerprint(cfg: &Config, service: &str, usn: u64) -> String {
    format!("{}|{usn}", quiet_prefix(cfg, service))
}

fn quiet_prefix(cfg: &Config, service: &str) -> String {
    format!("{}|{service}", config_hash(cfg))
}

/// What of the configuration shapes a plan, hashed (the first part of a fingerprint).
fn config_hash(cfg: &Config) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!(
        "{:?}|staging={}|{}",
        cfg.engine,
        cfg.staging,
        crate::adimage::image_scope(cfg)
    )
    .hash(&mut h);
    format!("{:016x}", h.finish())
}

/// The USN a stored fingerprint was taken at, if it was taken with this configuration on
/// this DC.
fn quiet_since(stored: &str, cfg: &Config, service: &str) -> Option<u64> {
    let (prefix, usn) = stored.rsplit_once('|')?;
    (prefix == quiet_prefix(cfg, service)).then(|| usn.parse().ok())?
}

/// The long-lived side of writeback's sync: the Graph client (its token cached), the LDAP
/// connection (reconnected when it drops), the state store, and — between the cycles of a
/// daemon — the state and the AD image held in memory, so a cycle parses nothing it already
/// has. One-shot commands build one for a single cycle.
pub struct Syncer<'c> {
    cfg: &'c Config,
    graph: GraphClient,
    store: Store,
    ad: Option<AdConnector>,
    memory: Option<Memory>,
    /// The last plan's outcomes as the store has them, read by the first quiet cycle of a
    /// Syncer that has no `memory` yet (a daemon that started on a settled state).
    quiet_plan: Option<std::sync::Arc<Plan>>,
    /// Likewise, what AD objects concern writeback (see `adimage::Interest`).
    quiet_interest: Option<crate::adimage::Interest>,
    /// One cycle, then the process ends: the images are not freed piece by piece (at
    /// 10,000 groups that is a tenth of the cycle), the process exit returns the memory.
    one_shot: bool,
}

/// What the store holds, as of the last committed cycle.
struct Memory {
    state: wb_store::SyncState,
    /// A second copy of `state.cloud`, kept equal to it by the ids each cycle touched: the
    /// next cycle imports into it instead of copying the whole image.
    spare: Option<CloudSnapshot>,
    image: Option<(crate::adimage::ImageMeta, wb_model::AdSnapshot)>,
    last_plan: std::sync::Arc<Plan>,
}

impl<'c> Syncer<'c> {
    pub fn new(cfg: &'c Config) -> Result<Self, CycleError> {
        Ok(Syncer {
            cfg,
            store: Store::open(&cfg.state)?,
            graph: graph_client(cfg)?,
            ad: None,
            memory: None,
            quiet_plan: None,
            quiet_interest: None,
            one_shot: false,
        })
    }

    /// Runs one cycle. `Ok` whenever the cycle ran (even with per-object errors or a
    /// threshold stop); `Err` when it could not (unreachable endpoints, refused
    /// credentials, store failure).
    pub async fn cycle(&mut self, opts: CycleOptions) -> Result<CycleReport, CycleError> {
        let started_at = OffsetDateTime::now_utc();
        // A cycle that writes is in the run history from its start: killed, it reads as
        // `interrupted`; failed, as `failed` with the error.
        let marker = if opts.plan_only {
            0
        } else {
            self.store.begin_run(started_at)?
        };
        let result = cycle(self, opts, started_at, marker).await;
        if let Err(e) = &result {
            // Whatever failed, the next cycle starts from the store and a new connection.
            self.memory = None;
            self.quiet_plan = None;
            self.quiet_interest = None;
            if matches!(e, CycleError::Ad(_) | CycleError::ExportAborted(_)) {
                self.ad = None;
            }
            if marker > 0 && !matches!(e, CycleError::ExportAborted(_)) {
                let run = failed_run(marker, started_at, e.to_string());
                if let Err(store_error) = self.store.record_run(&run) {
                    warn!(error = %store_error, "cannot record the failed run");
                }
            }
        }
        result
    }

    /// Ends the LDAP session politely.
    pub async fn close(mut self) {
        if let Some(ad) = self.ad.take() {
            let _ = ad.unbind().await;
        }
        if self.one_shot {
            std::mem::forget(self.memory.take());
        }
    }
}

/// One cycle with a Syncer of its own (the one-shot commands).
pub async fn run_cycle(cfg: &Config, opts: CycleOptions) -> Result<CycleReport, CycleError> {
    let mut syncer = Syncer::new(cfg)?;
    syncer.one_shot = true;
    let result = syncer.cycle(opts).await;
    syncer.close().await;
    result
}

fn failed_run(id: i64, started_at: OffsetDateTime, message: String) -> RunRecord {
    RunRecord {
        id,
        started_at,
        finished_at: OffsetDateTime::now_utc(),
        mode: "delta".into(),
        status: RunStatus::Failed,
        staging: false,
        counts: PlanCounts::default(),
        graph_requests: 0,
        ldap_writes: 0,
        errors: Vec::new(),
        message: Some(message),
        plan: None,
    }
}

async fn cycle(
    sx: &mut Syncer<'_>,
    opts: CycleOptions,
    started_at: OffsetDateTime,
    run_id: i64,
) -> Result<CycleReport, CycleError> {
    let t0 = Instant::now();
    let cfg = sx.cfg;
    let graph = &sx.graph;
    let store = &mut sx.store;
    let graph_start = graph.requests();
    // The links, times and fingerprint only: a quiet cycle parses no image.
    let meta = match &sx.memory {
        Some(m) => m.state.clone_meta(),
        None => store.load_meta()?,
    };

    let full_due = match meta.last_full_at {
        None => true,
        Some(t) => (started_at - t) >= cfg.full_interval,
    };
    let want_full = opts.full || full_due;
    let rounds = fetch_rounds(
        graph,
        meta.group_delta_link.clone(),
        meta.user_delta_link.clone(),
        meta.device_delta_link.clone(),
        want_full,
    )
    .instrument(info_span!("import.graph"))
    .await?;
    let mode = if rounds.full { "full" } else { "delta" }.to_string();
    let mut phases: Vec<(&str, u128)> = vec![("graph", t0.elapsed().as_millis())];

    // A connection kept from the last cycle may have died since (the DC restarted between
    // two cycles): probe it with the rootDSE read a quiet cycle needs anyway, and on a lost
    // connection start on a new one — rather than fail the cycle, and report an outage,
    // for a DC that is back.
    let mut root = None;
    if let Some(ad) = sx.ad.as_mut() {
        match ad.root_usn().await {
            Ok(r) => root = Some(r),
            Err(e) if e.is_unreachable_or_refused() => {
                debug!(error = %e, "the LDAP connection kept from the last cycle is gone: connecting again");
                sx.ad = None;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if sx.ad.is_none() {
        sx.ad = Some(AdConnector::connect(&cfg.ad.connector()).await?);
    }
    let Some(ad) = sx.ad.as_mut() else {
        unreachable!("connected above")
    };
    let writes_start = ad.writes();
    let searches_start = ad.searches();

    // A quiet cycle: nothing changed in the cloud (empty delta rounds, no full round, no
    // writebackConfiguration re-read due), nor anywhere in AD (the DC's highest committed
    // USN did not move), nor in the configuration, since the last cycle that left nothing
    // to retry — so the plan would be the same empty plan. 2 Graph requests and one rootDSE
    // read; no image is loaded.
    if !opts.plan_only
        && !cfg.staging
        && rounds.is_empty()
        && !config_refresh_due(cfg, meta.last_config_refresh_at)
        && meta.quiet_fingerprint.is_some()
    {
        let (service, usn) = match root.take() {
            Some(r) => r,
            None => ad.root_usn().await?,
        };
        let since = meta
            .quiet_fingerprint
            .as_deref()
            .and_then(|f| quiet_since(f, cfg, &service));
        // The USN moves with any write in the domain: quiet still when nothing that moved
        // concerns writeback (one search for what changed since).
        let quiet = match since {
            Some(since) if since == usn => true,
            Some(since) if since < usn => {
                !crate::adimage::changes_concern_us(ad, cfg, store, &mut sx.quiet_interest, since)
                    .await?
            }
            _ => false,
        };
        if quiet {
            // Read from the store once per Syncer: a daemon's quiet cycles reuse it.
            let last = match (&sx.memory, &sx.quiet_plan) {
                (Some(m), _) => m.last_plan.clone(),
                (None, Some(p)) => p.clone(),
                // A one-shot `sync` without --json shows the errors alone: only the
                // outcomes with errors are read.
                (None, None) if sx.one_shot && !opts.all_outcomes => std::sync::Arc::new(Plan {
                    groups: store.outcomes_with_errors()?,
                    ..Plan::default()
                }),
                (None, None) => {
                    let p = std::sync::Arc::new(store.last_outcomes()?.unwrap_or_default());
                    sx.quiet_plan = Some(p.clone());
                    p
                }
            };
            let errors = plan_errors(&last);
            let status = if errors.is_empty() {
                RunStatus::Success
            } else {
                RunStatus::CompletedWithErrors
            };
            let message = Some("no change in the cloud or in the managed OUs".to_string());
            let mut commit = Commit::for_run(RunRecord {
                id: run_id,
                started_at,
                finished_at: OffsetDateTime::now_utc(),
                mode: mode.clone(),
                status,
                staging: false,
                counts: PlanCounts::default(),
                graph_requests: graph.requests() - graph_start,
                ldap_writes: 0,
                errors: errors.clone(),
                message: message.clone(),
                plan: None,
            });
            commit.group_delta_link = Some(rounds.groups.delta_link.clone());
            commit.user_delta_link = Some(rounds.users.delta_link.clone());
            commit.device_delta_link = rounds.devices.as_ref().map(|d| d.delta_link.clone());
            commit.quiet_fingerprint = Some(quiet_fingerprint(cfg, &service, usn));
            let run_id = store.commit(&commit)?;
            if let Some(m) = sx.memory.as_mut() {
                m.state.group_delta_link = commit.group_delta_link.clone();
                m.state.user_delta_link = commit.user_delta_link.clone();
                if commit.device_delta_link.is_some() {
                    m.state.device_delta_link = commit.device_delta_link.clone();
                }
                m.state.quiet_fingerprint = commit.quiet_fingerprint.clone();
            }
            info!(
                run = run_id,
                elapsed_ms = t0.elapsed().as_millis() as u64,
                graph_requests = graph.requests() - graph_start,
                ldap_searches = ad.searches() - searches_start,
                "quiet cycle: nothing changed"
            );
            return Ok(CycleReport {
                run_id: Some(run_id),
                mode,
                status,
                staging: false,
                counts: PlanCounts::default(),
                graph_requests: graph.requests() - graph_start,
                ldap_writes: 0,
                errors,
                message,
                plan: last,
                held_back: PlanCounts::default(),
                drift: Vec::new(),
            });
        }
    }

    let (state, stored_image, last_plan, spare) = match sx.memory.take() {
        Some(m) => (m.state, m.image, Some(m.last_plan), m.spare),
        None => {
            // The two images side by side (see `Store::load_with_ad`).
            let (state, rows) = match meta.ad_image {
                Some(_) => {
                    let (state, rows) = store.load_with_ad()?;
                    (state, Some(rows))
                }
                None => (store.load()?, None),
            };
            let image = crate::adimage::stored_meta(state.ad_image.as_deref())
                .zip(rows)
                .map(|(m, rows)| crate::adimage::from_rows(m, rows));
            (state, image, None, None)
        }
    };
    phases.push(("load", t0.elapsed().as_millis()));
    let mut import = import_cloud(
        graph,
        cfg,
        spare.unwrap_or_else(|| state.cloud.clone()),
        rounds,
        state.last_config_refresh_at,
    )
    .instrument(info_span!("import.graph"))
    .await?;
    refresh_sync_behavior(graph, &state.cloud, &mut import)
        .instrument(info_span!("import.sync-behavior"))
        .await?;
    if cfg.engine.write_owners {
        refresh_owners(graph, cfg, &state.cloud, &mut import)
            .instrument(info_span!("import.owners"))
            .await?;
    }
    // The lookups this cycle can add are those of the objects its import touched — when
    // the last cycle settled with this configuration (else a rule may have brought other
    // groups in, or the last cycle left something to retry: all of them).
    let settled_config = meta
        .quiet_fingerprint
        .as_deref()
        .is_some_and(|f| f.starts_with(&format!("{}|", config_hash(cfg))));
    let t = &import.touched;
    let delta = match (&t.groups, &t.users, &t.devices) {
        (Some(g), Some(u), Some(d)) if settled_config && !import.full => {
            Some(crate::adimage::Delta {
                before: &state.cloud,
                ids: [g, u, d],
            })
        }
        _ => None,
    };
    let mut image = crate::adimage::refresh(
        ad,
        cfg,
        &import.cloud,
        &state.joins,
        stored_image,
        import.full,
        delta,
    )
    .instrument(info_span!("import.ad"))
    .await?;
    info!(how = %image.changes.how, "AD image");
    phases.push(("import", t0.elapsed().as_millis()));
    let ad_snapshot = &image.snapshot;
    // The AD groups that changed since the last cycle's image (read by USN): only their
    // differences can have been made by hand. Not known after a full read.
    let ad_changed: Option<std::collections::BTreeSet<String>> =
        (!image.changes.replaced).then(|| {
            let c = &image.changes;
            c.groups_upsert.union(&c.groups_remove).cloned().collect()
        });
    let input = wb_engine::Input {
        cloud: &import.cloud,
        ad: ad_snapshot,
        joins: &state.joins,
        config: &cfg.engine,
        previous: (!state.cloud.groups.is_empty()).then_some(&state.cloud),
        ad_changed: ad_changed.as_ref(),
    };
    // Plan what changed: everything after a full round or a full AD read, when the
    // configuration changed or the last cycle left something to retry, or for `plan` and
    // `explain` (which show every member's fate); else the groups the cloud rounds, the AD
    // changes and the resolution changes touch (the engine adds what they drag along).
    let settled_before = meta
        .quiet_fingerprint
        .as_deref()
        .and_then(|f| quiet_since(f, cfg, &image.meta.dc.service))
        .is_some();
    // The outcomes of the groups not planned stay as the store (or the memory) has them.
    let outcomes_kept =
        last_plan.is_some() || (settled_before && !opts.plan_only && store.outcomes_kept()?);
    let everything = opts.plan_only
        || import.full
        || image.changes.replaced
        || !settled_before
        || !outcomes_kept;
    // The groups this plan covers: `None` for every group.
    let mut planned: Option<std::collections::HashSet<String>> = None;
    // Errors of the groups not planned, when the plan does not carry their outcomes.
    let mut errors_not_planned = Vec::new();
    let plan = if everything {
        wb_engine::plan(&input)
    } else {
        let t = &import.touched;
        let (groups, gone_groups) = diff_map(
            &state.cloud.groups,
            &import.cloud.groups,
            t.groups.as_ref(),
            false,
        );
        let (users, gone_users) = diff_map(
            &state.cloud.users,
            &import.cloud.users,
            t.users.as_ref(),
            false,
        );
        let c = &image.changes;
        let changes = wb_engine::Changes {
            everything: false,
            groups: groups.into_iter().cloned().chain(gone_groups).collect(),
            users: users.into_iter().cloned().chain(gone_users).collect(),
            ad_guids: c
                .groups_upsert
                .iter()
                .chain(&c.groups_remove)
                .cloned()
                .collect(),
            lookups: c
                .lookups_upsert
                .iter()
                .chain(&c.lookups_remove)
                .cloned()
                .collect(),
        };
        let wb_engine::Touched {
            all: touched,
            alone,
        } = wb_engine::touched_parts(&input, &changes);
        // The last outcomes of the groups touched through their own cloud image alone:
        // with them, a group whose only change is a few users in or out is planned from
        // that member delta (its outcome slimmed — written members counted, not listed —,
        // as the store keeps every outcome; `plan` and `explain` plan everything).
        let stored_last;
        let last: Vec<&wb_model::GroupOutcome> = if alone.is_empty() {
            Vec::new()
        } else if let Some(plan) = &last_plan {
            plan.groups
                .iter()
                .filter(|g| alone.contains(&g.id))
                .collect()
        } else {
            stored_last = store.outcomes_of(alone.iter().map(String::as_str))?;
            stored_last.iter().collect()
        };
        let (partial, from_delta) = wb_engine::plan_groups_with(&input, &touched, &last);
        // The end-to-end tests check every incremental plan against the full one.
        if std::env::var_os("WRITEBACK_CHECK_INCREMENTAL").is_some_and(|v| !v.is_empty()) {
            let full = wb_engine::plan(&input);
            assert_eq!(
                partial.operations, full.operations,
                "the plan of what changed differs from the full plan (touched: {touched:?})"
            );
            for g in &partial.groups {
                let whole = full.groups.iter().find(|f| f.id == g.id);
                assert_eq!(
                    Some(g.slimmed()),
                    whole.map(wb_model::GroupOutcome::slimmed),
                    "the outcome of what changed differs from the full plan's"
                );
            }
        }
        info!(
            touched = touched.len(),
            planned = partial.groups.len(),
            alone = alone.len(),
            from_member_delta = from_delta,
            "planned what changed"
        );
        let ids: std::collections::HashSet<String> =
            partial.groups.iter().map(|g| g.id.clone()).collect();
        let plan = match last_plan {
            Some(last) => merge_outcomes(
                partial,
                std::sync::Arc::unwrap_or_clone(last),
                &import.cloud,
            ),
            // A Syncer that lives on (a daemon) keeps the whole plan in memory.
            None if opts.all_outcomes || !sx.one_shot => merge_outcomes(
                partial,
                store.last_outcomes()?.unwrap_or_default(),
                &import.cloud,
            ),
            None => {
                // Only the rows with errors are read: the run's errors stay whole.
                let stored = Plan {
                    groups: store
                        .outcomes_with_errors()?
                        .into_iter()
                        .filter(|g| import.cloud.groups.contains_key(&g.id) && !ids.contains(&g.id))
                        .collect(),
                    ..Plan::default()
                };
                errors_not_planned = plan_errors(&stored);
                partial
            }
        };
        planned = Some(ids);
        plan
    };
    let counts = plan.counts();
    phases.push(("plan", t0.elapsed().as_millis()));
    // A group over its kind's member limit is not written (SPEC §1): said loudly, each
    // cycle that plans it, besides `status` and `explain` — its AD group no longer follows
    // the cloud.
    for g in plan
        .groups
        .iter()
        .filter(|g| planned.as_ref().is_none_or(|p| p.contains(&g.id)))
    {
        if let wb_model::Decision::OverLimit { count, limit } = &g.decision {
            warn!(group = %g.id, name = %g.name, count, limit, ad_dn = g.ad_dn.as_deref().unwrap_or("-"),
                "group over the member limit: not written back");
        }
    }
    info!(
        mode = %mode,
        groups = import.cloud.groups.len(),
        ad_groups = ad_snapshot.groups.len(),
        operations = plan.operations.len(),
        "planned"
    );

    if opts.plan_only {
        return Ok(CycleReport {
            run_id: None,
            mode,
            status: RunStatus::Success,
            staging: cfg.staging,
            counts,
            graph_requests: graph.requests() - graph_start,
            ldap_writes: 0,
            errors: plan_errors(&plan),
            message: Some("plan only: nothing written".into()),
            plan: plan.into(),
            held_back: PlanCounts::default(),
            drift: Vec::new(),
        });
    }

    // Accident protection (SPEC §6, §10; crate::thresholds): over a threshold, what it
    // guards is held back.
    // The first export lasts until a cycle completes: one cut short (the DC lost mid-export,
    // whose acknowledged creates were committed as joins) is resumed, not held back.
    let first_cycle = !store.has_completed_run()?;
    let hold = crate::thresholds::decide(&counts, cfg, &opts, first_cycle);
    let stopped = hold.stopped();
    let mut message = hold.message.clone();
    if let Some(m) = &message {
        warn!(message = m.as_str());
    }
    let previous = (!state.cloud.groups.is_empty()).then_some(&state.cloud);
    let drift = crate::drift::events(
        &plan,
        crate::drift::Before {
            cloud: previous,
            joins: &state.joins,
            ad_changed: ad_changed.as_ref(),
        },
        &import.cloud,
        &hold,
        cfg.staging,
    );
    crate::drift::log(&drift);

    let outcome = if cfg.staging {
        message.get_or_insert_with(|| "staging: nothing written to AD".into());
        ExportOutcome::staged()
    } else {
        export(
            ad,
            cfg,
            &plan,
            ad_snapshot,
            &state.joins,
            &import.cloud,
            &hold,
            planned.as_ref(),
        )
        .instrument(info_span!("export"))
        .await
    };
    let ldap_writes = ad.writes() - writes_start;
    phases.push(("export", t0.elapsed().as_millis()));
    if let Some(message) = &outcome.aborted {
        // Keep what the DC acknowledged (the joins of groups created before the loss) and
        // the run; not the cloud image nor the delta links: the next cycle replays them.
        let joins_new = outcome.joins_after(&state.joins);
        let mut commit = Commit::for_run(RunRecord {
            id: run_id,
            started_at,
            finished_at: OffsetDateTime::now_utc(),
            mode: mode.clone(),
            status: RunStatus::Failed,
            staging: false,
            counts: outcome.applied,
            graph_requests: graph.requests() - graph_start,
            ldap_writes,
            errors: outcome.errors.clone(),
            message: Some(message.clone()),
            plan: Some(plan.for_history()),
        });
        commit.joins_upsert = joins_new
            .values()
            .filter(|j| state.joins.get(&j.group) != Some(j))
            .cloned()
            .collect();
        commit.quiet_fingerprint = Some(String::new());
        store.commit(&commit)?;
        return Err(CycleError::ExportAborted(message.clone()));
    }
    // The joins after the export: `state.joins` brought along by what the export changed.
    let (joins_upsert, joins_remove) = outcome.join_changes(&state.joins);
    let mut joins_new = state.joins;
    for id in &joins_remove {
        joins_new.remove(id);
    }
    for j in &joins_upsert {
        joins_new.insert(j.group.clone(), j.clone());
    }
    if !outcome.done.is_empty() || !outcome.unsure.is_empty() {
        crate::adimage::after_export(
            ad,
            cfg,
            &joins_new,
            &mut image,
            &outcome.done,
            &outcome.unsure,
        )
        .instrument(info_span!("import.ad.after-export"))
        .await?;
    }
    // The next cycle may be quiet only if this one left nothing to retry.
    let settled = !stopped && outcome.errors.is_empty() && !cfg.staging;
    let next_fingerprint = if settled {
        // AD is as the image says, up to its USN.
        Some(quiet_fingerprint(
            cfg,
            &image.meta.dc.service,
            image.meta.dc.highest_usn,
        ))
    } else {
        Some(String::new())
    };

    let mut plan = plan;
    if !cfg.staging {
        outcome.settle(&mut plan);
    }
    let mut errors = plan_errors(&plan);
    errors.extend(errors_not_planned);
    errors.extend(outcome.errors.iter().cloned());
    let status = if stopped {
        RunStatus::StoppedByThreshold
    } else if cfg.staging {
        RunStatus::Staging
    } else if errors.is_empty() {
        RunStatus::Success
    } else {
        RunStatus::CompletedWithErrors
    };
    let finished_at = OffsetDateTime::now_utc();
    let run = RunRecord {
        id: run_id,
        started_at,
        finished_at,
        mode: mode.clone(),
        status,
        staging: cfg.staging,
        counts: outcome.applied,
        graph_requests: graph.requests() - graph_start,
        ldap_writes,
        errors: errors.clone(),
        message: message.clone(),
        plan: Some(plan.for_history()),
    };

    // Commit the cloud image, the delta links and the joins in one transaction — only now,
    // after the export, so a crash before this point replays the same changes next time.
    let t = &import.touched;
    let (upsert_groups, remove_groups) = diff_map(
        &state.cloud.groups,
        &import.cloud.groups,
        t.groups.as_ref(),
        import.full,
    );
    let (upsert_users, remove_users) = diff_map(
        &state.cloud.users,
        &import.cloud.users,
        t.users.as_ref(),
        import.full,
    );
    let (upsert_devices, remove_devices) = diff_map(
        &state.cloud.devices,
        &import.cloud.devices,
        t.devices.as_ref(),
        import.full,
    );
    // The outcomes of the groups planned, slimmed as the store keeps them.
    let slim_outcomes: Vec<wb_model::GroupOutcome> = plan
        .groups
        .iter()
        .filter(|g| planned.as_ref().is_none_or(|p| p.contains(&g.id)))
        .map(wb_model::GroupOutcome::slimmed)
        .collect();
    let remove_groups_outcomes = remove_groups.clone();
    let mut commit = Commit {
        replace_cloud: import.full,
        upsert_groups: upsert_groups
            .iter()
            .map(|id| &import.cloud.groups[*id])
            .collect(),
        remove_groups,
        upsert_users: upsert_users
            .iter()
            .map(|id| &import.cloud.users[*id])
            .collect(),
        remove_users,
        upsert_devices: upsert_devices
            .iter()
            .map(|id| &import.cloud.devices[*id])
            .collect(),
        remove_devices,
        group_delta_link: import.group_delta_link.clone(),
        user_delta_link: import.user_delta_link.clone(),
        device_delta_link: import.device_delta_link.clone(),
        joins_upsert,
        joins_remove,
        full_at: import.full.then_some(started_at),
        config_refresh_at: import.config_refreshed.then_some(started_at),
        quiet_fingerprint: next_fingerprint,
        replace_ad: false,
        ad_groups_upsert: Vec::new(),
        ad_groups_remove: Vec::new(),
        ad_lookups_upsert: Vec::new(),
        ad_lookups_remove: Vec::new(),
        ad_image: None,
        // A staging server puts nothing back: its drift is logged, not recorded.
        drift: if cfg.staging {
            Vec::new()
        } else {
            drift.clone()
        },
        outcomes: Some(wb_store::OutcomesUpdate {
            replace: planned.is_none(),
            upsert: slim_outcomes.iter().collect(),
            remove: remove_groups_outcomes,
            foreign: &plan.foreign,
            notices: &plan.notices,
        }),
        run,
    };
    image.fill_commit(&mut commit);
    let run_id = store.commit(&commit)?;
    phases.push(("commit", t0.elapsed().as_millis()));
    // What was just committed stays in memory for the next cycle of this Syncer.
    let next_state = wb_store::SyncState {
        cloud: CloudSnapshot::default(),
        group_delta_link: commit.group_delta_link.clone(),
        user_delta_link: commit.user_delta_link.clone(),
        device_delta_link: commit
            .device_delta_link
            .clone()
            .or(state.device_delta_link.clone()),
        joins: joins_new,
        last_full_at: commit.full_at.or(state.last_full_at),
        last_config_refresh_at: commit.config_refresh_at.or(state.last_config_refresh_at),
        quiet_fingerprint: commit.quiet_fingerprint.clone().filter(|f| !f.is_empty()),
        ad_image: commit.ad_image.clone(),
    };
    drop(commit);
    sx.quiet_plan = None;
    sx.quiet_interest = None;
    if sx.one_shot {
        // The process ends after this cycle: nothing is kept for a next one, and the
        // images are not freed piece by piece (a tenth of the cycle at 10,000 groups).
        std::mem::forget((state.cloud, import.cloud, image));
    } else {
        let spare = follow(state.cloud, &import.cloud, &import.touched);
        // The end-to-end tests check that the copy follows the image exactly.
        if std::env::var_os("WRITEBACK_CHECK_INCREMENTAL").is_some_and(|v| !v.is_empty()) {
            if let Some(spare) = &spare {
                assert!(
                    spare == &import.cloud,
                    "the spare copy of the cloud image does not follow it (touched: {:?})",
                    import.touched
                );
            }
        }
        sx.memory = Some(Memory {
            spare,
            state: wb_store::SyncState {
                cloud: import.cloud,
                ..next_state
            },
            image: Some((image.meta, image.snapshot)),
            last_plan: std::sync::Arc::new(plan.slimmed()),
        });
    }
    info!(
        run = run_id,
        status = status.as_str(),
        elapsed_ms = t0.elapsed().as_millis() as u64,
        graph_requests = graph.requests() - graph_start,
        ldap_searches = ad.searches() - searches_start,
        ldap_writes,
        phases = %phases
            .iter()
            .map(|(p, ms)| format!("{p}@{ms}ms"))
            .collect::<Vec<_>>()
            .join(" "),
        "cycle finished"
    );
    Ok(CycleReport {
        run_id: Some(run_id),
        mode,
        status,
        staging: cfg.staging,
        counts: outcome.applied,
        graph_requests: graph.requests() - graph_start,
        ldap_writes,
        errors,
        message,
        plan: plan.into(),
        held_back: outcome.held_back,
        drift,
    })
}

/// A plan of some groups, completed with the outcomes of the others from the last plan
/// (what `status` and the run history show stays whole); groups gone from the cloud drop
/// out. Outcomes in the engine's order (by name, then id).
fn merge_outcomes(mut partial: Plan, last: Plan, cloud: &CloudSnapshot) -> Plan {
    let planned: std::collections::HashSet<String> =
        partial.groups.iter().map(|g| g.id.clone()).collect();
    partial.groups.extend(
        last.groups
            .into_iter()
            .filter(|g| !planned.contains(&g.id) && cloud.groups.contains_key(&g.id)),
    );
    partial
        .groups
        .sort_by(|a, b| (a.name.as_str(), &a.id).cmp(&(b.name.as_str(), &b.id)));
    partial
}

/// Ids whose value is new or changed, and ids that are gone.
/// Group-level errors the plan itself found: invalid writeback types, domain-local members.
pub fn plan_errors(plan: &Plan) -> Vec<ObjectError> {
    let mut out = Vec::new();
    for g in &plan.groups {
        let error = |message: &str| ObjectError {
            group: Some(g.id.clone()),
            name: Some(g.name.clone()),
            dn: g.ad_dn.clone(),
            operation: "plan".into(),
            message: message.to_string(),
        };
        if let Decision::Invalid { because } = &g.decision {
            if !g.errors.iter().any(|e| e == because) {
                out.push(error(because));
            }
        }
        out.extend(g.errors.iter().map(|e| error(e)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use wb_model::{CloudGroup, CloudUser, MemberKind, MemberRef};

    fn group(id: &str, name: &str, members: &[&str]) -> CloudGroup {
        CloudGroup {
            id: id.into(),
            display_name: Some(name.into()),
            members: members
                .iter()
                .map(|m| MemberRef {
                    id: (*m).into(),
                    kind: MemberKind::User,
                })
                .collect(),
            ..CloudGroup::default()
        }
    }

    fn image(groups: &[CloudGroup], users: &[&str]) -> CloudSnapshot {
        CloudSnapshot {
            groups: groups.iter().map(|g| (g.id.clone(), g.clone())).collect(),
            users: users
                .iter()
                .map(|u| {
                    (
                        u.to_string(),
                        CloudUser {
                            id: u.to_string(),
                            ..CloudUser::default()
                        },
                    )
                })
                .collect::<BTreeMap<_, _>>()
                .into(),
            devices: BTreeMap::new(),
        }
    }

    fn ids(v: &[&str]) -> HashSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_delta_cycle_compares_the_ids_it_touched_and_finds_what_a_full_compare_finds() {
        let before = image(
            &[
                group("g1", "One", &["u1"]),
                group("g2", "Two", &["u1", "u2"]),
                group("g3", "Three", &[]),
            ],
            &["u1", "u2"],
        );
        let after = image(
            &[
                group("g1", "One", &["u1", "u2"]),
                group("g2", "Two", &["u1", "u2"]),
                group("g4", "Four", &["u2"]),
            ],
            &["u1", "u2", "u3"],
        );
        // g2 was in a round but did not change; g3 left; g4 is new.
        let touched = ids(&["g1", "g2", "g3", "g4"]);
        let full = diff_map(&before.groups, &after.groups, None, false);
        let by_ids = diff_map(&before.groups, &after.groups, Some(&touched), false);
        assert_eq!(by_ids, full);
        assert_eq!(by_ids.0, vec!["g1", "g4"]);
        assert_eq!(by_ids.1, vec!["g3".to_string()]);
        // A full round upserts everything, touched or not.
        let all = diff_map(&before.groups, &after.groups, Some(&touched), true);
        assert_eq!(all.0.len(), 3);
    }

    #[test]
    fn the_spare_copy_follows_the_image_by_the_touched_ids_and_is_dropped_after_a_full_read() {
        let before = image(
            &[group("g1", "One", &["u1"]), group("g3", "Three", &[])],
            &["u1"],
        );
        let after = image(
            &[group("g1", "Uno", &["u1", "u2"]), group("g4", "Four", &[])],
            &["u1", "u2"],
        );
        let touched = Touched {
            groups: Some(ids(&["g1", "g3", "g4"])),
            users: Some(ids(&["u2"])),
            devices: Some(HashSet::new()),
        };
        let spare = follow(before.clone(), &after, &touched).expect("a copy");
        assert_eq!(spare, after);
        // Missing an id would leave the copy behind: that is what the check in the cycle
        // (WRITEBACK_CHECK_INCREMENTAL) catches.
        let partial = Touched {
            groups: Some(ids(&["g1", "g3"])),
            ..touched
        };
        assert_ne!(
            follow(before.clone(), &after, &partial),
            Some(after.clone())
        );
        let full_users = Touched {
            users: None,
            ..partial
        };
        assert_eq!(follow(before, &after, &full_users), None);
    }
}
