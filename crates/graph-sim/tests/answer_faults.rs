//! The test-only answer faults (off by default, not Graph behaviour): group-delta pages
//! without `value`, groups left out of group delta, delta nextLinks naming another origin,
//! a smaller delta page size — and the `by_host` statistics.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::*;

const GROUP_DELTA: &str = "/beta/groups/delta?$select=id,displayName";

#[tokio::test]
async fn without_faults_every_delta_page_has_value_and_every_group() {
    let sim = start(&[]).await;
    let a = sim.create_security_group("fault-free-a").await;
    let faults = sim.admin(Method::GET, "/_sim/faults", None).await;
    assert_eq!(faults["group_delta_pages_without_value"], 0);
    assert_eq!(faults["omit_groups_from_delta"], json!([]));
    assert_eq!(faults["delta_next_link_origin"], json!(null));
    let (status, body) = sim.get(GROUP_DELTA).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["value"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["id"] == a.as_str()));
}

#[tokio::test]
async fn page_without_value_is_used_up_one_page_at_a_time() {
    let sim = start(&[]).await;
    sim.create_security_group("novalue").await;
    sim.admin(
        Method::POST,
        "/_sim/faults",
        Some(json!({"group_delta_pages_without_value": 1})),
    )
    .await;
    // User delta is not affected.
    let (_, users) = sim.get("/v1.0/users/delta").await;
    assert!(users["value"].is_array());
    let (status, first) = sim.get(GROUP_DELTA).await;
    assert_eq!(status, StatusCode::OK);
    assert!(first.get("value").is_none(), "{first}");
    assert!(
        first["@odata.deltaLink"].is_string(),
        "the links stay: {first}"
    );
    let (_, second) = sim.get(GROUP_DELTA).await;
    assert!(second["value"].is_array(), "{second}");
}

#[tokio::test]
async fn omitted_group_is_left_out_of_delta_but_still_readable() {
    let sim = start(&[]).await;
    let kept = sim.create_security_group("omit-kept").await;
    let hidden = sim.create_security_group("omit-hidden").await;
    sim.admin(
        Method::POST,
        "/_sim/faults",
        Some(json!({"omit_groups_from_delta": [hidden]})),
    )
    .await;
    let (all, link, _) = sim.delta_round(GROUP_DELTA, &[]).await;
    assert!(entries_for(&all, &kept).len() == 1);
    assert!(entries_for(&all, &hidden).is_empty());
    // Changes to it are left out too.
    sim.patch(
        &format!("/v1.0/groups/{hidden}"),
        json!({"description": "x"}),
    )
    .await;
    let (changes, _, _) = sim.delta_round(&link, &[]).await;
    assert!(entries_for(&changes, &hidden).is_empty());
    let (status, _) = sim.get(&format!("/v1.0/groups/{hidden}")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn next_links_name_the_configured_foreign_origin_and_page_size_applies() {
    let sim = start(&[]).await;
    for n in 0..3 {
        sim.create_security_group(&format!("paged-{n}")).await;
    }
    sim.admin(
        Method::POST,
        "/_sim/faults",
        Some(json!({"delta_page_size": 1, "delta_next_link_origin": "http://127.0.0.1:9"})),
    )
    .await;
    let (status, page) = sim.get(GROUP_DELTA).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["value"].as_array().unwrap().len(), 1);
    let next = page["@odata.nextLink"].as_str().expect("a nextLink");
    assert!(
        next.starts_with("http://127.0.0.1:9/beta/groups/delta?$skiptoken="),
        "{next}"
    );
}

#[tokio::test]
async fn bad_answer_fault_switches_are_refused() {
    let sim = start(&[]).await;
    for body in [
        json!({"delta_next_link_origin": "not a url"}),
        json!({"delta_page_size": 0}),
    ] {
        let resp = reqwest::Client::new()
            .post(format!("{}/_sim/faults", sim.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{body}");
    }
}

#[tokio::test]
async fn stats_count_requests_by_the_host_the_client_called() {
    let sim = start(&[]).await;
    sim.get("/v1.0/groups").await;
    let stats = sim.admin(Method::GET, "/_sim/stats", None).await;
    let host = sim.base.trim_start_matches("http://");
    assert_eq!(stats["by_host"][host], 1, "{stats}");
}
