//! Hostile input, generated (issue 12): display names and descriptions drawn by a seeded
//! generator — RFC 4514 specials, a leading `#` or space, trailing spaces, every Unicode
//! plane (astral emoji, combining marks, right-to-left, private use, tags), control
//! characters and NUL, bidi overrides, 300+ characters, names that collide after the cut to
//! 51 UTF-16 units and names that differ only in case — written against the lab DC. Each
//! group is written exactly once, with the CN, sAMAccountName, displayName and description
//! SPEC §4/§10 give (read back from AD, computed here from the SPEC, not by the engine), or
//! refused with an error naming it; a second cycle writes nothing. A second test feeds
//! generated malformed group-delta pages (graph-sim's `group_delta_page_edits` fault): the
//! cycle fails naming the object and property, nothing of the round is applied, and the
//! delta link is not advanced (the next cycle brings the change).
//!
//! `WB_SEED=<n>` replays a run; failures print the seed.

mod support;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use support::*;

fn seed() -> u64 {
    let seed = std::env::var("WB_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        });
    eprintln!("WB_SEED={seed}");
    seed
}

fn units(s: &str) -> usize {
    s.encode_utf16().count()
}

// ---- what SPEC §4 and §10 say, written from the SPEC --------------------------------------

/// Control characters and bidi overrides/isolates: never in a CN or sAMAccountName (§10).
fn not_in_names(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The longest prefix of at most `max` UTF-16 units that does not split a character.
fn left_units(s: &str, max: usize) -> String {
    let mut n = 0;
    s.chars()
        .take_while(|c| {
            n += c.len_utf16();
            n <= max
        })
        .collect()
}

/// `Left(Trim(displayName), 51) + "_" + last 12 of the id` (display-name naming), the name
/// cleaned first; `Group_<id>` when nothing is left.
fn expected_cn(name: &str, id: &str) -> String {
    let clean: String = name.chars().filter(|c| !not_in_names(*c)).collect();
    let left = left_units(clean.trim(), 51);
    if left.is_empty() {
        format!("Group_{id}")
    } else {
        format!("{left}_{}", &id[id.len() - 12..])
    }
}

/// sAMAccountName from the CN: `" / \ [ ] : ; | = , + * ? < >` (and `@`, writeback's
/// documented choice) become `_`, at most 64 units, no trailing dot or space.
fn expected_sam(cn: &str) -> String {
    let replaced: String = cn
        .chars()
        .filter(|c| !not_in_names(*c))
        .map(|c| {
            if "\"/\\[]:;|=,+*?<>@".contains(c) {
                '_'
            } else {
                c
            }
        })
        .collect();
    left_units(&replaced, 64)
        .trim_end_matches(['.', ' '])
        .to_string()
}

fn expected_display_name(name: &str) -> Option<String> {
    let v = left_units(&name.replace('\0', ""), 256);
    (!v.is_empty()).then_some(v)
}

fn expected_description(d: &str) -> Option<String> {
    let v = left_units(d.replace('\0', "").trim(), 448);
    (!v.is_empty()).then_some(v)
}

// ---- the generator --------------------------------------------------------------------------

fn pick(rng: &mut StdRng, ranges: &[(u32, u32)]) -> char {
    loop {
        let (lo, hi) = ranges[rng.gen_range(0..ranges.len())];
        if let Some(c) = char::from_u32(rng.gen_range(lo..=hi)) {
            return c;
        }
    }
}

/// One piece of a hostile name.
fn piece(rng: &mut StdRng) -> String {
    let n = rng.gen_range(1..6);
    let from = |rng: &mut StdRng, ranges: &[(u32, u32)]| -> String {
        (0..n).map(|_| pick(rng, ranges)).collect()
    };
    match rng.gen_range(0..12) {
        0 => from(rng, &[(0x61, 0x7a), (0x41, 0x5a), (0x30, 0x39)]),
        1 => (0..n)
            .map(|_| [',', '+', '"', '\\', '<', '>', ';', '=', '#', ' '][rng.gen_range(0..10)])
            .collect(),
        // Latin-1 and Latin Extended, Greek, Cyrillic, CJK.
        2 => from(
            rng,
            &[
                (0xc0, 0x24f),
                (0x370, 0x3ff),
                (0x400, 0x4ff),
                (0x4e00, 0x9fff),
            ],
        ),
        // Astral: emoji, other SMP, CJK Extension B (SIP), tags (SSP).
        3 => from(
            rng,
            &[
                (0x1f300, 0x1f6ff),
                (0x10000, 0x1ffff),
                (0x20000, 0x2a6df),
                (0xe0001, 0xe007f),
            ],
        ),
        // Combining marks after a letter.
        4 => format!("e{}", from(rng, &[(0x300, 0x36f)])),
        // Right-to-left: Hebrew, Arabic.
        5 => from(rng, &[(0x5d0, 0x5ea), (0x600, 0x6ff)]),
        // Private use (BMP and plane 15).
        6 => from(rng, &[(0xe000, 0xf8ff), (0xf0000, 0xffffd)]),
        // Control characters and NUL, C1.
        7 => from(rng, &[(0x0, 0x1f), (0x7f, 0x9f)]),
        // Bidi overrides and isolates, zero-width characters.
        8 => from(rng, &[(0x202a, 0x202e), (0x2066, 0x2069), (0x200b, 0x200f)]),
        9 => "\u{FEFF}\u{FFFD}\u{FFFC}".into(),
        10 => " ".repeat(n),
        _ => from(rng, &[(0x21, 0x7e)]),
    }
}

fn hostile_name(rng: &mut StdRng) -> String {
    let mut s = String::new();
    if rng.gen_bool(0.2) {
        s.push(['#', ' '][rng.gen_range(0..2)]);
    }
    for _ in 0..rng.gen_range(1..8) {
        s.push_str(&piece(rng));
    }
    if rng.gen_bool(0.1) {
        // 300+ characters.
        while s.chars().count() < 300 {
            s.push_str(&piece(rng));
        }
    }
    if rng.gen_bool(0.2) {
        s.push_str("  ");
    }
    s
}

/// The names of one run: hostile names, plus pairs that collide after the cut to 51 units
/// and pairs that differ only in case.
fn names(rng: &mut StdRng, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        match rng.gen_range(0..6) {
            0 => {
                let stem: String = (0..60)
                    .map(|_| pick(rng, &[(0x41, 0x5a), (0x1f600, 0x1f64f)]))
                    .collect();
                let stem = left_units(&stem, 51);
                out.push(format!("{stem}{}", hostile_name(rng)));
                out.push(format!("{stem}{}", hostile_name(rng)));
            }
            1 => {
                let name = hostile_name(rng);
                out.push(name.to_uppercase());
                out.push(name.to_lowercase());
            }
            _ => out.push(hostile_name(rng)),
        }
    }
    out.truncate(n);
    out
}

// ---- the tests ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn generated_hostile_names_are_written_once_as_spec_says_and_left_alone() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = World::new("hostile-gen").await;
    w.writeback_toml = "naming = \"display-name\"".into();
    w.write_config();
    let names = names(&mut rng, 200);
    let mut groups: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        let description = if rng.gen_bool(0.5) {
            hostile_name(&mut rng)
        } else {
            String::new()
        };
        let mut body = json!({
            "displayName": name,
            "mailEnabled": false,
            "mailNickname": format!("hostile{i}"),
            "securityEnabled": true,
            "groupTypes": [],
            "writebackConfiguration": {"isEnabled": true, "onPremisesGroupType": null},
        });
        if !description.is_empty() {
            body["description"] = json!(description);
        }
        let (status, v) = w.graph("POST", "/beta/groups", Some(body)).await;
        assert_eq!(status, 201, "WB_SEED={seed}: POST group {name:?}: {v}");
        let id = v["id"].as_str().expect("id").to_string();
        groups.insert(id, (name.clone(), description));
    }

    let first = w.writeback(&["sync", "--json"]);
    assert!(
        first.code == 0 || first.code == 1,
        "WB_SEED={seed}: exit {}\n{}\n{}",
        first.code,
        first.stdout,
        first.stderr
    );
    let first = first.json();
    let refused: HashSet<String> = first["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let id = e["group"].as_str().unwrap_or_default().to_string();
            assert!(
                groups.contains_key(&id),
                "WB_SEED={seed}: an error that names no group of the run: {e}"
            );
            id
        })
        .collect();

    let ad = w.ad_groups().await;
    let mut by_anchor: BTreeMap<String, Vec<&AdView>> = BTreeMap::new();
    for g in ad.values() {
        if let Some(a) = &g.admin_description {
            by_anchor.entry(a.clone()).or_default().push(g);
        }
    }
    let mut sams = HashSet::new();
    for (id, (name, description)) in &groups {
        let found = by_anchor
            .get(&format!("Group_{id}"))
            .cloned()
            .unwrap_or_default();
        if refused.contains(id) {
            assert!(
                found.is_empty(),
                "WB_SEED={seed}: {name:?} refused but written"
            );
            continue;
        }
        assert_eq!(
            found.len(),
            1,
            "WB_SEED={seed}: {name:?} written {} times",
            found.len()
        );
        let g = found[0];
        let cn = expected_cn(name, id);
        assert_eq!(g.cn, cn, "WB_SEED={seed}: CN of {name:?} ({id})");
        assert!(units(&g.cn) <= 64 && !g.cn.chars().any(not_in_names));
        let sam = g.sam.clone().unwrap_or_default();
        assert_eq!(
            sam,
            expected_sam(&cn),
            "WB_SEED={seed}: sAMAccountName of {name:?}"
        );
        assert!(
            sams.insert(sam.to_lowercase()),
            "WB_SEED={seed}: sAMAccountName {sam:?} twice"
        );
        assert_eq!(
            g.display_name,
            expected_display_name(name),
            "WB_SEED={seed}: displayName of {name:?}"
        );
        assert_eq!(
            g.description,
            expected_description(description),
            "WB_SEED={seed}: description {description:?} of {name:?}"
        );
    }
    assert_eq!(
        by_anchor.len(),
        groups.len() - refused.len(),
        "WB_SEED={seed}: AD groups of the run"
    );

    let second = w.sync_expect(if refused.is_empty() { 0 } else { 1 }, &[]);
    assert_eq!(
        second["ldapWrites"], 0,
        "WB_SEED={seed}: the second sync wrote: {second}"
    );
    eprintln!(
        "{} hostile names: {} written, {} refused",
        groups.len(),
        groups.len() - refused.len(),
        refused.len()
    );
}

