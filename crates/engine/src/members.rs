//! Member resolution (SPEC §5): what AD object, if any, each cloud member of a
//! written-back group becomes, and which AD lookups that needs.

use crate::naming::dn_key;
use rustc_hash::FxHashMap as HashMap;
use std::borrow::Cow;
use std::cell::RefCell;
use std::cmp::Ordering;
use std::rc::Rc;
use std::sync::Arc;
use wb_model::{
    AdClass, AdObjectRef, ClassMismatch, CloudDevice, CloudGroup, CloudSnapshot, CloudUser, Fate,
    FoundBy, Lookup, MemberKind, MemberOutcome, MemberRef, OutcomeMember, Resolutions,
    GROUP_TYPE_DOMAIN_LOCAL,
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
/// cloud property it comes from. Cloud-only users have none. Each is made when it is asked
/// for: a resolution stops at the first found (almost always the SID), without copying the
/// user's other identifiers.
pub(crate) fn user_lookups(user: &CloudUser) -> impl Iterator<Item = (Lookup, FoundBy)> + '_ {
    let synced = user.on_premises_sync_enabled == Some(true);
    let given = move |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| synced && !v.is_empty())
            .map(str::to_string)
    };
    let sid = move || {
        given(&user.on_premises_security_identifier)
            .map(|v| (Lookup::Sid(v), FoundBy::OnPremisesSecurityIdentifier))
    };
    let immutable = move || {
        given(&user.on_premises_immutable_id)
            .map(|v| (Lookup::ImmutableId(v), FoundBy::OnPremisesImmutableId))
    };
    let dn = move || {
        given(&user.on_premises_distinguished_name)
            .map(|v| (Lookup::Dn(v), FoundBy::OnPremisesDistinguishedName))
    };
    std::iter::once_with(sid)
        .chain(std::iter::once_with(immutable))
        .chain(std::iter::once_with(dn))
        .flatten()
}

/// The lookup that finds a device synced from AD: its computer account, by SID. Devices
/// not synced from AD (cloud-only, Entra-joined, registered) have none.
pub(crate) fn device_lookup(device: &CloudDevice) -> Option<Lookup> {
    if device.on_premises_sync_enabled != Some(true) {
        return None;
    }
    let sid = device.on_premises_security_identifier.as_deref()?.trim();
    (!sid.is_empty()).then(|| Lookup::Sid(sid.to_string()))
}

/// The lookup that finds a group synced from AD (by its SID).
pub(crate) fn synced_group_lookup(group: &CloudGroup) -> Option<Lookup> {
    let sid = group.on_premises_security_identifier.as_deref()?.trim();
    (!sid.is_empty()).then(|| Lookup::Sid(sid.to_string()))
}

/// Where every written-back group will be after this plan.
pub(crate) enum Placement<'p> {
    /// Its AD DN once renames and creates of this plan are done, with the DN's key.
    At { dn: &'p str, key: Rc<str> },
    /// Written back, but its AD group cannot be made this cycle.
    Pending,
}

/// The fate of a member that depends only on the cloud image and the lookups (a user, a
/// group synced from AD), computed once per plan: a user is a member of many groups.
struct Resolved<'a> {
    /// The member's outcome (id, name, fate), shared by all its memberships.
    outcome: MemberOutcome,
    /// The DN of the object found, when the member is written (borrowed from the lookups).
    dn: Option<&'a str>,
    /// Its rank (see [`DnOrder`]), found once (by [`Directory::new`]) for all its memberships.
    rank: Option<u32>,
}

impl<'a> Resolved<'a> {
    /// `id` is the member's shared id: its outcomes hold that copy.
    fn new(
        kind: MemberKind,
        id: &Arc<str>,
        fate: Fate,
        name: Option<Arc<str>>,
        dn: Option<&'a str>,
    ) -> Self {
        let member = OutcomeMember {
            kind,
            id: id.clone(),
        };
        Resolved {
            outcome: MemberOutcome::new(member, name, fate),
            dn,
            rank: None,
        }
    }
}

/// A member's id as the directory's maps key it: the address of its shared copy. The
/// readers give each id one copy (`wb_model::Interner`), so a plan hashes a pointer, not a
/// 36-character string, per membership; an id held in two copies is resolved twice, to
/// the same outcome. The cloud image is borrowed for the whole plan: addresses are stable.
type IdKey = usize;

fn id_key(member: &MemberRef) -> IdKey {
    address(&member.id)
}

