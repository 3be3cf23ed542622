//! `writeback cloud …`: the cloud-side admin commands of SPEC §7 and §10 — writebackConfiguration
//! of one group, of many (`enable --match`) or of every Microsoft 365 group, the tenant default
//! for new Microsoft 365 groups, and `status`: what the tenant's settings add up to.

use crate::config::Config;
use crate::cycle::graph_client;
use regex::Regex;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::str::FromStr;
use wb_engine::{EngineConfig, RuleKind, RuleMatch, SECURITY_TYPE_ERROR};
use wb_graph::{BatchRequest, GraphClient, GraphError, MAX_BATCH};
use wb_model::{CloudGroup, Decision, GroupKind, OnPremGroupType, WritebackConfiguration};

/// The `Group.Unified` directory-setting template (tenant-wide Microsoft 365 group settings).
pub const GROUP_UNIFIED_TEMPLATE: &str = "62375ab9-6b52-47ed-826b-58e47e0e304b";
/// The value of `Group.Unified` that Graph applies to the isEnabled of new Microsoft 365 groups.
pub const WRITEBACK_DEFAULT_SETTING: &str = "NewUnifiedGroupWritebackDefault";

/// The properties every command reads of a group (writebackConfiguration is beta-only).
const GROUP_SELECT: &str =
    "id,displayName,groupTypes,mailEnabled,securityEnabled,onPremisesSyncEnabled,writebackConfiguration";

/// `writeback cloud …` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum CloudCommand {
    /// Switch writeback off (isEnabled=false) for every Microsoft 365 group whose
    /// writebackConfiguration.isEnabled is still null. Groups already set to true or false are
    /// left alone. Without --yes, only shows the groups that would change.
    #[command(name = "disable-m365")]
    DisableM365 {
        /// Write the change (without it, a preview: nothing is written).
        #[arg(long)]
        yes: bool,
    },
    /// Set the tenant default for NEW Microsoft 365 groups (NewUnifiedGroupWritebackDefault of
    /// the Group.Unified directory setting, created from its template when absent). Existing
    /// groups are not changed.
    #[command(name = "default-m365")]
    DefaultM365 {
        /// `off`: new Microsoft 365 groups are not written back unless enabled one by one.
        #[arg(value_enum)]
        state: Switch,
    },
    /// Enable writeback (isEnabled=true) of one group, or with --match of every group whose
    /// display name matches, optionally choosing the AD type.
    ///
    /// With --match: a preview of the groups that would change unless --yes; groups synced
    /// from AD and distribution / mail-enabled security groups are never touched; groups
    /// already enabled (with the type asked) are left alone, so a run that was interrupted
    /// is finished by running it again. Writes go by $batch (20 groups a request).
    #[command(
        after_help = "Examples:\n  writeback cloud enable 'SG-Finance' --type universalSecurityGroup\n  \
writeback cloud enable --match '^SG-Fin' --kind security            # preview\n  \
writeback cloud enable --match '^SG-Fin' --kind security --yes"
    )]
    Enable {
        /// Object id or exact display name of the group (or --match for many).
        #[arg(required_unless_present = "pattern", conflicts_with = "pattern")]
        group: Option<String>,
        /// Enable every group whose display name matches this regular expression (searched
        /// in the name as written; `^` anchors, `(?i)` ignores case), as a scope rule's
        /// name_regex.
        #[arg(long = "match", value_name = "REGEX", value_parser = Regex::new)]
        pattern: Option<Regex>,
        /// With --match: only groups of this kind (`security` or `microsoft365`).
        #[arg(long, value_name = "KIND", value_parser = RuleKind::from_str, requires = "pattern")]
        kind: Option<RuleKind>,
        /// The AD group type. Security groups can only be universalSecurityGroup.
        #[arg(long = "type", value_enum, value_name = "TYPE")]
        group_type: Option<TypeArg>,
        /// With --match: write the change (without it, a preview: nothing is written).
        #[arg(long, requires = "pattern")]
        yes: bool,
    },
    /// Disable writeback of one group (isEnabled=false). Its AD group is kept and listed as
    /// orphaned (deleted instead when delete_out_of_scope = true).
    Disable {
        /// Object id or exact display name of the group.
        group: String,
    },
    /// Per kind, how many groups are enabled, disabled or left at the default (isEnabled
    /// null); the tenant default for new Microsoft 365 groups; and how many groups the next
    /// cycle writes back under this configuration's rules. Reads Graph only.
    Status,
}

/// `on` / `off`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    Off,
    On,
}

impl Switch {
    fn value(self) -> &'static str {
        match self {
            Switch::Off => "false",
            Switch::On => "true",
        }
    }
}

/// `--type` values, spelled as Graph spells onPremisesGroupType.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeArg {
    #[value(name = "universalSecurityGroup")]
    Security,
    #[value(name = "universalDistributionGroup")]
    Distribution,
    #[value(name = "universalMailEnabledSecurityGroup")]
    MailEnabledSecurity,
}

impl From<TypeArg> for OnPremGroupType {
    fn from(t: TypeArg) -> Self {
        match t {
            TypeArg::Security => OnPremGroupType::UniversalSecurityGroup,
            TypeArg::Distribution => OnPremGroupType::UniversalDistributionGroup,
            TypeArg::MailEnabledSecurity => OnPremGroupType::UniversalMailEnabledSecurityGroup,
        }
    }
}

