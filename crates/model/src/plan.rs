//! The Plan: what one cycle will do to AD, as plain data, each operation with its reason,
//! plus the outcome of every group and member (what `status`, `plan` and `explain` show).

use crate::{AdClass, GroupKind, MemberKind, ObjectId, OnPremGroupType};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One change to one AD attribute: the values before and the values wanted after.
/// An empty `after` means the attribute is removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttrChange {
    pub attr: String,
    pub before: Vec<String>,
    pub after: Vec<String>,
}

/// The values of one attribute of a create. Most attributes have one value, held as it
/// is (a list of one would be another allocation per attribute: a million at 100,000
/// creates). Reads go through [`Deref`](std::ops::Deref) to a slice; the wire form is the
/// list of values; equal values are equal however held.
#[derive(Debug, Clone, Eq)]
pub enum AttrValues {
    One(String),
    Many(Vec<String>),
}

impl AttrValues {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            AttrValues::One(v) => vec![v],
            AttrValues::Many(v) => v,
        }
    }
}

impl Default for AttrValues {
    fn default() -> Self {
        AttrValues::Many(Vec::new())
    }
}

impl std::ops::Deref for AttrValues {
    type Target = [String];
    fn deref(&self) -> &[String] {
        match self {
            AttrValues::One(v) => std::slice::from_ref(v),
            AttrValues::Many(v) => v,
        }
    }
}

impl PartialEq for AttrValues {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

/// Values compare with a list of values (`attrs["cn"] == vec!["Team"]`).
impl<T> PartialEq<Vec<T>> for AttrValues
where
    String: PartialEq<T>,
{
    fn eq(&self, other: &Vec<T>) -> bool {
        self.len() == other.len() && self.iter().zip(other).all(|(a, b)| a == b)
    }
}

impl From<Vec<String>> for AttrValues {
    fn from(mut values: Vec<String>) -> Self {
        match values.len() {
            1 => AttrValues::One(values.pop().unwrap_or_default()),
            _ => AttrValues::Many(values),
        }
    }
}

impl From<String> for AttrValues {
    fn from(value: String) -> Self {
        AttrValues::One(value)
    }
}

impl Serialize for AttrValues {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for AttrValues {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<String>::deserialize(deserializer).map(AttrValues::from)
    }
}

/// An LDAP-level action. DNs are those valid at the moment the action runs: the exporter
/// runs actions in plan order, and the engine orders them (renames, creates, attribute
/// changes, member changes, deletes) so every DN it names exists by then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Action {
    /// LDAP add of a new group. `attrs` are the full attribute set (objectClass included);
    /// `members` are written inline where possible and in chunks after the add.
    Create {
        dn: String,
        /// Attribute names are most often writeback's own constants: borrowed, not copied
        /// into every create.
        attrs: BTreeMap<Cow<'static, str>, AttrValues>,
        /// Member DNs are shared (`Arc<str>`) with the outcomes and images that name them.
        members: Vec<Arc<str>>,
        /// sAMAccountNames to try, in order, when `attrs["sAMAccountName"]` is taken in the
        /// domain (AD says rc 68 `00002071`); the create fails only when all are taken.
        /// Empty in the engine's plans: the exporter derives them from the naming rule
        /// (`wb_engine::naming::sam_account_name_fallbacks`: the candidates after the one
        /// chosen) when it runs the create.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sam_account_name_fallbacks: Vec<String>,
    },
    /// modifyDN: new RDN, and a new parent when the group moves to another managed OU.
    Rename {
        dn: String,
        guid: String,
        new_rdn: String,
        new_parent: Option<String>,
        new_dn: String,
    },
    /// Replace or remove single attributes.
    Modify {
        dn: String,
        guid: String,
        changes: Vec<AttrChange>,
    },
    AddMembers {
        dn: String,
        guid: Option<String>,
        members: Vec<Arc<str>>,
    },
    RemoveMembers {
        dn: String,
        guid: String,
        members: Vec<Arc<str>>,
    },
    Delete {
        dn: String,
        guid: String,
    },
}

