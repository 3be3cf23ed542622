//! Group settings and the Microsoft 365 writeback default, `$batch`, fault injection and
//! the `/_sim` statistics, over HTTP.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::*;

const GROUP_UNIFIED: &str = "62375ab9-6b52-47ed-826b-58e47e0e304b";

async fn create_m365(sim: &Sim, name: &str) -> serde_json::Value {
    let (s, body) = sim
        .post(
            "/beta/groups",
            json!({"displayName": name, "mailEnabled": true, "mailNickname": name,
                   "securityEnabled": false, "groupTypes": ["Unified"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let (_, g) = sim
        .get(&format!(
            "/beta/groups/{id}?$select=id,writebackConfiguration"
        ))
        .await;
    g
}

#[tokio::test]
async fn new_microsoft_365_groups_follow_new_unified_group_writeback_default() {
    let sim = start(&[]).await;
    // No setting: isEnabled stays null.
    let g = create_m365(&sim, "before").await;
    assert_eq!(g["writebackConfiguration"]["isEnabled"], json!(null));

    let (s, templates) = sim.get("/v1.0/groupSettingTemplates").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(templates["value"][0]["displayName"], "Group.Unified");
    let (s, setting) = sim
        .post(
            "/v1.0/groupSettings",
            json!({"templateId": GROUP_UNIFIED, "values": [{"name": "NewUnifiedGroupWritebackDefault", "value": "false"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{setting}");
    let sid = setting["id"].as_str().unwrap().to_string();
    let g = create_m365(&sim, "after").await;
    assert_eq!(g["writebackConfiguration"]["isEnabled"], json!(false));

    // The existing group is not changed; flipping the default affects only new groups.
    let (s, _) = sim
        .patch(
            &format!("/v1.0/groupSettings/{sid}"),
            json!({"values": [{"name": "NewUnifiedGroupWritebackDefault", "value": "true"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let g2 = create_m365(&sim, "later").await;
    assert_eq!(g2["writebackConfiguration"]["isEnabled"], json!(true));
    let (_, again) = sim
        .get(&format!(
            "/beta/groups/{}?$select=writebackConfiguration",
            g["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(again["writebackConfiguration"]["isEnabled"], json!(false));

    // Beta reads the same setting at /settings; v1.0 has no /settings.
    let (s, beta) = sim.get("/beta/settings").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(beta["value"][0]["id"], sid.as_str());
    let (s, _) = sim.get("/v1.0/settings").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // A second setting from the same template conflicts.
    let (s, _) = sim
        .post(
            "/v1.0/groupSettings",
            json!({"templateId": GROUP_UNIFIED, "values": []}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn batch_runs_requests_with_their_own_statuses_and_dependencies() {
    let sim = start(&[]).await;
    let g = sim.create_security_group("SG-Batch").await;
    let (s, body) = sim
        .post(
            "/v1.0/$batch",
            json!({"requests": [
                {"id": "1", "method": "GET", "url": format!("/groups/{g}?$select=id,displayName")},
                {"id": "2", "method": "GET", "url": "/groups/00000000-0000-0000-0000-000000000000"},
                {"id": "3", "method": "PATCH", "url": format!("/groups/{g}"), "dependsOn": ["2"],
                 "headers": {"Content-Type": "application/json"}, "body": {"displayName": "never"}},
                {"id": "4", "method": "PATCH", "url": format!("/groups/{g}"), "dependsOn": ["1"],
                 "headers": {"Content-Type": "application/json"}, "body": {"displayName": "SG-Batch-2"}},
            ]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let by_id = |id: &str| {
        body["responses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id("1")["status"], 200);
    assert_eq!(by_id("1")["body"]["displayName"], "SG-Batch");
    assert_eq!(by_id("2")["status"], 404);
    assert_eq!(
        by_id("2")["body"]["error"]["code"],
        "Request_ResourceNotFound"
    );
    assert_eq!(by_id("3")["status"], 424);
    assert_eq!(by_id("4")["status"], 204);
    let (_, group) = sim.get(&format!("/v1.0/groups/{g}")).await;
    assert_eq!(group["displayName"], "SG-Batch-2");
}

#[tokio::test]
async fn batch_of_more_than_twenty_is_refused() {
    let sim = start(&[]).await;
    let requests: Vec<_> = (0..21)
        .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/users"}))
        .collect();
    let (s, body) = sim
        .post("/v1.0/$batch", json!({"requests": requests}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "BadRequest");
    let (s, _) = sim
        .post("/v1.0/$batch", json!({"requests": [{"id": "1", "method": "GET", "url": "/users"}, {"id": "1", "method": "GET", "url": "/users"}]}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "duplicate ids");
}

#[tokio::test]
async fn throttling_answers_429_with_retry_after_and_counts() {
    let sim = start(&[]).await;
    sim.admin(
        Method::POST,
        "/_sim/faults",
        Some(json!({"throttle_share": 1.0, "retry_after_secs": 7})),
    )
    .await;
    let (s, headers, body) = sim.call(Method::GET, "/v1.0/users", None, &[]).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "7");
    assert_eq!(body["error"]["code"], "TooManyRequests");
    assert_eq!(body["error"]["innerError"]["status"], "429");
    // Inner batch requests are throttled one by one, the outer batch too here.
    sim.admin(
        Method::POST,
        "/_sim/faults",
        Some(json!({"unavailable_share": 1.0})),
    )
    .await;
    let (s, _) = sim.get("/v1.0/groups").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    sim.admin(Method::POST, "/_sim/faults", Some(json!({})))
        .await;
    let (s, _) = sim.get("/v1.0/groups").await;
    assert_eq!(s, StatusCode::OK);
    let stats = sim.admin(Method::GET, "/_sim/stats", None).await;
    assert_eq!(stats["by_path"]["/v1.0/groups"], 2);
    assert_eq!(stats["throttled"], 1);
    assert_eq!(stats["unavailable"], 1);
    // The request log says what was answered when, Retry-After included: what fault
    // harnesses measure a client's waits with.
    let log = sim.admin(Method::GET, "/_sim/requests", None).await;
    let log = log["requests"].as_array().unwrap();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0]["uri"], "/v1.0/users");
    assert_eq!(log[0]["status"], 429);
    assert_eq!(log[0]["retry_after"], 7);
    assert_eq!(log[1]["status"], 503);
    assert_eq!(log[2]["status"], 200);
    assert!(log[2].get("retry_after").is_none());
    assert!(log[0]["at_ms"].as_f64().unwrap() <= log[2]["at_ms"].as_f64().unwrap());
}

#[tokio::test]
async fn added_latency_slows_every_graph_response() {
    let sim = start(&["--latency-ms", "150"]).await;
    let t = std::time::Instant::now();
    let (s, _) = sim.get("/v1.0/users").await;
    assert_eq!(s, StatusCode::OK);
    assert!(t.elapsed() >= std::time::Duration::from_millis(150));
}

#[tokio::test]
async fn sample_tenant_loads_with_the_seed_story() {
    let path = sample_tenant();
    let sim = start(&["--tenant", &path]).await;
    let (s, body) = sim.get("/beta/groups?$select=id,displayName,writebackConfiguration,onPremisesSyncEnabled&$top=999").await;
    assert_eq!(s, StatusCode::OK);
    let groups = body["value"].as_array().unwrap();
    let find = |name: &str| {
        groups
            .iter()
            .find(|g| g["displayName"] == name)
            .unwrap_or_else(|| panic!("{name}"))
            .clone()
    };
    assert_eq!(
        find("SG-NL-Finance-Department")["writebackConfiguration"]["onPremisesGroupType"],
        "universalSecurityGroup"
    );
    assert_eq!(
        find("Marketing Team")["writebackConfiguration"]["isEnabled"],
        false
    );
    assert_eq!(
        find("All Company News")["writebackConfiguration"]["onPremisesGroupType"],
        "universalDistributionGroup"
    );
    assert_eq!(
        find("SG-Default-NoWriteback")["writebackConfiguration"]["isEnabled"],
        json!(null)
    );
    assert_eq!(
        find("SG-OnPrem-Synced-Admins")["onPremisesSyncEnabled"],
        true
    );
    let dsg = find("DSG-AVD-PUBAPP-SAP")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, members) = sim
        .get(&format!(
            "/v1.0/groups/{dsg}/members?$select=id,onPremisesSyncEnabled"
        ))
        .await;
    let members = members["value"].as_array().unwrap();
    assert_eq!(members.len(), 6);
    assert_eq!(
        members
            .iter()
            .filter(|m| m["onPremisesSyncEnabled"] == true)
            .count(),
        4
    );
    let (_, settings) = sim.get("/v1.0/groupSettings").await;
    assert_eq!(settings["value"][0]["templateId"], GROUP_UNIFIED);
}