/// Why a cloud command did not complete.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("{operation}: {source}")]
    Graph {
        operation: String,
        #[source]
        source: Box<GraphError>,
    },
    #[error("no group has the object id or exact display name {query:?}")]
    NoSuchGroup { query: String },
    #[error("{count} groups have the display name {name:?}; give one of their object ids: {ids}", count = .ids.len(), ids = .ids.join(", "))]
    AmbiguousName { name: String, ids: Vec<String> },
    #[error("group {name} ({id}): {reason}; nothing written")]
    Refused {
        id: String,
        name: String,
        reason: String,
    },
    #[error("{count} matching group(s) cannot be enabled: {reason}: {groups}; nothing written", count = .groups.len(), groups = .groups.join(", "))]
    RefusedMany { reason: String, groups: Vec<String> },
    #[error("cannot read Graph's answer to {operation}: {message}")]
    Answer { operation: String, message: String },
}

impl CloudError {
    /// Exit code per SPEC §8: 2 bad usage, 3 Graph unreachable or refusing us, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            CloudError::Graph { source, .. } => graph_exit_code(source),
            CloudError::NoSuchGroup { .. }
            | CloudError::AmbiguousName { .. }
            | CloudError::Refused { .. }
            | CloudError::RefusedMany { .. } => 2,
            CloudError::Answer { .. } => 1,
        }
    }
}

fn graph_exit_code(e: &GraphError) -> i32 {
    // As for a sync: an endpoint unreachable or refusing us, or answering what writeback
    // cannot accept (a malformed page, a link to another origin), is exit 3.
    if e.is_unreachable_or_refused()
        || matches!(
            e,
            GraphError::Decode { .. } | GraphError::ForeignOrigin { .. }
        )
    {
        3
    } else if matches!(e, GraphError::Config { .. }) {
        2
    } else {
        1
    }
}

fn graph_err(operation: impl Into<String>) -> impl FnOnce(GraphError) -> CloudError {
    let operation = operation.into();
    move |source| CloudError::Graph {
        operation,
        source: Box::new(source),
    }
}

/// A group as these commands see it: a row of `GET /beta/groups?$select=GROUP_SELECT`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupRow {
    id: String,
    display_name: Option<String>,
    group_types: Option<Vec<String>>,
    mail_enabled: Option<bool>,
    security_enabled: Option<bool>,
    on_premises_sync_enabled: Option<bool>,
    writeback_configuration: Option<WritebackConfiguration>,
}

impl GroupRow {
    /// The group as the engine sees it — without members, which these commands do not read.
    fn cloud_group(&self) -> CloudGroup {
        CloudGroup {
            id: self.id.clone(),
            display_name: self.display_name.clone(),
            group_types: self.group_types.clone().unwrap_or_default(),
            mail_enabled: self.mail_enabled,
            security_enabled: self.security_enabled,
            on_premises_sync_enabled: self.on_premises_sync_enabled,
            writeback: self.writeback_configuration.clone().unwrap_or_default(),
            ..Default::default()
        }
    }

    fn kind(&self) -> GroupKind {
        self.cloud_group().kind()
    }

    fn name(&self) -> &str {
        self.display_name.as_deref().unwrap_or("")
    }

    fn is_enabled(&self) -> Option<bool> {
        self.writeback_configuration
            .as_ref()
            .and_then(|w| w.is_enabled)
    }
}

/// Runs one `writeback cloud` command; returns the exit code.
pub async fn run(cfg: &Config, command: CloudCommand, json: bool) -> i32 {
    let graph = match graph_client(cfg) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return graph_exit_code(&e);
        }
    };
    let result = match command {
        CloudCommand::DisableM365 { yes } => disable_m365(&graph, yes, json).await,
        CloudCommand::DefaultM365 { state } => default_m365(&graph, state, json).await,
        CloudCommand::Enable {
            group,
            pattern,
            kind,
            group_type,
            yes,
        } => match (group, pattern) {
            (_, Some(pattern)) => {
                let selection = Selection {
                    pattern,
                    kind,
                    group_type: group_type.map(Into::into),
                };
                enable_matching(&graph, &cfg.engine, &selection, yes, json).await
            }
            (Some(group), None) => {
                let group_type = group_type.map(Into::into);
                set_enabled(&graph, &cfg.engine, &group, true, group_type, json).await
            }
            // clap requires one of the two.
            (None, None) => Err(CloudError::NoSuchGroup {
                query: String::new(),
            }),
        },
        CloudCommand::Disable { group } => {
            set_enabled(&graph, &cfg.engine, &group, false, None, json).await
        }
        CloudCommand::Status => status(&graph, &cfg.engine, json).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if json {
                print_json(&json!({"error": e.to_string()}));
            }
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn print_json(v: &impl Serialize) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot render JSON: {e}"),
    }
}

/// Reads the groups of a plain Graph collection from `first` (the client's collection
/// reader: pages followed exactly as given, only on graph_url's origin).
async fn read_groups(graph: &GraphClient, first: &str) -> Result<Vec<GroupRow>, CloudError> {
    let mut rows = Vec::new();
    graph
        .collection(first, |item| {
            let row: GroupRow = serde_json::from_value(item.clone())
                .map_err(|e| format!("a group that is not a group: {e}"))?;
            rows.push(row);
            Ok(())
        })
        .await
        .map_err(graph_err("reading groups"))?;
    Ok(rows)
}

