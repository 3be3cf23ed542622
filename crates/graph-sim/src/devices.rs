//! `/devices` (list, get, create) and `/groups/{id}/onPremisesSyncBehavior` (Group Source
//! of Authority): the hybrid side of a tenant. `/devices/delta` is served by `links`.

use crate::collection::list_page;
use crate::error::{GraphError, GraphResult};
use crate::render::{self, Style};
use crate::request::{json_object, Ctx};
use crate::schema::{self, ObjectKind, WriteMode};
use crate::tenant::{DirectoryObject, Tenant};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::sync::Arc;

fn finish(result: GraphResult<Response>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

fn live_devices(tenant: &Tenant) -> impl Iterator<Item = &DirectoryObject> {
    tenant
        .others
        .values()
        .filter(|o| o.kind == ObjectKind::Device && o.is_live())
}

fn check_select(ctx: &Ctx) -> GraphResult<()> {
    match &ctx.query.select {
        Some(sel) => schema::check_select(ObjectKind::Device, ctx.version, sel, &[]),
        None => Ok(()),
    }
}

fn list(app: &AppState, ctx: Ctx) -> GraphResult<Response> {
    check_select(&ctx)?;
    let tenant = app.read_tenant();
    let (value, next) = list_page(&ctx, "devices", live_devices(&tenant), false)?;
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(ctx.collection_context("devices")),
    );
    if let Some(next) = next {
        body.insert("@odata.nextLink".into(), json!(next));
    }
    body.insert("value".into(), Value::Array(value));
    Ok(axum::Json(Value::Object(body)).into_response())
}

fn get_one(app: &AppState, ctx: Ctx, id: &str) -> GraphResult<Response> {
    check_select(&ctx)?;
    let tenant = app.read_tenant();
    let obj = tenant
        .live(ObjectKind::Device, id)
        .ok_or_else(|| GraphError::not_found(id))?;
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(ctx.context("devices/$entity")),
    );
    body.extend(render::render(
        obj,
        ctx.version,
        ctx.query.select.as_deref(),
        Style::Plain,
    ));
    Ok(axum::Json(Value::Object(body)).into_response())
}

/// `POST /devices`: Graph's required properties; the seeding extension also takes
/// `onPremisesSyncEnabled` / `onPremisesSecurityIdentifier` (a device synced from AD).
fn create(app: &AppState, ctx: Ctx, body: &[u8]) -> GraphResult<Response> {
    let mut body = json_object(body)?;
    schema::check_write(ObjectKind::Device, ctx.version, WriteMode::Create, &body)?;
    for name in schema::required_on_create(ObjectKind::Device) {
        if body.get(*name).is_none_or(Value::is_null) {
            return Err(GraphError::bad_request(format!(
                "A value is required for property '{name}' of resource 'Device'."
            )));
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    body.insert("id".into(), json!(id));
    body.insert(
        "createdDateTime".into(),
        json!(crate::clock::now_rfc3339_seconds()),
    );
    let mut tenant = app.write_tenant();
    tenant.insert(DirectoryObject::new(ObjectKind::Device, body));
    let obj = tenant
        .live(ObjectKind::Device, &id)
        .ok_or_else(|| GraphError::not_found(&id))?;
    let mut out = Map::new();
    out.insert(
        "@odata.context".into(),
        json!(ctx.context("devices/$entity")),
    );
    out.extend(render::render(obj, ctx.version, None, Style::Plain));
    Ok((StatusCode::CREATED, axum::Json(Value::Object(out))).into_response())
}

pub async fn list_devices(
    State(app): State<Arc<AppState>>,
    Path(v): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    finish(Ctx::new(&v, &headers, q.as_deref()).and_then(|ctx| list(&app, ctx)))
}

pub async fn get_device(
    State(app): State<Arc<AppState>>,
    Path((v, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    finish(Ctx::new(&v, &headers, q.as_deref()).and_then(|ctx| get_one(&app, ctx, &id)))
}

pub async fn create_device(
    State(app): State<Arc<AppState>>,
    Path(v): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    finish(Ctx::new(&v, &headers, None).and_then(|ctx| create(&app, ctx, &body)))
}

fn sync_behavior(app: &AppState, ctx: Ctx, id: &str) -> GraphResult<Response> {
    if let Some(sel) = &ctx.query.select {
        if let Some(bad) = sel
            .iter()
            .find(|n| !matches!(n.as_str(), "id" | "isCloudManaged"))
        {
            return Err(GraphError::unknown_select(
                bad,
                "microsoft.graph.onPremisesSyncBehavior",
            ));
        }
    }
    let tenant = app.read_tenant();
    let group = tenant
        .live(ObjectKind::Group, id)
        .ok_or_else(|| GraphError::not_found(id))?;
    let body = json!({
        "@odata.context": ctx.context(&format!("groups('{id}')/onPremisesSyncBehavior/$entity")),
        "id": id,
        "isCloudManaged": group.cloud_managed,
    });
    Ok(axum::Json(body).into_response())
}

fn update_sync_behavior(app: &AppState, id: &str, body: &[u8]) -> GraphResult<Response> {
    let body = json_object(body)?;
    let mut value = None;
    for (name, v) in &body {
        match (name.as_str(), v) {
            ("isCloudManaged", Value::Bool(b)) => value = Some(*b),
            ("isCloudManaged", _) => {
                return Err(GraphError::bad_request(
                    "Invalid value specified for property 'isCloudManaged' of resource 'OnPremisesSyncBehavior'.",
                ))
            }
            ("@odata.type", _) => {}
            (other, _) => {
                return Err(GraphError::unknown_property(
                    other,
                    "microsoft.graph.onPremisesSyncBehavior",
                ))
            }
        }
    }
    let mut tenant = app.write_tenant();
    if tenant.live(ObjectKind::Group, id).is_none() {
        return Err(GraphError::not_found(id));
    }
    if let Some(v) = value {
        tenant.set_cloud_managed(id, v);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn get_sync_behavior(
    State(app): State<Arc<AppState>>,
    Path((v, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    finish(Ctx::new(&v, &headers, q.as_deref()).and_then(|ctx| sync_behavior(&app, ctx, &id)))
}

pub async fn patch_sync_behavior(
    State(app): State<Arc<AppState>>,
    Path((v, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    finish(Ctx::new(&v, &headers, None).and_then(|_| update_sync_behavior(&app, &id, &body)))
}
