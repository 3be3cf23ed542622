//! Parsing of Graph delta pages (`/groups/delta`, `/users/delta`) into changes, and the
//! merge of the pages of one round: a group may appear on several pages, each page
//! carrying a chunk of its `members@delta`.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use wb_model::{Interner, MemberKind, MemberRef, ObjectId, WritebackConfiguration};

/// The changes of one delta round and the link that starts the next one.
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaRound<T> {
    /// At most one change per object, in the order objects were first seen.
    pub changes: Vec<T>,
    /// The `@odata.deltaLink` that ended the round, as given.
    pub delta_link: String,
    /// The round started without a link: it lists every object, not changes.
    pub full: bool,
}

/// A property as a delta page gives it: `None` = absent (unchanged, or never set),
/// `Some(None)` = null (cleared), `Some(Some(v))` = the value.
pub type Tristate<T> = Option<Option<T>>;

/// What a delta round says of one group.
// Nearly every change of a round is an upsert: boxing it would cost an allocation each
// for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum GroupChange {
    Upsert(GroupPatch),
    /// `@removed: {reason: changed}`: in deleted items, restorable.
    SoftDeleted(ObjectId),
    /// `@removed: {reason: deleted}`: gone for good.
    Deleted(ObjectId),
}

impl GroupChange {
    pub fn id(&self) -> &str {
        match self {
            GroupChange::Upsert(p) => &p.id,
            GroupChange::SoftDeleted(id) | GroupChange::Deleted(id) => id,
        }
    }
}

/// The properties and membership changes of one group in a delta round.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupPatch {
    pub id: ObjectId,
    pub display_name: Tristate<String>,
    pub description: Tristate<String>,
    pub group_types: Tristate<Vec<String>>,
    pub mail_enabled: Tristate<bool>,
    pub security_enabled: Tristate<bool>,
    pub mail: Tristate<String>,
    pub mail_nickname: Tristate<String>,
    pub proxy_addresses: Tristate<Vec<String>>,
    pub on_premises_sync_enabled: Tristate<bool>,
    pub on_premises_security_identifier: Tristate<String>,
    pub writeback_configuration: Tristate<WritebackConfiguration>,
    pub members_added: Vec<MemberRef>,
    pub members_removed: Vec<MemberRef>,
    /// Filled only if Graph sends `owners@delta` (group delta does not document owners
    /// as selectable, so writeback does not ask for them).
    pub owners_added: Vec<MemberRef>,
    pub owners_removed: Vec<MemberRef>,
}

/// What a delta round says of one user.
#[derive(Debug, Clone, PartialEq)]
pub enum UserChange {
    Upsert(UserPatch),
    /// Removed (soft or hard): no longer a resolvable member.
    Deleted(ObjectId),
}

impl UserChange {
    pub fn id(&self) -> &str {
        match self {
            UserChange::Upsert(p) => &p.id,
            UserChange::Deleted(id) => id,
        }
    }
}

/// The properties of one user in a delta round.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserPatch {
    pub id: ObjectId,
    pub user_principal_name: Tristate<String>,
    pub display_name: Tristate<String>,
    pub on_premises_sync_enabled: Tristate<bool>,
    pub on_premises_security_identifier: Tristate<String>,
    pub on_premises_immutable_id: Tristate<String>,
    pub on_premises_distinguished_name: Tristate<String>,
    pub on_premises_sam_account_name: Tristate<String>,
    pub on_premises_domain_name: Tristate<String>,
}

/// What a delta round says of one device.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceChange {
    Upsert(DevicePatch),
    /// Removed: no longer a resolvable member.
    Deleted(ObjectId),
}

impl DeviceChange {
    pub fn id(&self) -> &str {
        match self {
            DeviceChange::Upsert(p) => &p.id,
            DeviceChange::Deleted(id) => id,
        }
    }
}

/// The properties of one device in a delta round.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DevicePatch {
    pub id: ObjectId,
    pub display_name: Tristate<String>,
    pub device_id: Tristate<String>,
    pub on_premises_sync_enabled: Tristate<bool>,
    pub on_premises_security_identifier: Tristate<String>,
}

impl DevicePatch {
    /// Merges a later sighting of the same device.
    pub fn merge(&mut self, later: DevicePatch) {
        take_newer(&mut self.display_name, later.display_name);
        take_newer(&mut self.device_id, later.device_id);
        take_newer(
            &mut self.on_premises_sync_enabled,
            later.on_premises_sync_enabled,
        );
        take_newer(
            &mut self.on_premises_security_identifier,
            later.on_premises_security_identifier,
        );
    }
}

