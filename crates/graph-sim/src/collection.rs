//! `/users` and `/groups`: list with `$select`/`$filter`/`$top`/`$count`, get, create,
//! update and soft delete, with Graph's validation and tenant rules for new groups.

use crate::error::{GraphError, GraphResult};
use crate::render::{self, Style};
use crate::request::{id_from_url, json_object, Ctx};
use crate::schema::{self, ObjectKind, WriteMode};
use crate::tenant::{DirectoryObject, Tenant};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The `Group.Unified` settings template.
pub const GROUP_UNIFIED_TEMPLATE: &str = "62375ab9-6b52-47ed-826b-58e47e0e304b";

fn collection_name(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::User => "users",
        _ => "groups",
    }
}

fn resource_name(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::User => "User",
        _ => "Group",
    }
}

fn finish(result: GraphResult<Response>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

/// A list page: objects after the skiptoken, `$top` of them, and a nextLink when more remain.
pub fn list_page<'a>(
    ctx: &Ctx,
    path: &str,
    items: impl Iterator<Item = &'a DirectoryObject>,
    typed: bool,
) -> GraphResult<(Vec<Value>, Option<String>)> {
    let after = match &ctx.query.skiptoken {
        Some(t) => Some(
            URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| GraphError::bad_request("Invalid $skiptoken value."))?,
        ),
        None => None,
    };
    let top = ctx.query.top.unwrap_or(100);
    let sel = ctx.query.select.as_deref();
    let mut out = Vec::new();
    let mut next = None;
    for obj in items {
        let id = obj.str_prop("id").unwrap_or_default();
        if after.as_deref().is_some_and(|a| id <= a) {
            continue;
        }
        if ctx
            .query
            .filter
            .as_ref()
            .is_some_and(|f| !f.matches(&obj.props))
        {
            continue;
        }
        if out.len() == top {
            let last = out
                .last()
                .and_then(|v: &Value| v.get("id"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let token = URL_SAFE_NO_PAD.encode(last);
            next = Some(format!(
                "{}?{}",
                ctx.url(path),
                ctx.query.with_skiptoken(&token)
            ));
            break;
        }
        let rendered = if typed {
            render::render_typed(obj, ctx.version, sel)
        } else {
            render::render(obj, ctx.version, sel, Style::Plain)
        };
        out.push(Value::Object(rendered));
    }
    Ok((out, next))
}

fn check_query(ctx: &Ctx, kind: ObjectKind) -> GraphResult<()> {
    if let Some(sel) = &ctx.query.select {
        schema::check_select(kind, ctx.version, sel, &[])?;
    }
    if let Some(f) = &ctx.query.filter {
        for p in f.properties() {
            if !schema::is_property(kind, ctx.version, p) {
                return Err(GraphError::unknown_select(p, kind.type_name()));
            }
        }
    }
    if ctx.query.count && !ctx.eventual {
        return Err(GraphError::bad_request(
            "$count is not currently supported without the ConsistencyLevel header set to eventual.",
        ));
    }
    Ok(())
}

fn live_map(tenant: &Tenant, kind: ObjectKind) -> impl Iterator<Item = &DirectoryObject> {
    let map = match kind {
        ObjectKind::User => &tenant.users,
        _ => &tenant.groups,
    };
    map.values().filter(|o| o.is_live())
}

fn list(app: &AppState, kind: ObjectKind, ctx: Ctx) -> GraphResult<Response> {
    check_query(&ctx, kind)?;
    let tenant = app.read_tenant();
    let name = collection_name(kind);
    let (value, next) = list_page(&ctx, name, live_map(&tenant, kind), false)?;
    let mut body = Map::new();
    body.insert("@odata.context".into(), json!(ctx.collection_context(name)));
    if ctx.query.count {
        let count = live_map(&tenant, kind)
            .filter(|o| {
                ctx.query
                    .filter
                    .as_ref()
                    .is_none_or(|f| f.matches(&o.props))
            })
            .count();
        body.insert("@odata.count".into(), json!(count));
    }
    if let Some(next) = next {
        body.insert("@odata.nextLink".into(), json!(next));
    }
    body.insert("value".into(), Value::Array(value));
    Ok(axum::Json(Value::Object(body)).into_response())
}

fn count(app: &AppState, kind: ObjectKind, ctx: Ctx) -> GraphResult<Response> {
    if !ctx.eventual {
        return Err(GraphError::bad_request(
            "$count is not currently supported without the ConsistencyLevel header set to eventual.",
        ));
    }
    check_query(&ctx, kind)?;
    let tenant = app.read_tenant();
    let n = live_map(&tenant, kind)
        .filter(|o| {
            ctx.query
                .filter
                .as_ref()
                .is_none_or(|f| f.matches(&o.props))
        })
        .count();
    Ok(([("content-type", "text/plain")], n.to_string()).into_response())
}

fn get_one(app: &AppState, kind: ObjectKind, ctx: Ctx, id: &str) -> GraphResult<Response> {
    check_query(&ctx, kind)?;
    let tenant = app.read_tenant();
    let obj = tenant
        .live(kind, id)
        .ok_or_else(|| GraphError::not_found(id))?;
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(ctx.context(&format!("{}/$entity", collection_name(kind)))),
    );
    body.extend(render::render(
        obj,
        ctx.version,
        ctx.query.select.as_deref(),
        Style::Plain,
    ));
    Ok(axum::Json(Value::Object(body)).into_response())
}

