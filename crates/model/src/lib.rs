//! Domain types shared by every part of writeback: the cloud image of a tenant (groups,
//! users, members), the AD image of the managed OUs, and the `Plan` the engine produces.
//!
//! This crate knows no protocol and does no I/O. Edges (Graph client, LDAP connector,
//! state store) turn wire data into these types once; the engine reasons only on them.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub mod attrs;
pub mod drift;
pub mod plan;
pub use attrs::GroupAttr;
pub use drift::{DriftEvent, DriftKind};
pub use plan::*;

/// A Graph object id (a GUID in its canonical lower-case text form).
pub type ObjectId = String;

/// One shared copy of each distinct string: the readers of AD values and Graph ids give
/// every repeated value (a user's DN in a thousand groups' `member`, a user's id in a
/// thousand groups' members) one allocation, held by all its places.
#[derive(Debug, Default)]
pub struct Interner(rustc_hash::FxHashSet<Arc<str>>);

impl Interner {
    /// The shared copy of `s`, made on first sight.
    pub fn intern(&mut self, s: &str) -> Arc<str> {
        match self.0.get(s) {
            Some(shared) => shared.clone(),
            None => self.share(Arc::from(s)),
        }
    }

    /// The shared copy of `s`; `s` itself becomes it on first sight.
    pub fn share(&mut self, s: Arc<str>) -> Arc<str> {
        match self.0.get(&*s) {
            Some(shared) => shared.clone(),
            None => {
                self.0.insert(s.clone());
                s
            }
        }
    }

    /// Every member id of `refs` as its shared copy.
    pub fn share_refs(&mut self, refs: &mut [MemberRef]) {
        for r in refs {
            r.id = self.share(std::mem::take(&mut r.id));
        }
    }
}

/// Gives each distinct member DN of `groups` one shared copy (what the AD reader does;
/// groups read back from the store have one copy per membership).
pub fn share_member_dns(groups: &mut [AdGroup]) {
    let mut dns = Interner::default();
    for g in groups {
        for m in &mut g.members {
            *m = dns.share(std::mem::take(m));
        }
    }
}

/// The kind of directory object a cloud member is, from its `@odata.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MemberKind {
    User,
    Group,
    Device,
    OrgContact,
    ServicePrincipal,
    Other,
}

impl MemberKind {
    /// From Graph's `@odata.type` (`#microsoft.graph.user`, ...).
    pub fn from_odata_type(t: &str) -> Self {
        match t
            .trim_start_matches('#')
            .trim_start_matches("microsoft.graph.")
        {
            "user" => MemberKind::User,
            "group" => MemberKind::Group,
            "device" => MemberKind::Device,
            "orgContact" => MemberKind::OrgContact,
            "servicePrincipal" => MemberKind::ServicePrincipal,
            _ => MemberKind::Other,
        }
    }

    pub fn odata_type(self) -> &'static str {
        match self {
            MemberKind::User => "#microsoft.graph.user",
            MemberKind::Group => "#microsoft.graph.group",
            MemberKind::Device => "#microsoft.graph.device",
            MemberKind::OrgContact => "#microsoft.graph.orgContact",
            MemberKind::ServicePrincipal => "#microsoft.graph.servicePrincipal",
            MemberKind::Other => "#microsoft.graph.directoryObject",
        }
    }
}

/// A reference to a member (or owner) of a cloud group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MemberRef {
    pub kind: MemberKind,
    /// Shared ([`Interner`]): a user in a thousand groups is one id in memory.
    pub id: Arc<str>,
}

/// `writebackConfiguration` of a group (beta only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WritebackConfiguration {
    pub is_enabled: Option<bool>,
    /// Raw text as Graph gives it; parsed by the engine (an unknown value is a per-group error).
    pub on_premises_group_type: Option<String>,
}

/// The on-premises group type a group is written back as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OnPremGroupType {
    UniversalDistributionGroup,
    UniversalSecurityGroup,
    UniversalMailEnabledSecurityGroup,
}

