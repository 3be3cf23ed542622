//! The engine's settings: naming mode, managed OUs, scope rules and limits. Plain data,
//! built by the CLI from the config file (SPEC §8); the engine never reads files itself.

use crate::naming::dn_key;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Arc;
use wb_model::{CloudGroup, GroupKind};

/// How the CN of a written-back group is formed (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Naming {
    /// `Group_<objectId>` (Microsoft's default).
    ObjectId,
    /// `Left(Trim(displayName), 51) + "_" + last 12 characters of objectId`.
    DisplayName,
}

/// A config value the engine does not know, with the values it accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{value}': expected one of {expected}")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl FromStr for Naming {
    type Err = UnknownValue;

    /// The config file's spelling: `object-id` or `display-name`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "object-id" => Ok(Naming::ObjectId),
            "display-name" => Ok(Naming::DisplayName),
            other => Err(UnknownValue {
                what: "naming",
                value: other.to_string(),
                expected: "object-id, display-name",
            }),
        }
    }
}

/// The group kinds a scope rule can select. Only the kinds writeback supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleKind {
    Microsoft365,
    Security,
}

impl RuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Microsoft365 => "microsoft365",
            RuleKind::Security => "security",
        }
    }

    fn matches(self, kind: GroupKind) -> bool {
        matches!(
            (self, kind),
            (RuleKind::Microsoft365, GroupKind::Microsoft365)
                | (RuleKind::Security, GroupKind::Security)
        )
    }
}

impl FromStr for RuleKind {
    type Err = UnknownValue;

    /// `microsoft365` (also `m365`, `unified`) or `security`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "microsoft365" | "microsoft-365" | "m365" | "unified" => Ok(RuleKind::Microsoft365),
            "security" => Ok(RuleKind::Security),
            _ => Err(UnknownValue {
                what: "rule kind",
                value: s.to_string(),
                expected: "microsoft365, security",
            }),
        }
    }
}

/// The conditions of a scope rule; every condition given must hold. A rule with no
/// condition matches every group.
#[derive(Debug, Clone, Default)]
pub struct RuleMatch {
    pub kind: Option<RuleKind>,
    /// Display-name prefix, compared case-insensitively (as Entra's `startsWith` does).
    pub name_prefix: Option<String>,
    /// Regular expression searched in the display name, as written (use `(?i)` to ignore case).
    pub name_regex: Option<Regex>,
    /// Object ids (case-insensitive); empty means no id condition.
    pub ids: Vec<String>,
}

impl RuleMatch {
    /// Whether every condition of this rule holds for `group`.
    pub fn matches(&self, group: &CloudGroup) -> bool {
        let name = group.name();
        self.kind.is_none_or(|k| k.matches(group.kind()))
            && self
                .name_prefix
                .as_deref()
                .is_none_or(|p| starts_with_ignore_case(name, p))
            && self.name_regex.as_ref().is_none_or(|r| r.is_match(name))
            && (self.ids.is_empty()
                || self
                    .ids
                    .iter()
                    .any(|id| id.trim().eq_ignore_ascii_case(&group.id)))
    }

    /// The conditions as an administrator wrote them: `kind=security, name_prefix=SG-`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(k) = self.kind {
            parts.push(format!("kind={}", k.as_str()));
        }
        if let Some(p) = &self.name_prefix {
            parts.push(format!("name_prefix={p}"));
        }
        if let Some(r) = &self.name_regex {
            parts.push(format!("name_regex={}", r.as_str()));
        }
        if !self.ids.is_empty() {
            parts.push(format!("ids={}", self.ids.join("|")));
        }
        if parts.is_empty() {
            "all groups".to_string()
        } else {
            parts.join(", ")
        }
    }
}

fn starts_with_ignore_case(name: &str, prefix: &str) -> bool {
    let mut name = name.chars().flat_map(char::to_lowercase);
    prefix
        .chars()
        .flat_map(char::to_lowercase)
        .all(|p| name.next() == Some(p))
}

/// A scope rule (SPEC §2, §3 **[beyond]**): the first rule whose conditions hold decides
/// for a group — its `enable` (for groups whose isEnabled is null) and its `ou`.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    pub matcher: RuleMatch,
    /// `Some(true)` enables groups whose isEnabled is null, `Some(false)` disables them,
    /// `None` leaves the Microsoft default (the rule then only places groups in `ou`).
    pub enable: Option<bool>,
    /// The OU for the groups this rule matches; `None` means the default OU.
    pub ou: Option<Arc<str>>,
}

/// Everything the rules depend on.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub naming: Naming,
    /// DN of the OU where written-back groups live unless a rule says otherwise.
    /// Shared with the decisions that place groups there.
    pub default_ou: Arc<str>,
    /// Scope rules, in the order of the config file; the first match wins.
    pub rules: Vec<Rule>,
    pub delete_out_of_scope: bool,
    pub legacy_v1: bool,
    pub write_owners: bool,
    pub m365_member_limit: usize,
    pub security_member_limit: usize,
}

/// Microsoft's member limit for Microsoft 365 groups written back.
pub const M365_MEMBER_LIMIT: usize = 50_000;
/// Microsoft's member limit for security groups written back.
pub const SECURITY_MEMBER_LIMIT: usize = 250_000;

impl EngineConfig {
    /// Microsoft's defaults: object-id naming, no rules, keep out-of-scope groups, V2 mode,
    /// no owners, the documented member limits.
    pub fn new(default_ou: impl Into<Arc<str>>) -> Self {
        EngineConfig {
            naming: Naming::ObjectId,
            default_ou: default_ou.into(),
            rules: Vec::new(),
            delete_out_of_scope: false,
            legacy_v1: false,
            write_owners: false,
            m365_member_limit: M365_MEMBER_LIMIT,
            security_member_limit: SECURITY_MEMBER_LIMIT,
        }
    }

    /// The default OU and every rule's OU, in config order, without duplicates (DNs
    /// compared as AD compares them: case-insensitively) and without empty ones.
    pub fn managed_ous(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        std::iter::once(&*self.default_ou)
            .chain(self.rules.iter().filter_map(|r| r.ou.as_deref()))
            .map(str::trim)
            .filter(|ou| !ou.is_empty() && seen.insert(dn_key(ou)))
            .map(str::to_string)
            .collect()
    }

    /// Index of the first rule whose conditions hold for `group`.
    pub fn first_matching_rule(&self, group: &CloudGroup) -> Option<usize> {
        self.rules.iter().position(|r| r.matcher.matches(group))
    }
}
