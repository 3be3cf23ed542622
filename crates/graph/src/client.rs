//! The HTTP side of the Graph client: bearer tokens, retries on throttling (429/503/504,
//! honouring Retry-After), error answers turned into [`GraphError`], delta and paged reads.

use crate::apply::Presence;
use crate::auth::{read_token_answer, token_endpoint, token_form, CachedToken, Proof};
use crate::delta::{
    parse_writeback_item, read_page, DeltaItem, DeltaRound, DeviceChange, GroupChange,
    RoundChanges, UserChange,
};
use crate::error::display_url;
use crate::{GraphConfig, GraphError};
use rand::Rng;
use reqwest::header::{HeaderMap, ACCEPT, RETRY_AFTER};
use reqwest::Method;
use serde_json::{json, Value};
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
/// What device delta reads: enough to find a device synced from AD as its computer account.
const DEVICE_SELECT: &str =
    "id,displayName,deviceId,onPremisesSyncEnabled,onPremisesSecurityIdentifier";

/// The longest Retry-After we honour; a longer one is capped (a cycle must end).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// Requests that failed to connect are retried at most this often (fail fast when down).
const MAX_NETWORK_RETRIES: u32 = 2;
/// Graph's limit of requests in one `$batch`.
pub const MAX_BATCH: usize = 20;

/// Graph answers that throttled a request (429/503/504, a `$batch` item counted as one),
/// for every client of this process: its metrics.
static THROTTLED_TOTAL: AtomicU64 = AtomicU64::new(0);

/// Requests Graph throttled so far, every client of this process (each retried).
pub fn throttled_total() -> u64 {
    THROTTLED_TOTAL.load(Ordering::Relaxed)
}