pub(crate) fn parse_device(item: &Value) -> Result<DeviceChange, String> {
    let Value::Object(obj) = item else {
        return Err("a device entry is not a JSON object".to_string());
    };
    let id = object_id(obj)?;
    if removed_reason(obj, &id)?.is_some() {
        return Ok(DeviceChange::Deleted(id));
    }
    Ok(DeviceChange::Upsert(DevicePatch {
        display_name: tristate(obj, &id, "displayName")?,
        device_id: tristate(obj, &id, "deviceId")?,
        on_premises_sync_enabled: tristate(obj, &id, "onPremisesSyncEnabled")?,
        on_premises_security_identifier: tristate(obj, &id, "onPremisesSecurityIdentifier")?,
        id,
    }))
}

/// One page of a delta (or plain collection) answer.
pub(crate) struct Page {
    pub(crate) value: Vec<Value>,
    pub(crate) next_link: Option<String>,
    pub(crate) delta_link: Option<String>,
}

pub(crate) fn read_page(body: Value) -> Result<Page, String> {
    let Value::Object(mut obj) = body else {
        return Err("the answer is not a JSON object".to_string());
    };
    let link = |obj: &mut Map<String, Value>, key: &str| -> Result<Option<String>, String> {
        match obj.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!("{key} is not a string: {other}")),
        }
    };
    let next_link = link(&mut obj, "@odata.nextLink")?;
    let delta_link = link(&mut obj, "@odata.deltaLink")?;
    // Every collection and delta page carries `value`, `[]` when it lists nothing. A page
    // without one is not an empty page: read as one, a full round would look like an empty
    // tenant and every group written back would look deleted.
    let value = match obj.remove("value") {
        Some(Value::Array(items)) => items,
        None => return Err("the page has no `value` array".to_string()),
        Some(Value::Null) => return Err("the page's `value` is null, not an array".to_string()),
        Some(other) => {
            return Err(format!(
                "the page's `value` is not an array but {}",
                json_kind(&other)
            ))
        }
    };
    Ok(Page {
        value,
        next_link,
        delta_link,
    })
}

/// "a string", "an object", ... for error messages (never the value: it may be long).
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn object_id(obj: &Map<String, Value>) -> Result<ObjectId, String> {
    match obj.get("id") {
        Some(Value::String(id)) if !id.is_empty() => Ok(id.clone()),
        None | Some(Value::Null) => Err("an object without an id".to_string()),
        Some(Value::String(_)) => Err("an object whose id is empty".to_string()),
        Some(other) => Err(format!(
            "an object whose id is {}, not a string",
            json_kind(other)
        )),
    }
}

/// `absent` / `null` / value of one property; a value of the wrong type is an error
/// naming the object and the property.
fn tristate<T: DeserializeOwned>(
    obj: &Map<String, Value>,
    id: &str,
    key: &str,
) -> Result<Tristate<T>, String> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => serde_json::from_value(v.clone())
            .map(|t| Some(Some(t)))
            .map_err(|e| format!("object {id}: property {key}: {e}")),
    }
}

/// [`tristate`] for a property whose value is an object (a complex type): serde would also
/// read a struct from an array of its fields in order (`[true, "x"]`), which Graph never
/// sends — such a value is malformed, not a configuration.
fn tristate_object<T: DeserializeOwned>(
    obj: &Map<String, Value>,
    id: &str,
    key: &str,
) -> Result<Tristate<T>, String> {
    match obj.get(key) {
        Some(v) if !v.is_null() && !v.is_object() => Err(format!(
            "object {id}: property {key} is {}, not an object",
            json_kind(v)
        )),
        _ => tristate(obj, id, key),
    }
}

/// `"@removed": {"reason": ...}` → Some(reason) ("" when no reason is given). A `@removed`
/// that is not an object, or a reason that is not a string, is malformed: the reason decides
/// whether a group is deleted, so it is never guessed.
fn removed_reason(obj: &Map<String, Value>, id: &str) -> Result<Option<String>, String> {
    match obj.get("@removed") {
        None => Ok(None),
        Some(Value::Object(r)) => match r.get("reason") {
            None | Some(Value::Null) => Ok(Some(String::new())),
            Some(Value::String(reason)) => Ok(Some(reason.clone())),
            Some(other) => Err(format!(
                "object {id}: @removed.reason is {}, not a string",
                json_kind(other)
            )),
        },
        Some(other) => Err(format!(
            "object {id}: @removed is {}, not an object",
            json_kind(other)
        )),
    }
}

