//! Fault injection and the gate every Graph request passes: request counting, the Bearer
//! check, added latency, a share of 429 (with Retry-After) and a share of 503 — and the
//! test-only answer faults (malformed or incomplete delta pages, links to another origin)
//! that client trust tests need. All off by default: graph-sim answers as Graph does.

use crate::error::GraphError;
use crate::AppState;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The fault switches, settable by flags and by `POST /_sim/faults`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Share (0..=1) of Graph requests answered `429 Too Many Requests`.
    pub throttle_share: f64,
    /// Share (0..=1) of Graph requests answered `503 Service Unavailable`.
    pub unavailable_share: f64,
    /// Milliseconds added before every Graph response.
    pub latency_ms: u64,
    /// The `Retry-After` seconds sent with a 429 or 503.
    pub retry_after_secs: u64,
    /// Test-only, not Graph: the next N group-delta pages are answered without `value`
    /// (each such page uses up one).
    pub group_delta_pages_without_value: u32,
    /// Test-only, not Graph: these group ids are left out of every group-delta page (full
    /// rounds and rounds of changes), while `GET /groups/{id}` still finds them.
    pub omit_groups_from_delta: Vec<String>,
    /// Test-only, not Graph: these user ids are left out of every user-delta page, while
    /// `GET /users/{id}` and the groups' member lists still find them.
    pub omit_users_from_delta: Vec<String>,
    /// Test-only, not Graph: the same for devices (`GET /devices/{id}` still finds them).
    pub omit_devices_from_delta: Vec<String>,
    /// Test-only, not Graph: every `@odata.nextLink` of a delta page names this origin
    /// (`http://127.0.0.1:PORT`) instead of the one the client called.
    pub delta_next_link_origin: Option<String>,
    /// At most this many objects on a delta page (Graph chooses its page sizes; a client's
    /// `Prefer: odata.maxpagesize` still wins). `None`: 100.
    pub delta_page_size: Option<usize>,
    /// Test-only, not Graph: edits made to the next group-delta page, which uses them up —
    /// the malformed answers (wrong types, missing fields, cut or invalid JSON) that client
    /// trust tests generate.
    pub group_delta_page_edits: Vec<PageEdit>,
}

/// One test-only edit of a page (see [`Faults::group_delta_page_edits`]). The JSON edits
/// (`set`, `remove`) are made first, in order, then the text edits, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PageEdit {
    /// The value at this JSON pointer (RFC 6901) becomes `value`: added to an object when
    /// absent, appended to an array for the index `-`.
    Set { pointer: String, value: Value },
    /// The value at this JSON pointer is removed (nothing when there is none).
    Remove { pointer: String },
    /// The page's JSON text, where `from` first occurs, gets `to` instead: for what a JSON
    /// value cannot hold (invalid `\u` escapes, numbers out of range).
    Text { from: String, to: String },
    /// The page's JSON text is cut after this many bytes.
    Truncate { bytes: usize },
}

/// The page `body` with `edits` made, as the bytes to send.
pub fn edit_page(mut body: Value, edits: &[PageEdit]) -> Vec<u8> {
    fn split(pointer: &str) -> (&str, String) {
        let (parent, last) = pointer.rsplit_once('/').unwrap_or(("", pointer));
        (parent, last.replace("~1", "/").replace("~0", "~"))
    }
    for edit in edits {
        match edit {
            PageEdit::Set { pointer, value } if pointer.is_empty() => body = value.clone(),
            PageEdit::Set { pointer, value } => {
                let (parent, key) = split(pointer);
                match body.pointer_mut(parent) {
                    Some(Value::Object(map)) => {
                        map.insert(key, value.clone());
                    }
                    Some(Value::Array(items)) => match key.parse::<usize>() {
                        Ok(i) if i < items.len() => items[i] = value.clone(),
                        _ => items.push(value.clone()),
                    },
                    _ => {}
                }
            }
            PageEdit::Remove { pointer } => {
                let (parent, key) = split(pointer);
                match body.pointer_mut(parent) {
                    Some(Value::Object(map)) => {
                        map.remove(&key);
                    }
                    Some(Value::Array(items)) => {
                        if let Ok(i) = key.parse::<usize>() {
                            if i < items.len() {
                                items.remove(i);
                            }
                        }
                    }
                    _ => {}
                }
            }
            PageEdit::Text { .. } | PageEdit::Truncate { .. } => {}
        }
    }
    let mut text = body.to_string().into_bytes();
    for edit in edits {
        match edit {
            PageEdit::Text { from, to } => {
                let from = from.as_bytes();
                if let Some(at) = text.windows(from.len().max(1)).position(|w| w == from) {
                    text.splice(at..at + from.len(), to.bytes());
                }
            }
            PageEdit::Truncate { bytes } => text.truncate(*bytes),
            PageEdit::Set { .. } | PageEdit::Remove { .. } => {}
        }
    }
    text
}

