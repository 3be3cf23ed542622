//! Benchmark: one security group at the 250,000-member limit (BIG_MEMBERS to resize).
//! Measures its first write, then a cycle after one member is added in the cloud and one
//! after one is removed: each must be one modify of one value, in seconds.
//! Run through `scripts/bench biggroup` (starts the lab DC, builds the release binaries).

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::json;
use std::time::Instant;
use support::*;

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BIG_MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(250_000);
    let dc = LabDc::ensure();
    let users_ou = dc.fresh_ou("big-users").await;
    let t = Instant::now();
    let users = dc.create_users_in(&users_ou, "bg", n + 1).await;
    println!(
        "created {} AD users in {:.1}s",
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

    let t = Instant::now();
    let first = w.sync_ok();
    println!(
        "first write of a {n}-member group: {:.1}s, {} LDAP writes",
        t.elapsed().as_secs_f64(),
        first["ldapWrites"]
    );
    let t = Instant::now();
    let quiet = w.sync_ok();
    println!(
        "next cycle (nothing changed): {:.2}s, {} LDAP writes",
        t.elapsed().as_secs_f64(),
        quiet["ldapWrites"]
    );
    w.add_member(gid, &uid(n)).await;
    let t = Instant::now();
    let add = w.sync_ok();
    println!(
        "one member added in the cloud: {:.2}s, {} LDAP writes, {} member adds",
        t.elapsed().as_secs_f64(),
        add["ldapWrites"],
        add["applied"]["member_adds"]
    );
    w.remove_member(gid, &uid(0)).await;
    let t = Instant::now();
    let remove = w.sync_ok();
    println!(
        "one member removed in the cloud: {:.2}s, {} LDAP writes, {} member removals",
        t.elapsed().as_secs_f64(),
        remove["ldapWrites"],
        remove["applied"]["member_removes"]
    );
    let g = w.ad_group_of(gid).await.expect("written");
    println!("members in AD: {}", g.members.len());
}
