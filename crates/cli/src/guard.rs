//! The ownership guard: the one place that decides whether an operation of a plan may touch
//! AD. It issues [`Checked`] operations — a type nothing else can build — and the exporter
//! sends only those, addressed by the objectGUID the guard approved (SPEC §6, §10).

use std::borrow::Cow;
use std::collections::BTreeMap;
use wb_ad::Applied;
use wb_engine::naming::{dn_eq, dn_key, is_at_or_under, is_under};
use wb_model::{
    anchor_value, Action, AdSnapshot, CloudSnapshot, GroupAttr, Joins, Operation, Plan,
};

/// Attributes a create may carry besides the managed ones.
const CREATE_ONLY: &[&str] = &["objectClass", "cn"];

/// Whether writeback may ever write `attr` on a group it owns (SPEC §4: the managed
/// attributes, [`GroupAttr::ALL`], and nothing else).
fn writable(attr: &str) -> bool {
    GroupAttr::parse(attr).is_some()
}

/// The anchor attributes: only ever set to the anchor of the group the operation serves.
fn is_anchor(attr: &str) -> bool {
    GroupAttr::parse(attr).is_some_and(GroupAttr::is_anchor)
}

/// An operation the guard approved, with its action as it must be sent: every action on an
/// existing object names that object's objectGUID. Only [`OwnershipGuard::check`] makes one.
#[derive(Debug)]
pub struct Checked<'a> {
    op: &'a Operation,
    action: Cow<'a, Action>,
}

impl Checked<'_> {
    pub fn action(&self) -> &Action {
        &self.action
    }
}

/// An AD object writeback owns: the cloud group it serves and where it is now.
#[derive(Debug, Clone)]
struct Owned {
    group: String,
    dn: String,
}

/// What a cloud group owns: an object known by its objectGUID, or one this export created
/// whose objectGUID is not read yet (the exporter reads them back after the creates).
#[derive(Debug, Clone)]
enum Holding {
    /// lower-case objectGUID
    Object(String),
    /// DN key of the object created
    Created(String),
}

/// Owned objects are those under a managed OU that carry the anchor of a group writeback
/// writes back (or hold its join), the objects writeback made or adopted for a group
/// wherever they are now (joined by objectGUID, anchor intact or cleared) — a changed OU
/// moves them —, the AD groups cloud-managed groups name by SID ([`Self::adopting`]), and
/// the groups this export created, from their create on. Protected objects (critical,
/// `adminCount = 1`, builtin or well-known SIDs) never are.
pub struct OwnershipGuard {
    managed_ous: Vec<String>,
    /// lower-case objectGUID → owner
    owned: BTreeMap<String, Owned>,
    /// cloud id (lower case) → what it owns
    by_group: BTreeMap<String, Holding>,
    /// DN key of an object created by this export → its owner (the DN as created)
    created: BTreeMap<String, Owned>,
}

impl OwnershipGuard {
    pub fn new(managed_ous: Vec<String>, plan: &Plan, ad: &AdSnapshot, joins: &Joins) -> Self {
        Self::for_groups(managed_ous, plan, ad, joins, None)
    }

