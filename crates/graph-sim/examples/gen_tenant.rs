//! Generates a big tenant file for graph-sim benchmarks: N users, G security groups and
//! M memberships (a few large groups, many small ones), deterministic for a given size.
//!
//! `cargo run --release -p graph-sim --example gen_tenant -- USERS GROUPS MEMBERSHIPS OUT.json`

use serde_json::{json, Value};
use std::io::Write;

fn user_id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

fn group_id(i: usize) -> String {
    format!("10000000-0000-4000-8000-{i:012}")
}

/// Group sizes: 0.1% of the groups take 20% of the memberships, the rest share the others.
fn group_sizes(users: usize, groups: usize, memberships: usize) -> Vec<usize> {
    let large = (groups / 1000).max(1).min(groups);
    let large_total = memberships / 5;
    let large_size = (large_total / large).min(users);
    let small = groups - large;
    let rest = memberships.saturating_sub(large_size * large);
    let mut sizes = vec![large_size; large];
    for i in 0..small {
        // Spread the remainder evenly, so the total is exactly `memberships` when it fits.
        let share = rest / small + usize::from(i < rest % small);
        sizes.push(share.min(users));
    }
    sizes
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [users, groups, memberships, out] = args.as_slice() else {
        anyhow::bail!("usage: gen_tenant USERS GROUPS MEMBERSHIPS OUT.json");
    };
    let (users, groups, memberships): (usize, usize, usize) =
        (users.parse()?, groups.parse()?, memberships.parse()?);
    anyhow::ensure!(users > 0 && groups > 0, "USERS and GROUPS must be positive");
    let user_values: Vec<Value> = (0..users)
        .map(|i| {
            json!({
                "id": user_id(i),
                "displayName": format!("User {i}"),
                "userPrincipalName": format!("user{i}@bench.example.test"),
                "onPremisesSyncEnabled": i % 10 != 0,
                "onPremisesSamAccountName": format!("user{i}"),
                "onPremisesSecurityIdentifier": format!("S-1-5-21-1000-2000-3000-{}", 10_000 + i),
            })
        })
        .collect();
    // A cheap deterministic walk through the users: consecutive ids from a scattered start.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let group_values: Vec<Value> = group_sizes(users, groups, memberships)
        .into_iter()
        .enumerate()
        .map(|(g, size)| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let start = (seed >> 33) as usize % users;
            let members: Vec<String> = (0..size).map(|k| user_id((start + k) % users)).collect();
            json!({
                "id": group_id(g),
                "displayName": format!("SG-Bench-{g:05}"),
                "mailEnabled": false,
                "mailNickname": format!("sg-bench-{g}"),
                "securityEnabled": true,
                "groupTypes": [],
                "writebackConfiguration": {"isEnabled": true, "onPremisesGroupType": "universalSecurityGroup"},
                "members": members,
                "owners": [],
            })
        })
        .collect();
    let doc = json!({"users": user_values, "groups": group_values, "settings": []});
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    serde_json::to_writer(&mut file, &doc)?;
    file.flush()?;
    Ok(())
}