/// Percent-encodes a query-string value (everything but RFC 3986 unreserved characters), so
/// that `'`, `&`, `#` and `+` in a display name reach Graph as written.
fn query_value(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn looks_like_object_id(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Finds one group by object id or exact display name.
async fn find_group(graph: &GraphClient, query: &str) -> Result<GroupRow, CloudError> {
    if looks_like_object_id(query) {
        match graph
            .get_json(&format!("/beta/groups/{query}?$select={GROUP_SELECT}"))
            .await
        {
            Ok(item) => {
                return serde_json::from_value(item).map_err(|e| CloudError::Answer {
                    operation: format!("GET /beta/groups/{query}"),
                    message: format!("not a group: {e}"),
                })
            }
            // Not an id after all: a display name may look like one.
            Err(GraphError::Api { status: 404, .. }) => {}
            Err(e) => return Err(graph_err(format!("reading group {query}"))(e)),
        }
    }
    // OData string literals double their single quotes.
    let filter = format!("displayName eq '{}'", query.replace('\'', "''"));
    let rows = read_groups(
        graph,
        &format!(
            "/beta/groups?$filter={}&$select={GROUP_SELECT}&$top=999",
            query_value(&filter)
        ),
    )
    .await?;
    // Graph compares strings without regard to case; "exact" here means exactly as typed.
    let mut exact: Vec<GroupRow> = rows
        .into_iter()
        .filter(|r| r.display_name.as_deref() == Some(query))
        .collect();
    match exact.len() {
        0 => Err(CloudError::NoSuchGroup {
            query: query.to_string(),
        }),
        1 => Ok(exact.remove(0)),
        _ => Err(CloudError::AmbiguousName {
            name: query.to_string(),
            ids: exact.into_iter().map(|r| r.id).collect(),
        }),
    }
}

#[derive(Debug, Serialize)]
struct GroupChange {
    id: String,
    display_name: String,
    kind: &'static str,
    before: WritebackConfiguration,
    after: WritebackConfiguration,
    written: bool,
}

/// `writeback cloud enable|disable GROUP`.
async fn set_enabled(
    graph: &GraphClient,
    engine: &EngineConfig,
    query: &str,
    enable: bool,
    group_type: Option<OnPremGroupType>,
    json: bool,
) -> Result<i32, CloudError> {
    let group = find_group(graph, query).await?;
    let kind = group.kind();
    let before = group.writeback_configuration.clone().unwrap_or_default();
    let (after, body) = target(&before, enable, group_type);
    // What the next cycle will make of the group, decided by the engine itself.
    let decision = decision_after(&group, &after, engine);
    if enable {
        if let Some(reason) = refusal(&decision, &after) {
            return Err(CloudError::Refused {
                id: group.id.clone(),
                name: group.name().to_string(),
                reason,
            });
        }
    }
    let written = after != before;
    if written {
        graph
            .send_json(
                Method::PATCH,
                &format!("/beta/groups/{}", group.id),
                Some(&body),
            )
            .await
            .map_err(graph_err(format!(
                "setting writebackConfiguration of group {} ({})",
                group.name(),
                group.id
            )))?;
    }
    let change = GroupChange {
        id: group.id.clone(),
        display_name: group.name().to_string(),
        kind: kind.as_str(),
        before,
        after,
        written,
    };
    if json {
        print_json(&change);
    } else {
        println!(
            "{} ({}, {}): {} → {}{}",
            change.display_name,
            change.id,
            change.kind,
            config_text(&change.before),
            config_text(&change.after),
            if written {
                ""
            } else {
                " (already so, nothing written)"
            }
        );
    }
    for warning in enable_warnings(&group, &decision, enable) {
        eprintln!("warning: {warning}");
    }
    Ok(0)
}

/// The engine's decision for `group` once its writebackConfiguration is `after`: what the
/// next cycle will do with it (one rule, one place: these commands never re-implement
/// `decide`). Members are not read here, so the member limit is not weighed.
fn decision_after(
    group: &GroupRow,
    after: &WritebackConfiguration,
    engine: &EngineConfig,
) -> Decision {
    let mut cloud = group.cloud_group();
    cloud.writeback = after.clone();
    wb_engine::decide(&cloud, engine).0
}

/// Why enabling is refused: the engine finds the resulting configuration invalid (SPEC §3:
/// a security group written back as anything but universalSecurityGroup).
fn refusal(decision: &Decision, after: &WritebackConfiguration) -> Option<String> {
    match decision {
        Decision::Invalid { because } => Some(match &after.on_premises_group_type {
            Some(t) if because == SECURITY_TYPE_ERROR => format!("{because} (asked for {t})"),
            _ => because.clone(),
        }),
        _ => None,
    }
}

/// The writebackConfiguration `before` becomes with isEnabled = `enable` (and the type, when
/// given), and the PATCH body that makes it so.
fn target(
    before: &WritebackConfiguration,
    enable: bool,
    group_type: Option<OnPremGroupType>,
) -> (WritebackConfiguration, Value) {
    let mut after = before.clone();
    after.is_enabled = Some(enable);
    let mut body = json!({"isEnabled": enable});
    if let Some(t) = group_type {
        after.on_premises_group_type = Some(t.as_str().to_string());
        body["onPremisesGroupType"] = json!(t.as_str());
    }
    (after, json!({ "writebackConfiguration": body }))
}

/// What an administrator should know after enabling a group that still won't be written
/// back, in the engine's words.
fn enable_warnings(group: &GroupRow, decision: &Decision, enable: bool) -> Vec<String> {
    if !enable {
        return Vec::new();
    }
    match decision {
        Decision::SyncedFromAd => vec![format!(
            "{} is synced from AD: it is never written back",
            group.name()
        )],
        Decision::Unsupported { because } => vec![format!(
            "{} is a {} group: such groups are not written back (unsupported kind: {because})",
            group.name(),
            group.kind().as_str()
        )],
        Decision::NotEnabled { because } => vec![format!(
            "{} is still not written back: {because}",
            group.name()
        )],
        _ => Vec::new(),
    }
}

fn config_text(w: &WritebackConfiguration) -> String {
    let enabled = match w.is_enabled {
        Some(true) => "isEnabled=true",
        Some(false) => "isEnabled=false",
        None => "isEnabled=null",
    };
    match &w.on_premises_group_type {
        Some(t) => format!("{enabled} as {t}"),
        None => enabled.to_string(),
    }
}

#[derive(Debug, Serialize)]
struct GroupRef {
    id: String,
    display_name: String,
}

#[derive(Debug, Serialize)]
struct GroupFailure {
    id: String,
    display_name: String,
    error: String,
}

#[derive(Debug, Serialize)]
struct DisableM365Report {
    preview: bool,
    /// Microsoft 365 groups whose isEnabled was null: the ones this command changes.
    candidates: Vec<GroupRef>,
    disabled: usize,
    failed: Vec<GroupFailure>,
    /// Microsoft 365 groups left alone because isEnabled was already set.
    already_enabled: usize,
    already_disabled: usize,
    /// Set when Graph stopped answering or refused us half-way: the rest was not tried.
    aborted: Option<String>,
}

/// `writeback cloud disable-m365 [--yes]`.
async fn disable_m365(graph: &GraphClient, yes: bool, json: bool) -> Result<i32, CloudError> {
    let rows = read_groups(
        graph,
        "/beta/groups?$select=id,displayName,groupTypes,writebackConfiguration&$top=999",
    )
    .await?;
    let m365: Vec<&GroupRow> = rows
        .iter()
        .filter(|r| r.kind() == GroupKind::Microsoft365)
        .collect();
    let mut report = DisableM365Report {
        preview: !yes,
        candidates: Vec::new(),
        disabled: 0,
        failed: Vec::new(),
        already_enabled: m365.iter().filter(|r| r.is_enabled() == Some(true)).count(),
        already_disabled: m365
            .iter()
            .filter(|r| r.is_enabled() == Some(false))
            .count(),
        aborted: None,
    };
    let candidates: Vec<&GroupRow> = m365
        .into_iter()
        .filter(|r| r.is_enabled().is_none())
        .collect();
    report.candidates = candidates
        .iter()
        .map(|r| GroupRef {
            id: r.id.clone(),
            display_name: r.name().to_string(),
        })
        .collect();
    let mut code = 0;
    if yes {
        // One PATCH per group, sequentially: the client honours Retry-After, and Graph's write
        // budget (3,000 per 150 s per app and tenant) is shared with nothing else here.
        for group in &candidates {
            let sent = graph
                .send_json(
                    Method::PATCH,
                    &format!("/beta/groups/{}", group.id),
                    Some(&json!({"writebackConfiguration": {"isEnabled": false}})),
                )
                .await;
            match sent {
                Ok(_) => report.disabled += 1,
                // A 403 may be about this one group (e.g. a role-assignable group); anything
                // else of that family means no further PATCH can succeed.
                Err(e) if aborts_the_run(&e) => {
                    report.aborted = Some(format!(
                        "stopped at group {} ({}): {e}",
                        group.name(),
                        group.id
                    ));
                    code = 3;
                    break;
                }
                Err(e) => {
                    report.failed.push(GroupFailure {
                        id: group.id.clone(),
                        display_name: group.name().to_string(),
                        error: e.to_string(),
                    });
                    code = 1;
                }
            }
        }
    }
    if json {
        print_json(&report);
    } else {
        print_disable_m365(&report);
    }
    Ok(code)
}

fn aborts_the_run(e: &GraphError) -> bool {
    match e {
        GraphError::Unreachable { .. } => true,
        GraphError::Auth { status, .. } => *status != 403,
        _ => false,
    }
}

fn print_disable_m365(r: &DisableM365Report) {
    if r.preview {
        println!(
            "Preview: {} Microsoft 365 group(s) with isEnabled null would get isEnabled=false \
             (run again with --yes to write):",
            r.candidates.len()
        );
        for g in &r.candidates {
            println!("  {}  {}", g.id, g.display_name);
        }
    } else {
        println!(
            "{} of {} Microsoft 365 group(s) with isEnabled null now have isEnabled=false.",
            r.disabled,
            r.candidates.len()
        );
        for f in &r.failed {
            println!("  failed: {} ({}): {}", f.display_name, f.id, f.error);
        }
    }
    println!(
        "Left alone: {} already enabled, {} already disabled.",
        r.already_enabled, r.already_disabled
    );
    if let Some(a) = &r.aborted {
        println!("Graph stopped answering: {a}");
    }
}

#[derive(Debug, Serialize)]
struct DefaultM365Report {
    setting: &'static str,
    /// Before the command: the setting's value, or the template default when no setting existed.
    before: String,
    after: String,
    /// `created` (from the template), `updated`, or `unchanged`.
    action: &'static str,
    setting_id: Option<String>,
}

fn setting_values(setting: &Value, operation: &str) -> Result<Vec<(String, String)>, CloudError> {
    let answer = |message: String| CloudError::Answer {
        operation: operation.to_string(),
        message,
    };
    let items = setting
        .get("values")
        .and_then(Value::as_array)
        .ok_or_else(|| answer("a setting without \"values\"".to_string()))?;
    items
        .iter()
        .map(|v| {
            let name = v.get("name").and_then(Value::as_str);
            // Templates carry `defaultValue`, settings `value`.
            let value = v
                .get("value")
                .or_else(|| v.get("defaultValue"))
                .and_then(Value::as_str);
            match (name, value) {
                (Some(n), Some(val)) => Ok((n.to_string(), val.to_string())),
                _ => Err(answer(format!(
                    "a setting value without name or value: {v}"
                ))),
            }
        })
        .collect()
}

/// The values with `NewUnifiedGroupWritebackDefault` set to `value` (added when missing).
fn with_writeback_default(mut values: Vec<(String, String)>, value: &str) -> Vec<Value> {
    match values
        .iter_mut()
        .find(|(n, _)| n.eq_ignore_ascii_case(WRITEBACK_DEFAULT_SETTING))
    {
        Some(v) => v.1 = value.to_string(),
        None => values.push((WRITEBACK_DEFAULT_SETTING.to_string(), value.to_string())),
    }
    values
        .into_iter()
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect()
}

fn writeback_default(values: &[(String, String)]) -> Option<&str> {
    values
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(WRITEBACK_DEFAULT_SETTING))
        .map(|(_, v)| v.as_str())
}

/// The tenant's `Group.Unified` directory setting, if it has one.
async fn group_unified_setting(graph: &GraphClient) -> Result<Option<Value>, CloudError> {
    let list = graph
        .get_json("/v1.0/groupSettings")
        .await
        .map_err(graph_err(
            "reading the directory settings (GET /v1.0/groupSettings)",
        ))?;
    Ok(list
        .get("value")
        .and_then(Value::as_array)
        .ok_or_else(|| CloudError::Answer {
            operation: "GET /v1.0/groupSettings".to_string(),
            message: "no \"value\" array".to_string(),
        })?
        .iter()
        .find(|s| s.get("templateId").and_then(Value::as_str) == Some(GROUP_UNIFIED_TEMPLATE))
        .cloned())
}

/// `writeback cloud default-m365 off|on`.
async fn default_m365(graph: &GraphClient, state: Switch, json: bool) -> Result<i32, CloudError> {
    let wanted = state.value();
    let report = match group_unified_setting(graph).await? {
        Some(setting) => {
            let id = setting
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| CloudError::Answer {
                    operation: "GET /v1.0/groupSettings".to_string(),
                    message: "the Group.Unified setting has no id".to_string(),
                })?
                .to_string();
            let values = setting_values(&setting, "GET /v1.0/groupSettings")?;
            // A setting without the value behaves as the template's default, true.
            let before = writeback_default(&values).unwrap_or("true").to_string();
            let action = if before.eq_ignore_ascii_case(wanted) {
                "unchanged"
            } else {
                // `values` is one collection property: a PATCH replaces it whole, so it
                // carries every value, with only ours changed.
                let body = json!({"values": with_writeback_default(values, wanted)});
                graph
                    .send_json(
                        Method::PATCH,
                        &format!("/v1.0/groupSettings/{id}"),
                        Some(&body),
                    )
                    .await
                    .map_err(graph_err(format!(
                        "updating the Group.Unified directory setting {id}"
                    )))?;
                "updated"
            };
            DefaultM365Report {
                setting: WRITEBACK_DEFAULT_SETTING,
                before,
                after: wanted.to_string(),
                action,
                setting_id: Some(id),
            }
        }
        None => {
            let operation = format!("GET /v1.0/groupSettingTemplates/{GROUP_UNIFIED_TEMPLATE}");
            let template = graph
                .get_json(&format!(
                    "/v1.0/groupSettingTemplates/{GROUP_UNIFIED_TEMPLATE}"
                ))
                .await
                .map_err(graph_err("reading the Group.Unified setting template"))?;
            let defaults = setting_values(&template, &operation)?;
            let before = writeback_default(&defaults).unwrap_or("true").to_string();
            if before.eq_ignore_ascii_case(wanted) {
                // Nothing to create: without a setting Graph already applies this default.
                DefaultM365Report {
                    setting: WRITEBACK_DEFAULT_SETTING,
                    before,
                    after: wanted.to_string(),
                    action: "unchanged",
                    setting_id: None,
                }
            } else {
                let body = json!({
                    "templateId": GROUP_UNIFIED_TEMPLATE,
                    "values": with_writeback_default(defaults, wanted),
                });
                let created = graph
                    .send_json(Method::POST, "/v1.0/groupSettings", Some(&body))
                    .await
                    .map_err(graph_err(
                        "creating the Group.Unified directory setting from its template",
                    ))?;
                DefaultM365Report {
                    setting: WRITEBACK_DEFAULT_SETTING,
                    before,
                    after: wanted.to_string(),
                    action: "created",
                    setting_id: created
                        .get("id")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                }
            }
        }
    };
    if json {
        print_json(&report);
    } else {
        let how = match report.action {
            "created" => " (Group.Unified setting created from its template)",
            "unchanged" => " (already so, nothing written)",
            _ => "",
        };
        println!(
            "{}: {} → {}{how}. New Microsoft 365 groups get isEnabled={} unless given; \
             existing groups are not changed.",
            report.setting, report.before, report.after, report.after
        );
    }
    Ok(0)
}