impl Action {
    pub fn dn(&self) -> &str {
        match self {
            Action::Create { dn, .. }
            | Action::Rename { dn, .. }
            | Action::Modify { dn, .. }
            | Action::AddMembers { dn, .. }
            | Action::RemoveMembers { dn, .. }
            | Action::Delete { dn, .. } => dn,
        }
    }
    /// The objectGUID the action names (a create names none yet; members added to a group
    /// created in the same export may not know it).
    pub fn guid(&self) -> Option<&str> {
        match self {
            Action::Create { .. } => None,
            Action::AddMembers { guid, .. } => guid.as_deref(),
            Action::Rename { guid, .. }
            | Action::Modify { guid, .. }
            | Action::RemoveMembers { guid, .. }
            | Action::Delete { guid, .. } => Some(guid),
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Action::Create { .. } => "create",
            Action::Rename { .. } => "rename",
            Action::Modify { .. } => "modify",
            Action::AddMembers { .. } => "add-members",
            Action::RemoveMembers { .. } => "remove-members",
            Action::Delete { .. } => "delete",
        }
    }
    /// Destructive actions are held back by the accident thresholds.
    pub fn is_destructive(&self) -> bool {
        matches!(self, Action::Delete { .. } | Action::RemoveMembers { .. })
    }
}

/// An operation of the plan: the action, the cloud group it serves, and why it exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Cloud object id of the group this operation serves.
    pub group: ObjectId,
    /// Display name, for messages.
    pub name: String,
    #[serde(flatten)]
    pub action: Action,
    /// Shared by the operations with the same reason (most of a first export's creates).
    pub reason: Arc<str>,
}

/// Why a group is or is not written back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum Decision {
    /// Written back as `group_type` under `ou`; `because` says which setting or rule.
    /// `ou` is the configuration's (shared by every group placed there); `because` is one
    /// of writeback's texts, or a rule's (owned).
    Written {
        group_type: OnPremGroupType,
        ou: Arc<str>,
        because: Cow<'static, str>,
    },
    /// Not enabled for writeback (isEnabled false/null without rule).
    NotEnabled { because: String },
    /// A kind writeback does not support (distribution, mail-enabled security).
    Unsupported { because: String },
    /// Synced from AD: never written back.
    SyncedFromAd,
    /// Over the member limit.
    OverLimit { count: usize, limit: usize },
    /// Its configuration is invalid (e.g. a security group with a distribution type).
    Invalid { because: String },
    /// Soft-deleted in the cloud; the AD group (if any) is kept, not updated.
    SoftDeleted,
}

impl Decision {
    pub fn is_written(&self) -> bool {
        matches!(self, Decision::Written { .. })
    }
}

/// What found the AD object a member is written as: the cloud property its lookup came
/// from, or the plan's own placement of a nested written-back group. On the wire, the
/// property name (or `written-back group`), as before this was typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FoundBy {
    #[serde(rename = "onPremisesSecurityIdentifier")]
    OnPremisesSecurityIdentifier,
    #[serde(rename = "onPremisesImmutableId")]
    OnPremisesImmutableId,
    #[serde(rename = "onPremisesDistinguishedName")]
    OnPremisesDistinguishedName,
    #[serde(rename = "written-back group")]
    WrittenBackGroup,
    /// A value this version does not know (a plan written by another version).
    #[serde(other, rename = "unknown")]
    Unknown,
}

