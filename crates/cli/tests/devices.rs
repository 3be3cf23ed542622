//! Devices as members (SPEC §10): a device synced from AD is written as its computer
//! account (found by SID, of class computer); other devices are reported "not written".

mod support;

use serde_json::json;
use support::*;

async fn device(w: &World, name: &str, sid: Option<&str>) -> String {
    let mut body = json!({
        "accountEnabled": true,
        "alternativeSecurityIds": [{"type": 2, "key": "a2V5"}],
        "deviceId": format!("{name}-device-id"),
        "displayName": name,
        "operatingSystem": "Windows",
        "operatingSystemVersion": "10.0.22631",
    });
    if let Some(sid) = sid {
        body["onPremisesSyncEnabled"] = json!(true);
        body["onPremisesSecurityIdentifier"] = json!(sid);
        body["trustType"] = json!("ServerAd");
    }
    let (status, v) = w.graph("POST", "/v1.0/devices", Some(body)).await;
    assert_eq!(status, 201, "{v}");
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hybrid_device_lands_as_its_computer_account_and_a_cloud_only_device_does_not() {
    let w = World::new("devices").await;
    let computers = format!("OU=Computers,{}", w.root_ou);
    w.dc.create_ou(&computers).await;
    let pc = w.dc.create_computer(&computers, "PC-0001").await;
    let (ann, ann_ad) = w.synced_user("dev-ann", "Ann Device").await;
    let hybrid = device(&w, "PC-0001", Some(&pc.sid)).await;
    let phone = device(&w, "Phone-Ann", None).await;
    let g = w.security_group("SG-Devices", Some(true), None).await;
    for m in [&ann, &hybrid, &phone] {
        w.add_member(&g, m).await;
    }
    let out = w.sync_ok();
    let ad = w.ad_group_of(&g).await.expect("written");
    assert_eq!(ad.member_set(), lower_sorted(&[&ann_ad.dn, &pc.dn]));
    let outcome = outcome_of(&out, &g);
    let fates = outcome["members"].to_string();
    assert!(fates.contains("cloud-only-device"), "{outcome}");

    // A device joining later is added by a delta cycle.
    let pc2 = w.dc.create_computer(&computers, "PC-0002").await;
    let second = device(&w, "PC-0002", Some(&pc2.sid)).await;
    w.add_member(&g, &second).await;
    w.sync_ok();
    let ad = w.ad_group_of(&g).await.expect("written");
    assert_eq!(
        ad.member_set(),
        lower_sorted(&[&ann_ad.dn, &pc.dn, &pc2.dn])
    );
}

/// A full device round that leaves out a device a group still lists (Graph still has it):
/// the device stays in the image and its computer account in the AD group.
#[tokio::test(flavor = "multi_thread")]
async fn a_device_a_full_round_omits_but_graph_still_has_stays_a_member() {
    let w = World::new("devices-omit").await;
    let computers = format!("OU=Computers,{}", w.root_ou);
    w.dc.create_ou(&computers).await;
    let pc = w.dc.create_computer(&computers, "PC-OMIT").await;
    let hybrid = device(&w, "PC-OMIT", Some(&pc.sid)).await;
    let g = w.security_group("SG-Devices-Omit", Some(true), None).await;
    w.add_member(&g, &hybrid).await;
    w.sync_ok();
    let before = w.ad_group_of(&g).await.expect("written").member_set();
    assert_eq!(before, lower_sorted(&[&pc.dn]));

    let resp = reqwest::Client::new()
        .post(format!("{}/_sim/faults", w.sim.url))
        .json(&json!({"omit_devices_from_delta": [hybrid]}))
        .send()
        .await
        .expect("graph-sim /_sim/faults");
    assert!(resp.status().is_success());
    let out = w.sync_expect(0, &["--full"]);
    assert_eq!(out["mode"], "full");
    assert_eq!(out["applied"]["member_removes"], 0, "{out}");
    assert_eq!(w.ad_group_of(&g).await.expect("kept").member_set(), before);
}