    /// [`Self::new`] for the operations of the cloud groups `only` (ids) — a cycle that
    /// planned a few groups: the objects considered are those joined to or anchored for
    /// those groups, and those the plan's operations name. Every operation of those groups
    /// is decided as with the whole view (an object another group holds is refused either
    /// way; the refusal may name that group or not).
    pub fn for_groups(
        managed_ous: Vec<String>,
        plan: &Plan,
        ad: &AdSnapshot,
        joins: &Joins,
        only: Option<&std::collections::HashSet<String>>,
    ) -> Self {
        use crate::adimage::lower;
        use std::collections::{HashMap, HashSet};
        let foreign: std::collections::BTreeSet<String> =
            plan.foreign.iter().map(|f| dn_key(&f.dn)).collect();
        let joined: HashMap<std::borrow::Cow<str>, &str> = joins
            .iter()
            .map(|(id, j)| (lower(&j.guid), id.as_str()))
            .collect();
        let only: Option<HashSet<String>> =
            only.map(|ids| ids.iter().map(|id| id.to_ascii_lowercase()).collect());
        let targets: HashSet<String> = match &only {
            Some(_) => plan
                .operations
                .iter()
                .filter_map(|o| o.action.guid())
                .map(str::to_ascii_lowercase)
                .collect(),
            None => HashSet::new(),
        };
        let mut guard = OwnershipGuard {
            managed_ous,
            owned: BTreeMap::new(),
            by_group: BTreeMap::new(),
            created: BTreeMap::new(),
        };
        // Joined objects first: a group's join outranks any other object with its anchor.
        let mut candidates: Vec<(&wb_model::AdGroup, &str, bool)> = Vec::new();
        for g in &ad.groups {
            let guid = lower(&g.guid);
            let joined_to = joined.get(guid.as_ref()).copied();
            if let Some(only) = &only {
                let theirs = |id: &str| only.contains(lower(id).as_ref());
                if !(targets.contains(guid.as_ref())
                    || joined_to.is_some_and(theirs)
                    || g.anchor().is_some_and(theirs))
                {
                    continue;
                }
            }
            // Critical or protected objects (Domain Admins, adminCount = 1, builtin groups)
            // are never written, whatever the plan, the cloud or the joins say.
            if (!foreign.is_empty() && foreign.contains(&dn_key(&g.dn))) || g.protection().is_some()
            {
                continue;
            }
            match joined_to {
                // Made by writeback: its own wherever it is, unless its anchor now names
                // another group.
                Some(id) if g.anchor().is_none_or(|a| a.eq_ignore_ascii_case(id)) => {
                    candidates.push((g, id, true))
                }
                Some(_) => {}
                None if guard.in_managed_ou(&g.dn) => {
                    if let Some(a) = g.anchor() {
                        candidates.push((g, a, false));
                    }
                }
                None => {}
            }
        }
        candidates.sort_by_key(|(_, _, joined)| !joined);
        let mut contested = std::collections::BTreeSet::new();
        for (g, group, joined) in candidates {
            let key = group.to_ascii_lowercase();
            if let Some(first) = guard.by_group.get(&key) {
                // A second object for one group: a joined one keeps it; between unjoined
                // ones nobody is owned (the engine reports the conflict).
                let first_joined = joins.get(group).is_some_and(
                    |j| matches!(first, Holding::Object(g) if j.guid.eq_ignore_ascii_case(g)),
                );
                if !first_joined && !joined {
                    contested.insert(key);
                }
                continue;
            }
            let guid = g.guid.to_ascii_lowercase();
            guard.by_group.insert(key, Holding::Object(guid.clone()));
            guard.owned.insert(
                guid,
                Owned {
                    group: group.to_string(),
                    dn: g.dn.clone(),
                },
            );
        }
        for key in contested {
            if let Some(Holding::Object(guid)) = guard.by_group.get(&key) {
                guard.owned.remove(guid);
            }
        }
        guard
    }

    /// Adds the AD groups that cloud-managed groups take over in place (SPEC §10): a group
    /// whose objectSid is the `onPremisesSecurityIdentifier` of a cloud group converted to
    /// cloud management, wherever it is, becomes that group's — unless it is protected,
    /// carries another group's anchor, is already owned, or the cloud group already owns
    /// an object. Checked here from the images, independently of the engine.
    pub fn adopting(mut self, cloud: &CloudSnapshot, ad: &AdSnapshot) -> Self {
        let by_sid: BTreeMap<String, &str> = cloud
            .groups
            .values()
            .filter(|g| g.is_cloud_managed_ad_group())
            .filter_map(|g| Some((g.ad_sid()?.to_ascii_uppercase(), g.id.as_str())))
            .collect();
        if by_sid.is_empty() {
            return self;
        }
        for g in &ad.groups {
            let Some(group) = g
                .sid
                .as_deref()
                .and_then(|s| by_sid.get(&s.trim().to_ascii_uppercase()))
            else {
                continue;
            };
            let guid = g.guid.to_ascii_lowercase();
            let free = g.protection().is_none()
                && g.anchor().is_none_or(|a| a.eq_ignore_ascii_case(group))
                && !self.owned.contains_key(&guid)
                && !self.by_group.contains_key(&group.to_ascii_lowercase());
            if free {
                self.by_group
                    .insert(group.to_ascii_lowercase(), Holding::Object(guid.clone()));
                self.owned.insert(
                    guid,
                    Owned {
                        group: group.to_string(),
                        dn: g.dn.clone(),
                    },
                );
            }
        }
        self
    }