impl FoundBy {
    pub fn as_str(self) -> &'static str {
        match self {
            FoundBy::OnPremisesSecurityIdentifier => "onPremisesSecurityIdentifier",
            FoundBy::OnPremisesImmutableId => "onPremisesImmutableId",
            FoundBy::OnPremisesDistinguishedName => "onPremisesDistinguishedName",
            FoundBy::WrittenBackGroup => "written-back group",
            FoundBy::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for FoundBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fate of one cloud member of a written-back group.
///
/// DNs are `Arc<str>`: a user in a thousand groups has one DN, shared by the thousand
/// outcomes (a plan holds one outcome per membership: a million at 100,000 groups).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fate", rename_all = "kebab-case")]
pub enum Fate {
    /// Written as this AD DN.
    Written {
        dn: Arc<str>,
        by: FoundBy,
    },
    CloudOnly,
    NotFoundOnPremises,
    NestedGroupNotEnabled,
    /// Nested group written back in this cycle but not yet created (or failed).
    NestedGroupPending,
    SyncedGroupNotFound,
    DomainLocalGroup {
        dn: Arc<str>,
    },
    /// The AD object the member resolves to is not of the class of its cloud type (a
    /// "user" whose SID is Domain Admins', a "group" whose SID is a user's): not written.
    /// Boxed: rare, and it would make every fate three times as large.
    ClassMismatch(Box<ClassMismatch>),
    /// A device not synced from AD (cloud-only, Entra-joined or registered): it has no
    /// computer account to be written as.
    CloudOnlyDevice,
    /// Contacts, service principals, unknown objects.
    UnsupportedKind,
    /// Referenced but unknown to the cloud image (e.g. a user not seen by user delta).
    UnknownObject,
}

/// A member resolving to an AD object of another class than its cloud type's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassMismatch {
    pub dn: Arc<str>,
    pub expected: AdClass,
    pub found: AdClass,
}

impl Fate {
    pub fn text(&self) -> String {
        let text = match self {
            Fate::ClassMismatch(m) => {
                let ClassMismatch {
                    dn,
                    expected,
                    found,
                } = &**m;
                return format!(
                    "resolves to a {found} object, not a {expected}: not written ({dn})"
                );
            }
            Fate::Written { .. } => "written",
            Fate::CloudOnly => "cloud-only user",
            Fate::CloudOnlyDevice => "device not synced from AD (no computer account)",
            Fate::NotFoundOnPremises => "not found on-premises",
            Fate::NestedGroupNotEnabled => "nested group not enabled for writeback",
            Fate::NestedGroupPending => "nested group not yet in AD",
            Fate::SyncedGroupNotFound => "group synced from AD not found on-premises",
            Fate::DomainLocalGroup { .. } => {
                "A universal group cannot have a local group as a member"
            }
            Fate::UnsupportedKind => "object kind not written back",
            Fate::UnknownObject => "unknown object",
        };
        text.to_string()
    }
    /// The DN of the AD object the member resolved to, when the fate names one.
    pub fn dn(&self) -> Option<&str> {
        match self {
            Fate::Written { dn, .. } | Fate::DomainLocalGroup { dn } => Some(dn),
            Fate::ClassMismatch(m) => Some(&m.dn),
            _ => None,
        }
    }
}

/// Which cloud member an outcome is about: a [`MemberRef`](crate::MemberRef) whose id is
/// shared by every outcome of that member (same wire form: `{"kind": …, "id": …}`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OutcomeMember {
    pub kind: MemberKind,
    pub id: Arc<str>,
}

/// What became of one member of one group: a shared handle (one pointer per membership).
/// A member's outcome is the same in every group whose fate of it does not depend on the
/// group (a user written as its account, a cloud-only user): the engine makes it once and
/// every group holds the same one — a plan holds a million memberships at 100,000 groups.
/// Reads go through [`Deref`](std::ops::Deref) (`outcome.fate`, `outcome.member.id`); the
/// wire form is the fields', as before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MemberOutcome(Arc<MemberOutcomeData>);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberOutcomeData {
    pub member: OutcomeMember,
    /// The member's display name (shared, as its id, by all its outcomes).
    pub name: Option<Arc<str>>,
    #[serde(flatten)]
    pub fate: Fate,
}

impl MemberOutcome {
    pub fn new(member: OutcomeMember, name: Option<Arc<str>>, fate: Fate) -> Self {
        MemberOutcome(Arc::new(MemberOutcomeData { member, name, fate }))
    }
}

impl std::ops::Deref for MemberOutcome {
    type Target = MemberOutcomeData;
    fn deref(&self) -> &MemberOutcomeData {
        &self.0
    }
}

/// Lifecycle state of the AD group of a cloud group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdState {
    /// No AD group and none planned.
    Absent,
    /// Will be created this cycle.
    ToCreate,
    /// Exists and is managed.
    Present,
    /// Exists, no longer updated (out of scope / disabled / soft-deleted) and kept.
    Orphaned,
    /// Will be deleted this cycle.
    ToDelete,
}

