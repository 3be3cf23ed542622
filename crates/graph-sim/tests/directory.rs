//! Users, groups, members and owners over HTTP: CRUD, paging, $select, $filter, $count,
//! the beta-only writebackConfiguration, the seeding extension, and Graph's error answers.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::*;

#[tokio::test]
async fn users_page_with_top_and_next_link() {
    let sim = start(&[]).await;
    for i in 0..5 {
        sim.create_user(&format!("u{i}")).await;
    }
    let (s, page1) = sim.get("/v1.0/users?$top=2&$select=id,displayName").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page1["value"].as_array().unwrap().len(), 2);
    let mut seen = 2;
    let mut next = page1["@odata.nextLink"].as_str().map(str::to_string);
    while let Some(url) = next {
        let (s, page) = sim.get(&url).await;
        assert_eq!(s, StatusCode::OK);
        seen += page["value"].as_array().unwrap().len();
        assert_eq!(
            page["value"][0].as_object().unwrap().len(),
            2,
            "$select carried over"
        );
        next = page["@odata.nextLink"].as_str().map(str::to_string);
    }
    assert_eq!(seen, 5);
}

#[tokio::test]
async fn top_above_999_is_refused() {
    let sim = start(&[]).await;
    let (s, body) = sim.get("/v1.0/groups?$top=1000").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "Request_BadRequest");
}

