//! The errors of the Graph client: each says which endpoint, which operation, and what
//! Graph (or the token endpoint) said, without ever showing a secret or a token.

/// An error talking to Graph or its token endpoint.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// No answer: DNS, connection refused, TLS, timeout.
    #[error("Microsoft Graph endpoint {url} unreachable: {message}")]
    Unreachable { url: String, message: String },
    /// The token endpoint refused our credentials (its AADSTS text is in `message`), or
    /// Graph answered 401/403.
    #[error("credentials refused (HTTP {status}, {code}): {message}")]
    Auth {
        status: u16,
        code: String,
        message: String,
    },
    /// The delta link expired or is no longer valid: start a full round.
    #[error("Graph delta token expired or invalid, a full round is needed: {message}")]
    DeltaExpired { message: String },
    /// Any other error answer of Graph, in its `{"error":{"code","message"}}` form.
    #[error("Graph {method} {url} failed (HTTP {status}, {code}): {message}")]
    Api {
        method: String,
        url: String,
        status: u16,
        code: String,
        message: String,
    },
    /// Graph answered something that is not what its documentation describes.
    #[error("cannot read Graph's answer to {url}: {message}")]
    Decode { url: String, message: String },
    /// A URL (a link in Graph's answer, a stored delta link, a request) whose scheme, host
    /// or port differ from the configured graph_url's: never followed, never sent the token.
    #[error("{what} {url} is not on the configured graph_url ({origin}): not followed, the access token goes to graph_url only")]
    ForeignOrigin {
        /// What named the URL: "@odata.nextLink in the answer to https://…", "request to".
        what: String,
        url: String,
        origin: String,
    },
    /// The client cannot be built from its configuration (bad certificate or key, bad URL).
    #[error("Graph client configuration: {message}")]
    Config { message: String },
}

impl GraphError {
    /// Graph or its token endpoint cannot be reached, or refuses our credentials
    /// (the CLI's exit code 3).
    pub fn is_unreachable_or_refused(&self) -> bool {
        matches!(
            self,
            GraphError::Unreachable { .. } | GraphError::Auth { .. }
        )
    }
}

/// A URL as shown in errors and logs: state tokens shortened (they are long and useless
/// to a reader), never anything else added.
pub fn display_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.query().is_none() {
                return u.to_string();
            }
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k.eq_ignore_ascii_case("$deltatoken")
                        || k.eq_ignore_ascii_case("$skiptoken")
                    {
                        "…".to_string()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            let query = pairs
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&");
            u.set_query(None);
            format!("{u}?{query}")
        }
        Err(_) => url.split('?').next().unwrap_or(url).to_string(),
    }
}
