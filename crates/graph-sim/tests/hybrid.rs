//! The hybrid side of a tenant: Group Source of Authority (`onPremisesSyncBehavior`) under
//! v1.0 and beta, reported in group delta; devices (`/devices`, `/devices/delta`) and
//! device members in `members@delta`.

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::*;

const SID: &str = "S-1-5-21-1004336348-1177238915-682003330-5001";

async fn synced_group(sim: &Sim, name: &str) -> String {
    let (s, body) = sim
        .post(
            "/beta/groups",
            json!({"displayName": name, "mailEnabled": false, "mailNickname": name,
                   "securityEnabled": true, "onPremisesSyncEnabled": true,
                   "onPremisesSecurityIdentifier": SID}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_string()
}

async fn device(sim: &Sim, name: &str, sid: Option<&str>) -> String {
    let mut body = json!({
        "accountEnabled": true,
        "alternativeSecurityIds": [{"type": 2, "key": "a2V5"}],
        "deviceId": uuid::Uuid::new_v4().to_string(),
        "displayName": name,
        "operatingSystem": "Windows",
        "operatingSystemVersion": "10.0.22631",
    });
    if let Some(sid) = sid {
        body["onPremisesSyncEnabled"] = json!(true);
        body["onPremisesSecurityIdentifier"] = json!(sid);
        body["trustType"] = json!("ServerAd");
    }
    let (s, out) = sim.post("/v1.0/devices", body).await;
    assert_eq!(s, StatusCode::CREATED, "{out}");
    out["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn converting_a_synced_group_to_cloud_managed_shows_in_reads_and_group_delta() {
    let sim = start(&[]).await;
    let g = synced_group(&sim, "SG-Share").await;
    let select = "/beta/groups/delta?$select=id,displayName,onPremisesSyncEnabled,onPremisesSecurityIdentifier,members";
    let (_, link, _) = sim.delta_round(select, &[]).await;

    for version in ["v1.0", "beta"] {
        let (s, body) = sim
            .get(&format!(
                "/{version}/groups/{g}/onPremisesSyncBehavior?$select=isCloudManaged"
            ))
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["isCloudManaged"], false, "{version}");
    }
    let (s, body) = sim
        .patch(
            &format!("/v1.0/groups/{g}/onPremisesSyncBehavior"),
            json!({"isCloudManaged": true}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    let (_, body) = sim
        .get(&format!("/beta/groups/{g}/onPremisesSyncBehavior"))
        .await;
    assert_eq!(body["isCloudManaged"], true);
    assert_eq!(body["id"], g.as_str());

    // Cloud-mastered now: no longer synced, the SID kept, properties editable.
    let (_, group) = sim
        .get(&format!(
            "/v1.0/groups/{g}?$select=onPremisesSyncEnabled,onPremisesSecurityIdentifier"
        ))
        .await;
    assert_ne!(group["onPremisesSyncEnabled"], true);
    assert_eq!(group["onPremisesSecurityIdentifier"], SID);
    let (s, body) = sim
        .patch(
            &format!("/v1.0/groups/{g}"),
            json!({"description": "now in the cloud"}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");

    let (changes, link, _) = sim.delta_round(&link, &[]).await;
    let entries = entries_for(&changes, &g);
    assert_eq!(
        entries.len(),
        1,
        "the conversion is a change of the group: {changes:?}"
    );
    assert_ne!(entries[0]["onPremisesSyncEnabled"], true);
    assert_eq!(entries[0]["onPremisesSecurityIdentifier"], SID);

    // Flipping back is reported too.
    let (s, _) = sim
        .patch(
            &format!("/beta/groups/{g}/onPremisesSyncBehavior"),
            json!({"isCloudManaged": false}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (changes, _, _) = sim.delta_round(&link, &[]).await;
    assert_eq!(entries_for(&changes, &g).len(), 1);
    let (_, body) = sim
        .get(&format!("/v1.0/groups/{g}/onPremisesSyncBehavior"))
        .await;
    assert_eq!(body["isCloudManaged"], false);
}

#[tokio::test]
async fn sync_behavior_refuses_unknown_groups_and_properties() {
    let sim = start(&[]).await;
    let g = sim.create_security_group("SG-Cloud").await;
    let (s, body) = sim
        .get("/v1.0/groups/00000000-0000-0000-0000-00000000dead/onPremisesSyncBehavior")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    let (s, body) = sim
        .patch(
            &format!("/v1.0/groups/{g}/onPremisesSyncBehavior"),
            json!({"isCloudManaged": "yes"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, body) = sim
        .patch(
            &format!("/v1.0/groups/{g}/onPremisesSyncBehavior"),
            json!({"somethingElse": true}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn devices_are_listed_read_by_delta_and_appear_as_device_members() {
    let sim = start(&[]).await;
    let hybrid = device(&sim, "PC-0001", Some("S-1-5-21-1-2-3-1601")).await;
    let cloud = device(&sim, "Phone-01", None).await;

    let (s, list) = sim.get("/v1.0/devices?$select=id,displayName").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list["value"].as_array().unwrap().len(), 2);
    let (s, one) = sim.get(&format!("/v1.0/devices/{hybrid}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["onPremisesSyncEnabled"], true);
    assert_eq!(one["onPremisesSecurityIdentifier"], "S-1-5-21-1-2-3-1601");
    let (s, _) = sim.get("/v1.0/devices?$select=nope").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let select = "/v1.0/devices/delta?$select=id,displayName,deviceId,onPremisesSyncEnabled,onPremisesSecurityIdentifier";
    let (all, link, _) = sim.delta_round(select, &[]).await;
    assert_eq!(all.len(), 2, "devices only: {all:?}");
    let e = entries_for(&all, &hybrid);
    assert_eq!(e[0]["onPremisesSecurityIdentifier"], "S-1-5-21-1-2-3-1601");
    assert!(entries_for(&all, &cloud)[0]
        .get("onPremisesSyncEnabled")
        .is_none());

    let third = device(&sim, "PC-0002", Some("S-1-5-21-1-2-3-1602")).await;
    let (changes, _, _) = sim.delta_round(&link, &[]).await;
    let ids: Vec<&Value> = changes.iter().map(|c| &c["id"]).collect();
    assert_eq!(ids, vec![&json!(third)]);

    let g = sim.create_security_group("SG-Devices").await;
    let glink = "/beta/groups/delta?$select=id,displayName,members";
    let (_, glink, _) = sim.delta_round(glink, &[]).await;
    sim.add_member(&g, &hybrid).await;
    let (changes, _, _) = sim.delta_round(&glink, &[]).await;
    let entry = entries_for(&changes, &g);
    assert_eq!(
        entry[0]["members@delta"],
        json!([{"@odata.type": "#microsoft.graph.device", "id": hybrid}])
    );
}
