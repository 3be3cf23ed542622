//! The HTTP side of the Graph client: bearer tokens, retries on throttling (429/503/504,
//! honouring Retry-After), error answers turned into [`GraphError`], delta and paged reads.

use crate::auth::{read_token_answer, token_endpoint, token_form, CachedToken, Proof};
use crate::delta::{
    parse_writeback_item, read_page, DeltaItem, DeltaRound, GroupChange, RoundChanges, UserChange,
};
use crate::error::display_url;
use crate::{GraphConfig, GraphError};
use rand::Rng;
use reqwest::header::{HeaderMap, ACCEPT, RETRY_AFTER};
use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wb_model::{MemberKind, MemberRef, ObjectId, WritebackConfiguration};

/// Properties read by group delta. `owners` is not selectable on group delta (Graph
/// documents `members` as the only navigation property tracked for groups).
const GROUP_SELECT: &str = "id,displayName,description,groupTypes,mailEnabled,securityEnabled,\
mail,mailNickname,proxyAddresses,onPremisesSyncEnabled,onPremisesSecurityIdentifier,\
writebackConfiguration,members";

const USER_SELECT: &str = "id,userPrincipalName,displayName,onPremisesSyncEnabled,\
onPremisesSecurityIdentifier,onPremisesImmutableId,onPremisesDistinguishedName,\
onPremisesSamAccountName,onPremisesDomainName";

/// The longest Retry-After we honour; a longer one is capped (a cycle must end).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// Requests that failed to connect are retried at most this often (fail fast when down).
const MAX_NETWORK_RETRIES: u32 = 2;

/// A Microsoft Graph client; cheap to clone (shares its token cache and request count).
#[derive(Clone)]
pub struct GraphClient {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: GraphConfig,
    http: reqwest::Client,
    proof: Proof,
    token_endpoint: String,
    token: tokio::sync::Mutex<Option<CachedToken>>,
    requests: AtomicU64,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("graph_url", &self.inner.cfg.graph_url)
            .field("tenant", &self.inner.cfg.tenant)
            .field("client_id", &self.inner.cfg.client_id)
            .finish()
    }
}

/// What an error answer said: `{"error":{"code","message"}}`.
fn error_words(body: &[u8]) -> (String, String) {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let err = parsed.as_ref().and_then(|v| v.get("error"));
    let code = err
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    let message = err
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            text.trim().chars().take(500).collect()
        });
    (code, message)
}