/// The address of a shared string: equal for all its holders, stable while one is borrowed.
fn address(shared: &Arc<str>) -> usize {
    Arc::as_ptr(shared) as *const u8 as usize
}

/// Where a DN falls in the order of DN keys ([`dn_key`]): its rank among the DNs a member
/// can be written as (ranked once per plan: equal ranks ⇔ equal keys, rank order = key
/// order), or, for any other DN, its key. Members are sorted and compared by this, so a
/// plan compares integers where it compared strings, and parses each DN once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DnOrder<'d> {
    Ranked(u32),
    /// A key that no ranked DN has.
    Other(Cow<'d, str>),
}

impl DnOrder<'_> {
    fn into_owned<'o>(self) -> DnOrder<'o> {
        match self {
            DnOrder::Ranked(rank) => DnOrder::Ranked(rank),
            DnOrder::Other(key) => DnOrder::Other(Cow::Owned(key.into_owned())),
        }
    }
}

/// What member resolution reads: the cloud image, the lookup answers, the placements.
pub(crate) struct Directory<'a> {
    pub cloud: &'a CloudSnapshot,
    pub resolutions: &'a Resolutions,
    pub placements: &'a HashMap<&'a str, Placement<'a>>,
    /// User members (by id) of the groups this plan resolves.
    users: HashMap<IdKey, Resolved<'a>>,
    /// Groups synced from AD (by id) among those members.
    synced: HashMap<IdKey, Resolved<'a>>,
    /// Devices (by id) among those members.
    devices: HashMap<IdKey, Resolved<'a>>,
    /// DN → rank of every DN a member can be written as: the found objects' and the
    /// placements'. AD values are looked up here before any DN is parsed.
    ranks: HashMap<&'a str, u32>,
    /// Rank → key: the distinct keys of those DNs, sorted.
    ranked: Vec<Cow<'a, str>>,
    /// The rank of the `member` values of AD groups seen so far, by the address of their
    /// shared copy (`None`: not a DN a member can be written as). The AD reader gives each
    /// value one copy, so a converged plan looks up each distinct value once.
    values: RefCell<HashMap<usize, Option<u32>>>, // by `address`
}

/// A DN to be a value of `member`, with its place in the key order and the cloud id of
/// the nested written-back group it names, if it is one.
pub(crate) struct MemberDn<'d> {
    /// The DN, shared with the member's outcome (borrowed when the outcome is the
    /// directory's: a plan with nothing to write copies no pointer per membership).
    pub value: Cow<'d, Arc<str>>,
    pub key: DnOrder<'d>,
    pub nested: Option<&'d str>,
}

/// The members of one written-back group: their fates and the DNs AD should hold.
pub(crate) struct Membership<'d> {
    pub outcomes: Vec<MemberOutcome>,
    /// DNs to be values of `member`, in member order.
    pub dns: Vec<MemberDn<'d>>,
    pub errors: Vec<String>,
}

