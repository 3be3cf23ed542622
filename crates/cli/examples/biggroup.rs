//! Benchmark: one security group at the 250,000-member limit (BIG_MEMBERS to resize).
//! Measures its first write, then a cycle after one member is removed in the cloud and one
//! after one is added (in that order: at the limit, one more member first would put the
//! group over it, and a group over the limit is not written): each must be one modify of
//! one value, in ≤ 2 s (asserted, after every figure is printed); then such changes under
//! the daemon (`writeback run`): its first cycle that is not quiet loads the state, the
//! others hold it in memory and are bound as the one-shot cycles are.
//! Run through `scripts/bench biggroup` (starts the lab DC, builds the release binaries).
//!
//! Environment:
//! - `BIG_MEMBERS` — the group's size (default 250,000);
//! - `WRITEBACK_LAB_ENV_FILE` — the DC to use, by the env file `lab/dc … start` wrote (e.g.
//!   `lab/run/dc-fault.env`); default the lab's shared DC;
//! - `BIG_USERS_OU` — an OU DN whose users are reused across runs (created there when
//!   fewer than needed); default a fresh OU per run. Set-up, not measured: from 10,000 users
//!   on they are bulk-loaded (`lab/dc … bulk-users`, which restarts the DC; ~9 min for
//!   250,001 on the lab machine, hours over LDAP); `WRITEBACK_LAB_BULK_USERS=0` adds them
//!   over LDAP instead.

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
    if std::env::var_os("WB_E2E_LOG").is_none() {
        // The cycle's own timing line (info) with the warnings.
        std::env::set_var("WB_E2E_LOG", "warn,writeback::cycle=info");
    }
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

    let (first, took) = timed_sync(&w);
    println!(
        "first write of a {n}-member group: {:.1}s, {} LDAP writes, {} member values",
        took.as_secs_f64(),
        first["ldapWrites"],
        first["applied"]["member_adds"]
    );
    let members = members_in_ad(&w, gid).await;
    println!(
        "members in AD (ranged reads of {RANGE_WINDOW}): {}",
        members.len()
    );
    assert_eq!(
        members.len(),
        n,
        "the group's members in AD after its first write"
    );
    assert!(users[..n].iter().all(|u| members.contains(&key(&u.dn))));

    let (quiet, took) = timed_sync(&w);
    println!(
        "next cycle (nothing changed): {:.2}s, {} LDAP writes",
        took.as_secs_f64(),
        quiet["ldapWrites"]
    );
    assert_eq!(quiet["ldapWrites"], 0, "a quiet cycle writes nothing");

    // At the limit (250,000 for a security group), one more member would put the group
    // over it (not written, SPEC): a member leaves first, then another comes.
    let (members, removed) = one_member_sync(&w, gid, "remove", &uid(0)).await;
    let mut missed: Vec<String> = removed.into_iter().collect();
    assert_eq!(members.len(), n - 1, "members after one removal");
    assert!(!members.contains(&key(&users[0].dn)), "the removed member");

    let (members, added) = one_member_sync(&w, gid, "add", &uid(n)).await;
    missed.extend(added);
    assert_eq!(members.len(), n, "members after one add");
    assert!(members.contains(&key(&users[n].dn)), "the added member");
    println!("members in AD: {} (as the cloud says)", members.len());
    if std::env::var_os("BIG_HOLD").is_some() {
        hold(&w, gid, &uid).await;
    }

    // The same changes under the daemon (`writeback run`), which keeps the state and the AD
    // image in memory between cycles: its first change cycle loads them, the next ones do not.
    let daemon = Daemon::start(&w);
    // Its first cycle: nothing changed since the last `sync` (quiet) — or a full one.
    while daemon.lines("quiet cycle").is_empty() && daemon.lines("cycle finished").is_empty() {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Members are 1..=n: each change keeps the group within the limit.
    let changes = [
        ("remove", n),
        ("add", 0),
        ("remove", 0),
        ("add", n),
        ("remove", n),
    ];
    for (change, member) in changes {
        let seen = daemon.lines("cycle finished").len();
        match change {
            "add" => w.add_member(gid, &uid(member)).await,
            _ => w.remove_member(gid, &uid(member)).await,
        }
        let line = daemon.wait_for("cycle finished", seen);
        // Every daemon cycle is bound as the one-shot ones are — the first one too, which
        // loads the state as a one-shot does.
        let took = field(&line, "elapsed_ms").and_then(|ms| ms.parse::<u64>().ok());
        if let Some(ms) = took.filter(|ms| Duration::from_millis(*ms) > CYCLE_BOUND) {
            missed.push(format!(
                "daemon {change}: the cycle took {ms}ms > {CYCLE_BOUND:?}"
            ));
        }
        println!(
            "daemon: one member {change}{}: cycle {}ms, {} LDAP writes{}\n  cycle {}",
            if change == "add" { "ed" } else { "d" },
            field(&line, "elapsed_ms").unwrap_or("?"),
            field(&line, "ldap_writes").unwrap_or("?"),
            // A daemon loads the state in its first cycle that is not quiet.
            if loaded_state(&line) {
                " (loads the state)"
            } else {
                " (state in memory)"
            },
            phases(&line).unwrap_or_default()
        );
    }
    drop(daemon);
    let members = members_in_ad(&w, gid).await;
    assert_eq!(members.len(), n - 1, "members after the daemon's cycles");
    // The cycles' bound, checked last so that every figure is printed first.
    assert!(missed.is_empty(), "{}", missed.join("; "));
}

