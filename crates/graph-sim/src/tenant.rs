//! The in-memory tenant: directory objects, memberships, settings, and the change log that
//! delta queries read. Every mutation goes through here so that no change escapes the log.

use crate::clock::now_rfc3339_seconds;
use crate::error::SimError;
use crate::schema::ObjectKind;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// One directory object: its Graph properties (including `id`) and, for groups, links.
#[derive(Debug, Clone)]
pub struct DirectoryObject {
    pub kind: ObjectKind,
    pub props: Map<String, Value>,
    pub members: BTreeSet<String>,
    pub owners: BTreeSet<String>,
    /// Set while the object is soft-deleted (in `directory/deletedItems`).
    pub deleted_at: Option<String>,
    /// Groups: `onPremisesSyncBehavior.isCloudManaged` (Group Source of Authority), a
    /// navigation of its own in Graph, never a property of the group.
    pub cloud_managed: bool,
}

impl DirectoryObject {
    pub fn new(kind: ObjectKind, props: Map<String, Value>) -> Self {
        DirectoryObject {
            kind,
            props,
            members: BTreeSet::new(),
            owners: BTreeSet::new(),
            deleted_at: None,
            cloud_managed: false,
        }
    }

    pub fn is_live(&self) -> bool {
        self.deleted_at.is_none()
    }

    pub fn str_prop(&self, name: &str) -> Option<&str> {
        self.props.get(name).and_then(Value::as_str)
    }
}

/// The collection a delta query tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Resource {
    #[serde(rename = "u")]
    Users,
    #[serde(rename = "g")]
    Groups,
    #[serde(rename = "d")]
    Devices,
}

/// What happened to an object at one point of the change log.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeKind {
    Created,
    Props(Vec<String>),
    MemberAdded(String, ObjectKind),
    MemberRemoved(String, ObjectKind),
    SoftDeleted,
    Restored,
    HardDeleted,
}

#[derive(Debug, Clone)]
pub struct Change {
    pub seq: u64,
    pub resource: Resource,
    pub id: String,
    pub kind: ChangeKind,
}

/// The whole simulated tenant.
#[derive(Debug, Default)]
pub struct Tenant {
    pub users: BTreeMap<String, DirectoryObject>,
    pub groups: BTreeMap<String, DirectoryObject>,
    /// Devices, org contacts and service principals: present only to be members.
    pub others: BTreeMap<String, DirectoryObject>,
    /// Directory settings (`groupSettings`), by id.
    pub settings: BTreeMap<String, Value>,
    pub log: Vec<Change>,
    pub seq: u64,
    /// The verified domain used to build `mail` of new mail-enabled groups.
    pub domain: String,
}

fn resource_of(kind: ObjectKind) -> Option<Resource> {
    match kind {
        ObjectKind::User => Some(Resource::Users),
        ObjectKind::Group => Some(Resource::Groups),
        ObjectKind::Device => Some(Resource::Devices),
        _ => None,
    }
}

impl Tenant {
    pub fn empty(domain: &str) -> Self {
        Tenant {
            domain: domain.to_string(),
            ..Tenant::default()
        }
    }

    pub fn object(&self, id: &str) -> Option<&DirectoryObject> {
        self.groups
            .get(id)
            .or_else(|| self.users.get(id))
            .or_else(|| self.others.get(id))
    }

    fn object_mut(&mut self, id: &str) -> Option<&mut DirectoryObject> {
        if self.groups.contains_key(id) {
            return self.groups.get_mut(id);
        }
        if self.users.contains_key(id) {
            return self.users.get_mut(id);
        }
        self.others.get_mut(id)
    }

    /// A live (not soft-deleted) object of one kind.
    pub fn live(&self, kind: ObjectKind, id: &str) -> Option<&DirectoryObject> {
        let map = match kind {
            ObjectKind::User => &self.users,
            ObjectKind::Group => &self.groups,
            _ => &self.others,
        };
        map.get(id).filter(|o| o.is_live() && o.kind == kind)
    }

    fn record(&mut self, kind: ObjectKind, id: &str, change: ChangeKind) {
        if let Some(resource) = resource_of(kind) {
            self.seq += 1;
            self.log.push(Change {
                seq: self.seq,
                resource,
                id: id.to_string(),
                kind: change,
            });
        }
    }

    pub fn insert(&mut self, obj: DirectoryObject) -> String {
        let id = obj
            .str_prop("id")
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let kind = obj.kind;
        let mut obj = obj;
        obj.props.insert("id".into(), json!(id));
        match kind {
            ObjectKind::User => self.users.insert(id.clone(), obj),
            ObjectKind::Group => self.groups.insert(id.clone(), obj),
            _ => self.others.insert(id.clone(), obj),
        };
        self.record(kind, &id, ChangeKind::Created);
        id
    }