/// Sets graph-sim's fault switches (absent ones are off).
async fn faults(sim_url: &str, switches: Value) {
    let resp = reqwest::Client::new()
        .post(format!("{sim_url}/_sim/faults"))
        .json(&switches)
        .send()
        .await
        .expect("graph-sim /_sim/faults");
    assert!(resp.status().is_success(), "faults: {}", resp.status());
}

/// A value of the wrong type for a group property of `shape` (never null: null clears a
/// property, which is valid).
fn wrong_value(rng: &mut StdRng, shape: &str) -> Value {
    let candidates: Vec<Value> = vec![
        json!(rng.gen::<i64>()),
        json!(u64::MAX),
        json!(rng.gen::<f64>() * 1e300),
        json!(rng.gen_bool(0.5)),
        json!("text"),
        json!([]),
        json!([1, "a"]),
        json!({}),
        json!({"isEnabled": "yes"}),
        json!([{"id": 5}]),
    ];
    loop {
        let v = candidates[rng.gen_range(0..candidates.len())].clone();
        let fits = match shape {
            "text" => v.is_string(),
            "flag" => v.is_boolean(),
            "texts" => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            "writeback" => v
                .as_object()
                .is_some_and(|o| o.get("isEnabled").is_none_or(Value::is_boolean)),
            _ => v.as_array().is_some_and(|a| a.is_empty()),
        };
        if !fits {
            return v;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_malformed_delta_pages_apply_nothing_and_keep_the_delta_link() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let w = World::new("hostile-json").await;
    let ids = [
        w.security_group("SG-Malformed-A", Some(true), None).await,
        w.security_group("SG-Malformed-B", Some(true), None).await,
    ];
    w.sync_ok();
    let properties = [
        ("displayName", "text"),
        ("description", "text"),
        ("mailNickname", "text"),
        ("securityEnabled", "flag"),
        ("mailEnabled", "flag"),
        ("onPremisesSyncEnabled", "flag"),
        ("groupTypes", "texts"),
        ("proxyAddresses", "texts"),
        ("writebackConfiguration", "writeback"),
        ("members@delta", "members"),
    ];
    for round in 0..12 {
        // A change the malformed round carries: a rename of one group.
        let target = &ids[round % 2];
        let new_name = format!("SG-Malformed-{round}-{}", rng.gen_range(0..1000));
        let (status, body) = w
            .graph(
                "PATCH",
                &format!("/v1.0/groups/{target}"),
                Some(json!({"displayName": new_name})),
            )
            .await;
        assert_eq!(status, 204, "{body}");
        let before = w.ad_group_of(target).await.expect("written");

        // The page of that round, mutated: the renamed group is its only item.
        let (edit, names): (Value, Vec<String>) = match rng.gen_range(0..6) {
            0..=2 => {
                let (prop, shape) = properties[rng.gen_range(0..properties.len())];
                let v = wrong_value(&mut rng, shape);
                (
                    json!([{"set": {"pointer": format!("/value/0/{}", prop.replace('/', "~1")), "value": v}}]),
                    vec![target.clone(), prop.to_string()],
                )
            }
            3 => (
                json!([{"set": {"pointer": "/value/0/id", "value": wrong_value(&mut rng, "text")}}]),
                vec!["id".to_string()],
            ),
            4 => {
                let (from, to) = [
                    ("\"displayName\":\"", "\"displayName\":\"\\ud800"),
                    ("\"securityEnabled\":true", "\"securityEnabled\":1e400"),
                    ("\"value\":[", "\"value\":[\"\\udc00\","),
                ][rng.gen_range(0..3)];
                (json!([{"text": {"from": from, "to": to}}]), vec![])
            }
            _ => {
                let edit = match rng.gen_range(0..4) {
                    0 => json!([{"truncate": {"bytes": rng.gen_range(1..60)}}]),
                    1 => json!([{"remove": {"pointer": "/value"}}]),
                    2 => json!([{"set": {"pointer": "/value", "value": {"value": []}}}]),
                    _ => {
                        json!([{"set": {"pointer": "/@odata.deltaLink", "value": rng.gen::<u32>()}}])
                    }
                };
                (edit, vec![])
            }
        };
        faults(&w.sim.url, json!({ "group_delta_page_edits": edit })).await;
        let r = w.writeback(&["sync", "--json"]);
        let ctx = format!(
            "WB_SEED={seed} round {round}: {edit}\nstdout: {}\nstderr: {}",
            r.stdout, r.stderr
        );
        assert_eq!(r.code, 3, "{ctx}");
        for n in &names {
            assert!(
                r.stderr.contains(n.as_str()),
                "the error names {n:?}: {ctx}"
            );
        }
        assert!(!r.stderr.contains("panicked"), "{ctx}");
        let after = w.ad_group_of(target).await.expect("still there");
        assert_eq!(after.guid, before.guid, "{ctx}");
        assert_eq!(
            after.display_name, before.display_name,
            "nothing applied: {ctx}"
        );

        // The delta link was not advanced: the next (clean) cycle brings the rename.
        let out = w.sync_ok();
        assert_eq!(out["mode"], "delta", "{ctx}\n{out}");
        assert_eq!(out["applied"]["deletes"], 0, "{out}");
        let renamed = w.ad_group_of(target).await.expect("still there");
        assert_eq!(renamed.guid, before.guid);
        assert_eq!(
            renamed.display_name.as_deref(),
            Some(new_name.as_str()),
            "{ctx}\n{out}"
        );
    }
    // Every group is still there, once.
    for id in &ids {
        assert!(w.ad_group_of(id).await.is_some());
    }
}
