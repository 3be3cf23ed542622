//! End-to-end: the cloud-side admin commands (`writeback cloud …`, SPEC §7) against graph-sim,
//! checked by reading the tenant back through Graph as an administrator would.

mod support;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use support::*;

const GROUP_UNIFIED: &str = "62375ab9-6b52-47ed-826b-58e47e0e304b";

/// writebackConfiguration of a group as Graph (beta) shows it.
async fn writeback_of(w: &World, id: &str) -> Value {
    let (status, v) = w
        .graph(
            "GET",
            &format!("/beta/groups/{id}?$select=id,writebackConfiguration"),
            None,
        )
        .await;
    assert_eq!(status, 200, "GET group {id}: {v}");
    v["writebackConfiguration"].clone()
}

/// The Group.Unified setting, if the tenant has one.
async fn group_unified_setting(w: &World) -> Option<Value> {
    let (status, v) = w.graph("GET", "/v1.0/groupSettings", None).await;
    assert_eq!(status, 200, "GET groupSettings: {v}");
    v["value"]
        .as_array()
        .expect("value array")
        .iter()
        .find(|s| s["templateId"] == GROUP_UNIFIED)
        .cloned()
}

fn setting_value(setting: &Value, name: &str) -> Option<String> {
    setting["values"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == name)
        .and_then(|v| v["value"].as_str())
        .map(str::to_string)
}

