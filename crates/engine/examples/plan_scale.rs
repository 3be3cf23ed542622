//! The pure engine at scale: times `wb_engine::plan` over a generated tenant of 100,000
//! security groups and 1,000,000 memberships, for a first plan (empty managed OU) and for a
//! converged one (nothing to do), and reports wall time and peak RSS.
//!
//! `cargo run --release -p wb-engine --example plan_scale [both|first|converged]`
//! (default `both`: each scenario runs in a fresh child process, so each peak RSS is that
//! scenario's alone). Sizes: `PLAN_GROUPS` (100000), `PLAN_MEMBERSHIPS` (1000000),
//! `PLAN_USERS` (50000), `PLAN_BIG` (groups of 20,000+ members, 8).
//!
//! The converged AD image is built directly (the DNs, anchors, attributes and member DNs
//! the first plan creates); the run fails if its plan is not empty, which checks that.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Instant;
use wb_engine::naming::{cn, rdn, sam_account_name_candidates};
use wb_engine::{EngineConfig, Input, Naming};
use wb_model::{
    anchor_value, AdClass, AdGroup, AdObjectRef, AdSnapshot, CloudGroup, CloudSnapshot, CloudUser,
    Interner, Join, Joins, Lookup, MemberKind, MemberRef, OnPremGroupType, WritebackConfiguration,
};

/// The allocator of the `writeback` binary, so that the bench measures what it runs.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const OU: &str = "OU=Groups,OU=Writeback,DC=corp,DC=example,DC=com";
const USERS_OU: &str = "OU=Users,OU=Accounts,DC=corp,DC=example,DC=com";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// splitmix64: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn group_id(n: usize) -> String {
    format!("{:08x}-5c2a-4d1e-9b7f-{:012x}", 0x6a1f_0000 + n / 7, n)
}

fn user_id(n: usize) -> String {
    format!("{:08x}-0b3e-4a77-8c21-{:012x}", 0x3d00_0000 + n / 11, n)
}

const DEPTS: [&str; 12] = [
    "Sales",
    "Finance",
    "HR",
    "IT",
    "Legal",
    "Marketing",
    "R&D",
    "Operations",
    "Support",
    "Facilities",
    "Procurement",
    "Security",
];
const REGIONS: [&str; 8] = [
    "EMEA", "AMER", "APAC", "Paris", "Berlin", "Tokyo", "NYC", "Remote",
];
const FIRST: [&str; 10] = [
    "Anna", "Ben", "Chloé", "David", "Eva", "Farid", "Grace", "Hiro", "Inès", "Jonas",
];
const LAST: [&str; 10] = [
    "Smith", "Müller", "Dubois", "Tanaka", "García", "O'Brien", "Novak", "Rossi", "Kowalski",
    "Nguyen",
];

/// A group name as tenants have them; about 3 % with RFC 4514 specials.
fn group_name(n: usize, rng: &mut Rng) -> String {
    let dept = DEPTS[rng.below(DEPTS.len())];
    let region = REGIONS[rng.below(REGIONS.len())];
    match n % 100 {
        0 => format!("{dept}, {region} #{n}"),
        1 => format!("#{dept} + {region} {n}"),
        2 => format!("\"{dept}\" <{region}>; team={n} "),
        _ => format!("SG-{dept}-{region}-Team {n}"),
    }
}

struct Tenant {
    cloud: CloudSnapshot,
    /// Resolved users (SID lookups), as the AD import gives them.
    found: BTreeMap<Lookup, AdObjectRef>,
}

