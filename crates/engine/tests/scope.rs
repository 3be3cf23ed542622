//! Scope and type rules (SPEC §2–§3): which groups are written back, as what, where.

mod fixture;

use fixture::*;
use regex::Regex;
use wb_engine::{decide, EngineConfig, Rule, RuleKind, RuleMatch, SECURITY_TYPE_ERROR};
use wb_model::{CloudDeletion, CloudGroup, Decision, MemberKind, OnPremGroupType};

fn written_type(d: &Decision) -> Option<OnPremGroupType> {
    match d {
        Decision::Written { group_type, .. } => Some(*group_type),
        _ => None,
    }
}

fn because(d: &Decision) -> String {
    match d {
        Decision::Written { because, .. } => because.to_string(),
        Decision::NotEnabled { because }
        | Decision::Unsupported { because }
        | Decision::Invalid { because } => because.clone(),
        other => format!("{other:?}"),
    }
}

fn security_rule(enable: Option<bool>, ou: Option<&str>) -> Rule {
    Rule {
        matcher: RuleMatch {
            kind: Some(RuleKind::Security),
            name_prefix: Some("SG-".into()),
            ..Default::default()
        },
        enable,
        ou: ou.map(Into::into),
    }
}

#[test]
fn microsoft365_group_with_null_is_enabled_is_written_as_distribution() {
    let (d, rule) = decide(&m365(&gid(1), "Team"), &config());
    assert_eq!(
        written_type(&d),
        Some(OnPremGroupType::UniversalDistributionGroup)
    );
    assert_eq!(because(&d), "Microsoft 365 default (isEnabled null)");
    assert_eq!(rule, None);
}

#[test]
fn security_group_with_null_is_enabled_is_not_written() {
    let (d, _) = decide(&security(&gid(1), "SG-Finance"), &config());
    assert!(matches!(d, Decision::NotEnabled { .. }), "{d:?}");
}

#[test]
fn security_group_with_is_enabled_true_is_written_as_universal_security() {
    let g = enabled(security(&gid(1), "SG-Finance"), Some(true), None);
    let (d, _) = decide(&g, &config());
    assert_eq!(
        written_type(&d),
        Some(OnPremGroupType::UniversalSecurityGroup)
    );
    assert_eq!(because(&d), "writebackConfiguration.isEnabled = true");
}

#[test]
fn microsoft365_group_with_is_enabled_false_is_not_written() {
    let g = enabled(m365(&gid(1), "Team"), Some(false), None);
    let (d, _) = decide(&g, &config());
    assert_eq!(
        d,
        Decision::NotEnabled {
            because: "writebackConfiguration.isEnabled = false".into()
        }
    );
}

#[test]
fn rule_enables_security_groups_whose_is_enabled_is_null() {
    let mut c = config();
    c.rules.push(security_rule(Some(true), None));
    let (d, rule) = decide(&security(&gid(1), "SG-Finance"), &c);
    assert_eq!(
        written_type(&d),
        Some(OnPremGroupType::UniversalSecurityGroup)
    );
    assert_eq!(because(&d), "rule 1 (kind=security, name_prefix=SG-)");
    assert_eq!(rule, Some(0));
    let (other, rule) = decide(&security(&gid(2), "Finance"), &c);
    assert!(matches!(other, Decision::NotEnabled { .. }));
    assert_eq!(rule, None);
}

#[test]
fn explicit_false_wins_over_rule() {
    let mut c = config();
    c.rules.push(security_rule(Some(true), None));
    let g = enabled(security(&gid(1), "SG-Finance"), Some(false), None);
    let (d, rule) = decide(&g, &c);
    assert_eq!(
        d,
        Decision::NotEnabled {
            because: "writebackConfiguration.isEnabled = false".into()
        }
    );
    assert_eq!(rule, Some(0));
}

#[test]
fn rule_can_disable_microsoft365_groups_whose_is_enabled_is_null() {
    let mut c = config();
    c.rules.push(Rule {
        matcher: RuleMatch {
            kind: Some(RuleKind::Microsoft365),
            ..Default::default()
        },
        enable: Some(false),
        ou: None,
    });
    let (d, _) = decide(&m365(&gid(1), "Team"), &c);
    assert_eq!(
        d,
        Decision::NotEnabled {
            because: "rule 1 (kind=microsoft365)".into()
        }
    );
    let explicit = enabled(m365(&gid(2), "Team 2"), Some(true), None);
    assert!(
        decide(&explicit, &c).0.is_written(),
        "an explicit isEnabled = true is not overridden by a rule"
    );
}

