//! End-to-end test harness: one real Samba AD DC (shared, each test in its own OU), one
//! graph-sim per test, and the real `writeback` binary driven through its command line.
#![allow(dead_code)]

use ldap3::{Ldap, LdapConnAsync, Scope, SearchEntry};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use wb_ad::values::first_binary;

pub const TENANT: &str = "lab.onmicrosoft.com";
pub const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
pub const CLIENT_SECRET: &str = "e2e-secret";

/// A running graph-sim, killed on drop.
pub struct Sim {
    child: Child,
    pub url: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn target_bin(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    // Benchmarks run the release binaries (scripts/bench sets this); tests the debug ones.
    let profile = std::env::var("WRITEBACK_BIN_PROFILE").unwrap_or_else(|_| "debug".into());
    let p = root.join("target").join(profile).join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace first (`cargo build --workspace`, which scripts/test does)",
        p.display()
    );
    p
}

impl Sim {
    pub fn start() -> Sim {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Sim {
        let mut child = Command::new(target_bin("graph-sim"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--client-id",
                CLIENT_ID,
                "--client-secret",
                CLIENT_SECRET,
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("graph-sim starts");
        let stdout = child.stdout.take().expect("graph-sim stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("graph-sim prints its address");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from graph-sim: {line:?}"))
            .to_string();
        Sim { child, url }
    }
}

/// One test's world: its OU in the lab DC, its tenant, its config and state file.
pub struct World {
    pub dc: LabDc,
    pub root_ou: String,
    pub groups_ou: String,
    pub people_ou: String,
    pub sim: Sim,
    pub dir: PathBuf,
    http: reqwest::Client,
    token: String,
    /// extra lines for the [writeback] table of the config
    pub writeback_toml: String,
    pub rules_toml: String,
    /// Graph by certificate (app.pem / app.key in `dir`) instead of the client secret, and
    /// AD over ldaps:// with the lab CA: see `World::new_secure`.
    pub secure: bool,
}

pub struct SyncResult {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl SyncResult {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
}

impl World {
    pub async fn new(label: &str) -> World {
        Self::with_dc(LabDc::ensure(), label).await
    }

    /// A world on the lab's second DC, whose schema (Windows Server 2012 R2 level) lacks
    /// msDS-ExternalDirectoryObjectId.
    pub async fn new_2012(label: &str) -> World {
        Self::with_dc(LabDc::ensure_flavour("2012"), label).await
    }

    /// Graph with a certificate client assertion, AD over LDAPS verified with the lab CA.
    pub async fn new_secure(label: &str) -> World {
        let dir = std::env::temp_dir().join(format!(
            "wb-e2e-cert-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let out = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=writeback-e2e", "-keyout"])
            .arg(dir.join("app.key"))
            .arg("-out")
            .arg(dir.join("app.pem"))
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cert = dir.join("app.pem");
        let sim = Sim::start_with(&["--client-cert", cert.to_str().expect("utf-8 path")]);
        let mut w = Self::build(LabDc::ensure(), label, sim, dir).await;
        w.secure = true;
        w.write_config();
        w
    }

    async fn with_dc(dc: LabDc, label: &str) -> World {
        let dir = std::env::temp_dir().join(format!(
            "wb-e2e-{label}-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self::build(dc, label, Sim::start(), dir).await
    }

    pub async fn build(dc: LabDc, label: &str, sim: Sim, dir: PathBuf) -> World {
        let root_ou = dc.fresh_ou(label).await;
        let groups_ou = format!("OU=Groups,{root_ou}");
        let people_ou = format!("OU=People,{root_ou}");
        dc.create_ou(&groups_ou).await;
        dc.create_ou(&people_ou).await;
        let http = reqwest::Client::new();
        let token = token(&http, &sim.url).await;
        let w = World {
            dc,
            root_ou,
            groups_ou,
            people_ou,
            sim,
            dir,
            http,
            token,
            writeback_toml: String::new(),
            rules_toml: String::new(),
            secure: false,
        };
        w.write_config();
        w
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("writeback.toml")
    }

    pub fn write_config(&self) {
        let text = format!(
            r#"
[graph]
tenant = "{TENANT}"
client_id = "{CLIENT_ID}"
{credential}
graph_url = "{sim}"
login_url = "{sim}"

[ad]
url = "{url}"
bind_dn = "{bind}"
password = {{ env = "WB_E2E_AD_PASSWORD" }}
base_dn = "{base}"
ou = "{ou}"
{ca}

[writeback]
state = "state.db"
{extra}
{rules}
"#,
            sim = self.sim.url,
            credential = if self.secure {
                "certificate = { cert = \"app.pem\", key = \"app.key\" }"
            } else {
                "client_secret = { env = \"WB_E2E_SECRET\" }"
            },
            url = if self.secure {
                &self.dc.ldaps_url
            } else {
                &self.dc.url
            },
            ca = if self.secure {
                format!("ca_file = \"{}\"", self.dc.ca_file)
            } else {
                String::new()
            },
            bind = self.dc.bind_dn,
            base = self.dc.base_dn,
            ou = self.groups_ou,
            extra = self.writeback_toml,
            rules = self.rules_toml,
        );
        std::fs::write(self.config_path(), text).expect("write config");
    }

    /// Runs `writeback ARGS --config <this world's config>`.
    pub fn writeback(&self, args: &[&str]) -> SyncResult {
        // Tests check every incremental plan against the full one; benchmarks (release
        // binaries) measure the product as it runs.
        let check = std::env::var("WRITEBACK_BIN_PROFILE").as_deref() != Ok("release");
        // WB_E2E_WRAP (benchmarks): a command the binary runs under, e.g. a profiler.
        let wrap = std::env::var("WB_E2E_WRAP").unwrap_or_default();
        let mut wrap = wrap.split_whitespace();
        let mut cmd = match wrap.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(wrap).arg(target_bin("writeback"));
                c
            }
            None => Command::new(target_bin("writeback")),
        };
        let out: Output = cmd
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .env("WB_E2E_SECRET", CLIENT_SECRET)
            .env("WB_E2E_AD_PASSWORD", &self.dc.password)
            .env(
                "WRITEBACK_LOG",
                std::env::var("WB_E2E_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env("WRITEBACK_CHECK_INCREMENTAL", if check { "1" } else { "" })
            // Groups of three members or more keep them in the store's chunk rows (from
            // 4,096 outside the tests), so every cycle here goes through both forms.
            .env("WRITEBACK_STORE_CHUNKED_FROM", "3")
            .output()
            .expect("writeback runs");
        SyncResult {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `writeback sync --json`, asserting the exit code.
    pub fn sync_expect(&self, code: i32, extra: &[&str]) -> Value {
        let mut args = vec!["sync", "--json"];
        args.extend_from_slice(extra);
        let r = self.writeback(&args);
        assert_eq!(
            r.code, code,
            "exit code of sync\nstdout: {}\nstderr: {}",
            r.stdout, r.stderr
        );
        r.json()
    }

    pub fn sync_ok(&self) -> Value {
        self.sync_expect(0, &[])
    }

    // ---- Graph side (through graph-sim's Graph API, as an admin would) ----

    pub async fn graph(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.graph_with(method, path, body, &[]).await
    }

    /// Like `graph`, with extra headers (e.g. graph-sim's `X-Graph-Sim-Seed`).
    pub async fn graph_with(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let url = format!("{}{}", self.sim.url, path);
        let mut req = self
            .http
            .request(method.parse().expect("method"), &url)
            .bearer_auth(&self.token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("graph-sim answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, v)
    }

    async fn created(&self, path: &str, body: Value) -> String {
        let (status, v) = self.graph("POST", path, Some(body)).await;
        assert!(status == 201 || status == 200, "POST {path}: {status} {v}");
        v["id"].as_str().expect("id").to_string()
    }

    /// A user synced from AD: created in the lab DC, then in the tenant with its onPremises* values.
    pub async fn synced_user(&self, sam: &str, display: &str) -> (String, LabUser) {
        // sAMAccountName is unique in the domain, which every test shares.
        let short: String = sam.chars().take(12).collect();
        let sam = &format!("{short}{}", &rand_suffix()[..6]);
        let u = self.dc.create_user(&self.people_ou, sam, display).await;
        let id = self
            .created(
                "/v1.0/users",
                json!({
                    "displayName": display,
                    "userPrincipalName": format!("{sam}@lab.example.test"),
                    "accountEnabled": true,
                    "mailNickname": sam,
                    "passwordProfile": {"password": "Passw0rd!x", "forceChangePasswordNextSignIn": false},
                    "onPremisesSyncEnabled": true,
                    "onPremisesSecurityIdentifier": u.sid,
                    "onPremisesImmutableId": u.immutable_id_base64,
                    "onPremisesDistinguishedName": u.dn,
                    "onPremisesSamAccountName": sam,
                    "onPremisesDomainName": "lab.example.test",
                }),
            )
            .await;
        (id, u)
    }

    pub async fn cloud_user(&self, nick: &str) -> String {
        self.created(
            "/v1.0/users",
            json!({
                "displayName": nick,
                "userPrincipalName": format!("{nick}@{TENANT}"),
                "accountEnabled": true,
                "mailNickname": nick,
                "passwordProfile": {"password": "Passw0rd!x", "forceChangePasswordNextSignIn": false},
            }),
        )
        .await
    }

    /// A security group with writebackConfiguration (`enabled` = isEnabled, `ty` = type).
    pub async fn security_group(
        &self,
        name: &str,
        enabled: Option<bool>,
        ty: Option<&str>,
    ) -> String {
        self.created(
            "/beta/groups",
            json!({
                "displayName": name,
                "mailEnabled": false,
                "mailNickname": nick_of(name),
                "securityEnabled": true,
                "groupTypes": [],
                "writebackConfiguration": {"isEnabled": enabled, "onPremisesGroupType": ty},
            }),
        )
        .await
    }

    pub async fn m365_group(&self, name: &str, enabled: Option<bool>, ty: Option<&str>) -> String {
        let mut body = json!({
            "displayName": name,
            "mailEnabled": true,
            "mailNickname": nick_of(name),
            "securityEnabled": false,
            "groupTypes": ["Unified"],
        });
        if enabled.is_some() || ty.is_some() {
            body["writebackConfiguration"] =
                json!({"isEnabled": enabled, "onPremisesGroupType": ty});
        }
        self.created("/beta/groups", body).await
    }

    pub async fn add_member(&self, group: &str, member: &str) {
        let (status, v) = self.try_add_member(group, member).await;
        assert_eq!(status, 204, "add member: {v}");
    }

    pub async fn remove_member(&self, group: &str, member: &str) {
        let (status, v) = self.try_remove_member(group, member).await;
        assert_eq!(status, 204, "remove member: {v}");
    }

    /// `POST /groups/{group}/members/$ref`, with Graph's answer.
    pub async fn try_add_member(&self, group: &str, member: &str) -> (u16, Value) {
        self.graph(
            "POST",
            &format!("/v1.0/groups/{group}/members/$ref"),
            Some(json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{member}")})),
        )
        .await
    }

    /// `DELETE /groups/{group}/members/{member}/$ref`, with Graph's answer.
    pub async fn try_remove_member(&self, group: &str, member: &str) -> (u16, Value) {
        self.graph(
            "DELETE",
            &format!("/v1.0/groups/{group}/members/{member}/$ref"),
            None,
        )
        .await
    }

    pub async fn patch_group(&self, group: &str, body: Value) {
        let (status, v) = self
            .graph("PATCH", &format!("/beta/groups/{group}"), Some(body))
            .await;
        assert_eq!(status, 204, "patch group: {v}");
    }

    // ---- AD side (plain LDAP reads, independent of writeback's connector) ----

    pub async fn ldap(&self) -> Ldap {
        let (conn, mut ldap) = LdapConnAsync::new(&self.dc.url)
            .await
            .expect("ldap connect");
        ldap3::drive!(conn);
        ldap.simple_bind(&self.dc.bind_dn, &self.dc.password)
            .await
            .expect("bind")
            .success()
            .expect("bind ok");
        ldap
    }

    /// Every group under this test's root OU, by CN.
    pub async fn ad_groups(&self) -> BTreeMap<String, AdView> {
        let mut ldap = self.ldap().await;
        let (entries, _) = ldap
            .search(
                &self.root_ou,
                Scope::Subtree,
                "(objectClass=group)",
                vec![
                    "cn",
                    "distinguishedName",
                    "objectGUID",
                    "objectSid",
                    "groupType",
                    "sAMAccountName",
                    "adminDescription",
                    "msDS-ExternalDirectoryObjectId",
                    "displayName",
                    "description",
                    "member;range=0-*",
                    "whenChanged",
                    "uSNChanged",
                ],
            )
            .await
            .expect("search")
            .success()
            .expect("search ok");
        let mut out = BTreeMap::new();
        for e in entries {
            let e = SearchEntry::construct(e);
            let one = |k: &str| e.attrs.get(k).and_then(|v| v.first()).cloned();
            let bin = |k: &str| first_binary(&e, k).unwrap_or_default();
            let members = e
                .attrs
                .iter()
                .filter(|(k, _)| k.to_ascii_lowercase().starts_with("member"))
                .flat_map(|(_, v)| v.clone())
                .collect();
            let v = AdView {
                dn: e.dn.clone(),
                cn: one("cn").unwrap_or_default(),
                guid: bin("objectGUID"),
                sid: bin("objectSid"),
                group_type: one("groupType").and_then(|s| s.parse().ok()).unwrap_or(0),
                sam: one("sAMAccountName"),
                admin_description: one("adminDescription"),
                ext_id: one("msDS-ExternalDirectoryObjectId"),
                display_name: one("displayName"),
                description: one("description"),
                members,
                usn_changed: one("uSNChanged").unwrap_or_default(),
            };
            out.insert(v.cn.clone(), v);
        }
        let _ = ldap.unbind().await;
        out
    }

    /// uSNChanged and whenChanged of every object under this test's root OU, by DN.
    pub async fn change_stamps(&self) -> BTreeMap<String, (String, String)> {
        let mut ldap = self.ldap().await;
        let (entries, _) = ldap
            .search(
                &self.root_ou,
                Scope::Subtree,
                "(objectClass=*)",
                vec!["uSNChanged", "whenChanged"],
            )
            .await
            .expect("search")
            .success()
            .expect("search ok");
        let _ = ldap.unbind().await;
        entries
            .into_iter()
            .map(|e| {
                let e = SearchEntry::construct(e);
                let get = |k: &str| {
                    e.attrs
                        .get(k)
                        .and_then(|v| v.first())
                        .cloned()
                        .unwrap_or_default()
                };
                (
                    e.dn.to_ascii_lowercase(),
                    (get("uSNChanged"), get("whenChanged")),
                )
            })
            .collect()
    }

    /// The managed group carrying `Group_<id>`.
    pub async fn ad_group_of(&self, id: &str) -> Option<AdView> {
        let anchor = format!("Group_{id}");
        self.ad_groups()
            .await
            .into_values()
            .find(|g| g.admin_description.as_deref() == Some(anchor.as_str()))
    }
}

/// A bulk-created AD user.
#[derive(Debug, Clone)]
pub struct BulkUser {
    pub dn: String,
    pub sam: String,
    pub sid: String,
}

impl World {
    /// Creates `n` users in this test's People OU over one connection; returns them with SIDs.
    pub async fn create_users(&self, prefix: &str, n: usize) -> Vec<BulkUser> {
        let ou = format!("OU={prefix},{}", self.people_ou);
        self.dc.create_ou(&ou).await;
        self.dc.create_users_in(&ou, prefix, n).await
    }
}

impl LabDc {
    /// Creates `n` users in `ou` (which must exist); returns them with SIDs, sorted by
    /// sAMAccountName (`<prefix><tag><i>`, `i` zero-padded, so that is creation order).
    /// From `BULK_USERS_FROM` users on, when this DC can be bulk-loaded (`bulk_users`), they
    /// are loaded offline instead of added over LDAP: the DC restarts meanwhile.
    pub async fn create_users_in(&self, ou: &str, prefix: &str, n: usize) -> Vec<BulkUser> {
        if n >= BULK_USERS_FROM && self.can_bulk_load() {
            let tag = rand_suffix()[..6].to_string();
            self.bulk_users(ou, &format!("{prefix}{tag}"), n, None);
            return self.users_under(ou).await;
        }
        self.create_users_with(ou, prefix, n, 1, USER_ADDS_IN_FLIGHT)
            .await
    }

    /// Whether `bulk_users` can load this DC: `lab/dc` runs it here (its run dir is known)
    /// and `WRITEBACK_LAB_BULK_USERS` is not `0`.
    pub fn can_bulk_load(&self) -> bool {
        self.dc_dir.is_some() && std::env::var("WRITEBACK_LAB_BULK_USERS").as_deref() != Ok("0")
    }

    /// `n` ordinary AD users `<prefix><i>` (CN = sAMAccountName, `i` zero-padded) under `ou`,
    /// in sub-OUs `OU=<prefix>-<k>` of `per_ou` users each when given, loaded by
    /// `lab/dc … bulk-users`: the DC stops, ldbadd adds them through Samba's module stack
    /// (objectSid, objectGUID, … as for an LDAP add) in big transactions, the DC starts again
    /// on its data. Minutes instead of hours for 250,000 (lab/README.md). Open connections to
    /// this DC are cut.
    pub fn bulk_users(&self, ou: &str, prefix: &str, n: usize, per_ou: Option<usize>) {
        let dir = self
            .dc_dir
            .as_ref()
            .expect("bulk_users needs WRITEBACK_LAB_DC_DIR");
        let instance: &[&str] = match dir.file_name().and_then(|f| f.to_str()) {
            Some("dc") => &[],
            Some("dc-2012") => &["--schema", "2012"],
            Some("dc-fault") => &["--instance", "fault"],
            other => panic!("bulk_users: {other:?} is not a run dir lab/dc knows"),
        };
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut cmd = Command::new(root.join("lab/dc"));
        cmd.args(instance)
            .args(["bulk-users", ou, prefix, &n.to_string()])
            .args(per_ou.map(|p| p.to_string()))
            // The run dir the DC lives in, whichever checkout's lab/dc started it.
            .env(
                "WRITEBACK_LAB_RUN_DIR",
                dir.parent().expect("run dir has a parent"),
            )
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("cannot run lab/dc bulk-users ({e})"));
        assert!(
            status.success(),
            "lab/dc bulk-users {ou} {prefix} {n} failed"
        );
    }

    /// `create_users_in` over `connections` LDAP connections, each with up to `in_flight`
    /// adds outstanding (ldap3 multiplexes the operations of one connection's clones).
    pub async fn create_users_with(
        &self,
        ou: &str,
        prefix: &str,
        n: usize,
        connections: usize,
        in_flight: usize,
    ) -> Vec<BulkUser> {
        use std::collections::HashSet;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let tag = rand_suffix()[..6].to_string();
        let width = n.saturating_sub(1).to_string().len().max(5);
        let next = Arc::new(AtomicUsize::new(0));
        let mut workers = tokio::task::JoinSet::new();
        let mut conns = Vec::new();
        for _ in 0..connections.max(1) {
            let ldap = self.ldap().await;
            for _ in 0..in_flight.max(1) {
                let (mut ldap, next, ou, prefix, tag) = (
                    ldap.clone(),
                    next.clone(),
                    ou.to_string(),
                    prefix.to_string(),
                    tag.clone(),
                );
                workers.spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return;
                        }
                        let cn = format!("{prefix}{tag}{i:0width$}");
                        let dn = format!("CN={cn},{ou}");
                        ldap.add(
                            &dn,
                            vec![
                                ("objectClass", HashSet::from(["user"])),
                                ("sAMAccountName", HashSet::from([cn.as_str()])),
                            ],
                        )
                        .await
                        .unwrap_or_else(|e| panic!("add {dn}: {e}"))
                        .success()
                        .unwrap_or_else(|e| panic!("add {dn}: {e}"));
                    }
                });
            }
            conns.push(ldap);
        }
        while let Some(done) = workers.join_next().await {
            done.expect("an add worker panicked");
        }
        for mut c in conns {
            let _ = c.unbind().await;
        }
        let mut ldap = self.ldap().await;
        let (entries, _) = ldap
            .search(
                ou,
                Scope::OneLevel,
                "(objectClass=user)",
                vec!["sAMAccountName", "objectSid"],
            )
            .await
            .unwrap()
            .success()
            .unwrap();
        let mut out: Vec<BulkUser> = entries
            .into_iter()
            .map(|e| {
                let e = SearchEntry::construct(e);
                let sid = first_binary(&e, "objectSid").expect("objectSid");
                BulkUser {
                    sam: e.attrs["sAMAccountName"][0].clone(),
                    dn: e.dn,
                    sid: sid_text(&sid),
                }
            })
            .collect();
        out.sort_by(|a, b| a.sam.cmp(&b.sam));
        let _ = ldap.unbind().await;
        out
    }
}

impl LabDc {
    /// The DC named by `WRITEBACK_LAB_ENV_FILE` (an env file `lab/dc … start` wrote, e.g.
    /// `lab/run/dc-fault.env`), or else the default lab DC (`LabDc::ensure`).
    pub fn from_env_or_ensure() -> LabDc {
        match std::env::var_os("WRITEBACK_LAB_ENV_FILE") {
            Some(path) if !path.is_empty() => Self::from_env_file(
                Path::new(&path),
                "WRITEBACK_LAB_ENV_FILE names the env file `lab/dc [--instance fault] start` writes",
            ),
            _ => Self::ensure(),
        }
    }

    /// At least `n` users under `ou` (created if missing, with its parents' existence
    /// assumed), reusing those earlier runs left there: a pool for benchmarks whose user
    /// set-up takes longer than what they measure. New users go in sub-OUs of `CHUNK`
    /// users each; from `BULK_USERS_FROM` missing users on they are bulk-loaded
    /// (`bulk_users`, the DC restarts) when this DC allows it. Returns every user under
    /// `ou` (subtree), sorted by sAMAccountName.
    pub async fn user_pool(&self, ou: &str, prefix: &str, n: usize) -> Vec<BulkUser> {
        const CHUNK: usize = 10_000;
        self.create_ou(ou).await;
        let mut have = self.users_under(ou).await.len();
        if have < n && n - have >= BULK_USERS_FROM && self.can_bulk_load() {
            let prefix = format!("{prefix}{}", &rand_suffix()[..6]);
            let t = std::time::Instant::now();
            self.bulk_users(ou, &prefix, n - have, Some(CHUNK));
            println!(
                "  user pool: {} more under {ou} bulk-loaded in {:.1}s",
                n - have,
                t.elapsed().as_secs_f64()
            );
            have = n;
        }
        while have < n {
            let count = CHUNK.min(n - have);
            let sub = format!("OU={prefix}{}-{},{ou}", have / CHUNK, &rand_suffix()[..6]);
            self.create_ou(&sub).await;
            let t = std::time::Instant::now();
            let made = self
                .create_users_with(&sub, prefix, count, 1, USER_ADDS_IN_FLIGHT)
                .await;
            have += made.len();
            println!(
                "  user pool: {have} users under {ou} ({count} more in {:.1}s)",
                t.elapsed().as_secs_f64()
            );
        }
        self.users_under(ou).await
    }

    /// Every user under `base` (subtree, paged), sorted by sAMAccountName.
    pub async fn users_under(&self, base: &str) -> Vec<BulkUser> {
        use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
        let mut ldap = self.ldap().await;
        let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(1000)),
        ];
        let mut stream = ldap
            .streaming_search_with(
                adapters,
                base,
                Scope::Subtree,
                "(&(objectClass=user)(!(objectClass=computer)))",
                vec!["sAMAccountName", "objectSid"],
            )
            .await
            .expect("search users");
        let mut out = Vec::new();
        while let Some(e) = stream.next().await.expect("users page") {
            let e = SearchEntry::construct(e);
            let sid = first_binary(&e, "objectSid").expect("objectSid");
            out.push(BulkUser {
                sam: e.attrs["sAMAccountName"][0].clone(),
                dn: e.dn,
                sid: sid_text(&sid),
            });
        }
        let done = stream.finish().await;
        assert!(done.rc == 0 || done.rc == 32, "search users: {done:?}");
        out.sort_by(|a, b| a.sam.cmp(&b.sam));
        let _ = ldap.unbind().await;
        out
    }
}

/// From this many users `create_users_in` and `user_pool` bulk-load them (`bulk_users`)
/// rather than add them over LDAP. Measured on the 2-core lab machine: 10,000 users into a
/// fresh DC in 16.7 s bulk vs 25.0 s over LDAP, into one holding 20,000 in 21.2 s vs 38.8 s;
/// on one holding 280,000, LDAP adds ran at ~19/s, bulk at ~300/s. Fewer users stay on LDAP,
/// which leaves a shared DC running.
pub const BULK_USERS_FROM: usize = 10_000;

/// Adds a bulk creation keeps outstanding on its connection: the DC works on one while the
/// next request is already on the wire (measured in docs/BENCHMARKS.md, session 4).
pub const USER_ADDS_IN_FLIGHT: usize = 8;

/// Binary objectSid → S-1-5-21-... (the connector's own conversion).
pub fn sid_text(b: &[u8]) -> String {
    wb_ad::values::sid_text(b).expect("a valid objectSid")
}

#[derive(Debug, Clone)]
pub struct AdView {
    pub dn: String,
    pub cn: String,
    pub guid: Vec<u8>,
    pub sid: Vec<u8>,
    pub group_type: i32,
    pub sam: Option<String>,
    pub admin_description: Option<String>,
    pub ext_id: Option<String>,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub members: Vec<String>,
    pub usn_changed: String,
}

impl AdView {
    /// Member DNs, lower-case, sorted.
    pub fn member_set(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .members
            .iter()
            .map(|m| m.to_ascii_lowercase())
            .collect();
        v.sort();
        v
    }
}

/// The outcome of cloud group `id` in a cycle's `--json` report.
pub fn outcome_of(out: &Value, id: &str) -> Value {
    out["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["id"] == id)
        .unwrap_or_else(|| panic!("no outcome for {id}: {out}"))
        .clone()
}

pub fn lower_sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|m| m.to_ascii_lowercase()).collect();
    v.sort();
    v
}

fn nick_of(name: &str) -> String {
    let n: String = name.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    if n.is_empty() {
        "group".into()
    } else {
        n
    }
}

pub fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let x = n ^ std::process::id().rotate_left(16) ^ SEQ.fetch_add(0x9e37_79b9, Ordering::Relaxed);
    format!("{x:08x}")
}

async fn token(http: &reqwest::Client, sim: &str) -> String {
    let resp = http
        .post(format!("{sim}/{TENANT}/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .expect("token request");
    let v: Value = resp.json().await.expect("token json");
    v["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

// ---- the lab DC (started by lab/dc; shared by every test, each in its own OU) ----

/// The lab's Samba AD DC as `lab/dc start` describes it in lab/run/dc.env.
pub struct LabDc {
    pub url: String,
    pub ldaps_url: String,
    pub ca_file: String,
    pub bind_dn: String,
    pub password: String,
    pub base_dn: String,
    /// The DC's run dir (`WRITEBACK_LAB_DC_DIR`): set when `lab/dc` on this machine runs
    /// it, which `bulk_users` needs.
    pub dc_dir: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct LabUser {
    pub dn: String,
    pub sid: String,
    pub guid: Vec<u8>,
    pub immutable_id_base64: String,
}

#[derive(Debug, Clone)]
pub struct LabGroup {
    pub dn: String,
    pub sid: String,
}

impl LabDc {
    /// Starts the lab DC if it is not running (`lab/dc start` is idempotent and locked),
    /// or fails loudly saying how to start it.
    pub fn ensure() -> LabDc {
        Self::ensure_flavour("2016")
    }

    pub fn ensure_flavour(schema: &str) -> LabDc {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let out = Command::new(root.join("lab/dc"))
            .args(["--schema", schema, "start"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run lab/dc start ({e}): run `lab/dc start` as root, or scripts/test")
            });
        assert!(
            out.status.success(),
            "lab/dc start failed: the end-to-end tests need the lab Samba AD DC; run `lab/dc start` as root (scripts/test does)"
        );
        let env_file = if schema == "2016" {
            "lab/run/dc.env"
        } else {
            "lab/run/dc-2012.env"
        };
        Self::from_env_file(&root.join(env_file), "run `lab/dc start`")
    }

    /// The DC an env file written by `lab/dc start` describes; `hint` says how to get one.
    pub fn from_env_file(path: &Path, hint: &str) -> LabDc {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{}: {e} ({hint})", path.display()));
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("{k} missing from {}", path.display()))
                .to_string()
        };
        LabDc {
            url: get("WRITEBACK_LAB_LDAP_URL"),
            ldaps_url: get("WRITEBACK_LAB_LDAPS_URL"),
            ca_file: get("WRITEBACK_LAB_CA_FILE"),
            bind_dn: get("WRITEBACK_LAB_BIND_DN"),
            password: get("WRITEBACK_LAB_PASSWORD"),
            base_dn: get("WRITEBACK_LAB_BASE_DN"),
            dc_dir: text
                .lines()
                .find_map(|l| l.strip_prefix("WRITEBACK_LAB_DC_DIR="))
                .filter(|d| Path::new(d).join("private/sam.ldb").exists())
                .map(PathBuf::from),
        }
    }

    pub async fn ldap(&self) -> Ldap {
        let (conn, mut ldap) = LdapConnAsync::new(&self.url).await.expect("ldap connect");
        ldap3::drive!(conn);
        ldap.simple_bind(&self.bind_dn, &self.password)
            .await
            .expect("bind")
            .success()
            .expect("bind ok");
        ldap
    }

    pub async fn create_ou(&self, dn: &str) {
        use std::collections::HashSet;
        let mut ldap = self.ldap().await;
        let r = ldap
            .add(
                dn,
                vec![("objectClass", HashSet::from(["organizationalUnit"]))],
            )
            .await
            .expect("add ou");
        assert!(r.rc == 0 || r.rc == 68, "add {dn}: {r:?}");
        let _ = ldap.unbind().await;
    }

    /// A new OU for one test: OU=<label>-<unique>,OU=Tests,<base>.
    pub async fn fresh_ou(&self, label: &str) -> String {
        self.create_ou(&format!("OU=Tests,{}", self.base_dn)).await;
        let dn = format!(
            "OU={label}-{}-{},OU=Tests,{}",
            std::process::id(),
            rand_suffix(),
            self.base_dn
        );
        self.create_ou(&dn).await;
        dn
    }

    async fn read_ids(&self, ldap: &mut Ldap, dn: &str) -> (Vec<u8>, Vec<u8>) {
        let (rs, _) = ldap
            .search(
                dn,
                Scope::Base,
                "(objectClass=*)",
                vec!["objectSid", "objectGUID"],
            )
            .await
            .expect("search")
            .success()
            .expect("search ok");
        let e = SearchEntry::construct(rs.into_iter().next().expect("entry"));
        let bin = |k: &str| first_binary(&e, k).unwrap_or_else(|| panic!("{k} of {dn}"));
        (bin("objectSid"), bin("objectGUID"))
    }

    pub async fn create_user(&self, ou: &str, sam: &str, display: &str) -> LabUser {
        use base64::Engine;
        use std::collections::HashSet;
        let mut ldap = self.ldap().await;
        let dn = format!("CN={display},{ou}");
        ldap.add(
            &dn,
            vec![
                ("objectClass", HashSet::from(["user"])),
                ("sAMAccountName", HashSet::from([sam])),
                ("displayName", HashSet::from([display])),
            ],
        )
        .await
        .expect("add user")
        .success()
        .unwrap_or_else(|e| panic!("add {dn}: {e}"));
        let (sid, guid) = self.read_ids(&mut ldap, &dn).await;
        let _ = ldap.unbind().await;
        LabUser {
            dn,
            sid: sid_text(&sid),
            immutable_id_base64: base64::engine::general_purpose::STANDARD.encode(&guid),
            guid,
        }
    }

    /// A computer account (what a hybrid-joined device is in AD).
    pub async fn create_computer(&self, ou: &str, name: &str) -> LabGroup {
        use std::collections::HashSet;
        let mut ldap = self.ldap().await;
        let dn = format!("CN={name},{ou}");
        // sAMAccountName is unique in the domain, which every test shares.
        let sam = format!("PC{}$", rand_suffix());
        ldap.add(
            &dn,
            vec![
                ("objectClass", HashSet::from(["computer"])),
                ("sAMAccountName", HashSet::from([sam.as_str()])),
            ],
        )
        .await
        .expect("add computer")
        .success()
        .unwrap_or_else(|e| panic!("add {dn}: {e}"));
        let (sid, _) = self.read_ids(&mut ldap, &dn).await;
        let _ = ldap.unbind().await;
        LabGroup {
            dn,
            sid: sid_text(&sid),
        }
    }

    pub async fn create_group(&self, ou: &str, cn: &str, group_type: i32) -> LabGroup {
        use std::collections::HashSet;
        let mut ldap = self.ldap().await;
        let dn = format!("CN={cn},{ou}");
        let gt = group_type.to_string();
        ldap.add(
            &dn,
            vec![
                ("objectClass", HashSet::from(["group"])),
                (
                    "sAMAccountName",
                    HashSet::from([format!("{cn}-{}", rand_suffix()).as_str()]),
                ),
                ("groupType", HashSet::from([gt.as_str()])),
            ],
        )
        .await
        .expect("add group")
        .success()
        .unwrap_or_else(|e| panic!("add {dn}: {e}"));
        let (sid, _) = self.read_ids(&mut ldap, &dn).await;
        let _ = ldap.unbind().await;
        LabGroup {
            dn,
            sid: sid_text(&sid),
        }
    }
}
