//! Benchmark: writeback's export against the directory's own write speed.
//! Builds a tenant of SCALE_USERS synced users and SCALE_GROUPS security groups (most with
//! 5–40 members, SCALE_BIG of 2,000), then measures:
//!   1. the raw LDAP floor: the same groups added with one connection, members inline, on
//!      a DC fresh from its template with the users;
//!   2. `writeback sync` (first, full export) on the same directory: the DC fresh from its
//!      template again, the users made again (Samba's adds slow down as the directory
//!      grows, so both run on equal directories);
//!   3. quiet cycles, delta cycles after 1 and 1% of the groups change, changes made by hand
//!      in AD, and the daemon (quiet cycles, latency).
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

/// Whether a step runs: `SCALE_STEPS` lists them (floor, delta, hand, daemon; default all).
fn step(name: &str) -> bool {
    std::env::var("SCALE_STEPS")
        .map(|v| v.split(',').any(|s| s.trim() == name))
        .unwrap_or(true)
}

#[tokio::main]
async fn main() {
    let n_users = env("SCALE_USERS", 5_000);
    let n_groups = env("SCALE_GROUPS", 10_000);
    let n_big = env("SCALE_BIG", 20);
    let skip_floor = std::env::var_os("SCALE_SKIP_FLOOR").is_some() || !step("floor");
    let mut dc = LabDc::ensure();
    let mut users = scale_users(&dc, n_users).await;

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
    //    Samba's adds slow down as the directory grows (each add rewrites index records
    //    that list every object of its class), so the floor and the export each run on the
    //    same directory: a DC fresh from its template with the same users. After the floor,
    //    the DC starts fresh again and the users are made again (new SIDs; the tenant below
    //    is built from them).
    let floor = if skip_floor {
        0.0
    } else {
        let floor = raw_floor(&dc, &users, &groups, "scale-floor").await;
        dc = fresh_dc();
        users = scale_users(&dc, n_users).await;
        floor
    };
    println!("raw LDAP floor: {floor:.1}s (on a fresh directory with the users)");

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
    let r = w.writeback(&["sync", "--json"]);
    let export = t.elapsed().as_secs_f64();
    assert_eq!(r.code, 0, "first export\n{}\n{}", r.stdout, r.stderr);
    let first = r.json();
    println!(
        "writeback sync (full, first export): {export:.1}s = {:.2}× the floor; {} LDAP writes",
        export / floor,
        first["ldapWrites"]
    );
    // Where the time went (phases) and the LDAP searches it sent.
    for line in r.stderr.lines().filter(|l| l.contains("cycle finished")) {
        println!("  {line}");
    }

    // 3. The cycle after the first export catches up on what it wrote (by USN), then quiet
    //    cycles, then one changed group, then 100, then changes made by hand in AD.
    let t = Instant::now();
    let catch_up = w.sync_ok();
    println!(
        "writeback sync (after the first export: reads back what it wrote, by USN): {:.2}s, {} LDAP writes",
        t.elapsed().as_secs_f64(),
        catch_up["ldapWrites"]
    );
    let mut quiet_times = Vec::new();
    let mut quiet = serde_json::Value::Null;
    for _ in 0..5 {
        let t = Instant::now();
        quiet = w.sync_ok();
        quiet_times.push(t.elapsed().as_secs_f64());
    }
    quiet_times.sort_by(f64::total_cmp);
    println!(
        "writeback sync (no change): median {:.3}s (min {:.3}s) of 5, {} Graph requests, {} LDAP writes, {:?}",
        quiet_times[2], quiet_times[0], quiet["graphRequests"], quiet["ldapWrites"], quiet["message"]
    );
    // SCALE_DELTA_REPEAT: the one-group change measured that many times.
    let repeat = env("SCALE_DELTA_REPEAT", 1);
    let sizes: Vec<usize> = std::iter::repeat_n(1usize, repeat)
        .chain([(n_groups / 100).max(1)])
        .filter(|_| step("delta"))
        .collect();
    for (round, changed) in sizes.into_iter().enumerate() {
        for i in 0..changed {
            let g = gid(n_groups - 1 - i);
            add_new_member(&w, &g, &uid, i + changed + round * 101, n_users).await;
        }
        let t = Instant::now();
        let r = w.writeback(&["sync", "--json"]);
        let elapsed = t.elapsed().as_secs_f64();
        let delta = r.json();
        println!(
            "writeback sync (delta, {changed} groups changed): {elapsed:.2}s, {} Graph requests, {} LDAP writes",
            delta["graphRequests"],
            delta["ldapWrites"]
        );
        for line in r.stderr.lines().filter(|l| l.contains("cycle finished")) {
            println!("  {line}");
        }
    }

    // SCALE_HOLD (for profiling): keep the tenant and the state; each time a file `go`
    // appears in the world's directory, change as many groups as it says, run one `sync`
    // (under WB_E2E_WRAP if set), write its stderr to `out` and remove `go`. `q` stops.
    if std::env::var_os("SCALE_HOLD").is_some() {
        let go = w.dir.join("go");
        println!(
            "holding: write a number of groups to change into {}",
            go.display()
        );
        let mut round = 1000;
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let Ok(text) = std::fs::read_to_string(&go) else {
                continue;
            };
            let text = text.trim();
            if text == "q" {
                let _ = std::fs::remove_file(&go);
                break;
            }
            // `daemon`: the daemon step again, with the binary as it is now.
            if text == "daemon" {
                daemon(&w, &gid, &uid, n_groups, n_users).await;
                let _ = std::fs::remove_file(&go);
                continue;
            }
            let Ok(changed) = text.parse::<usize>() else {
                continue;
            };
            round += 1;
            for i in 0..changed {
                let g = gid(n_groups - 1 - ((i + round * 7) % n_groups));
                add_new_member(&w, &g, &uid, i + round * 101, n_users).await;
            }
            let t = Instant::now();
            let r = w.writeback(&["sync", "--json"]);
            let out = format!(
                "wall {:.3}s exit {}\n{}",
                t.elapsed().as_secs_f64(),
                r.code,
                r.stderr
            );
            std::fs::write(w.dir.join("out"), out).expect("out");
            let _ = std::fs::remove_file(&go);
        }
    }

    // 4. Hand-made changes in AD, each put back by the next cycle.
    if step("hand") {
        hand_changes(&w, &gid, &users, n_big, n_users).await;
    }

    // 5. The daemon at this size (interval 1s): quiet cycles' cost, then latency.
    if step("daemon") {
        daemon(&w, &gid, &uid, n_groups, n_users).await;
    }

    let size = std::fs::metadata(w.dir.join("state.db"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!("state store: {:.1} MiB", size as f64 / 1048576.0);
}

/// The AD users of the workload (the on-premises side of the synced users), sorted by name.
async fn scale_users(dc: &LabDc, n_users: usize) -> Vec<BulkUser> {
    let users_ou = dc.fresh_ou("scale-users").await;
    let t = Instant::now();
    let mut users = dc.create_users_in(&users_ou, "su", n_users).await;
    users.sort_by(|a, b| a.sam.cmp(&b.sam));
    println!(
        "created {} AD users in {:.1}s",
        users.len(),
        t.elapsed().as_secs_f64()
    );
    users
}

/// The lab DC started again from its template: the directory as it was before the floor.
fn fresh_dc() -> LabDc {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let stopped = std::process::Command::new(root.join("lab/dc"))
        .arg("stop")
        .status()
        .expect("run lab/dc stop");
    assert!(stopped.success(), "lab/dc stop failed");
    LabDc::ensure()
}

/// The raw LDAP floor: the groups added over one connection, members inline, into a fresh
/// OU `label`; returns the seconds it took.
async fn raw_floor(dc: &LabDc, users: &[BulkUser], groups: &[Vec<usize>], label: &str) -> f64 {
    let floor_ou = dc.fresh_ou(label).await;
    let mut ldap = dc.ldap().await;
    let t = Instant::now();
    for (i, members) in groups.iter().enumerate() {
        let cn = format!("floor-{i:05}");
        let dn = format!("CN={cn},{floor_ou}");
        let member_dns: HashSet<&str> = members.iter().map(|&u| users[u].dn.as_str()).collect();
        let sam = format!(
            "fl{:04x}{i:05}",
            (std::process::id() ^ (label.len() as u32 * 7919)) & 0xffff
        );
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
    t.elapsed().as_secs_f64()
}

async fn hand_changes(
    w: &World,
    gid: &dyn Fn(usize) -> String,
    users: &[BulkUser],
    n_big: usize,
    n_users: usize,
) {
    let probe = gid(n_big + 7);
    let ad = w.ad_group_of(&probe).await.expect("written");
    let mut ldap = w.dc.ldap().await;
    let intruder = &users[(n_users - 1).min(users.len() - 1)].dn;
    ldap.modify(
        &ad.dn,
        vec![ldap3::Mod::Add(
            "member",
            HashSet::from([intruder.as_str()]),
        )],
    )
    .await
    .expect("modify")
    .success()
    .ok();
    let t = Instant::now();
    let out = w.sync_ok();
    println!(
        "hand change (member added) put back: {:.2}s, {} LDAP writes",
        t.elapsed().as_secs_f64(),
        out["ldapWrites"]
    );
    let parent = ad
        .dn
        .split_once(',')
        .map(|(_, p)| p.to_string())
        .unwrap_or_default();
    ldap.modifydn(&ad.dn, "CN=Renamed by hand", true, None)
        .await
        .expect("modifydn")
        .success()
        .expect("renamed");
    let t = Instant::now();
    let out = w.sync_ok();
    println!(
        "hand change (group renamed) put back: {:.2}s, {} LDAP writes",
        t.elapsed().as_secs_f64(),
        out["ldapWrites"]
    );
    ldap.delete(&format!(
        "{},{parent}",
        ad.dn.split_once(',').map(|(r, _)| r).unwrap_or_default()
    ))
    .await
    .expect("delete")
    .success()
    .expect("deleted");
    let t = Instant::now();
    let out = w.sync_ok();
    println!(
        "hand change (group deleted) re-created: {:.2}s, {} created",
        t.elapsed().as_secs_f64(),
        out["applied"]["creates"]
    );
}

/// Adds to `group` the first user from `start` on that is not a member yet.
async fn add_new_member(
    w: &World,
    group: &str,
    uid: &dyn Fn(usize) -> String,
    start: usize,
    n_users: usize,
) {
    for k in start..start + n_users {
        let body = json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{}", uid(k % n_users))});
        let (status, _) = w
            .graph(
                "POST",
                &format!("/v1.0/groups/{group}/members/$ref"),
                Some(body),
            )
            .await;
        if status == 204 {
            return;
        }
    }
    panic!("no user left to add to {group}");
}

/// CPU time (user + system) of a process, in seconds, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

async fn daemon(
    w: &World,
    gid: &dyn Fn(usize) -> String,
    uid: &dyn Fn(usize) -> String,
    n_groups: usize,
    n_users: usize,
) {
    use std::io::BufRead;
    use std::time::Duration;
    let mut cfg = std::fs::read_to_string(w.config_path()).expect("config");
    cfg = cfg.replace("[writeback]\n", "[writeback]\ninterval = \"1s\"\n");
    let daemon_cfg = w.dir.join("daemon.toml");
    std::fs::write(&daemon_cfg, cfg).expect("daemon config");
    let profile = std::env::var("WRITEBACK_BIN_PROFILE").unwrap_or_else(|_| "debug".into());
    let bin = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target")
        .join(profile)
        .join("writeback");
    let mut child = std::process::Command::new(bin)
        .args(["run", "--config"])
        .arg(&daemon_cfg)
        .env("WB_E2E_SECRET", CLIENT_SECRET)
        .env("WB_E2E_AD_PASSWORD", &w.dc.password)
        .env("WRITEBACK_LOG", "writeback=info")
        .env("WRITEBACK_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("daemon starts");
    let pid = child.id();
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let msg = |v: &serde_json::Value| {
        v["fields"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    // The first cycle loads the state; then quiet cycles.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut quiet_seen = 0;
    while quiet_seen < 2 && Instant::now() < deadline {
        if let Ok(v) = rx.recv_timeout(Duration::from_secs(5)) {
            if msg(&v).starts_with("quiet cycle") {
                quiet_seen += 1;
            }
        }
    }
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    let mut quiet = Vec::new();
    while quiet.len() < 20 && Instant::now() < deadline + Duration::from_secs(60) {
        if let Ok(v) = rx.recv_timeout(Duration::from_secs(5)) {
            if msg(&v).starts_with("quiet cycle") {
                quiet.push(v);
            }
        }
    }
    let cpu = cpu_seconds(pid) - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    let max = |k: &str| {
        quiet
            .iter()
            .filter_map(|v| v["fields"][k].as_u64())
            .max()
            .unwrap_or(0)
    };
    println!(
        "daemon quiet cycles (interval 1s): {} cycles in {wall:.1}s, CPU {:.1} ms per cycle, at most {} Graph requests and {} LDAP searches per cycle, at most {} ms each",
        quiet.len(),
        cpu * 1000.0 / quiet.len().max(1) as f64,
        max("graph_requests"),
        max("ldap_searches"),
        max("elapsed_ms")
    );

    // Latency: a cloud membership change → visible in AD.
    let changes: usize = std::env::var("SCALE_LATENCY_CHANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let mut ldap = w.dc.ldap().await;
    let mut lat = Vec::new();
    let cpu_before = cpu_seconds(pid);
    for i in 0..changes {
        let g = gid(n_groups / 2 + i);
        let before = w.ad_group_of_fast(&mut ldap, &g).await;
        // spread the changes over the cycle
        tokio::time::sleep(Duration::from_millis(137 * (i as u64 % 7))).await;
        let t = Instant::now();
        // A user not yet a member (Graph refuses a reference that exists).
        let mut k = i * 7 + 3;
        loop {
            let body = json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{}", uid(k % n_users))});
            let (st, _) = w
                .graph(
                    "POST",
                    &format!("/v1.0/groups/{g}/members/$ref"),
                    Some(body),
                )
                .await;
            if st == 204 {
                break;
            }
            // 400: already a member (Graph refuses a reference that exists); else a failure.
            assert_eq!(st, 400, "adding a member to {g} failed");
            k += 1;
        }
        loop {
            let now = w.ad_group_of_fast(&mut ldap, &g).await;
            if now > before {
                break;
            }
            if t.elapsed() > Duration::from_secs(30) {
                panic!("change {i} not visible after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        lat.push(t.elapsed().as_secs_f64());
    }
    // Where the changed cycles' time went: each phase's share of "cycle finished" lines.
    let mut cycles: Vec<(u64, String)> = Vec::new();
    while let Ok(v) = rx.try_recv() {
        if msg(&v) == "cycle finished" {
            cycles.push((
                v["fields"]["elapsed_ms"].as_u64().unwrap_or(0),
                v["fields"]["phases"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ));
        }
    }
    let cpu_changes = cpu_seconds(pid) - cpu_before;
    cycles.sort();
    if let (Some(mid), Some(last)) = (cycles.get(cycles.len() / 2), cycles.last()) {
        println!(
            "daemon cycles with a change: {} — CPU {:.0} ms per cycle (with the quiet ones between) — median {} ms ({}), max {} ms ({})",
            cycles.len(),
            cpu_changes * 1000.0 / cycles.len().max(1) as f64,
            mid.0,
            mid.1,
            last.0,
            last.1
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    lat.sort_by(f64::total_cmp);
    let p = |q: f64| lat[((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1];
    println!(
        "daemon latency at scale, cloud change → AD ({} changes, interval 1s): p50 {:.2}s  p95 {:.2}s  max {:.2}s",
        lat.len(),
        p(0.5),
        p(0.95),
        lat[lat.len() - 1]
    );
}

impl World {
    /// The member count of the group anchored to `id` (one search by anchor).
    async fn ad_group_of_fast(&self, ldap: &mut ldap3::Ldap, id: &str) -> usize {
        let (entries, _) = ldap
            .search(
                &self.groups_ou,
                ldap3::Scope::Subtree,
                &format!("(adminDescription=Group_{id})"),
                vec!["member"],
            )
            .await
            .expect("search")
            .success()
            .expect("search ok");
        entries
            .into_iter()
            .map(ldap3::SearchEntry::construct)
            .map(|e| e.attrs.get("member").map(Vec::len).unwrap_or(0))
            .next()
            .unwrap_or(0)
    }
}
