//! The lab seeder: makes AD hold what a graph-sim tenant says was synced from it (OUs,
//! synced users and groups), then fills the tenant's onPremises* identities from AD.

use crate::directory::{add_group, add_ou, add_user, bind};
use serde_json::Value;
use std::collections::HashMap;

/// Where and as whom to seed.
#[derive(Debug, Clone)]
pub struct SeedTarget {
    pub url: String,
    pub bind_dn: String,
    pub password: String,
    pub base_dn: String,
}

/// What a seeding run did, for the operator.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SeedReport {
    pub users: usize,
    pub groups: usize,
}

/// The OUs of the lab story: people, AD-mastered groups, and writeback's target OU.
pub fn lab_ous(base_dn: &str) -> Vec<String> {
    [
        "OU=Lab",
        "OU=People,OU=Lab",
        "OU=Groups,OU=Lab",
        "OU=Writeback,OU=Lab",
        "OU=Groups,OU=Writeback,OU=Lab",
    ]
    .iter()
    .map(|rdns| format!("{rdns},{base_dn}"))
    .collect()
}

fn is_synced(obj: &Value) -> bool {
    obj.get("onPremisesSyncEnabled").and_then(Value::as_bool) == Some(true)
}

fn text<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// sAMAccountName from a display name: AD's forbidden characters become `_`, at most 20
/// characters (the pre-Windows 2000 limit the lab keeps for users and groups alike).
fn sam_from(name: &str) -> String {
    name.chars()
        .map(|c| {
            if "\"/\\[]:;|=,+*?<> ".contains(c) {
                '_'
            } else {
                c
            }
        })
        .take(20)
        .collect()
}

/// Seeds AD from `tenant` (graph-sim's tenant file) and returns the tenant with
/// `onPremisesSecurityIdentifier` (users, groups) and `onPremisesImmutableId` (users) filled.
/// Idempotent: objects that exist are read back.
pub async fn seed(mut tenant: Value, target: &SeedTarget) -> Result<(Value, SeedReport), String> {
    let mut ldap = bind(&target.url, &target.bind_dn, &target.password).await?;
    for ou in lab_ous(&target.base_dn) {
        add_ou(&mut ldap, &ou).await?;
    }
    let mut report = SeedReport::default();
    let people = format!("OU=People,OU=Lab,{}", target.base_dn);
    let groups_ou = format!("OU=Groups,OU=Lab,{}", target.base_dn);
    let mut user_dns: HashMap<String, String> = HashMap::new();

    if let Some(users) = tenant.get_mut("users").and_then(Value::as_array_mut) {
        for user in users.iter_mut().filter(|u| is_synced(u)) {
            let id = text(user, "id").unwrap_or_default().to_string();
            let display = text(user, "displayName").unwrap_or(&id).to_string();
            let sam = text(user, "onPremisesSamAccountName")
                .map(str::to_string)
                .unwrap_or_else(|| sam_from(&display));
            let dn = text(user, "onPremisesDistinguishedName")
                .map(str::to_string)
                .unwrap_or_else(|| format!("CN={},{people}", ldap3::dn_escape(display.as_str())));
            let made = add_user(&mut ldap, &dn, &sam, &display, &target.base_dn).await?;
            user["onPremisesSecurityIdentifier"] = Value::String(made.sid);
            user["onPremisesImmutableId"] = Value::String(made.immutable_id_base64);
            user["onPremisesDistinguishedName"] = Value::String(made.dn.clone());
            user_dns.insert(id, made.dn);
            report.users += 1;
        }
    }

    if let Some(groups) = tenant.get_mut("groups").and_then(Value::as_array_mut) {
        for group in groups.iter_mut().filter(|g| is_synced(g)) {
            let display = text(group, "displayName")
                .or_else(|| text(group, "id"))
                .unwrap_or("group")
                .to_string();
            let sam = text(group, "onPremisesSamAccountName")
                .map(str::to_string)
                .unwrap_or_else(|| sam_from(&display));
            let dn = format!("CN={},{groups_ou}", ldap3::dn_escape(display.as_str()));
            let scope = if display.starts_with("DL-") {
                wb_model_group_type::DOMAIN_LOCAL
            } else {
                wb_model_group_type::GLOBAL
            };
            let members: Vec<String> = group
                .get("members")
                .and_then(Value::as_array)
                .map(|ids| {
                    ids.iter()
                        .filter_map(Value::as_str)
                        .filter_map(|id| user_dns.get(id).cloned())
                        .collect()
                })
                .unwrap_or_default();
            let made = add_group(
                &mut ldap,
                &dn,
                &sam,
                scope | wb_model_group_type::SECURITY,
                &members,
            )
            .await?;
            group["onPremisesSecurityIdentifier"] = Value::String(made.sid);
            report.groups += 1;
        }
    }
    let _ = ldap.unbind().await;
    Ok((tenant, report))
}

/// AD groupType bits (the same values as wb-model's; kept here so the lab seeder does not
/// depend on the domain model).
mod wb_model_group_type {
    pub const GLOBAL: i32 = 0x2;
    pub const DOMAIN_LOCAL: i32 = 0x4;
    pub const SECURITY: i32 = i32::MIN;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sam_account_names_lose_forbidden_characters() {
        assert_eq!(sam_from("SG: Finance, NL"), "SG__Finance__NL");
        assert_eq!(sam_from("A-very-long-group-name-indeed").len(), 20);
    }

    #[test]
    fn lab_ous_are_created_parents_first() {
        let ous = lab_ous("DC=x");
        assert_eq!(ous[0], "OU=Lab,DC=x");
        assert_eq!(
            ous.last().map(String::as_str),
            Some("OU=Groups,OU=Writeback,OU=Lab,DC=x")
        );
    }
}