/// Microsoft's SID form for cloud groups and users: S-1-12-1 and the GUID as four u32.
fn cloud_sid(id: &uuid::Uuid) -> String {
    let b = id.to_bytes_le();
    let part = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    format!("S-1-12-1-{}-{}-{}-{}", part(0), part(4), part(8), part(12))
}

fn bind_ids(
    tenant: &Tenant,
    body: &mut Map<String, Value>,
    name: &str,
) -> GraphResult<Vec<String>> {
    let Some(v) = body.remove(name) else {
        return Ok(Vec::new());
    };
    let Some(urls) = v.as_array() else {
        return Err(GraphError::bad_request(format!(
            "'{name}' must be an array of URLs."
        )));
    };
    if urls.len() > 20 {
        return Err(GraphError::bad_request(format!(
            "'{name}' holds {} references; at most 20 are allowed in one request.",
            urls.len()
        )));
    }
    urls.iter()
        .map(|u| {
            let id = u
                .as_str()
                .and_then(id_from_url)
                .ok_or_else(|| GraphError::bad_request(format!("Invalid URL in '{name}'.")))?;
            tenant
                .object(&id)
                .filter(|o| o.is_live())
                .map(|_| id.clone())
                .ok_or_else(|| GraphError::not_found(&id))
        })
        .collect()
}

