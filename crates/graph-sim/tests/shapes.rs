//! Response bodies compared with Microsoft's documented examples (tests/fixtures/ms-examples):
//! same property names, same `@odata.*` annotations, same error objects, same value types.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use support::*;

/// The shape of a JSON value: objects by key, arrays as the set of their element shapes,
/// scalars by type. Values themselves do not matter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Shape {
    Null,
    Bool,
    Number,
    Str,
    Array(BTreeSet<Shape>),
    Object(BTreeMap<String, Shape>),
}

fn shape(v: &Value) -> Shape {
    match v {
        Value::Null => Shape::Null,
        Value::Bool(_) => Shape::Bool,
        Value::Number(_) => Shape::Number,
        Value::String(_) => Shape::Str,
        Value::Array(items) => Shape::Array(items.iter().map(shape).collect()),
        Value::Object(map) => {
            Shape::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
        }
    }
}

fn example(name: &str) -> Value {
    let text =
        std::fs::read_to_string(fixture(&format!("ms-examples/{name}"))).expect("example file");
    serde_json::from_str(&text).expect("example is JSON")
}

fn assert_same_shape(ours: &Value, name: &str) {
    let theirs = example(name);
    assert_eq!(
        shape(ours),
        shape(&theirs),
        "\nours:   {ours:#}\nexample {name}: {theirs:#}"
    );
}

async fn group_with_member(sim: &Sim, name: &str, description: &str) -> (String, String) {
    let (s, g) = sim
        .post(
            "/v1.0/groups",
            json!({"displayName": name, "description": description, "mailEnabled": false,
                   "mailNickname": name, "securityEnabled": true}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let g = g["id"].as_str().unwrap().to_string();
    let u = sim.create_user(&format!("{name}-member")).await;
    sim.add_member(&g, &u).await;
    (g, u)
}

#[tokio::test]
async fn group_delta_pages_have_microsofts_shape() {
    let sim = start(&[]).await;
    let (g1, u1) = group_with_member(&sim, "TestGroup1", "Test group 1").await;
    let (g2, _) = group_with_member(&sim, "TestGroup2", "Test group 2").await;
    let first = "/v1.0/groups/delta?$select=displayName,description,members";
    let (s, _, page) = sim
        .call(
            Method::GET,
            first,
            None,
            &[("Prefer", "odata.maxpagesize=1")],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_same_shape(&page, "group-delta-initial.json");

    let (_, link, _) = sim.delta_round(first, &[]).await;
    sim.delete(&format!("/v1.0/groups/{g1}/members/{u1}/$ref"))
        .await;
    sim.delete(&format!("/v1.0/groups/{g2}")).await;
    sim.delete(&format!("/v1.0/directory/deletedItems/{g2}"))
        .await;
    let (s, page) = sim.get(&link).await;
    assert_eq!(s, StatusCode::OK);
    assert_same_shape(&page, "group-delta-changes.json");
}

#[tokio::test]
async fn user_delta_page_has_microsofts_shape() {
    let sim = start(&[]).await;
    for name in ["megan", "alex"] {
        let u = sim.create_user(name).await;
        sim.patch(
            &format!("/v1.0/users/{u}"),
            json!({"givenName": name, "surname": "Bowen"}),
        )
        .await;
    }
    let (s, _, page) = sim
        .call(
            Method::GET,
            "/v1.0/users/delta?$select=displayName,givenName,surname",
            None,
            &[("Prefer", "odata.maxpagesize=1")],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_same_shape(&page, "user-delta.json");
}

#[tokio::test]
async fn deleted_items_list_has_microsofts_shape() {
    let sim = start(&[]).await;
    let g = sim.create_security_group("SampleGroup").await;
    sim.delete(&format!("/v1.0/groups/{g}")).await;
    let (s, page) = sim
        .get("/v1.0/directory/deletedItems/microsoft.graph.group?$select=id,displayName,deletedDateTime")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_same_shape(&page, "deleted-groups.json");
}

#[tokio::test]
async fn group_settings_list_has_microsofts_shape() {
    let sim = start(&[]).await;
    let (s, _) = sim
        .post(
            "/v1.0/groupSettings",
            json!({"templateId": "62375ab9-6b52-47ed-826b-58e47e0e304b", "values": []}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, page) = sim.get("/v1.0/groupSettings").await;
    assert_same_shape(&page, "group-settings.json");
}

#[tokio::test]
async fn batch_response_has_microsofts_shape() {
    let sim = start(&[]).await;
    sim.create_user("megan").await;
    let (s, body) = sim
        .post("/v1.0/$batch", json!({"requests": [{"id": "1", "method": "GET", "url": "/users?$select=id,displayName"}]}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_same_shape(&body, "batch.json");
}

#[tokio::test]
async fn throttling_and_not_found_errors_have_microsofts_shape() {
    let sim = start(&[]).await;
    let (_, missing) = sim
        .get("/v1.0/groups/00000000-0000-0000-0000-000000000000")
        .await;
    assert_same_shape(&missing, "not-found-error.json");
    sim.admin(
        Method::POST,
        "/_sim/faults",
        Some(json!({"throttle_share": 1.0, "retry_after_secs": 2})),
    )
    .await;
    let (s, _, body) = sim.call(Method::GET, "/v1.0/users", None, &[]).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_same_shape(&body, "throttling-error.json");
}