impl OnPremGroupType {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "universalDistributionGroup" => Some(Self::UniversalDistributionGroup),
            "universalSecurityGroup" => Some(Self::UniversalSecurityGroup),
            "universalMailEnabledSecurityGroup" => Some(Self::UniversalMailEnabledSecurityGroup),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UniversalDistributionGroup => "universalDistributionGroup",
            Self::UniversalSecurityGroup => "universalSecurityGroup",
            Self::UniversalMailEnabledSecurityGroup => "universalMailEnabledSecurityGroup",
        }
    }
    /// AD `groupType` value (always Universal scope).
    pub fn ad_group_type(self) -> i32 {
        match self {
            Self::UniversalDistributionGroup => GROUP_TYPE_UNIVERSAL,
            Self::UniversalSecurityGroup | Self::UniversalMailEnabledSecurityGroup => {
                GROUP_TYPE_UNIVERSAL | GROUP_TYPE_SECURITY
            }
        }
    }
    pub fn is_mail_enabled(self) -> bool {
        !matches!(self, Self::UniversalSecurityGroup)
    }
}

/// AD groupType bits.
pub const GROUP_TYPE_GLOBAL: i32 = 0x2;
pub const GROUP_TYPE_DOMAIN_LOCAL: i32 = 0x4;
pub const GROUP_TYPE_UNIVERSAL: i32 = 0x8;
pub const GROUP_TYPE_SECURITY: i32 = i32::MIN; // 0x80000000

/// Soft-delete state of a cloud group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CloudDeletion {
    /// In `/directory/deletedItems`, restorable (delta `@removed: {reason: changed}`).
    SoftDeleted,
}

/// A group as the cloud (Graph) describes it: the merged image of all delta pages so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudGroup {
    pub id: ObjectId,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub group_types: Vec<String>,
    pub mail_enabled: Option<bool>,
    pub security_enabled: Option<bool>,
    pub mail: Option<String>,
    pub mail_nickname: Option<String>,
    pub proxy_addresses: Vec<String>,
    pub on_premises_sync_enabled: Option<bool>,
    pub on_premises_security_identifier: Option<String>,
    pub writeback: WritebackConfiguration,
    pub members: BTreeSet<MemberRef>,
    pub owners: BTreeSet<MemberRef>,
    pub deleted: Option<CloudDeletion>,
    /// `onPremisesSyncBehavior.isCloudManaged` (Group Source of Authority): a group synced
    /// from AD converted to cloud management. Read separately from delta (it is a resource
    /// of its own); `None` when it was not read (groups that never were synced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_managed: Option<bool>,
}

impl CloudGroup {
    /// A copy without the member list (the store keeps a big group's members in rows of
    /// their own); every other field copied.
    pub fn without_members(&self) -> CloudGroup {
        CloudGroup {
            id: self.id.clone(),
            display_name: self.display_name.clone(),
            description: self.description.clone(),
            group_types: self.group_types.clone(),
            mail_enabled: self.mail_enabled,
            security_enabled: self.security_enabled,
            mail: self.mail.clone(),
            mail_nickname: self.mail_nickname.clone(),
            proxy_addresses: self.proxy_addresses.clone(),
            on_premises_sync_enabled: self.on_premises_sync_enabled,
            on_premises_security_identifier: self.on_premises_security_identifier.clone(),
            writeback: self.writeback.clone(),
            members: BTreeSet::new(),
            owners: self.owners.clone(),
            deleted: self.deleted,
            cloud_managed: self.cloud_managed,
        }
    }
}

/// What kind of group a cloud group is (SPEC §1 table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupKind {
    Microsoft365,
    Security,
    MailEnabledSecurity,
    Distribution,
}

impl GroupKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupKind::Microsoft365 => "microsoft365",
            GroupKind::Security => "security",
            GroupKind::MailEnabledSecurity => "mail-enabled-security",
            GroupKind::Distribution => "distribution",
        }
    }
}

impl CloudGroup {
    pub fn kind(&self) -> GroupKind {
        let unified = self
            .group_types
            .iter()
            .any(|t| t.eq_ignore_ascii_case("Unified"));
        let mail = self.mail_enabled.unwrap_or(false);
        let sec = self.security_enabled.unwrap_or(false);
        if unified {
            GroupKind::Microsoft365
        } else if mail && sec {
            GroupKind::MailEnabledSecurity
        } else if mail {
            GroupKind::Distribution
        } else {
            GroupKind::Security
        }
    }
    pub fn is_dynamic(&self) -> bool {
        self.group_types
            .iter()
            .any(|t| t.eq_ignore_ascii_case("DynamicMembership"))
    }
    pub fn is_synced_from_ad(&self) -> bool {
        self.on_premises_sync_enabled == Some(true)
    }
    /// A group synced from AD whose source of authority was converted to the cloud
    /// (`isCloudManaged = true`) and that names its AD group by SID: its AD group is
    /// written back in place (SPEC §10).
    pub fn is_cloud_managed_ad_group(&self) -> bool {
        self.cloud_managed == Some(true) && !self.is_synced_from_ad() && self.ad_sid().is_some()
    }
    /// `onPremisesSecurityIdentifier`, trimmed, when given.
    pub fn ad_sid(&self) -> Option<&str> {
        self.on_premises_security_identifier
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }
    pub fn name(&self) -> &str {
        self.display_name.as_deref().unwrap_or("")
    }
}