fn create(app: &AppState, kind: ObjectKind, ctx: Ctx, body: &[u8]) -> GraphResult<Response> {
    let mut body = json_object(body)?;
    schema::check_write(kind, ctx.version, WriteMode::Create, &body)?;
    for name in schema::required_on_create(kind) {
        if body.get(*name).is_none_or(Value::is_null) {
            return Err(GraphError::bad_request(format!(
                "A value is required for property '{name}' of resource '{}'.",
                resource_name(kind)
            )));
        }
    }
    let mut tenant = app.write_tenant();
    let id = uuid::Uuid::new_v4();
    body.insert("id".into(), json!(id.to_string()));
    body.insert(
        "createdDateTime".into(),
        json!(crate::clock::now_rfc3339_seconds()),
    );
    let (members, owners) = if kind == ObjectKind::User {
        body.remove("passwordProfile");
        let upn = body
            .get("userPrincipalName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if tenant.users.values().any(|u| {
            u.str_prop("userPrincipalName")
                .is_some_and(|x| x.eq_ignore_ascii_case(upn))
        }) {
            return Err(GraphError::bad_request(
                "Another object with the same value for property userPrincipalName already exists.",
            ));
        }
        body.entry("userType").or_insert(json!("Member"));
        (Vec::new(), Vec::new())
    } else {
        let members = bind_ids(&tenant, &mut body, "members@odata.bind")?;
        let owners = bind_ids(&tenant, &mut body, "owners@odata.bind")?;
        prepare_group(&tenant, &mut body, &id)?;
        (members, owners)
    };
    tenant.insert(DirectoryObject::new(kind, body));
    let id = id.to_string();
    for m in members {
        tenant.add_link(&id, &m, false);
    }
    for o in owners {
        tenant.add_link(&id, &o, true);
    }
    let obj = tenant
        .live(kind, &id)
        .ok_or_else(|| GraphError::not_found(&id))?;
    let mut out = Map::new();
    out.insert(
        "@odata.context".into(),
        json!(ctx.context(&format!("{}/$entity", collection_name(kind)))),
    );
    out.extend(render::render(obj, ctx.version, None, Style::Plain));
    Ok((StatusCode::CREATED, axum::Json(Value::Object(out))).into_response())
}

/// Graph's server-side values of a new group, and the tenant default for Microsoft 365 writeback.
fn prepare_group(
    tenant: &Tenant,
    body: &mut Map<String, Value>,
    id: &uuid::Uuid,
) -> GraphResult<()> {
    let mail_enabled = body.get("mailEnabled").and_then(Value::as_bool);
    let security_enabled = body.get("securityEnabled").and_then(Value::as_bool);
    let (Some(mail_enabled), Some(_)) = (mail_enabled, security_enabled) else {
        return Err(GraphError::bad_request(
            "Invalid value specified for property 'mailEnabled' or 'securityEnabled' of resource 'Group'.",
        ));
    };
    let unified = schema::is_unified(body);
    if mail_enabled && !unified {
        return Err(GraphError::bad_request(
            "Creating mail-enabled security groups or distribution lists is not supported through Microsoft Graph.",
        ));
    }
    let now = crate::clock::now_rfc3339_seconds();
    body.insert("renewedDateTime".into(), json!(now));
    body.insert("securityIdentifier".into(), json!(cloud_sid(id)));
    body.entry("groupTypes").or_insert(json!([]));
    body.entry("resourceProvisioningOptions")
        .or_insert(json!([]));
    if mail_enabled {
        let nick = body
            .get("mailNickname")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mail = format!("{nick}@{}", tenant.domain);
        body.insert("proxyAddresses".into(), json!([format!("SMTP:{mail}")]));
        body.insert("mail".into(), json!(mail));
    }
    if unified {
        body.entry("visibility").or_insert(json!("Public"));
        let given = body
            .get(schema::WRITEBACK)
            .and_then(|w| w.get("isEnabled"))
            .is_some_and(|v| !v.is_null());
        let default = tenant
            .setting_for_template(GROUP_UNIFIED_TEMPLATE)
            .and_then(|s| s.get("values"))
            .and_then(Value::as_array)
            .and_then(|vals| {
                vals.iter().find(|v| {
                    v.get("name").and_then(Value::as_str) == Some("NewUnifiedGroupWritebackDefault")
                })
            })
            .and_then(|v| v.get("value"))
            .and_then(Value::as_str)
            .map(|v| v.eq_ignore_ascii_case("true"));
        if let (false, Some(enabled)) = (given, default) {
            let mut wb = body
                .get(schema::WRITEBACK)
                .cloned()
                .unwrap_or_else(schema::default_writeback);
            wb["isEnabled"] = json!(enabled);
            body.insert(schema::WRITEBACK.into(), wb);
        }
    }
    Ok(())
}

