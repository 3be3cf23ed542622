//! Reliability harnesses (issue 12), run on demand by `scripts/reliability`:
//!   crash  — SIGKILL `writeback sync` at seeded points (after N DC commits, or after T ms)
//!            during a first export and during delta cycles (renames, moves by a rule's OU,
//!            member changes, soft and permanent deletes, groups enabled); after the kills,
//!            sync until converged; the AD state must equal an uninterrupted reference run's.
//!   outage — the daemon (`writeback run`) with the DC killed mid-export and again in steady
//!            state, each time for REL_OUTAGE_S seconds: backoff, one ERROR line per outage,
//!            one `recovered` INFO line, `/readyz` 503 meanwhile, convergence after.
//!   storm  — 20 % 429 + 5 % 503 with Retry-After over a first export (identical state,
//!            every retry at least Retry-After after its throttled answer), then delta
//!            tokens expired between cycles and in the middle of a round (full round, zero
//!            deletes, identical state).
//!
//! Everything runs against the lab's *fault* DC instance (`lab/dc --instance fault`, its env
//! file in REL_DC_ENV), which this harness alone uses, kills and restarts. Each run prints
//! `PASS` or `FAIL` lines and exits 1 when anything failed.
//!
//! The reference run and the run under faults use separate OUs of the same DC, one after the
//! other: sAMAccountName is unique in the domain, so the reference's groups are recorded and
//! then deleted before the run under faults starts (otherwise its names would collide).

#[path = "../tests/support/mod.rs"]
mod support;

use ldap3::{Ldap, Scope, SearchEntry};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;
use wb_ad::values::first_binary;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn bin(name: &str) -> PathBuf {
    let profile = std::env::var("WRITEBACK_BIN_PROFILE").unwrap_or_else(|_| "release".into());
    root().join("target").join(profile).join(name)
}

