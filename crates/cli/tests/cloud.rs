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
