//! `directory/deletedItems`: the soft-deleted users and groups, their restore, and their
//! permanent deletion (which is what turns a delta `@removed` from "changed" into "deleted").

use crate::error::{GraphError, GraphResult};
use crate::render::{self, Style};
use crate::request::Ctx;
use crate::schema::ObjectKind;
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::sync::Arc;

fn finish(result: GraphResult<Response>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

fn list(app: &AppState, ctx: &Ctx, kind: ObjectKind, cast: &str) -> GraphResult<Response> {
    let tenant = app.read_tenant();
    let map = match kind {
        ObjectKind::User => &tenant.users,
        _ => &tenant.groups,
    };
    let sel = ctx.query.select.as_deref();
    let value: Vec<Value> = map
        .values()
        .filter(|o| !o.is_live())
        .filter(|o| {
            ctx.query
                .filter
                .as_ref()
                .is_none_or(|f| f.matches(&o.props))
        })
        .map(|o| {
            let mut v = render::render(o, ctx.version, sel, Style::Plain);
            if sel.is_none() {
                v.insert("deletedDateTime".into(), json!(o.deleted_at));
            }
            Value::Object(v)
        })
        .collect();
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(ctx.context(&format!("directory/deletedItems/{cast}"))),
    );
    if ctx.query.count {
        body.insert("@odata.count".into(), json!(value.len()));
    }
    body.insert("value".into(), Value::Array(value));
    Ok(axum::Json(Value::Object(body)).into_response())
}

fn entity(app: &AppState, ctx: &Ctx, id: &str) -> GraphResult<Map<String, Value>> {
    let tenant = app.read_tenant();
    let obj = tenant
        .object(id)
        .filter(|o| matches!(o.kind, ObjectKind::User | ObjectKind::Group))
        .ok_or_else(|| GraphError::not_found(id))?;
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(ctx.context("directoryObjects/$entity")),
    );
    body.insert("@odata.type".into(), json!(obj.kind.odata_type()));
    body.extend(render::render(
        obj,
        ctx.version,
        ctx.query.select.as_deref(),
        Style::Plain,
    ));
    if ctx.query.select.is_none() {
        body.insert("deletedDateTime".into(), json!(obj.deleted_at));
    }
    Ok(body)
}

fn is_deleted(app: &AppState, id: &str) -> bool {
    app.read_tenant().object(id).is_some_and(|o| !o.is_live())
}

/// `GET /directory/deletedItems/microsoft.graph.group` (or `.user`) and `GET .../{id}`.
pub async fn get(
    State(app): State<Arc<AppState>>,
    Path((v, item)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    finish(
        Ctx::new(&v, &headers, q.as_deref()).and_then(|ctx| match item.as_str() {
            "microsoft.graph.group" => list(&app, &ctx, ObjectKind::Group, &item),
            "microsoft.graph.user" => list(&app, &ctx, ObjectKind::User, &item),
            id if is_deleted(&app, id) => {
                Ok(axum::Json(Value::Object(entity(&app, &ctx, id)?)).into_response())
            }
            id => Err(GraphError::not_found(id)),
        }),
    )
}

/// `POST /directory/deletedItems/{id}/restore`: the object comes back with its links.
pub async fn restore(
    State(app): State<Arc<AppState>>,
    Path((v, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    finish(Ctx::new(&v, &headers, None).and_then(|ctx| {
        if !app.write_tenant().restore(&id) {
            return Err(GraphError::not_found(&id));
        }
        let mut body = entity(&app, &ctx, &id)?;
        body.insert("deletedDateTime".into(), Value::Null);
        Ok(axum::Json(Value::Object(body)).into_response())
    }))
}

/// `DELETE /directory/deletedItems/{id}`: permanent deletion.
pub async fn purge(
    State(app): State<Arc<AppState>>,
    Path((v, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    finish(Ctx::new(&v, &headers, None).and_then(|_| {
        let mut tenant = app.write_tenant();
        if tenant.object(&id).is_none_or(|o| o.is_live()) {
            return Err(GraphError::not_found(&id));
        }
        tenant.hard_delete(&id);
        Ok(StatusCode::NO_CONTENT.into_response())
    }))
}