/// A Microsoft Graph client; cheap to clone (shares its token cache and request count).
#[derive(Clone)]
pub struct GraphClient {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: GraphConfig,
    /// Scheme, host and port of `cfg.graph_url`: the only origin that gets the token.
    graph_origin: url::Origin,
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

/// The origin (scheme, host, port — a default port counts as given) of an http(s) URL.
fn origin_of(url: &str) -> Option<url::Origin> {
    url::Url::parse(url)
        .ok()
        .map(|u| u.origin())
        .filter(url::Origin::is_tuple)
}

/// Follows a redirect only within the origin of the request that got it: reqwest would keep
/// the `Authorization` header on a redirect to another scheme of the same host.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().map(url::Url::origin);
        if attempt.previous().len() < 10 && first == Some(attempt.url().origin()) {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// A group id as one path segment (percent-encoded): a wrongly encoded id would get a 404,
/// which here means "deleted".
fn path_segment(id: &str) -> String {
    let mut u = url::Url::parse("http://segment.invalid/").expect("a constant, valid URL");
    if let Ok(mut segments) = u.path_segments_mut() {
        segments.push(id);
    }
    u.path().trim_start_matches('/').to_string()
}

/// One request of a `$batch`: its method, its URL relative to the batch's version
/// (`/groups/{id}`), and an optional JSON body (sent with `Content-Type: application/json`).
#[derive(Debug, Clone)]
pub struct BatchRequest {
    pub method: Method,
    pub url: String,
    pub body: Option<Value>,
}

impl BatchRequest {
    pub fn get(url: impl Into<String>) -> Self {
        BatchRequest {
            method: Method::GET,
            url: url.into(),
            body: None,
        }
    }

    pub fn patch(url: impl Into<String>, body: Value) -> Self {
        BatchRequest {
            method: Method::PATCH,
            url: url.into(),
            body: Some(body),
        }
    }

    fn to_json(&self, id: usize) -> Value {
        let mut r = json!({"id": id.to_string(), "method": self.method.as_str(), "url": self.url});
        if let Some(b) = &self.body {
            r["body"] = b.clone();
            r["headers"] = json!({"Content-Type": "application/json"});
        }
        r
    }
}

/// One inner answer of a `$batch`: its own status (the outer 200 says nothing about it)
/// and body.
#[derive(Debug, Clone)]
pub struct BatchAnswer {
    pub status: u16,
    retry_after: Option<Duration>,
    pub body: Value,
}

impl BatchAnswer {
    /// Whether the inner request succeeded (2xx).
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The inner error answer as a [`GraphError`] with Graph's code and message, naming
    /// `method` and `url` (the inner request's).
    pub fn error(&self, method: &Method, url: &str) -> GraphError {
        let err = self.body.get("error");
        let word = |k: &str| {
            err.and_then(|e| e.get(k))
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_string()
        };
        let (code, message) = (word("code"), word("message"));
        if self.status == 401 || self.status == 403 {
            return GraphError::Auth {
                status: self.status,
                code,
                message: format!("{method} {url} (in $batch): {message}"),
            };
        }
        GraphError::Api {
            method: method.to_string(),
            url: format!("{url} (in $batch)"),
            status: self.status,
            code,
            message,
        }
    }
}

/// The inner answers of a `$batch` answer, by request id; every id of `asked` must be
/// answered exactly once.
fn read_batch(body: &Value, asked: &[usize]) -> Result<BTreeMap<usize, BatchAnswer>, String> {
    let Some(responses) = body.get("responses").and_then(Value::as_array) else {
        return Err("the $batch answer has no `responses` array".to_string());
    };
    let mut out = BTreeMap::new();
    for r in responses {
        let id = r
            .get("id")
            .and_then(Value::as_str)
            .and_then(|id| id.parse::<usize>().ok())
            .filter(|id| asked.contains(id))
            .ok_or_else(|| format!("a $batch response with an unknown id: {}", r["id"]))?;
        let status = r
            .get("status")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok())
            .filter(|s| (100..600).contains(s))
            .ok_or_else(|| format!("$batch response {id} has no valid status"))?;
        let retry_after = r
            .get("headers")
            .and_then(|h| h.get("Retry-After").or_else(|| h.get("retry-after")))
            .and_then(|v| match v {
                Value::String(s) => s.trim().parse::<u64>().ok(),
                other => other.as_u64(),
            })
            .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER));
        let answer = BatchAnswer {
            status,
            retry_after,
            body: r.get("body").cloned().unwrap_or(Value::Null),
        };
        if out.insert(id, answer).is_some() {
            return Err(format!("$batch request {id} was answered twice"));
        }
    }
    if let Some(missing) = asked.iter().find(|id| !out.contains_key(id)) {
        return Err(format!(
            "the $batch answer has no response to request {missing}"
        ));
    }
    Ok(out)
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
        let graph_origin = origin_of(&cfg.graph_url).ok_or_else(|| GraphError::Config {
            message: format!(
                "graph_url {:?} is not an http(s) URL with a host",
                cfg.graph_url
            ),
        })?;
        let proof = Proof::from_credential(&cfg.credential)?;
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .redirect(redirect_policy())
            .user_agent(concat!("writeback/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GraphError::Config {
                message: format!("cannot build the HTTP client: {}", error_chain(&e)),
            })?;
        Ok(GraphClient {
            inner: Arc::new(Inner {
                token_endpoint: token_endpoint(&cfg),
                graph_origin,
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

    /// Is `url` on the configured graph_url's origin (same scheme, host and port, a default
    /// port counting as given)? Only such URLs are requested, and only they get the token.
    pub fn is_graph_origin(&self, url: &str) -> bool {
        origin_of(url).is_some_and(|o| o == self.inner.graph_origin)
    }

    /// `Err(ForeignOrigin)` unless `url` is on graph_url's origin; `what` says who named it.
    fn check_origin(&self, what: &str, url: &str) -> Result<(), GraphError> {
        if self.is_graph_origin(url) {
            return Ok(());
        }
        Err(GraphError::ForeignOrigin {
            what: what.to_string(),
            url: display_url(url),
            origin: self.inner.graph_origin.ascii_serialization(),
        })
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
        // Every Graph request passes here: the token never leaves graph_url's origin,
        // whatever a link, a stored state or a caller names.
        self.check_origin(&format!("{method} request to"), url)?;
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
                THROTTLED_TOTAL.fetch_add(1, Ordering::Relaxed);
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
            for (name, link) in [
                ("@odata.nextLink", &page.next_link),
                ("@odata.deltaLink", &page.delta_link),
            ] {
                if let Some(link) = link {
                    self.check_link(&url, name, link)?;
                }
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

    /// A link of the answer to `page_url` may be followed (or stored) only on graph_url's
    /// origin; the error names the page and the foreign link.
    fn check_link(&self, page_url: &str, name: &str, link: &str) -> Result<(), GraphError> {
        self.check_origin(
            &format!("{name} in the answer to {}:", display_url(page_url)),
            link,
        )
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

    /// One round of device delta (see [`GraphClient::group_delta`]): devices synced from AD
    /// are written as their computer accounts.
    pub async fn device_delta(
        &self,
        from: Option<&str>,
    ) -> Result<DeltaRound<DeviceChange>, GraphError> {
        self.delta_round(
            from,
            &format!("/v1.0/devices/delta?$select={DEVICE_SELECT}"),
        )
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

    /// `onPremisesSyncBehavior.isCloudManaged` of a group (Group Source of Authority):
    /// whether a group synced from AD was converted to cloud management. A group Graph
    /// no longer has (404) is not cloud-managed.
    pub async fn group_is_cloud_managed(&self, id: &str) -> Result<bool, GraphError> {
        let url = self.resolve(&format!(
            "/v1.0/groups/{}/onPremisesSyncBehavior?$select=isCloudManaged",
            path_segment(id)
        ));
        match self.send(Method::GET, &url, None, false).await {
            Ok(body) => Ok(body.get("isCloudManaged").and_then(Value::as_bool) == Some(true)),
            Err(GraphError::Api { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
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
                    id: oid.into(),
                });
                Ok(())
            },
        )
        .await?;
        Ok(owners)
    }

    /// What Graph says of groups a full round did not list: `Alive` (`GET
    /// /v1.0/groups/{id}` → 200), `SoftDeleted` (404 there, 200 from
    /// `/directory/deletedItems/{id}`) or `Gone` (404 from both). Absence from a round is
    /// no evidence by itself; this is the confirmation a delete needs.
    ///
    /// Reads by `$batch`, 20 a request (two batches for 20 groups gone instead of 40 GETs);
    /// inner 429/503/504 are retried after their Retry-After. Any other answer (403, 500,
    /// a malformed batch answer) is an error: the caller applies nothing.
    pub async fn confirm_gone(
        &self,
        ids: &[ObjectId],
    ) -> Result<BTreeMap<ObjectId, Presence>, GraphError> {
        let live = self.present_in("groups", ids).await?;
        let not_found: Vec<ObjectId> = live
            .iter()
            .filter(|(_, alive)| !**alive)
            .map(|(id, _)| id.clone())
            .collect();
        let deleted = self
            .present_in("directory/deletedItems", &not_found)
            .await?;
        let out: BTreeMap<ObjectId, Presence> = live
            .into_iter()
            .map(|(id, alive)| {
                let presence = match (alive, deleted.get(&id)) {
                    (true, _) => Presence::Alive,
                    (false, Some(true)) => Presence::SoftDeleted,
                    (false, _) => Presence::Gone,
                };
                (id, presence)
            })
            .collect();
        if !ids.is_empty() {
            tracing::info!(
                asked = ids.len(),
                gone = out.values().filter(|p| **p == Presence::Gone).count(),
                soft_deleted = out
                    .values()
                    .filter(|p| **p == Presence::SoftDeleted)
                    .count(),
                alive = out.values().filter(|p| **p == Presence::Alive).count(),
                "groups absent from the full round checked with Graph"
            );
        }
        Ok(out)
    }

    /// Which of these objects of `collection` (`users`, `devices`), left out of a full
    /// round, Graph still has (`GET /v1.0/{collection}/{id}` → 200: `true`; 404: `false`).
    /// Absence from a round is no evidence that an object is gone. By `$batch`, as
    /// [`GraphClient::confirm_gone`]; any other answer is an error: the caller applies
    /// nothing.
    pub async fn confirm_present(
        &self,
        collection: &str,
        ids: &[ObjectId],
    ) -> Result<BTreeMap<ObjectId, bool>, GraphError> {
        let out = self.present_in(collection, ids).await?;
        if !ids.is_empty() {
            tracing::info!(
                collection,
                asked = ids.len(),
                alive = out.values().filter(|a| **a).count(),
                "objects absent from the full round checked with Graph"
            );
        }
        Ok(out)
    }

    /// Whether each of `ids` is found under `/v1.0/{path}/{id}` (200: `true`, 404: `false`),
    /// read by `$batch`; any other answer is an error naming the inner request.
    async fn present_in(
        &self,
        path: &str,
        ids: &[ObjectId],
    ) -> Result<BTreeMap<ObjectId, bool>, GraphError> {
        let urls: Vec<String> = ids
            .iter()
            .map(|id| format!("/{path}/{}?$select=id", path_segment(id)))
            .collect();
        let answers = self.batch_get(&urls).await?;
        let mut out = BTreeMap::new();
        for ((id, url), answer) in ids.iter().zip(&urls).zip(&answers) {
            let found = match answer.status {
                200 => true,
                404 => false,
                _ => return Err(answer.error(&Method::GET, &format!("/v1.0{url}"))),
            };
            out.insert(id.clone(), found);
        }
        Ok(out)
    }

    /// GETs of `urls` (relative to `/v1.0`) by `POST /v1.0/$batch` (see [`GraphClient::batch`]).
    async fn batch_get(&self, urls: &[String]) -> Result<Vec<BatchAnswer>, GraphError> {
        let requests: Vec<BatchRequest> = urls.iter().map(BatchRequest::get).collect();
        self.batch("v1.0", &requests).await
    }

    /// Sends `requests` by `POST /{version}/$batch`, at most [`MAX_BATCH`] a batch; returns
    /// every inner answer in the order of `requests`. Inner answers are not errors here:
    /// the caller reads each one's status. Throttled inner requests (429/503/504) are sent
    /// again, in a new batch, after the longest Retry-After among them (backoff without
    /// one), up to `max_retries` times; after that their throttled answer is returned.
    /// `Err` only when the batch itself fails (the outer request, or an answer that does
    /// not answer every request exactly once) — inner requests of earlier batches may have
    /// been applied by then.
    pub async fn batch(
        &self,
        version: &str,
        requests: &[BatchRequest],
    ) -> Result<Vec<BatchAnswer>, GraphError> {
        let batch_url = self.resolve(&format!("/{version}/$batch"));
        let mut answers: BTreeMap<usize, BatchAnswer> = BTreeMap::new();
        for start in (0..requests.len()).step_by(MAX_BATCH) {
            let mut pending: Vec<usize> = (start..requests.len().min(start + MAX_BATCH)).collect();
            let mut attempt = 0u32;
            while !pending.is_empty() {
                let inner: Vec<Value> = pending.iter().map(|&i| requests[i].to_json(i)).collect();
                let body = json!({ "requests": inner });
                let answer = self
                    .send(Method::POST, &batch_url, Some(&body), false)
                    .await?;
                let mut got =
                    read_batch(&answer, &pending).map_err(|message| GraphError::Decode {
                        url: display_url(&batch_url),
                        message,
                    })?;
                let mut throttled = Vec::new();
                let mut wait: Option<Duration> = None;
                for i in pending {
                    let Some(a) = got.remove(&i) else { continue };
                    if matches!(a.status, 429 | 503 | 504) && attempt < self.inner.cfg.max_retries {
                        wait = wait.max(a.retry_after);
                        throttled.push(i);
                    } else {
                        answers.insert(i, a);
                    }
                }
                if !throttled.is_empty() {
                    let wait = wait.unwrap_or_else(|| backoff(attempt));
                    THROTTLED_TOTAL.fetch_add(throttled.len() as u64, Ordering::Relaxed);
                    tracing::warn!(
                        throttled = throttled.len(),
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        "Graph throttled requests of a $batch, retrying them"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                pending = throttled;
            }
        }
        Ok(answers.into_values().collect())
    }

    /// Reads a plain collection (`/beta/groups?$select=…&$top=999`) from `first`, following
    /// `@odata.nextLink` exactly as given (and only to graph_url's origin); hands every item
    /// to `on_item`. A page that is not Graph's shape, or an item `on_item` refuses (its
    /// `Err` text), fails the read.
    pub async fn collection(
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
            if let Some(next) = &page.next_link {
                self.check_link(&url, "@odata.nextLink", next)?;
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

    fn offline_client(graph_url: &str) -> GraphClient {
        let mut cfg =
            crate::GraphConfig::new("t", "c", crate::Credential::Secret("not-used".into()));
        cfg.graph_url = graph_url.to_string();
        // Nothing listens there: a test that reached the token endpoint would fail differently.
        cfg.login_url = "http://127.0.0.1:9".to_string();
        cfg.max_retries = 0;
        GraphClient::new(cfg).unwrap()
    }

    #[test]
    fn origins_compare_scheme_host_and_port_with_default_ports() {
        let c = offline_client("https://graph.microsoft.com");
        assert!(c.is_graph_origin("https://graph.microsoft.com/v1.0/groups"));
        assert!(c.is_graph_origin("https://graph.microsoft.com:443/beta/groups/delta?$x=1"));
        assert!(c.is_graph_origin("https://GRAPH.microsoft.com/v1.0/groups"));
        assert!(!c.is_graph_origin("http://graph.microsoft.com/v1.0/groups"));
        assert!(!c.is_graph_origin("https://graph.microsoft.com:8443/v1.0/groups"));
        assert!(!c.is_graph_origin("https://graph.microsoft.com.evil.example/v1.0/groups"));
        assert!(!c.is_graph_origin("https://graph.microsoft.com@evil.example/v1.0/groups"));
        assert!(
            !c.is_graph_origin("/v1.0/groups"),
            "a relative link is not followed"
        );
        assert!(!c.is_graph_origin("not a url"));

        let lab = offline_client("http://127.0.0.1:8080/");
        assert!(lab.is_graph_origin("http://127.0.0.1:8080/beta/groups/delta"));
        assert!(!lab.is_graph_origin("http://localhost:8080/beta/groups/delta"));
        assert!(!lab.is_graph_origin("http://127.0.0.1:8081/beta/groups/delta"));
        let plain = offline_client("http://h.example:80");
        assert!(plain.is_graph_origin("http://h.example/v1.0/groups"));
    }

    #[test]
    fn foreign_next_and_delta_links_are_refused_naming_the_shortened_link() {
        let c = offline_client("https://graph.microsoft.com");
        let page = "https://graph.microsoft.com/beta/groups/delta?$select=id";
        for name in ["@odata.nextLink", "@odata.deltaLink"] {
            let err = c
                .check_link(
                    page,
                    name,
                    "https://evil.example/beta/groups/delta?$skiptoken=SECRETSTATE",
                )
                .unwrap_err();
            assert!(matches!(err, GraphError::ForeignOrigin { .. }), "{err}");
            let text = err.to_string();
            assert!(text.contains(name), "{text}");
            assert!(
                text.contains("https://evil.example/beta/groups/delta?"),
                "{text}"
            );
            assert!(!text.contains("SECRETSTATE"), "{text}");
        }
        assert!(c
            .check_link(
                page,
                "@odata.nextLink",
                "https://graph.microsoft.com:443/beta/groups/delta?$skiptoken=x"
            )
            .is_ok());
    }

    #[tokio::test]
    async fn a_request_to_a_foreign_origin_is_refused_before_any_token_is_fetched() {
        let c = offline_client("https://graph.microsoft.com");
        let err = c
            .get_json("https://evil.example/v1.0/organization")
            .await
            .unwrap_err();
        assert!(matches!(err, GraphError::ForeignOrigin { .. }), "{err}");
        assert_eq!(c.requests(), 0);
        let err = c
            .group_delta(Some(
                "http://graph.microsoft.com/beta/groups/delta?$deltatoken=x",
            ))
            .await
            .unwrap_err();
        assert!(matches!(err, GraphError::ForeignOrigin { .. }), "{err}");
    }

    #[test]
    fn graph_url_must_be_http_with_a_host() {
        let mut cfg = crate::GraphConfig::new("t", "c", crate::Credential::Secret("s".into()));
        cfg.graph_url = "file:///etc/graph".into();
        assert!(matches!(
            GraphClient::new(cfg),
            Err(GraphError::Config { .. })
        ));
    }

    #[test]
    fn group_ids_are_encoded_as_one_path_segment() {
        assert_eq!(
            path_segment("0a1b2c3d-0000-4000-8000-000000000001"),
            "0a1b2c3d-0000-4000-8000-000000000001"
        );
        let odd = path_segment("a/b?c#d e");
        assert!(
            !odd.contains('/') && !odd.contains('?') && !odd.contains('#') && !odd.contains(' '),
            "{odd}"
        );
    }

    #[test]
    fn batch_answer_must_answer_every_request_once() {
        let ok = json!({"responses": [
            {"id": "1", "status": 404, "body": {"error": {"code": "Request_ResourceNotFound", "message": "gone"}}},
            {"id": "0", "status": 200, "body": {"id": "g0"}},
            {"id": "2", "status": 429, "headers": {"Retry-After": "3"}},
        ]});
        let got = read_batch(&ok, &[0, 1, 2]).unwrap();
        assert_eq!(got[&0].status, 200);
        assert_eq!(got[&1].status, 404);
        assert_eq!(got[&2].retry_after, Some(Duration::from_secs(3)));

        assert!(
            read_batch(&json!({"value": []}), &[0]).is_err(),
            "no responses"
        );
        let missing = json!({"responses": [{"id": "0", "status": 200}]});
        assert!(
            read_batch(&missing, &[0, 1]).is_err(),
            "request 1 unanswered"
        );
        let twice = json!({"responses": [{"id": "0", "status": 200}, {"id": "0", "status": 404}]});
        assert!(read_batch(&twice, &[0]).is_err(), "answered twice");
        let stranger = json!({"responses": [{"id": "7", "status": 404}]});
        assert!(read_batch(&stranger, &[0]).is_err(), "unknown id");
        let no_status = json!({"responses": [{"id": "0"}]});
        assert!(read_batch(&no_status, &[0]).is_err(), "no status");
    }
}
