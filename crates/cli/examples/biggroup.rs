//! Benchmark: one security group at the 250,000-member limit (BIG_MEMBERS to resize).
//! Measures its first write, then a cycle after one member is added in the cloud and one
//! after one is removed: each must be one modify of one value, in ≤ 2 s (asserted).
//! Run through `scripts/bench biggroup` (starts the lab DC, builds the release binaries).
//!
//! Environment:
//! - `BIG_MEMBERS` — the group's size (default 250,000);
//! - `WRITEBACK_LAB_ENV_FILE` — the DC to use, by the env file `lab/dc … start` wrote (e.g.
//!   `lab/run/dc-fault.env`); default the lab's shared DC;
//! - `BIG_USERS_OU` — an OU DN whose users are reused across runs (created there when
//!   fewer than needed): creating 250,000 AD users takes far longer than the benchmark
//!   (set-up, not measured); default a fresh OU per run.

#[path = "../tests/support/mod.rs"]
mod support;

use ldap3::{Scope, SearchEntry};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use support::*;

/// SPEC's bound for a cycle that adds or removes one member of the big group.
const CYCLE_BOUND: Duration = Duration::from_secs(2);
/// Values per `member;range=` window (Windows' MaxValRange default).
const RANGE_WINDOW: usize = 1500;

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BIG_MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(250_000);
    let dc = LabDc::from_env_or_ensure();
    println!("DC: {}", dc.url);
    let t = Instant::now();
    let users = match std::env::var("BIG_USERS_OU") {
        Ok(ou) if !ou.is_empty() => {
            let mut pool = dc.user_pool(&ou, "bg", n + 1).await;
            pool.truncate(n + 1);
            pool
        }
        _ => {
            let ou = dc.fresh_ou("big-users").await;
            dc.create_users_in(&ou, "bg", n + 1).await
        }
    };
    assert_eq!(users.len(), n + 1, "users for the group");
    println!(
        "set-up: {} AD users ready in {:.1}s (not measured)",
        users.len(),
        t.elapsed().as_secs_f64()
    );
    let uid = |i: usize| format!("00000000-0000-4000-8000-{i:012}");
    let gid = "00000000-0000-4000-9000-000000000001";
    let tenant = json!({
        "users": users.iter().enumerate().map(|(i, u)| json!({
            "id": uid(i), "displayName": u.sam, "userPrincipalName": format!("{}@lab.example.test", u.sam),
            "accountEnabled": true, "onPremisesSyncEnabled": true, "onPremisesSecurityIdentifier": u.sid,
        })).collect::<Vec<_>>(),
        "groups": [json!({
            "id": gid, "displayName": "SG-Big", "groupTypes": [],
            "mailEnabled": false, "mailNickname": "sgbig", "securityEnabled": true,
            "writebackConfiguration": {"isEnabled": true, "onPremisesGroupType": "universalSecurityGroup"},
            "members": (0..n).map(uid).collect::<Vec<_>>(), "owners": [],
        })],
    });
    let dir = std::env::temp_dir().join(format!("wb-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let tenant_file = dir.join("tenant.json");
    std::fs::write(&tenant_file, serde_json::to_vec(&tenant).expect("json")).expect("write");
    let sim = Sim::start_with(&["--tenant", tenant_file.to_str().expect("utf-8")]);
    let w = World::build(dc, "big", sim, dir).await;
    let key = |dn: &str| dn.to_ascii_lowercase();

    let t = Instant::now();
    let first = w.sync_ok();
    println!(
        "first write of a {n}-member group: {:.1}s, {} LDAP writes, {} member values",
        t.elapsed().as_secs_f64(),
        first["ldapWrites"],
        first["applied"]["member_adds"]
    );
    let members = members_in_ad(&w, gid).await;
    println!(
        "members in AD (ranged reads of {RANGE_WINDOW}): {}",
        members.len()
    );
    assert_eq!(members.len(), n, "the group's members in AD after its first write");
    assert!(users[..n].iter().all(|u| members.contains(&key(&u.dn))));

    let t = Instant::now();
    let quiet = w.sync_ok();
    println!(
        "next cycle (nothing changed): {:.2}s, {} LDAP writes",
        t.elapsed().as_secs_f64(),
        quiet["ldapWrites"]
    );
    assert_eq!(quiet["ldapWrites"], 0, "a quiet cycle writes nothing");

    w.add_member(gid, &uid(n)).await;
    let t = Instant::now();
    let add = w.sync_ok();
    let took = t.elapsed();
    println!(
        "one member added in the cloud: {:.2}s, {} LDAP writes, {} member adds, {} removals",
        took.as_secs_f64(),
        add["ldapWrites"],
        add["applied"]["member_adds"],
        add["applied"]["member_removes"]
    );
    let members = members_in_ad(&w, gid).await;
    assert_one_value(&add, "member_adds", took);
    assert_eq!(members.len(), n + 1, "members after one add");
    assert!(members.contains(&key(&users[n].dn)), "the added member");

    w.remove_member(gid, &uid(0)).await;
    let t = Instant::now();
    let remove = w.sync_ok();
    let took = t.elapsed();
    println!(
        "one member removed in the cloud: {:.2}s, {} LDAP writes, {} member removals, {} adds",
        took.as_secs_f64(),
        remove["ldapWrites"],
        remove["applied"]["member_removes"],
        remove["applied"]["member_adds"]
    );
    let members = members_in_ad(&w, gid).await;
    assert_one_value(&remove, "member_removes", took);
    assert_eq!(members.len(), n, "members after one removal");
    assert!(!members.contains(&key(&users[0].dn)), "the removed member");
    println!("members in AD: {} (as the cloud says)", members.len());
}

/// One modify (`ldapWrites`) carrying one value of `kind`, nothing else, within the bound.
fn assert_one_value(report: &Value, kind: &str, took: Duration) {
    let other = if kind == "member_adds" {
        "member_removes"
    } else {
        "member_adds"
    };
    assert_eq!(report["ldapWrites"], 1, "one modify: {report}");
    assert_eq!(report["applied"][kind], 1, "one value: {report}");
    assert_eq!(report["applied"][other], 0, "nothing else: {report}");
    assert!(took <= CYCLE_BOUND, "cycle took {took:?} > {CYCLE_BOUND:?}");
}

/// The written group's members as the DC gives them to a client that reads as AD requires:
/// `member;range=a-b` windows of 1,500 until one ends in `*` (lower-case DNs).
async fn members_in_ad(w: &World, gid: &str) -> HashSet<String> {
    let mut ldap = w.ldap().await;
    let anchor = format!("Group_{gid}");
    let (found, _) = ldap
        .search(
            &w.groups_ou,
            Scope::Subtree,
            &format!("(&(objectClass=group)(adminDescription={anchor}))"),
            vec!["distinguishedName"],
        )
        .await
        .expect("search")
        .success()
        .expect("search ok");
    assert_eq!(found.len(), 1, "one group carries {anchor}");
    let dn = SearchEntry::construct(found.into_iter().next().expect("one")).dn;
    let mut members = HashSet::new();
    let mut start = 0;
    loop {
        let attr = format!("member;range={start}-{}", start + RANGE_WINDOW - 1);
        let (rs, _) = ldap
            .search(&dn, Scope::Base, "(objectClass=*)", vec![attr.as_str()])
            .await
            .expect("ranged read")
            .success()
            .expect("ranged read ok");
        let e = SearchEntry::construct(rs.into_iter().next().expect("the group"));
        let Some((name, values)) = e
            .attrs
            .iter()
            .find(|(k, _)| k.to_ascii_lowercase().starts_with("member;range="))
        else {
            break; // no members (or none from `start`)
        };
        members.extend(values.iter().map(|v| v.to_ascii_lowercase()));
        match name.rsplit('-').next() {
            Some("*") => break,
            Some(end) => start = end.parse::<usize>().expect("range end") + 1,
            None => panic!("range without an end: {name}"),
        }
    }
    let _ = ldap.unbind().await;
    members
}