/// Everything decided about one cloud group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupOutcome {
    pub id: ObjectId,
    pub name: String,
    pub kind: GroupKind,
    pub decision: Decision,
    pub ad_state: AdState,
    pub ad_dn: Option<String>,
    /// Member fates (only for written-back groups).
    pub members: Vec<MemberOutcome>,
    /// Per-group errors (export errors the admin must act on), with Microsoft's wording
    /// where there is one.
    pub errors: Vec<String>,
    /// Drift found in AD and put back by this plan.
    pub drift: Vec<String>,
    /// Cloud members, and how many of them are written (kept when a stored plan drops the
    /// fates of written members to stay small; see `GroupOutcome::slim`).
    #[serde(default)]
    pub member_count: usize,
    #[serde(default)]
    pub written_count: usize,
    /// Its AD group existed before writeback and was adopted in place (a cloud-managed AD
    /// group, or `writeback adopt`): never moved unless a rule's `ou` says so, never deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopted: bool,
}

impl GroupOutcome {
    /// Whether the group has an error: one of its own, or a decision that is invalid.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty() || matches!(self.decision, Decision::Invalid { .. })
    }

    /// Drops the fates of written members (the bulk of a big tenant's plan), keeping the
    /// counts and every member that is not written, with why.
    pub fn slim(&mut self) {
        self.members
            .retain(|m| !matches!(m.fate, Fate::Written { .. }));
    }

    /// A slimmed copy (see [`GroupOutcome::slim`]): the written members' fates are not
    /// copied.
    pub fn slimmed(&self) -> GroupOutcome {
        // Destructured so a new field is copied (or deliberately left out) here.
        let GroupOutcome {
            id,
            name,
            kind,
            decision,
            ad_state,
            ad_dn,
            members,
            errors,
            drift,
            member_count,
            written_count,
            adopted,
        } = self;
        GroupOutcome {
            id: id.clone(),
            name: name.clone(),
            kind: *kind,
            decision: decision.clone(),
            ad_state: ad_state.clone(),
            ad_dn: ad_dn.clone(),
            members: members
                .iter()
                .filter(|m| !matches!(m.fate, Fate::Written { .. }))
                .cloned()
                .collect(),
            errors: errors.clone(),
            drift: drift.clone(),
            member_count: *member_count,
            written_count: *written_count,
            adopted: *adopted,
        }
    }
}

impl Plan {
    /// The plan as a run keeps it: its operations, foreign objects and notices (the groups'
    /// outcomes are kept once, as the latest of each group, not per run).
    pub fn for_history(&self) -> Plan {
        Plan {
            operations: self.operations.clone(),
            groups: Vec::new(),
            foreign: self.foreign.clone(),
            notices: self.notices.clone(),
        }
    }

    /// The plan with its outcomes slimmed.
    pub fn slimmed(&self) -> Plan {
        Plan {
            operations: self.operations.clone(),
            groups: self.groups.iter().map(GroupOutcome::slimmed).collect(),
            foreign: self.foreign.clone(),
            notices: self.notices.clone(),
        }
    }
}

/// An object under a managed OU that writeback does not own; never touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignObject {
    pub dn: String,
    pub reason: String,
}

/// The plan of one cycle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub operations: Vec<Operation>,
    pub groups: Vec<GroupOutcome>,
    pub foreign: Vec<ForeignObject>,
    /// Notes that hold for the whole run (e.g. attributes the schema lacks).
    pub notices: Vec<String>,
}

/// Counts of what a plan does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanCounts {
    pub creates: usize,
    pub renames: usize,
    pub modifies: usize,
    pub member_adds: usize,
    pub member_removes: usize,
    pub deletes: usize,
}

