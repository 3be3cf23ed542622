//! The Graph client against a scripted HTTP server that answers exactly the hostile shapes
//! a real endpoint (or something in front of it) could send: pages without `value`, links to
//! another origin, redirects away, broken `$batch` answers. A second, "foreign" server
//! records whether anything — above all a request carrying the token — ever reached it.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wb_graph::{Credential, GraphClient, GraphConfig, GraphError, Presence};

/// One request as a scripted server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path_and_query: String,
    authorization: bool,
}

/// What a scripted server answers to one request: status, extra headers, JSON body.
type Answer = (StatusCode, Vec<(&'static str, String)>, Value);

/// A scripted server's answers: (method, path and query, JSON body of the request) → answer.
type Script = dyn Fn(&Method, &str, &Value) -> Answer + Send + Sync;

struct Scripted {
    script: Box<Script>,
    seen: Mutex<Vec<Seen>>,
    /// This server's own `http://127.0.0.1:PORT`, put in place of `SELF` in answers.
    url: String,
}

/// A server on 127.0.0.1:0 answering every request with its script (`SELF` in an answer
/// becomes the server's own URL); the token endpoint answers a fixed token.
struct Server {
    url: String,
    state: Arc<Scripted>,
}

impl Server {
    async fn start(
        script: impl Fn(&Method, &str, &Value) -> Answer + Send + Sync + 'static,
    ) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let state = Arc::new(Scripted {
            script: Box::new(script),
            seen: Mutex::new(Vec::new()),
            url: url.clone(),
        });
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(state.clone());
        // The socket is listening once bound: requests queue until the server accepts them.
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server { url, state }
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Graph requests seen (the token endpoint excluded).
    fn graph_requests(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| !s.path_and_query.contains("/oauth2/"))
            .collect()
    }

    fn client(&self) -> GraphClient {
        let mut cfg = GraphConfig::new(
            "tenant.example",
            "11111111-2222-3333-4444-555555555555",
            Credential::Secret("scripted-secret".into()),
        );
        cfg.graph_url = self.url.clone();
        cfg.login_url = self.url.clone();
        cfg.timeout = Duration::from_secs(10);
        cfg.max_retries = 3;
        GraphClient::new(cfg).unwrap()
    }
}

async fn answer(
    State(state): State<Arc<Scripted>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    state.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path_and_query: path_and_query.clone(),
        authorization: headers.contains_key("authorization"),
    });
    if path_and_query.contains("/oauth2/v2.0/token") {
        return axum::Json(
            json!({"access_token": "SCRIPTED-TOKEN", "expires_in": 3600, "token_type": "Bearer"}),
        )
        .into_response();
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (status, extra, json) = (state.script)(&method, &path_and_query, &body);
    let text = json.to_string().replace("SELF", &state.url);
    let mut resp = (status, [("content-type", "application/json")], text).into_response();
    for (k, v) in extra {
        if let Ok(v) = v.parse() {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

/// A server that answers every request with a well-formed, empty delta page, and records it.
async fn foreign_server() -> Server {
    Server::start(|_, _, _| {
        (
            StatusCode::OK,
            vec![],
            json!({"value": [], "@odata.deltaLink": "http://foreign.invalid/done"}),
        )
    })
    .await
}

fn ok(body: Value) -> Answer {
    (StatusCode::OK, vec![], body)
}

fn group(id: &str) -> Value {
    json!({"id": id, "displayName": id, "securityEnabled": true, "mailEnabled": false,
           "groupTypes": [], "writebackConfiguration": {"isEnabled": true}})
}

#[tokio::test]
async fn delta_page_without_value_fails_the_round_naming_the_url() {
    for malformed in [
        json!({"@odata.deltaLink": "SELF/beta/groups/delta?$deltatoken=next"}),
        json!({"value": null, "@odata.deltaLink": "SELF/beta/groups/delta?$deltatoken=next"}),
        json!({"value": {"id": "g1"}, "@odata.deltaLink": "SELF/beta/groups/delta?$deltatoken=next"}),
        json!({"value": ["g1"], "@odata.deltaLink": "SELF/beta/groups/delta?$deltatoken=next"}),
        json!({"value": [{"displayName": "no id"}], "@odata.deltaLink": "SELF/beta/groups/delta?$deltatoken=next"}),
        json!({"value": [{"id": "g1", "securityEnabled": "yes"}], "@odata.deltaLink": "SELF/beta/groups/delta?$deltatoken=next"}),
        json!({"value": [], "@odata.deltaLink": 42}),
    ] {
        let body = malformed.clone();
        let server = Server::start(move |_, _, _| ok(body.clone())).await;
        let err = server.client().group_delta(None).await.unwrap_err();
        match &err {
            GraphError::Decode { url, .. } => {
                assert!(url.starts_with(&server.url), "{url}");
                assert!(url.contains("/beta/groups/delta"), "{url}");
            }
            other => panic!("{malformed}: expected a Decode error, got {other}"),
        }
    }
}

#[tokio::test]
async fn collection_page_without_value_fails_the_read() {
    let server = Server::start(|_, _, _| ok(json!({"@odata.context": "x"}))).await;
    let err = server
        .client()
        .writeback_configurations()
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::Decode { .. }), "{err}");
    assert!(err.to_string().contains("/beta/groups"), "{err}");
}

#[tokio::test]
async fn foreign_next_link_is_not_followed_and_never_receives_the_token() {
    let foreign = foreign_server().await;
    let to = format!("{}/beta/groups/delta?$skiptoken=STOLEN", foreign.url);
    let server = Server::start(move |_, _, _| {
        ok(json!({"value": [group("g1")], "@odata.nextLink": to.clone()}))
    })
    .await;
    let err = server.client().group_delta(None).await.unwrap_err();
    assert!(matches!(err, GraphError::ForeignOrigin { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("@odata.nextLink"), "{text}");
    assert!(
        text.contains(&foreign.url),
        "names the foreign link: {text}"
    );
    assert!(
        !text.contains("STOLEN"),
        "state tokens are shortened: {text}"
    );
    assert!(
        foreign.seen().is_empty(),
        "nothing reached the foreign server: {:?}",
        foreign.seen()
    );
}

#[tokio::test]
async fn foreign_delta_link_fails_the_round() {
    let foreign = foreign_server().await;
    let to = format!("{}/beta/groups/delta?$deltatoken=x", foreign.url);
    let server = Server::start(move |_, _, _| {
        ok(json!({"value": [group("g1")], "@odata.deltaLink": to.clone()}))
    })
    .await;
    let err = server.client().group_delta(None).await.unwrap_err();
    assert!(matches!(err, GraphError::ForeignOrigin { .. }), "{err}");
    assert!(err.to_string().contains("@odata.deltaLink"), "{err}");
    assert!(foreign.seen().is_empty());
}

#[tokio::test]
async fn foreign_next_link_of_a_collection_is_not_followed() {
    let foreign = foreign_server().await;
    let to = format!("{}/beta/groups?$skiptoken=x", foreign.url);
    let server = Server::start(move |_, _, _| {
        ok(json!({"value": [{"id": "g1", "writebackConfiguration": null}], "@odata.nextLink": to.clone()}))
    })
    .await;
    let err = server
        .client()
        .writeback_configurations()
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::ForeignOrigin { .. }), "{err}");
    assert!(foreign.seen().is_empty());
}

#[tokio::test]
async fn stored_delta_link_to_another_origin_is_never_requested() {
    let foreign = foreign_server().await;
    let server = Server::start(|_, _, _| ok(json!({"value": []}))).await;
    let client = server.client();
    let stored = format!("{}/beta/groups/delta?$deltatoken=old", foreign.url);
    assert!(!client.is_graph_origin(&stored));
    let err = client.group_delta(Some(&stored)).await.unwrap_err();
    assert!(matches!(err, GraphError::ForeignOrigin { .. }), "{err}");
    assert!(foreign.seen().is_empty());
    assert!(server.graph_requests().is_empty());
}

#[tokio::test]
async fn redirect_to_another_origin_is_not_followed() {
    let foreign = foreign_server().await;
    let to = format!("{}/beta/groups/delta", foreign.url);
    let server = Server::start(move |_, _, _| {
        (StatusCode::FOUND, vec![("location", to.clone())], json!({}))
    })
    .await;
    let err = server.client().group_delta(None).await.unwrap_err();
    assert!(
        matches!(err, GraphError::Api { status: 302, .. }),
        "a redirect away is an error answer: {err}"
    );
    assert!(foreign.seen().is_empty(), "{:?}", foreign.seen());
}

#[tokio::test]
async fn same_origin_links_are_followed_with_the_token() {
    let server = Server::start(|_, pq, _| {
        if pq.contains("$skiptoken=2") {
            ok(json!({"value": [group("g2")], "@odata.deltaLink": "SELF/beta/groups/delta?$deltatoken=3"}))
        } else {
            ok(json!({"value": [group("g1")], "@odata.nextLink": "SELF/beta/groups/delta?$skiptoken=2"}))
        }
    })
    .await;
    let round = server
        .client()
        .group_delta(None)
        .await
        .expect("a well-formed round");
    assert_eq!(round.changes.len(), 2);
    assert!(round.delta_link.starts_with(&server.url));
    let seen = server.graph_requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen
        .iter()
        .all(|s| s.authorization && s.method == Method::GET));
}

