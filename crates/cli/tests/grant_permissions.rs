//! End-to-end: `writeback ad grant-permissions` against the lab DC. A fresh, unprivileged
//! account cannot write groups in the managed OU; after the grant (run with the admin's
//! config) a whole cycle bound as that account by its UPN works: creates, renames, member
//! changes, deletes. The grant is idempotent, `--dry-run` changes nothing, and OUs other than
//! the named ones are never touched.

mod support;
use ldap3::controls::RawControl;
use ldap3::{Scope, SearchEntry};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;
use wb_ad::acl::{Ace, SecurityDescriptor};
use wb_ad::values::first_binary;

const GROUP_CLASS: &str = "bf967a9c-0de6-11d0-a285-00aa003049e2";
const REALM: &str = "LAB.EXAMPLE.TEST";

/// An enabled AD user with a password and a UPN, holding no rights of its own.
struct Account {
    dn: String,
    upn: String,
    sam: String,
    password: String,
    sid: String,
}

fn unique_tag() -> String {
    uuid_like()[..8].to_string()
}

fn uuid_like() -> String {
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

async fn account(w: &World, upn: Option<&str>) -> Account {
    let tag = unique_tag();
    let sam = format!("wbgr{tag}");
    let dn = format!("CN={sam},{}", w.people_ou);
    let upn = upn
        .map(str::to_string)
        .unwrap_or_else(|| format!("{sam}@{}", REALM.to_ascii_lowercase()));
    let password = format!("Gr-{tag}-Pw1!");
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
            attr("userPrincipalName", upn.as_bytes()),
            attr("unicodePwd", &quoted),
            attr("userAccountControl", b"512"),
        ],
    )
    .await
    .expect("add account")
    .success()
    .unwrap_or_else(|e| panic!("add {dn}: {e}"));
    let (entries, _) = ldap
        .search(&dn, Scope::Base, "(objectClass=user)", vec!["objectSid"])
        .await
        .expect("search account")
        .success()
        .expect("search account ok");
    let entry = SearchEntry::construct(entries.into_iter().next().expect("account entry"));
    let sid = first_binary(&entry, "objectSid").expect("objectSid");
    let _ = ldap.unbind().await;
    Account {
        dn,
        upn,
        sam,
        password,
        sid: sid_text(&sid),
    }
}

/// This world's config bound as `bind` (e.g. a UPN) instead of the admin.
fn config_bound_as(w: &World, bind: &str) -> PathBuf {
    let text = std::fs::read_to_string(w.config_path()).expect("read the world's config");
    let admin_line = format!("bind_dn = \"{}\"", w.dc.bind_dn);
    assert!(text.contains(&admin_line), "{text}");
    let text = text.replace(&admin_line, &format!("bind = \"{bind}\""));
    let path = w.dir.join(format!("writeback-{}.toml", unique_tag()));
    std::fs::write(&path, text).expect("write config");
    path
}