fn update(
    app: &AppState,
    kind: ObjectKind,
    ctx: Ctx,
    id: &str,
    body: &[u8],
) -> GraphResult<Response> {
    let body = json_object(body)?;
    let mode = if ctx.seed {
        WriteMode::Seed
    } else {
        WriteMode::Update
    };
    schema::check_write(kind, ctx.version, mode, &body)?;
    let mut tenant = app.write_tenant();
    let obj = tenant
        .live(kind, id)
        .ok_or_else(|| GraphError::not_found(id))?;
    let synced = obj.props.get("onPremisesSyncEnabled") == Some(&json!(true));
    if synced && !ctx.seed && body.keys().any(|k| k != schema::WRITEBACK) {
        return Err(GraphError::bad_request(
            "Unable to update the specified properties for on-premises mastered Directory Sync objects or objects currently undergoing migration.",
        ));
    }
    if let Some(upn) = body.get("userPrincipalName").and_then(Value::as_str) {
        if tenant.users.values().any(|u| {
            u.str_prop("id") != Some(id)
                && u.str_prop("userPrincipalName")
                    .is_some_and(|x| x.eq_ignore_ascii_case(upn))
        }) {
            return Err(GraphError::bad_request(
                "Another object with the same value for property userPrincipalName already exists.",
            ));
        }
    }
    let mut body = body;
    body.remove("passwordProfile");
    tenant.update(id, body);
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn delete(app: &AppState, kind: ObjectKind, id: &str) -> GraphResult<Response> {
    let mut tenant = app.write_tenant();
    if tenant.live(kind, id).is_none() {
        return Err(GraphError::not_found(id));
    }
    tenant.soft_delete(id);
    Ok(StatusCode::NO_CONTENT.into_response())
}

macro_rules! kind_handlers {
    ($kind:expr, $list:ident, $create:ident, $get:ident, $patch:ident, $del:ident, $count:ident) => {
        pub async fn $list(
            State(app): State<Arc<AppState>>,
            Path(v): Path<String>,
            RawQuery(q): RawQuery,
            headers: HeaderMap,
        ) -> Response {
            finish(Ctx::new(&v, &headers, q.as_deref()).and_then(|ctx| list(&app, $kind, ctx)))
        }
        pub async fn $count(
            State(app): State<Arc<AppState>>,
            Path(v): Path<String>,
            RawQuery(q): RawQuery,
            headers: HeaderMap,
        ) -> Response {
            finish(Ctx::new(&v, &headers, q.as_deref()).and_then(|ctx| count(&app, $kind, ctx)))
        }
        pub async fn $create(
            State(app): State<Arc<AppState>>,
            Path(v): Path<String>,
            headers: HeaderMap,
            body: Bytes,
        ) -> Response {
            finish(Ctx::new(&v, &headers, None).and_then(|ctx| create(&app, $kind, ctx, &body)))
        }
        pub async fn $get(
            State(app): State<Arc<AppState>>,
            Path((v, id)): Path<(String, String)>,
            RawQuery(q): RawQuery,
            headers: HeaderMap,
        ) -> Response {
            finish(
                Ctx::new(&v, &headers, q.as_deref()).and_then(|ctx| get_one(&app, $kind, ctx, &id)),
            )
        }
        pub async fn $patch(
            State(app): State<Arc<AppState>>,
            Path((v, id)): Path<(String, String)>,
            headers: HeaderMap,
            body: Bytes,
        ) -> Response {
            finish(
                Ctx::new(&v, &headers, None).and_then(|ctx| update(&app, $kind, ctx, &id, &body)),
            )
        }
        pub async fn $del(
            State(app): State<Arc<AppState>>,
            Path((v, id)): Path<(String, String)>,
            headers: HeaderMap,
        ) -> Response {
            finish(Ctx::new(&v, &headers, None).and_then(|_| delete(&app, $kind, &id)))
        }
    };
}

kind_handlers!(
    ObjectKind::User,
    list_users,
    create_user,
    get_user,
    patch_user,
    delete_user,
    count_users
);
kind_handlers!(
    ObjectKind::Group,
    list_groups,
    create_group,
    get_group,
    patch_group,
    delete_group,
    count_groups
);
