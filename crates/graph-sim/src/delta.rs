//! The delta engine: state tokens (opaque base64url of a position in the change log),
//! the initial full round, and rounds of changes with `members@delta` and `@removed`.

use crate::error::{GraphError, GraphResult};
use crate::render::{self, Style};
use crate::schema::ApiVersion;
use crate::tenant::{ChangeKind, DirectoryObject, Resource, Tenant};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Where in a round the next page starts: after object `id`, or inside its members at `off`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub off: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Phase {
    /// The initial round: every live object as of now; changes after `hi` come next round.
    Full { hi: u64, cur: Cursor },
    /// A round of changes with sequence numbers in `(lo, hi]`.
    Changes { lo: u64, hi: u64, cur: Cursor },
    /// A deltaLink: the next round starts after `at`.
    Link { at: u64 },
}

/// Everything a nextLink or deltaLink carries. Query options live here, as in Graph,
/// so that later requests need none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeltaToken {
    pub res: Resource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sel: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<String>>,
    /// The expiry epoch the token was issued in; older epochs are expired.
    pub ep: u64,
    pub ph: Phase,
}

const TOKEN_TAG: &str = "gsim1.";

impl DeltaToken {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{TOKEN_TAG}{}", URL_SAFE_NO_PAD.encode(json))
    }

    /// Decodes a token; anything garbled is Graph's bad-request answer.
    pub fn decode(text: &str, resource: Resource) -> GraphResult<DeltaToken> {
        let invalid = || {
            GraphError::bad_request(format!(
                "Badly formed token: the deltatoken or skiptoken '{}' is not valid.",
                text.chars().take(40).collect::<String>()
            ))
        };
        let body = text.strip_prefix(TOKEN_TAG).ok_or_else(invalid)?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| invalid())?;
        let token: DeltaToken = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if token.res != resource {
            return Err(invalid());
        }
        Ok(token)
    }

    pub fn is_expired(&self, epoch: u64) -> bool {
        self.ep < epoch
    }
}

/// Graph's answer to a delta token from before the last expiry.
pub fn expired_error(status: axum::http::StatusCode) -> GraphError {
    GraphError::new(
        status,
        "syncStateNotFound",
        "The sync state generation is not found. The delta token is expired and data must be synchronized again.",
    )
}

/// How a page ends: more to read, or the round is complete.
#[derive(Debug)]
pub enum PageEnd {
    Next(DeltaToken),
    Done(DeltaToken),
}

/// Limits of one page.
#[derive(Debug, Clone, Copy)]
pub struct PageLimits {
    pub objects: usize,
    /// Member entries per page; a group with more continues on the next page.
    pub members: usize,
    pub minimal: bool,
}

struct Budget {
    limits: PageLimits,
    objects: usize,
    members: usize,
}

impl Budget {
    fn exhausted(&self) -> bool {
        self.objects >= self.limits.objects || self.members >= self.limits.members
    }
    fn member_room(&self) -> usize {
        self.limits.members.saturating_sub(self.members)
    }
}

fn member_entry(tenant: &Tenant, id: &str) -> Option<Value> {
    let obj = tenant.object(id).filter(|o| o.is_live())?;
    Some(json!({"@odata.type": obj.kind.odata_type(), "id": id}))
}

fn wants_members(sel: Option<&[String]>) -> bool {
    sel.is_some_and(|s| s.iter().any(|n| n == "members"))
}

/// One page of a delta round for the token's position. `tenant.seq` bounds a new round.
pub fn page(
    tenant: &Tenant,
    version: ApiVersion,
    token: DeltaToken,
    limits: PageLimits,
) -> (Vec<Value>, PageEnd) {
    match token.ph.clone() {
        Phase::Link { at } => {
            let ph = Phase::Changes {
                lo: at,
                hi: tenant.seq,
                cur: Cursor::default(),
            };
            page(tenant, version, DeltaToken { ph, ..token }, limits)
        }
        Phase::Full { hi, cur } => full_page(tenant, version, token, hi, cur, limits),
        Phase::Changes { lo, hi, cur } => changes_page(tenant, version, token, lo, hi, cur, limits),
    }
}

fn objects_of(tenant: &Tenant, res: Resource) -> &BTreeMap<String, DirectoryObject> {
    match res {
        Resource::Users => &tenant.users,
        Resource::Groups => &tenant.groups,
        // Devices live with the other non-user, non-group objects: filtered by kind.
        Resource::Devices => &tenant.others,
    }
}