impl<'a> Directory<'a> {
    /// Resolves, once each, the user and synced-group members of `groups` (the groups this
    /// plan computes memberships for).
    pub fn new<'g>(
        cloud: &'a CloudSnapshot,
        resolutions: &'a Resolutions,
        placements: &'a HashMap<&'a str, Placement<'a>>,
        groups: impl IntoIterator<Item = &'g CloudGroup>,
    ) -> Self
    where
        'a: 'g,
    {
        let mut dir = Directory {
            cloud,
            resolutions,
            placements,
            users: HashMap::default(),
            synced: HashMap::default(),
            devices: HashMap::default(),
            ranks: HashMap::default(),
            ranked: Vec::new(),
            values: RefCell::default(),
        };
        // DN → key of every DN a member can be written as, ranked below.
        let mut keys: HashMap<&'a str, Cow<'a, str>> = HashMap::default();
        keys.reserve(placements.len() + resolutions.found.len());
        for (_, placement) in placements.iter() {
            if let Placement::At { dn, key } = placement {
                keys.insert(dn, Cow::Borrowed(&**key));
            }
        }
        for group in groups {
            for member in &group.members {
                let resolved = match member.kind {
                    MemberKind::User if !dir.users.contains_key(&id_key(member)) => {
                        dir.resolve_user(&member.id)
                    }
                    MemberKind::Device if !dir.devices.contains_key(&id_key(member)) => {
                        dir.resolve_device(&member.id)
                    }
                    MemberKind::Group if !dir.synced.contains_key(&id_key(member)) => {
                        match cloud.groups.get(&*member.id) {
                            Some(nested) if nested.is_synced_from_ad() => {
                                Some(dir.resolve_synced(nested, &member.id))
                            }
                            _ => continue,
                        }
                    }
                    _ => continue,
                };
                let Some(resolved) = resolved else {
                    continue;
                };
                let id = id_key(member);
                if let Some(dn) = resolved.dn {
                    keys.entry(dn).or_insert_with(|| Cow::Owned(dn_key(dn)));
                }
                match member.kind {
                    MemberKind::User => dir.users.insert(id, resolved),
                    MemberKind::Device => dir.devices.insert(id, resolved),
                    _ => dir.synced.insert(id, resolved),
                };
            }
        }
        dir.rank(keys);
        dir
    }

    /// Ranks the keys of `keys` (DN → key) and gives each resolved member its DN's rank.
    fn rank(&mut self, keys: HashMap<&'a str, Cow<'a, str>>) {
        let mut by_key: Vec<(&'a str, Cow<'a, str>)> = keys.into_iter().collect();
        by_key.sort_unstable_by(|a, b| a.1.cmp(&b.1));
        self.ranks.reserve(by_key.len());
        for (dn, key) in by_key {
            if self.ranked.last() != Some(&key) {
                self.ranked.push(key);
            }
            // Fewer DNs than u32::MAX: they are objects of one directory.
            let rank = u32::try_from(self.ranked.len() - 1).unwrap_or(u32::MAX);
            self.ranks.insert(dn, rank);
        }
        let ranks = &self.ranks;
        for r in self
            .users
            .values_mut()
            .chain(self.synced.values_mut())
            .chain(self.devices.values_mut())
        {
            r.rank = r.dn.and_then(|dn| ranks.get(dn).copied());
        }
    }

    fn resolve_user(&self, id: &Arc<str>) -> Option<Resolved<'a>> {
        let user = self.cloud.users.get(&**id)?;
        let name = user
            .display_name
            .as_deref()
            .or(user.user_principal_name.as_deref())
            .map(Arc::from);
        let (fate, dn) = if user.on_premises_sync_enabled == Some(true) {
            self.first_found(user_lookups(user), MemberKind::User)
                .unwrap_or((Fate::NotFoundOnPremises, None))
        } else {
            (Fate::CloudOnly, None)
        };
        Some(Resolved::new(MemberKind::User, id, fate, name, dn))
    }

    /// A device synced from AD is written as its computer account (found by SID, and of
    /// class `computer`); any other device is not written.
    fn resolve_device(&self, id: &Arc<str>) -> Option<Resolved<'a>> {
        let device = self.cloud.devices.get(&**id)?;
        let name = device.display_name.as_deref().map(Arc::from);
        let (fate, dn) = match device_lookup(device) {
            None => (Fate::CloudOnlyDevice, None),
            Some(l) => self
                .first_found(
                    [(l, FoundBy::OnPremisesSecurityIdentifier)],
                    MemberKind::Device,
                )
                .unwrap_or((Fate::NotFoundOnPremises, None)),
        };
        Some(Resolved::new(MemberKind::Device, id, fate, name, dn))
    }

    /// A group synced from AD (`nested`, a member by `id`) is written as its AD group.
    fn resolve_synced(&self, nested: &'a CloudGroup, id: &Arc<str>) -> Resolved<'a> {
        let found = synced_group_lookup(nested).and_then(|l| {
            self.first_found(
                [(l, FoundBy::OnPremisesSecurityIdentifier)],
                MemberKind::Group,
            )
        });
        let (fate, dn) = found.unwrap_or((Fate::SyncedGroupNotFound, None));
        let name = nested.display_name.as_deref().map(Arc::from);
        Resolved::new(MemberKind::Group, id, fate, name, dn)
    }

    /// Where a DN falls in the key order, without parsing it when it is one a member can
    /// be written as.
    pub fn order_of<'k>(&'k self, dn: &'k str) -> DnOrder<'k> {
        if let Some(rank) = self.ranks.get(dn) {
            return DnOrder::Ranked(*rank);
        }
        let key = dn_key(dn);
        match self
            .ranked
            .binary_search_by(|k| k.as_ref().cmp(key.as_str()))
        {
            Ok(rank) => DnOrder::Ranked(u32::try_from(rank).unwrap_or(u32::MAX)),
            Err(_) => DnOrder::Other(Cow::Owned(key)),
        }
    }

    /// [`Directory::order_of`] for a `member` value of an AD group of the image (borrowed
    /// for as long as the directory: its address stays its own).
    pub fn order_of_value(&self, value: &'a Arc<str>) -> DnOrder<'a> {
        let address = address(value);
        let known = self.values.borrow().get(&address).copied();
        match known {
            Some(Some(rank)) => DnOrder::Ranked(rank),
            Some(None) => self.order_of(value).into_owned(),
            None => {
                let order = self.order_of(value).into_owned();
                let rank = match order {
                    DnOrder::Ranked(rank) => Some(rank),
                    DnOrder::Other(_) => None,
                };
                self.values.borrow_mut().insert(address, rank);
                order
            }
        }
    }

    /// The key of a DN, without parsing it when it is one a member can be written as.
    pub fn key_of(&self, dn: &str) -> Cow<'_, str> {
        match self.ranks.get(dn) {
            Some(rank) => Cow::Borrowed(&self.ranked[*rank as usize]),
            None => Cow::Owned(dn_key(dn)),
        }
    }

    /// The key of a DN ordered by [`Directory::order_of`].
    pub fn key_text<'k>(&'k self, order: &'k DnOrder) -> &'k str {
        match order {
            DnOrder::Ranked(rank) => &self.ranked[*rank as usize],
            DnOrder::Other(key) => key,
        }
    }

    /// The order of two DNs' keys.
    pub fn cmp_order(&self, a: &DnOrder, b: &DnOrder) -> Ordering {
        match (a, b) {
            (DnOrder::Ranked(a), DnOrder::Ranked(b)) => a.cmp(b),
            _ => self.key_text(a).cmp(self.key_text(b)),
        }
    }

    pub fn membership<'d>(&'d self, group: &'d CloudGroup) -> Membership<'d> {
        let mut m = Membership {
            outcomes: Vec::with_capacity(group.members.len()),
            dns: Vec::with_capacity(group.members.len()),
            errors: Vec::new(),
        };
        let mut domain_local = false;
        for member in &group.members {
            let (outcome, written) = self.fate(member);
            if let Some(dn) = written {
                m.dns.push(dn);
            }
            m.errors.extend(member_error(&outcome, &mut domain_local));
            m.outcomes.push(outcome);
        }
        m
    }

    /// A member's outcome (shared with its other memberships when its fate does not
    /// depend on the group: a resolved user, device or synced group), and the DN it is
    /// written as (for a written member only).
    pub fn fate<'d>(&'d self, member: &'d MemberRef) -> (MemberOutcome, Option<MemberDn<'d>>) {
        let alone = |fate: Fate, name: Option<Arc<str>>| {
            let who = OutcomeMember {
                kind: member.kind,
                id: member.id.clone(),
            };
            MemberOutcome::new(who, name, fate)
        };
        let from = |r: &'d Resolved<'a>| {
            let dn = r.dn.map(|dn| MemberDn {
                value: written_value(&r.outcome, dn),
                key: match r.rank {
                    Some(rank) => DnOrder::Ranked(rank),
                    None => self.order_of(dn),
                },
                nested: None,
            });
            (r.outcome.clone(), dn)
        };
        let owned = |r: Resolved<'a>| {
            let dn = r.dn.map(|dn| MemberDn {
                value: Cow::Owned(written_value(&r.outcome, dn).into_owned()),
                key: self.order_of(dn),
                nested: None,
            });
            (r.outcome, dn)
        };
        match member.kind {
            MemberKind::User => match self.users.get(&id_key(member)) {
                Some(r) => from(r),
                // Not resolved up front: not a member of the groups given to `new`.
                None => match self.resolve_user(&member.id) {
                    Some(r) => owned(r),
                    None => (alone(Fate::UnknownObject, None), None),
                },
            },
            MemberKind::Group => match self.cloud.groups.get(&*member.id) {
                None => (alone(Fate::UnknownObject, None), None),
                Some(nested) => {
                    if nested.is_synced_from_ad() {
                        return match self.synced.get(&id_key(member)) {
                            Some(r) => from(r),
                            None => owned(self.resolve_synced(nested, &member.id)),
                        };
                    }
                    let name = nested.display_name.as_deref().map(Arc::from);
                    match self.placements.get(nested.id.as_str()) {
                        Some(Placement::At { dn, .. }) => {
                            let value: Arc<str> = Arc::from(*dn);
                            let fate = Fate::Written {
                                dn: value.clone(),
                                by: FoundBy::WrittenBackGroup,
                            };
                            let at = MemberDn {
                                value: Cow::Owned(value),
                                key: self.order_of(dn),
                                nested: Some(nested.id.as_str()),
                            };
                            (alone(fate, name), Some(at))
                        }
                        Some(Placement::Pending) => (alone(Fate::NestedGroupPending, name), None),
                        None => (alone(Fate::NestedGroupNotEnabled, name), None),
                    }
                }
            },
            MemberKind::Device => match self.devices.get(&id_key(member)) {
                Some(r) => from(r),
                None => match self.resolve_device(&member.id) {
                    Some(r) => owned(r),
                    None => (alone(Fate::UnknownObject, None), None),
                },
            },
            MemberKind::OrgContact | MemberKind::ServicePrincipal | MemberKind::Other => {
                (alone(Fate::UnsupportedKind, None), None)
            }
        }
    }

    /// The first lookup that found an object, as a fate: written only when the object is
    /// of the class a member of `kind` must have (and not a domain-local group). A first
    /// find of the wrong class refuses the member; later lookups are not consulted, since
    /// the cloud object's onPremises* values contradict each other.
    fn first_found(
        &self,
        lookups: impl IntoIterator<Item = (Lookup, FoundBy)>,
        kind: MemberKind,
    ) -> Option<(Fate, Option<&'a str>)> {
        // A kind with no AD class matches nothing.
        let expected = expected_class(kind).unwrap_or(AdClass::Other(String::new()));
        let resolutions = self.resolutions;
        lookups.into_iter().find_map(|(lookup, by)| {
            resolutions.found.get(&lookup).map(|obj| {
                let fate = fate_of(obj, by, &expected);
                let dn = matches!(fate, Fate::Written { .. }).then_some(obj.dn.as_str());
                (fate, dn)
            })
        })
    }

    /// managedBy: the DN of the first owner (in id order) that resolves to an AD user.
    pub fn manager(&self, group: &CloudGroup) -> Option<String> {
        group
            .owners
            .iter()
            .filter(|o| o.kind == MemberKind::User)
            .filter_map(|o| self.cloud.users.get(&*o.id))
            .find_map(|user| {
                user_lookups(user)
                    .find_map(|(l, _)| self.resolutions.found.get(&l))
                    .filter(|obj| Some(&obj.class) == expected_class(MemberKind::User).as_ref())
                    .map(|obj| obj.dn.clone())
            })
    }
}