/// Splits a `members@delta` / `owners@delta` array into added and removed references.
fn member_delta(
    obj: &Map<String, Value>,
    id: &str,
    key: &str,
) -> Result<(Vec<MemberRef>, Vec<MemberRef>), String> {
    let mut added = Vec::new();
    let mut removed = Vec::new();
    let entries = match obj.get(key) {
        None | Some(Value::Null) => return Ok((added, removed)),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(format!("group {id}: {key} is not an array")),
    };
    for entry in entries {
        let Value::Object(e) = entry else {
            return Err(format!("group {id}: an entry of {key} is not an object"));
        };
        let member_id = object_id(e).map_err(|m| format!("group {id}: {key}: {m}"))?;
        // The type decides how a member resolves and the marker whether it leaves: a
        // value of the wrong type is malformed, never read as "some other object" or as a
        // removal.
        let kind = match e.get("@odata.type") {
            None => MemberKind::Other,
            Some(Value::String(t)) => MemberKind::from_odata_type(t),
            Some(other) => {
                return Err(format!(
                    "group {id}: {key}: member {member_id}: @odata.type is {}, not a string",
                    json_kind(other)
                ))
            }
        };
        let member = MemberRef {
            kind,
            id: member_id.into(),
        };
        match e.get("@removed") {
            None => added.push(member),
            Some(Value::Object(_)) => removed.push(member),
            Some(other) => {
                return Err(format!(
                    "group {id}: {key}: member {}: @removed is {}, not an object",
                    member.id,
                    json_kind(other)
                ))
            }
        }
    }
    Ok((added, removed))
}

pub(crate) fn parse_group(item: &Value) -> Result<GroupChange, String> {
    let Value::Object(obj) = item else {
        return Err("a group entry is not a JSON object".to_string());
    };
    let id = object_id(obj)?;
    if let Some(reason) = removed_reason(obj, &id)? {
        // Only "deleted" is final; "changed" (and anything unknown) keeps the AD group.
        return Ok(if reason == "deleted" {
            GroupChange::Deleted(id)
        } else {
            GroupChange::SoftDeleted(id)
        });
    }
    let (members_added, members_removed) = member_delta(obj, &id, "members@delta")?;
    let (owners_added, owners_removed) = member_delta(obj, &id, "owners@delta")?;
    Ok(GroupChange::Upsert(GroupPatch {
        display_name: tristate(obj, &id, "displayName")?,
        description: tristate(obj, &id, "description")?,
        group_types: tristate(obj, &id, "groupTypes")?,
        mail_enabled: tristate(obj, &id, "mailEnabled")?,
        security_enabled: tristate(obj, &id, "securityEnabled")?,
        mail: tristate(obj, &id, "mail")?,
        mail_nickname: tristate(obj, &id, "mailNickname")?,
        proxy_addresses: tristate(obj, &id, "proxyAddresses")?,
        on_premises_sync_enabled: tristate(obj, &id, "onPremisesSyncEnabled")?,
        on_premises_security_identifier: tristate(obj, &id, "onPremisesSecurityIdentifier")?,
        writeback_configuration: tristate_object(obj, &id, "writebackConfiguration")?,
        members_added,
        members_removed,
        owners_added,
        owners_removed,
        id,
    }))
}

pub(crate) fn parse_user(item: &Value) -> Result<UserChange, String> {
    let Value::Object(obj) = item else {
        return Err("a user entry is not a JSON object".to_string());
    };
    let id = object_id(obj)?;
    if removed_reason(obj, &id)?.is_some() {
        return Ok(UserChange::Deleted(id));
    }
    Ok(UserChange::Upsert(UserPatch {
        user_principal_name: tristate(obj, &id, "userPrincipalName")?,
        display_name: tristate(obj, &id, "displayName")?,
        on_premises_sync_enabled: tristate(obj, &id, "onPremisesSyncEnabled")?,
        on_premises_security_identifier: tristate(obj, &id, "onPremisesSecurityIdentifier")?,
        on_premises_immutable_id: tristate(obj, &id, "onPremisesImmutableId")?,
        on_premises_distinguished_name: tristate(obj, &id, "onPremisesDistinguishedName")?,
        on_premises_sam_account_name: tristate(obj, &id, "onPremisesSamAccountName")?,
        on_premises_domain_name: tristate(obj, &id, "onPremisesDomainName")?,
        id,
    }))
}

fn take_newer<T>(old: &mut Tristate<T>, new: Tristate<T>) {
    if new.is_some() {
        *old = new;
    }
}

/// Folds a later sighting of the same membership list into an earlier one: the later
/// word on a member wins, and a member is never both added and removed.
fn merge_refs(
    added: &mut Vec<MemberRef>,
    removed: &mut Vec<MemberRef>,
    new_added: Vec<MemberRef>,
    new_removed: Vec<MemberRef>,
) {
    if new_added.is_empty() && new_removed.is_empty() {
        return;
    }
    let mut refs = RefMerge::new(std::mem::take(added), std::mem::take(removed));
    refs.merge(new_added, new_removed);
    (*added, *removed) = refs.finish();
}