/// A `$batch` endpoint answering each inner GET by `inner(url)`.
fn batch_script(
    inner: impl Fn(&str) -> Value + Send + Sync + 'static,
) -> impl Fn(&Method, &str, &Value) -> Answer + Send + Sync + 'static {
    move |method, pq, body| {
        assert_eq!(method, Method::POST, "{pq}");
        assert!(pq.ends_with("/v1.0/$batch"), "{pq}");
        let requests = body["requests"].as_array().cloned().unwrap_or_default();
        assert!(
            !requests.is_empty() && requests.len() <= 20,
            "{}",
            requests.len()
        );
        let responses: Vec<Value> = requests
            .iter()
            .map(|r| {
                let mut a = inner(r["url"].as_str().unwrap_or_default());
                a["id"] = r["id"].clone();
                a
            })
            .collect();
        ok(json!({ "responses": responses }))
    }
}

#[tokio::test]
async fn a_group_is_gone_only_when_both_reads_answer_404() {
    let server = Server::start(batch_script(|url| {
        let not_found = json!({"status": 404, "body": {"error": {"code": "Request_ResourceNotFound", "message": "no"}}});
        if url.starts_with("/groups/alive") {
            json!({"status": 200, "body": {"id": "alive"}})
        } else if url.starts_with("/directory/deletedItems/soft") {
            json!({"status": 200, "body": {"id": "soft"}})
        } else {
            not_found
        }
    }))
    .await;
    let ids: Vec<String> = ["alive", "soft", "gone"].map(String::from).to_vec();
    let presence = server.client().confirm_gone(&ids).await.unwrap();
    assert_eq!(presence["alive"], Presence::Alive);
    assert_eq!(presence["soft"], Presence::SoftDeleted);
    assert_eq!(presence["gone"], Presence::Gone);
    // Only the two not found in /groups are looked up in deleted items.
    let seen = server.graph_requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[tokio::test]
async fn any_other_inner_answer_fails_the_confirmation() {
    for status in [500u16, 403, 400] {
        let server = Server::start(batch_script(move |url| {
            if url.starts_with("/groups/") {
                json!({"status": 404})
            } else {
                json!({"status": status, "body": {"error": {"code": "Boom", "message": "inner failure"}}})
            }
        }))
        .await;
        let err = server
            .client()
            .confirm_gone(&["g1".to_string()])
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("deletedItems/g1"),
            "names the inner request: {err}"
        );
    }
}

