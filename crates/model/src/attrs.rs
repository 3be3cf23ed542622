//! The attributes of an AD group that writeback manages (SPEC §4): one typed list, read by
//! the connector, planned by the engine, enforced by the ownership guard, followed by the AD
//! image and the drift report. Nothing else on a group is ever written (besides `member`,
//! written as incremental adds and deletes, and the `objectClass` and `cn` of a create).

use crate::{AdGroup, AdSchema};

/// One attribute writeback writes on the groups it owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupAttr {
    SamAccountName,
    GroupType,
    /// The anchor (`Group_<objectId>`) on every schema.
    AdminDescription,
    /// The anchor again, where the schema has it (Windows Server 2016 and later).
    ExternalDirectoryObjectId,
    DisplayName,
    Description,
    Mail,
    MailNickname,
    ProxyAddresses,
    /// The first owner that resolves to an AD user (`write_owners`).
    ManagedBy,
}

impl GroupAttr {
    /// Every managed attribute.
    pub const ALL: [GroupAttr; 10] = [
        GroupAttr::SamAccountName,
        GroupAttr::GroupType,
        GroupAttr::AdminDescription,
        GroupAttr::ExternalDirectoryObjectId,
        GroupAttr::DisplayName,
        GroupAttr::Description,
        GroupAttr::Mail,
        GroupAttr::MailNickname,
        GroupAttr::ProxyAddresses,
        GroupAttr::ManagedBy,
    ];

    /// The LDAP name, as AD spells it.
    pub const fn name(self) -> &'static str {
        match self {
            GroupAttr::SamAccountName => "sAMAccountName",
            GroupAttr::GroupType => "groupType",
            GroupAttr::AdminDescription => "adminDescription",
            GroupAttr::ExternalDirectoryObjectId => "msDS-ExternalDirectoryObjectId",
            GroupAttr::DisplayName => "displayName",
            GroupAttr::Description => "description",
            GroupAttr::Mail => "mail",
            GroupAttr::MailNickname => "mailNickname",
            GroupAttr::ProxyAddresses => "proxyAddresses",
            GroupAttr::ManagedBy => "managedBy",
        }
    }

    /// The managed attribute `name` denotes (LDAP names are case-insensitive), or `None`
    /// for any attribute writeback does not manage.
    pub fn parse(name: &str) -> Option<GroupAttr> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The anchor attributes: only ever set to the anchor of the group they serve.
    pub fn is_anchor(self) -> bool {
        matches!(
            self,
            GroupAttr::AdminDescription | GroupAttr::ExternalDirectoryObjectId
        )
    }

    /// Whether the domain's schema has this attribute on groups.
    pub fn in_schema(self, schema: &AdSchema) -> bool {
        match self {
            GroupAttr::ExternalDirectoryObjectId => schema.external_directory_object_id,
            GroupAttr::Mail => schema.mail,
            GroupAttr::MailNickname => schema.mail_nickname,
            GroupAttr::ProxyAddresses => schema.proxy_addresses,
            _ => true,
        }
    }

    /// The attribute's values on `group` as read from AD (empty strings are no value).
    pub fn values(self, group: &AdGroup) -> Vec<String> {
        let one = |v: &Option<String>| -> Vec<String> {
            v.iter().filter(|v| !v.is_empty()).cloned().collect()
        };
        match self {
            GroupAttr::SamAccountName => one(&group.sam_account_name),
            GroupAttr::GroupType => vec![group.group_type.to_string()],
            GroupAttr::AdminDescription => one(&group.admin_description),
            GroupAttr::ExternalDirectoryObjectId => one(&group.external_directory_object_id),
            GroupAttr::DisplayName => one(&group.display_name),
            GroupAttr::Description => one(&group.description),
            GroupAttr::Mail => one(&group.mail),
            GroupAttr::MailNickname => one(&group.mail_nickname),
            GroupAttr::ProxyAddresses => group.proxy_addresses.clone(),
            GroupAttr::ManagedBy => one(&group.managed_by),
        }
    }

    /// Sets the attribute on `group` as a modify that AD acknowledged left it.
    pub fn set(self, group: &mut AdGroup, values: &[String]) {
        let one = values.first().cloned();
        match self {
            GroupAttr::SamAccountName => group.sam_account_name = one,
            GroupAttr::GroupType => {
                group.group_type = one.and_then(|v| v.parse().ok()).unwrap_or(group.group_type)
            }
            GroupAttr::AdminDescription => group.admin_description = one,
            GroupAttr::ExternalDirectoryObjectId => group.external_directory_object_id = one,
            GroupAttr::DisplayName => group.display_name = one,
            GroupAttr::Description => group.description = one,
            GroupAttr::Mail => group.mail = one,
            GroupAttr::MailNickname => group.mail_nickname = one,
            GroupAttr::ProxyAddresses => group.proxy_addresses = values.to_vec(),
            GroupAttr::ManagedBy => group.managed_by = one,
        }
    }
}

impl std::fmt::Display for GroupAttr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_attribute_parses_back_from_its_name_in_any_case() {
        for a in GroupAttr::ALL {
            assert_eq!(GroupAttr::parse(a.name()), Some(a));
            assert_eq!(GroupAttr::parse(&a.name().to_uppercase()), Some(a));
        }
        for other in [
            "member",
            "objectClass",
            "cn",
            "unicodePwd",
            "nTSecurityDescriptor",
            "",
        ] {
            assert_eq!(GroupAttr::parse(other), None, "{other}");
        }
    }

    #[test]
    fn values_read_back_what_set_wrote() {
        for a in GroupAttr::ALL {
            let mut g = AdGroup::default();
            let v = if a == GroupAttr::GroupType { "8" } else { "x" };
            a.set(&mut g, &[v.to_string()]);
            assert_eq!(a.values(&g), vec![v.to_string()], "{a}");
        }
    }
}
