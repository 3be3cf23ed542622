//! Group members and owners (`/members`, `/members/$ref`, owners likewise) and the
//! `/users/delta` and `/groups/delta` endpoints on top of the delta engine.

use crate::collection::list_page;
use crate::delta::{self, DeltaToken, PageEnd, PageLimits, Phase};
use crate::error::{GraphError, GraphResult};
use crate::request::{id_from_url, json_object, Ctx};
use crate::schema::{self, ObjectKind};
use crate::tenant::Resource;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::sync::Arc;

fn finish(result: GraphResult<Response>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

fn list_links(app: &AppState, ctx: Ctx, group_id: &str, owners: bool) -> GraphResult<Response> {
    let tenant = app.read_tenant();
    let group = tenant
        .live(ObjectKind::Group, group_id)
        .ok_or_else(|| GraphError::not_found(group_id))?;
    let set = if owners {
        &group.owners
    } else {
        &group.members
    };
    let nav = if owners { "owners" } else { "members" };
    let items = set
        .iter()
        .filter_map(|id| tenant.object(id))
        .filter(|o| o.is_live());
    let (value, next) = list_page(&ctx, &format!("groups/{group_id}/{nav}"), items, true)?;
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(ctx.context("directoryObjects")),
    );
    if let Some(next) = next {
        body.insert("@odata.nextLink".into(), json!(next));
    }
    body.insert("value".into(), Value::Array(value));
    Ok(axum::Json(Value::Object(body)).into_response())
}