// ---- writeback cloud status ----

/// The writebackConfiguration.isEnabled of the groups of one kind.
#[derive(Debug, Default, Serialize)]
struct KindCounts {
    groups: usize,
    enabled: usize,
    disabled: usize,
    /// isEnabled null: Microsoft's default decides (Microsoft 365: on, security: off).
    default: usize,
}

impl KindCounts {
    fn add(&mut self, is_enabled: Option<bool>) {
        self.groups += 1;
        match is_enabled {
            Some(true) => self.enabled += 1,
            Some(false) => self.disabled += 1,
            None => self.default += 1,
        }
    }
}

#[derive(Debug, Serialize)]
struct TenantDefault {
    /// `NewUnifiedGroupWritebackDefault` as Graph applies it: "true" or "false".
    value: String,
    /// `setting` (the Group.Unified setting has the value), `no setting` (no Group.Unified
    /// setting: Graph's default, true) or `not in the setting` (a setting without the value).
    source: &'static str,
}

#[derive(Debug, Default, Serialize)]
struct NextCycle {
    /// Groups the engine decides to write back (`wb_engine::decide` with the config's rules).
    written: usize,
    microsoft365: usize,
    security: usize,
    /// Written groups by the setting or rule that decided (the engine's words).
    because: BTreeMap<String, usize>,
    /// Groups the engine refuses (e.g. a security group with a distribution type).
    invalid: Vec<GroupFailure>,
}