#[tokio::test]
async fn a_user_left_out_of_a_full_round_is_gone_only_on_404() {
    let server = Server::start(batch_script(|url| {
        if url.starts_with("/users/alive") {
            json!({"status": 200, "body": {"id": "alive"}})
        } else if url.starts_with("/users/refused") {
            json!({"status": 403, "body": {"error": {"code": "Authorization_RequestDenied", "message": "denied"}}})
        } else {
            json!({"status": 404, "body": {"error": {"code": "Request_ResourceNotFound", "message": "no"}}})
        }
    }))
    .await;
    let ids: Vec<String> = ["alive", "gone"].map(String::from).to_vec();
    let alive = server
        .client()
        .confirm_present("users", &ids)
        .await
        .unwrap();
    assert!(alive["alive"]);
    assert!(!alive["gone"]);
    // Any other answer is no answer: the caller applies nothing.
    let err = server
        .client()
        .confirm_present("users", &["alive".to_string(), "refused".to_string()])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("/users/refused") && err.to_string().contains("denied"),
        "names the inner request and the server's words: {err}"
    );
}

#[tokio::test]
async fn inner_throttling_is_retried_and_a_short_answer_is_malformed() {
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = calls.clone();
    let server = Server::start(batch_script(move |_| {
        // The first inner answer is throttled, every later one says "not found".
        if counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            json!({"status": 429, "headers": {"Retry-After": "0"}})
        } else {
            json!({"status": 404})
        }
    }))
    .await;
    let presence = server
        .client()
        .confirm_gone(&["g1".to_string()])
        .await
        .unwrap();
    assert_eq!(presence["g1"], Presence::Gone);
    assert_eq!(
        server.graph_requests().len(),
        3,
        "throttled, retried, deleted items"
    );

    let short = Server::start(|_, _, _| ok(json!({"responses": []}))).await;
    let err = short
        .client()
        .confirm_gone(&["g1".to_string()])
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::Decode { .. }), "{err}");
}