fn tenant(groups: usize, memberships: usize, users: usize, big: usize) -> Tenant {
    let mut rng = Rng(0x5eed_2024);
    let mut cloud = CloudSnapshot::default();
    let mut found = BTreeMap::new();
    for n in 0..users {
        let id = user_id(n);
        let (first, last) = (FIRST[n % FIRST.len()], LAST[(n / 10) % LAST.len()]);
        let sid = format!("S-1-5-21-1004336348-1177238915-682003330-{}", 10_000 + n);
        // One in ten as AD names them "Last, First": an escaped comma in the DN.
        let dn = if n % 10 == 0 {
            format!("CN={last}\\, {first} {n},{USERS_OU}")
        } else {
            format!("CN={first} {last} {n},{USERS_OU}")
        };
        found.insert(
            Lookup::Sid(sid.clone()),
            AdObjectRef {
                dn: dn.clone(),
                guid: format!("{:08x}-aaaa-4bbb-8ccc-{:012x}", n, n),
                group_type: None,
                class: AdClass::User,
            },
        );
        std::sync::Arc::make_mut(&mut cloud.users).insert(
            id.clone(),
            CloudUser {
                id,
                user_principal_name: Some(format!("{first}.{last}{n}@corp.example.com")),
                display_name: Some(format!("{first} {last} {n}")),
                on_premises_sync_enabled: Some(true),
                on_premises_security_identifier: Some(sid),
                on_premises_distinguished_name: Some(dn),
                ..Default::default()
            },
        );
    }
    // A few groups of 20,000+ members take about a quarter of the memberships; the rest
    // is spread over the other groups; one group in a hundred nests 1-3 others.
    let big_sizes: Vec<usize> = (0..big).map(|i| (20_000 + i * 5_000).min(users)).collect();
    let big_total: usize = big_sizes.iter().sum();
    let small_total = memberships.saturating_sub(big_total);
    let small_groups = groups.saturating_sub(big).max(1);
    // The Graph reader shares each distinct member id among the groups (as a delta round
    // does: wb_model::Interner).
    let mut ids = Interner::default();
    for n in 0..groups {
        let id = group_id(n);
        let size = if let Some(size) = big_sizes.get(n) {
            *size
        } else {
            // Sizes around the mean, summing to small_total.
            let i = n - big;
            small_total * (i + 1) / small_groups - small_total * i / small_groups
        };
        let mut members = std::collections::BTreeSet::new();
        let start = rng.below(users.max(1));
        // A stride prime to the user count: `size` distinct users.
        let mut stride = 1 + rng.below(97);
        while gcd(stride, users) != 1 {
            stride += 1;
        }
        for k in 0..size {
            members.insert(MemberRef {
                kind: MemberKind::User,
                id: ids.intern(&user_id((start + k * stride) % users)),
            });
        }
        if n % 100 == 50 && groups > 1 {
            for _ in 0..1 + rng.below(3) {
                let nested = big + rng.below(groups - big);
                if nested != n {
                    members.insert(MemberRef {
                        kind: MemberKind::Group,
                        id: ids.intern(&group_id(nested)),
                    });
                }
            }
        }
        let name = group_name(n, &mut rng);
        cloud.groups.insert(
            id.clone(),
            CloudGroup {
                id,
                description: (n % 3 == 0).then(|| format!("Access group for {name}")),
                display_name: Some(name),
                mail_enabled: Some(false),
                security_enabled: Some(true),
                writeback: WritebackConfiguration {
                    is_enabled: Some(true),
                    on_premises_group_type: Some("universalSecurityGroup".into()),
                },
                members,
                ..Default::default()
            },
        );
    }
    Tenant { cloud, found }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn config() -> EngineConfig {
    let mut c = EngineConfig::new(OU);
    c.naming = Naming::DisplayName;
    c
}

/// The AD image the importer hands the engine: the lookups' answers (moved, not copied:
/// the process holds one image, as the CLI does).
fn ad_image(found: BTreeMap<Lookup, AdObjectRef>) -> AdSnapshot {
    let mut ad = AdSnapshot::default();
    ad.schema.external_directory_object_id = true;
    ad.resolutions.found = found;
    ad
}

/// What AD holds once the first plan ran: every group at its DN with its anchors,
/// attributes and member DNs; and the joins the exporter recorded.
fn converge(cloud: &CloudSnapshot, ad: &mut AdSnapshot, naming: Naming) -> Joins {
    let dn_of = |g: &CloudGroup| format!("{},{OU}", rdn(&cn(g, naming)));
    let mut joins = Joins::new();
    let found = &ad.resolutions.found;
    let mut groups = Vec::with_capacity(cloud.groups.len());
    // The AD reader shares each distinct member DN among the groups (wb_model::Interner).
    let mut dns = Interner::default();
    for (n, g) in cloud.groups.values().enumerate() {
        let cn = cn(g, naming);
        let dn = dn_of(g);
        let guid = format!("{:08x}-ffff-4eee-8ddd-{:012x}", n, n);
        let sid = format!("S-1-5-21-1004336348-1177238915-682003330-{}", 500_000 + n);
        let members = g
            .members
            .iter()
            .filter_map(|m| match m.kind {
                MemberKind::User => cloud
                    .users
                    .get(&*m.id)
                    .and_then(|u| u.on_premises_security_identifier.clone())
                    .and_then(|sid| found.get(&Lookup::Sid(sid)))
                    .map(|o| dns.intern(&o.dn)),
                MemberKind::Group => cloud.groups.get(&*m.id).map(|g| dns.intern(&dn_of(g))),
                _ => None,
            })
            .collect();
        let description = g
            .description
            .as_deref()
            .map(|d| wb_engine::naming::left_utf16(d.trim(), wb_engine::DESCRIPTION_MAX_UNITS))
            .map(str::to_string);
        groups.push(AdGroup {
            dn: dn.clone(),
            guid: guid.clone(),
            sid: Some(sid.clone()),
            sam_account_name: sam_account_name_candidates(&cn, &g.id).into_iter().next(),
            cn,
            group_type: OnPremGroupType::UniversalSecurityGroup.ad_group_type(),
            admin_description: Some(anchor_value(&g.id)),
            external_directory_object_id: Some(anchor_value(&g.id)),
            display_name: g.display_name.clone(),
            description,
            members,
            ..Default::default()
        });
        joins.insert(
            g.id.clone(),
            Join {
                group: g.id.clone(),
                guid,
                sid: Some(sid),
                dn,
                adopted: false,
            },
        );
    }
    ad.groups = groups;
    joins
}

/// CPU time (user + system) of this process, in seconds: the machine may be shared, so
/// wall time alone can mislead.
fn cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 14th field.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let field = |n: usize| {
        rest.split_whitespace()
            .nth(n - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (field(14) + field(15)) / 100.0
}

/// (VmRSS, VmHWM) of this process, in MiB.
fn rss() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
}

/// Whether to time `plan_groups` too (not in the "before" build, which lacks it).
fn scenario_incremental() -> bool {
    std::env::var("PLAN_INCREMENTAL").map_or(true, |v| v != "0")
}

fn run(scenario: &str) {
    let (groups, memberships, users, big) = (
        env("PLAN_GROUPS", 100_000),
        env("PLAN_MEMBERSHIPS", 1_000_000),
        env("PLAN_USERS", 50_000),
        env("PLAN_BIG", 8),
    );
    let built = Instant::now();
    let Tenant { cloud, found } = tenant(groups, memberships, users, big);
    let config = config();
    let mut ad = ad_image(found);
    let converged = scenario == "converged";
    let joins = if converged {
        converge(&cloud, &mut ad, config.naming)
    } else {
        Joins::new()
    };
    let build_secs = built.elapsed().as_secs_f64();
    let (inputs_rss, _) = rss();
    let input = Input {
        cloud: &cloud,
        ad: &ad,
        joins: &joins,
        config: &config,
        // After a cycle the store holds the image just planned from.
        previous: converged.then_some(&cloud),
        ad_changed: None,
    };
    let (started, cpu_before) = (Instant::now(), cpu());
    let plan = wb_engine::plan(&input);
    let secs = started.elapsed().as_secs_f64();
    let cpu_secs = cpu() - cpu_before;
    let (_, peak) = rss();
    let counts = plan.counts();
    let member_total: usize = cloud.groups.values().map(|g| g.members.len()).sum();
    println!(
        "{scenario:<9} groups {groups} memberships {member_total} users {users}: plan {secs:.2} s (cpu {cpu_secs:.2} s), \
         peak RSS {peak:.0} MiB (inputs {inputs_rss:.0} MiB, built in {build_secs:.1} s); \
         {} operations ({} creates, {} member adds)",
        plan.operations.len(),
        counts.creates,
        counts.member_adds,
    );
    if converged && scenario_incremental() {
        // A cycle after a delta round that changed 100 groups (the image is the same:
        // what is timed is planning them and what they drag along).
        let touched: BTreeSet<String> = cloud
            .groups
            .keys()
            .step_by(groups / 100 + 1)
            .cloned()
            .collect();
        let (started, cpu_before) = (Instant::now(), cpu());
        let part = wb_engine::plan_groups(&input, &touched);
        println!(
            "{:<9} plan_groups of {} touched groups: {:.2} s (cpu {:.2} s), {} outcomes",
            "",
            touched.len(),
            started.elapsed().as_secs_f64(),
            cpu() - cpu_before,
            part.groups.len()
        );
    }
    if converged && scenario_incremental() {
        // A cycle after one user joined and one left the biggest group: planned from what
        // changed, in full and from the member delta (with the last outcomes).
        let big = cloud
            .groups
            .values()
            .max_by_key(|g| g.members.len())
            .map(|g| g.id.clone())
            .unwrap_or_default();
        let mut after = cloud.clone();
        if let Some(g) = after.groups.get_mut(&big) {
            let user = |id: &str| MemberRef {
                kind: MemberKind::User,
                id: id.into(),
            };
            let outside = cloud.users.keys().find(|u| !g.members.contains(&user(u)));
            let outside = outside.map(|u| user(u));
            if let Some(first) = g.members.iter().next().cloned() {
                g.members.remove(&first);
            }
            g.members.extend(outside);
        }
        let input = Input {
            cloud: &after,
            previous: Some(&cloud),
            ..input
        };
        let changes = wb_engine::Changes {
            groups: BTreeSet::from([big.clone()]),
            ..Default::default()
        };
        let touched = wb_engine::touched_parts(&input, &changes);
        let last: Vec<&wb_model::GroupOutcome> = plan
            .groups
            .iter()
            .filter(|g| touched.alone.contains(&g.id))
            .collect();
        let members = after.groups.get(&big).map_or(0, |g| g.members.len());
        for (how, last) in [("in full", &[][..]), ("from the member delta", &last[..])] {
            let (started, cpu_before) = (Instant::now(), cpu());
            let (part, from_delta) = wb_engine::plan_groups_with(&input, &touched.all, last);
            println!(
                "{:<9} one user in, one out of a {members}-member group, planned {how}: {:.3} s (cpu {:.3} s), {} operations, {from_delta} group(s) from the delta",
                "",
                started.elapsed().as_secs_f64(),
                cpu() - cpu_before,
                part.operations.len()
            );
        }
    }
    if converged && !plan.operations.is_empty() {
        eprintln!(
            "the converged image is not what the first plan makes: {:#?}",
            &plan.operations[..plan.operations.len().min(3)]
        );
        std::process::exit(1);
    }
}

fn main() {
    let scenario = std::env::args().nth(1).unwrap_or_else(|| "both".into());
    match scenario.as_str() {
        "first" | "converged" => run(&scenario),
        "both" => {
            let exe = std::env::current_exe().expect("the example's own path");
            for s in ["first", "converged"] {
                let status = Command::new(&exe).arg(s).status().expect("run a scenario");
                if !status.success() {
                    std::process::exit(status.code().unwrap_or(1));
                }
            }
        }
        other => {
            eprintln!("unknown scenario {other}: both, first or converged");
            std::process::exit(2);
        }
    }
}