fn of_resource(obj: &DirectoryObject, res: Resource) -> bool {
    res != Resource::Devices || obj.kind == crate::schema::ObjectKind::Device
}

fn after<'a, V>(
    map: &'a BTreeMap<String, V>,
    cur: &Cursor,
) -> Box<dyn Iterator<Item = (&'a String, &'a V)> + 'a> {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    match (&cur.id, cur.off) {
        (None, _) => Box::new(map.iter()),
        (Some(id), 0) => Box::new(map.range::<String, _>((Excluded(id), Unbounded))),
        (Some(id), _) => Box::new(map.range::<String, _>((Included(id), Unbounded))),
    }
}

/// Renders `obj` with a chunk of member entries from `members`, starting at `off`.
/// Returns the entry and the next member offset when members remain.
fn entry_with_members(
    base: Map<String, Value>,
    members: Option<Vec<Value>>,
    off: usize,
    budget: &mut Budget,
) -> (Value, Option<usize>) {
    let mut entry = base;
    let mut rest = None;
    if let Some(all) = members {
        let room = budget.member_room().max(1);
        let chunk: Vec<Value> = all.iter().skip(off).take(room).cloned().collect();
        budget.members += chunk.len();
        if off + chunk.len() < all.len() {
            rest = Some(off + chunk.len());
        }
        entry.insert("members@delta".into(), Value::Array(chunk));
    }
    budget.objects += 1;
    (Value::Object(entry), rest)
}

fn full_page(
    tenant: &Tenant,
    version: ApiVersion,
    token: DeltaToken,
    hi: u64,
    cur: Cursor,
    limits: PageLimits,
) -> (Vec<Value>, PageEnd) {
    let sel = token.sel.as_deref();
    let mut budget = Budget {
        limits,
        objects: 0,
        members: 0,
    };
    let mut out = Vec::new();
    let mut off = cur.off;
    let mut last: Option<String> = cur.id.clone().filter(|_| cur.off == 0);
    for (id, obj) in after(objects_of(tenant, token.res), &cur) {
        if !obj.is_live()
            || !of_resource(obj, token.res)
            || token.ids.as_ref().is_some_and(|ids| !ids.contains(id))
        {
            off = 0;
            continue;
        }
        if budget.exhausted() {
            let cur = Cursor { id: last, off: 0 };
            return (
                out,
                PageEnd::Next(DeltaToken {
                    ph: Phase::Full { hi, cur },
                    ..token
                }),
            );
        }
        let mut base = render::render(obj, version, sel, Style::Delta);
        let mut rest = None;
        if wants_members(sel) {
            // Offsets count stored member ids, so a page never builds entries it skips.
            let room = budget.member_room().max(1);
            let mut ids = obj.members.iter().skip(off);
            let mut chunk = Vec::new();
            let mut consumed = 0;
            while chunk.len() < room {
                let Some(m) = ids.next() else { break };
                consumed += 1;
                chunk.extend(member_entry(tenant, m));
            }
            if ids.next().is_some() {
                rest = Some(off + consumed);
            }
            budget.members += chunk.len();
            base.insert("members@delta".into(), Value::Array(chunk));
        }
        budget.objects += 1;
        out.push(Value::Object(base));
        off = 0;
        last = Some(id.clone());
        if let Some(next_off) = rest {
            let cur = Cursor {
                id: Some(id.clone()),
                off: next_off,
            };
            return (
                out,
                PageEnd::Next(DeltaToken {
                    ph: Phase::Full { hi, cur },
                    ..token
                }),
            );
        }
    }
    (
        out,
        PageEnd::Done(DeltaToken {
            ph: Phase::Link { at: hi },
            ..token
        }),
    )
}

