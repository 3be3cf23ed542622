//! JSON batching (`POST /$batch`): at most 20 requests with unique ids, run through the
//! same router (so each inner request is counted, authorised and faulted on its own),
//! `dependsOn` honoured with 424 for a failed dependency, and one status per request.

use crate::error::{GraphError, GraphResult};
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use tower::ServiceExt;

/// Graph's documented limit of requests in one batch.
pub const MAX_BATCH: usize = 20;

/// One inner request after validation.
struct Inner {
    id: String,
    method: String,
    url: String,
    headers: Map<String, Value>,
    body: Option<Value>,
    depends_on: Vec<String>,
}

fn batch_error(message: &str) -> GraphError {
    GraphError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
}

fn parse(body: &[u8]) -> GraphResult<Vec<Inner>> {
    let doc: Value = serde_json::from_slice(body).map_err(|_| GraphError::malformed_json())?;
    let Some(requests) = doc.get("requests").and_then(Value::as_array) else {
        return Err(batch_error(
            "Invalid batch payload format: 'requests' must be an array.",
        ));
    };
    if requests.is_empty() {
        return Err(batch_error(
            "Invalid batch payload format: 'requests' is empty.",
        ));
    }
    if requests.len() > MAX_BATCH {
        return Err(batch_error(&format!(
            "The number of requests in the batch ({}) exceeds the limit of {MAX_BATCH}.",
            requests.len()
        )));
    }
    let mut out: Vec<Inner> = Vec::new();
    for r in requests {
        let text = |name: &str| r.get(name).and_then(Value::as_str).map(str::to_string);
        let (Some(id), Some(method), Some(url)) = (text("id"), text("method"), text("url")) else {
            return Err(batch_error(
                "Invalid batch payload format: every request needs 'id', 'method' and 'url'.",
            ));
        };
        if out.iter().any(|o| o.id == id) {
            return Err(batch_error(&format!(
                "Batch request id '{id}' is not unique."
            )));
        }
        let depends_on: Vec<String> = r
            .get("dependsOn")
            .and_then(Value::as_array)
            .map(|d| {
                d.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        for dep in &depends_on {
            if !out.iter().any(|o| &o.id == dep) {
                return Err(batch_error(&format!(
                    "Request '{id}' depends on '{dep}', which is not an earlier request of this batch."
                )));
            }
        }
        out.push(Inner {
            id,
            method: method.to_ascii_uppercase(),
            url,
            headers: r
                .get("headers")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            body: r.get("body").cloned(),
            depends_on,
        });
    }
    Ok(out)
}

fn inner_path(version: &str, url: &str) -> GraphResult<String> {
    let url = url.trim_start_matches('/');
    if url.starts_with("http") || url.contains("$batch") {
        return Err(batch_error(
            "Batch request urls must be relative and must not be a $batch.",
        ));
    }
    Ok(format!("/{version}/{url}"))
}

async fn run(app: &AppState, version: &str, outer: &HeaderMap, inner: &Inner) -> Value {
    let Some(router) = app.router.get() else {
        return json!({"id": inner.id, "status": 500});
    };
    let path = match inner_path(version, &inner.url) {
        Ok(p) => p,
        Err(e) => return json!({"id": inner.id, "status": e.status.as_u16(), "body": e.body()}),
    };
    let mut req = Request::builder().method(inner.method.as_str()).uri(&path);
    for name in ["authorization", "host"] {
        if let Some(v) = outer.get(name) {
            req = req.header(name, v);
        }
    }
    for (k, v) in &inner.headers {
        if let Some(v) = v.as_str() {
            req = req.header(k.as_str(), v);
        }
    }
    let body = match &inner.body {
        Some(b) => Body::from(serde_json::to_vec(b).unwrap_or_default()),
        None => Body::empty(),
    };
    let req = match req.body(body) {
        Ok(r) => r,
        Err(e) => {
            let err = batch_error(&format!(
                "Request '{}' is not a valid HTTP request: {e}",
                inner.id
            ));
            return json!({"id": inner.id, "status": 400, "body": err.body()});
        }
    };
    let resp = match router.clone().oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = resp.status().as_u16();
    let mut headers = Map::new();
    for name in [
        "Cache-Control",
        "OData-Version",
        "Content-Type",
        "Retry-After",
        "Location",
        "Preference-Applied",
    ] {
        if let Some(v) = resp.headers().get(name).and_then(|v| v.to_str().ok()) {
            headers.insert(name.into(), json!(v));
        }
    }
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let mut out = json!({"id": inner.id, "status": status, "headers": headers});
    if !bytes.is_empty() {
        out["body"] = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    }
    out
}

/// `POST /{version}/$batch`.
pub async fn batch(
    State(app): State<Arc<AppState>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let requests = match parse(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let mut statuses: HashMap<String, u16> = HashMap::new();
    let mut responses = Vec::new();
    for inner in &requests {
        let failed_dep = inner
            .depends_on
            .iter()
            .find(|d| statuses.get(*d).is_none_or(|s| *s >= 400));
        let resp = match failed_dep {
            Some(dep) => {
                let err = GraphError::new(
                    StatusCode::FAILED_DEPENDENCY,
                    "FailedDependency",
                    format!(
                        "Request '{}' was not run because request '{dep}' it depends on failed.",
                        inner.id
                    ),
                );
                json!({"id": inner.id, "status": 424, "body": err.body()})
            }
            None => run(&app, &version, &headers, inner).await,
        };
        let status = resp.get("status").and_then(Value::as_u64).unwrap_or(500) as u16;
        statuses.insert(inner.id.clone(), status);
        responses.push(resp);
    }
    axum::Json(json!({"responses": responses})).into_response()
}