#[test]
fn first_matching_rule_wins_and_chooses_the_ou() {
    let mut c = config();
    c.rules.push(security_rule(None, Some(SEC_OU)));
    c.rules.push(security_rule(
        Some(true),
        Some("OU=Never,DC=lab,DC=example,DC=test"),
    ));
    let g = enabled(security(&gid(1), "SG-Finance"), Some(true), None);
    let (d, rule) = decide(&g, &c);
    assert_eq!(rule, Some(0));
    match d {
        Decision::Written { ou, .. } => assert_eq!(&*ou, SEC_OU),
        other => panic!("{other:?}"),
    }
    // The first rule has no `enable`, so a null isEnabled keeps Microsoft's default.
    assert!(!decide(&security(&gid(2), "SG-Null"), &c).0.is_written());
}

#[test]
fn group_without_rule_goes_to_the_default_ou() {
    let (d, _) = decide(&m365(&gid(1), "Team"), &config());
    match d {
        Decision::Written { ou, .. } => assert_eq!(&*ou, OU),
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_condition_of_a_rule_must_hold() {
    let mut c = config();
    c.rules.push(Rule {
        matcher: RuleMatch {
            kind: Some(RuleKind::Security),
            name_regex: Some(Regex::new("^SG-.*-Finance$").expect("valid regex")),
            ids: vec![gid(1).to_uppercase(), gid(2)],
            ..Default::default()
        },
        enable: Some(true),
        ou: None,
    });
    assert!(
        decide(&security(&gid(1), "SG-NL-Finance"), &c)
            .0
            .is_written(),
        "ids compare case-insensitively"
    );
    assert!(
        !decide(&security(&gid(3), "SG-NL-Finance"), &c)
            .0
            .is_written(),
        "id not listed"
    );
    assert!(
        !decide(&security(&gid(2), "SG-NL-Sales"), &c).0.is_written(),
        "regex fails"
    );
}

#[test]
fn name_prefix_ignores_case() {
    let mut c = config();
    c.rules.push(security_rule(Some(true), None));
    assert!(decide(&security(&gid(1), "sg-finance"), &c).0.is_written());
    assert!(!decide(&security(&gid(1), "S"), &c).0.is_written());
}

#[test]
fn distribution_and_mail_enabled_security_groups_are_unsupported() {
    let mut dl = security(&gid(1), "DL");
    dl.mail_enabled = Some(true);
    dl.security_enabled = Some(false);
    let mut mesg = security(&gid(2), "MESG");
    mesg.mail_enabled = Some(true);
    for g in [dl, mesg] {
        let g = enabled(g, Some(true), None);
        assert!(
            matches!(decide(&g, &config()).0, Decision::Unsupported { .. }),
            "{}",
            g.name()
        );
    }
}

#[test]
fn group_synced_from_ad_is_never_written() {
    let mut g = enabled(security(&gid(1), "SG-Synced"), Some(true), None);
    g.on_premises_sync_enabled = Some(true);
    let mut c = config();
    c.legacy_v1 = true;
    assert_eq!(decide(&g, &config()).0, Decision::SyncedFromAd);
    let mut m = m365(&gid(2), "Synced M365");
    m.on_premises_sync_enabled = Some(true);
    assert_eq!(decide(&m, &c).0, Decision::SyncedFromAd);
}

#[test]
fn soft_deleted_group_is_not_written() {
    let mut g = m365(&gid(1), "Team");
    g.deleted = Some(CloudDeletion::SoftDeleted);
    assert_eq!(decide(&g, &config()).0, Decision::SoftDeleted);
}

#[test]
fn security_group_with_distribution_type_is_invalid() {
    for t in [
        "universalDistributionGroup",
        "universalMailEnabledSecurityGroup",
    ] {
        let g = enabled(security(&gid(1), "SG"), Some(true), Some(t));
        assert_eq!(
            decide(&g, &config()).0,
            Decision::Invalid {
                because: SECURITY_TYPE_ERROR.into()
            }
        );
    }
    assert_eq!(
        SECURITY_TYPE_ERROR,
        "security groups can only be written back as universalSecurityGroup"
    );
}

#[test]
fn unknown_group_type_is_invalid() {
    let g = enabled(
        m365(&gid(1), "Team"),
        Some(true),
        Some("globalSecurityGroup"),
    );
    assert!(
        matches!(decide(&g, &config()).0, Decision::Invalid { because } if because.contains("globalSecurityGroup"))
    );
}

#[test]
fn microsoft365_group_takes_the_type_it_is_given() {
    for t in [
        OnPremGroupType::UniversalDistributionGroup,
        OnPremGroupType::UniversalSecurityGroup,
        OnPremGroupType::UniversalMailEnabledSecurityGroup,
    ] {
        let g = enabled(m365(&gid(1), "Team"), None, Some(t.as_str()));
        assert_eq!(written_type(&decide(&g, &config()).0), Some(t));
    }
}

#[test]
fn group_over_the_member_limit_is_reported_with_its_count() {
    let members: Vec<String> = (0..4).map(uid).collect();
    let refs: Vec<(MemberKind, &str)> = members
        .iter()
        .map(|m| (MemberKind::User, m.as_str()))
        .collect();
    let mut c = config();
    c.m365_member_limit = 3;
    c.security_member_limit = 4;
    let team = with_members(m365(&gid(1), "Team"), &refs);
    assert_eq!(
        decide(&team, &c).0,
        Decision::OverLimit { count: 4, limit: 3 }
    );
    let sg = with_members(enabled(security(&gid(2), "SG"), Some(true), None), &refs);
    assert!(
        decide(&sg, &c).0.is_written(),
        "4 members are within a limit of 4"
    );
}

#[test]
fn default_member_limits_are_microsofts() {
    let c = EngineConfig::new(OU);
    assert_eq!(
        (c.m365_member_limit, c.security_member_limit),
        (50_000, 250_000)
    );
}

#[test]
fn legacy_v1_writes_every_microsoft365_group_as_distribution_and_no_security_group() {
    let mut c = config();
    c.legacy_v1 = true;
    let off = enabled(
        m365(&gid(1), "Team"),
        Some(false),
        Some("universalSecurityGroup"),
    );
    let (d, _) = decide(&off, &c);
    assert_eq!(
        written_type(&d),
        Some(OnPremGroupType::UniversalDistributionGroup)
    );
    assert_eq!(because(&d), "legacy_v1");
    let sg = enabled(security(&gid(2), "SG"), Some(true), None);
    assert!(matches!(decide(&sg, &c).0, Decision::NotEnabled { .. }));
}

#[test]
fn managed_ous_are_the_default_and_rule_ous_without_duplicates() {
    let mut c = config();
    c.rules.push(security_rule(Some(true), Some(SEC_OU)));
    c.rules
        .push(security_rule(Some(true), Some(&OU.to_uppercase())));
    c.rules
        .push(security_rule(Some(true), Some(&SEC_OU.replace(',', ", "))));
    assert_eq!(c.managed_ous(), vec![OU.to_string(), SEC_OU.to_string()]);
}

#[test]
fn groups_with_no_kind_flags_are_security_groups_for_rules() {
    let g = CloudGroup {
        id: gid(1),
        display_name: Some("SG-Bare".into()),
        ..Default::default()
    };
    let mut c = config();
    c.rules.push(security_rule(Some(true), None));
    assert!(decide(&g, &c).0.is_written());
}

#[test]
fn config_spellings_parse_and_unknown_ones_name_the_accepted_values() {
    assert_eq!(
        "display-name".parse::<wb_engine::Naming>(),
        Ok(wb_engine::Naming::DisplayName)
    );
    assert_eq!(
        "object-id".parse::<wb_engine::Naming>(),
        Ok(wb_engine::Naming::ObjectId)
    );
    assert_eq!("M365".parse::<RuleKind>(), Ok(RuleKind::Microsoft365));
    assert_eq!("security".parse::<RuleKind>(), Ok(RuleKind::Security));
    let err = "cn"
        .parse::<wb_engine::Naming>()
        .expect_err("cn is not a naming mode");
    assert_eq!(
        err.to_string(),
        "unknown naming 'cn': expected one of object-id, display-name"
    );
    assert!(
        "distribution".parse::<RuleKind>().is_err(),
        "distribution groups are never written back"
    );
}

/// A group synced from AD, converted with `isCloudManaged = true` (Group Source of
/// Authority): `onPremisesSyncEnabled` no longer true, its SID kept.
fn cloud_managed(id: &str, name: &str) -> CloudGroup {
    let mut g = security(id, name);
    g.on_premises_security_identifier = Some("S-1-5-21-1-2-3-4101".into());
    g.cloud_managed = Some(true);
    g
}

#[test]
fn a_cloud_managed_ad_group_is_written_back_by_default_as_universal_security() {
    let (d, _) = decide(&cloud_managed(&gid(1), "Share-Finance"), &config());
    assert_eq!(
        written_type(&d),
        Some(OnPremGroupType::UniversalSecurityGroup)
    );
    assert_eq!(because(&d), wb_engine::CLOUD_MANAGED);
}

#[test]
fn a_cloud_managed_ad_group_with_is_enabled_false_is_not_written() {
    let g = enabled(cloud_managed(&gid(1), "Share-Finance"), Some(false), None);
    let (d, _) = decide(&g, &config());
    assert!(matches!(d, Decision::NotEnabled { .. }), "{d:?}");
}

#[test]
fn a_group_still_synced_from_ad_or_not_converted_is_not_written() {
    let mut synced = cloud_managed(&gid(1), "Share-Finance");
    synced.on_premises_sync_enabled = Some(true);
    assert_eq!(decide(&synced, &config()).0, Decision::SyncedFromAd);
    let mut back = cloud_managed(&gid(2), "Share-Finance");
    back.cloud_managed = Some(false);
    assert!(matches!(
        decide(&back, &config()).0,
        Decision::NotEnabled { .. }
    ));
    let mut no_sid = cloud_managed(&gid(3), "Share-Finance");
    no_sid.on_premises_security_identifier = None;
    assert!(matches!(
        decide(&no_sid, &config()).0,
        Decision::NotEnabled { .. }
    ));
}