/// What happened to one object within a round of changes.
#[derive(Debug, Default)]
struct Summary {
    fresh: bool,
    props: BTreeSet<String>,
    members: BTreeMap<String, (bool, &'static str)>,
}

fn summarize(tenant: &Tenant, token: &DeltaToken, lo: u64, hi: u64) -> BTreeMap<String, Summary> {
    let start = tenant.log.partition_point(|c| c.seq <= lo);
    let mut out: BTreeMap<String, Summary> = BTreeMap::new();
    for change in tenant.log[start..].iter().take_while(|c| c.seq <= hi) {
        if change.resource != token.res
            || token
                .ids
                .as_ref()
                .is_some_and(|ids| !ids.contains(&change.id))
        {
            continue;
        }
        let s = out.entry(change.id.clone()).or_default();
        match &change.kind {
            ChangeKind::Created | ChangeKind::Restored => s.fresh = true,
            ChangeKind::Props(names) => s.props.extend(names.iter().cloned()),
            ChangeKind::MemberAdded(m, k) => {
                s.members.insert(m.clone(), (true, k.odata_type()));
            }
            ChangeKind::MemberRemoved(m, k) => {
                s.members.insert(m.clone(), (false, k.odata_type()));
            }
            ChangeKind::SoftDeleted | ChangeKind::HardDeleted => {}
        }
    }
    out
}

/// An object's properties and, when members are selected, its member entries.
type Entry = (Map<String, Value>, Option<Vec<Value>>);

fn change_entry(
    tenant: &Tenant,
    version: ApiVersion,
    token: &DeltaToken,
    id: &str,
    summary: &Summary,
    minimal: bool,
) -> Option<Entry> {
    let sel = token.sel.as_deref();
    let removed = |reason: &str| {
        let mut m = Map::new();
        m.insert("id".into(), json!(id));
        m.insert("@removed".into(), json!({"reason": reason}));
        Some((m, None))
    };
    let Some(obj) = objects_of(tenant, token.res).get(id) else {
        return removed("deleted");
    };
    if !obj.is_live() {
        return removed("changed");
    }
    let with_members = wants_members(sel);
    if summary.fresh {
        let members = with_members.then(|| {
            obj.members
                .iter()
                .filter_map(|m| member_entry(tenant, m))
                .collect()
        });
        return Some((render::render(obj, version, sel, Style::Delta), members));
    }
    let shown = render::shown_names(obj, version, sel);
    let changed: Vec<&String> = summary.props.iter().filter(|p| shown.contains(p)).collect();
    let member_changes: Vec<Value> = if with_members {
        summary
            .members
            .iter()
            .map(|(m, (added, odata_type))| {
                if *added {
                    json!({"@odata.type": odata_type, "id": m})
                } else {
                    json!({"@odata.type": odata_type, "id": m, "@removed": {"reason": "deleted"}})
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    if changed.is_empty() && member_changes.is_empty() {
        return None;
    }
    let base = if minimal {
        let mut m = Map::new();
        m.insert("id".into(), json!(id));
        for name in changed {
            m.insert(
                name.clone(),
                render::value_of(obj, name).unwrap_or(Value::Null),
            );
        }
        m
    } else {
        render::render(obj, version, sel, Style::Delta)
    };
    let members = (!member_changes.is_empty()).then_some(member_changes);
    Some((base, members))
}

fn changes_page(
    tenant: &Tenant,
    version: ApiVersion,
    token: DeltaToken,
    lo: u64,
    hi: u64,
    cur: Cursor,
    limits: PageLimits,
) -> (Vec<Value>, PageEnd) {
    let summaries = summarize(tenant, &token, lo, hi);
    let mut budget = Budget {
        limits,
        objects: 0,
        members: 0,
    };
    let mut out = Vec::new();
    let mut off = cur.off;
    let mut last: Option<String> = cur.id.clone().filter(|_| cur.off == 0);
    for (id, summary) in after(&summaries, &cur) {
        let Some((base, members)) =
            change_entry(tenant, version, &token, id, summary, limits.minimal)
        else {
            continue;
        };
        if budget.exhausted() {
            let cur = Cursor { id: last, off: 0 };
            let ph = Phase::Changes { lo, hi, cur };
            return (out, PageEnd::Next(DeltaToken { ph, ..token }));
        }
        let (entry, rest) = entry_with_members(base, members, off, &mut budget);
        out.push(entry);
        off = 0;
        last = Some(id.clone());
        if let Some(next_off) = rest {
            let cur = Cursor {
                id: Some(id.clone()),
                off: next_off,
            };
            let ph = Phase::Changes { lo, hi, cur };
            return (out, PageEnd::Next(DeltaToken { ph, ..token }));
        }
    }
    (
        out,
        PageEnd::Done(DeltaToken {
            ph: Phase::Link { at: hi },
            ..token
        }),
    )
}
