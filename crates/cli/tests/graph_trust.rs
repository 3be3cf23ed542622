//! End-to-end: what writeback trusts from Graph (SPEC §10 Guarantees). A malformed page fails
//! the cycle (exit 3, nothing applied); a group is deleted only on positive evidence; links
//! are followed, and the token sent, only to the configured graph_url's origin. The hostile
//! answers come from graph-sim's test-only answer faults (docs/graph-sim.md).

mod support;
use serde_json::{json, Value};
use support::*;

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

async fn stats(sim_url: &str) -> Value {
    reqwest::get(format!("{sim_url}/_sim/stats"))
        .await
        .expect("graph-sim /_sim/stats")
        .json()
        .await
        .expect("stats JSON")
}

async fn reset_stats(sim_url: &str) {
    let resp = reqwest::Client::new()
        .delete(format!("{sim_url}/_sim/stats"))
        .send()
        .await
        .expect("graph-sim /_sim/stats");
    assert!(resp.status().is_success());
}

/// Deletes a group for good: soft delete, then delete from deleted items.
async fn purge(w: &World, id: &str) {
    for path in [
        format!("/v1.0/groups/{id}"),
        format!("/v1.0/directory/deletedItems/{id}"),
    ] {
        let (status, body) = w.graph("DELETE", &path, None).await;
        assert_eq!(status, 204, "DELETE {path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn full_round_page_without_value_fails_the_sync_and_deletes_nothing() {
    let w = World::new("trust-novalue").await;
    let g = w.security_group("SG-Trust-NoValue", Some(true), None).await;
    w.sync_ok();
    let before = w.ad_group_of(&g).await.expect("written by the first cycle");

    faults(&w.sim.url, json!({"group_delta_pages_without_value": 1})).await;
    let r = w.writeback(&["sync", "--full", "--json"]);
    assert_eq!(r.code, 3, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains(&format!("{}/beta/groups/delta", w.sim.url)),
        "the message names the URL: {}",
        r.stderr
    );
    assert!(r.stderr.contains("value"), "{}", r.stderr);
    let after = w
        .ad_group_of(&g)
        .await
        .expect("the AD group is still there");
    assert_eq!(after.guid, before.guid);

    // Nothing was committed: the next cycle starts from the first cycle's delta link.
    let out = w.sync_ok();
    assert_eq!(out["mode"], "delta", "{out}");
    assert_eq!(out["applied"]["deletes"], 0, "{out}");
    let out = w.sync_expect(0, &["--full"]);
    assert_eq!(out["applied"]["deletes"], 0, "{out}");
    assert_eq!(
        w.ad_group_of(&g).await.expect("still there").guid,
        before.guid
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn group_a_full_round_omits_but_graph_still_has_is_not_deleted() {
    let w = World::new("trust-omit").await;
    let omitted = w.security_group("SG-Trust-Omitted", Some(true), None).await;
    let listed = w.security_group("SG-Trust-Listed", Some(true), None).await;
    w.sync_ok();
    let before = w.ad_group_of(&omitted).await.expect("written");

    faults(&w.sim.url, json!({"omit_groups_from_delta": [omitted]})).await;
    let out = w.sync_expect(0, &["--full"]);
    assert_eq!(out["mode"], "full");
    assert_eq!(out["applied"]["deletes"], 0, "{out}");
    assert_eq!(
        w.ad_group_of(&omitted).await.expect("kept").guid,
        before.guid
    );
    assert!(w.ad_group_of(&listed).await.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_a_full_round_omits_but_graph_still_has_stays_a_member() {
    let w = World::new("trust-omit-user").await;
    let (omitted, _) = w.synced_user("trust-omitted", "Omitted User").await;
    let (listed, _) = w.synced_user("trust-listed", "Listed User").await;
    let g = w
        .security_group("SG-Trust-OmitUser", Some(true), None)
        .await;
    w.add_member(&g, &omitted).await;
    w.add_member(&g, &listed).await;
    w.sync_ok();
    let before = w.ad_group_of(&g).await.expect("written").member_set();
    assert_eq!(before.len(), 2, "{before:?}");

    // The full user round leaves the user out; the group round still lists it as a member,
    // and GET /users/{id} finds it: it stays in the image and in the AD group.
    faults(&w.sim.url, json!({"omit_users_from_delta": [omitted]})).await;
    let out = w.sync_expect(0, &["--full"]);
    assert_eq!(out["mode"], "full");
    assert_eq!(out["applied"]["member_removes"], 0, "{out}");
    assert_eq!(w.ad_group_of(&g).await.expect("kept").member_set(), before);
    // And the next cycles keep it (the image kept it).
    faults(&w.sim.url, json!({})).await;
    let out = w.sync_ok();
    assert_eq!(out["applied"]["member_removes"], 0, "{out}");
    assert_eq!(w.ad_group_of(&g).await.expect("kept").member_set(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn soft_deleted_group_survives_a_full_round() {
    let w = World::new("trust-softfull").await;
    let g = w
        .security_group("SG-Trust-SoftFull", Some(true), None)
        .await;
    w.sync_ok();
    let (status, body) = w.graph("DELETE", &format!("/v1.0/groups/{g}"), None).await;
    assert_eq!(status, 204, "{body}");
    // A full round does not list soft-deleted groups: Graph's deleted items say where it is.
    let out = w.sync_expect(0, &["--full"]);
    assert_eq!(out["applied"]["deletes"], 0, "{out}");
    assert!(w.ad_group_of(&g).await.is_some(), "kept while restorable");
}

#[tokio::test(flavor = "multi_thread")]
async fn permanently_deleted_group_is_deleted_by_a_delta_round_and_by_a_full_round() {
    let w = World::new("trust-purge").await;
    let by_delta = w
        .security_group("SG-Trust-PurgeDelta", Some(true), None)
        .await;
    let by_full = w
        .security_group("SG-Trust-PurgeFull", Some(true), None)
        .await;
    w.sync_ok();
    assert!(w.ad_group_of(&by_delta).await.is_some());
    assert!(w.ad_group_of(&by_full).await.is_some());

    // Delta round: `@removed` with reason `deleted`.
    purge(&w, &by_delta).await;
    let out = w.sync_ok();
    assert_eq!(out["mode"], "delta");
    assert_eq!(out["applied"]["deletes"], 1, "{out}");
    assert!(w.ad_group_of(&by_delta).await.is_none());
    assert!(w.ad_group_of(&by_full).await.is_some());

    // Full round: absent, and Graph confirms it is neither a group nor in deleted items.
    purge(&w, &by_full).await;
    let out = w.sync_expect(0, &["--full"]);
    assert_eq!(out["mode"], "full");
    assert_eq!(out["applied"]["deletes"], 1, "{out}");
    assert!(w.ad_group_of(&by_full).await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn stored_delta_link_from_another_graph_url_is_discarded_for_a_full_round() {
    let w = World::new("trust-origin").await;
    let g = w.security_group("SG-Trust-Origin", Some(true), None).await;
    w.sync_ok();
    let before = w.ad_group_of(&g).await.expect("written");

    // Same simulator, another origin: the stored links name 127.0.0.1, the config localhost.
    let old_host = w.sim.url.trim_start_matches("http://").to_string();
    assert!(old_host.starts_with("127.0.0.1:"), "{old_host}");
    let new_url = w.sim.url.replace("127.0.0.1", "localhost");
    let text = std::fs::read_to_string(w.config_path()).expect("config");
    let moved = text.replace(&format!("\"{}\"", w.sim.url), &format!("\"{new_url}\""));
    assert_ne!(text, moved);
    std::fs::write(w.config_path(), moved).expect("config");

    reset_stats(&w.sim.url).await;
    let out = w.sync_ok();
    assert_eq!(out["mode"], "full", "{out}");
    assert_eq!(out["applied"]["deletes"], 0, "{out}");
    let by_host = stats(&w.sim.url).await["by_host"].clone();
    assert!(
        by_host.get(&old_host).is_none(),
        "a request went to the old origin: {by_host}"
    );
    assert!(
        by_host.get(new_url.trim_start_matches("http://")).is_some(),
        "{by_host}"
    );
    assert_eq!(w.ad_group_of(&g).await.expect("kept").guid, before.guid);
}

#[tokio::test(flavor = "multi_thread")]
async fn next_link_to_a_foreign_port_never_receives_the_token() {
    let w = World::new("trust-foreign").await;
    let a = w
        .security_group("SG-Trust-Foreign-A", Some(true), None)
        .await;
    let b = w
        .security_group("SG-Trust-Foreign-B", Some(true), None)
        .await;
    w.sync_ok();
    // Another graph-sim: it counts every Graph request that reaches it, token or not.
    let foreign = Sim::start();
    faults(
        &w.sim.url,
        json!({"delta_page_size": 1, "delta_next_link_origin": foreign.url}),
    )
    .await;
    let r = w.writeback(&["sync", "--full", "--json"]);
    assert_eq!(r.code, 3, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&foreign.url) && r.stderr.contains("@odata.nextLink"),
        "the message names the foreign link: {}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("skiptoken=gsim"),
        "state tokens are shortened: {}",
        r.stderr
    );
    let seen = stats(&foreign.url).await;
    assert_eq!(seen["total"], 0, "the foreign origin got a request: {seen}");
    assert!(w.ad_group_of(&a).await.is_some());
    assert!(w.ad_group_of(&b).await.is_some());
}
