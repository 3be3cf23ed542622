//! Turning a stored directory object into the JSON Graph would send: `$select`, default
//! property sets, beta-only properties, and the absent-versus-null rule of delta.

use crate::schema::{self, ApiVersion, ObjectKind};
use crate::tenant::DirectoryObject;
use serde_json::{Map, Value};

/// Plain reads show `null` for a selected property never set; delta leaves it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Delta,
}

/// Navigation names that `$select` may carry but that are not rendered as properties.
pub const NAVIGATIONS: &[&str] = &["members", "owners"];

/// The property names shown for `obj` under `select` (no `$select` → the default set).
pub fn shown_names(
    obj: &DirectoryObject,
    version: ApiVersion,
    select: Option<&[String]>,
) -> Vec<String> {
    let mut names: Vec<String> = match select {
        Some(sel) => sel
            .iter()
            .filter(|n| !NAVIGATIONS.contains(&n.as_str()))
            .cloned()
            .collect(),
        None => match obj.kind {
            ObjectKind::User => schema::USER_DEFAULT.iter().map(|s| s.to_string()).collect(),
            ObjectKind::Group => {
                let mut all: Vec<String> = obj.props.keys().cloned().collect();
                if version == ApiVersion::Beta && !obj.props.contains_key(schema::WRITEBACK) {
                    all.push(schema::WRITEBACK.to_string());
                }
                all
            }
            // A device read without $select shows every property it has.
            ObjectKind::Device => obj.props.keys().cloned().collect(),
            _ => vec!["id".to_string(), "displayName".to_string()],
        },
    };
    if !names.iter().any(|n| n == "id") {
        names.push("id".to_string());
    }
    names.retain(|n| {
        n != "passwordProfile" && (version == ApiVersion::Beta || n != schema::WRITEBACK)
    });
    names
}

/// The JSON of `obj` with the given names.
pub fn render(
    obj: &DirectoryObject,
    version: ApiVersion,
    select: Option<&[String]>,
    style: Style,
) -> Map<String, Value> {
    let mut out = Map::new();
    for name in shown_names(obj, version, select) {
        if let Some(v) = value_of(obj, &name) {
            out.insert(name, v);
        } else if style == Style::Plain {
            out.insert(name, Value::Null);
        }
    }
    out
}

/// The value of one property, with Graph's synthesized default for `writebackConfiguration`.
pub fn value_of(obj: &DirectoryObject, name: &str) -> Option<Value> {
    match obj.props.get(name) {
        Some(v) => Some(v.clone()),
        None if name == schema::WRITEBACK && obj.kind == ObjectKind::Group => {
            Some(schema::default_writeback())
        }
        None => None,
    }
}

/// A member or owner as `GET /groups/{id}/members` lists it: typed, with its properties.
pub fn render_typed(
    obj: &DirectoryObject,
    version: ApiVersion,
    select: Option<&[String]>,
) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("@odata.type".into(), Value::from(obj.kind.odata_type()));
    out.extend(render(obj, version, select, Style::Plain));
    out
}