impl Faults {
    /// Checks the shares are probabilities.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("throttle_share", self.throttle_share),
            ("unavailable_share", self.unavailable_share),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} must be between 0 and 1, got {v}"));
            }
        }
        if let Some(origin) = &self.delta_next_link_origin {
            let ok = url::Url::parse(origin).is_ok_and(|u| u.origin().is_tuple());
            if !ok {
                return Err(format!(
                    "delta_next_link_origin must be an http(s) origin such as http://127.0.0.1:8080, got {origin:?}"
                ));
            }
        }
        if self.delta_page_size == Some(0) {
            return Err("delta_page_size must be at least 1".to_string());
        }
        Ok(())
    }

    /// The fault (if any) this request draws.
    fn draw(&self) -> Option<GraphError> {
        if self.throttle_share <= 0.0 && self.unavailable_share <= 0.0 {
            return None;
        }
        let roll: f64 = rand::thread_rng().gen();
        let mut err = if roll < self.throttle_share {
            GraphError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "Please retry again later.",
            )
        } else if roll < self.throttle_share + self.unavailable_share {
            GraphError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "serviceNotAvailable",
                "The service is temporarily unavailable. Please retry again later.",
            )
        } else {
            return None;
        };
        err.retry_after = Some(self.retry_after_secs);
        Some(err)
    }
}

/// Graph requests counted by path (what tests use to count round trips).
#[derive(Debug, Default)]
pub struct Stats {
    pub total: u64,
    pub by_path: BTreeMap<String, u64>,
    /// By the `Host` header the client sent (which origin it called).
    pub by_host: BTreeMap<String, u64>,
    pub throttled: u64,
    pub unavailable: u64,
    /// Every Graph request answered, in order (at most [`REQUEST_LOG_CAP`]): what fault
    /// harnesses read to measure how long a client waited before retrying.
    pub requests: Vec<RequestRecord>,
}

/// The request log keeps this many entries; later requests are counted, not logged.
pub const REQUEST_LOG_CAP: usize = 200_000;

/// One Graph request as the gate saw it (inner `$batch` requests each have their own).
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    /// When it arrived: milliseconds since the Unix epoch (fractional).
    pub at_ms: f64,
    pub method: String,
    /// Path and query, as sent.
    pub uri: String,
    /// The status answered.
    pub status: u16,
    /// The `Retry-After` seconds answered, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl Stats {
    fn log(&mut self, record: RequestRecord) {
        if self.requests.len() < REQUEST_LOG_CAP {
            self.requests.push(record);
        }
    }
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Middleware in front of every `/v1.0` and `/beta` route.
pub async fn graph_gate(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let at_ms = now_ms();
    let method = req.method().to_string();
    let uri = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let resp = gate(&app, req, next).await;
    let retry_after = resp
        .headers()
        .get("Retry-After")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    app.stats
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .log(RequestRecord {
            at_ms,
            method,
            uri,
            status: resp.status().as_u16(),
            retry_after,
        });
    resp
}

async fn gate(app: &Arc<AppState>, req: Request, next: Next) -> Response {
    {
        let mut stats = app.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.total += 1;
        *stats
            .by_path
            .entry(req.uri().path().to_string())
            .or_default() += 1;
        let host = req
            .headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string();
        *stats.by_host.entry(host).or_default() += 1;
    }
    if let Err(e) = app.auth.check_bearer(req.headers()) {
        return e.into_response();
    }
    let faults = app.faults.read().unwrap_or_else(|e| e.into_inner()).clone();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    if let Some(err) = faults.draw() {
        let mut stats = app.stats.lock().unwrap_or_else(|e| e.into_inner());
        if err.status == StatusCode::TOO_MANY_REQUESTS {
            stats.throttled += 1;
        } else {
            stats.unavailable += 1;
        }
        return err.into_response();
    }
    let mut resp = next.run(req).await;
    // Headers every Graph response carries.
    let headers = resp.headers_mut();
    headers.insert("OData-Version", axum::http::HeaderValue::from_static("4.0"));
    headers.insert(
        "Cache-Control",
        axum::http::HeaderValue::from_static("no-cache"),
    );
    let is_json = headers
        .get("content-type")
        .is_some_and(|v| v.as_bytes() == b"application/json");
    if is_json {
        headers.insert(
            "Content-Type",
            axum::http::HeaderValue::from_static(
                "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8",
            ),
        );
    }
    resp
}