/// Does this error answer to a delta request mean "your delta link is no longer valid"?
fn means_delta_expired(status: u16, code: &str, message: &str) -> bool {
    const CODES: [&str; 4] = [
        "syncStateNotFound",
        "syncStateInvalid",
        "resyncRequired",
        "resyncApplicationRequired",
    ];
    let lower = message.to_ascii_lowercase();
    status == 410
        || CODES.iter().any(|c| c.eq_ignore_ascii_case(code))
        || (lower.contains("token") && (lower.contains("expired") || lower.contains("invalid")))
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?;
    let secs: u64 = text.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// Exponential backoff with jitter: about 1 s, 2 s, 4 s, ... up to 32 s.
fn backoff(attempt: u32) -> Duration {
    let base_ms = 1000u64.saturating_mul(1u64 << attempt.min(5));
    let jitter: f64 = rand::thread_rng().gen_range(0.5..1.0);
    Duration::from_millis((base_ms as f64 * jitter) as u64)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl GraphClient {
    /// Builds a client; checks the URLs and, for a certificate, reads the certificate and
    /// its key (no request is sent).
    pub fn new(cfg: GraphConfig) -> Result<Self, GraphError> {
        for (name, value) in [("graph_url", &cfg.graph_url), ("login_url", &cfg.login_url)] {
            url::Url::parse(value).map_err(|e| GraphError::Config {
                message: format!("{name} {value:?} is not a URL: {e}"),
            })?;
        }
        let proof = Proof::from_credential(&cfg.credential)?;
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .user_agent(concat!("writeback/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GraphError::Config {
                message: format!("cannot build the HTTP client: {}", error_chain(&e)),
            })?;
        Ok(GraphClient {
            inner: Arc::new(Inner {
                token_endpoint: token_endpoint(&cfg),
                cfg,
                http,
                proof,
                token: tokio::sync::Mutex::new(None),
                requests: AtomicU64::new(0),
            }),
        })
    }

    /// HTTP requests sent to Graph (not to the token endpoint) so far, retries included.
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// An access token for Graph, from the cache while it is fresh.
    pub async fn token(&self) -> Result<String, GraphError> {
        let mut cached = self.inner.token.lock().await;
        if let Some(t) = cached.as_ref() {
            if Instant::now() < t.refresh_at {
                return Ok(t.access_token.clone());
            }
        }
        let fresh = self.fetch_token().await?;
        let token = fresh.access_token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    async fn forget_token(&self) {
        *self.inner.token.lock().await = None;
    }

    async fn fetch_token(&self) -> Result<CachedToken, GraphError> {
        let inner = &self.inner;
        let endpoint = &inner.token_endpoint;
        let mut attempt = 0u32;
        loop {
            let form = token_form(&inner.cfg, &inner.proof, endpoint)?;
            let sent = inner.http.post(endpoint).form(&form).send().await;
            let resp = match sent {
                Ok(resp) => resp,
                Err(e) if attempt < MAX_NETWORK_RETRIES.min(inner.cfg.max_retries) => {
                    let wait = backoff(attempt);
                    tracing::warn!(url = %display_url(endpoint), error = %error_chain(&e),
                        attempt, wait_ms = wait.as_millis() as u64, "token request failed, retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    continue;
                }
                Err(e) => {
                    return Err(GraphError::Unreachable {
                        url: display_url(endpoint),
                        message: error_chain(&e),
                    })
                }
            };
            let status = resp.status().as_u16();
            let wait = retry_after(resp.headers());
            let body = resp.bytes().await.map_err(|e| GraphError::Unreachable {
                url: display_url(endpoint),
                message: error_chain(&e),
            })?;
            if (status == 429 || status >= 500) && attempt < inner.cfg.max_retries {
                let wait = wait.unwrap_or_else(|| backoff(attempt));
                tracing::warn!(url = %display_url(endpoint), status, attempt,
                    wait_ms = wait.as_millis() as u64, "token endpoint busy, retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            return read_token_answer(endpoint, status, &body);
        }
    }

    fn resolve(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("https://") || path_or_url.starts_with("http://") {
            path_or_url.to_string()
        } else {
            let base = self.inner.cfg.graph_url.trim_end_matches('/');
            if path_or_url.starts_with('/') {
                format!("{base}{path_or_url}")
            } else {
                format!("{base}/{path_or_url}")
            }
        }
    }

    /// Sends one Graph request, retrying throttled answers; returns the JSON body
    /// (`Null` for an empty one, e.g. 204).
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        is_delta: bool,
    ) -> Result<Value, GraphError> {
        let inner = &self.inner;
        let shown = display_url(url);
        let mut attempt = 0u32;
        let mut token_renewed = false;
        loop {
            let token = self.token().await?;
            let mut req = inner
                .http
                .request(method.clone(), url)
                .bearer_auth(&token)
                .header(ACCEPT, "application/json");
            if let Some(b) = body {
                req = req.json(b);
            }
            inner.requests.fetch_add(1, Ordering::Relaxed);
            let resp = match req.send().await {
                Ok(resp) => resp,
                // Only reads are retried after a failure to connect: a write may have landed.
                Err(e)
                    if method == Method::GET
                        && attempt < MAX_NETWORK_RETRIES.min(inner.cfg.max_retries) =>
                {
                    let wait = backoff(attempt);
                    tracing::warn!(%method, url = %shown, error = %error_chain(&e), attempt,
                        wait_ms = wait.as_millis() as u64, "Graph request failed, retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    continue;
                }
                Err(e) => {
                    return Err(GraphError::Unreachable {
                        url: shown,
                        message: error_chain(&e),
                    })
                }
            };
            let status = resp.status().as_u16();
            let wait = retry_after(resp.headers());
            let bytes = resp.bytes().await.map_err(|e| GraphError::Unreachable {
                url: shown.clone(),
                message: error_chain(&e),
            })?;
            if (200..300).contains(&status) {
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    return Ok(Value::Null);
                }
                return serde_json::from_slice(&bytes).map_err(|e| GraphError::Decode {
                    url: shown,
                    message: format!("not JSON: {e}"),
                });
            }
            if matches!(status, 429 | 503 | 504) && attempt < inner.cfg.max_retries {
                let wait = wait.unwrap_or_else(|| backoff(attempt));
                tracing::warn!(%method, url = %shown, status, attempt,
                    wait_ms = wait.as_millis() as u64, "Graph throttled the request, retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            let (code, message) = error_words(&bytes);
            if status == 401 && !token_renewed {
                // The cached token may have been revoked or expired early: renew once.
                tracing::debug!(url = %shown, "Graph answered 401, renewing the token");
                self.forget_token().await;
                token_renewed = true;
                continue;
            }
            // 401/403 are about our access token, never about the delta token.
            if is_delta
                && (400..500).contains(&status)
                && status != 401
                && status != 403
                && means_delta_expired(status, &code, &message)
            {
                return Err(GraphError::DeltaExpired {
                    message: format!("{method} {shown}: HTTP {status} {code}: {message}"),
                });
            }
            if status == 401 || status == 403 {
                return Err(GraphError::Auth {
                    status,
                    code,
                    message: format!("{method} {shown}: {message}"),
                });
            }
            return Err(GraphError::Api {
                method: method.to_string(),
                url: shown,
                status,
                code,
                message,
            });
        }
    }

    /// GET of any Graph path (`/v1.0/organization`) or absolute URL, as JSON.
    pub async fn get_json(&self, path_or_url: &str) -> Result<Value, GraphError> {
        let url = self.resolve(path_or_url);
        self.send(Method::GET, &url, None, false).await
    }

    /// Any Graph request with an optional JSON body (the admin commands' PATCH / POST /
    /// DELETE); returns the answer's JSON, `Null` when it has no body.
    pub async fn send_json(
        &self,
        method: Method,
        path_or_url: &str,
        body: Option<&Value>,
    ) -> Result<Value, GraphError> {
        let url = self.resolve(path_or_url);
        self.send(method, &url, body, false).await
    }

    /// Reads pages from `first` following `@odata.nextLink` exactly as given, until the
    /// `@odata.deltaLink`; hands every item to `on_item`. Returns the delta link.
    ///
    /// No `Prefer: return=minimal`: without it every changed group comes with all its
    /// selected properties, so a group the image does not know yet (e.g. restored from
    /// deleted items) is still complete. The cost is bytes, not requests.
    async fn delta_pages(
        &self,
        first: &str,
        mut on_item: impl FnMut(&Value) -> Result<(), String>,
    ) -> Result<String, GraphError> {
        let mut url = first.to_string();
        let mut pages = 0u32;
        loop {
            let body = self.send(Method::GET, &url, None, true).await?;
            let decode = |message: String| GraphError::Decode {
                url: display_url(&url),
                message,
            };
            let page = read_page(body).map_err(decode)?;
            pages += 1;
            tracing::debug!(url = %display_url(&url), items = page.value.len(), pages, "delta page");
            for item in &page.value {
                on_item(item).map_err(decode)?;
            }
            match (page.next_link, page.delta_link) {
                (Some(next), _) if next == url => {
                    return Err(decode(
                        "@odata.nextLink points to the same page".to_string(),
                    ))
                }
                (Some(next), _) => url = next,
                (None, Some(delta)) => return Ok(delta),
                (None, None) => {
                    return Err(decode(
                        "a delta page without @odata.nextLink or @odata.deltaLink".to_string(),
                    ))
                }
            }
        }
    }

    /// One round of group delta: from the beginning (`from = None`, a full round) or from
    /// the delta link of the previous round, exactly as given.
    pub async fn group_delta(
        &self,
        from: Option<&str>,
    ) -> Result<DeltaRound<GroupChange>, GraphError> {
        self.delta_round(from, &format!("/beta/groups/delta?$select={GROUP_SELECT}"))
            .await
    }

    /// One round of user delta (see [`GraphClient::group_delta`]).
    pub async fn user_delta(
        &self,
        from: Option<&str>,
    ) -> Result<DeltaRound<UserChange>, GraphError> {
        self.delta_round(from, &format!("/v1.0/users/delta?$select={USER_SELECT}"))
            .await
    }

    /// One delta round of `T`s: from `initial` (query parameters on the first request only)
    /// or from the given delta link; sightings of one object on several pages are merged.
    async fn delta_round<T: DeltaItem>(
        &self,
        from: Option<&str>,
        initial: &str,
    ) -> Result<DeltaRound<T>, GraphError> {
        let first = match from {
            Some(link) => link.to_string(),
            None => self.resolve(initial),
        };
        let mut round = RoundChanges::<T>::new();
        let delta_link = self
            .delta_pages(&first, |item| {
                T::parse(item)?.add_to(&mut round);
                Ok(())
            })
            .await?;
        let changes = round.into_changes();
        tracing::info!(
            changes = changes.len(),
            full = from.is_none(),
            "{} delta round read",
            T::KIND
        );
        Ok(DeltaRound {
            changes,
            delta_link,
            full: from.is_none(),
        })
    }

    /// `writebackConfiguration` of every group (beta), read page by page (999 a page).
    pub async fn writeback_configurations(
        &self,
    ) -> Result<BTreeMap<ObjectId, WritebackConfiguration>, GraphError> {
        let mut configs = BTreeMap::new();
        self.collection(
            "/beta/groups?$select=id,writebackConfiguration&$top=999",
            |item| parse_writeback_item(item, &mut configs),
        )
        .await?;
        Ok(configs)
    }

    /// The owners of a group (`GET /v1.0/groups/{id}/owners`, paged). Group delta does not
    /// carry owners, so they are read this way when `write_owners` needs them.
    pub async fn group_owners(&self, id: &str) -> Result<Vec<MemberRef>, GraphError> {
        let mut owners = Vec::new();
        self.collection(
            &format!("/v1.0/groups/{id}/owners?$select=id&$top=999"),
            |o| {
                let oid = o
                    .get("id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| "an owner without id".to_string())?;
                let kind = o
                    .get("@odata.type")
                    .and_then(Value::as_str)
                    .map_or(MemberKind::User, MemberKind::from_odata_type);
                owners.push(MemberRef {
                    kind,
                    id: oid.to_string(),
                });
                Ok(())
            },
        )
        .await?;
        Ok(owners)
    }

    /// Reads a plain collection from `first`, following `@odata.nextLink` exactly as given;
    /// hands every item to `on_item`.
    async fn collection(
        &self,
        first: &str,
        mut on_item: impl FnMut(&Value) -> Result<(), String>,
    ) -> Result<(), GraphError> {
        let mut url = self.resolve(first);
        loop {
            let body = self.send(Method::GET, &url, None, false).await?;
            let decode = |message: String| GraphError::Decode {
                url: display_url(&url),
                message,
            };
            let page = read_page(body).map_err(decode)?;
            for item in &page.value {
                on_item(item).map_err(decode)?;
            }
            match page.next_link {
                Some(next) if next == url => {
                    return Err(decode(
                        "@odata.nextLink points to the same page".to_string(),
                    ))
                }
                Some(next) => url = next,
                None => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_delta_answers_are_recognised() {
        assert!(means_delta_expired(410, "unknown", ""));
        assert!(means_delta_expired(400, "syncStateNotFound", "x"));
        assert!(means_delta_expired(
            400,
            "badRequest",
            "The delta token has expired"
        ));
        assert!(!means_delta_expired(
            400,
            "Request_BadRequest",
            "Invalid filter clause"
        ));
    }

    #[test]
    fn graph_error_body_gives_code_and_message() {
        let (code, message) =
            error_words(br#"{"error":{"code":"Request_ResourceNotFound","message":"Resource 'x' does not exist."}}"#);
        assert_eq!(code, "Request_ResourceNotFound");
        assert_eq!(message, "Resource 'x' does not exist.");
        let (code, message) = error_words(b"<html>bad gateway</html>");
        assert_eq!(code, "unknown");
        assert!(message.contains("bad gateway"));
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        assert!(backoff(0) <= Duration::from_secs(1));
        assert!(backoff(3) >= Duration::from_secs(4));
        assert!(backoff(30) <= Duration::from_secs(32));
    }

    #[test]
    fn delta_tokens_are_shortened_in_shown_urls() {
        let shown =
            display_url("https://graph.microsoft.com/beta/groups/delta?$deltatoken=SECRETLYLONG");
        assert!(!shown.contains("SECRETLYLONG"), "{shown}");
        assert!(shown.starts_with("https://graph.microsoft.com/beta/groups/delta?"));
    }
}
