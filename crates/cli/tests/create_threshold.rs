//! End-to-end: the create threshold — after the first cycle, a change that would create
//! more than `create_threshold` groups creates none (exit 4) until `sync --allow-creates`.

mod support;
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_bringing_more_groups_than_the_create_threshold_into_scope_creates_none_until_allowed(
) {
    let mut w = World::new("cthresh").await;
    w.writeback_toml = "create_threshold = 2".into();
    w.write_config();

    // The first cycle creates everything in scope, however many (plan previews it).
    let (u, _) = w.synced_user("ct-a", "Create Thresh A").await;
    let mut first = Vec::new();
    for i in 0..3 {
        let g = w
            .security_group(&format!("SG-CT-First-{i}"), Some(true), None)
            .await;
        first.push(g);
    }
    let out = w.sync_ok();
    assert_eq!(out["applied"]["creates"], 3, "{out}");

    // Groups left at the default (not written back) ...
    let mut bulk = Vec::new();
    for i in 0..3 {
        bulk.push(
            w.security_group(&format!("SG-CT-Bulk-{i}"), None, None)
                .await,
        );
    }
    // ... one of them nested in a written group; and cloud changes on written groups.
    w.add_member(&first[0], &bulk[0]).await;
    w.add_member(&first[1], &u).await;
    w.patch_group(&first[2], json!({"displayName": "SG-CT-First-2-Renamed"}))
        .await;
    let out = w.sync_ok();
    assert_eq!(out["applied"]["creates"], 0, "{out}");

    // A rule brings the three into scope: over the threshold of 2.
    w.rules_toml = "[[writeback.rule]]\nmatch = { kind = \"security\", name_prefix = \"SG-CT-Bulk-\" }\nenable = true".into();
    w.write_config();
    w.patch_group(&first[2], json!({"displayName": "SG-CT-First-2-Again"}))
        .await;
    let out = w.sync_expect(4, &[]);
    assert_eq!(out["status"], "stopped-by-threshold", "{out}");
    let message = out["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("3 group creates exceed create_threshold 2")
            && message.contains("--allow-creates"),
        "{message}"
    );
    assert_eq!(out["applied"]["creates"], 0, "{out}");
    assert_eq!(out["heldBack"]["creates"], 3, "{out}");
    assert_eq!(
        out["errors"],
        json!([]),
        "nothing of a group not created is tried: {out}"
    );
    for g in &bulk {
        assert!(w.ad_group_of(g).await.is_none(), "no group created");
    }
    // The rest of the cycle ran: the rename.
    let renamed = w.ad_group_of(&first[2]).await.expect("present");
    assert_eq!(renamed.display_name.as_deref(), Some("SG-CT-First-2-Again"));
    let runs = w.writeback(&["runs", "--json"]).json();
    assert_eq!(runs[0]["status"], "stopped-by-threshold");

    // Still over on the next cycle: a threshold stop is not a one-off.
    w.sync_expect(4, &[]);

    let out = w.sync_expect(0, &["--allow-creates"]);
    assert_eq!(out["applied"]["creates"], 3, "{out}");
    let nested = w.ad_group_of(&bulk[0]).await.expect("created");
    let parent = w.ad_group_of(&first[0]).await.expect("present");
    assert!(
        parent
            .members
            .iter()
            .any(|m| m.eq_ignore_ascii_case(&nested.dn)),
        "the nested group is a member now: {:?}",
        parent.members
    );
    w.sync_ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_create_threshold_does_not_hold_the_first_cycle_nor_a_cycle_within_it() {
    let mut w = World::new("cthresh1").await;
    w.writeback_toml = "create_threshold = 1".into();
    w.write_config();
    let a = w.security_group("SG-CT1-A", Some(true), None).await;
    let b = w.security_group("SG-CT1-B", Some(true), None).await;
    let out = w.sync_ok();
    assert_eq!(out["applied"]["creates"], 2, "{out}");
    let c = w.security_group("SG-CT1-C", Some(true), None).await;
    let out = w.sync_ok();
    assert_eq!(out["applied"]["creates"], 1, "{out}");
    for g in [&a, &b, &c] {
        assert!(w.ad_group_of(g).await.is_some());
    }
}