#[tokio::test]
async fn filter_and_count_find_microsoft_365_groups() {
    let sim = start(&[]).await;
    sim.create_security_group("SG-One").await;
    let (s, body) = sim
        .post(
            "/v1.0/groups",
            json!({"displayName": "Team", "mailEnabled": true, "mailNickname": "team",
                   "securityEnabled": false, "groupTypes": ["Unified"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["mail"], "team@lab.example.test");
    let (s, _, list) = sim
        .call(
            Method::GET,
            "/v1.0/groups?$filter=groupTypes/any(c:c eq 'Unified')&$count=true",
            None,
            &[("ConsistencyLevel", "eventual")],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["@odata.count"], 1);
    assert_eq!(list["value"][0]["displayName"], "Team");
    let (s, _, n) = sim
        .call(
            Method::GET,
            "/v1.0/groups/$count",
            None,
            &[("ConsistencyLevel", "eventual")],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(n, json!(2));
    let (s, body) = sim.get("/v1.0/groups/$count").await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "$count needs ConsistencyLevel: {body}"
    );
}

#[tokio::test]
async fn writeback_configuration_exists_only_in_beta() {
    let sim = start(&[]).await;
    let g = sim.create_security_group("SG-W").await;
    let (s, body) = sim
        .get(&format!(
            "/beta/groups/{g}?$select=id,writebackConfiguration"
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        body["writebackConfiguration"],
        json!({"isEnabled": null, "onPremisesGroupType": null})
    );
    let (s, body) = sim.get(&format!("/v1.0/groups/{g}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.get("writebackConfiguration").is_none());
    let (s, body) = sim
        .patch(
            &format!("/v1.0/groups/{g}"),
            json!({"writebackConfiguration": {"isEnabled": true}}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "Request_BadRequest");
    let (s, body) = sim
        .patch(
            &format!("/beta/groups/{g}"),
            json!({"writebackConfiguration": {"onPremisesGroupType": "bogus"}}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn bad_requests_get_graph_status_and_code() {
    let sim = start(&[]).await;
    let g = sim.create_security_group("SG-E").await;
    // Unknown property.
    let (s, body) = sim
        .patch(&format!("/v1.0/groups/{g}"), json!({"colour": "blue"}))
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("Request_BadRequest"))
    );
    // Read-only property.
    let (s, body) = sim
        .patch(
            &format!("/v1.0/groups/{g}"),
            json!({"securityIdentifier": "S-1-5"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("read-only"));
    // Malformed JSON.
    let resp = sim
        .http
        .patch(format!("{}/v1.0/groups/{g}", sim.base))
        .bearer_auth(&sim.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "BadRequest");
    // Unknown id.
    let (s, body) = sim
        .get("/v1.0/groups/00000000-0000-0000-0000-00000000dead")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "Request_ResourceNotFound");
    // Unknown $select property.
    let (s, _) = sim.get("/v1.0/users?$select=id,shoeSize").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Missing required property on create.
    let (s, body) = sim.post("/v1.0/groups", json!({"displayName": "x"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn members_are_added_listed_and_removed_by_reference() {
    let sim = start(&[]).await;
    let g = sim.create_security_group("SG-M").await;
    let inner = sim.create_security_group("SG-Inner").await;
    let u = sim.create_user("mia").await;
    sim.add_member(&g, &u).await;
    sim.add_member(&g, &inner).await;
    let (s, body) = sim
        .post(
            &format!("/v1.0/groups/{g}/members/$ref"),
            json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{u}")}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "duplicate member: {body}");
    let (s, body) = sim
        .get(&format!("/v1.0/groups/{g}/members?$select=id,displayName"))
        .await;
    assert_eq!(s, StatusCode::OK);
    let types: Vec<&str> = body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["@odata.type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"#microsoft.graph.user") && types.contains(&"#microsoft.graph.group"));
    let (s, _) = sim
        .delete(&format!("/v1.0/groups/{g}/members/{u}/$ref"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, body) = sim
        .delete(&format!("/v1.0/groups/{g}/members/{u}/$ref"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    // Owners likewise.
    let (s, _) = sim
        .post(
            &format!("/v1.0/groups/{g}/owners/$ref"),
            json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/users/{u}")}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, body) = sim.get(&format!("/v1.0/groups/{g}/owners")).await;
    assert_eq!(body["value"][0]["id"], u.as_str());
}

#[tokio::test]
async fn seeding_extension_creates_synced_users_and_groups() {
    let sim = start(&[]).await;
    let (s, body) = sim
        .post(
            "/v1.0/users",
            json!({
                "accountEnabled": true, "displayName": "Eva", "mailNickname": "eva",
                "userPrincipalName": "eva@lab.example.test", "passwordProfile": {"password": "x-Y-1234567"},
                "onPremisesSyncEnabled": true, "onPremisesSecurityIdentifier": "S-1-5-21-1-2-3-1105",
                "onPremisesSamAccountName": "eva", "onPremisesImmutableId": "AAAAAAAAAAAAAAAAAAAAAA==",
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap();
    let (_, user) = sim
        .get(&format!(
            "/v1.0/users/{id}?$select=onPremisesSecurityIdentifier,onPremisesSyncEnabled"
        ))
        .await;
    assert_eq!(user["onPremisesSecurityIdentifier"], "S-1-5-21-1-2-3-1105");
    // Not writable after creation (read-only in Graph).
    let (s, _) = sim
        .patch(
            &format!("/v1.0/users/{id}"),
            json!({"onPremisesSyncEnabled": false}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, body) = sim
        .post(
            "/v1.0/groups",
            json!({"displayName": "SG-Synced", "mailEnabled": false, "mailNickname": "sgs",
                   "securityEnabled": true, "onPremisesSyncEnabled": true,
                   "onPremisesSecurityIdentifier": "S-1-5-21-1-2-3-2001"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    // A group mastered on-premises cannot be renamed in the cloud.
    let gid = body["id"].as_str().unwrap();
    let (s, _) = sim
        .patch(
            &format!("/v1.0/groups/{gid}"),
            json!({"displayName": "renamed"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn deleted_items_list_restore_and_purge() {
    let sim = start(&[]).await;
    let g = sim.create_security_group("SG-D").await;
    sim.delete(&format!("/v1.0/groups/{g}")).await;
    let (s, _) = sim.get(&format!("/v1.0/groups/{g}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, list) = sim
        .get("/v1.0/directory/deletedItems/microsoft.graph.group")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["value"][0]["id"], g.as_str());
    assert!(list["value"][0]["deletedDateTime"].is_string());
    let (s, _) = sim
        .post(
            &format!("/v1.0/directory/deletedItems/{g}/restore"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = sim.get(&format!("/v1.0/groups/{g}")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = sim
        .delete(&format!("/v1.0/directory/deletedItems/{g}"))
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "a live group is not in deleted items"
    );
    sim.delete(&format!("/v1.0/groups/{g}")).await;
    let (s, _) = sim
        .delete(&format!("/v1.0/directory/deletedItems/{g}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = sim
        .post(
            &format!("/v1.0/directory/deletedItems/{g}/restore"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