/// Members added and removed over the sightings of one group in a round, indexed by id:
/// each later sighting costs what it carries, not what came before (a round's pages may
/// carry 250,000 member changes of one group). Same result as folding the sightings one
/// by one: a later removal drops the id from the added ones, a later addition from the
/// removed ones, and an id already listed is not listed again.
#[derive(Debug, Default)]
pub(crate) struct RefMerge {
    added: Vec<Option<MemberRef>>,
    removed: Vec<Option<MemberRef>>,
    added_at: HashMap<Arc<str>, Vec<usize>>,
    removed_at: HashMap<Arc<str>, Vec<usize>>,
}

impl RefMerge {
    fn new(added: Vec<MemberRef>, removed: Vec<MemberRef>) -> Self {
        let index = |refs: &[MemberRef]| {
            let mut at: HashMap<Arc<str>, Vec<usize>> = HashMap::new();
            for (i, r) in refs.iter().enumerate() {
                at.entry(r.id.clone()).or_default().push(i);
            }
            at
        };
        RefMerge {
            added_at: index(&added),
            removed_at: index(&removed),
            added: added.into_iter().map(Some).collect(),
            removed: removed.into_iter().map(Some).collect(),
        }
    }

    fn merge(&mut self, new_added: Vec<MemberRef>, new_removed: Vec<MemberRef>) {
        for m in new_removed {
            for i in self.added_at.remove(&m.id).unwrap_or_default() {
                self.added[i] = None;
            }
            if !self.removed_at.contains_key(&m.id) {
                self.removed_at
                    .insert(m.id.clone(), vec![self.removed.len()]);
                self.removed.push(Some(m));
            }
        }
        for m in new_added {
            for i in self.removed_at.remove(&m.id).unwrap_or_default() {
                self.removed[i] = None;
            }
            if !self.added_at.contains_key(&m.id) {
                self.added_at.insert(m.id.clone(), vec![self.added.len()]);
                self.added.push(Some(m));
            }
        }
    }

    fn finish(self) -> (Vec<MemberRef>, Vec<MemberRef>) {
        (
            self.added.into_iter().flatten().collect(),
            self.removed.into_iter().flatten().collect(),
        )
    }
}

impl GroupPatch {
    /// Merges a later sighting of the same group (another page of the same round).
    pub fn merge(&mut self, later: GroupPatch) {
        take_newer(&mut self.display_name, later.display_name);
        take_newer(&mut self.description, later.description);
        take_newer(&mut self.group_types, later.group_types);
        take_newer(&mut self.mail_enabled, later.mail_enabled);
        take_newer(&mut self.security_enabled, later.security_enabled);
        take_newer(&mut self.mail, later.mail);
        take_newer(&mut self.mail_nickname, later.mail_nickname);
        take_newer(&mut self.proxy_addresses, later.proxy_addresses);
        take_newer(
            &mut self.on_premises_sync_enabled,
            later.on_premises_sync_enabled,
        );
        take_newer(
            &mut self.on_premises_security_identifier,
            later.on_premises_security_identifier,
        );
        take_newer(
            &mut self.writeback_configuration,
            later.writeback_configuration,
        );
        merge_refs(
            &mut self.members_added,
            &mut self.members_removed,
            later.members_added,
            later.members_removed,
        );
        merge_refs(
            &mut self.owners_added,
            &mut self.owners_removed,
            later.owners_added,
            later.owners_removed,
        );
    }
}

impl UserPatch {
    /// Merges a later sighting of the same user.
    pub fn merge(&mut self, later: UserPatch) {
        take_newer(&mut self.user_principal_name, later.user_principal_name);
        take_newer(&mut self.display_name, later.display_name);
        take_newer(
            &mut self.on_premises_sync_enabled,
            later.on_premises_sync_enabled,
        );
        take_newer(
            &mut self.on_premises_security_identifier,
            later.on_premises_security_identifier,
        );
        take_newer(
            &mut self.on_premises_immutable_id,
            later.on_premises_immutable_id,
        );
        take_newer(
            &mut self.on_premises_distinguished_name,
            later.on_premises_distinguished_name,
        );
        take_newer(
            &mut self.on_premises_sam_account_name,
            later.on_premises_sam_account_name,
        );
        take_newer(
            &mut self.on_premises_domain_name,
            later.on_premises_domain_name,
        );
    }
}

/// Collects the changes of a round, one per object, merging repeated sightings.
pub(crate) struct RoundChanges<T> {
    order: Vec<ObjectId>,
    by_id: HashMap<ObjectId, T>,
    /// Groups seen more than once: their member and owner changes, merged by id, put
    /// back into the group's change at the end of the round.
    refs: HashMap<ObjectId, [RefMerge; 2]>,
    /// Member and owner ids: one shared copy of each over the round (a first round lists
    /// every membership of the tenant).
    ids: Interner,
}