impl Plan {
    pub fn counts(&self) -> PlanCounts {
        let mut c = PlanCounts::default();
        for op in &self.operations {
            match &op.action {
                Action::Create { members, .. } => {
                    c.creates += 1;
                    c.member_adds += members.len();
                }
                Action::Rename { .. } => c.renames += 1,
                Action::Modify { .. } => c.modifies += 1,
                Action::AddMembers { members, .. } => c.member_adds += members.len(),
                Action::RemoveMembers { members, .. } => c.member_removes += members.len(),
                Action::Delete { .. } => c.deletes += 1,
            }
        }
        c
    }
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, fate: Fate) -> MemberOutcome {
        MemberOutcome::new(
            OutcomeMember {
                kind: MemberKind::User,
                id: id.into(),
            },
            None,
            fate,
        )
    }

    #[test]
    fn attribute_values_are_a_list_on_the_wire_however_held() {
        let one = AttrValues::from(vec!["Team".to_string()]);
        assert!(matches!(one, AttrValues::One(_)));
        assert_eq!(serde_json::to_string(&one).unwrap(), r#"["Team"]"#);
        let many: AttrValues = serde_json::from_str(r#"["top","group"]"#).unwrap();
        assert_eq!(many, vec!["top", "group"]);
        assert_eq!(serde_json::to_string(&many).unwrap(), r#"["top","group"]"#);
        let none: AttrValues = serde_json::from_str("[]").unwrap();
        assert!(none.is_empty());
        assert_eq!(AttrValues::Many(vec!["Team".into()]), one);
        assert_ne!(one, AttrValues::default());
        assert_eq!(one.into_vec(), vec!["Team".to_string()]);
    }

    #[test]
    fn a_slimmed_plan_keeps_counts_and_the_members_not_written() {
        let g = GroupOutcome {
            id: "g".into(),
            name: "G".into(),
            kind: GroupKind::Security,
            decision: Decision::SoftDeleted,
            ad_state: AdState::Present,
            ad_dn: None,
            members: vec![
                member(
                    "a",
                    Fate::Written {
                        dn: "CN=a".into(),
                        by: FoundBy::OnPremisesSecurityIdentifier,
                    },
                ),
                member("b", Fate::CloudOnly),
            ],
            errors: vec![],
            drift: vec![],
            member_count: 2,
            written_count: 1,
            adopted: false,
        };
        let plan = Plan {
            groups: vec![g],
            ..Plan::default()
        };
        let slim = plan.slimmed();
        assert_eq!(slim.groups[0].members.len(), 1);
        assert_eq!(slim.groups[0].members[0].fate, Fate::CloudOnly);
        assert_eq!(
            (slim.groups[0].member_count, slim.groups[0].written_count),
            (2, 1)
        );
        assert_eq!(
            plan.groups[0].members.len(),
            2,
            "the plan itself is untouched"
        );
        let mut in_place = plan.groups[0].clone();
        in_place.slim();
        assert_eq!(
            slim.groups[0], in_place,
            "a slimmed copy is the outcome slimmed"
        );
    }

    #[test]
    fn member_outcomes_keep_their_wire_form() {
        let written = r#"{"member":{"kind":"user","id":"u1"},"name":"Ann","fate":"written","dn":"CN=Ann,DC=t","by":"onPremisesSecurityIdentifier"}"#;
        let m: MemberOutcome = serde_json::from_str(written).unwrap();
        assert_eq!(&*m.member.id, "u1");
        assert_eq!(
            m.fate,
            Fate::Written {
                dn: "CN=Ann,DC=t".into(),
                by: FoundBy::OnPremisesSecurityIdentifier
            }
        );
        assert_eq!(serde_json::to_string(&m).unwrap(), written);
        let nested = r#"{"fate":"written","dn":"CN=G,DC=t","by":"written-back group"}"#;
        let f: Fate = serde_json::from_str(nested).unwrap();
        assert_eq!(serde_json::to_string(&f).unwrap(), nested);
        let mismatch = r#"{"fate":"class-mismatch","dn":"CN=Domain Admins,DC=t","expected":"user","found":"group"}"#;
        let f: Fate = serde_json::from_str(mismatch).unwrap();
        assert!(matches!(&f, Fate::ClassMismatch(m) if m.found == AdClass::Group));
        assert_eq!(serde_json::to_string(&f).unwrap(), mismatch);
        let other: Fate =
            serde_json::from_str(r#"{"fate":"written","dn":"CN=X","by":"sid"}"#).unwrap();
        assert!(matches!(
            other,
            Fate::Written {
                by: FoundBy::Unknown,
                ..
            }
        ));
    }

    #[test]
    fn a_member_outcome_stays_small() {
        // One per membership: a million in a plan of 100,000 groups (docs/BENCHMARKS.md).
        assert!(std::mem::size_of::<MemberOutcome>() <= 64);
    }
}