#[derive(Debug, Serialize)]
struct CloudStatus {
    /// Cloud-mastered groups by kind; distribution lists and mail-enabled security groups
    /// are `unsupported` (never written back, whatever their setting).
    microsoft365: KindCounts,
    security: KindCounts,
    unsupported: KindCounts,
    /// Groups synced from AD: never written back, not counted by kind.
    synced_from_ad: usize,
    tenant_default: TenantDefault,
    next_cycle: NextCycle,
}

/// `writeback cloud status`.
async fn status(graph: &GraphClient, engine: &EngineConfig, json: bool) -> Result<i32, CloudError> {
    let rows = read_groups(
        graph,
        &format!("/beta/groups?$select={GROUP_SELECT}&$top=999"),
    )
    .await?;
    let setting = group_unified_setting(graph).await?;
    let tenant_default = match setting {
        None => TenantDefault {
            value: "true".to_string(),
            source: "no setting",
        },
        Some(setting) => {
            let values = setting_values(&setting, "GET /v1.0/groupSettings")?;
            match writeback_default(&values) {
                Some(v) => TenantDefault {
                    value: v.to_ascii_lowercase(),
                    source: "setting",
                },
                None => TenantDefault {
                    value: "true".to_string(),
                    source: "not in the setting",
                },
            }
        }
    };
    let mut report = CloudStatus {
        microsoft365: KindCounts::default(),
        security: KindCounts::default(),
        unsupported: KindCounts::default(),
        synced_from_ad: 0,
        tenant_default,
        next_cycle: NextCycle::default(),
    };
    for row in &rows {
        let group = row.cloud_group();
        let kind = group.kind();
        if group.is_synced_from_ad() {
            report.synced_from_ad += 1;
        } else {
            match kind {
                GroupKind::Microsoft365 => &mut report.microsoft365,
                GroupKind::Security => &mut report.security,
                GroupKind::Distribution | GroupKind::MailEnabledSecurity => &mut report.unsupported,
            }
            .add(row.is_enabled());
        }
        // One rule, one place: the engine decides, as the next cycle will.
        let next = &mut report.next_cycle;
        match wb_engine::decide(&group, engine).0 {
            Decision::Written { because, .. } => {
                next.written += 1;
                match kind {
                    GroupKind::Microsoft365 => next.microsoft365 += 1,
                    _ => next.security += 1,
                }
                *next.because.entry(because.into_owned()).or_default() += 1;
            }
            Decision::Invalid { because } => next.invalid.push(GroupFailure {
                id: row.id.clone(),
                display_name: row.name().to_string(),
                error: because,
            }),
            _ => {}
        }
    }
    if json {
        print_json(&report);
    } else {
        print_status(&report);
    }
    Ok(0)
}