/// A user as the cloud describes it (only what member resolution needs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudUser {
    pub id: ObjectId,
    pub user_principal_name: Option<String>,
    pub display_name: Option<String>,
    pub on_premises_sync_enabled: Option<bool>,
    pub on_premises_security_identifier: Option<String>,
    pub on_premises_immutable_id: Option<String>,
    pub on_premises_distinguished_name: Option<String>,
    pub on_premises_sam_account_name: Option<String>,
    pub on_premises_domain_name: Option<String>,
}

/// A device as the cloud describes it (only what member resolution needs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudDevice {
    pub id: ObjectId,
    pub display_name: Option<String>,
    /// The device's own id (`deviceId`), not the directory object id.
    pub device_id: Option<String>,
    pub on_premises_sync_enabled: Option<bool>,
    pub on_premises_security_identifier: Option<String>,
}

/// The cloud side as last imported: every group, user and device seen, keyed by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudSnapshot {
    pub groups: BTreeMap<ObjectId, CloudGroup>,
    /// Shared between copies of the image until one of them changes a user
    /// (`Arc::make_mut`): a cycle's working copy of a 250,000-user image costs nothing
    /// when the cycle changes no user, and two copies are told equal by address.
    pub users: Arc<BTreeMap<ObjectId, CloudUser>>,
    /// Devices (members of groups); absent from images stored before devices were read.
    #[serde(default)]
    pub devices: BTreeMap<ObjectId, CloudDevice>,
}

impl CloudSnapshot {
    /// Gives each distinct member and owner id one shared copy (what a delta round does;
    /// an image read back from the store has one copy per membership).
    pub fn share_ids(&mut self) {
        let mut ids = Interner::default();
        for g in self.groups.values_mut() {
            for set in [&mut g.members, &mut g.owners] {
                // A set none of whose ids was seen before keeps its copies (they become the
                // shared ones): not rebuilt — a group of 250,000 members is not copied.
                let seen = set
                    .iter()
                    .any(|m| ids.0.get(&*m.id).is_some_and(|s| !Arc::ptr_eq(s, &m.id)));
                if !seen {
                    ids.0.extend(set.iter().map(|m| m.id.clone()));
                    continue;
                }
                *set = std::mem::take(set)
                    .into_iter()
                    .map(|m| MemberRef {
                        kind: m.kind,
                        id: ids.share(m.id),
                    })
                    .collect();
            }
        }
    }
}

/// A group found in AD under a managed OU (owned or not).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdGroup {
    pub dn: String,
    /// objectGUID in its canonical text form (as AD shows it, e.g. in `<GUID=...>`).
    pub guid: String,
    /// objectSid in S-1-5-... form.
    pub sid: Option<String>,
    pub cn: String,
    pub sam_account_name: Option<String>,
    pub group_type: i32,
    pub admin_description: Option<String>,
    pub external_directory_object_id: Option<String>,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub mail: Option<String>,
    pub mail_nickname: Option<String>,
    pub proxy_addresses: Vec<String>,
    pub managed_by: Option<String>,
    /// Full member list (read with range retrieval), DNs as the server returns them.
    /// Shared ([`Interner`]): a user in a thousand groups is one DN in memory.
    pub members: Vec<Arc<str>>,
    /// `isCriticalSystemObject = TRUE` (Domain Admins, Administrators, …).
    #[serde(default)]
    pub critical: bool,
    /// `adminCount = 1`: protected by AdminSDHolder (a member of a privileged group).
    #[serde(default)]
    pub admin_count: bool,
}

