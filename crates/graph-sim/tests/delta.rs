//! Delta queries over HTTP against the running binary: initial round, deltaLink rounds with
//! members@delta and @removed, big groups over pages, return=minimal, token expiry.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::*;

const GROUP_DELTA: &str =
    "/beta/groups/delta?$select=id,displayName,description,writebackConfiguration,members";

#[tokio::test]
async fn group_delta_round_trip_reports_each_change_as_graph_documents() {
    let sim = start(&[]).await;
    let anna = sim.create_user("anna").await;
    let bram = sim.create_user("bram").await;
    let carla = sim.create_user("carla").await;
    let g = sim.create_security_group("SG-Finance").await;
    sim.add_member(&g, &anna).await;
    sim.add_member(&g, &bram).await;

    // Initial round: full state, members with @odata.type.
    let (all, link, _) = sim.delta_round(GROUP_DELTA, &[]).await;
    let e = entries_for(&all, &g);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["displayName"], "SG-Finance");
    assert_eq!(
        e[0]["writebackConfiguration"],
        json!({"isEnabled": null, "onPremisesGroupType": null})
    );
    let (added, removed) = member_changes(&e);
    let mut want = vec![anna.clone(), bram.clone()];
    want.sort();
    assert_eq!(added, want);
    assert!(removed.is_empty());
    assert!(e[0]["members@delta"][0]["@odata.type"] == "#microsoft.graph.user");

    // Nothing changed: empty round, new deltaLink.
    let (all, link, _) = sim.delta_round(&link, &[]).await;
    assert!(all.is_empty(), "no changes expected: {all:?}");

    // Add and remove members: only the changes, removed ones with @removed.
    sim.add_member(&g, &carla).await;
    let (s, _) = sim
        .delete(&format!("/v1.0/groups/{g}/members/{anna}/$ref"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (all, link, _) = sim.delta_round(&link, &[]).await;
    let e = entries_for(&all, &g);
    let (added, removed) = member_changes(&e);
    assert_eq!(added, vec![carla.clone()]);
    assert_eq!(removed, vec![anna.clone()]);
    let gone = e[0]["members@delta"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == anna.as_str())
        .unwrap();
    assert_eq!(gone["@removed"], json!({"reason": "deleted"}));
    assert_eq!(gone["@odata.type"], "#microsoft.graph.user");
    // Without return=minimal, all selected properties come back.
    assert_eq!(e[0]["displayName"], "SG-Finance");

    // Rename with return=minimal: only id and the changed property.
    let (s, _) = sim
        .patch(
            &format!("/v1.0/groups/{g}"),
            json!({"displayName": "SG-Finance-NL"}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (all, link, _) = sim
        .delta_round(&link, &[("Prefer", "return=minimal")])
        .await;
    let e = entries_for(&all, &g);
    assert_eq!(e.len(), 1);
    assert_eq!(*e[0], json!({"id": g, "displayName": "SG-Finance-NL"}));

    // Writeback switched on (beta PATCH) shows as a changed property.
    let (s, b) = sim
        .patch(
            &format!("/beta/groups/{g}"),
            json!({"writebackConfiguration": {"isEnabled": true, "onPremisesGroupType": "universalSecurityGroup"}}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (all, link, _) = sim
        .delta_round(&link, &[("Prefer", "return=minimal")])
        .await;
    assert_eq!(
        entries_for(&all, &g)[0]["writebackConfiguration"],
        json!({"isEnabled": true, "onPremisesGroupType": "universalSecurityGroup"})
    );

    // Soft delete → @removed reason changed.
    let (s, _) = sim.delete(&format!("/v1.0/groups/{g}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (all, link, _) = sim.delta_round(&link, &[]).await;
    assert_eq!(
        *entries_for(&all, &g)[0],
        json!({"id": g, "@removed": {"reason": "changed"}})
    );

    // Restore → the group reappears as a normal object with its members.
    let (s, body) = sim
        .post(
            &format!("/v1.0/directory/deletedItems/{g}/restore"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (all, link, _) = sim.delta_round(&link, &[]).await;
    let e = entries_for(&all, &g);
    assert_eq!(e[0]["displayName"], "SG-Finance-NL");
    assert!(e[0].get("@removed").is_none());
    let (added, _) = member_changes(&e);
    let mut want = vec![bram.clone(), carla.clone()];
    want.sort();
    assert_eq!(added, want);

    // Soft delete then permanent delete → @removed reason deleted.
    sim.delete(&format!("/v1.0/groups/{g}")).await;
    let (s, _) = sim
        .delete(&format!("/v1.0/directory/deletedItems/{g}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (all, _, _) = sim.delta_round(&link, &[]).await;
    assert_eq!(
        *entries_for(&all, &g)[0],
        json!({"id": g, "@removed": {"reason": "deleted"}})
    );
}

#[tokio::test]
async fn a_large_groups_members_are_split_over_pages_and_reassemble() {
    let sim = start(&["--delta-member-chunk", "50"]).await;
    let g = sim.create_security_group("SG-Big").await;
    let mut ids = Vec::new();
    for i in 0..130 {
        let u = sim.create_user(&format!("user{i:03}")).await;
        sim.add_member(&g, &u).await;
        ids.push(u);
    }
    let (all, _, pages) = sim
        .delta_round("/v1.0/groups/delta?$select=displayName,members", &[])
        .await;
    let e = entries_for(&all, &g);
    assert_eq!(e.len(), 3, "130 members in chunks of 50 → 3 entries");
    assert!(pages >= 3);
    let (added, _) = member_changes(&e);
    ids.sort();
    assert_eq!(added, ids);
}

#[tokio::test]
async fn max_page_size_pages_the_initial_round() {
    let sim = start(&[]).await;
    for i in 0..7 {
        sim.create_security_group(&format!("SG-{i}")).await;
    }
    let (all, _, pages) = sim
        .delta_round(
            "/v1.0/groups/delta?$select=displayName",
            &[("Prefer", "odata.maxpagesize=3")],
        )
        .await;
    assert_eq!(all.len(), 7);
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn user_delta_reports_updates_and_deletions() {
    let sim = start(&[]).await;
    let u = sim.create_user("dora").await;
    let (all, link, _) = sim
        .delta_round(
            "/v1.0/users/delta?$select=id,displayName,userPrincipalName",
            &[],
        )
        .await;
    assert_eq!(
        entries_for(&all, &u)[0]["userPrincipalName"],
        format!("dora@{TENANT}")
    );
    sim.patch(
        &format!("/v1.0/users/{u}"),
        json!({"displayName": "Dora D"}),
    )
    .await;
    let (all, link, _) = sim.delta_round(&link, &[]).await;
    assert_eq!(entries_for(&all, &u)[0]["displayName"], "Dora D");
    sim.delete(&format!("/v1.0/users/{u}")).await;
    let (all, link, _) = sim.delta_round(&link, &[]).await;
    assert_eq!(
        entries_for(&all, &u)[0]["@removed"],
        json!({"reason": "changed"})
    );
    sim.delete(&format!("/v1.0/directory/deletedItems/{u}"))
        .await;
    let (all, _, _) = sim.delta_round(&link, &[]).await;
    assert_eq!(
        entries_for(&all, &u)[0]["@removed"],
        json!({"reason": "deleted"})
    );
}

#[tokio::test]
async fn expired_delta_tokens_answer_sync_state_not_found() {
    let sim = start(&[]).await;
    sim.create_security_group("SG-A").await;
    let (_, link, _) = sim.delta_round("/v1.0/groups/delta", &[]).await;
    sim.admin(Method::POST, "/_sim/expire-delta-tokens", None)
        .await;
    let (status, body) = sim.get(&link).await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(body["error"]["code"], "syncStateNotFound");
    // A fresh round works again.
    let (all, _, _) = sim.delta_round("/v1.0/groups/delta", &[]).await;
    assert_eq!(all.len(), 1);
}

#[tokio::test]
async fn garbled_delta_token_is_a_bad_request() {
    let sim = start(&[]).await;
    let (status, body) = sim.get("/v1.0/groups/delta?$deltatoken=not-a-token").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "Request_BadRequest");
}

#[tokio::test]
async fn writeback_configuration_is_selectable_only_in_beta() {
    let sim = start(&[]).await;
    let (status, body) = sim
        .get("/v1.0/groups/delta?$select=id,writebackConfiguration")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("writebackConfiguration"));
    let (status, _) = sim
        .get("/beta/groups/delta?$select=id,writebackConfiguration")
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn latest_delta_token_skips_the_initial_state() {
    let sim = start(&[]).await;
    sim.create_security_group("SG-Old").await;
    let (status, body) = sim.get("/v1.0/groups/delta?$deltatoken=latest").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["value"], json!([]));
    let link = body["@odata.deltaLink"].as_str().unwrap().to_string();
    let g = sim.create_security_group("SG-New").await;
    let (all, _, _) = sim.delta_round(&link, &[]).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["id"], g.as_str());
}

#[tokio::test]
async fn delta_filter_by_id_tracks_only_those_groups() {
    let sim = start(&[]).await;
    let a = sim.create_security_group("SG-A").await;
    let _b = sim.create_security_group("SG-B").await;
    let (all, _, _) = sim
        .delta_round(&format!("/v1.0/groups/delta?$filter=id eq '{a}'"), &[])
        .await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["id"], a.as_str());
}