/// The fault DC from its env file (written by `lab/dc --instance fault start`).
fn fault_dc() -> LabDc {
    let path = std::env::var("REL_DC_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("lab/run/dc-fault.env"));
    LabDc::from_env_file(&path, "run `lab/dc --instance fault start`")
}

fn lab_dc(cmd: &str) {
    let out = Command::new(root().join("lab/dc"))
        .args(["--instance", "fault", cmd])
        .output()
        .expect("lab/dc runs");
    assert!(
        out.status.success(),
        "lab/dc --instance fault {cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ------------------------------------------------------------------ verdicts

#[derive(Default)]
struct Verdicts {
    failed: Vec<String>,
    passed: usize,
}

impl Verdicts {
    fn check(&mut self, ok: bool, what: impl Into<String>) {
        let what = what.into();
        if ok {
            self.passed += 1;
            println!("PASS {what}");
        } else {
            println!("FAIL {what}");
            self.failed.push(what);
        }
    }
}

// ------------------------------------------------------------------ the tenant

const SPARE: usize = 60;

fn uid(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}
fn gid(i: usize) -> String {
    format!("00000000-0000-4000-9000-{i:012}")
}

#[derive(Clone, Debug, PartialEq)]
enum Life {
    Live,
    SoftDeleted,
    Gone,
}

#[derive(Clone, Debug)]
struct ModelGroup {
    name: String,
    enabled: bool,
    users: BTreeSet<usize>,
    nested: Option<usize>,
    life: Life,
}

/// The tenant: synced users (AD users in the users OU) and `n` security groups enabled for
/// writeback, plus SPARE disabled ones that delta batches enable.
struct Fixture {
    users: Vec<BulkUser>,
    groups: Vec<ModelGroup>,
    dir: PathBuf,
    tenant_file: PathBuf,
}

impl Fixture {
    async fn new(
        dc: &LabDc,
        label: &str,
        n_groups: usize,
        n_users: usize,
        rng: &mut StdRng,
    ) -> Fixture {
        let users_root = dc.fresh_ou(&format!("{label}-users")).await;
        let t = Instant::now();
        let users = dc.create_users_in(&users_root, "ru", n_users).await;
        println!(
            "fixture: {} AD users in {:.1}s",
            users.len(),
            t.elapsed().as_secs_f64()
        );
        let mut groups = Vec::new();
        for i in 0..n_groups + SPARE {
            let size = rng.gen_range(1..=12);
            let mut set = BTreeSet::new();
            while set.len() < size {
                set.insert(rng.gen_range(0..users.len()));
            }
            // Every 40th group nests an earlier one: a member that is itself written back.
            let nested = (i % 40 == 39 && i < n_groups).then(|| rng.gen_range(0..i));
            groups.push(ModelGroup {
                name: if i < n_groups {
                    format!("SG-Rel-{i:05}")
                } else {
                    format!("SG-Spare-{i:05}")
                },
                enabled: i < n_groups,
                users: set,
                nested,
                life: Life::Live,
            });
        }
        let dir = std::env::temp_dir().join(format!("wb-rel-{label}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let tenant = json!({
            "users": users.iter().enumerate().map(|(i, u)| json!({
                "id": uid(i), "displayName": u.sam, "userPrincipalName": format!("{}@lab.example.test", u.sam),
                "accountEnabled": true, "onPremisesSyncEnabled": true, "onPremisesSecurityIdentifier": u.sid,
            })).collect::<Vec<_>>(),
            "groups": groups.iter().enumerate().map(|(i, g)| {
                let mut members: Vec<String> = g.users.iter().map(|&u| uid(u)).collect();
                if let Some(n) = g.nested { members.push(gid(n)); }
                json!({
                    "id": gid(i), "displayName": g.name, "groupTypes": [],
                    "mailEnabled": false, "mailNickname": format!("sgrel{i}"), "securityEnabled": true,
                    "description": format!("reliability group {i}"),
                    "writebackConfiguration": {"isEnabled": g.enabled, "onPremisesGroupType": "universalSecurityGroup"},
                    "members": members, "owners": [],
                })
            }).collect::<Vec<_>>(),
        });
        let tenant_file = dir.join("tenant.json");
        std::fs::write(&tenant_file, serde_json::to_vec(&tenant).expect("json")).expect("tenant");
        Fixture {
            users,
            groups,
            dir,
            tenant_file,
        }
    }

    fn sim(&self) -> Sim {
        Sim::start_with(&["--tenant", self.tenant_file.to_str().expect("utf-8")])
    }

    /// A batch of cloud changes, drawn from the model (and applied to it): renames, moves
    /// (renamed into the rule's `SG-Moved-` prefix, or back out of it), member adds and
    /// removes, soft and permanent deletes, spare groups enabled.
    fn batch(&mut self, b: usize, rng: &mut StdRng) -> Vec<Change> {
        let mut out = Vec::new();
        let live: Vec<usize> = (0..self.groups.len())
            .filter(|&i| self.groups[i].life == Life::Live && self.groups[i].enabled)
            .collect();
        let mut pick: Vec<usize> = live.clone();
        pick.shuffle(rng);
        let mut it = pick.into_iter();
        for i in it.by_ref().take(40) {
            let name = format!("SG-Rel-{i:05}-r{b}");
            self.groups[i].name = name.clone();
            out.push(Change::Rename(i, name));
        }
        for i in it.by_ref().take(25) {
            let name = format!("SG-Moved-{i:05}-b{b}");
            self.groups[i].name = name.clone();
            out.push(Change::Rename(i, name));
        }
        for i in it.by_ref().take(80) {
            let g = &mut self.groups[i];
            for _ in 0..rng.gen_range(1..=3) {
                let u = rng.gen_range(0..self.users.len());
                if g.users.insert(u) {
                    out.push(Change::AddMember(i, u));
                }
            }
            let remove: Vec<usize> = g.users.iter().copied().take(rng.gen_range(0..=2)).collect();
            for u in remove {
                g.users.remove(&u);
                out.push(Change::RemoveMember(i, u));
            }
        }
        for i in it.by_ref().take(10) {
            self.groups[i].life = Life::Gone;
            out.push(Change::Delete(i, true));
        }
        for i in it.by_ref().take(5) {
            self.groups[i].life = Life::SoftDeleted;
            out.push(Change::Delete(i, false));
        }
        let spares: Vec<usize> = (0..self.groups.len())
            .filter(|&i| !self.groups[i].enabled)
            .take(10)
            .collect();
        for i in spares {
            self.groups[i].enabled = true;
            out.push(Change::Enable(i));
        }
        out
    }
}

#[derive(Clone, Debug)]
enum Change {
    Rename(usize, String),
    AddMember(usize, usize),
    RemoveMember(usize, usize),
    /// permanent?
    Delete(usize, bool),
    Enable(usize),
}

/// A Graph client for the harness's own admin calls.
struct Admin {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Admin {
    async fn new(sim: &Sim) -> Admin {
        let http = reqwest::Client::new();
        let v: Value = http
            .post(format!("{}/{TENANT}/oauth2/v2.0/token", sim.url))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("scope", "https://graph.microsoft.com/.default"),
            ])
            .send()
            .await
            .expect("token")
            .json()
            .await
            .expect("token json");
        Admin {
            http,
            url: sim.url.clone(),
            token: v["access_token"].as_str().expect("token").to_string(),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        // graph-sim may be answering with faults: retry those (the harness is not under test).
        loop {
            let mut req = self
                .http
                .request(
                    method.parse().expect("method"),
                    format!("{}{path}", self.url),
                )
                .bearer_auth(&self.token);
            if let Some(b) = &body {
                req = req.json(b);
            }
            let resp = req.send().await.expect("graph-sim answers");
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            if status == 429 || status == 503 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let v = serde_json::from_str(&text).unwrap_or(Value::Null);
            return (status, v);
        }
    }

    async fn sim_admin(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(
            method.parse().expect("method"),
            format!("{}{path}", self.url),
        );
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("graph-sim answers");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn apply(&self, changes: &[Change]) {
        for c in changes {
            let (st, v) = match c {
                Change::Rename(i, name) => {
                    self.call(
                        "PATCH",
                        &format!("/beta/groups/{}", gid(*i)),
                        Some(json!({"displayName": name})),
                    )
                    .await
                }
                Change::AddMember(i, u) => {
                    self.call(
                        "POST",
                        &format!("/v1.0/groups/{}/members/$ref", gid(*i)),
                        Some(json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{}", uid(*u))})),
                    )
                    .await
                }
                Change::RemoveMember(i, u) => {
                    self.call(
                        "DELETE",
                        &format!("/v1.0/groups/{}/members/{}/$ref", gid(*i), uid(*u)),
                        None,
                    )
                    .await
                }
                Change::Delete(i, permanent) => {
                    let r = self
                        .call("DELETE", &format!("/v1.0/groups/{}", gid(*i)), None)
                        .await;
                    if *permanent && r.0 == 204 {
                        self.call(
                            "DELETE",
                            &format!("/v1.0/directory/deletedItems/{}", gid(*i)),
                            None,
                        )
                        .await
                    } else {
                        r
                    }
                }
                Change::Enable(i) => {
                    self.call(
                        "PATCH",
                        &format!("/beta/groups/{}", gid(*i)),
                        Some(json!({"writebackConfiguration": {"isEnabled": true}})),
                    )
                    .await
                }
            };
            assert!(st == 204 || st == 200, "{c:?}: {st} {v}");
        }
    }
}

// ------------------------------------------------------------------ one writeback side

/// One writeback installation: its OUs, state file and configuration.
struct Side {
    label: String,
    root_ou: String,
    dir: PathBuf,
    config: PathBuf,
}

impl Side {
    async fn new(dc: &LabDc, label: &str, sim: &Sim, extra: &str) -> Side {
        let root_ou = dc.fresh_ou(label).await;
        let groups = format!("OU=Groups,{root_ou}");
        let moved = format!("OU=Moved,{root_ou}");
        dc.create_ou(&groups).await;
        dc.create_ou(&moved).await;
        let dir = std::env::temp_dir().join(format!(
            "wb-rel-{label}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let config = dir.join("writeback.toml");
        let side = Side {
            label: label.to_string(),
            root_ou,
            dir,
            config,
        };
        side.write_config(dc, &sim.url, extra);
        side
    }

    fn write_config(&self, dc: &LabDc, sim_url: &str, extra: &str) {
        let text = format!(
            r#"[graph]
tenant = "{TENANT}"
client_id = "{CLIENT_ID}"
client_secret = {{ env = "WB_E2E_SECRET" }}
graph_url = "{sim_url}"
login_url = "{sim_url}"

[ad]
url = "{url}"
bind_dn = "{bind}"
password = {{ env = "WB_E2E_AD_PASSWORD" }}
base_dn = "{base}"
ou = "OU=Groups,{root}"

[writeback]
state = "state.db"
naming = "display-name"
{extra}

[[writeback.rule]]
match = {{ kind = "security", name_prefix = "SG-Moved-" }}
ou = "OU=Moved,{root}"
"#,
            url = dc.url,
            bind = dc.bind_dn,
            base = dc.base_dn,
            root = self.root_ou,
        );
        std::fs::write(&self.config, text).expect("config");
    }

    fn command(&self, dc: &LabDc, args: &[&str]) -> Command {
        let mut c = Command::new(bin("writeback"));
        c.args(args)
            .arg("--config")
            .arg(&self.config)
            .env("WB_E2E_SECRET", CLIENT_SECRET)
            .env("WB_E2E_AD_PASSWORD", &dc.password)
            .env("WRITEBACK_LOG", "warn");
        c
    }

    fn spawn_sync(&self, dc: &LabDc, n: usize) -> Child {
        let log = |ext: &str| {
            std::fs::File::create(self.dir.join(format!("sync-{n:03}.{ext}"))).expect("log file")
        };
        self.command(dc, &["sync", "--json"])
            .stdout(log("json"))
            .stderr(log("log"))
            .spawn()
            .expect("writeback sync starts")
    }

    fn run(&self, dc: &LabDc, args: &[&str]) -> (i32, String, String) {
        let out = self.command(dc, args).output().expect("writeback runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Syncs until a cycle exits 0 (at most `tries`): the exit codes seen.
    fn converge(&self, dc: &LabDc, tries: usize) -> Vec<i32> {
        let mut codes = Vec::new();
        for _ in 0..tries {
            let (code, _, err) = self.run(dc, &["sync", "--json"]);
            codes.push(code);
            if code == 0 {
                break;
            }
            eprintln!(
                "  {}: sync exit {code}: {}",
                self.label,
                last_lines(&err, 5)
            );
        }
        codes
    }

    /// The operations `writeback plan` would still make.
    fn plan_ops(&self, dc: &LabDc) -> Result<usize, String> {
        let (code, out, err) = self.run(dc, &["plan", "--json"]);
        if code != 0 {
            return Err(format!("plan exit {code}: {}", last_lines(&err, 5)));
        }
        let v: Value = serde_json::from_str(&out).map_err(|e| format!("plan json: {e}"))?;
        Ok(v["operations"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(usize::MAX))
    }
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

// ------------------------------------------------------------------ the AD state

#[derive(Debug, Clone, PartialEq)]
struct GroupState {
    /// DN with the side's root OU replaced by `<root>`, lower-case.
    rel_dn: String,
    sam: String,
    group_type: String,
    display_name: String,
    description: String,
    ext_id: String,
    members: Vec<String>,
}

#[derive(Debug, Default)]
struct AdState {
    groups: BTreeMap<String, GroupState>,
    guids: BTreeMap<String, Vec<u8>>,
    /// Whatever is wrong on its own: groups without an anchor, anchors held twice, objects
    /// that are neither groups nor the side's OUs.
    problems: Vec<String>,
}

async fn read_state(dc: &LabDc, root_ou: &str) -> AdState {
    let mut ldap = dc.ldap().await;
    let state = read_state_on(&mut ldap, root_ou).await;
    let _ = ldap.unbind().await;
    state
}

async fn read_state_on(ldap: &mut Ldap, root_ou: &str) -> AdState {
    let (entries, _) = ldap
        .search(
            root_ou,
            Scope::Subtree,
            "(objectClass=*)",
            vec![
                "objectClass",
                "objectGUID",
                "sAMAccountName",
                "groupType",
                "adminDescription",
                "msDS-ExternalDirectoryObjectId",
                "displayName",
                "description",
                "member",
            ],
        )
        .await
        .expect("search")
        .success()
        .expect("search ok");
    let root_lc = root_ou.to_ascii_lowercase();
    let rel = |dn: &str| {
        let lc = dn.to_ascii_lowercase();
        match lc.strip_suffix(&root_lc) {
            Some(head) => format!("{head}<root>"),
            None => lc,
        }
    };
    let mut st = AdState::default();
    for e in entries {
        let e = SearchEntry::construct(e);
        let classes: Vec<String> = e
            .attrs
            .get("objectClass")
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if !classes.iter().any(|c| c == "group") {
            if !classes.iter().any(|c| c == "organizationalunit") {
                st.problems.push(format!("extra object {}", e.dn));
            }
            continue;
        }
        let one = |k: &str| {
            e.attrs
                .get(k)
                .and_then(|v| v.first())
                .cloned()
                .unwrap_or_default()
        };
        let anchor = one("adminDescription");
        if anchor.is_empty() {
            st.problems
                .push(format!("group without its anchor: {}", e.dn));
            continue;
        }
        let mut members: Vec<String> = e
            .attrs
            .get("member")
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|m| rel(m))
            .collect();
        members.sort();
        let g = GroupState {
            rel_dn: rel(&e.dn),
            sam: one("sAMAccountName"),
            group_type: one("groupType"),
            display_name: one("displayName"),
            description: one("description"),
            ext_id: one("msDS-ExternalDirectoryObjectId"),
            members,
        };
        if st.groups.insert(anchor.clone(), g).is_some() {
            st.problems
                .push(format!("anchor {anchor} held by two groups (duplicate)"));
        }
        st.guids
            .insert(anchor, first_binary(&e, "objectGUID").unwrap_or_default());
    }
    st
}

/// The differences between `got` and the reference `want` (empty: identical).
fn diff(want: &AdState, got: &AdState) -> Vec<String> {
    let mut out: Vec<String> = got.problems.clone();
    for (a, w) in &want.groups {
        match got.groups.get(a) {
            None => out.push(format!("missing {a} ({})", w.rel_dn)),
            Some(g) if g != w => out.push(format!("differs {a}: want {w:?}, got {g:?}")),
            Some(_) => {}
        }
    }
    for (a, g) in &got.groups {
        if !want.groups.contains_key(a) {
            out.push(format!("extra {a} ({})", g.rel_dn));
        }
    }
    out
}

/// Anchors present in both whose objectGUID changed (deleted and re-created).
fn guid_changes(before: &AdState, after: &AdState) -> Vec<String> {
    before
        .guids
        .iter()
        .filter(|(a, g)| after.guids.get(*a).is_some_and(|h| h != *g))
        .map(|(a, _)| a.clone())
        .collect()
}

/// Deletes every object under `root_ou` but the OUs: frees the sAMAccountNames.
async fn clear_groups(dc: &LabDc, root_ou: &str) {
    let mut ldap = dc.ldap().await;
    let (entries, _) = ldap
        .search(root_ou, Scope::Subtree, "(objectClass=group)", vec!["1.1"])
        .await
        .expect("search")
        .success()
        .expect("search ok");
    for e in entries {
        let e = SearchEntry::construct(e);
        ldap.delete(&e.dn)
            .await
            .expect("delete")
            .success()
            .expect("delete ok");
    }
    let _ = ldap.unbind().await;
}

async fn usn(ldap: &mut Ldap) -> Option<u64> {
    let (rs, _) = ldap
        .search(
            "",
            Scope::Base,
            "(objectClass=*)",
            vec!["highestCommittedUSN"],
        )
        .await
        .ok()?
        .success()
        .ok()?;
    let e = SearchEntry::construct(rs.into_iter().next()?);
    e.attrs.get("highestCommittedUSN")?.first()?.parse().ok()
}

fn show_diffs(d: &[String]) {
    for line in d.iter().take(10) {
        println!("  - {line}");
    }
    if d.len() > 10 {
        println!("  … and {} more", d.len() - 10);
    }
}

// ------------------------------------------------------------------ crash

#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// When the DC's highestCommittedUSN has moved this far since the stage began.
    Commits(u64),
    /// This long after the process started (import and plan phases included).
    Millis(u64),
}

struct Stage {
    name: String,
    /// DC commits and wall time the uninterrupted reference needed.
    commits: u64,
    millis: u64,
}

async fn crash(seed: u64) -> Verdicts {
    let mut v = Verdicts::default();
    let n_groups = env_num("REL_GROUPS", 2000) as usize;
    let n_users = env_num("REL_USERS", 600) as usize;
    let rounds = env_num("REL_FIRST_ROUNDS", 4) as usize;
    let batches = env_num("REL_BATCHES", 4) as usize;
    let kills_per_chain = env_num("REL_KILLS_PER_CHAIN", 3) as usize;
    let dc = fault_dc();
    let mut rng = StdRng::seed_from_u64(seed);
    println!("crash: seed {seed}, {n_groups} groups, {rounds} first-export rounds, {batches} delta batches, up to {kills_per_chain} kills per stage");
    let mut fx = Fixture::new(&dc, "crash", n_groups, n_users, &mut rng).await;
    let mut model_rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let all_batches: Vec<Vec<Change>> =
        (1..=batches).map(|b| fx.batch(b, &mut model_rng)).collect();

    // The uninterrupted reference: first export, then each batch; states recorded.
    let sim = fx.sim();
    let admin = Admin::new(&sim).await;
    let reference = Side::new(&dc, "crash-ref", &sim, "").await;
    let mut ldap = dc.ldap().await;
    let mut stages = Vec::new();
    let mut want = Vec::new();
    for b in 0..=batches {
        if b > 0 {
            admin.apply(&all_batches[b - 1]).await;
        }
        let u0 = usn(&mut ldap).await.expect("usn");
        let t = Instant::now();
        let codes = reference.converge(&dc, 3);
        let millis = t.elapsed().as_millis() as u64;
        let commits = usn(&mut ldap).await.expect("usn") - u0;
        let name = if b == 0 {
            "first export".to_string()
        } else {
            format!("delta batch {b}")
        };
        v.check(
            codes == [0],
            format!("reference {name}: one uninterrupted sync (exit codes {codes:?}, {millis} ms, {commits} DC commits)"),
        );
        let st = read_state(&dc, &reference.root_ou).await;
        v.check(
            st.problems.is_empty() && reference.plan_ops(&dc) == Ok(0),
            format!(
                "reference {name}: {} groups, well-formed, empty plan",
                st.groups.len()
            ),
        );
        stages.push(Stage {
            name,
            commits,
            millis,
        });
        want.push(st);
    }
    drop(sim);
    clear_groups(&dc, &reference.root_ou).await;

    let mut total_kills = 0usize;
    let mut kill_log: Vec<String> = Vec::new();
    let mut sync_no = 0usize;
    for round in 1..=rounds {
        let sim = fx.sim();
        let admin = Admin::new(&sim).await;
        let side = Side::new(&dc, &format!("crash-r{round}"), &sim, "").await;
        let last = round == rounds;
        let mut before = AdState::default();
        for (b, stage) in stages.iter().enumerate() {
            if b > 0 && !last {
                break;
            }
            if b > 0 {
                admin.apply(&all_batches[b - 1]).await;
            }
            // The kill points of this stage: commit counts spread over the reference's,
            // sorted (the work resumes where the killed process left it), and now and then
            // a time point (import and plan have no commits).
            let mut points: Vec<KillAt> = Vec::new();
            let mut commits: Vec<u64> = (0..kills_per_chain)
                .map(|_| rng.gen_range(1..stage.commits.max(2)))
                .collect();
            commits.sort();
            for c in commits {
                if rng.gen_bool(0.25) {
                    points.push(KillAt::Millis(rng.gen_range(0..stage.millis.max(1))));
                } else {
                    points.push(KillAt::Commits(c));
                }
            }
            let u0 = usn(&mut ldap).await.expect("usn");
            let mut kills_here = 0;
            for p in &points {
                sync_no += 1;
                let mut child = side.spawn_sync(&dc, sync_no);
                let started = Instant::now();
                let killed = loop {
                    if let Ok(Some(_)) = child.try_wait() {
                        break None;
                    }
                    let moved = usn(&mut ldap).await.unwrap_or(u0) - u0;
                    let due = match *p {
                        KillAt::Commits(c) => moved >= c,
                        KillAt::Millis(ms) => started.elapsed().as_millis() as u64 >= ms,
                    };
                    if due {
                        let _ = child.kill(); // SIGKILL
                        let _ = child.wait();
                        break Some((moved, started.elapsed().as_millis()));
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                };
                match killed {
                    Some((moved, ms)) => {
                        kills_here += 1;
                        total_kills += 1;
                        let line = format!(
                            "kill {total_kills}: round {round}, {}, point {p:?}: SIGKILL after {ms} ms, {moved} DC commits into the stage",
                            stage.name
                        );
                        println!("  {line}");
                        kill_log.push(line);
                    }
                    None => println!(
                        "  round {round}, {}, point {p:?}: the sync finished first (no kill)",
                        stage.name
                    ),
                }
            }
            let codes = side.converge(&dc, 5);
            let got = read_state(&dc, &side.root_ou).await;
            let d = diff(&want[b], &got);
            let plan = side.plan_ops(&dc);
            let ok = codes.last() == Some(&0) && d.is_empty() && plan == Ok(0);
            v.check(
                ok,
                format!(
                    "round {round}, {} after {kills_here} kill(s): converged (exit codes {codes:?}), AD equals the reference ({} groups), plan {plan:?} operations",
                    stage.name,
                    got.groups.len()
                ),
            );
            show_diffs(&d);
            if b > 0 {
                let changed = guid_changes(&before, &got);
                v.check(
                    changed.is_empty(),
                    format!(
                        "round {round}, {}: every surviving group kept its objectGUID ({} changed)",
                        stage.name,
                        changed.len()
                    ),
                );
            }
            before = got;
        }
        drop(sim);
        if !last {
            clear_groups(&dc, &side.root_ou).await;
        }
    }
    let _ = ldap.unbind().await;
    v.check(
        total_kills >= 20,
        format!("{total_kills} SIGKILLs at distinct points (≥ 20 wanted)"),
    );
    let _ = std::fs::remove_dir_all(&fx.dir);
    v
}

// ------------------------------------------------------------------ outage

async fn get_status(http: &reqwest::Client, url: &str) -> Option<u16> {
    http.get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

async fn outage(seed: u64) -> Verdicts {
    let mut v = Verdicts::default();
    let n_groups = env_num("REL_GROUPS", 2000) as usize;
    let n_users = env_num("REL_USERS", 600) as usize;
    let hold = Duration::from_secs(env_num("REL_OUTAGE_S", 35));
    let dc = fault_dc();
    let mut rng = StdRng::seed_from_u64(seed);
    println!(
        "outage: seed {seed}, {n_groups} groups, outages of {}s",
        hold.as_secs()
    );
    let fx = Fixture::new(&dc, "outage", n_groups, n_users, &mut rng).await;

    let sim = fx.sim();
    let reference = Side::new(&dc, "outage-ref", &sim, "").await;
    let mut ldap = dc.ldap().await;
    let u0 = usn(&mut ldap).await.expect("usn");
    let codes = reference.converge(&dc, 3);
    let ref_commits = usn(&mut ldap).await.expect("usn") - u0;
    let want = read_state(&dc, &reference.root_ou).await;
    v.check(
        codes == [0] && want.problems.is_empty(),
        format!(
            "reference: one uninterrupted sync, {} groups, {ref_commits} DC commits",
            want.groups.len()
        ),
    );
    clear_groups(&dc, &reference.root_ou).await;

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("addr").port()
    };
    let side = Side::new(
        &dc,
        "outage",
        &sim,
        &format!("interval = \"2s\"\n\n[dashboard]\nlisten = \"127.0.0.1:{port}\""),
    )
    .await;
    let log_path = side.dir.join("daemon.log");
    let mut daemon = side
        .command(&dc, &["run"])
        .env("WRITEBACK_LOG", "info")
        .env("WRITEBACK_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log"))
        .spawn()
        .expect("daemon starts");
    let http = reqwest::Client::new();
    let readyz = format!("http://127.0.0.1:{port}/readyz");

    // Outage 1: mid-export. Kill when a third of the reference's commits are done.
    let u0 = usn(&mut ldap).await.expect("usn");
    let mid = ref_commits / 3;
    let t = Instant::now();
    loop {
        let moved = usn(&mut ldap).await.unwrap_or(u0) - u0;
        if moved >= mid {
            println!(
                "  outage 1: {moved} DC commits into the first export after {} ms: killing the DC",
                t.elapsed().as_millis()
            );
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "the daemon's export did not start"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let _ = ldap.unbind().await;
    for n in 1..=2 {
        if n == 2 {
            // Outage 2: in steady state, ready before.
            let t = Instant::now();
            while get_status(&http, &readyz).await != Some(200) {
                assert!(
                    t.elapsed() < Duration::from_secs(240),
                    "not ready after outage 1"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            println!("  outage 2: ready; killing the DC in steady state");
        }
        let down_at = Instant::now();
        lab_dc("kill");
        let mut samples = Vec::new();
        while down_at.elapsed() < hold {
            samples.push((
                down_at.elapsed().as_millis() as u64,
                get_status(&http, &readyz).await,
            ));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        lab_dc("resume");
        let up_at = Instant::now();
        assert!(
            daemon.try_wait().expect("wait").is_none(),
            "the daemon died during outage {n}"
        );
        let t = Instant::now();
        let ready_after = loop {
            if get_status(&http, &readyz).await == Some(200) {
                break Some(up_at.elapsed().as_millis());
            }
            if t.elapsed() > Duration::from_secs(240) {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let first_503 = samples
            .iter()
            .find(|(_, s)| *s == Some(503))
            .map(|(ms, _)| *ms);
        let last_200 = samples
            .iter()
            .filter(|(_, s)| *s == Some(200))
            .map(|(ms, _)| *ms)
            .max();
        let unanswered = samples.iter().filter(|(_, s)| s.is_none()).count();
        println!(
            "  outage {n}: DC down {:.1}s; readyz polled {} times: first 503 at {first_503:?} ms, last 200 at {last_200:?} ms, {unanswered} unanswered; ready again {ready_after:?} ms after the DC came back",
            hold.as_secs_f64(),
            samples.len()
        );
        v.check(
            daemon.try_wait().expect("wait").is_none(),
            format!(
                "outage {n}: the daemon survived {}s without its DC",
                hold.as_secs()
            ),
        );
        v.check(
            unanswered == 0,
            format!("outage {n}: /readyz answered every poll"),
        );
        v.check(
            first_503.is_some()
                && samples
                    .iter()
                    .filter(|(ms, _)| *ms > first_503.unwrap_or(0))
                    .all(|(_, s)| *s == Some(503)),
            format!("outage {n}: /readyz 503 from {first_503:?} ms into the outage until its end"),
        );
        v.check(
            ready_after.is_some(),
            format!("outage {n}: /readyz 200 again after the DC came back ({ready_after:?} ms)"),
        );
    }

    // Converged: the AD state equals the reference's, the plan is empty.
    let t = Instant::now();
    let (got, d) = loop {
        let got = read_state(&dc, &side.root_ou).await;
        let d = diff(&want, &got);
        if d.is_empty() || t.elapsed() > Duration::from_secs(120) {
            break (got, d);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let status = daemon.wait().expect("daemon exits");
    v.check(
        status.code() == Some(0),
        format!("daemon stopped on SIGTERM ({status})"),
    );
    v.check(d.is_empty(), format!("AD equals the reference after the outages ({} groups; no group without its anchor, none with partial members)", got.groups.len()));
    show_diffs(&d);
    let plan = side.plan_ops(&dc);
    v.check(
        plan == Ok(0),
        format!("plan after the outages: {plan:?} operations"),
    );

    // The log: one ERROR and one `recovered` INFO per outage, nothing else at ERROR.
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let mut errors = Vec::new();
    let mut recovered = Vec::new();
    for line in log.lines() {
        let Ok(j) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let msg = j["fields"]["message"].as_str().unwrap_or("").to_string();
        match j["level"].as_str() {
            Some("ERROR") => errors.push(format!(
                "{} {msg}: {}",
                j["timestamp"], j["fields"]["error"]
            )),
            Some("INFO") if msg.starts_with("recovered") => recovered.push(format!(
                "{} {msg} (outage {}s)",
                j["timestamp"], j["fields"]["outage_s"]
            )),
            _ => {}
        }
    }
    for e in &errors {
        println!("  log ERROR: {e}");
    }
    for r in &recovered {
        println!("  log INFO: {r}");
    }
    v.check(
        errors.len() == 2,
        format!(
            "exactly one ERROR line per outage ({} for 2 outages)",
            errors.len()
        ),
    );
    v.check(
        recovered.len() == 2,
        format!(
            "exactly one `recovered` INFO line per outage ({} for 2 outages)",
            recovered.len()
        ),
    );
    let _ = std::fs::remove_dir_all(&fx.dir);
    v
}

// ------------------------------------------------------------------ storm

async fn storm(seed: u64) -> Verdicts {
    let mut v = Verdicts::default();
    let n_groups = env_num("REL_GROUPS", 2000) as usize;
    let n_users = env_num("REL_USERS", 600) as usize;
    let retry_after = env_num("REL_RETRY_AFTER_S", 2);
    // Smaller delta pages: more requests, so more throttled answers to measure.
    let page_size = env_num("REL_STORM_PAGE_SIZE", 100);
    let dc = fault_dc();
    let mut rng = StdRng::seed_from_u64(seed);
    println!("storm: seed {seed}, {n_groups} groups, 20% 429 + 5% 503 with Retry-After {retry_after}s, delta pages of {page_size}");
    let fx = Fixture::new(&dc, "storm", n_groups, n_users, &mut rng).await;

    let sim = fx.sim();
    let reference = Side::new(&dc, "storm-ref", &sim, "").await;
    let codes = reference.converge(&dc, 3);
    let want = read_state(&dc, &reference.root_ou).await;
    v.check(
        codes == [0] && want.problems.is_empty(),
        format!(
            "reference (no faults): one sync, {} groups",
            want.groups.len()
        ),
    );
    drop(sim);
    clear_groups(&dc, &reference.root_ou).await;

    // The storm: a fresh tenant (same file), faults on from the first request.
    let sim = fx.sim();
    let admin = Admin::new(&sim).await;
    admin
        .sim_admin(
            "POST",
            "/_sim/faults",
            Some(json!({"throttle_share": 0.2, "unavailable_share": 0.05, "retry_after_secs": retry_after, "delta_page_size": page_size})),
        )
        .await;
    admin.sim_admin("DELETE", "/_sim/stats", None).await;
    let side = Side::new(&dc, "storm", &sim, "").await;
    let t = Instant::now();
    let codes = side.converge(&dc, 3);
    let took = t.elapsed().as_secs_f64();
    let stats = admin.sim_admin("GET", "/_sim/stats", None).await;
    let log = admin.sim_admin("GET", "/_sim/requests", None).await;
    println!(
        "  storm export: {took:.1}s, {} Graph requests, {} answered 429, {} answered 503",
        stats["total"], stats["throttled"], stats["unavailable"]
    );
    v.check(
        codes == [0],
        format!("first export under the storm succeeded in one sync (exit codes {codes:?})"),
    );
    let got = read_state(&dc, &side.root_ou).await;
    let d = diff(&want, &got);
    v.check(
        d.is_empty(),
        format!(
            "AD after the storm equals the clean run's ({} groups)",
            got.groups.len()
        ),
    );
    show_diffs(&d);

    // Retry-After: every throttled request was sent again no sooner than Retry-After.
    let reqs = log["requests"].as_array().cloned().unwrap_or_default();
    let (mut faulted, mut retried, mut early) = (0, 0, Vec::new());
    let mut min_gap = f64::MAX;
    for (k, r) in reqs.iter().enumerate() {
        let status = r["status"].as_u64().unwrap_or(0);
        if status != 429 && status != 503 {
            continue;
        }
        faulted += 1;
        let ra = r["retry_after"].as_f64().unwrap_or(0.0) * 1000.0;
        let next = reqs[k + 1..]
            .iter()
            .find(|x| x["method"] == r["method"] && x["uri"] == r["uri"]);
        if let Some(x) = next {
            retried += 1;
            let gap = x["at_ms"].as_f64().unwrap_or(0.0) - r["at_ms"].as_f64().unwrap_or(0.0);
            min_gap = min_gap.min(gap - ra);
            if gap + 1.0 < ra {
                early.push(format!(
                    "{} {} retried after {gap:.0} ms < {ra:.0} ms",
                    r["method"], r["uri"]
                ));
            }
        }
    }
    println!("  {faulted} throttled answers, {retried} retried; smallest margin over Retry-After: {min_gap:.0} ms");
    for e in early.iter().take(10) {
        println!("  - {e}");
    }
    v.check(
        faulted > 0 && retried == faulted && early.is_empty(),
        format!("Retry-After honoured: {retried} of {faulted} throttled requests retried, none earlier than Retry-After ({retry_after}s)"),
    );
    let plan = side.plan_ops(&dc);
    v.check(
        plan == Ok(0),
        format!("plan after the storm: {plan:?} operations"),
    );

    // An expired delta token between cycles (storm still on): a full round, zero deletes.
    admin
        .sim_admin("POST", "/_sim/expire-delta-tokens", None)
        .await;
    let (code, out, err) = side.run(&dc, &["sync", "--json"]);
    let r: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    println!(
        "  after expiry: exit {code}, mode {}, applied {}, held back {}",
        r["mode"], r["applied"], r["heldBack"]
    );
    v.check(
        code == 0
            && r["mode"] == "full"
            && r["applied"]["deletes"] == 0
            && r["heldBack"]["deletes"] == 0,
        format!(
            "expired delta token between cycles: a full round (mode {}), zero deletes",
            r["mode"]
        ),
    );
    v.check(
        err.contains("no longer valid"),
        "the expiry is logged (\"delta token no longer valid: starting a full round\")",
    );
    let got2 = read_state(&dc, &side.root_ou).await;
    let d = diff(&want, &got2);
    let changed = guid_changes(&got, &got2);
    v.check(
        d.is_empty() && changed.is_empty(),
        format!(
            "state identical after the expiry round ({} objectGUIDs changed)",
            changed.len()
        ),
    );
    show_diffs(&d);

    // Expiry in the middle of a round: small pages, tokens expired after the third page.
    admin
        .sim_admin(
            "POST",
            "/_sim/faults",
            Some(json!({"throttle_share": 0.2, "unavailable_share": 0.05, "retry_after_secs": retry_after, "delta_page_size": 50})),
        )
        .await;
    admin
        .sim_admin("POST", "/_sim/expire-delta-tokens", None)
        .await;
    admin.sim_admin("DELETE", "/_sim/stats", None).await;
    let mut child = side.spawn_sync(&dc, 900);
    let t = Instant::now();
    loop {
        let s = admin.sim_admin("GET", "/_sim/stats", None).await;
        if s["by_path"]["/beta/groups/delta"].as_u64().unwrap_or(0) >= 3 {
            admin
                .sim_admin("POST", "/_sim/expire-delta-tokens", None)
                .await;
            println!(
                "  expired the tokens after {} group-delta pages",
                s["by_path"]["/beta/groups/delta"]
            );
            break;
        }
        if child.try_wait().ok().flatten().is_some() || t.elapsed() > Duration::from_secs(60) {
            println!("  (the round ended before its third page)");
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = child.wait().expect("sync");
    let out = std::fs::read_to_string(side.dir.join("sync-900.json")).unwrap_or_default();
    let r: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    println!(
        "  expiry mid-round: exit {:?}, mode {}, applied {}",
        status.code(),
        r["mode"],
        r["applied"]
    );
    let codes = side.converge(&dc, 3);
    let got3 = read_state(&dc, &side.root_ou).await;
    let d = diff(&want, &got3);
    v.check(
        r["applied"]["deletes"].as_u64().unwrap_or(0) == 0 && d.is_empty() && guid_changes(&got, &got3).is_empty() && codes.last() == Some(&0),
        format!("expired token mid-round: zero deletes, state identical (sync exit {:?}, then {codes:?})", status.code()),
    );
    show_diffs(&d);
    let plan = side.plan_ops(&dc);
    v.check(
        plan == Ok(0),
        format!("plan at the end: {plan:?} operations"),
    );
    let _ = std::fs::remove_dir_all(&fx.dir);
    v
}

// ------------------------------------------------------------------ main

#[tokio::main]
async fn main() {
    let what = std::env::args().nth(1).unwrap_or_default();
    let seed = std::env::var("REL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(1)
        });
    let t = Instant::now();
    let v = match what.as_str() {
        "crash" => crash(seed).await,
        "outage" => outage(seed).await,
        "storm" => storm(seed).await,
        _ => {
            eprintln!("usage: reliability crash|outage|storm   (REL_SEED, REL_GROUPS, … in the environment)");
            std::process::exit(2);
        }
    };
    println!(
        "{what}: {} — {} checks passed, {} failed, seed {seed}, {:.0}s",
        if v.failed.is_empty() { "PASS" } else { "FAIL" },
        v.passed,
        v.failed.len(),
        t.elapsed().as_secs_f64()
    );
    std::process::exit(if v.failed.is_empty() { 0 } else { 1 });
}