    /// Strictly below a managed OU (the OU itself is never written).
    fn in_managed_ou(&self, dn: &str) -> bool {
        self.managed_ous.iter().any(|ou| is_under(dn, ou))
    }

    fn is_managed_ou(&self, dn: &str) -> bool {
        self.managed_ous.iter().any(|ou| is_at_or_under(dn, ou))
    }

    /// The object `guid`, owned by `group` and currently at `dn`.
    fn owned_at(&self, guid: &str, group: &str, dn: &str) -> Result<(), String> {
        match self.owned.get(&guid.to_ascii_lowercase()) {
            Some(o) if !o.group.eq_ignore_ascii_case(group) => Err(format!(
                "object {guid} belongs to group {}, not to {group}",
                o.group
            )),
            Some(o) if !dn_eq(&o.dn, dn) => Err(format!(
                "the operation names {dn}, but object {guid} is {}",
                o.dn
            )),
            Some(_) => Ok(()),
            None => Err(format!(
                "object {guid} is not owned by writeback (no anchor of a written-back group, \
                 or outside the managed OUs)"
            )),
        }
    }

    fn anchor_values_ok(group: &str, attr: &str, values: &[String]) -> Result<(), String> {
        let anchor = anchor_value(group);
        if values.len() == 1 && values[0] == anchor {
            Ok(())
        } else {
            Err(format!(
                "{attr} may only be set to {anchor}, not {values:?}"
            ))
        }
    }