impl AdGroup {
    /// A copy without the member list (the store keeps a big group's members in rows of
    /// their own); every other field copied.
    pub fn without_members(&self) -> AdGroup {
        AdGroup {
            dn: self.dn.clone(),
            guid: self.guid.clone(),
            sid: self.sid.clone(),
            cn: self.cn.clone(),
            sam_account_name: self.sam_account_name.clone(),
            group_type: self.group_type,
            admin_description: self.admin_description.clone(),
            external_directory_object_id: self.external_directory_object_id.clone(),
            display_name: self.display_name.clone(),
            description: self.description.clone(),
            mail: self.mail.clone(),
            mail_nickname: self.mail_nickname.clone(),
            proxy_addresses: self.proxy_addresses.clone(),
            managed_by: self.managed_by.clone(),
            members: Vec::new(),
            critical: self.critical,
            admin_count: self.admin_count,
        }
    }

    /// Why this object is protected — writeback never adopts nor writes it, whatever the
    /// cloud says (SPEC §10): `isCriticalSystemObject`, `adminCount = 1`, a builtin SID
    /// (`S-1-5-32-*`) or a well-known RID below 1000 (Domain Admins 512, …).
    pub fn protection(&self) -> Option<String> {
        if self.critical {
            return Some("isCriticalSystemObject = TRUE".into());
        }
        if self.admin_count {
            return Some("adminCount = 1 (protected by AdminSDHolder)".into());
        }
        self.sid.as_deref().and_then(protected_sid)
    }
    /// The cloud object id this group is anchored to, if it carries an anchor.
    pub fn anchor(&self) -> Option<&str> {
        self.external_directory_object_id
            .as_deref()
            .and_then(parse_anchor)
            .or_else(|| self.admin_description.as_deref().and_then(parse_anchor))
    }
}

/// Why a SID names a protected object: builtin (`S-1-5-32-*`), or a domain SID with a
/// well-known RID below 1000 (Domain Admins 512, Enterprise Admins 519, …).
pub fn protected_sid(sid: &str) -> Option<String> {
    let sid = sid.trim().to_ascii_uppercase();
    if sid.starts_with("S-1-5-32-") {
        return Some(format!("builtin group ({sid})"));
    }
    let rid = sid.rsplit('-').next().and_then(|r| r.parse::<u64>().ok());
    match rid {
        Some(rid) if rid < 1000 && sid.starts_with("S-1-5-21-") => {
            Some(format!("well-known RID {rid} ({sid})"))
        }
        _ => None,
    }
}

/// `Group_<objectId>` → objectId.
pub fn parse_anchor(s: &str) -> Option<&str> {
    s.strip_prefix("Group_").filter(|rest| !rest.is_empty())
}

/// objectId → `Group_<objectId>`.
pub fn anchor_value(id: &str) -> String {
    format!("Group_{id}")
}

/// What the AD schema offers, detected once per run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdSchema {
    /// `msDS-ExternalDirectoryObjectId` exists (Windows Server 2016 schema or later).
    pub external_directory_object_id: bool,
    /// `mail` / `proxyAddresses` exist on groups.
    pub mail: bool,
    pub proxy_addresses: bool,
    /// `mailNickname` exists (Exchange schema).
    pub mail_nickname: bool,
}

/// How a cloud member (user or group) was looked up in AD.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "by", content = "value")]
pub enum Lookup {
    /// objectSid, S-1-5-... text.
    Sid(String),
    /// objectGUID or mS-DS-ConsistencyGuid, from onPremisesImmutableId (base64).
    ImmutableId(String),
    /// A DN that must be checked to exist.
    Dn(String),
}

/// What kind of AD object a lookup found, from its `objectClass` values. The most
/// specific class wins: a computer account is also of class `user`, a group is never one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AdClass {
    User,
    Computer,
    Group,
    /// Anything else (contact, foreignSecurityPrincipal, ...): its most specific
    /// objectClass, empty when the server gave none.
    Other(String),
}

impl AdClass {
    /// From the `objectClass` values as the server lists them (`top, person,
    /// organizationalPerson, user[, computer]`), compared case-insensitively.
    pub fn from_object_classes<S: AsRef<str>>(values: &[S]) -> AdClass {
        let has = |c: &str| {
            values
                .iter()
                .any(|v| v.as_ref().trim().eq_ignore_ascii_case(c))
        };
        if has("computer") {
            AdClass::Computer
        } else if has("group") {
            AdClass::Group
        } else if has("user") {
            AdClass::User
        } else {
            AdClass::Other(
                values
                    .last()
                    .map(|v| v.as_ref().trim().to_string())
                    .unwrap_or_default(),
            )
        }
    }
}

