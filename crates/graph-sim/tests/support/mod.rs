//! Test support: start the built `graph-sim` binary on a free port, read its address line,
//! get tokens, and talk Graph to it over HTTP with reqwest. The child is killed on drop.
#![allow(dead_code)]

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
pub const SECRET: &str = "s3cret-value";
pub const TENANT: &str = "lab.example.test";

pub struct Sim {
    child: Child,
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of a file under `tests/fixtures` (or the repository's lab folder).
pub fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

pub fn sample_tenant() -> String {
    format!(
        "{}/../../lab/tenants/sample.json",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Starts the simulator with the app registration `CLIENT_ID`/`SECRET` plus `extra` flags,
/// and fetches a token.
pub async fn start(extra: &[&str]) -> Sim {
    let mut child = Command::new(env!("CARGO_BIN_EXE_graph-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            SECRET,
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("graph-sim starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("address line");
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    let http = reqwest::Client::new();
    let mut sim = Sim {
        child,
        base,
        http,
        token: String::new(),
    };
    sim.token = sim.fetch_token().await;
    sim
}

impl Sim {
    pub fn token_url(&self) -> String {
        format!("{}/{TENANT}/oauth2/v2.0/token", self.base)
    }

    pub async fn token_request(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(self.token_url())
            .form(form)
            .send()
            .await
            .expect("token request");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn fetch_token(&self) -> String {
        let (status, body) = self
            .token_request(&[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
                ("scope", "https://graph.microsoft.com/.default"),
            ])
            .await;
        assert_eq!(status, StatusCode::OK, "token: {body}");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// A Graph call with the Bearer token; `path` is relative to the base (`/v1.0/users`)
    /// or an absolute link from a previous answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let mut req = self.http.request(method, url).bearer_auth(&self.token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("graph request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (s, _, v) = self.call(Method::GET, path, None, &[]).await;
        (s, v)
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (s, _, v) = self.call(Method::POST, path, Some(body), &[]).await;
        (s, v)
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (s, _, v) = self.call(Method::PATCH, path, Some(body), &[]).await;
        (s, v)
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        let (s, _, v) = self.call(Method::DELETE, path, None, &[]).await;
        (s, v)
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("admin request");
        assert!(
            resp.status().is_success(),
            "admin {path}: {}",
            resp.status()
        );
        resp.json().await.unwrap_or(Value::Null)
    }

    pub async fn create_user(&self, name: &str) -> String {
        let (status, body) = self
            .post(
                "/v1.0/users",
                json!({
                    "accountEnabled": true,
                    "displayName": name,
                    "mailNickname": name,
                    "userPrincipalName": format!("{name}@{TENANT}"),
                    "passwordProfile": {"password": "P@ssw0rd-123!"},
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "create user {name}: {body}");
        body["id"].as_str().expect("user id").to_string()
    }

    pub async fn create_security_group(&self, name: &str) -> String {
        let (status, body) = self
            .post(
                "/beta/groups",
                json!({
                    "displayName": name,
                    "mailEnabled": false,
                    "mailNickname": name,
                    "securityEnabled": true,
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "create group {name}: {body}");
        body["id"].as_str().expect("group id").to_string()
    }

    pub async fn add_member(&self, group: &str, member: &str) {
        let (status, body) = self
            .post(
                &format!("/v1.0/groups/{group}/members/$ref"),
                json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{member}")}),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "add member: {body}");
    }

    /// Follows nextLinks to the deltaLink; returns every value entry and the deltaLink.
    pub async fn delta_round(
        &self,
        first: &str,
        headers: &[(&str, &str)],
    ) -> (Vec<Value>, String, usize) {
        let mut url = first.to_string();
        let mut all = Vec::new();
        let mut pages = 0;
        loop {
            let (status, _, body) = self.call(Method::GET, &url, None, headers).await;
            assert_eq!(status, StatusCode::OK, "delta page {url}: {body}");
            pages += 1;
            all.extend(body["value"].as_array().cloned().unwrap_or_default());
            if let Some(next) = body["@odata.nextLink"].as_str() {
                assert!(
                    body.get("@odata.deltaLink").is_none(),
                    "a page has both links"
                );
                url = next.to_string();
            } else {
                let link = body["@odata.deltaLink"]
                    .as_str()
                    .expect("deltaLink on the last page");
                return (all, link.to_string(), pages);
            }
        }
    }
}

/// The entries for one object id in a delta round (a big group appears several times).
pub fn entries_for<'a>(all: &'a [Value], id: &str) -> Vec<&'a Value> {
    all.iter().filter(|v| v["id"] == id).collect()
}

/// All member ids carried by a group's entries, split into added and removed.
pub fn member_changes(entries: &[&Value]) -> (Vec<String>, Vec<String>) {
    let mut added = Vec::new();
    let mut removed = Vec::new();
    for e in entries {
        for m in e["members@delta"].as_array().cloned().unwrap_or_default() {
            let id = m["id"].as_str().unwrap_or_default().to_string();
            if m.get("@removed").is_some() {
                removed.push(id);
            } else {
                added.push(id);
            }
        }
    }
    added.sort();
    removed.sort();
    (added, removed)
}
