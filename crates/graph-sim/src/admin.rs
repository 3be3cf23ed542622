//! The simulator's own control endpoints under `/_sim` (not Graph, no auth): fault
//! switches, expiring every delta token, request statistics and the request log, and
//! saving the tenant.

use crate::faults::Faults;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;

fn admin_error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({"error": message}))).into_response()
}

/// `GET /_sim/faults`: the switches in force.
pub async fn get_faults(State(app): State<Arc<AppState>>) -> Response {
    let faults = app.faults.read().unwrap_or_else(|e| e.into_inner()).clone();
    axum::Json(faults).into_response()
}

/// `POST /_sim/faults`: replace the switches (absent fields are 0).
pub async fn set_faults(State(app): State<Arc<AppState>>, body: Bytes) -> Response {
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return admin_error(StatusCode::BAD_REQUEST, format!("fault switches: {e}")),
    };
    if let Err(e) = faults.validate() {
        return admin_error(StatusCode::BAD_REQUEST, format!("fault switches: {e}"));
    }
    *app.faults.write().unwrap_or_else(|e| e.into_inner()) = faults.clone();
    axum::Json(faults).into_response()
}

/// `POST /_sim/expire-delta-tokens`: every nextLink and deltaLink issued so far expires.
pub async fn expire_delta_tokens(State(app): State<Arc<AppState>>) -> Response {
    let epoch = app.epoch.fetch_add(1, Ordering::SeqCst) + 1;
    axum::Json(json!({"epoch": epoch})).into_response()
}

/// `GET /_sim/stats`: Graph requests counted by path.
pub async fn stats(State(app): State<Arc<AppState>>) -> Response {
    let s = app.stats.lock().unwrap_or_else(|e| e.into_inner());
    axum::Json(json!({
        "total": s.total,
        "by_path": s.by_path,
        "by_host": s.by_host,
        "throttled": s.throttled,
        "unavailable": s.unavailable,
    }))
    .into_response()
}

/// `GET /_sim/requests`: every Graph request answered since the last reset, in order:
/// `{"requests": [{"at_ms", "method", "uri", "status", "retry_after"?}, ...]}`.
pub async fn requests(State(app): State<Arc<AppState>>) -> Response {
    let s = app.stats.lock().unwrap_or_else(|e| e.into_inner());
    axum::Json(json!({ "requests": s.requests })).into_response()
}

/// `DELETE /_sim/stats`: start counting (and logging requests) from zero.
pub async fn reset_stats(State(app): State<Arc<AppState>>) -> Response {
    *app.stats.lock().unwrap_or_else(|e| e.into_inner()) = Default::default();
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /_sim/save`: write the tenant to the `--save` file now.
pub async fn save(State(app): State<Arc<AppState>>) -> Response {
    match app.save() {
        Ok(Some(path)) => axum::Json(json!({"saved": path})).into_response(),
        Ok(None) => admin_error(StatusCode::CONFLICT, "no --save file was given".into()),
        Err(e) => admin_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
