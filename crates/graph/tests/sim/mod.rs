//! Starts the project's Graph tenant simulator (`target/debug/graph-sim`) for one test,
//! with a tenant file written by the test, and stops it when the test ends.

#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use wb_graph::{Credential, GraphClient, GraphConfig};

pub const TENANT: &str = "lab.example.test";
pub const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
pub const SECRET: &str = "lab-secret-value";

/// The simulator binary; a test fails loudly (never skips) when it is missing.
pub fn binary() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/graph-sim");
    assert!(
        path.exists(),
        "graph-sim is not built at {}: run `cargo build -p graph-sim` first",
        path.display()
    );
    path
}

pub struct Sim {
    child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Sim {
    /// Starts graph-sim on a free port with `tenant` and the lab's secret; `extra` args
    /// are appended (e.g. `--client-cert PEM`).
    pub fn start(tenant: &Value, extra: &[&str]) -> Sim {
        let dir = tempfile::tempdir().expect("temp dir");
        let tenant_file = dir.path().join("tenant.json");
        std::fs::write(&tenant_file, serde_json::to_vec_pretty(tenant).unwrap()).unwrap();
        let mut child = Command::new(binary())
            .args(["--listen", "127.0.0.1:0", "--tenant"])
            .arg(&tenant_file)
            .args(["--client-id", CLIENT_ID, "--client-secret", SECRET])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start graph-sim");
        let stdout = child.stdout.take().expect("graph-sim stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on ").nth(1) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(rest.trim().to_string());
                    }
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("graph-sim did not print `listening on http://ADDR` within 30 s");
            }
        };
        Sim {
            child,
            url: url.trim_end_matches('/').to_string(),
            dir,
        }
    }

    pub fn config(&self, credential: Credential) -> GraphConfig {
        GraphConfig {
            tenant: TENANT.to_string(),
            client_id: CLIENT_ID.to_string(),
            credential,
            graph_url: self.url.clone(),
            login_url: self.url.clone(),
            timeout: Duration::from_secs(30),
            max_retries: 12,
        }
    }

    pub fn client(&self) -> GraphClient {
        GraphClient::new(self.config(Credential::Secret(SECRET.to_string()))).unwrap()
    }

    /// POST to the simulator's own admin API (`/_sim/...`), not part of Graph.
    pub async fn admin(&self, path: &str, body: Value) {
        let resp = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("graph-sim admin API");
        assert!(
            resp.status().is_success(),
            "graph-sim {path} answered {}",
            resp.status()
        );
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A deterministic GUID-shaped id.
pub fn id(prefix: u32, n: u32) -> String {
    format!("{prefix:08x}-0000-4000-8000-{n:012x}")
}

pub fn synced_user(n: u32) -> Value {
    json!({
        "id": id(0xaaaa, n),
        "displayName": format!("User {n}"),
        "userPrincipalName": format!("user{n}@lab.example.test"),
        "onPremisesSyncEnabled": true,
        "onPremisesSecurityIdentifier": format!("S-1-5-21-1-2-3-{}", 2000 + n),
        "onPremisesSamAccountName": format!("user{n}"),
        "onPremisesDomainName": "lab.example.test",
    })
}

pub fn security_group(n: u32, name: &str, members: &[String]) -> Value {
    json!({
        "id": id(0xbbbb, n),
        "displayName": name,
        "description": format!("{name} description"),
        "groupTypes": [],
        "mailEnabled": false,
        "securityEnabled": true,
        "mailNickname": name.replace(' ', ""),
        "writebackConfiguration": {"isEnabled": true, "onPremisesGroupType": "universalSecurityGroup"},
        "members": members,
        "owners": [],
    })
}

pub fn m365_group(n: u32, name: &str, members: &[String]) -> Value {
    json!({
        "id": id(0xbbbb, n),
        "displayName": name,
        "description": format!("{name} team"),
        "groupTypes": ["Unified"],
        "mailEnabled": true,
        "securityEnabled": false,
        "mail": format!("{}@lab.example.test", name.replace(' ', "")),
        "mailNickname": name.replace(' ', ""),
        "proxyAddresses": [format!("SMTP:{}@lab.example.test", name.replace(' ', ""))],
        "writebackConfiguration": {"isEnabled": null, "onPremisesGroupType": null},
        "members": members,
        "owners": [],
    })
}

/// A small tenant: 20 synced users, 5 groups (one nesting another), none big.
pub fn small_tenant() -> Value {
    let users: Vec<Value> = (0..20).map(synced_user).collect();
    let uid = |n: u32| id(0xaaaa, n);
    json!({
        "users": users,
        "groups": [
            security_group(1, "SG-NL-Finance-Department", &[uid(0), uid(1), uid(2)]),
            security_group(2, "SG-Sales", &[uid(3), uid(4), id(0xbbbb, 1)]),
            m365_group(3, "Marketing Team", &[uid(5), uid(6)]),
            security_group(4, "SG-Temp", &[uid(7)]),
            security_group(5, "SG-Old", &[uid(8), uid(9)]),
        ],
        "settings": [],
    })
}