/// `writeback ARGS --config CONFIG` with `password` as the AD password.
fn run(config: &Path, password: &str, args: &[&str]) -> SyncResult {
    let out = Command::new(env!("CARGO_BIN_EXE_writeback"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("WB_E2E_AD_PASSWORD", password)
        .env("WB_E2E_SECRET", CLIENT_SECRET)
        .env("WRITEBACK_LOG", "warn")
        .output()
        .expect("writeback runs");
    SyncResult {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn expect(r: &SyncResult, code: i32, what: &str) {
    assert_eq!(
        r.code, code,
        "exit code of {what}\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
}

/// `grant-permissions` with the admin's config.
fn grant(w: &World, extra: &[&str]) -> SyncResult {
    let mut args = vec!["ad", "grant-permissions"];
    args.extend_from_slice(extra);
    w.writeback(&args)
}

/// The whole security descriptor of `dn` (admin read, all parts) and its uSNChanged.
async fn descriptor(w: &World, dn: &str) -> (Vec<u8>, String) {
    let mut ldap = w.ldap().await;
    let control = RawControl {
        ctype: "1.2.840.113556.1.4.801".into(),
        crit: true,
        val: Some(vec![0x30, 0x03, 0x02, 0x01, 0x0f]),
    };
    let (entries, _) = ldap
        .with_controls(control)
        .search(
            dn,
            Scope::Base,
            "(objectClass=*)",
            vec!["nTSecurityDescriptor", "uSNChanged"],
        )
        .await
        .expect("search")
        .success()
        .expect("search ok");
    let _ = ldap.unbind().await;
    let e = SearchEntry::construct(entries.into_iter().next().expect("entry"));
    let sd = first_binary(&e, "nTSecurityDescriptor").expect("nTSecurityDescriptor");
    let usn = e.attrs["uSNChanged"][0].clone();
    (sd, usn)
}

/// The explicit ACEs of `dn`'s DACL that name `sid`, in SDDL.
async fn aces_of(w: &World, dn: &str, sid: &str) -> Vec<String> {
    let (bytes, _) = descriptor(w, dn).await;
    let sd = SecurityDescriptor::parse(&bytes).expect("the DC's descriptor parses");
    sd.dacl
        .expect("a DACL")
        .aces
        .iter()
        .filter_map(|a| match a {
            Ace::Access(a) if a.sid.to_string() == sid => Some(a.sddl()),
            _ => None,
        })
        .collect()
}

fn expected_aces(sid: &str) -> Vec<String> {
    vec![
        format!("(OA;;CCDC;{GROUP_CLASS};;{sid})"),
        format!("(OA;CIIO;RPWP;;{GROUP_CLASS};{sid})"),
    ]
}

/// Adds ACEs to `dn` with samba-tool (independent of writeback's code).
fn dsacl_set(w: &World, dn: &str, sddl: &str) {
    let out = Command::new("samba-tool")
        .args(["dsacl", "set", "-H", &w.dc.url])
        .arg(format!("--simple-bind-dn={}", w.dc.bind_dn))
        .arg(format!("--password={}", w.dc.password))
        .arg(format!("--objectdn={dn}"))
        .arg(format!("--sddl={sddl}"))
        .arg("--action=allow")
        .output()
        .expect("samba-tool runs");
    assert!(
        out.status.success(),
        "samba-tool dsacl set {sddl} on {dn}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn members_of(g: &AdView) -> Vec<String> {
    g.member_set()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_least_privilege_account_bound_by_upn_runs_every_operation_after_the_grant() {
    let mut w = World::new("gr-cycle").await;
    w.writeback_toml = "naming = \"display-name\"".into();
    w.write_config();
    let svc = account(&w, None).await;
    let bind_upn = format!("{}@{REALM}", svc.sam);
    let svc_config = config_bound_as(&w, &bind_upn);

    let (a, a_ad) = w.synced_user("gr-a", "Grant A").await;
    let (b, b_ad) = w.synced_user("gr-b", "Grant B").await;
    let (c, c_ad) = w.synced_user("gr-c", "Grant C").await;
    let g = w.security_group("SG-Grant", Some(true), None).await;
    w.add_member(&g, &a).await;
    w.add_member(&g, &b).await;

    // Before the grant: the account binds (by UPN) and reads, but the create is refused.
    let before = run(&svc_config, &svc.password, &["sync", "--json"]);
    expect(&before, 1, "sync before the grant");
    let errors = before.json()["errors"].clone();
    assert!(
        errors.as_array().is_some_and(|e| e
            .iter()
            .any(|e| e["message"].as_str().unwrap_or("").contains("rc 50"))),
        "insufficientAccessRights (50) on the create: {errors}"
    );
    assert!(w.ad_group_of(&g).await.is_none(), "nothing was created");
    assert!(aces_of(&w, &w.groups_ou, &svc.sid).await.is_empty());

    // The grant, with the admin's config, naming the account by its UPN.
    let r = grant(&w, &["--account", &svc.upn, "--json"]);
    expect(&r, 0, "grant-permissions");
    let report = r.json();
    assert_eq!(report["account"]["dn"], svc.dn.as_str(), "{report}");
    assert_eq!(report["account"]["sid"], svc.sid.as_str());
    assert_eq!(report["ous"][0]["ou"], w.groups_ou.as_str());
    assert_eq!(report["ous"][0]["result"], "added", "{report}");
    assert_eq!(report["ous"][0]["aces"], json!(expected_aces(&svc.sid)));
    assert_eq!(
        aces_of(&w, &w.groups_ou, &svc.sid).await,
        expected_aces(&svc.sid)
    );

    // Now the whole cycle works bound as the account: create with members …
    let out = run(&svc_config, &svc.password, &["sync", "--json"]);
    expect(&out, 0, "sync after the grant");
    let created = w
        .ad_group_of(&g)
        .await
        .expect("created by the service account");
    assert!(created.dn.starts_with("CN=SG-Grant_"), "{}", created.dn);
    assert_eq!(members_of(&created), lower_sorted(&[&a_ad.dn, &b_ad.dn]));

    // … a rename (modifyDN: Write name and cn) and member changes …
    w.patch_group(&g, json!({"displayName": "SG-Grant-Renamed"}))
        .await;
    w.remove_member(&g, &a).await;
    w.add_member(&g, &c).await;
    let out = run(&svc_config, &svc.password, &["sync", "--json"]);
    expect(&out, 0, "sync with a rename and member changes");
    let renamed = w.ad_group_of(&g).await.expect("still there");
    assert_eq!(renamed.guid, created.guid, "renamed in place");
    assert!(
        renamed.dn.starts_with("CN=SG-Grant-Renamed_"),
        "{}",
        renamed.dn
    );
    assert_eq!(renamed.display_name.as_deref(), Some("SG-Grant-Renamed"));
    assert_eq!(members_of(&renamed), lower_sorted(&[&b_ad.dn, &c_ad.dn]));

    // … and a delete (the cloud group deleted permanently).
    let (st, v) = w.graph("DELETE", &format!("/v1.0/groups/{g}"), None).await;
    assert_eq!(st, 204, "{v}");
    let (st, v) = w
        .graph("DELETE", &format!("/v1.0/directory/deletedItems/{g}"), None)
        .await;
    assert_eq!(st, 204, "{v}");
    let out = run(&svc_config, &svc.password, &["sync", "--json"]);
    expect(&out, 0, "sync with a delete");
    assert_eq!(out.json()["applied"]["deletes"], 1, "{}", out.stdout);
    assert!(w.ad_group_of(&g).await.is_none(), "deleted by the account");

    // A second grant adds nothing: the same two ACEs, the OU not even written.
    let (_, usn) = descriptor(&w, &w.groups_ou).await;
    let again = grant(&w, &["--account", &svc.upn]);
    expect(&again, 0, "second grant-permissions");
    assert!(again.stdout.contains("nothing to add"), "{}", again.stdout);
    assert_eq!(
        aces_of(&w, &w.groups_ou, &svc.sid).await,
        expected_aces(&svc.sid),
        "no duplicate ACE"
    );
    assert_eq!(descriptor(&w, &w.groups_ou).await.1, usn, "OU not written");
    // The same account named by its DN or its sAMAccountName: still nothing to add.
    for name in [svc.dn.as_str(), svc.sam.as_str()] {
        let r = grant(&w, &["--account", name, "--json"]);
        expect(&r, 0, name);
        assert_eq!(r.json()["ous"][0]["result"], "nothing-to-add", "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_prints_the_aces_in_sddl_and_changes_nothing() {
    let w = World::new("gr-dry").await;
    let svc = account(&w, None).await;
    let (sd_before, usn_before) = descriptor(&w, &w.groups_ou).await;

    let r = grant(&w, &["--account", &svc.upn, "--dry-run"]);
    expect(&r, 0, "grant-permissions --dry-run");
    for ace in expected_aces(&svc.sid) {
        assert!(r.stdout.contains(&ace), "{ace} printed: {}", r.stdout);
    }
    assert!(r.stdout.contains("would add 2 ACEs"), "{}", r.stdout);
    assert!(
        r.stdout.contains("dry run: nothing is changed"),
        "{}",
        r.stdout
    );
    let (sd_after, usn_after) = descriptor(&w, &w.groups_ou).await;
    assert_eq!(usn_after, usn_before, "uSNChanged of the OU unchanged");
    assert_eq!(sd_after, sd_before, "the descriptor unchanged");

    let r = grant(&w, &["--account", &svc.upn, "--dry-run", "--json"]);
    expect(&r, 0, "grant-permissions --dry-run --json");
    let v: Value = r.json();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["ous"][0]["result"], "would-add");
    assert_eq!(v["ous"][0]["aces"], json!(expected_aces(&svc.sid)));
    assert_eq!(descriptor(&w, &w.groups_ou).await.1, usn_before);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_is_every_managed_ou_and_nothing_outside_the_named_ous_changes() {
    let mut w = World::new("gr-scope").await;
    let rule_ou = format!("OU=Rules,{}", w.root_ou);
    let outside = format!("OU=Elsewhere,{}", w.root_ou);
    w.dc.create_ou(&rule_ou).await;
    w.dc.create_ou(&outside).await;
    w.rules_toml = format!(
        "[[writeback.rule]]\nmatch = {{ name_prefix = \"SG-\" }}\nenable = true\nou = \"{rule_ou}\"\n"
    );
    w.write_config();
    let svc = account(&w, None).await;
    let untouched = [outside.clone(), w.root_ou.clone(), w.people_ou.clone()];
    let mut stamps = Vec::new();
    for dn in &untouched {
        stamps.push(descriptor(&w, dn).await);
    }

    // One named OU: only it gains the ACEs.
    let r = grant(&w, &["--account", &svc.dn, "--ou", &rule_ou]);
    expect(&r, 0, "grant-permissions --ou");
    assert_eq!(
        aces_of(&w, &rule_ou, &svc.sid).await,
        expected_aces(&svc.sid)
    );
    assert!(aces_of(&w, &w.groups_ou, &svc.sid).await.is_empty());

    // The default: every managed OU (ad.ou and the rule's), the rule's already done.
    let r = grant(&w, &["--account", &svc.dn, "--json"]);
    expect(&r, 0, "grant-permissions");
    let v = r.json();
    let results: Vec<(String, String)> = v["ous"]
        .as_array()
        .expect("ous")
        .iter()
        .map(|o| {
            (
                o["ou"].as_str().unwrap_or("").to_string(),
                o["result"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        results,
        vec![
            (w.groups_ou.clone(), "added".to_string()),
            (rule_ou.clone(), "nothing-to-add".to_string()),
        ]
    );
    assert_eq!(
        aces_of(&w, &w.groups_ou, &svc.sid).await,
        expected_aces(&svc.sid)
    );

    for (dn, before) in untouched.iter().zip(&stamps) {
        assert_eq!(&descriptor(&w, dn).await, before, "{dn} unchanged");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_account_or_a_missing_ou_stops_with_exit_2_naming_it() {
    let w = World::new("gr-unknown").await;
    let (_, usn) = descriptor(&w, &w.groups_ou).await;
    for name in [
        "nobody-here@lab.example.test",
        "nobody-here",
        "LAB\\nobody-here",
        "CN=nobody-here,CN=Users,DC=lab,DC=example,DC=test",
    ] {
        let r = grant(&w, &["--account", name]);
        expect(&r, 2, name);
        assert!(
            r.stderr.contains(&format!("{name:?}")) && r.stderr.contains("no account"),
            "the message names the account: {}",
            r.stderr
        );
    }
    // The implicit UPN (sAMAccountName@domain) of an account whose UPN is another one.
    // (Two accounts one UPN would name — the ambiguous case — cannot be made: Samba, like
    // AD, refuses a duplicate UPN and a UPN that is another account's implicit one.)
    let one = account(&w, Some(&format!("other{}@lab.example.test", unique_tag()))).await;
    let r = grant(
        &w,
        &[
            "--account",
            &format!("{}@LAB.EXAMPLE.TEST", one.sam),
            "--dry-run",
            "--json",
        ],
    );
    expect(&r, 0, "implicit UPN");
    assert_eq!(r.json()["account"]["dn"], one.dn.as_str());
    // A named OU that does not exist: nothing is written anywhere.
    let missing = format!("OU=Missing,{}", w.root_ou);
    let r = grant(
        &w,
        &["--account", &one.dn, "--ou", &w.groups_ou, "--ou", &missing],
    );
    expect(&r, 2, "missing OU");
    assert!(r.stderr.contains(&missing), "{}", r.stderr);
    assert_eq!(descriptor(&w, &w.groups_ou).await.1, usn, "nothing written");
    // Not a DN under ad.base_dn: a usage error.
    let r = grant(&w, &["--account", &one.dn, "--ou", "OU=X,DC=other,DC=test"]);
    expect(&r, 2, "OU outside the domain");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_not_allowed_to_change_permissions_is_refused_per_ou() {
    let w = World::new("gr-refused").await;
    let svc = account(&w, None).await;
    // A delegate allowed to change the permissions of the managed OU only (WRITE_DAC).
    let delegate = account(&w, None).await;
    let other = format!("OU=Other,{}", w.root_ou);
    w.dc.create_ou(&other).await;
    dsacl_set(&w, &w.groups_ou, &format!("(A;;RCWD;;;{})", delegate.sid));
    let delegate_config = config_bound_as(&w, &delegate.upn);
    let (_, other_usn) = descriptor(&w, &other).await;

    let r = run(
        &delegate_config,
        &delegate.password,
        &[
            "ad",
            "grant-permissions",
            "--account",
            &svc.upn,
            "--ou",
            &w.groups_ou,
            "--ou",
            &other,
            "--json",
        ],
    );
    expect(&r, 1, "grant with one OU refused");
    let v = r.json();
    assert_eq!(v["ous"][0]["result"], "added", "{v}");
    assert_eq!(v["ous"][1]["result"], "failed", "{v}");
    assert!(
        v["ous"][1]["error"]
            .as_str()
            .unwrap_or("")
            .contains("rc 50"),
        "the DC's refusal is shown: {v}"
    );
    assert_eq!(
        aces_of(&w, &w.groups_ou, &svc.sid).await,
        expected_aces(&svc.sid)
    );
    assert_eq!(descriptor(&w, &other).await.1, other_usn);

    // The service account itself may not change permissions: every OU refused → exit 3.
    let svc_config = config_bound_as(&w, &svc.upn);
    let r = run(
        &svc_config,
        &svc.password,
        &[
            "ad",
            "grant-permissions",
            "--account",
            &delegate.upn,
            "--ou",
            &other,
        ],
    );
    expect(&r, 3, "grant by an account without WRITE_DAC");
    assert!(
        r.stdout.contains("FAILED") && r.stdout.contains("rc 50"),
        "{}",
        r.stdout
    );
    // A wrong password: refused at the bind → exit 3.
    let r = run(
        &svc_config,
        "wrong-password",
        &["ad", "grant-permissions", "--account", &svc.upn],
    );
    expect(&r, 3, "bind refused");
    assert!(!r.stderr.contains("wrong-password"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ad_commands_need_no_graph_credential() {
    let w = World::new("gr-nograph").await;
    let svc = account(&w, None).await;
    let out = Command::new(env!("CARGO_BIN_EXE_writeback"))
        .args([
            "ad",
            "grant-permissions",
            "--dry-run",
            "--account",
            &svc.sam,
            "--config",
        ])
        .arg(w.config_path())
        .env("WB_E2E_AD_PASSWORD", &w.dc.password)
        .env_remove("WB_E2E_SECRET")
        .output()
        .expect("writeback runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