    /// Applies property values; returns the names whose value really changed.
    pub fn update(&mut self, id: &str, changes: Map<String, Value>) -> Vec<String> {
        let Some(obj) = self.object_mut(id) else {
            return Vec::new();
        };
        let kind = obj.kind;
        let mut changed = Vec::new();
        for (name, value) in changes {
            let new_value = match (obj.props.get(&name), &value) {
                // Complex values (writebackConfiguration) are merged, as OData PATCH does.
                (Some(Value::Object(old)), Value::Object(patch)) => {
                    let mut merged = old.clone();
                    for (k, v) in patch {
                        merged.insert(k.clone(), v.clone());
                    }
                    Value::Object(merged)
                }
                _ => value,
            };
            if obj.props.get(&name) != Some(&new_value) {
                obj.props.insert(name.clone(), new_value);
                changed.push(name);
            }
        }
        if !changed.is_empty() {
            self.record(kind, id, ChangeKind::Props(changed.clone()));
        }
        changed
    }

    /// Sets `onPremisesSyncBehavior.isCloudManaged` of a group. Converting a group synced
    /// from AD makes it cloud-mastered: `onPremisesSyncEnabled` is no longer true (it keeps
    /// its onPremisesSecurityIdentifier and other onPremises* values). Either way the group
    /// is reported as changed in group delta. Returns false for an unknown group.
    pub fn set_cloud_managed(&mut self, id: &str, value: bool) -> bool {
        let Some(group) = self.groups.get_mut(id).filter(|g| g.is_live()) else {
            return false;
        };
        if group.cloud_managed == value {
            return true;
        }
        group.cloud_managed = value;
        if value && group.props.get("onPremisesSyncEnabled") == Some(&json!(true)) {
            group
                .props
                .insert("onPremisesSyncEnabled".into(), Value::Null);
        }
        self.record(
            ObjectKind::Group,
            id,
            ChangeKind::Props(vec!["onPremisesSyncEnabled".into()]),
        );
        true
    }

    /// Adds a link; false when it was already there.
    pub fn add_link(&mut self, group_id: &str, target: &str, owners: bool) -> bool {
        let Some(target_kind) = self.object(target).map(|o| o.kind) else {
            return false;
        };
        let Some(group) = self.groups.get_mut(group_id) else {
            return false;
        };
        let set = if owners {
            &mut group.owners
        } else {
            &mut group.members
        };
        if !set.insert(target.to_string()) {
            return false;
        }
        if !owners {
            self.record(
                ObjectKind::Group,
                group_id,
                ChangeKind::MemberAdded(target.to_string(), target_kind),
            );
        }
        true
    }

    /// Removes a link; false when it was not there.
    pub fn remove_link(&mut self, group_id: &str, target: &str, owners: bool) -> bool {
        let target_kind = self.object(target).map_or(ObjectKind::User, |o| o.kind);
        let Some(group) = self.groups.get_mut(group_id) else {
            return false;
        };
        let set = if owners {
            &mut group.owners
        } else {
            &mut group.members
        };
        if !set.remove(target) {
            return false;
        }
        if !owners {
            self.record(
                ObjectKind::Group,
                group_id,
                ChangeKind::MemberRemoved(target.to_string(), target_kind),
            );
        }
        true
    }

    /// Moves a live user or group to deleted items (links kept for a restore).
    pub fn soft_delete(&mut self, id: &str) -> bool {
        let Some(obj) = self.object_mut(id) else {
            return false;
        };
        if !obj.is_live() {
            return false;
        }
        let now = now_rfc3339_seconds();
        obj.deleted_at = Some(now.clone());
        obj.props.insert("deletedDateTime".into(), json!(now));
        let kind = obj.kind;
        self.record(kind, id, ChangeKind::SoftDeleted);
        true
    }

    /// Brings a soft-deleted object back; false if it is not in deleted items.
    pub fn restore(&mut self, id: &str) -> bool {
        let Some(obj) = self.object_mut(id) else {
            return false;
        };
        if obj.is_live() {
            return false;
        }
        obj.deleted_at = None;
        obj.props.insert("deletedDateTime".into(), Value::Null);
        let kind = obj.kind;
        self.record(kind, id, ChangeKind::Restored);
        true
    }

    /// Removes an object for good, with every membership and ownership that named it.
    pub fn hard_delete(&mut self, id: &str) -> bool {
        let Some(kind) = self.object(id).map(|o| o.kind) else {
            return false;
        };
        // Links go first, while the object still tells its kind for members@delta.
        let holders: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.members.contains(id) || g.owners.contains(id))
            .map(|(gid, _)| gid.clone())
            .collect();
        for gid in holders {
            self.remove_link(&gid, id, false);
            self.remove_link(&gid, id, true);
        }
        match kind {
            ObjectKind::User => self.users.remove(id),
            ObjectKind::Group => self.groups.remove(id),
            _ => self.others.remove(id),
        };
        self.record(kind, id, ChangeKind::HardDeleted);
        true
    }

    /// The setting created from a template, if any.
    pub fn setting_for_template(&self, template_id: &str) -> Option<&Value> {
        self.settings
            .values()
            .find(|s| s.get("templateId").and_then(Value::as_str) == Some(template_id))
    }
}