impl<T: DeltaItem> RoundChanges<T> {
    pub(crate) fn new() -> Self {
        RoundChanges {
            order: Vec::new(),
            by_id: HashMap::new(),
            refs: HashMap::new(),
            ids: Interner::default(),
        }
    }

    pub(crate) fn into_changes(mut self) -> Vec<T> {
        for (id, refs) in std::mem::take(&mut self.refs) {
            if let Some(change) = self.by_id.get_mut(&id) {
                change.put_refs(refs);
            }
        }
        self.order
            .iter()
            .filter_map(|id| self.by_id.remove(id))
            .collect()
    }

    fn slot(&mut self, id: &str) -> Option<&mut T> {
        self.by_id.get_mut(id)
    }

    fn put(&mut self, id: ObjectId, change: T) {
        if !self.by_id.contains_key(&id) {
            self.order.push(id.clone());
        }
        self.refs.remove(&id);
        self.by_id.insert(id, change);
    }
}

impl RoundChanges<GroupChange> {
    pub(crate) fn add(&mut self, mut change: GroupChange) {
        if let GroupChange::Upsert(patch) = &mut change {
            for refs in [
                &mut patch.members_added,
                &mut patch.members_removed,
                &mut patch.owners_added,
                &mut patch.owners_removed,
            ] {
                self.ids.share_refs(refs);
            }
        }
        let id = change.id().to_string();
        match (self.by_id.get_mut(&id), change) {
            (Some(GroupChange::Upsert(earlier)), GroupChange::Upsert(mut later)) => {
                let [members, owners] = self.refs.entry(id).or_insert_with(|| {
                    [
                        RefMerge::new(
                            std::mem::take(&mut earlier.members_added),
                            std::mem::take(&mut earlier.members_removed),
                        ),
                        RefMerge::new(
                            std::mem::take(&mut earlier.owners_added),
                            std::mem::take(&mut earlier.owners_removed),
                        ),
                    ]
                });
                members.merge(
                    std::mem::take(&mut later.members_added),
                    std::mem::take(&mut later.members_removed),
                );
                owners.merge(
                    std::mem::take(&mut later.owners_added),
                    std::mem::take(&mut later.owners_removed),
                );
                earlier.merge(later)
            }
            // A removal, or a sighting after a removal (a restore), replaces what came
            // before: the later state of the object is the one that holds.
            (_, change) => self.put(id, change),
        }
    }
}

impl RoundChanges<UserChange> {
    pub(crate) fn add(&mut self, change: UserChange) {
        let id = change.id().to_string();
        match (self.slot(&id), change) {
            (Some(UserChange::Upsert(earlier)), UserChange::Upsert(later)) => earlier.merge(later),
            (_, change) => self.put(id, change),
        }
    }
}

impl RoundChanges<DeviceChange> {
    pub(crate) fn add(&mut self, change: DeviceChange) {
        let id = change.id().to_string();
        match (self.slot(&id), change) {
            (Some(DeviceChange::Upsert(earlier)), DeviceChange::Upsert(later)) => {
                earlier.merge(later)
            }
            (_, change) => self.put(id, change),
        }
    }
}

impl DeltaItem for DeviceChange {
    const KIND: &'static str = "device";
    fn parse(item: &Value) -> Result<Self, String> {
        parse_device(item)
    }
    fn add_to(self, round: &mut RoundChanges<Self>) {
        round.add(self)
    }
}

/// What a delta round is made of: how one page item is parsed and merged into the round.
pub(crate) trait DeltaItem: Sized {
    /// For logs: "group", "user".
    const KIND: &'static str;
    fn parse(item: &Value) -> Result<Self, String>;
    fn add_to(self, round: &mut RoundChanges<Self>);
    /// Puts back the member and owner changes merged over the round's sightings.
    fn put_refs(&mut self, _refs: [RefMerge; 2]) {}
}

impl DeltaItem for GroupChange {
    const KIND: &'static str = "group";
    fn parse(item: &Value) -> Result<Self, String> {
        parse_group(item)
    }
    fn add_to(self, round: &mut RoundChanges<Self>) {
        round.add(self)
    }
    fn put_refs(&mut self, [members, owners]: [RefMerge; 2]) {
        if let GroupChange::Upsert(patch) = self {
            (patch.members_added, patch.members_removed) = members.finish();
            (patch.owners_added, patch.owners_removed) = owners.finish();
        }
    }
}

impl DeltaItem for UserChange {
    const KIND: &'static str = "user";
    fn parse(item: &Value) -> Result<Self, String> {
        parse_user(item)
    }
    fn add_to(self, round: &mut RoundChanges<Self>) {
        round.add(self)
    }
}

