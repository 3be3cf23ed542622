//! Member resolution (SPEC §5): what AD object, if any, each cloud member of a
//! written-back group becomes, and which AD lookups that needs.

use std::collections::BTreeMap;
use wb_model::{
    AdClass, AdObjectRef, CloudGroup, CloudSnapshot, CloudUser, Fate, Lookup, MemberKind,
    MemberOutcome, MemberRef, ObjectId, Resolutions, GROUP_TYPE_DOMAIN_LOCAL,
};

/// Exactly Microsoft's export error for a domain-local group nested in a universal one.
pub const DOMAIN_LOCAL_ERROR: &str = "A universal group cannot have a local group as a member";

/// The AD class a cloud member of this kind must resolve to (SPEC §10): a user is a
/// `user` that is not a `computer`, a group a `group`, a device a `computer`. Other kinds
/// have no AD counterpart writeback writes.
pub fn expected_class(kind: MemberKind) -> Option<AdClass> {
    match kind {
        MemberKind::User => Some(AdClass::User),
        MemberKind::Group => Some(AdClass::Group),
        MemberKind::Device => Some(AdClass::Computer),
        MemberKind::OrgContact | MemberKind::ServicePrincipal | MemberKind::Other => None,
    }
}

/// The lookups that find a synced user in AD, in the order they are tried, each with the
/// cloud property it comes from. Cloud-only users have none.
pub(crate) fn user_lookups(user: &CloudUser) -> Vec<(Lookup, &'static str)> {
    if user.on_premises_sync_enabled != Some(true) {
        return Vec::new();
    }
    let given = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let mut out = Vec::new();
    if let Some(sid) = given(&user.on_premises_security_identifier) {
        out.push((Lookup::Sid(sid), "onPremisesSecurityIdentifier"));
    }
    if let Some(id) = given(&user.on_premises_immutable_id) {
        out.push((Lookup::ImmutableId(id), "onPremisesImmutableId"));
    }
    if let Some(dn) = given(&user.on_premises_distinguished_name) {
        out.push((Lookup::Dn(dn), "onPremisesDistinguishedName"));
    }
    out
}

/// The lookup that finds a group synced from AD (by its SID).
pub(crate) fn synced_group_lookup(group: &CloudGroup) -> Option<Lookup> {
    let sid = group.on_premises_security_identifier.as_deref()?.trim();
    (!sid.is_empty()).then(|| Lookup::Sid(sid.to_string()))
}

/// Where every written-back group will be after this plan.
pub(crate) enum Placement {
    /// Its AD DN once renames and creates of this plan are done.
    At(String),
    /// Written back, but its AD group cannot be made this cycle.
    Pending,
}

/// What member resolution reads: the cloud image, the lookup answers, the placements.
pub(crate) struct Directory<'a> {
    pub cloud: &'a CloudSnapshot,
    pub resolutions: &'a Resolutions,
    pub placements: &'a BTreeMap<ObjectId, Placement>,
}

/// The members of one written-back group: their fates and the DNs AD should hold.
pub(crate) struct Membership {
    pub outcomes: Vec<MemberOutcome>,
    /// DNs to be values of `member`, with the cloud id of nested written-back groups.
    pub dns: Vec<(String, Option<ObjectId>)>,
    pub errors: Vec<String>,
}