impl std::fmt::Display for AdClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdClass::User => f.write_str("user"),
            AdClass::Computer => f.write_str("computer"),
            AdClass::Group => f.write_str("group"),
            AdClass::Other(c) if c.is_empty() => f.write_str("unknown"),
            AdClass::Other(c) => f.write_str(c),
        }
    }
}

/// An AD object found by a lookup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdObjectRef {
    pub dn: String,
    pub guid: String,
    /// groupType when the object is a group.
    pub group_type: Option<i32>,
    /// Its class (from objectClass): a member is written only as an object of its own kind.
    pub class: AdClass,
}

/// Results of the lookups the engine asked for; a key absent from `found` was not found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolutions {
    pub found: BTreeMap<Lookup, AdObjectRef>,
    /// Lookups that were asked and answered "no such object".
    pub asked: BTreeSet<Lookup>,
}

/// The AD side as read this cycle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdSnapshot {
    pub schema: AdSchema,
    /// Every group object found under the managed OUs (owned and foreign alike).
    pub groups: Vec<AdGroup>,
    pub resolutions: Resolutions,
}

/// The recorded join between a cloud group and the AD group writeback made (or adopted)
/// for it. Kept by the state store; tells the engine which AD groups it owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Join {
    pub group: ObjectId,
    pub guid: String,
    pub sid: Option<String>,
    pub dn: String,
    /// The AD group existed before writeback (a cloud-managed AD group, or `writeback
    /// adopt`): written in place, never moved unless a rule's `ou` says so, never deleted.
    #[serde(default)]
    pub adopted: bool,
}

/// All joins, by cloud group id.
pub type Joins = BTreeMap<ObjectId, Join>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_passes_leave_one_copy_of_each_value_and_the_values_unchanged() {
        let r = |kind, id: &str| MemberRef {
            kind,
            id: Arc::from(id),
        };
        let mut cloud = CloudSnapshot::default();
        for g in ["g1", "g2"] {
            cloud.groups.insert(
                g.into(),
                CloudGroup {
                    id: g.into(),
                    members: [r(MemberKind::User, "u1"), r(MemberKind::Group, "g9")].into(),
                    owners: [r(MemberKind::User, "u1")].into(),
                    ..Default::default()
                },
            );
        }
        let before = cloud.clone();
        cloud.share_ids();
        assert_eq!(cloud, before);
        let u1: Vec<&Arc<str>> = cloud
            .groups
            .values()
            .flat_map(|g| g.members.iter().chain(&g.owners))
            .filter(|m| &*m.id == "u1")
            .map(|m| &m.id)
            .collect();
        assert_eq!(u1.len(), 4);
        assert!(u1.iter().all(|id| Arc::ptr_eq(id, u1[0])));

        let group = |dn: &str, members: &[&str]| AdGroup {
            dn: dn.into(),
            members: members.iter().map(|m| Arc::from(*m)).collect(),
            ..Default::default()
        };
        let mut groups = vec![group("CN=A", &["CN=u", "CN=v"]), group("CN=B", &["CN=u"])];
        let before = groups.clone();
        share_member_dns(&mut groups);
        assert_eq!(groups, before);
        assert!(Arc::ptr_eq(&groups[0].members[0], &groups[1].members[0]));
        assert!(!Arc::ptr_eq(&groups[0].members[1], &groups[1].members[0]));
    }

    #[test]
    fn the_most_specific_object_class_wins_case_insensitively() {
        let class = |v: &[&str]| AdClass::from_object_classes(v);
        assert_eq!(
            class(&["top", "person", "organizationalPerson", "user"]),
            AdClass::User
        );
        assert_eq!(
            class(&["top", "person", "organizationalPerson", "USER", "Computer"]),
            AdClass::Computer
        );
        assert_eq!(class(&["top", "GROUP"]), AdClass::Group);
        assert_eq!(
            class(&["top", "person", "organizationalPerson", "contact"]),
            AdClass::Other("contact".into())
        );
        assert_eq!(class(&[]).to_string(), "unknown");
    }
}
