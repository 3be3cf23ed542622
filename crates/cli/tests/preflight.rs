//! End-to-end: `writeback preflight` against the lab DC, with the admin bind and with a
//! least-privilege service account that lacks each right writeback needs, one at a time.

mod support;
use ldap3::{LdapConnAsync, Scope, SearchEntry};
use serde_json::Value;
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use support::*;

// schemaIDGUIDs from the lab's schema (the same in every AD forest).
const GROUP_CLASS: &str = "bf967a9c-0de6-11d0-a285-00aa003049e2";
const NAME_ATTR: &str = "bf967a0e-0de6-11d0-a285-00aa003049e2";
const CN_ATTR: &str = "bf96793f-0de6-11d0-a285-00aa003049e2";

/// The rights checks preflight probes in the managed OU.
const RIGHTS: [&str; 4] = [
    "ad.rights.create",
    "ad.rights.modify",
    "ad.rights.rename",
    "ad.rights.delete",
];

/// An AD user that writeback binds as, holding only what a test grants it on the managed OU.
struct ServiceAccount {
    dn: String,
    password: String,
    sid: String,
}

/// ACEs on the managed OU, in SDDL, for one service account.
struct Aces<'a> {
    sid: &'a str,
}

impl Aces<'_> {
    /// "Create group objects" on the OU itself.
    fn create_groups(&self) -> String {
        format!("(OA;;CC;{GROUP_CLASS};;{})", self.sid)
    }
    /// "Delete group objects" on the OU itself.
    fn delete_groups(&self) -> String {
        format!("(OA;;DC;{GROUP_CLASS};;{})", self.sid)
    }
    /// "Read all properties" on group objects below (inherit-only, for groups).
    fn read_group_properties(&self) -> String {
        format!("(OA;CIIO;RP;;{GROUP_CLASS};{})", self.sid)
    }
    /// "Write all properties" on group objects below (inherit-only, for groups).
    fn write_group_properties(&self) -> String {
        format!("(OA;CIIO;WP;;{GROUP_CLASS};{})", self.sid)
    }
    /// Deny "Write <attribute>" on group objects below; deny ACEs win over the allows.
    fn deny_write(&self, attribute: &str) -> String {
        format!("(OD;CIIO;WP;{attribute};{GROUP_CLASS};{})", self.sid)
    }
    /// Everything writeback needs: create, delete, read and write groups.
    fn all_needed(&self) -> Vec<String> {
        vec![
            self.create_groups(),
            self.delete_groups(),
            self.read_group_properties(),
            self.write_group_properties(),
        ]
    }
}

fn unique_tag() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let x =
        nanos ^ std::process::id().rotate_left(16) ^ SEQ.fetch_add(0x9e37_79b9, Ordering::Relaxed);
    format!("{x:08x}")
}