    /// Checks one operation; `Err` says why it must not run.
    pub fn check<'a>(&self, op: &'a Operation) -> Result<Checked<'a>, String> {
        let approved = |action: Cow<'a, Action>| Checked { op, action };
        match &op.action {
            Action::Create { dn, attrs, .. } => {
                if !self.in_managed_ou(dn) {
                    return Err(format!("{dn} is not under a managed OU"));
                }
                if let Some(held) = self.by_group.get(&op.group.to_ascii_lowercase()) {
                    let existing = match held {
                        Holding::Object(guid) => self.owned.get(guid),
                        Holding::Created(key) => self.created.get(key),
                    };
                    return Err(format!(
                        "group {} already has an AD object ({}): a create would duplicate it",
                        op.group,
                        existing
                            .map(|o| o.dn.as_str())
                            .unwrap_or("created by this export")
                    ));
                }
                let admin_description = GroupAttr::AdminDescription.name();
                match attrs.get(admin_description) {
                    Some(v) => Self::anchor_values_ok(&op.group, admin_description, v)?,
                    None => {
                        return Err(format!(
                            "create of {dn} lacks the anchor {}",
                            anchor_value(&op.group)
                        ))
                    }
                }
                for (attr, values) in attrs {
                    if is_anchor(attr) {
                        Self::anchor_values_ok(&op.group, attr, values)?;
                    } else if !writable(attr)
                        && !CREATE_ONLY.iter().any(|a| a.eq_ignore_ascii_case(attr))
                    {
                        return Err(format!(
                            "create of {dn} would write {attr}, which writeback does not manage"
                        ));
                    }
                }
                let classes = attrs.get("objectClass").map(|v| &**v).unwrap_or(&[]);
                if !classes.iter().any(|c| c.eq_ignore_ascii_case("group"))
                    || classes
                        .iter()
                        .any(|c| !c.eq_ignore_ascii_case("group") && !c.eq_ignore_ascii_case("top"))
                {
                    return Err(format!("create of {dn} is not a plain group: {classes:?}"));
                }
                Ok(approved(Cow::Borrowed(&op.action)))
            }
            Action::Rename {
                dn,
                guid,
                new_parent,
                new_dn,
                ..
            } => {
                self.owned_at(guid, &op.group, dn)?;
                if let Some(p) = new_parent {
                    if !self.is_managed_ou(p) {
                        return Err(format!("new parent {p} is not a managed OU"));
                    }
                    if !is_under(new_dn, p) {
                        return Err(format!("{new_dn} is not under the new parent {p}"));
                    }
                }
                if !self.in_managed_ou(new_dn) {
                    return Err(format!("{new_dn} is not under a managed OU"));
                }
                Ok(approved(Cow::Borrowed(&op.action)))
            }
            Action::Modify { dn, guid, changes } => {
                self.owned_at(guid, &op.group, dn)?;
                for c in changes {
                    if !writable(&c.attr) {
                        return Err(format!("writeback does not manage attribute {}", c.attr));
                    }
                    if is_anchor(&c.attr) {
                        Self::anchor_values_ok(&op.group, &c.attr, &c.after)?;
                    }
                }
                Ok(approved(Cow::Borrowed(&op.action)))
            }
            Action::AddMembers { dn, guid, members } => match guid {
                Some(g) => {
                    self.owned_at(g, &op.group, dn)?;
                    Ok(approved(Cow::Borrowed(&op.action)))
                }
                // A group created earlier in this export for this group: by the objectGUID
                // the DC gave it when known; else by the DN it was just created at (its
                // identity is read back after the creates).
                None => {
                    let created = self
                        .created
                        .get(&dn_key(dn))
                        .filter(|o| o.group.eq_ignore_ascii_case(&op.group))
                        .ok_or_else(|| {
                            format!("{dn} was not created for group {} by this export", op.group)
                        })?;
                    match self.by_group.get(&created.group.to_ascii_lowercase()) {
                        Some(Holding::Object(g)) => {
                            self.owned_at(g, &op.group, dn)?;
                            Ok(approved(Cow::Owned(Action::AddMembers {
                                dn: dn.clone(),
                                guid: Some(g.clone()),
                                members: members.clone(),
                            })))
                        }
                        Some(Holding::Created(key)) if *key == dn_key(dn) => {
                            Ok(approved(Cow::Borrowed(&op.action)))
                        }
                        _ => Err(format!(
                            "{dn} is no longer the object of group {}",
                            op.group
                        )),
                    }
                }
            },
            Action::RemoveMembers { dn, guid, .. } | Action::Delete { dn, guid } => {
                self.owned_at(guid, &op.group, dn)?;
                Ok(approved(Cow::Borrowed(&op.action)))
            }
        }
    }

    /// Records what an approved operation did: a created object becomes owned — by its
    /// DN until its objectGUID is known ([`Self::identify`]) —, a renamed one is at its new
    /// DN, a deleted one is gone.
    pub fn record(&mut self, checked: &Checked, applied: &Applied) {
        let group = &checked.op.group;
        match checked.action() {
            Action::Create { .. } => {
                let key = dn_key(&applied.dn);
                let owner = Owned {
                    group: group.clone(),
                    dn: applied.dn.clone(),
                };
                self.created.insert(key.clone(), owner.clone());
                self.by_group
                    .insert(group.to_ascii_lowercase(), Holding::Created(key));
                if let Some(guid) = &applied.guid {
                    self.identify(&applied.dn, guid);
                }
            }
            Action::Rename { guid, new_dn, .. } => {
                if let Some(o) = self.owned.get_mut(&guid.to_ascii_lowercase()) {
                    o.dn = new_dn.clone();
                }
            }
            Action::Delete { guid, .. } => {
                let guid = guid.to_ascii_lowercase();
                self.owned.remove(&guid);
                self.by_group.remove(&group.to_ascii_lowercase());
            }
            _ => {}
        }
    }

    /// The objectGUID of an object this export created at `dn` (read back after the
    /// creates): from now on it is owned, and written, by that objectGUID.
    pub fn identify(&mut self, dn: &str, guid: &str) {
        let key = dn_key(dn);
        let Some(owner) = self.created.get(&key) else {
            return;
        };
        let group = owner.group.to_ascii_lowercase();
        if !matches!(self.by_group.get(&group), Some(Holding::Created(k)) if *k == key) {
            return;
        }
        let guid = guid.to_ascii_lowercase();
        self.owned.insert(guid.clone(), owner.clone());
        self.by_group.insert(group, Holding::Object(guid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wb_model::{AdGroup, AttrChange, Join};

    const OU: &str = "OU=Groups,OU=WB,DC=lab,DC=test";
    const OWNED_GUID: &str = "11111111-1111-1111-1111-111111111111";
    const FOREIGN_GUID: &str = "22222222-2222-2222-2222-222222222222";
    const OTHER_GUID: &str = "33333333-3333-3333-3333-333333333333";
    const G: &str = "aaaaaaaa-0000-0000-0000-000000000001";
    const H: &str = "aaaaaaaa-0000-0000-0000-000000000002";

    fn group(dn: &str, guid: &str, anchor: Option<&str>) -> AdGroup {
        AdGroup {
            dn: dn.into(),
            guid: guid.into(),
            cn: "x".into(),
            admin_description: anchor.map(anchor_value),
            ..AdGroup::default()
        }
    }

    fn owned_dn() -> String {
        format!("CN=Owned,{OU}")
    }
    fn foreign_dn() -> String {
        format!("CN=Foreign,{OU}")
    }

    fn guard() -> OwnershipGuard {
        let ad = AdSnapshot {
            groups: vec![
                group(&owned_dn(), OWNED_GUID, Some(G)),
                group(&foreign_dn(), FOREIGN_GUID, None),
                group(&format!("CN=H,{OU}"), OTHER_GUID, Some(H)),
            ],
            ..AdSnapshot::default()
        };
        OwnershipGuard::new(vec![OU.to_string()], &Plan::default(), &ad, &Joins::new())
    }

    fn op(group: &str, action: Action) -> Operation {
        Operation {
            group: group.into(),
            name: "n".into(),
            action,
            reason: "test".into(),
        }
    }

    fn modify(dn: &str, guid: &str, attr: &str, after: &str) -> Action {
        Action::Modify {
            dn: dn.into(),
            guid: guid.into(),
            changes: vec![AttrChange {
                attr: attr.into(),
                before: vec![],
                after: vec![after.into()],
            }],
        }
    }

    /// A guard built for a few groups decides their operations as the whole one does:
    /// owned objects pass, an object joined to another group but anchored for this one, or
    /// held by another group, or contested between two anchors, or foreign, is refused.
    #[test]
    fn a_guard_for_some_groups_decides_their_operations_as_the_whole_guard() {
        const J: &str = "aaaaaaaa-0000-0000-0000-000000000003";
        const K: &str = "aaaaaaaa-0000-0000-0000-000000000004";
        const JOINED_ELSEWHERE: &str = "44444444-4444-4444-4444-444444444444";
        const TWIN_A: &str = "55555555-5555-5555-5555-555555555555";
        const TWIN_B: &str = "66666666-6666-6666-6666-666666666666";
        let ad = AdSnapshot {
            groups: vec![
                group(&owned_dn(), OWNED_GUID, Some(G)),
                group(&foreign_dn(), FOREIGN_GUID, None),
                group(&format!("CN=H,{OU}"), OTHER_GUID, Some(H)),
                // Anchored for J but joined to H: H's (its anchor names another group: nobody's).
                group(&format!("CN=J,{OU}"), JOINED_ELSEWHERE, Some(J)),
                // Two unjoined objects with K's anchor: contested, nobody's.
                group(&format!("CN=K1,{OU}"), TWIN_A, Some(K)),
                group(&format!("CN=K2,{OU}"), TWIN_B, Some(K)),
            ],
            ..AdSnapshot::default()
        };
        let joins: Joins = [Join {
            group: H.into(),
            guid: JOINED_ELSEWHERE.to_uppercase(),
            sid: None,
            dn: format!("CN=J,{OU}"),
            adopted: false,
        }]
        .into_iter()
        .map(|j| (j.group.clone(), j))
        .collect();
        let ops = vec![
            op(G, modify(&owned_dn(), OWNED_GUID, "description", "d")),
            op(G, modify(&foreign_dn(), FOREIGN_GUID, "description", "d")),
            op(
                G,
                modify(&format!("CN=H,{OU}"), OTHER_GUID, "description", "d"),
            ),
            op(
                J,
                modify(&format!("CN=J,{OU}"), JOINED_ELSEWHERE, "description", "d"),
            ),
            op(
                K,
                modify(&format!("CN=K1,{OU}"), TWIN_A, "description", "d"),
            ),
            op(
                K,
                modify(&format!("CN=K2,{OU}"), TWIN_B, "description", "d"),
            ),
        ];
        let plan = Plan {
            operations: ops.clone(),
            ..Plan::default()
        };
        let whole = OwnershipGuard::new(vec![OU.to_string()], &plan, &ad, &joins);
        let only: std::collections::HashSet<String> =
            [G, J, K].iter().map(|s| s.to_uppercase()).collect();
        let some =
            OwnershipGuard::for_groups(vec![OU.to_string()], &plan, &ad, &joins, Some(&only));
        let verdicts: Vec<(bool, bool)> = ops
            .iter()
            .map(|o| (whole.check(o).is_ok(), some.check(o).is_ok()))
            .collect();
        assert_eq!(
            verdicts,
            vec![
                (true, true),
                (false, false),
                (false, false),
                (false, false),
                (false, false),
                (false, false)
            ]
        );
    }

    #[test]
    fn an_owned_object_is_written_by_its_guid() {
        let o = op(G, modify(&owned_dn(), OWNED_GUID, "description", "d"));
        let checked = guard().check(&o).expect("approved");
        assert!(matches!(checked.action(), Action::Modify { guid, .. } if guid == OWNED_GUID));
    }

    #[test]
    fn a_foreign_dn_with_an_owned_guid_is_refused() {
        let o = op(G, modify(&foreign_dn(), OWNED_GUID, "description", "d"));
        let why = guard().check(&o).unwrap_err();
        assert!(why.contains("names"), "{why}");
        let o = op(
            G,
            Action::Delete {
                dn: foreign_dn(),
                guid: OWNED_GUID.into(),
            },
        );
        assert!(guard().check(&o).is_err());
    }

    #[test]
    fn an_owned_dn_with_a_foreign_guid_is_refused() {
        let o = op(G, modify(&owned_dn(), FOREIGN_GUID, "description", "d"));
        assert!(guard().check(&o).unwrap_err().contains("not owned"));
        let o = op(
            G,
            Action::RemoveMembers {
                dn: owned_dn(),
                guid: FOREIGN_GUID.into(),
                members: vec!["CN=u,DC=lab,DC=test".into()],
            },
        );
        assert!(guard().check(&o).is_err());
    }

    #[test]
    fn another_groups_object_is_refused() {
        let o = op(
            G,
            modify(&format!("CN=H,{OU}"), OTHER_GUID, "description", "d"),
        );
        assert!(guard().check(&o).unwrap_err().contains("belongs to group"));
    }

    #[test]
    fn a_create_outside_the_managed_ous_is_refused() {
        for dn in [
            "CN=X,CN=Users,DC=lab,DC=test".to_string(),
            OU.to_string(),
            format!(r"CN=X,OU=Evil\,{OU}"),
            r"CN=X,OU=Evil\,OU=Groups,OU=WB,DC=lab,DC=test".to_string(),
        ] {
            let new = "aaaaaaaa-0000-0000-0000-000000000003";
            let o = op(new, create(&dn, new));
            assert!(guard().check(&o).is_err(), "{dn} must be refused");
        }
    }

    fn create(dn: &str, group: &str) -> Action {
        let mut attrs = BTreeMap::new();
        attrs.insert(
            "objectClass".into(),
            vec!["top".into(), "group".into()].into(),
        );
        attrs.insert("cn".into(), vec!["X".into()].into());
        attrs.insert("adminDescription".into(), vec![anchor_value(group)].into());
        Action::Create {
            dn: dn.into(),
            attrs,
            members: vec![],
            sam_account_name_fallbacks: vec!["X_1".into()],
        }
    }

    #[test]
    fn a_create_for_a_group_that_has_an_object_is_refused() {
        let o = op(G, create(&format!("CN=Second,{OU}"), G));
        assert!(guard().check(&o).unwrap_err().contains("duplicate"));
        let new = "aaaaaaaa-0000-0000-0000-000000000009";
        assert!(guard()
            .check(&op(new, create(&format!("CN=New,{OU}"), new)))
            .is_ok());
    }

    #[test]
    fn unmanaged_attributes_and_other_anchors_are_refused() {
        let o = op(G, modify(&owned_dn(), OWNED_GUID, "member", "CN=x"));
        assert!(guard().check(&o).unwrap_err().contains("does not manage"));
        let o = op(
            G,
            modify(&owned_dn(), OWNED_GUID, "userAccountControl", "512"),
        );
        assert!(guard().check(&o).is_err());
        let o = op(
            G,
            modify(
                &owned_dn(),
                OWNED_GUID,
                "adminDescription",
                &anchor_value(H),
            ),
        );
        assert!(guard().check(&o).unwrap_err().contains("may only be set"));
        let new = "aaaaaaaa-0000-0000-0000-000000000009";
        let mut c = create(&format!("CN=New,{OU}"), new);
        if let Action::Create { attrs, .. } = &mut c {
            attrs.insert(
                "msDS-ExternalDirectoryObjectId".into(),
                vec![anchor_value(H)].into(),
            );
        }
        assert!(guard().check(&op(new, c)).is_err());
        let mut c = create(&format!("CN=New,{OU}"), new);
        if let Action::Create { attrs, .. } = &mut c {
            attrs.insert(
                "objectClass".into(),
                vec!["top".into(), "user".into()].into(),
            );
        }
        assert!(guard().check(&op(new, c)).is_err());
    }

    #[test]
    fn a_rename_out_of_the_managed_ous_is_refused() {
        let rename = |new_parent: Option<&str>, new_dn: &str| {
            op(
                G,
                Action::Rename {
                    dn: owned_dn(),
                    guid: OWNED_GUID.into(),
                    new_rdn: "CN=Y".into(),
                    new_parent: new_parent.map(str::to_string),
                    new_dn: new_dn.into(),
                },
            )
        };
        assert!(guard().check(&rename(None, &format!("CN=Y,{OU}"))).is_ok());
        assert!(guard()
            .check(&rename(
                Some("CN=Users,DC=lab,DC=test"),
                "CN=Y,CN=Users,DC=lab,DC=test"
            ))
            .is_err());
    }

    #[test]
    fn a_joined_object_outside_the_managed_ous_is_still_owned() {
        let old = "CN=Owned,OU=Old,DC=lab,DC=test";
        let ad = AdSnapshot {
            groups: vec![group(old, OWNED_GUID, Some(G))],
            ..AdSnapshot::default()
        };
        let mut joins = Joins::new();
        joins.insert(
            G.into(),
            Join {
                group: G.into(),
                guid: OWNED_GUID.into(),
                sid: None,
                dn: old.into(),
                adopted: false,
            },
        );
        let guard = OwnershipGuard::new(vec![OU.to_string()], &Plan::default(), &ad, &joins);
        let o = op(
            G,
            Action::Rename {
                dn: old.into(),
                guid: OWNED_GUID.into(),
                new_rdn: "CN=Owned".into(),
                new_parent: Some(OU.into()),
                new_dn: owned_dn(),
            },
        );
        assert!(guard.check(&o).is_ok());
        // An unjoined object there with the same anchor is not.
        let ad = AdSnapshot {
            groups: vec![group(old, FOREIGN_GUID, Some(G))],
            ..AdSnapshot::default()
        };
        let guard = OwnershipGuard::new(vec![OU.to_string()], &Plan::default(), &ad, &joins);
        let o = op(G, modify(old, FOREIGN_GUID, "description", "d"));
        assert!(guard.check(&o).is_err());
    }

    #[test]
    fn members_of_a_group_created_by_this_export_go_to_its_guid() {
        let mut guard = guard();
        let new = "aaaaaaaa-0000-0000-0000-000000000009";
        let dn = format!("CN=New,{OU}");
        let created = op(new, create(&dn, new));
        let checked = guard.check(&created).expect("create approved");
        let applied = Applied {
            dn: dn.clone(),
            guid: Some("44444444-4444-4444-4444-444444444444".into()),
            ..Applied::default()
        };
        guard.record(&checked, &applied);
        let add = op(
            new,
            Action::AddMembers {
                dn: dn.clone(),
                guid: None,
                members: vec!["CN=u,DC=lab,DC=test".into()],
            },
        );
        let checked = guard.check(&add).expect("approved");
        assert!(
            matches!(checked.action(), Action::AddMembers { guid: Some(g), .. } if g == "44444444-4444-4444-4444-444444444444")
        );
        // Another group may not add members to it.
        let add = op(
            G,
            Action::AddMembers {
                dn,
                guid: None,
                members: vec![],
            },
        );
        assert!(guard.check(&add).is_err());
    }

    #[test]
    fn a_group_created_before_its_guid_is_read_back_is_owned_by_its_dn() {
        let mut guard = guard();
        let new = "aaaaaaaa-0000-0000-0000-000000000009";
        let dn = format!("CN=New,{OU}");
        let created = op(new, create(&dn, new));
        let checked = guard.check(&created).expect("create approved");
        guard.record(
            &checked,
            &Applied {
                dn: dn.clone(),
                ..Applied::default()
            },
        );
        // Its members go to the DN it was just created at (spelled any way).
        let add = |group: &str, dn: &str| {
            op(
                group,
                Action::AddMembers {
                    dn: dn.into(),
                    guid: None,
                    members: vec!["CN=u,DC=lab,DC=test".into()],
                },
            )
        };
        let o = add(new, &dn);
        let checked = guard.check(&o).expect("approved");
        assert!(matches!(
            checked.action(),
            Action::AddMembers { guid: None, .. }
        ));
        assert!(guard
            .check(&add(new, &format!("cn=new, {}", OU.to_lowercase())))
            .is_ok());
        // Nobody else's, nor a DN it was not created at; and no second object for it.
        assert!(guard.check(&add(G, &dn)).is_err());
        assert!(guard.check(&add(new, &format!("CN=Other,{OU}"))).is_err());
        let again = op(new, create(&format!("CN=New2,{OU}"), new));
        assert!(guard.check(&again).unwrap_err().contains("duplicate"));
        // Once its objectGUID is known, it is written by it.
        let guid = "44444444-4444-4444-4444-444444444444";
        guard.identify(&dn, guid);
        let checked = guard.check(&o).expect("approved");
        assert!(matches!(checked.action(), Action::AddMembers { guid: Some(g), .. } if g == guid));
        let modify = op(new, modify(&dn, guid, "description", "d"));
        assert!(guard.check(&modify).is_ok());
        assert!(guard.check(&again).is_err());
    }
}