fn add_link(app: &AppState, group_id: &str, body: &[u8], owners: bool) -> GraphResult<Response> {
    let body = json_object(body)?;
    let nav = if owners { "owners" } else { "members" };
    let target = body
        .get("@odata.id")
        .and_then(Value::as_str)
        .and_then(id_from_url)
        .ok_or_else(|| {
            GraphError::bad_request("The '@odata.id' reference is missing or invalid.")
        })?;
    let mut tenant = app.write_tenant();
    let group = tenant
        .live(ObjectKind::Group, group_id)
        .ok_or_else(|| GraphError::not_found(group_id))?;
    if !owners {
        if schema::has_group_type(&group.props, "DynamicMembership") {
            return Err(GraphError::bad_request(
                "Insufficient privileges to complete the operation: members of a group with dynamic membership cannot be changed.",
            ));
        }
        let mail_enabled = group.props.get("mailEnabled") == Some(&json!(true));
        if mail_enabled && !schema::is_unified(&group.props) {
            return Err(GraphError::bad_request(
                "Cannot Update a mail-enabled security groups and or distribution list.",
            ));
        }
    }
    if tenant.object(&target).filter(|o| o.is_live()).is_none() {
        return Err(GraphError::not_found(&target));
    }
    if !tenant.add_link(group_id, &target, owners) {
        return Err(GraphError::bad_request(format!(
            "One or more added object references already exist for the following modified properties: '{nav}'."
        )));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn remove_link(
    app: &AppState,
    group_id: &str,
    target: &str,
    owners: bool,
) -> GraphResult<Response> {
    let mut tenant = app.write_tenant();
    if tenant.live(ObjectKind::Group, group_id).is_none() {
        return Err(GraphError::not_found(group_id));
    }
    if !tenant.remove_link(group_id, target, owners) {
        return Err(GraphError::not_found(target));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn list_members(
    State(app): State<Arc<AppState>>,
    Path((v, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    finish(Ctx::new(&v, &headers, q.as_deref()).and_then(|ctx| list_links(&app, ctx, &id, false)))
}

pub async fn list_owners(
    State(app): State<Arc<AppState>>,
    Path((v, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    finish(Ctx::new(&v, &headers, q.as_deref()).and_then(|ctx| list_links(&app, ctx, &id, true)))
}

pub async fn add_member(
    State(app): State<Arc<AppState>>,
    Path((v, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    finish(Ctx::new(&v, &headers, None).and_then(|_| add_link(&app, &id, &body, false)))
}

pub async fn add_owner(
    State(app): State<Arc<AppState>>,
    Path((v, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    finish(Ctx::new(&v, &headers, None).and_then(|_| add_link(&app, &id, &body, true)))
}

pub async fn remove_member(
    State(app): State<Arc<AppState>>,
    Path((v, id, member)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    finish(Ctx::new(&v, &headers, None).and_then(|_| remove_link(&app, &id, &member, false)))
}

pub async fn remove_owner(
    State(app): State<Arc<AppState>>,
    Path((v, id, owner)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    finish(Ctx::new(&v, &headers, None).and_then(|_| remove_link(&app, &id, &owner, true)))
}

/// Default objects per delta page, as Graph pages directory objects.
const DEFAULT_DELTA_PAGE: usize = 100;

fn delta_round(app: &AppState, ctx: Ctx, res: Resource) -> GraphResult<Response> {
    let (kind, collection) = match res {
        Resource::Users => (ObjectKind::User, "users"),
        Resource::Groups => (ObjectKind::Group, "groups"),
        Resource::Devices => (ObjectKind::Device, "devices"),
    };
    let epoch = app.delta_epoch();
    let tenant = app.read_tenant();
    let q = &ctx.query;
    let given = q.skiptoken.as_ref().or(q.deltatoken.as_ref());
    let token = match given {
        Some(t) if t != "latest" => {
            let token = DeltaToken::decode(t, res)?;
            if token.is_expired(epoch) {
                return Err(delta::expired_error(app.expired_delta_status));
            }
            token
        }
        _ => {
            for (name, used) in [
                ("$expand", q.expand.is_some()),
                ("$orderby", q.orderby.is_some()),
            ] {
                if used {
                    return Err(GraphError::unsupported_query(format!(
                        "The query option '{name}' is not supported with delta queries."
                    )));
                }
            }
            if let Some(sel) = &q.select {
                let navs: &[&str] = if kind == ObjectKind::Group {
                    &["members"]
                } else {
                    &[]
                };
                schema::check_select(kind, ctx.version, sel, navs)?;
            }
            let ids = match &q.filter {
                None => None,
                Some(f) => match f.only_ids() {
                    Some(ids) if ids.len() <= 50 => Some(ids),
                    _ => {
                        return Err(GraphError::unsupported_query(
                            "Delta queries support $filter only as up to 50 'id eq' clauses joined by 'or'.",
                        ))
                    }
                },
            };
            let ph = if given.is_some() {
                Phase::Link { at: tenant.seq }
            } else {
                Phase::Full {
                    hi: tenant.seq,
                    cur: Default::default(),
                }
            };
            let token = DeltaToken {
                res,
                sel: q.select.clone(),
                ids,
                ep: epoch,
                ph,
            };
            if given.is_some() {
                // `$deltatoken=latest`: no data, only a deltaLink from now on.
                return Ok(delta_response(
                    &ctx,
                    collection,
                    &token,
                    Vec::new(),
                    PageEnd::Done(token.clone()),
                    PageShape::default(),
                ));
            }
            token
        }
    };
    let faults = app.faults.read().unwrap_or_else(|e| e.into_inner()).clone();
    let limits = PageLimits {
        objects: ctx
            .prefer
            .max_page_size
            .or(faults.delta_page_size)
            .unwrap_or(DEFAULT_DELTA_PAGE),
        members: app.member_chunk,
        minimal: ctx.prefer.minimal,
    };
    let (mut value, end) = delta::page(&tenant, ctx.version, token.clone(), limits);
    drop(tenant);
    let omit = match res {
        Resource::Groups => &faults.omit_groups_from_delta,
        Resource::Users => &faults.omit_users_from_delta,
        Resource::Devices => &faults.omit_devices_from_delta,
    };
    if !omit.is_empty() {
        value.retain(|v| {
            v.get("id")
                .and_then(Value::as_str)
                .is_none_or(|id| !omit.iter().any(|o| o == id))
        });
    }
    let edits = if res == Resource::Groups {
        take_page_edits(app)
    } else {
        Vec::new()
    };
    let shape = PageShape {
        next_link_origin: faults.delta_next_link_origin.as_deref(),
        without_value: res == Resource::Groups && take_page_without_value(app),
        edits: &edits,
    };
    Ok(delta_response(&ctx, collection, &token, value, end, shape))
}

/// Uses up one `group_delta_pages_without_value` fault, if any is left.
fn take_page_without_value(app: &AppState) -> bool {
    let mut faults = app.faults.write().unwrap_or_else(|e| e.into_inner());
    if faults.group_delta_pages_without_value == 0 {
        return false;
    }
    faults.group_delta_pages_without_value -= 1;
    true
}

/// Uses up the `group_delta_page_edits` fault, if set.
fn take_page_edits(app: &AppState) -> Vec<crate::faults::PageEdit> {
    let mut faults = app.faults.write().unwrap_or_else(|e| e.into_inner());
    std::mem::take(&mut faults.group_delta_page_edits)
}

/// Test-only answer faults applied to one delta page (see `faults::Faults`); the default
/// is Graph's own shape.
#[derive(Debug, Default, Clone, Copy)]
struct PageShape<'a> {
    next_link_origin: Option<&'a str>,
    without_value: bool,
    edits: &'a [crate::faults::PageEdit],
}

fn delta_response(
    ctx: &Ctx,
    collection: &str,
    token: &DeltaToken,
    value: Vec<Value>,
    end: PageEnd,
    shape: PageShape,
) -> Response {
    let context = match &token.sel {
        Some(sel) => ctx.context(&format!("{collection}({})", sel.join(","))),
        None => ctx.context(collection),
    };
    let mut body = Map::new();
    body.insert("@odata.context".into(), json!(context));
    match end {
        PageEnd::Next(t) => {
            let mut link = format!(
                "{}?$skiptoken={}",
                ctx.url(&format!("{collection}/delta")),
                t.encode()
            );
            if let Some(origin) = shape.next_link_origin {
                // Test-only fault: the same link on another origin.
                if let Some(rest) = link.strip_prefix(&ctx.base) {
                    link = format!("{}{rest}", origin.trim_end_matches('/'));
                }
            }
            body.insert("@odata.nextLink".into(), json!(link));
        }
        PageEnd::Done(t) => {
            let link = format!(
                "{}?$deltatoken={}",
                ctx.url(&format!("{collection}/delta")),
                t.encode()
            );
            body.insert("@odata.deltaLink".into(), json!(link));
        }
    }
    if !shape.without_value {
        body.insert("value".into(), Value::Array(value));
    }
    let mut resp = if shape.edits.is_empty() {
        axum::Json(Value::Object(body)).into_response()
    } else {
        let bytes = crate::faults::edit_page(Value::Object(body), shape.edits);
        (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            bytes,
        )
            .into_response()
    };
    let mut applied = Vec::new();
    if ctx.prefer.minimal {
        applied.push("return=minimal".to_string());
    }
    if let Some(n) = ctx.prefer.max_page_size {
        applied.push(format!("odata.maxpagesize={n}"));
    }
    if let Ok(v) = HeaderValue::from_str(&applied.join(", ")) {
        if !applied.is_empty() {
            resp.headers_mut().insert("Preference-Applied", v);
        }
    }
    resp
}

pub async fn users_delta(
    State(app): State<Arc<AppState>>,
    Path(v): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    finish(
        Ctx::new(&v, &headers, q.as_deref())
            .and_then(|ctx| delta_round(&app, ctx, Resource::Users)),
    )
}

pub async fn groups_delta(
    State(app): State<Arc<AppState>>,
    Path(v): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    finish(
        Ctx::new(&v, &headers, q.as_deref())
            .and_then(|ctx| delta_round(&app, ctx, Resource::Groups)),
    )
}

pub async fn devices_delta(
    State(app): State<Arc<AppState>>,
    Path(v): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    finish(
        Ctx::new(&v, &headers, q.as_deref())
            .and_then(|ctx| delta_round(&app, ctx, Resource::Devices)),
    )
}