/// Creates an enabled user with a password in this world's People OU (outside the managed OU).
async fn service_account(w: &World) -> ServiceAccount {
    let tag = unique_tag();
    let sam = format!("wbsvc{tag}"); // 13 characters: within sAMAccountName's 20
    let dn = format!("CN={sam},{}", w.people_ou);
    let password = format!("Svc-{tag}-Pw1!");
    // unicodePwd is the password in double quotes, UTF-16LE (MS-ADTS 3.1.1.3.1.5.1).
    let quoted: Vec<u8> = format!("\"{password}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let attr = |k: &str, v: &[u8]| (k.as_bytes().to_vec(), HashSet::from([v.to_vec()]));
    let mut ldap = w.ldap().await;
    ldap.add(
        &dn,
        vec![
            attr("objectClass", b"user"),
            attr("sAMAccountName", sam.as_bytes()),
            attr("unicodePwd", &quoted),
            // NORMAL_ACCOUNT, enabled
            attr("userAccountControl", b"512"),
        ],
    )
    .await
    .expect("add service account")
    .success()
    .unwrap_or_else(|e| panic!("add {dn}: {e}"));
    let (entries, _) = ldap
        .search(&dn, Scope::Base, "(objectClass=user)", vec!["objectSid"])
        .await
        .expect("search service account")
        .success()
        .expect("search service account ok");
    let entry = SearchEntry::construct(entries.into_iter().next().expect("service account entry"));
    let sid = entry
        .bin_attrs
        .get("objectSid")
        .and_then(|v| v.first().cloned())
        .or_else(|| {
            entry
                .attrs
                .get("objectSid")
                .and_then(|v| v.first())
                .map(|s| s.as_bytes().to_vec())
        })
        .expect("objectSid of the service account");
    let _ = ldap.unbind().await;
    ServiceAccount {
        dn,
        password,
        sid: sid_text(&sid),
    }
}

/// Adds allow/deny ACEs to the managed OU's DACL with `samba-tool dsacl set` over LDAP.
fn grant_on_managed_ou(w: &World, aces: &[String]) {
    let sddl = aces.concat();
    let out = Command::new("samba-tool")
        .args(["dsacl", "set", "-H", &w.dc.url])
        .arg(format!("--simple-bind-dn={}", w.dc.bind_dn))
        .arg(format!("--password={}", w.dc.password))
        .arg(format!("--objectdn={}", w.groups_ou))
        .arg(format!("--sddl={sddl}"))
        .arg("--action=allow")
        .output()
        .expect("samba-tool runs (package samba, as lab/dc installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("new descriptor"),
        "samba-tool dsacl set {sddl} on {}: {stdout}\n{}",
        w.groups_ou,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// This world's config with the service account as ad.bind_dn.
fn config_for(w: &World, svc: &ServiceAccount) -> PathBuf {
    let text = std::fs::read_to_string(w.config_path()).expect("read the world's config");
    let admin_line = format!("bind_dn = \"{}\"", w.dc.bind_dn);
    assert!(
        text.contains(&admin_line),
        "config has {admin_line}: {text}"
    );
    let text = text.replace(&admin_line, &format!("bind_dn = \"{}\"", svc.dn));
    let path = w.dir.join("writeback-service-account.toml");
    std::fs::write(&path, text).expect("write the service account's config");
    path
}

/// The outcome of one `writeback preflight --json`.
struct Preflight {
    code: i32,
    checks: Vec<Value>,
    stdout: String,
    stderr: String,
}

impl Preflight {
    fn run(config: &PathBuf, ad_password: &str, graph_secret: &str) -> Preflight {
        let out = Command::new(env!("CARGO_BIN_EXE_writeback"))
            .args(["preflight", "--json", "--config"])
            .arg(config)
            .env("WB_E2E_AD_PASSWORD", ad_password)
            .env("WB_E2E_SECRET", graph_secret)
            .env("WRITEBACK_LOG", "warn")
            .output()
            .expect("writeback runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let checks: Vec<Value> = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("preflight --json is not a JSON array ({e}): {stdout}\n{stderr}")
        });
        Preflight {
            code: out.status.code().unwrap_or(-1),
            checks,
            stdout,
            stderr,
        }
    }

    fn as_service_account(w: &World, svc: &ServiceAccount) -> Preflight {
        Preflight::run(&config_for(w, svc), &svc.password, CLIENT_SECRET)
    }

    fn find(&self, name: &str) -> Option<&Value> {
        self.checks.iter().find(|c| c["check"] == name)
    }

    fn verdict(&self, name: &str) -> &str {
        self.find(name)
            .and_then(|c| c["verdict"].as_str())
            .unwrap_or_else(|| panic!("no check {name} in {}", self))
    }

    fn detail(&self, name: &str) -> &str {
        self.find(name)
            .and_then(|c| c["detail"].as_str())
            .unwrap_or_else(|| panic!("no detail for {name} in {}", self))
    }

    /// Asserts `name` failed, with a `fix` that names `needle`.
    fn assert_failed_with_fix(&self, name: &str, needle: &str) {
        assert_eq!(self.verdict(name), "fail", "{name} in {self}");
        let fix = self
            .find(name)
            .and_then(|c| c["fix"].as_str())
            .unwrap_or_else(|| panic!("{name} has no fix: {self}"));
        assert!(fix.contains(needle), "fix of {name} names {needle}: {fix}");
    }

    fn assert_code(&self, code: i32) {
        assert_eq!(self.code, code, "exit code of preflight: {self}");
    }

    /// The checks that do not depend on the AD rights: bind, schema, OU and Graph.
    fn assert_unrelated_checks_ok(&self) {
        for name in [
            "ad.bind",
            "ad.schema.anchor",
            "ad.ou",
            "graph.token",
            "graph.permission.groups",
            "graph.permission.users",
            "graph.permission.delta",
        ] {
            assert_eq!(self.verdict(name), "ok", "{name} in {self}");
        }
        assert_eq!(self.verdict("ad.tls"), "warn", "plain ldap:// is a warning");
        // The lab's Samba schema has mail and proxyAddresses but not Exchange's mailNickname.
        assert_eq!(self.verdict("ad.schema.mail"), "warn", "{self}");
        assert!(
            self.detail("ad.schema.mail").contains("mailNickname"),
            "{self}"
        );
    }
}

impl std::fmt::Display for Preflight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Groups left in the managed OU, by DN.
async fn groups_in_managed_ou(w: &World) -> Vec<String> {
    let mut ldap = w.ldap().await;
    let (entries, _) = ldap
        .search(
            &w.groups_ou,
            Scope::Subtree,
            "(objectClass=group)",
            vec!["cn"],
        )
        .await
        .expect("search the managed OU")
        .success()
        .expect("search the managed OU ok");
    let _ = ldap.unbind().await;
    entries
        .into_iter()
        .map(|e| SearchEntry::construct(e).dn)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn preflight_passes_with_the_admin_account() {
    let w = World::new("pf-admin").await;
    let r = Preflight::run(&w.config_path(), &w.dc.password, CLIENT_SECRET);
    r.assert_code(0);
    for c in &r.checks {
        assert!(
            c["verdict"] == "ok" || c["verdict"] == "warn",
            "every check ok or warn: {c}"
        );
    }
    for name in RIGHTS {
        assert_eq!(r.verdict(name), "ok", "{name} in {r}");
    }
    r.assert_unrelated_checks_ok();
    assert_eq!(
        groups_in_managed_ou(&w).await,
        Vec::<String>::new(),
        "the probe group is gone"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn least_privilege_account_with_the_needed_rights_passes() {
    let w = World::new("pf-least").await;
    let svc = service_account(&w).await;
    let aces = Aces { sid: &svc.sid };
    grant_on_managed_ou(&w, &aces.all_needed());

    let r = Preflight::as_service_account(&w, &svc);
    r.assert_code(0);
    for name in RIGHTS {
        assert_eq!(r.verdict(name), "ok", "{name} in {r}");
    }
    r.assert_unrelated_checks_ok();
    assert!(
        r.detail("ad.bind").contains(&svc.dn),
        "bound as the service account: {r}"
    );
    assert_eq!(groups_in_managed_ou(&w).await, Vec::<String>::new());

    // The rights come from the grant on the managed OU only: outside it the account is refused.
    let (conn, mut ldap) = LdapConnAsync::new(&w.dc.url).await.expect("connect");
    ldap3::drive!(conn);
    ldap.simple_bind(&svc.dn, &svc.password)
        .await
        .expect("bind")
        .success()
        .expect("the service account binds");
    let outside = format!("CN=wbsvc-outside-{},{}", unique_tag(), w.root_ou);
    let res = ldap
        .add(
            &outside,
            vec![
                ("objectClass", HashSet::from(["group"])),
                ("sAMAccountName", HashSet::from(["wbsvc-outside"])),
            ],
        )
        .await
        .expect("add answered");
    assert_eq!(
        res.rc, 50,
        "insufficientAccessRights outside the OU: {res:?}"
    );
    let _ = ldap.unbind().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn least_privilege_account_without_create_right_fails_the_create_check() {
    let w = World::new("pf-nocreate").await;
    let svc = service_account(&w).await;
    let aces = Aces { sid: &svc.sid };
    grant_on_managed_ou(
        &w,
        &[
            aces.delete_groups(),
            aces.read_group_properties(),
            aces.write_group_properties(),
        ],
    );

    let r = Preflight::as_service_account(&w, &svc);
    r.assert_code(1);
    r.assert_failed_with_fix("ad.rights.create", "Create group objects");
    assert!(
        r.detail("ad.rights.create").contains("50"),
        "the server's code is shown: {r}"
    );
    // Without a probe group there is nothing to modify, rename or delete.
    for name in ["ad.rights.modify", "ad.rights.rename", "ad.rights.delete"] {
        assert!(r.find(name).is_none(), "{name} skipped: {r}");
    }
    r.assert_unrelated_checks_ok();
    assert_eq!(groups_in_managed_ou(&w).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn least_privilege_account_without_delete_right_fails_the_delete_check() {
    let w = World::new("pf-nodelete").await;
    let svc = service_account(&w).await;
    let aces = Aces { sid: &svc.sid };
    grant_on_managed_ou(
        &w,
        &[
            aces.create_groups(),
            aces.read_group_properties(),
            aces.write_group_properties(),
        ],
    );

    let r = Preflight::as_service_account(&w, &svc);
    r.assert_code(1);
    // Samba does not let the creator (owner) delete its own group without Delete Child.
    r.assert_failed_with_fix("ad.rights.delete", "Delete group objects");
    for name in ["ad.rights.create", "ad.rights.modify", "ad.rights.rename"] {
        assert_eq!(r.verdict(name), "ok", "{name} in {r}");
    }
    r.assert_unrelated_checks_ok();

    // The probe stays behind, renamed, and the detail names it so an admin can remove it.
    let left = groups_in_managed_ou(&w).await;
    assert_eq!(left.len(), 1, "the probe group is left behind: {left:?}");
    assert!(left[0].contains("-renamed,"), "{left:?}");
    let detail = r.detail("ad.rights.delete").to_ascii_lowercase();
    assert!(
        detail.contains(&left[0].to_ascii_lowercase()) && detail.contains("left behind"),
        "detail names the probe: {detail}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn least_privilege_account_without_write_property_right_fails_the_modify_check() {
    let w = World::new("pf-nowrite").await;
    let svc = service_account(&w).await;
    let aces = Aces { sid: &svc.sid };
    grant_on_managed_ou(
        &w,
        &[
            aces.create_groups(),
            aces.delete_groups(),
            aces.read_group_properties(),
        ],
    );

    let r = Preflight::as_service_account(&w, &svc);
    r.assert_code(1);
    r.assert_failed_with_fix("ad.rights.modify", "Write all properties");
    assert!(
        r.detail("ad.rights.modify")
            .contains("has no write property access"),
        "Samba's words: {r}"
    );
    // Create needs only Create Child (the attributes of an add are not checked for Write
    // Property); rename needs Write Property on name, which is missing too.
    assert_eq!(r.verdict("ad.rights.create"), "ok", "{r}");
    r.assert_failed_with_fix("ad.rights.rename", "Write name");
    assert_eq!(r.verdict("ad.rights.delete"), "ok", "{r}");
    r.assert_unrelated_checks_ok();
    assert_eq!(groups_in_managed_ou(&w).await, Vec::<String>::new());
}

/// Samba 4.17 checks Write Property on both `name` and the RDN attribute `cn` for a rename
/// within the OU (as Windows does); each test denies one of them and keeps everything else.
async fn rename_without_write_on(label: &str, attribute: &str, samba_words: &str) {
    let w = World::new(label).await;
    let svc = service_account(&w).await;
    let aces = Aces { sid: &svc.sid };
    let mut granted = aces.all_needed();
    granted.push(aces.deny_write(attribute));
    grant_on_managed_ou(&w, &granted);

    let r = Preflight::as_service_account(&w, &svc);
    r.assert_code(1);
    r.assert_failed_with_fix("ad.rights.rename", "Write name");
    assert!(
        r.detail("ad.rights.rename").contains(samba_words),
        "Samba's words ({samba_words}): {r}"
    );
    for name in ["ad.rights.create", "ad.rights.modify", "ad.rights.delete"] {
        assert_eq!(r.verdict(name), "ok", "{name} in {r}");
    }
    r.assert_unrelated_checks_ok();
    // The delete after a refused rename uses the original name.
    assert_eq!(groups_in_managed_ou(&w).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn least_privilege_account_without_write_name_right_fails_the_rename_check() {
    rename_without_write_on("pf-noname", NAME_ATTR, "has no wp on name").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn least_privilege_account_without_write_cn_right_fails_the_rename_check() {
    rename_without_write_on("pf-nocn", CN_ATTR, "has no wp on cn").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_ad_password_exits_3_with_a_failed_bind() {
    let w = World::new("pf-adpass").await;
    let r = Preflight::run(&w.config_path(), "wrong-ad-password", CLIENT_SECRET);
    r.assert_code(3);
    r.assert_failed_with_fix("ad.bind", "ad.password");
    assert!(
        r.detail("ad.bind").contains("49"),
        "the LDAP result code is shown: {r}"
    );
    for name in RIGHTS {
        assert!(r.find(name).is_none(), "{name} needs a bind: {r}");
    }
    // Graph is still checked.
    assert_eq!(r.verdict("graph.token"), "ok", "{r}");
    assert_eq!(r.verdict("graph.permission.groups"), "ok", "{r}");
    assert!(!r.stdout.contains("wrong-ad-password") && !r.stderr.contains("wrong-ad-password"));
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_graph_secret_exits_3_with_a_failed_token() {
    let w = World::new("pf-secret").await;
    let r = Preflight::run(&w.config_path(), &w.dc.password, "wrong-graph-secret");
    r.assert_code(3);
    r.assert_failed_with_fix("graph.token", "secret");
    assert!(
        r.detail("graph.token").contains("invalid_client"),
        "Entra's error code is shown: {r}"
    );
    for name in ["graph.permission.groups", "graph.permission.delta"] {
        assert!(r.find(name).is_none(), "{name} needs a token: {r}");
    }
    // AD is still checked, rights included, and the probe is cleaned up.
    for name in RIGHTS {
        assert_eq!(r.verdict(name), "ok", "{name} in {r}");
    }
    assert_eq!(groups_in_managed_ou(&w).await, Vec::<String>::new());
    assert!(!r.stdout.contains("wrong-graph-secret") && !r.stderr.contains("wrong-graph-secret"));
}
