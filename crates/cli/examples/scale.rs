//! Benchmark: writeback's export against the directory's own write speed.
//! Builds a tenant of SCALE_USERS synced users and SCALE_GROUPS security groups (most with
//! 5–40 members, SCALE_BIG of 2,000), then measures:
//!   1. the raw LDAP floor: the same groups added with one connection, members inline;
//!   2. `writeback sync` (first, full export) into another OU;
//!   3. a second `sync` (quiet), and a delta cycle after 1% of the groups change.
//!
//! Run through `scripts/bench scale` (starts the lab DC, builds the binaries).

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::json;
use std::collections::HashSet;
use std::time::Instant;
use support::*;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator (no extra dependency).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

#[tokio::main]
async fn main() {
    let n_users = env("SCALE_USERS", 5_000);
    let n_groups = env("SCALE_GROUPS", 10_000);
    let n_big = env("SCALE_BIG", 20);
    let dc = LabDc::ensure();

    // AD users (the on-premises side of the synced users).
    let users_ou = dc.fresh_ou("scale-users").await;
    let t = Instant::now();
    let mut users = dc.create_users_in(&users_ou, "su", n_users).await;
    users.sort_by(|a, b| a.sam.cmp(&b.sam));
    println!(
        "created {} AD users in {:.1}s",
        users.len(),
        t.elapsed().as_secs_f64()
    );

    // Memberships: most groups 5–40 members, a few of 2,000.
    let mut rng = Lcg(42);
    let mut groups: Vec<Vec<usize>> = Vec::with_capacity(n_groups);
    for i in 0..n_groups {
        let size = if i < n_big {
            2_000.min(n_users)
        } else {
            5 + rng.next(36)
        };
        let mut set = HashSet::new();
        while set.len() < size {
            set.insert(rng.next(n_users));
        }
        groups.push(set.into_iter().collect());
    }
    let memberships: usize = groups.iter().map(Vec::len).sum();
    println!("workload: {n_users} users, {n_groups} groups, {memberships} memberships");

    // 1. The raw LDAP floor: one connection, each group added with its members inline.
    let floor_ou = dc.fresh_ou("scale-floor").await;
    let mut ldap = dc.ldap().await;
    let t = Instant::now();
    for (i, members) in groups.iter().enumerate() {
        let cn = format!("floor-{i:05}");
        let dn = format!("CN={cn},{floor_ou}");
        let member_dns: HashSet<&str> = members.iter().map(|&u| users[u].dn.as_str()).collect();
        let sam = format!("fl{:04x}{i:05}", std::process::id() & 0xffff);
        ldap.add(
            &dn,
            vec![
                ("objectClass", HashSet::from(["group"])),
                ("sAMAccountName", HashSet::from([sam.as_str()])),
                ("groupType", HashSet::from(["-2147483640"])),
                ("member", member_dns),
            ],
        )
        .await
        .expect("add")
        .success()
        .expect("add ok");
    }
    let floor = t.elapsed().as_secs_f64();
    println!("raw LDAP floor: {floor:.1}s");

    // The tenant file for graph-sim.
    let dir = std::env::temp_dir().join(format!("wb-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let uid = |i: usize| format!("00000000-0000-4000-8000-{i:012}");
    let gid = |i: usize| format!("00000000-0000-4000-9000-{i:012}");
    let tenant = json!({
        "users": users.iter().enumerate().map(|(i, u)| json!({
            "id": uid(i), "displayName": u.sam, "userPrincipalName": format!("{}@lab.example.test", u.sam),
            "accountEnabled": true, "onPremisesSyncEnabled": true, "onPremisesSecurityIdentifier": u.sid,
        })).collect::<Vec<_>>(),
        "groups": groups.iter().enumerate().map(|(i, m)| json!({
            "id": gid(i), "displayName": format!("SG-Scale-{i:05}"), "groupTypes": [],
            "mailEnabled": false, "mailNickname": format!("sgscale{i}"), "securityEnabled": true,
            "writebackConfiguration": {"isEnabled": true, "onPremisesGroupType": "universalSecurityGroup"},
            "members": m.iter().map(|&u| uid(u)).collect::<Vec<_>>(), "owners": [],
        })).collect::<Vec<_>>(),
    });
    let tenant_file = dir.join("tenant.json");
    std::fs::write(&tenant_file, serde_json::to_vec(&tenant).expect("json")).expect("write tenant");
    let sim = Sim::start_with(&["--tenant", tenant_file.to_str().expect("utf-8")]);
    let w = World::build(dc, "scale", sim, dir).await;

    // 2. writeback's first export.
    let t = Instant::now();
    let first = w.sync_ok();
    let export = t.elapsed().as_secs_f64();
    println!(
        "writeback sync (full, first export): {export:.1}s = {:.2}× the floor; {} LDAP writes",
        export / floor,
        first["ldapWrites"]
    );

    // 3. A quiet cycle, then a delta cycle after 1% of the groups change.
    let t = Instant::now();
    let quiet = w.sync_ok();
    println!(
        "writeback sync (no change): {:.2}s, {} Graph requests, {} LDAP writes",
        t.elapsed().as_secs_f64(),
        quiet["graphRequests"],
        quiet["ldapWrites"]
    );
    let changed = (n_groups / 100).max(1);
    for i in 0..changed {
        let g = gid(n_groups - 1 - i);
        w.add_member(&g, &uid(i % n_users)).await;
    }
    let t = Instant::now();
    let delta = w.sync_ok();
    println!(
        "writeback sync (delta, {changed} groups changed): {:.2}s, {} Graph requests, {} LDAP writes",
        t.elapsed().as_secs_f64(),
        delta["graphRequests"],
        delta["ldapWrites"]
    );
    let size = std::fs::metadata(w.dir.join("state.db"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!("state store: {:.1} MiB", size as f64 / 1048576.0);
}