fn expect_code(r: &SyncResult, code: i32, what: &str) {
    assert_eq!(
        r.code, code,
        "exit code of {what}\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn disable_m365_previews_then_switches_off_only_groups_left_at_null() {
    let w = World::new("cloud-dism365").await;
    let null_a = w.m365_group("Team Alpha", None, None).await;
    let null_b = w.m365_group("Team Beta", None, None).await;
    let on = w
        .m365_group("Team On", Some(true), Some("universalDistributionGroup"))
        .await;
    let off = w.m365_group("Team Off", Some(false), None).await;
    let security = w.security_group("SG-Untouched", None, None).await;

    // Preview: lists exactly the null M365 groups, writes nothing.
    let r = w.writeback(&["cloud", "disable-m365", "--json"]);
    expect_code(&r, 0, "disable-m365 preview");
    let preview = r.json();
    assert_eq!(preview["preview"], true);
    let listed: BTreeSet<String> = preview["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .map(|g| g["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(listed, BTreeSet::from([null_a.clone(), null_b.clone()]));
    assert_eq!(preview["disabled"], 0);
    for id in [&null_a, &null_b] {
        assert_eq!(writeback_of(&w, id).await["isEnabled"], Value::Null);
    }
    let text = w.writeback(&["cloud", "disable-m365"]);
    expect_code(&text, 0, "disable-m365 preview (text)");
    assert!(text.stdout.contains("Team Alpha") && text.stdout.contains("--yes"));

    // --yes: the null ones become false; true, false and the security group are left alone.
    let r = w.writeback(&["cloud", "disable-m365", "--yes", "--json"]);
    expect_code(&r, 0, "disable-m365 --yes");
    let done = r.json();
    assert_eq!(done["preview"], false);
    assert_eq!(done["disabled"], 2);
    assert_eq!(done["already_enabled"], 1);
    assert_eq!(done["already_disabled"], 1);
    assert_eq!(done["failed"], json!([]));
    for id in [&null_a, &null_b, &off] {
        assert_eq!(writeback_of(&w, id).await["isEnabled"], false, "{id}");
    }
    let kept = writeback_of(&w, &on).await;
    assert_eq!(kept["isEnabled"], true);
    assert_eq!(kept["onPremisesGroupType"], "universalDistributionGroup");
    assert_eq!(writeback_of(&w, &security).await["isEnabled"], Value::Null);

    // Nothing is left to do on a second run.
    let again = w.writeback(&["cloud", "disable-m365", "--json"]).json();
    assert_eq!(again["candidates"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn default_m365_off_creates_the_setting_and_on_flips_it_back() {
    let w = World::new("cloud-default").await;
    assert!(group_unified_setting(&w).await.is_none(), "fresh tenant");
    let existing = w.m365_group("Before The Switch", None, None).await;

    let r = w.writeback(&["cloud", "default-m365", "off", "--json"]);
    expect_code(&r, 0, "default-m365 off");
    let report = r.json();
    assert_eq!(report["action"], "created");
    assert_eq!(report["before"], "true");
    assert_eq!(report["after"], "false");
    let setting = group_unified_setting(&w)
        .await
        .expect("the Group.Unified setting was created");
    assert_eq!(
        setting_value(&setting, "NewUnifiedGroupWritebackDefault").as_deref(),
        Some("false")
    );
    // Created from the template: the other values carry its defaults.
    assert_eq!(
        setting_value(&setting, "EnableGroupCreation").as_deref(),
        Some("true")
    );

    let new_off = w.m365_group("After Off", None, None).await;
    assert_eq!(writeback_of(&w, &new_off).await["isEnabled"], false);
    assert_eq!(
        writeback_of(&w, &existing).await["isEnabled"],
        Value::Null,
        "existing groups are not changed"
    );

    // An administrator's other choice in the same setting survives the flip.
    let id = setting["id"].as_str().expect("setting id");
    let (status, v) = w
        .graph(
            "PATCH",
            &format!("/v1.0/groupSettings/{id}"),
            Some(json!({"values": [{"name": "EnableGroupCreation", "value": "false"}]})),
        )
        .await;
    assert_eq!(status, 204, "{v}");

    let r = w.writeback(&["cloud", "default-m365", "on"]);
    expect_code(&r, 0, "default-m365 on");
    assert!(r.stdout.contains("false → true"), "{}", r.stdout);
    let setting = group_unified_setting(&w).await.expect("setting");
    assert_eq!(setting["id"], id, "updated in place, not recreated");
    assert_eq!(
        setting_value(&setting, "NewUnifiedGroupWritebackDefault").as_deref(),
        Some("true")
    );
    assert_eq!(
        setting_value(&setting, "EnableGroupCreation").as_deref(),
        Some("false")
    );
    let new_on = w.m365_group("After On", None, None).await;
    assert_eq!(writeback_of(&w, &new_on).await["isEnabled"], true);

    // Asking for what is already so writes nothing.
    let same = w
        .writeback(&["cloud", "default-m365", "on", "--json"])
        .json();
    assert_eq!(same["action"], "unchanged");
}

#[tokio::test(flavor = "multi_thread")]
async fn enable_by_display_name_sets_the_type_and_disable_by_id_switches_off() {
    let w = World::new("cloud-enable").await;
    let sg = w.security_group("SG-Finance, R&D + Ops", None, None).await;
    let team = w.m365_group("Team O'Brien", None, None).await;

    let r = w.writeback(&[
        "cloud",
        "enable",
        "SG-Finance, R&D + Ops",
        "--type",
        "universalSecurityGroup",
        "--json",
    ]);
    expect_code(&r, 0, "enable SG by name");
    let change = r.json();
    assert_eq!(change["id"], sg.as_str());
    assert_eq!(change["written"], true);
    let cfg = writeback_of(&w, &sg).await;
    assert_eq!(cfg["isEnabled"], true);
    assert_eq!(cfg["onPremisesGroupType"], "universalSecurityGroup");

    let r = w.writeback(&[
        "cloud",
        "enable",
        "Team O'Brien",
        "--type",
        "universalDistributionGroup",
    ]);
    expect_code(&r, 0, "enable M365 by name");
    let cfg = writeback_of(&w, &team).await;
    assert_eq!(cfg["isEnabled"], true);
    assert_eq!(cfg["onPremisesGroupType"], "universalDistributionGroup");

    let r = w.writeback(&["cloud", "disable", &team, "--json"]);
    expect_code(&r, 0, "disable by id");
    let cfg = writeback_of(&w, &team).await;
    assert_eq!(cfg["isEnabled"], false);
    assert_eq!(
        cfg["onPremisesGroupType"], "universalDistributionGroup",
        "disable keeps the chosen type"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ambiguous_or_unknown_names_are_usage_errors_and_write_nothing() {
    let w = World::new("cloud-names").await;
    let first = w.security_group("SG-Twin", None, None).await;
    let second = w.security_group("SG-Twin", None, None).await;

    let r = w.writeback(&["cloud", "enable", "SG-Twin"]);
    expect_code(&r, 2, "enable an ambiguous name");
    assert!(
        r.stderr.contains(&first) && r.stderr.contains(&second),
        "the message lists both ids: {}",
        r.stderr
    );
    for id in [&first, &second] {
        assert_eq!(writeback_of(&w, id).await["isEnabled"], Value::Null);
    }

    let r = w.writeback(&["cloud", "disable", "SG-Nobody"]);
    expect_code(&r, 2, "disable an unknown name");
    assert!(r.stderr.contains("SG-Nobody"), "{}", r.stderr);

    // An id-shaped argument that is no group's id is just as unknown.
    let r = w.writeback(&["cloud", "disable", "00000000-0000-4000-8000-000000000000"]);
    expect_code(&r, 2, "disable an unknown id");

    // "Exact" means exactly: a name differing in case is not a match.
    let r = w.writeback(&["cloud", "enable", "sg-twin"]);
    expect_code(&r, 2, "enable a name differing in case");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_security_group_is_not_enabled_as_a_distribution_group() {
    let w = World::new("cloud-sectype").await;
    let sg = w.security_group("SG-Wrong-Type", None, None).await;

    let r = w.writeback(&[
        "cloud",
        "enable",
        "SG-Wrong-Type",
        "--type",
        "universalDistributionGroup",
    ]);
    expect_code(&r, 2, "enable a security group as a distribution group");
    assert!(
        r.stderr
            .contains("security groups can only be written back as universalSecurityGroup"),
        "{}",
        r.stderr
    );
    let cfg = writeback_of(&w, &sg).await;
    assert_eq!(cfg["isEnabled"], Value::Null);
    assert_eq!(cfg["onPremisesGroupType"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_graph_credentials_exit_3_without_showing_the_secret() {
    let w = World::new("cloud-auth").await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_writeback"))
        .args(["cloud", "disable-m365", "--config"])
        .arg(w.config_path())
        .env("WB_E2E_SECRET", "not-the-secret-xyz")
        .env("WB_E2E_AD_PASSWORD", &w.dc.password)
        .env("WRITEBACK_LOG", "warn")
        .output()
        .expect("writeback runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert!(!stderr.contains("not-the-secret-xyz"), "{stderr}");
}

/// A security group synced from AD (graph-sim's seeding extension).
async fn synced_security_group(w: &World, name: &str) -> String {
    let (status, v) = w
        .graph(
            "POST",
            "/beta/groups",
            Some(json!({
                "displayName": name,
                "mailEnabled": false,
                "mailNickname": name.replace(|c: char| !c.is_ascii_alphanumeric(), ""),
                "securityEnabled": true,
                "groupTypes": [],
                "onPremisesSyncEnabled": true,
            })),
        )
        .await;
    assert_eq!(status, 201, "POST synced group: {v}");
    v["id"].as_str().expect("id").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn status_counts_groups_by_kind_and_setting_and_the_next_cycle_follows_the_rules() {
    let mut w = World::new("cloud-status").await;
    w.m365_group("Team Null", None, None).await;
    w.m365_group("Team On", Some(true), None).await;
    w.m365_group("Team Off", Some(false), None).await;
    w.security_group("SG-Fin-Null", None, None).await;
    w.security_group("SG-Fin-On", Some(true), Some("universalSecurityGroup"))
        .await;
    w.security_group("SG-Other-Null", None, None).await;
    let bad = w
        .security_group(
            "SG-Bad-Type",
            Some(true),
            Some("universalDistributionGroup"),
        )
        .await;
    synced_security_group(&w, "SG-Fin-Synced").await;

    let r = w.writeback(&["cloud", "status", "--json"]);
    expect_code(&r, 0, "cloud status");
    let s = r.json();
    assert_eq!(
        s["microsoft365"],
        json!({"groups": 3, "enabled": 1, "disabled": 1, "default": 1})
    );
    assert_eq!(
        s["security"],
        json!({"groups": 4, "enabled": 2, "disabled": 0, "default": 2})
    );
    assert_eq!(s["unsupported"]["groups"], 0);
    assert_eq!(s["synced_from_ad"], 1);
    assert_eq!(
        s["tenant_default"],
        json!({"value": "true", "source": "no setting"})
    );
    // Microsoft's defaults: Team Null and Team On, SG-Fin-On; SG-Bad-Type is refused.
    assert_eq!(s["next_cycle"]["written"], 3, "{s}");
    assert_eq!(s["next_cycle"]["microsoft365"], 2);
    assert_eq!(s["next_cycle"]["security"], 1);
    assert_eq!(s["next_cycle"]["invalid"][0]["id"], bad.as_str());
    let text = w.writeback(&["cloud", "status"]);
    expect_code(&text, 0, "cloud status (text)");
    assert!(text.stdout.contains("true (no setting)"), "{}", text.stdout);

    // A scope rule brings SG-Fin-Null in (not the synced one), as the next cycle will.
    w.rules_toml = r#"
[[writeback.rule]]
match = { kind = "security", name_prefix = "SG-Fin" }
enable = true
"#
    .to_string();
    w.write_config();
    let s = w.writeback(&["cloud", "status", "--json"]).json();
    assert_eq!(s["next_cycle"]["written"], 4, "{s}");
    assert_eq!(s["next_cycle"]["security"], 2);
    assert_eq!(
        s["next_cycle"]["because"]["rule 1 (kind=security, name_prefix=SG-Fin)"], 1,
        "{s}"
    );

    // The tenant default before and after `cloud default-m365 off`.
    expect_code(
        &w.writeback(&["cloud", "default-m365", "off"]),
        0,
        "default-m365 off",
    );
    let s = w.writeback(&["cloud", "status", "--json"]).json();
    assert_eq!(
        s["tenant_default"],
        json!({"value": "false", "source": "setting"})
    );
}

/// The ids of the groups listed under `key` of an `enable --match` report.
fn listed(report: &Value, key: &str) -> BTreeSet<String> {
    report[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in {report}"))
        .iter()
        .map(|g| g["id"].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn enable_match_previews_then_enables_exactly_the_matching_security_groups() {
    let w = World::new("cloud-bulk").await;
    let payroll = w.security_group("SG-Fin-Payroll", None, None).await;
    let audit = w
        .security_group("SG-Fin-Audit 💶 ✓", Some(false), None)
        .await;
    let already = w
        .security_group("SG-Fin-Already", Some(true), Some("universalSecurityGroup"))
        .await;
    let synced = synced_security_group(&w, "SG-Fin-Synced").await;
    let hr = w.security_group("SG-HR", None, None).await;
    let lower = w.security_group("sg-fin-lowercase", None, None).await;
    let team = w.m365_group("SG-Fin Team", None, None).await;

    let args = [
        "cloud", "enable", "--match", "^SG-Fin", "--kind", "security",
    ];
    let r = w.writeback(&[&args[..], &["--json"]].concat());
    expect_code(&r, 0, "enable --match preview");
    let preview = r.json();
    assert_eq!(preview["preview"], true);
    assert_eq!(
        listed(&preview, "candidates"),
        BTreeSet::from([payroll.clone(), audit.clone()])
    );
    assert_eq!(preview["already_enabled"], 1);
    assert_eq!(
        listed(&preview, "synced_from_ad"),
        BTreeSet::from([synced.clone()])
    );
    for id in [&payroll, &synced, &hr, &lower, &team] {
        assert_eq!(writeback_of(&w, id).await["isEnabled"], Value::Null, "{id}");
    }
    assert_eq!(writeback_of(&w, &audit).await["isEnabled"], false);
    let text = w.writeback(&args);
    expect_code(&text, 0, "enable --match preview (text)");
    assert!(
        text.stdout.contains("SG-Fin-Audit 💶 ✓") && text.stdout.contains("--yes"),
        "{}",
        text.stdout
    );

    let r = w.writeback(
        &[
            &args[..],
            &["--type", "universalSecurityGroup", "--yes", "--json"],
        ]
        .concat(),
    );
    expect_code(&r, 0, "enable --match --yes");
    let done = r.json();
    assert_eq!(done["enabled"], 2, "{done}");
    assert_eq!(done["failed"], json!([]));
    for id in [&payroll, &audit, &already] {
        let cfg = writeback_of(&w, id).await;
        assert_eq!(cfg["isEnabled"], true, "{id}");
        assert_eq!(cfg["onPremisesGroupType"], "universalSecurityGroup", "{id}");
    }
    // Not matching (name, case, kind) or synced from AD: untouched.
    for id in [&synced, &hr, &lower, &team] {
        let cfg = writeback_of(&w, id).await;
        assert_eq!(cfg["isEnabled"], Value::Null, "{id}");
        assert_eq!(cfg["onPremisesGroupType"], Value::Null, "{id}");
    }

    // A second run finds nothing left to do (and is how an interrupted run is finished).
    let again = w.writeback(
        &[
            &args[..],
            &["--type", "universalSecurityGroup", "--yes", "--json"],
        ]
        .concat(),
    );
    expect_code(&again, 0, "enable --match again");
    let again = again.json();
    assert_eq!(again["candidates"], json!([]));
    assert_eq!(again["already_enabled"], 3);
    let text = w.writeback(&[&args[..], &["--yes"]].concat());
    assert!(text.stdout.contains("Nothing to do"), "{}", text.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn enable_match_under_throttling_enables_the_same_groups_after_retry_after() {
    let w = World::new("cloud-bulk-429").await;
    let mut matching = BTreeSet::new();
    // More than one $batch (20 requests) of groups to enable.
    for n in 0..27 {
        matching.insert(
            w.security_group(&format!("SG-Fin-{n:02}"), None, None)
                .await,
        );
    }
    let other = w.security_group("SG-Ops", None, None).await;
    let synced = synced_security_group(&w, "SG-Fin-Synced").await;

    let (status, v) = w.graph("DELETE", "/_sim/stats", None).await;
    assert!(status < 300, "reset stats: {v}");
    let (status, v) = w
        .graph(
            "POST",
            "/_sim/faults",
            Some(json!({"throttle_share": 0.3, "retry_after_secs": 1})),
        )
        .await;
    assert!(status < 300, "set faults: {v}");
    let started = std::time::Instant::now();
    let r = w.writeback(&["cloud", "enable", "--match", "^SG-Fin", "--yes", "--json"]);
    let elapsed = started.elapsed();
    let (_, stats) = w.graph("GET", "/_sim/stats", None).await;
    let (status, v) = w.graph("POST", "/_sim/faults", Some(json!({}))).await;
    assert!(status < 300, "clear faults: {v}");

    expect_code(&r, 0, "enable --match --yes under throttling");
    let done = r.json();
    assert_eq!(listed(&done, "candidates"), matching);
    assert_eq!(done["enabled"], 27, "{done}");
    assert_eq!(done["failed"], json!([]));
    for id in &matching {
        assert_eq!(writeback_of(&w, id).await["isEnabled"], true, "{id}");
    }
    for id in [&other, &synced] {
        assert_eq!(writeback_of(&w, id).await["isEnabled"], Value::Null, "{id}");
    }
    // Throttled answers were waited out for their Retry-After (1 s), not retried at once.
    let throttled = stats["throttled"].as_u64().expect("throttled count");
    assert!(throttled > 0, "30% of requests throttled: {stats}");
    assert!(
        elapsed >= std::time::Duration::from_secs(1),
        "{throttled} throttled answers waited out in {elapsed:?}"
    );
    assert!(
        r.stderr.contains("wait_ms=1000") && !r.stderr.contains("wait_ms=0"),
        "waits follow Retry-After: {}",
        r.stderr
    );

    let again = w
        .writeback(&["cloud", "enable", "--match", "^SG-Fin", "--json"])
        .json();
    assert_eq!(again["candidates"], json!([]), "nothing left to do");
}

#[tokio::test(flavor = "multi_thread")]
async fn enable_match_refuses_a_bad_regex_or_a_security_group_typed_otherwise() {
    let w = World::new("cloud-bulk-refused").await;
    let sg = w.security_group("SG-Fin-Typed", None, None).await;
    let team = w.m365_group("SG-Fin Team", None, None).await;

    let r = w.writeback(&["cloud", "enable", "--match", "SG-(Fin", "--yes"]);
    expect_code(&r, 2, "enable --match with an invalid regex");
    assert!(r.stderr.contains("--match"), "{}", r.stderr);

    // The M365 group alone could be a distribution group; the security group cannot: nothing
    // is written to either.
    let r = w.writeback(&[
        "cloud",
        "enable",
        "--match",
        "^SG-Fin",
        "--type",
        "universalDistributionGroup",
        "--yes",
    ]);
    expect_code(&r, 2, "enable --match a security group as distribution");
    assert!(
        r.stderr.contains("SG-Fin-Typed")
            && r.stderr
                .contains("security groups can only be written back as universalSecurityGroup"),
        "{}",
        r.stderr
    );
    for id in [&sg, &team] {
        assert_eq!(writeback_of(&w, id).await["isEnabled"], Value::Null, "{id}");
    }
}
