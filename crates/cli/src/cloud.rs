//! `writeback cloud …`: the cloud-side admin commands of SPEC §7 — writebackConfiguration of
//! one group or of every Microsoft 365 group, and the tenant default for new Microsoft 365 groups.

use crate::config::Config;
use crate::cycle::graph_client;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use wb_engine::SECURITY_TYPE_ERROR;
use wb_graph::{GraphClient, GraphError};
use wb_model::{CloudGroup, GroupKind, OnPremGroupType, WritebackConfiguration};

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
    /// Enable writeback of one group (isEnabled=true), optionally choosing its AD type.
    Enable {
        /// Object id or exact display name of the group.
        group: String,
        /// The AD group type. Security groups can only be universalSecurityGroup.
        #[arg(long = "type", value_enum, value_name = "TYPE")]
        group_type: Option<TypeArg>,
    },
    /// Disable writeback of one group (isEnabled=false). Its AD group is kept and listed as
    /// orphaned (deleted instead when delete_out_of_scope = true).
    Disable {
        /// Object id or exact display name of the group.
        group: String,
    },
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
            | CloudError::Refused { .. } => 2,
            CloudError::Answer { .. } => 1,
        }
    }
}

fn graph_exit_code(e: &GraphError) -> i32 {
    if e.is_unreachable_or_refused() {
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
    fn kind(&self) -> GroupKind {
        CloudGroup {
            group_types: self.group_types.clone().unwrap_or_default(),
            mail_enabled: self.mail_enabled,
            security_enabled: self.security_enabled,
            ..Default::default()
        }
        .kind()
    }

    fn name(&self) -> &str {
        self.display_name.as_deref().unwrap_or("")
    }

    fn is_enabled(&self) -> Option<bool> {
        self.writeback_configuration
            .as_ref()
            .and_then(|w| w.is_enabled)
    }

    fn group_type(&self) -> Option<&str> {
        self.writeback_configuration
            .as_ref()
            .and_then(|w| w.on_premises_group_type.as_deref())
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
        CloudCommand::Enable { group, group_type } => {
            set_enabled(&graph, &group, true, group_type.map(Into::into), json).await
        }
        CloudCommand::Disable { group } => set_enabled(&graph, &group, false, None, json).await,
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

/// Reads a plain Graph collection from `first`, following `@odata.nextLink` exactly as given.
async fn read_groups(graph: &GraphClient, first: &str) -> Result<Vec<GroupRow>, CloudError> {
    let mut rows = Vec::new();
    let mut url = first.to_string();
    loop {
        let page = graph
            .get_json(&url)
            .await
            .map_err(graph_err("reading groups"))?;
        let answer = |message: String| CloudError::Answer {
            operation: format!("GET {url}"),
            message,
        };
        let items = page
            .get("value")
            .and_then(Value::as_array)
            .ok_or_else(|| answer("a page without \"value\"".to_string()))?;
        for item in items {
            let row: GroupRow = serde_json::from_value(item.clone())
                .map_err(|e| answer(format!("a group that is not a group: {e}")))?;
            rows.push(row);
        }
        match page.get("@odata.nextLink").and_then(Value::as_str) {
            Some(next) if next == url => {
                return Err(answer(
                    "@odata.nextLink points to the same page".to_string(),
                ))
            }
            Some(next) => url = next.to_string(),
            None => return Ok(rows),
        }
    }
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
    query: &str,
    enable: bool,
    group_type: Option<OnPremGroupType>,
    json: bool,
) -> Result<i32, CloudError> {
    let group = find_group(graph, query).await?;
    let kind = group.kind();
    let refuse = |reason: String| CloudError::Refused {
        id: group.id.clone(),
        name: group.name().to_string(),
        reason,
    };
    if enable && kind == GroupKind::Security {
        // The type the group would end with: the one given, else the one it already has.
        let resulting = group_type
            .map(|t| t.as_str().to_string())
            .or_else(|| group.group_type().map(str::to_string));
        if let Some(t) = resulting {
            if t != OnPremGroupType::UniversalSecurityGroup.as_str() {
                return Err(refuse(format!("{SECURITY_TYPE_ERROR} (asked for {t})")));
            }
        }
    }
    let before = group.writeback_configuration.clone().unwrap_or_default();
    let mut after = before.clone();
    after.is_enabled = Some(enable);
    let mut body = json!({"isEnabled": enable});
    if let Some(t) = group_type {
        after.on_premises_group_type = Some(t.as_str().to_string());
        body["onPremisesGroupType"] = json!(t.as_str());
    }
    let written = after != before;
    if written {
        graph
            .send_json(
                Method::PATCH,
                &format!("/beta/groups/{}", group.id),
                Some(&json!({ "writebackConfiguration": body })),
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
    for warning in enable_warnings(&group, kind, enable) {
        eprintln!("warning: {warning}");
    }
    Ok(0)
}

/// What an administrator should know after enabling a group that still won't be written back.
fn enable_warnings(group: &GroupRow, kind: GroupKind, enable: bool) -> Vec<String> {
    let mut out = Vec::new();
    if !enable {
        return out;
    }
    if group.on_premises_sync_enabled == Some(true) {
        out.push(format!(
            "{} is synced from AD: it is never written back",
            group.name()
        ));
    }
    if matches!(
        kind,
        GroupKind::Distribution | GroupKind::MailEnabledSecurity
    ) {
        out.push(format!(
            "{} is a {} group: such groups are not written back (unsupported kind)",
            group.name(),
            kind.as_str()
        ));
    }
    out
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

/// `writeback cloud default-m365 off|on`.
async fn default_m365(graph: &GraphClient, state: Switch, json: bool) -> Result<i32, CloudError> {
    let wanted = state.value();
    let list = graph
        .get_json("/v1.0/groupSettings")
        .await
        .map_err(graph_err(
            "reading the directory settings (GET /v1.0/groupSettings)",
        ))?;
    let existing = list
        .get("value")
        .and_then(Value::as_array)
        .ok_or_else(|| CloudError::Answer {
            operation: "GET /v1.0/groupSettings".to_string(),
            message: "no \"value\" array".to_string(),
        })?
        .iter()
        .find(|s| s.get("templateId").and_then(Value::as_str) == Some(GROUP_UNIFIED_TEMPLATE))
        .cloned();
    let report = match existing {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