fn print_status(r: &CloudStatus) {
    println!("kind            groups  enabled  disabled  default (isEnabled null)");
    for (name, c) in [
        ("Microsoft 365", &r.microsoft365),
        ("security", &r.security),
        ("unsupported", &r.unsupported),
    ] {
        println!(
            "{name:<15} {:>6}  {:>7}  {:>8}  {:>7}",
            c.groups, c.enabled, c.disabled, c.default
        );
    }
    println!(
        "(unsupported: distribution lists and mail-enabled security groups, never written back; \
         {} group(s) synced from AD not counted)",
        r.synced_from_ad
    );
    let source = match r.tenant_default.source {
        "setting" => String::new(),
        other => format!(" ({other})"),
    };
    println!(
        "Tenant default for new Microsoft 365 groups (NewUnifiedGroupWritebackDefault): {}{source}",
        r.tenant_default.value
    );
    let n = &r.next_cycle;
    println!(
        "Next cycle writes back {} group(s): {} Microsoft 365, {} security (member limits not \
         counted: see `writeback status`).",
        n.written, n.microsoft365, n.security
    );
    for (because, count) in &n.because {
        println!("  {count:>6}  {because}");
    }
    for f in &n.invalid {
        println!("  not written: {} ({}): {}", f.display_name, f.id, f.error);
    }
}

// ---- writeback cloud enable --match ----

/// Which groups `enable --match` enables, and how.
struct Selection {
    pattern: Regex,
    kind: Option<RuleKind>,
    group_type: Option<OnPremGroupType>,
}

#[derive(Debug, Serialize)]
struct BulkChange {
    id: String,
    display_name: String,
    kind: &'static str,
    before: WritebackConfiguration,
    after: WritebackConfiguration,
}

#[derive(Debug, Serialize)]
struct EnableMatchingReport {
    preview: bool,
    pattern: String,
    kind: Option<&'static str>,
    group_type: Option<&'static str>,
    /// Groups whose display name (and kind, with --kind) matches.
    matched: usize,
    /// Matching groups not yet as asked: the ones this command changes.
    candidates: Vec<BulkChange>,
    enabled: usize,
    failed: Vec<GroupFailure>,
    /// Matching groups already enabled (with the type asked): left alone.
    already_enabled: usize,
    /// Matching groups synced from AD: never touched.
    synced_from_ad: Vec<GroupRef>,
    /// Matching distribution lists and mail-enabled security groups: never written back,
    /// not touched.
    unsupported: Vec<GroupRef>,
    /// Set when Graph stopped answering or refused us half-way: the rest was not tried.
    aborted: Option<String>,
}

