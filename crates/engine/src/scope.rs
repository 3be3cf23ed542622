//! Scope and type (SPEC §2–§3): whether a cloud group is written back, as which AD group
//! type, into which OU, and which setting or rule decided it.

use crate::config::EngineConfig;
use std::borrow::Cow;
use wb_model::{CloudDeletion, CloudGroup, Decision, GroupKind, OnPremGroupType};

/// The text of Microsoft's per-group error for a security group with another type.
pub const SECURITY_TYPE_ERROR: &str =
    "security groups can only be written back as universalSecurityGroup";

/// Why a cloud-managed AD group (Group Source of Authority) is written back by default.
pub const CLOUD_MANAGED: &str =
    "cloud-managed AD group (onPremisesSyncBehavior.isCloudManaged = true): written back onto its AD group";

/// Decides whether `group` is written back, and returns the index (0-based, into
/// `config.rules`) of the first rule whose conditions hold, if any.
///
/// Order of the checks: an object id that is not a GUID (invalid: it would be the anchor
/// and part of the CN) → synced from AD → soft-deleted → kind (distribution and
/// mail-enabled security are unsupported) → enablement → type → member limit.
/// Enablement: an explicit `isEnabled` (true or false) always wins; when it is null, the
/// first matching rule with an `enable` decides; otherwise Microsoft's default holds
/// (Microsoft 365: enabled, security: not) — except for a cloud-managed AD group (synced
/// from AD, converted with `isCloudManaged = true`, naming its AD group by SID), enabled
/// by default: writeback takes over its AD group in place. `because` names rules 1-based, as an
/// administrator counts them in the config file.
pub fn decide(group: &CloudGroup, config: &EngineConfig) -> (Decision, Option<usize>) {
    let rule = config.first_matching_rule(group);
    (decide_with(group, config, rule), rule)
}

fn decide_with(group: &CloudGroup, config: &EngineConfig, rule: Option<usize>) -> Decision {
    if !is_guid(&group.id) {
        return Decision::Invalid {
            because: format!(
                "object id {:?} is not a GUID: nothing is written for this group",
                group.id
            ),
        };
    }
    if group.is_synced_from_ad() {
        return Decision::SyncedFromAd;
    }
    if group.deleted == Some(CloudDeletion::SoftDeleted) {
        return Decision::SoftDeleted;
    }
    let kind = group.kind();
    match kind {
        GroupKind::Distribution => {
            return Decision::Unsupported {
                because: "distribution groups mastered in Exchange Online are not written back"
                    .into(),
            }
        }
        GroupKind::MailEnabledSecurity => {
            return Decision::Unsupported {
                because:
                    "mail-enabled security groups mastered in Exchange Online are not written back"
                        .into(),
            }
        }
        GroupKind::Microsoft365 | GroupKind::Security => {}
    }
    let ou = rule
        .and_then(|i| config.rules[i].ou.clone())
        .unwrap_or_else(|| config.default_ou.clone());

    if config.legacy_v1 {
        if kind == GroupKind::Security {
            return Decision::NotEnabled {
                because: "legacy_v1: security groups are not written back".into(),
            };
        }
        return within_limit(group, config, kind).unwrap_or(Decision::Written {
            group_type: OnPremGroupType::UniversalDistributionGroup,
            ou,
            because: Cow::Borrowed("legacy_v1"),
        });
    }

    let because = match (
        group.writeback.is_enabled,
        rule.and_then(|i| config.rules[i].enable.map(|e| (i, e))),
    ) {
        // A group converted to cloud management that names its AD group is written back
        // by default (onto that AD group): its AD object would otherwise go stale.
        (None, None) if group.is_cloud_managed_ad_group() => Cow::Borrowed(CLOUD_MANAGED),
        (Some(false), _) => {
            return Decision::NotEnabled {
                because: "writebackConfiguration.isEnabled = false".into(),
            }
        }
        (Some(true), _) => Cow::Borrowed("writebackConfiguration.isEnabled = true"),
        (None, Some((i, true))) => Cow::Owned(rule_text(config, i)),
        (None, Some((i, false))) => {
            return Decision::NotEnabled {
                because: rule_text(config, i),
            }
        }
        (None, None) if kind == GroupKind::Microsoft365 => {
            Cow::Borrowed("Microsoft 365 default (isEnabled null)")
        }
        (None, None) => return Decision::NotEnabled {
            because:
                "security default (isEnabled null): security groups need isEnabled = true or a rule"
                    .into(),
        },
    };

    let group_type = match group.writeback.on_premises_group_type.as_deref() {
        None => match kind {
            GroupKind::Microsoft365 => OnPremGroupType::UniversalDistributionGroup,
            _ => OnPremGroupType::UniversalSecurityGroup,
        },
        Some(text) => match OnPremGroupType::parse(text.trim()) {
            None => {
                return Decision::Invalid {
                    because: format!("unknown writebackConfiguration.onPremisesGroupType '{text}'"),
                }
            }
            Some(t)
                if kind == GroupKind::Security && t != OnPremGroupType::UniversalSecurityGroup =>
            {
                return Decision::Invalid {
                    because: SECURITY_TYPE_ERROR.into(),
                }
            }
            Some(t) => t,
        },
    };
    within_limit(group, config, kind).unwrap_or(Decision::Written {
        group_type,
        ou,
        because,
    })
}

/// Whether `id` is a GUID in its text form (`8-4-4-4-12` hex digits), as every Entra
/// object id is. Anything else in an id (commas, `=`, a path, a shorter string) would end
/// up in the anchor, the CN and the sAMAccountName.
pub fn is_guid(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `Some(OverLimit)` when the group has more cloud members than its kind allows.
fn within_limit(group: &CloudGroup, config: &EngineConfig, kind: GroupKind) -> Option<Decision> {
    let limit = match kind {
        GroupKind::Microsoft365 => config.m365_member_limit,
        _ => config.security_member_limit,
    };
    let count = group.members.len();
    (count > limit).then_some(Decision::OverLimit { count, limit })
}

/// "rule 2 (kind=security, name_prefix=SG-)".
pub(crate) fn rule_text(config: &EngineConfig, index: usize) -> String {
    format!(
        "rule {} ({})",
        index + 1,
        config.rules[index].matcher.describe()
    )
}