/// `writeback run` on the world's config, its log in a file; stopped (SIGTERM) on drop.
struct Daemon {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Daemon {
    fn start(w: &World) -> Daemon {
        let mut toml = std::fs::read_to_string(w.config_path()).expect("config");
        toml = toml.replace("[writeback]\n", "[writeback]\ninterval = \"1s\"\n");
        let config = w.dir.join("daemon.toml");
        std::fs::write(&config, toml).expect("daemon config");
        let log = w.dir.join("daemon.log");
        let profile = std::env::var("WRITEBACK_BIN_PROFILE").unwrap_or_else(|_| "debug".into());
        let child = std::process::Command::new(
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target")
                .join(profile)
                .join("writeback"),
        )
        .args(["run", "--config"])
        .arg(&config)
        .env("WB_E2E_SECRET", CLIENT_SECRET)
        .env("WB_E2E_AD_PASSWORD", &w.dc.password)
        .env("WRITEBACK_LOG", "warn,writeback::cycle=info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("daemon log"))
        .spawn()
        .expect("writeback run starts");
        Daemon { child, log }
    }

    /// The daemon's log lines that contain `what`.
    fn lines(&self, what: &str) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(what))
            .map(str::to_string)
            .collect()
    }

    /// Waits until the daemon has logged more than `seen` lines containing `what`; returns
    /// the first new one.
    fn wait_for(&self, what: &str, seen: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if let Some(line) = self.lines(what).into_iter().nth(seen) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "daemon: no {what:?} in {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// The `phases=graph@…ms load@…ms …` of a cycle's log line, if any.
fn phases(log: &str) -> Option<String> {
    let at = log.find("phases=")?;
    let words: Vec<&str> = log[at..]
        .split_whitespace()
        .enumerate()
        .take_while(|(i, w)| w.contains("ms") && (*i == 0 || !w.contains('=')))
        .map(|(_, w)| w.trim_matches('"'))
        .collect();
    Some(words.join(" "))
}

/// Whether a cycle (its log line) read the state from the store: its `load` phase took
/// 50 ms or more.
fn loaded_state(line: &str) -> bool {
    let at = |phase: &str| {
        phases(line)?.split_whitespace().find_map(|p| {
            p.trim_start_matches("phases=")
                .strip_prefix(phase)?
                .strip_suffix("ms")?
                .parse::<u64>()
                .ok()
        })
    };
    matches!((at("graph@"), at("load@")), (Some(g), Some(l)) if l.saturating_sub(g) >= 50)
}

/// `key=value` from a log line.
fn field<'l>(line: &'l str, key: &str) -> Option<&'l str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// `writeback sync --json` (exit 0 asserted) and how long the process ran: its output —
/// every member's outcome, megabytes at this size — is parsed after the clock stops.
/// One member of the group added or removed in the cloud (`change`: `add` / `remove`),
/// then one `sync`: prints what it did and returns the members AD then holds, and the bound
/// the cycle missed, if it did (see [`one_value`]).
async fn one_member_sync(
    w: &World,
    gid: &str,
    change: &str,
    member: &str,
) -> (HashSet<String>, Option<String>) {
    let (done, kind, counted, other, other_counted) = match change {
        "add" => {
            w.add_member(gid, member).await;
            (
                "added",
                "member_adds",
                "member adds",
                "member_removes",
                "removals",
            )
        }
        _ => {
            w.remove_member(gid, member).await;
            (
                "removed",
                "member_removes",
                "member removals",
                "member_adds",
                "adds",
            )
        }
    };
    let (report, took) = timed_sync(w);
    println!(
        "one member {done} in the cloud: {:.2}s, {} LDAP writes, {} {counted}, {} {other_counted}",
        took.as_secs_f64(),
        report["ldapWrites"],
        report["applied"][kind],
        report["applied"][other],
    );
    (members_in_ad(w, gid).await, one_value(&report, kind, took))
}

fn timed_sync(w: &World) -> (Value, Duration) {
    let t = Instant::now();
    let r = w.writeback(&["sync", "--json"]);
    let took = t.elapsed();
    // Where the time went, as the cycle logs it.
    if let Some(p) = phases(&r.stderr) {
        println!("  cycle {p}");
    }
    assert_eq!(
        r.code, 0,
        "sync\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    (r.json(), took)
}

/// One modify (`ldapWrites`) carrying one value of `kind`, nothing else (asserted), and
/// what missed the bound (the cycle took longer), if it did.
fn one_value(report: &Value, kind: &str, took: Duration) -> Option<String> {
    let other = if kind == "member_adds" {
        "member_removes"
    } else {
        "member_adds"
    };
    assert_eq!(report["ldapWrites"], 1, "one modify: {report}");
    assert_eq!(report["applied"][kind], 1, "one value: {report}");
    assert_eq!(report["applied"][other], 0, "nothing else: {report}");
    (took > CYCLE_BOUND).then(|| format!("{kind}: the cycle took {took:?} > {CYCLE_BOUND:?}"))
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

/// `BIG_HOLD`: keeps the world (graph-sim, state, config) for cycles run by hand — e.g.
/// under a profiler — until a file `release` appears in its directory. A file `cmd-<x>`
/// holding `add I` or `remove I` changes member I of the group in the cloud (renamed
/// `done-<x>` once done); run `writeback --config <dir>/writeback.toml sync` between them.
async fn hold(w: &World, gid: &str, uid: &dyn Fn(usize) -> String) {
    println!(
        "holding: config {}; write cmd-<x> files (`add I` / `remove I`) or `release` in {}",
        w.config_path().display(),
        w.dir.display()
    );
    while !w.dir.join("release").exists() {
        let mut cmds: Vec<_> = std::fs::read_dir(&w.dir)
            .expect("world dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("cmd-"))
            })
            .collect();
        cmds.sort();
        for path in cmds {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let mut words = text.split_whitespace();
            let (verb, i) = (words.next(), words.next().and_then(|i| i.parse().ok()));
            // A refused change (a member added twice) is printed, and the hold goes on.
            let answer = match (verb, i) {
                (Some("add"), Some(i)) => Some(w.try_add_member(gid, &uid(i)).await),
                (Some("remove"), Some(i)) => Some(w.try_remove_member(gid, &uid(i)).await),
                _ => None,
            };
            match answer {
                Some((204, _)) => {}
                Some((status, v)) => println!("hold: {text:?} refused: {status} {v}"),
                None => println!("hold: cannot read {}: {text:?}", path.display()),
            }
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("cmd-?");
            let _ = std::fs::rename(&path, w.dir.join(name.replacen("cmd-", "done-", 1)));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