/// Parses a `writebackConfiguration` listing page item: `(id, configuration)`.
pub(crate) fn parse_writeback_item(
    item: &Value,
    into: &mut BTreeMap<ObjectId, WritebackConfiguration>,
) -> Result<(), String> {
    let Value::Object(obj) = item else {
        return Err("a group entry is not a JSON object".to_string());
    };
    let id = object_id(obj)?;
    let config: Tristate<WritebackConfiguration> =
        tristate_object(obj, &id, "writebackConfiguration")?;
    into.insert(id, config.flatten().unwrap_or_default());
    Ok(())
}

/// One answer page parsed exactly as the client parses it, without HTTP: the body bytes as
/// JSON, the page's shape ([`read_page`]), every item of it, and the items merged as one
/// round merges them. For the fuzz targets (`fuzz/`) and the tests that feed generated pages;
/// the client itself reads pages through the same functions.
pub mod pages {
    use super::*;

    /// What one page says: its items as changes (sightings of one object merged), and its
    /// links as given (not yet checked against `graph_url`'s origin: the client does that).
    #[derive(Debug, Clone, PartialEq)]
    pub struct PageOf<T> {
        pub changes: Vec<T>,
        pub next_link: Option<String>,
        pub delta_link: Option<String>,
    }

    fn parse<T: DeltaItem>(body: &[u8]) -> Result<PageOf<T>, String> {
        let value: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
        let page = read_page(value)?;
        let mut round = RoundChanges::<T>::new();
        for item in &page.value {
            T::parse(item)?.add_to(&mut round);
        }
        Ok(PageOf {
            changes: round.into_changes(),
            next_link: page.next_link,
            delta_link: page.delta_link,
        })
    }

    /// A `/groups/delta` page.
    pub fn group_delta(body: &[u8]) -> Result<PageOf<GroupChange>, String> {
        parse(body)
    }

    /// A `/users/delta` page.
    pub fn user_delta(body: &[u8]) -> Result<PageOf<UserChange>, String> {
        parse(body)
    }

    /// A `/devices/delta` page.
    pub fn device_delta(body: &[u8]) -> Result<PageOf<DeviceChange>, String> {
        parse(body)
    }