/// The error a member's outcome gives its group, in member order: each member of the
/// wrong class (someone may be trying to nest a privileged group: the admin must see it),
/// and Microsoft's error once for the first domain-local group (`domain_local` says
/// whether one came before).
pub(crate) fn member_error(outcome: &MemberOutcome, domain_local: &mut bool) -> Option<String> {
    match &outcome.fate {
        Fate::DomainLocalGroup { .. } if !*domain_local => {
            *domain_local = true;
            Some(DOMAIN_LOCAL_ERROR.to_string())
        }
        Fate::ClassMismatch { .. } => Some(format!(
            "member {} ({}) {}",
            outcome.name.as_deref().unwrap_or("?"),
            outcome.member.id,
            outcome.fate.text()
        )),
        _ => None,
    }
}

/// The DN a written member's outcome holds (its shared copy), or a new copy of `dn`.
fn written_value<'o>(outcome: &'o MemberOutcome, dn: &str) -> Cow<'o, Arc<str>> {
    match &outcome.fate {
        Fate::Written { dn: shared, .. } => Cow::Borrowed(shared),
        _ => Cow::Owned(Arc::from(dn)),
    }
}

fn fate_of(obj: &AdObjectRef, by: FoundBy, expected: &AdClass) -> Fate {
    if &obj.class != expected {
        return Fate::ClassMismatch(Box::new(ClassMismatch {
            dn: Arc::from(obj.dn.as_str()),
            expected: expected.clone(),
            found: obj.class.clone(),
        }));
    }
    match obj.group_type {
        Some(t) if t & GROUP_TYPE_DOMAIN_LOCAL != 0 => Fate::DomainLocalGroup {
            dn: Arc::from(obj.dn.as_str()),
        },
        _ => Fate::Written {
            dn: Arc::from(obj.dn.as_str()),
            by,
        },
    }
}
