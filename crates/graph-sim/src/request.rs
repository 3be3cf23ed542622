//! What every Graph handler needs from a request: API version, the base URL for links
//! (from the Host header), OData options, `Prefer`, and a JSON body parsed Graph's way.

use crate::error::{GraphError, GraphResult};
use crate::odata::{Prefer, Query};
use crate::schema::ApiVersion;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

/// The per-request context of a Graph call.
pub struct Ctx {
    pub version: ApiVersion,
    /// `http://host:port`, so that links point back at whoever the client talked to.
    pub base: String,
    pub query: Query,
    pub prefer: Prefer,
    pub eventual: bool,
    /// `X-Graph-Sim-Seed: true` (seeding extension, not Graph): a PATCH may set the
    /// onPremises* properties, as a sync from AD would.
    pub seed: bool,
}

impl Ctx {
    pub fn new(version: &str, headers: &HeaderMap, raw_query: Option<&str>) -> GraphResult<Ctx> {
        let Some(version) = ApiVersion::parse(version) else {
            return Err(GraphError::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("Invalid version: {version}"),
            ));
        };
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        Ok(Ctx {
            version,
            base: format!("http://{host}"),
            query: Query::parse(raw_query)?,
            prefer: Prefer::from_headers(headers),
            eventual: crate::odata::eventual(headers),
            seed: headers
                .get("x-graph-sim-seed")
                .and_then(|h| h.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        })
    }

    /// `{base}/{version}/$metadata#{fragment}`.
    pub fn context(&self, fragment: &str) -> String {
        format!(
            "{}/{}/$metadata#{}",
            self.base,
            self.version.segment(),
            fragment
        )
    }

    /// `{base}/{version}/{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}/{}", self.base, self.version.segment(), path)
    }

    /// The `@odata.context` fragment for a collection, with the `$select` list if any.
    pub fn collection_context(&self, collection: &str) -> String {
        match &self.query.select {
            Some(sel) => self.context(&format!("{collection}({})", sel.join(","))),
            None => self.context(collection),
        }
    }
}

/// Parses a request body that must be a JSON object.
pub fn json_object(body: &[u8]) -> GraphResult<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(GraphError::bad_request(
            "The request body must be a JSON object.",
        )),
        Err(_) => Err(GraphError::malformed_json()),
    }
}

/// The object id at the end of an `@odata.id` or `@odata.bind` URL.
pub fn id_from_url(url: &str) -> Option<String> {
    let last = url.trim_end_matches('/').rsplit('/').next()?;
    let last = last
        .strip_prefix("directoryObjects(")
        .map(|s| s.trim_end_matches(')').trim_matches('\''))
        .unwrap_or(last);
    (!last.is_empty()).then(|| last.to_string())
}
