//! End-to-end: drift is a security event — every change made by hand in AD to a written
//! group is logged at WARN (group, attribute, values, fix), summarised by `sync`, counted by
//! `status` and listed by `writeback drift` from the run history, without the secrets.

mod support;
use ldap3::Mod;
use serde_json::Value;
use std::collections::{BTreeSet, HashSet};
use std::process::Command;
use support::*;

/// The WARN line of stderr that mentions every one of `needles`.
fn warn_line<'a>(stderr: &'a str, needles: &[&str]) -> &'a str {
    stderr
        .lines()
        .filter(|l| l.contains("WARN"))
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .unwrap_or_else(|| panic!("no WARN line with {needles:?} in:\n{stderr}"))
}

/// The AD group written for cloud group `id`.
async fn ad(w: &World, id: &str) -> AdView {
    w.ad_group_of(id).await.expect("written")
}

/// `writeback ARGS` with no secrets in the environment.
fn without_secrets(w: &World, args: &[&str]) -> SyncResult {
    let out = Command::new(env!("CARGO_BIN_EXE_writeback"))
        .args(args)
        .arg("--config")
        .arg(w.config_path())
        .env_remove("WB_E2E_SECRET")
        .env_remove("WB_E2E_AD_PASSWORD")
        .env("WRITEBACK_LOG", "warn")
        .output()
        .expect("writeback runs");
    SyncResult {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hand_made_changes_are_warned_summarised_counted_and_listed() {
    let w = World::new("drift").await;
    let (u1, _) = w.synced_user("dr-a", "Drift A").await;
    let (_, u2) = w.synced_user("dr-b", "Drift B").await;
    let members = w.security_group("SG-Drift-Members", Some(true), None).await;
    w.add_member(&members, &u1).await;
    let renamed = w.security_group("SG-Drift-Renamed", Some(true), None).await;
    let moved = w.security_group("SG-Drift-Moved", Some(true), None).await;
    let retyped = w.security_group("SG-Drift-Retyped", Some(true), None).await;
    let anchor = w.security_group("SG-Drift-Anchor", Some(true), None).await;
    let deleted = w.security_group("SG-Drift-Deleted", Some(true), None).await;
    let quiet = w.security_group("SG-Drift-Quiet", Some(true), None).await;
    w.sync_ok();
    let r = w.writeback(&["sync"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains("DRIFT"), "no drift yet: {}", r.stdout);

    // An administrator's afternoon in ADUC.
    let (m, rn, mv, rt, an, de) = (
        ad(&w, &members).await,
        ad(&w, &renamed).await,
        ad(&w, &moved).await,
        ad(&w, &retyped).await,
        ad(&w, &anchor).await,
        ad(&w, &deleted).await,
    );
    let mut ldap = w.ldap().await;
    ldap.modify(
        &m.dn,
        vec![Mod::Add("member", HashSet::from([u2.dn.as_str()]))],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    ldap.modifydn(&rn.dn, "CN=Renamed-By-Hand", true, None)
        .await
        .unwrap()
        .success()
        .unwrap();
    let mv_rdn = mv.dn.split(',').next().unwrap().to_string();
    ldap.modifydn(&mv.dn, &mv_rdn, true, Some(&w.people_ou))
        .await
        .unwrap()
        .success()
        .unwrap();
    ldap.modify(
        &rt.dn,
        vec![Mod::Replace("groupType", HashSet::from(["8"]))],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    ldap.modify(
        &an.dn,
        vec![Mod::Replace("adminDescription", HashSet::<&str>::new())],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    ldap.delete(&de.dn).await.unwrap().success().unwrap();
    let _ = ldap.unbind().await;

    let r = w.writeback(&["sync"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let e = &r.stderr;
    warn_line(
        e,
        &[
            "SG-Drift-Members",
            "member-added",
            "attribute=member",
            &u2.dn,
            "fix=removed",
        ],
    );
    warn_line(
        e,
        &[
            "SG-Drift-Renamed",
            "renamed",
            "attribute=cn",
            "CN=Renamed-By-Hand",
            "renamed back",
        ],
    );
    warn_line(
        e,
        &[
            "SG-Drift-Moved",
            "moved",
            &w.people_ou,
            &w.groups_ou,
            "moved back",
        ],
    );
    warn_line(
        e,
        &[
            "SG-Drift-Retyped",
            "retyped",
            "attribute=groupType",
            "before=8",
            "after=-2147483640",
            "put back",
        ],
    );
    warn_line(
        e,
        &[
            "SG-Drift-Anchor",
            "anchor-cleared",
            "attribute=adminDescription",
            &format!("Group_{anchor}"),
            "put back",
        ],
    );
    warn_line(e, &["SG-Drift-Deleted", "kind=deleted", "created again"]);
    assert!(
        !e.lines().any(|l| l.contains("SG-Drift-Quiet")),
        "an untouched group has no drift: {e}"
    );
    let summary = r
        .stdout
        .lines()
        .find(|l| l.contains("DRIFT:"))
        .unwrap_or_else(|| panic!("a drift summary line: {}", r.stdout));
    assert!(
        summary.contains("6 change(s)") && summary.contains("6 group(s)"),
        "{summary}"
    );
    for name in [
        "SG-Drift-Members",
        "SG-Drift-Renamed",
        "SG-Drift-Moved",
        "SG-Drift-Retyped",
        "SG-Drift-Anchor",
        "SG-Drift-Deleted",
    ] {
        assert!(
            r.stdout.contains(name),
            "{name} in the summary: {}",
            r.stdout
        );
    }
    // ... and all of it is put back.
    assert_eq!(ad(&w, &members).await.members.len(), 1);
    assert!(ad(&w, &renamed)
        .await
        .dn
        .starts_with(&format!("CN=Group_{renamed}")));
    assert!(ad(&w, &moved).await.dn.ends_with(&w.groups_ou));
    assert_eq!(ad(&w, &retyped).await.group_type, -2147483640);
    assert!(w.ad_group_of(&deleted).await.is_some());

    // status: a DRIFT column, counts of the last 24 h — without the secrets.
    let s = without_secrets(&w, &["status"]);
    assert_eq!(s.code, 0, "{}", s.stderr);
    assert!(s.stdout.contains("DRIFT"), "{}", s.stdout);
    let row = |name: &str| {
        s.stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} row: {}", s.stdout))
            .split_whitespace()
            .nth(3)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(row("SG-Drift-Members"), "1", "{}", s.stdout);
    assert_eq!(row("SG-Drift-Quiet"), "0", "{}", s.stdout);
    let sj = without_secrets(&w, &["status", "--json"]).json();
    assert_eq!(sj["drift24h"]["total"], 6, "{sj}");
    assert_eq!(sj["drift24h"]["groups"][&members], 1, "{sj}");

    // writeback drift --json: time, run, group, kind, detail.
    let d = without_secrets(&w, &["drift", "--json"]);
    assert_eq!(d.code, 0, "{}", d.stderr);
    let list = d.json();
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 6, "{list:?}");
    let kinds: BTreeSet<&str> = list.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "anchor-cleared",
            "deleted",
            "member-added",
            "moved",
            "renamed",
            "retyped"
        ])
    );
    let first_run = list[0]["run"].as_i64().expect("run");
    for e in list {
        for k in ["time", "run", "group", "kind", "detail"] {
            assert!(!e[k].is_null(), "{k} in {e}");
        }
    }
    let member_event = list
        .iter()
        .find(|e| e["kind"] == "member-added")
        .expect("member-added");
    assert_eq!(member_event["group"], Value::String(members.clone()));
    assert_eq!(member_event["before"][0], Value::String(u2.dn.clone()));

    // The next cycle finds nothing more; a later hand change is a new event.
    let r = w.writeback(&["sync"]);
    assert!(!r.stdout.contains("DRIFT"), "{}", r.stdout);
    // --since filters by time: let the first events age past a short window.
    std::thread::sleep(std::time::Duration::from_secs(4));
    let mut ldap = w.ldap().await;
    ldap.modify(
        &ad(&w, &quiet).await.dn,
        vec![Mod::Add("member", HashSet::from([u2.dn.as_str()]))],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    let _ = ldap.unbind().await;
    let r = w.writeback(&["sync"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("DRIFT: 1 change(s)"), "{}", r.stdout);

    let recent = without_secrets(&w, &["drift", "--since", "3s", "--json"]).json();
    let recent = recent.as_array().expect("array");
    assert_eq!(recent.len(), 1, "{recent:?}");
    assert_eq!(recent[0]["name"], "SG-Drift-Quiet");
    assert_ne!(recent[0]["run"].as_i64(), Some(first_run));
    let hour = without_secrets(&w, &["drift", "--since", "1h", "--json"]).json();
    assert_eq!(hour.as_array().map(Vec::len), Some(7));
    let text = without_secrets(&w, &["drift", "--since", "1h"]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(
        text.stdout.contains("SG-Drift-Quiet") && text.stdout.contains("member-added"),
        "{}",
        text.stdout
    );
    let bad = without_secrets(&w, &["drift", "--since", "lately"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("--since"), "{}", bad.stderr);
}

/// What is no hand change is no drift: a rule that brings a nested group into scope (its
/// AD group is created and becomes a member of its parent) and a member's account that
/// appears in AD change groups nobody touched in AD — no drift, no WARN.
#[tokio::test(flavor = "multi_thread")]
async fn a_rule_bringing_a_nested_group_into_scope_is_no_drift() {
    let mut w = World::new("drift-rule").await;
    let parent = w.security_group("SG-DR-Parent", Some(true), None).await;
    let child = w.security_group("SG-DR-Nested-Child", None, None).await;
    w.add_member(&parent, &child).await;
    w.sync_ok();
    assert!(ad(&w, &parent).await.members.is_empty());
    assert!(w.ad_group_of(&child).await.is_none(), "not in scope yet");

    w.rules_toml =
        "[[writeback.rule]]\nmatch = { kind = \"security\", name_prefix = \"SG-DR-Nested-\" }\nenable = true"
            .into();
    w.write_config();
    let out = w.sync_ok();
    assert_eq!(out["applied"]["creates"], 1, "{out}");
    assert_eq!(out["applied"]["member_adds"], 1, "{out}");
    assert_eq!(out["drift"], serde_json::json!([]), "{out}");
    let child_dn = ad(&w, &child).await.dn.to_ascii_lowercase();
    assert_eq!(ad(&w, &parent).await.member_set(), vec![child_dn]);
    let r = w.writeback(&["sync"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains("DRIFT"), "{}", r.stdout);
}
