//! Errors of the simulator: `GraphError` is an error *answer* in Graph's wire shape,
//! `SimError` is a failure of the simulator itself (bad tenant file, socket, certificate).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A failure of the simulator process itself, reported by the binary and never sent to a client.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("reading tenant file {path}: {source}")]
    TenantRead {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing tenant file {path}: {reason}")]
    TenantParse { path: String, reason: String },
    #[error("writing tenant file {path}: {source}")]
    TenantWrite {
        path: String,
        source: std::io::Error,
    },
    #[error("client certificate {path}: {reason}")]
    Certificate { path: String, reason: String },
    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("serving HTTP: {0}")]
    Serve(std::io::Error),
}

/// An error answer in Microsoft Graph's form: `{"error":{"code","message","innerError"}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// Seconds for a `Retry-After` header (throttling and unavailability).
    pub retry_after: Option<u64>,
}

impl GraphError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        GraphError {
            status,
            code: code.to_string(),
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Request_BadRequest", message)
    }

    /// Graph's answer to an id that names no object.
    pub fn not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!(
                "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    }

    pub fn unsupported_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Request_UnsupportedQuery", message)
    }

    /// The body Graph sends for a request body that is not JSON.
    pub fn malformed_json() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
        )
    }

    pub fn unknown_property(name: &str, type_name: &str) -> Self {
        Self::bad_request(format!(
            "Property '{name}' does not exist as a declared property or extension property of type '{type_name}'."
        ))
    }

    pub fn unknown_select(name: &str, type_name: &str) -> Self {
        Self::bad_request(format!(
            "Could not find a property named '{name}' on type '{type_name}'."
        ))
    }

    pub fn read_only(name: &str) -> Self {
        Self::bad_request(format!("Property '{name}' is read-only and cannot be set."))
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            message,
        )
    }

    /// The JSON body of this error, as Graph writes it.
    pub fn body(&self) -> serde_json::Value {
        let date = crate::clock::now_rfc3339_seconds();
        let request_id = uuid::Uuid::new_v4().to_string();
        let inner = if self.status == StatusCode::TOO_MANY_REQUESTS {
            // Graph's documented throttling body carries the status inside innerError too.
            json!({
                "code": "429",
                "date": date,
                "message": "Please retry after",
                "request-id": request_id,
                "status": "429",
            })
        } else {
            json!({"date": date, "request-id": request_id, "client-request-id": request_id})
        };
        json!({"error": {"code": self.code, "message": self.message, "innerError": inner}})
    }
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert("Retry-After", v);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                "WWW-Authenticate",
                HeaderValue::from_static("Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\""),
            );
        }
        resp
    }
}

pub type GraphResult<T> = Result<T, GraphError>;