impl Directory<'_> {
    pub fn membership(&self, group: &CloudGroup) -> Membership {
        let mut m = Membership {
            outcomes: Vec::new(),
            dns: Vec::new(),
            errors: Vec::new(),
        };
        for member in &group.members {
            let (fate, name, nested) = self.fate(member);
            match &fate {
                Fate::Written { dn, .. } => m.dns.push((dn.clone(), nested)),
                Fate::DomainLocalGroup { .. }
                    if !m.errors.iter().any(|e| e == DOMAIN_LOCAL_ERROR) =>
                {
                    m.errors.push(DOMAIN_LOCAL_ERROR.to_string());
                }
                // Someone may be trying to nest a privileged group: the admin must see it.
                Fate::ClassMismatch { .. } => m.errors.push(format!(
                    "member {} ({}) {}",
                    name.as_deref().unwrap_or("?"),
                    member.id,
                    fate.text()
                )),
                _ => {}
            }
            m.outcomes.push(MemberOutcome {
                member: member.clone(),
                name,
                fate,
            });
        }
        m
    }

    fn fate(&self, member: &MemberRef) -> (Fate, Option<String>, Option<ObjectId>) {
        match member.kind {
            MemberKind::User => match self.cloud.users.get(&member.id) {
                None => (Fate::UnknownObject, None, None),
                Some(user) => {
                    let name = user
                        .display_name
                        .clone()
                        .or_else(|| user.user_principal_name.clone());
                    let fate = if user.on_premises_sync_enabled == Some(true) {
                        self.first_found(user_lookups(user), member.kind)
                            .unwrap_or(Fate::NotFoundOnPremises)
                    } else {
                        Fate::CloudOnly
                    };
                    (fate, name, None)
                }
            },
            MemberKind::Group => match self.cloud.groups.get(&member.id) {
                None => (Fate::UnknownObject, None, None),
                Some(nested) => {
                    let name = nested.display_name.clone();
                    if nested.is_synced_from_ad() {
                        let found = synced_group_lookup(nested).and_then(|l| {
                            self.first_found(vec![(l, "onPremisesSecurityIdentifier")], member.kind)
                        });
                        return (found.unwrap_or(Fate::SyncedGroupNotFound), name, None);
                    }
                    match self.placements.get(&nested.id) {
                        Some(Placement::At(dn)) => (
                            Fate::Written {
                                dn: dn.clone(),
                                by: "written-back group".into(),
                            },
                            name,
                            Some(nested.id.clone()),
                        ),
                        Some(Placement::Pending) => (Fate::NestedGroupPending, name, None),
                        None => (Fate::NestedGroupNotEnabled, name, None),
                    }
                }
            },
            MemberKind::Device
            | MemberKind::OrgContact
            | MemberKind::ServicePrincipal
            | MemberKind::Other => (Fate::UnsupportedKind, None, None),
        }
    }

    /// The first lookup that found an object, as a fate: written only when the object is
    /// of the class a member of `kind` must have (and not a domain-local group). A first
    /// find of the wrong class refuses the member; later lookups are not consulted, since
    /// the cloud object's onPremises* values contradict each other.
    fn first_found(&self, lookups: Vec<(Lookup, &'static str)>, kind: MemberKind) -> Option<Fate> {
        // A kind with no AD class matches nothing.
        let expected = expected_class(kind).unwrap_or(AdClass::Other(String::new()));
        lookups.into_iter().find_map(|(lookup, by)| {
            self.resolutions
                .found
                .get(&lookup)
                .map(|obj| fate_of(obj, by, &expected))
        })
    }

    /// managedBy: the DN of the first owner (in id order) that resolves to an AD user.
    pub fn manager(&self, group: &CloudGroup) -> Option<String> {
        group
            .owners
            .iter()
            .filter(|o| o.kind == MemberKind::User)
            .filter_map(|o| self.cloud.users.get(&o.id))
            .find_map(|user| {
                user_lookups(user)
                    .into_iter()
                    .find_map(|(l, _)| self.resolutions.found.get(&l))
                    .filter(|obj| Some(&obj.class) == expected_class(MemberKind::User).as_ref())
                    .map(|obj| obj.dn.clone())
            })
    }
}

fn fate_of(obj: &AdObjectRef, by: &str, expected: &AdClass) -> Fate {
    if &obj.class != expected {
        return Fate::ClassMismatch {
            dn: obj.dn.clone(),
            expected: expected.clone(),
            found: obj.class.clone(),
        };
    }
    match obj.group_type {
        Some(t) if t & GROUP_TYPE_DOMAIN_LOCAL != 0 => {
            Fate::DomainLocalGroup { dn: obj.dn.clone() }
        }
        _ => Fate::Written {
            dn: obj.dn.clone(),
            by: by.to_string(),
        },
    }
}