/// Loads a tenant file (LAB.md format) into a fresh tenant. No change is logged: the file
/// is the state before the first delta round.
pub fn load(path: &str, text: &str, domain: &str) -> Result<Tenant, SimError> {
    let fail = |reason: String| SimError::TenantParse {
        path: path.to_string(),
        reason,
    };
    let doc: Value = serde_json::from_str(text).map_err(|e| fail(e.to_string()))?;
    let Some(doc) = doc.as_object() else {
        return Err(fail("the top level is not a JSON object".into()));
    };
    let mut tenant = Tenant::empty(domain);
    let sections = [
        ("users", ObjectKind::User),
        ("devices", ObjectKind::Device),
        ("orgContacts", ObjectKind::OrgContact),
        ("servicePrincipals", ObjectKind::ServicePrincipal),
        ("groups", ObjectKind::Group),
    ];
    let mut links: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
    for (section, kind) in sections {
        let Some(items) = doc.get(section) else {
            continue;
        };
        let Some(items) = items.as_array() else {
            return Err(fail(format!("\"{section}\" is not an array")));
        };
        for (i, item) in items.iter().enumerate() {
            let Some(props) = item.as_object() else {
                return Err(fail(format!("{section}[{i}] is not an object")));
            };
            let mut props = props.clone();
            let member_ids = take_ids(&mut props, "members")
                .map_err(|r| fail(format!("{section}[{i}]: {r}")))?;
            let owner_ids =
                take_ids(&mut props, "owners").map_err(|r| fail(format!("{section}[{i}]: {r}")))?;
            let cloud_managed = props
                .remove("onPremisesSyncBehavior")
                .and_then(|b| b.get("isCloudManaged").and_then(Value::as_bool))
                .unwrap_or(false);
            let id = match props.get("id") {
                Some(Value::String(id)) => id.clone(),
                None => uuid::Uuid::new_v4().to_string(),
                Some(_) => return Err(fail(format!("{section}[{i}]: \"id\" is not a string"))),
            };
            if tenant.object(&id).is_some() {
                return Err(fail(format!("{section}[{i}]: duplicate id {id}")));
            }
            props.insert("id".into(), json!(id));
            let mut obj = DirectoryObject::new(kind, props);
            obj.deleted_at = obj.str_prop("deletedDateTime").map(str::to_string);
            obj.cloud_managed = cloud_managed;
            match kind {
                ObjectKind::User => tenant.users.insert(id.clone(), obj),
                ObjectKind::Group => tenant.groups.insert(id.clone(), obj),
                _ => tenant.others.insert(id.clone(), obj),
            };
            if kind == ObjectKind::Group {
                links.push((id, member_ids, owner_ids));
            }
        }
    }
    for (gid, members, owners) in links {
        for target in members.iter().chain(owners.iter()) {
            if tenant.object(target).is_none() {
                return Err(fail(format!(
                    "group {gid}: member or owner {target} is not in the file"
                )));
            }
        }
        if let Some(group) = tenant.groups.get_mut(&gid) {
            group.members = members.into_iter().collect();
            group.owners = owners.into_iter().collect();
        }
    }
    if let Some(settings) = doc.get("settings") {
        let Some(settings) = settings.as_array() else {
            return Err(fail("\"settings\" is not an array".into()));
        };
        for s in settings {
            let mut s = s.clone();
            let id = s
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            s["id"] = json!(id);
            tenant.settings.insert(id, s);
        }
    }
    Ok(tenant)
}

fn take_ids(props: &mut Map<String, Value>, name: &str) -> Result<Vec<String>, String> {
    match props.remove(name) {
        None => Ok(Vec::new()),
        Some(Value::Array(ids)) => ids
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("\"{name}\" holds a value that is not an id string"))
            })
            .collect(),
        Some(_) => Err(format!("\"{name}\" is not an array of ids")),
    }
}

/// The tenant in file form (the inverse of `load`), soft-deleted objects included.
pub fn to_file(tenant: &Tenant) -> Value {
    let mut doc = Map::new();
    let mut section = |name: &str, objs: Vec<&DirectoryObject>| {
        let items: Vec<Value> = objs
            .into_iter()
            .map(|o| {
                let mut p = o.props.clone();
                if o.kind == ObjectKind::Group {
                    p.insert("members".into(), json!(o.members));
                    p.insert("owners".into(), json!(o.owners));
                    if o.cloud_managed {
                        p.insert(
                            "onPremisesSyncBehavior".into(),
                            json!({"isCloudManaged": true}),
                        );
                    }
                }
                Value::Object(p)
            })
            .collect();
        doc.insert(name.to_string(), Value::Array(items));
    };
    section("users", tenant.users.values().collect());
    section("groups", tenant.groups.values().collect());
    for (name, kind) in [
        ("devices", ObjectKind::Device),
        ("orgContacts", ObjectKind::OrgContact),
        ("servicePrincipals", ObjectKind::ServicePrincipal),
    ] {
        section(
            name,
            tenant.others.values().filter(|o| o.kind == kind).collect(),
        );
    }
    doc.insert(
        "settings".into(),
        Value::Array(tenant.settings.values().cloned().collect()),
    );
    Value::Object(doc)
}