/// `writeback cloud enable --match REGEX [--kind K] [--type T] [--yes]`.
///
/// Resumable by construction: it reads every group's state first and changes only those not
/// yet as asked, so a run cut short is finished by running it again.
async fn enable_matching(
    graph: &GraphClient,
    engine: &EngineConfig,
    selection: &Selection,
    yes: bool,
    json: bool,
) -> Result<i32, CloudError> {
    let rows = read_groups(
        graph,
        &format!("/beta/groups?$select={GROUP_SELECT}&$top=999"),
    )
    .await?;
    // The same matching as a scope rule's name_regex and kind.
    let matcher = RuleMatch {
        kind: selection.kind,
        name_regex: Some(selection.pattern.clone()),
        ..Default::default()
    };
    let mut report = EnableMatchingReport {
        preview: !yes,
        pattern: selection.pattern.as_str().to_string(),
        kind: selection.kind.map(RuleKind::as_str),
        group_type: selection.group_type.map(OnPremGroupType::as_str),
        matched: 0,
        candidates: Vec::new(),
        enabled: 0,
        failed: Vec::new(),
        already_enabled: 0,
        synced_from_ad: Vec::new(),
        unsupported: Vec::new(),
        aborted: None,
    };
    let mut refused = Vec::new();
    let mut bodies = Vec::new();
    let mut matching: Vec<&GroupRow> = rows
        .iter()
        .filter(|r| matcher.matches(&r.cloud_group()))
        .collect();
    matching.sort_by(|a, b| a.name().cmp(b.name()).then_with(|| a.id.cmp(&b.id)));
    for row in matching {
        report.matched += 1;
        let kind = row.kind();
        let group_ref = GroupRef {
            id: row.id.clone(),
            display_name: row.name().to_string(),
        };
        let before = row.writeback_configuration.clone().unwrap_or_default();
        let (after, body) = target(&before, true, selection.group_type);
        let decision = decision_after(row, &after, engine);
        match &decision {
            Decision::SyncedFromAd => {
                report.synced_from_ad.push(group_ref);
                continue;
            }
            Decision::Unsupported { .. } => {
                report.unsupported.push(group_ref);
                continue;
            }
            _ => {}
        }
        if let Some(reason) = refusal(&decision, &after) {
            refused.push(format!("{} ({}): {reason}", row.name(), row.id));
            continue;
        }
        if after == before {
            report.already_enabled += 1;
            continue;
        }
        report.candidates.push(BulkChange {
            id: row.id.clone(),
            display_name: row.name().to_string(),
            kind: kind.as_str(),
            before,
            after,
        });
        bodies.push(body);
    }
    if !refused.is_empty() {
        return Err(CloudError::RefusedMany {
            reason: SECURITY_TYPE_ERROR.to_string(),
            groups: refused,
        });
    }
    let mut code = 0;
    if yes {
        let requests: Vec<BatchRequest> = report
            .candidates
            .iter()
            .zip(bodies)
            .map(|(c, body)| BatchRequest::patch(format!("/groups/{}", c.id), body))
            .collect();
        // One $batch at a time, so that what was done is known if Graph stops answering.
        for (chunk, changes) in requests
            .chunks(MAX_BATCH)
            .zip(report.candidates.chunks(MAX_BATCH))
        {
            let answers = match graph.batch("beta", chunk).await {
                Ok(a) => a,
                Err(e) => {
                    code = graph_exit_code(&e);
                    report.aborted = Some(format!(
                        "stopped before group {} ({}): {e}",
                        changes[0].display_name, changes[0].id
                    ));
                    break;
                }
            };
            for ((request, change), answer) in chunk.iter().zip(changes).zip(&answers) {
                if answer.is_success() {
                    report.enabled += 1;
                } else {
                    let error = answer.error(&request.method, &format!("/beta{}", request.url));
                    report.failed.push(GroupFailure {
                        id: change.id.clone(),
                        display_name: change.display_name.clone(),
                        error: error.to_string(),
                    });
                    code = code.max(1);
                }
            }
        }
    }
    if json {
        print_json(&report);
    } else {
        print_enable_matching(&report);
    }
    Ok(code)
}