    /// A page of the `writebackConfiguration` listing (`/beta/groups?$select=id,writebackConfiguration`).
    pub fn writeback_configurations(
        body: &[u8],
    ) -> Result<PageOf<(ObjectId, WritebackConfiguration)>, String> {
        let value: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
        let page = read_page(value)?;
        let mut configs = BTreeMap::new();
        for item in &page.value {
            parse_writeback_item(item, &mut configs)?;
        }
        Ok(PageOf {
            changes: configs.into_iter().collect(),
            next_link: page.next_link,
            delta_link: page.delta_link,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(id: &str) -> MemberRef {
        MemberRef {
            kind: MemberKind::User,
            id: id.into(),
        }
    }

    /// The former algorithm (a scan per member), as the reference.
    fn merge_refs_one_by_one(
        added: &mut Vec<MemberRef>,
        removed: &mut Vec<MemberRef>,
        new_added: Vec<MemberRef>,
        new_removed: Vec<MemberRef>,
    ) {
        for m in new_removed {
            added.retain(|a| a.id != m.id);
            if !removed.iter().any(|r| r.id == m.id) {
                removed.push(m);
            }
        }
        for m in new_added {
            removed.retain(|r| r.id != m.id);
            if !added.iter().any(|a| a.id == m.id) {
                added.push(m);
            }
        }
    }

    #[test]
    fn later_sightings_of_members_win_as_before() {
        let refs = |ids: &[&str]| ids.iter().map(|i| user(i)).collect::<Vec<_>>();
        let cases = [
            (
                refs(&["a", "b", "c"]),
                refs(&["d", "e"]),
                refs(&["c", "d", "f", "f"]),
                refs(&["a", "e", "g", "g", "b"]),
            ),
            (refs(&[]), refs(&["a"]), refs(&["a", "a"]), refs(&["a"])),
            (refs(&["x"]), refs(&[]), refs(&[]), refs(&[])),
        ];
        for (added, removed, new_added, new_removed) in cases {
            let (mut a1, mut r1) = (added.clone(), removed.clone());
            merge_refs(&mut a1, &mut r1, new_added.clone(), new_removed.clone());
            let (mut a2, mut r2) = (added, removed);
            merge_refs_one_by_one(&mut a2, &mut r2, new_added, new_removed);
            assert_eq!((a1, r1), (a2, r2));
        }
    }

    #[test]
    fn a_round_of_a_250000_member_group_merges_its_pages_quickly() {
        let id = |n: usize| format!("{n:08x}-0000-4000-8000-000000000000");
        let page = |added: Vec<MemberRef>, removed: Vec<MemberRef>| {
            GroupChange::Upsert(GroupPatch {
                id: "g1".into(),
                members_added: added,
                members_removed: removed,
                ..GroupPatch::default()
            })
        };
        let started = std::time::Instant::now();
        let mut round = RoundChanges::<GroupChange>::new();
        // 500 pages of 500 member entries, as Graph and graph-sim page them; the last page
        // removes one of the first page's members.
        for p in 0..500 {
            round.add(page(
                (0..500).map(|k| user(&id(p * 500 + k))).collect(),
                Vec::new(),
            ));
        }
        round.add(page(Vec::new(), vec![user(&id(7))]));
        let changes = round.into_changes();
        assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
        let [GroupChange::Upsert(p)] = &changes[..] else {
            panic!("expected one upsert")
        };
        assert_eq!(p.members_added.len(), 249_999);
        assert_eq!(p.members_added[7], user(&id(8)));
        assert_eq!(p.members_removed, vec![user(&id(7))]);
    }

    #[test]
    fn a_round_holds_one_copy_of_each_member_id() {
        let mut round = RoundChanges::<GroupChange>::new();
        for g in ["g1", "g2"] {
            round.add(
                parse_group(&json!({"id": g,
                "members@delta": [{"@odata.type": "#microsoft.graph.user", "id": "u1"}],
                "owners@delta": [{"@odata.type": "#microsoft.graph.user", "id": "u1"}]}))
                .unwrap(),
            );
        }
        let changes = round.into_changes();
        let ids: Vec<&std::sync::Arc<str>> = changes
            .iter()
            .flat_map(|c| match c {
                GroupChange::Upsert(p) => p.members_added.iter().chain(&p.owners_added),
                _ => panic!("expected upserts"),
            })
            .map(|m| &m.id)
            .collect();
        assert_eq!(ids.len(), 4);
        assert!(
            ids.iter().all(|id| Arc::ptr_eq(id, ids[0])),
            "one allocation for u1 in both groups' members and owners"
        );
    }

    #[test]
    fn group_entry_keeps_absent_null_and_value_apart() {
        let change = parse_group(&json!({
            "id": "g1",
            "displayName": "Finance",
            "description": null,
            "writebackConfiguration": {"isEnabled": true, "onPremisesGroupType": null},
            "members@delta": [
                {"@odata.type": "#microsoft.graph.user", "id": "u1"},
                {"@odata.type": "#microsoft.graph.group", "id": "g2"},
                {"@odata.type": "#microsoft.graph.user", "id": "u3", "@removed": {"reason": "deleted"}}
            ]
        }))
        .unwrap();
        let GroupChange::Upsert(p) = change else {
            panic!("expected an upsert")
        };
        assert_eq!(p.display_name, Some(Some("Finance".into())));
        assert_eq!(p.description, Some(None));
        assert_eq!(p.mail, None);
        assert_eq!(
            p.writeback_configuration,
            Some(Some(WritebackConfiguration {
                is_enabled: Some(true),
                on_premises_group_type: None
            }))
        );
        assert_eq!(
            p.members_added,
            vec![
                user("u1"),
                MemberRef {
                    kind: MemberKind::Group,
                    id: "g2".into()
                }
            ]
        );
        assert_eq!(p.members_removed, vec![user("u3")]);
    }

    #[test]
    fn removed_reason_tells_soft_from_permanent_delete() {
        let soft = parse_group(&json!({"id": "g1", "@removed": {"reason": "changed"}})).unwrap();
        let hard = parse_group(&json!({"id": "g2", "@removed": {"reason": "deleted"}})).unwrap();
        assert_eq!(soft, GroupChange::SoftDeleted("g1".into()));
        assert_eq!(hard, GroupChange::Deleted("g2".into()));
    }

    #[test]
    fn property_of_the_wrong_type_names_group_and_property() {
        let err = parse_group(&json!({"id": "g9", "mailEnabled": "yes"})).unwrap_err();
        assert!(err.contains("g9") && err.contains("mailEnabled"), "{err}");
    }

    #[test]
    fn group_seen_on_two_pages_is_one_change_with_both_member_chunks() {
        let mut round = RoundChanges::<GroupChange>::new();
        round.add(
            parse_group(&json!({"id": "g1", "displayName": "A",
            "members@delta": [{"@odata.type": "#microsoft.graph.user", "id": "u1"}]}))
            .unwrap(),
        );
        round.add(parse_group(&json!({"id": "g2", "displayName": "B"})).unwrap());
        round.add(parse_group(&json!({"id": "g1",
            "members@delta": [{"@odata.type": "#microsoft.graph.user", "id": "u2"},
                              {"@odata.type": "#microsoft.graph.user", "id": "u1", "@removed": {}}]})).unwrap());
        let changes = round.into_changes();
        assert_eq!(changes.len(), 2);
        let GroupChange::Upsert(p) = &changes[0] else {
            panic!("expected an upsert")
        };
        assert_eq!(p.display_name, Some(Some("A".into())));
        assert_eq!(p.members_added, vec![user("u2")]);
        assert_eq!(p.members_removed, vec![user("u1")]);
    }

    #[test]
    fn user_removal_of_any_reason_is_a_delete() {
        let c = parse_user(&json!({"id": "u1", "@removed": {"reason": "changed"}})).unwrap();
        assert_eq!(c, UserChange::Deleted("u1".into()));
    }

    #[test]
    fn page_without_value_is_malformed_not_an_empty_page() {
        let err =
            read_page(json!({"@odata.deltaLink": "https://g/beta/groups/delta?$deltatoken=x"}))
                .err()
                .expect("a page without value is refused");
        assert!(err.contains("value"), "{err}");
    }

    #[test]
    fn page_with_null_value_is_malformed() {
        let err = read_page(json!({"value": null, "@odata.deltaLink": "https://g/d"}))
            .err()
            .expect("a null value is refused");
        assert!(err.contains("null"), "{err}");
    }

    #[test]
    fn page_whose_value_is_not_an_array_is_malformed() {
        for value in [json!({}), json!("x"), json!(3), json!(true)] {
            let body = json!({"value": value, "@odata.deltaLink": "https://g/d"});
            assert!(read_page(body).is_err(), "value {value} accepted");
        }
    }

    #[test]
    fn page_with_an_empty_value_array_is_an_empty_page() {
        let page = read_page(json!({"value": [], "@odata.deltaLink": "https://g/d"})).unwrap();
        assert!(page.value.is_empty());
        assert_eq!(page.delta_link.as_deref(), Some("https://g/d"));
    }

    #[test]
    fn link_of_the_wrong_type_is_malformed() {
        assert!(read_page(json!({"value": [], "@odata.nextLink": 7})).is_err());
        assert!(read_page(json!({"value": [], "@odata.deltaLink": ["https://g/d"]})).is_err());
    }

    #[test]
    fn page_item_that_is_not_an_object_or_has_no_id_is_malformed() {
        assert!(parse_group(&json!("g1")).is_err());
        assert!(parse_group(&json!({"displayName": "no id"})).is_err());
        assert!(parse_group(&json!({"id": 42})).is_err());
        assert!(parse_user(&json!(["u1"])).is_err());
    }

    #[test]
    fn member_entry_with_a_wrong_typed_type_or_removal_marker_is_malformed() {
        // Found by the generated malformed pages (tests/malformed_pages.rs): a numeric
        // @odata.type was read as "another kind of object" (its AD member removed), and any
        // @removed value, even `false`, as a removal.
        for entry in [
            json!({"@odata.type": 5, "id": "u1"}),
            json!({"@odata.type": ["#microsoft.graph.user"], "id": "u1"}),
            json!({"@odata.type": "#microsoft.graph.user", "id": "u1", "@removed": false}),
            json!({"@odata.type": "#microsoft.graph.user", "id": "u1", "@removed": "deleted"}),
        ] {
            let err = parse_group(&json!({"id": "g7", "members@delta": [entry]})).unwrap_err();
            assert!(
                err.contains("g7") && err.contains("members@delta") && err.contains("u1"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_writeback_configuration_that_is_not_an_object_is_malformed() {
        // Found by the generated malformed pages (WB_SEED=1796035410567613951): serde reads
        // a struct from an array of its fields, so `[true, "x"]` passed as a configuration.
        for value in [
            json!([null, "text"]),
            json!([true]),
            json!("enabled"),
            json!(true),
        ] {
            let err =
                parse_group(&json!({"id": "g9", "writebackConfiguration": value})).unwrap_err();
            assert!(
                err.contains("g9") && err.contains("writebackConfiguration"),
                "{err}"
            );
            let body = json!({"value": [{"id": "g9", "writebackConfiguration": value}]});
            let err = pages::writeback_configurations(body.to_string().as_bytes()).unwrap_err();
            assert!(err.contains("writebackConfiguration"), "{err}");
        }
        // null (cleared) and an object still read.
        assert!(parse_group(&json!({"id": "g9", "writebackConfiguration": null})).is_ok());
        assert!(
            parse_group(&json!({"id": "g9", "writebackConfiguration": {"isEnabled": true}}))
                .is_ok()
        );
    }

    #[test]
    fn removed_marker_of_the_wrong_shape_is_malformed_not_a_deletion() {
        assert!(parse_group(&json!({"id": "g1", "@removed": "deleted"})).is_err());
        assert!(parse_group(&json!({"id": "g1", "@removed": {"reason": 1}})).is_err());
        assert!(parse_user(&json!({"id": "u1", "@removed": true})).is_err());
    }
}