fn print_enable_matching(r: &EnableMatchingReport) {
    let mut what = "isEnabled=true".to_string();
    if let Some(t) = r.group_type {
        what.push_str(&format!(" as {t}"));
    }
    let scope = match r.kind {
        Some(k) => format!("{k} groups matching --match {:?}", r.pattern),
        None => format!("groups matching --match {:?}", r.pattern),
    };
    if r.candidates.is_empty() {
        println!("Nothing to do: no {scope} needs {what}.");
    } else if r.preview {
        println!(
            "Preview: {} of {} {scope} would get {what} (run again with --yes to write):",
            r.candidates.len(),
            r.matched
        );
        for c in &r.candidates {
            println!(
                "  {}  {}  ({}, {})",
                c.id,
                c.display_name,
                c.kind,
                config_text(&c.before)
            );
        }
    } else {
        println!(
            "{} of {} {scope} now have {what}.",
            r.enabled,
            r.candidates.len()
        );
        for f in &r.failed {
            println!("  failed: {} ({}): {}", f.display_name, f.id, f.error);
        }
    }
    println!(
        "Left alone: {} already enabled, {} synced from AD, {} of an unsupported kind.",
        r.already_enabled,
        r.synced_from_ad.len(),
        r.unsupported.len()
    );
    if let Some(a) = &r.aborted {
        println!("Graph stopped answering: {a} (run the command again to finish: it changes only what is left)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_answers_and_foreign_links_exit_3_like_a_sync() {
        let decode = GraphError::Decode {
            url: "https://graph.example/beta/groups".into(),
            message: "a page without a value array".into(),
        };
        assert_eq!(graph_exit_code(&decode), 3);
        let config = GraphError::Config {
            message: "graph_url is not a URL".into(),
        };
        assert_eq!(graph_exit_code(&config), 2);
    }

    #[test]
    fn display_names_with_query_characters_are_percent_encoded() {
        assert_eq!(
            query_value("displayName eq 'R&D + Ops #1'"),
            "displayName%20eq%20%27R%26D%20%2B%20Ops%20%231%27"
        );
    }

    #[test]
    fn object_ids_are_told_from_display_names() {
        assert!(looks_like_object_id("0f9c7a3e-1b2c-4d5e-8f90-123456789abc"));
        assert!(!looks_like_object_id("Marketing Team"));
        assert!(!looks_like_object_id(
            "0f9c7a3e-1b2c-4d5e-8f90-123456789abz"
        ));
    }

    #[test]
    fn writeback_default_is_changed_and_other_values_are_kept() {
        let values = vec![
            ("EnableGroupCreation".to_string(), "false".to_string()),
            (WRITEBACK_DEFAULT_SETTING.to_string(), "true".to_string()),
        ];
        let out = with_writeback_default(values, "false");
        assert_eq!(
            out,
            vec![
                json!({"name": "EnableGroupCreation", "value": "false"}),
                json!({"name": WRITEBACK_DEFAULT_SETTING, "value": "false"}),
            ]
        );
    }

    #[test]
    fn writeback_default_is_added_when_the_setting_lacks_it() {
        let out = with_writeback_default(vec![], "false");
        assert_eq!(
            out,
            vec![json!({"name": WRITEBACK_DEFAULT_SETTING, "value": "false"})]
        );
    }

    #[test]
    fn template_defaults_are_read_as_values() {
        let template = json!({"values": [
            {"name": WRITEBACK_DEFAULT_SETTING, "type": "System.Boolean", "defaultValue": "true"}
        ]});
        let values = setting_values(&template, "GET template").expect("values");
        assert_eq!(writeback_default(&values), Some("true"));
    }

    #[test]
    fn a_group_without_writeback_configuration_reads_as_null() {
        let row: GroupRow = serde_json::from_value(json!({
            "id": "g1", "displayName": "Team", "groupTypes": ["Unified"]
        }))
        .expect("row");
        assert_eq!(row.is_enabled(), None);
        assert_eq!(row.kind(), GroupKind::Microsoft365);
    }

    const ID: &str = "0b9e3b43-6a55-4b53-9f56-5b4bd5f3d1a1";

    fn row(
        group_types: &[&str],
        mail: bool,
        security: bool,
        synced: bool,
        ty: Option<&str>,
    ) -> GroupRow {
        serde_json::from_value(json!({
            "id": ID, "displayName": "Team", "groupTypes": group_types,
            "mailEnabled": mail, "securityEnabled": security,
            "onPremisesSyncEnabled": synced.then_some(true),
            "writebackConfiguration": {"isEnabled": null, "onPremisesGroupType": ty},
        }))
        .expect("row")
    }

    #[test]
    fn enabling_is_refused_exactly_when_the_engine_finds_the_result_invalid() {
        let engine = EngineConfig::new("OU=G,DC=lab");
        let types = [
            None,
            Some(OnPremGroupType::UniversalSecurityGroup),
            Some(OnPremGroupType::UniversalDistributionGroup),
            Some(OnPremGroupType::UniversalMailEnabledSecurityGroup),
        ];
        let existing = [
            None,
            Some("universalDistributionGroup"),
            Some("universalSecurityGroup"),
            Some("bogus"),
        ];
        for (types_, mail, security) in [
            (&["Unified"][..], true, false),
            (&[][..], false, true),
            (&[][..], true, true),
            (&[][..], true, false),
            (&["DynamicMembership"][..], false, true),
        ] {
            for synced in [false, true] {
                for had in existing {
                    for asked in types {
                        let r = row(types_, mail, security, synced, had);
                        let before = r.writeback_configuration.clone().unwrap_or_default();
                        let (after, _) = target(&before, true, asked);
                        let decision = decision_after(&r, &after, &engine);
                        // The next cycle's own verdict on the group as it would be.
                        let mut cloud = r.cloud_group();
                        cloud.writeback = after.clone();
                        let cycle = wb_engine::decide(&cloud, &engine).0;
                        assert_eq!(decision, cycle);
                        assert_eq!(
                            refusal(&decision, &after).is_some(),
                            matches!(cycle, Decision::Invalid { .. }),
                            "{types_:?} mail={mail} security={security} synced={synced} had={had:?} asked={asked:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_security_group_asked_for_a_distribution_type_is_refused_in_the_engines_words() {
        let engine = EngineConfig::new("OU=G,DC=lab");
        let r = row(&[], false, true, false, None);
        let (after, _) = target(
            &WritebackConfiguration::default(),
            true,
            Some(OnPremGroupType::UniversalDistributionGroup),
        );
        let reason = refusal(&decision_after(&r, &after, &engine), &after).expect("refused");
        assert_eq!(
            reason,
            format!("{SECURITY_TYPE_ERROR} (asked for universalDistributionGroup)")
        );
        // A Microsoft 365 group may be a security group in AD.
        let m = row(&["Unified"], true, false, false, None);
        let (after, _) = target(
            &WritebackConfiguration::default(),
            true,
            Some(OnPremGroupType::UniversalSecurityGroup),
        );
        assert_eq!(refusal(&decision_after(&m, &after, &engine), &after), None);
    }

    #[test]
    fn enabling_a_group_the_engine_never_writes_warns_why() {
        let engine = EngineConfig::new("OU=G,DC=lab");
        let (after, _) = target(&WritebackConfiguration::default(), true, None);
        let synced = row(&[], false, true, true, None);
        let w = enable_warnings(&synced, &decision_after(&synced, &after, &engine), true);
        assert!(w[0].contains("synced from AD"), "{w:?}");
        let dl = row(&[], true, false, false, None);
        let w = enable_warnings(&dl, &decision_after(&dl, &after, &engine), true);
        assert!(w[0].contains("unsupported kind"), "{w:?}");
        let mut legacy = engine.clone();
        legacy.legacy_v1 = true;
        let sg = row(&[], false, true, false, None);
        let w = enable_warnings(&sg, &decision_after(&sg, &after, &legacy), true);
        assert!(w[0].contains("legacy_v1"), "{w:?}");
        assert!(enable_warnings(&sg, &decision_after(&sg, &after, &engine), true).is_empty());
    }
}
