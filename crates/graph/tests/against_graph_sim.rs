//! The Graph client against the project's Graph simulator: tokens (secret and certificate),
//! delta rounds, changes made through Graph's API, expired delta links, throttling.

mod sim;

use reqwest::Method;
use serde_json::json;
use sim::{id, security_group, synced_user, Sim};
use std::process::Command;
use wb_graph::{
    apply_group_changes, apply_user_changes, BatchRequest, Credential, GraphClient, GraphError,
    Presence,
};
use wb_model::{CloudDeletion, CloudSnapshot, MemberKind};

async fn full_snapshot(client: &GraphClient) -> (CloudSnapshot, String, String) {
    let mut snapshot = CloudSnapshot::default();
    let groups = client.group_delta(None).await.expect("full group round");
    assert!(groups.full);
    let _ = apply_group_changes(&mut snapshot, &groups);
    let users = client.user_delta(None).await.expect("full user round");
    apply_user_changes(&mut snapshot, &users);
    (snapshot, groups.delta_link, users.delta_link)
}

#[tokio::test]
async fn secret_gets_a_token_that_is_cached() {
    let sim = Sim::start(&sim::small_tenant(), &[]);
    let client = sim.client();
    let first = client.token().await.expect("token with the right secret");
    assert!(!first.is_empty());
    let second = client.token().await.unwrap();
    assert_eq!(first, second, "a fresh token is reused, not fetched again");
    assert_eq!(
        client.requests(),
        0,
        "token requests are not Graph requests"
    );
}

#[tokio::test]
async fn wrong_secret_is_refused_with_the_aadsts_text() {
    let sim = Sim::start(&sim::small_tenant(), &[]);
    let client = GraphClient::new(sim.config(Credential::Secret("not-the-secret".into()))).unwrap();
    let err = client.token().await.unwrap_err();
    match &err {
        GraphError::Auth {
            status,
            code,
            message,
        } => {
            assert_eq!(*status, 401);
            assert_eq!(code, "invalid_client");
            assert!(message.contains("AADSTS"), "{message}");
        }
        other => panic!("expected an Auth error, got {other}"),
    }
    assert!(err.is_unreachable_or_refused());
    assert!(!err.to_string().contains("not-the-secret"));
    // The same refusal surfaces from a Graph read.
    assert!(matches!(
        client.get_json("/v1.0/groups").await,
        Err(GraphError::Auth { .. })
    ));
}

fn openssl_cert(dir: &std::path::Path, name: &str) -> (String, String) {
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.pem"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
        ])
        .arg(format!("/CN={name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        std::fs::read_to_string(cert).unwrap(),
        std::fs::read_to_string(key).unwrap(),
    )
}

#[tokio::test]
async fn certificate_assertion_gets_a_token_and_a_foreign_key_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_pem, key_pem) = openssl_cert(dir.path(), "writeback-app");
    let (other_cert, other_key) = openssl_cert(dir.path(), "someone-else");
    let cert_path = dir.path().join("writeback-app.pem");
    let sim = Sim::start(
        &sim::small_tenant(),
        &["--client-cert", cert_path.to_str().unwrap()],
    );

    let client =
        GraphClient::new(sim.config(Credential::Certificate { cert_pem, key_pem })).unwrap();
    client
        .token()
        .await
        .expect("token with the registered certificate");
    let groups = client.get_json("/v1.0/groups").await.unwrap();
    assert!(groups["value"].is_array());

    let stranger = GraphClient::new(sim.config(Credential::Certificate {
        cert_pem: other_cert,
        key_pem: other_key,
    }))
    .unwrap();
    match stranger.token().await {
        Err(GraphError::Auth { message, .. }) => assert!(message.contains("AADSTS"), "{message}"),
        Err(other) => panic!("expected an Auth error, got {other}"),
        Ok(_) => panic!("an unregistered certificate got a token"),
    }
}

#[tokio::test]
async fn full_round_reads_every_group_and_a_membership_over_a_thousand() {
    let users: Vec<_> = (0..1_500).map(synced_user).collect();
    let all: Vec<String> = (0..1_500).map(|n| id(0xaaaa, n)).collect();
    let tenant = json!({
        "users": users,
        "groups": [
            security_group(1, "SG-Everyone", &all),
            security_group(2, "SG-Small", &all[..3]),
            sim::m365_group(3, "Marketing Team", &[all[4].clone(), id(0xbbbb, 2)]),
        ],
        "settings": [],
    });
    let sim = Sim::start(&tenant, &[]);
    let client = sim.client();
    let round = client.group_delta(None).await.unwrap();
    // 1,500 members do not fit one page: the group comes back on several pages, and
    // the round still holds one change for it.
    assert!(
        client.requests() > 1,
        "the big membership should span pages"
    );
    assert_eq!(round.changes.len(), 3);
    let (snapshot, group_link, user_link) = full_snapshot(&client).await;
    assert!(group_link.contains("/groups/delta"), "{group_link}");
    assert!(user_link.contains("/users/delta"), "{user_link}");

    assert_eq!(snapshot.groups.len(), 3);
    let everyone = &snapshot.groups[&id(0xbbbb, 1)];
    assert_eq!(everyone.members.len(), 1_500);
    assert!(everyone.members.iter().all(|m| m.kind == MemberKind::User));
    assert_eq!(everyone.display_name.as_deref(), Some("SG-Everyone"));
    assert_eq!(everyone.writeback.is_enabled, Some(true));
    assert_eq!(
        everyone.writeback.on_premises_group_type.as_deref(),
        Some("universalSecurityGroup")
    );

    let marketing = &snapshot.groups[&id(0xbbbb, 3)];
    assert!(marketing.group_types.iter().any(|t| t == "Unified"));
    assert_eq!(marketing.mail_enabled, Some(true));
    assert_eq!(marketing.writeback.is_enabled, None);
    assert!(marketing
        .members
        .iter()
        .any(|m| m.kind == MemberKind::Group && *m.id == *id(0xbbbb, 2)));

    assert_eq!(snapshot.users.len(), 1_500);
    let u7 = &snapshot.users[&id(0xaaaa, 7)];
    assert_eq!(u7.on_premises_sync_enabled, Some(true));
    assert_eq!(
        u7.on_premises_security_identifier.as_deref(),
        Some("S-1-5-21-1-2-3-2007")
    );

    let configs = client.writeback_configurations().await.unwrap();
    assert_eq!(configs.len(), 3);
    assert_eq!(configs[&id(0xbbbb, 1)].is_enabled, Some(true));
    assert_eq!(configs[&id(0xbbbb, 3)].is_enabled, None);
}

#[tokio::test]
async fn changes_read_by_delta_give_the_same_image_as_a_fresh_full_round() {
    let sim = Sim::start(&sim::small_tenant(), &[]);
    let client = sim.client();
    let (mut snapshot, mut link, _) = full_snapshot(&client).await;
    let g = |n| id(0xbbbb, n);
    let u = |n| id(0xaaaa, n);

    // A no-change round costs one request and changes nothing.
    let before = client.requests();
    let quiet = client.group_delta(Some(&link)).await.unwrap();
    assert_eq!(client.requests() - before, 1);
    let unchanged = snapshot.clone();
    let _ = apply_group_changes(&mut snapshot, &quiet);
    assert_eq!(snapshot, unchanged);
    link = quiet.delta_link;

    // Rename, clear a description, switch writeback off, add and remove members,
    // soft-delete two groups.
    let send = |method: Method, path: String, body: Option<serde_json::Value>| {
        let client = client.clone();
        async move {
            client
                .send_json(method.clone(), &path, body.as_ref())
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
        }
    };
    send(
        Method::PATCH,
        format!("/v1.0/groups/{}", g(1)),
        Some(json!({"displayName": "SG-NL-Finance", "description": null})),
    )
    .await;
    send(
        Method::PATCH,
        format!("/beta/groups/{}", g(3)),
        Some(json!({"writebackConfiguration": {"isEnabled": false}})),
    )
    .await;
    let member_ref = json!({"@odata.id": format!("{}/v1.0/directoryObjects/{}", sim.url, u(10))});
    send(
        Method::POST,
        format!("/v1.0/groups/{}/members/$ref", g(1)),
        Some(member_ref),
    )
    .await;
    send(
        Method::DELETE,
        format!("/v1.0/groups/{}/members/{}/$ref", g(2), u(3)),
        None,
    )
    .await;
    send(Method::DELETE, format!("/v1.0/groups/{}", g(4)), None).await;
    send(Method::DELETE, format!("/v1.0/groups/{}", g(5)), None).await;

    let round = client.group_delta(Some(&link)).await.unwrap();
    assert!(!round.full);
    let _ = apply_group_changes(&mut snapshot, &round);
    link = round.delta_link;
    let finance = &snapshot.groups[&g(1)];
    assert_eq!(finance.display_name.as_deref(), Some("SG-NL-Finance"));
    assert_eq!(finance.description, None);
    assert!(finance.members.iter().any(|m| *m.id == *u(10)));
    assert!(!snapshot.groups[&g(2)]
        .members
        .iter()
        .any(|m| *m.id == *u(3)));
    assert_eq!(snapshot.groups[&g(3)].writeback.is_enabled, Some(false));
    assert_eq!(
        snapshot.groups[&g(4)].deleted,
        Some(CloudDeletion::SoftDeleted)
    );
    assert_eq!(
        snapshot.groups[&g(5)].deleted,
        Some(CloudDeletion::SoftDeleted)
    );
    assert_eq!(
        snapshot.groups[&g(4)].display_name.as_deref(),
        Some("SG-Temp"),
        "a soft-deleted group keeps what was known of it"
    );

    // Restore one, delete the other for good.
    send(
        Method::POST,
        format!("/v1.0/directory/deletedItems/{}/restore", g(4)),
        None,
    )
    .await;
    send(
        Method::DELETE,
        format!("/v1.0/directory/deletedItems/{}", g(5)),
        None,
    )
    .await;
    let round = client.group_delta(Some(&link)).await.unwrap();
    let _ = apply_group_changes(&mut snapshot, &round);
    assert_eq!(snapshot.groups[&g(4)].deleted, None, "restored");
    assert!(!snapshot.groups.contains_key(&g(5)), "permanently deleted");

    let fresh = GraphClient::new(sim.config(Credential::Secret(sim::SECRET.into()))).unwrap();
    let mut full = CloudSnapshot::default();
    let _ = apply_group_changes(&mut full, &fresh.group_delta(None).await.unwrap());
    assert_eq!(snapshot.groups, full.groups);
}

#[tokio::test]
async fn expired_delta_link_asks_for_a_full_round() {
    let sim = Sim::start(&sim::small_tenant(), &[]);
    let client = sim.client();
    let groups = client.group_delta(None).await.unwrap();
    let users = client.user_delta(None).await.unwrap();
    sim.admin("/_sim/expire-delta-tokens", json!({})).await;
    let err = client
        .group_delta(Some(&groups.delta_link))
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::DeltaExpired { .. }), "{err}");
    assert!(!err.is_unreachable_or_refused());
    let err = client
        .user_delta(Some(&users.delta_link))
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::DeltaExpired { .. }), "{err}");
    // The full round that follows works.
    assert!(client.group_delta(None).await.unwrap().full);
}

#[tokio::test]
async fn throttled_and_unavailable_answers_are_retried_until_success() {
    let sim = Sim::start(&sim::small_tenant(), &[]);
    let client = sim.client();
    let (calm, _, _) = full_snapshot(&client).await;

    sim.admin(
        "/_sim/faults",
        json!({"throttle_share": 0.4, "unavailable_share": 0.1, "latency_ms": 0, "retry_after_secs": 0}),
    )
    .await;
    let stormy_client = sim.client();
    let (stormy, _, _) = full_snapshot(&stormy_client).await;
    assert_eq!(stormy, calm);
    let logical = 20u64;
    for _ in 0..logical {
        stormy_client
            .get_json("/v1.0/groups?$top=1")
            .await
            .expect("retried read");
    }
    assert!(
        stormy_client.requests() > logical + 2,
        "with half the answers refused, some requests must have been retried ({} sent)",
        stormy_client.requests()
    );
}

#[tokio::test]
async fn graph_error_answers_name_method_url_and_code() {
    let sim = Sim::start(&sim::small_tenant(), &[]);
    let client = sim.client();
    let missing = id(0xdddd, 1);
    let err = client
        .get_json(&format!("/v1.0/groups/{missing}"))
        .await
        .unwrap_err();
    match &err {
        GraphError::Api {
            method,
            url,
            status,
            code,
            ..
        } => {
            assert_eq!(method, "GET");
            assert!(url.contains(&missing), "{url}");
            assert_eq!(*status, 404);
            assert!(!code.is_empty() && code != "unknown", "{code}");
        }
        other => panic!("expected an Api error, got {other}"),
    }
}

#[tokio::test]
async fn closed_port_is_reported_unreachable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut cfg = wb_graph::GraphConfig::new(
        sim::TENANT,
        sim::CLIENT_ID,
        Credential::Secret(sim::SECRET.into()),
    );
    cfg.graph_url = format!("http://127.0.0.1:{port}");
    cfg.login_url = cfg.graph_url.clone();
    cfg.max_retries = 0;
    let client = GraphClient::new(cfg).unwrap();
    let err = client.group_delta(None).await.unwrap_err();
    assert!(matches!(err, GraphError::Unreachable { .. }), "{err}");
    assert!(err.is_unreachable_or_refused());
}

#[tokio::test]
async fn writeback_configurations_follow_pages_past_999_groups() {
    let groups: Vec<_> = (0..1_001)
        .map(|n| security_group(n, &format!("SG-{n}"), &[]))
        .collect();
    let tenant = json!({"users": [], "groups": groups, "settings": []});
    let sim = Sim::start(&tenant, &[]);
    let client = sim.client();
    let configs = client.writeback_configurations().await.unwrap();
    assert_eq!(configs.len(), 1_001);
    assert_eq!(client.requests(), 2, "999 groups a page");
    assert!(configs.values().all(|c| c.is_enabled == Some(true)));
}

#[tokio::test]
async fn user_changes_and_deletes_reach_the_image() {
    // Synced users are mastered in AD (Graph refuses to edit them): change cloud users.
    let mut tenant = sim::small_tenant();
    let cloud_user = |n: u32| {
        json!({
            "id": id(0xcccc, n),
            "displayName": format!("Cloud User {n}"),
            "userPrincipalName": format!("cloud{n}@lab.example.test"),
            "accountEnabled": true,
            "mailNickname": format!("cloud{n}"),
        })
    };
    if let Some(users) = tenant["users"].as_array_mut() {
        users.push(cloud_user(1));
        users.push(cloud_user(2));
    }
    let sim = Sim::start(&tenant, &[]);
    let client = sim.client();
    let (mut snapshot, _, link) = full_snapshot(&client).await;
    assert_eq!(snapshot.users.len(), 22);
    let c = |n| id(0xcccc, n);
    client
        .send_json(
            Method::PATCH,
            &format!("/v1.0/users/{}", c(1)),
            Some(&json!({"displayName": "Renamed User"})),
        )
        .await
        .unwrap();
    client
        .send_json(Method::DELETE, &format!("/v1.0/users/{}", c(2)), None)
        .await
        .unwrap();
    let round = client.user_delta(Some(&link)).await.unwrap();
    apply_user_changes(&mut snapshot, &round);
    let renamed = &snapshot.users[&c(1)];
    assert_eq!(renamed.display_name.as_deref(), Some("Renamed User"));
    assert_eq!(
        renamed.user_principal_name.as_deref(),
        Some("cloud1@lab.example.test"),
        "unchanged properties stay"
    );
    assert!(!snapshot.users.contains_key(&c(2)));
    assert_eq!(snapshot.users.len(), 21);

    let mut fresh = CloudSnapshot::default();
    apply_user_changes(&mut fresh, &client.user_delta(None).await.unwrap());
    assert_eq!(snapshot.users, fresh.users);
}

#[tokio::test]
async fn absent_groups_are_confirmed_gone_only_when_graph_no_longer_has_them() {
    let sim = Sim::start(&sim::small_tenant(), &[]);
    let client = sim.client();
    let g = |n| id(0xbbbb, n);
    // g4 soft-deleted (in deleted items), g5 deleted for good.
    for path in [
        format!("/v1.0/groups/{}", g(4)),
        format!("/v1.0/groups/{}", g(5)),
        format!("/v1.0/directory/deletedItems/{}", g(5)),
    ] {
        client
            .send_json(Method::DELETE, &path, None)
            .await
            .unwrap_or_else(|e| panic!("DELETE {path}: {e}"));
    }
    // More than one $batch of ids, and inner throttling to retry.
    let never: Vec<String> = (0..22).map(|n| id(0xdddd, n)).collect();
    let mut ids = vec![g(1), g(4), g(5)];
    ids.extend(never.iter().cloned());
    sim.admin(
        "/_sim/faults",
        json!({"throttle_share": 0.3, "retry_after_secs": 0}),
    )
    .await;
    let presence = client.confirm_gone(&ids).await.expect("confirmed");
    assert_eq!(presence.len(), ids.len());
    assert_eq!(presence[&g(1)], Presence::Alive);
    assert_eq!(presence[&g(4)], Presence::SoftDeleted);
    assert_eq!(presence[&g(5)], Presence::Gone);
    assert!(never.iter().all(|id| presence[id] == Presence::Gone));
}

#[tokio::test]
async fn users_left_out_of_a_full_round_are_confirmed_by_batched_reads() {
    let sim = Sim::start(&sim::small_tenant(), &[]);
    let client = sim.client();
    let u = |n| id(0xaaaa, n);
    let path = format!("/v1.0/users/{}", u(3));
    client
        .send_json(Method::DELETE, &path, None)
        .await
        .unwrap_or_else(|e| panic!("DELETE {path}: {e}"));
    // More than one $batch of ids.
    let never: Vec<String> = (0..22).map(|n| id(0xdddd, n)).collect();
    let mut ids = vec![u(1), u(3)];
    ids.extend(never.iter().cloned());
    let alive = client
        .confirm_present("users", &ids)
        .await
        .expect("confirmed");
    assert_eq!(alive.len(), ids.len());
    assert!(alive[&u(1)]);
    assert!(!alive[&u(3)], "deleted");
    assert!(never.iter().all(|id| !alive[id]));
}

#[tokio::test]
async fn batched_writes_answer_each_request_and_retry_the_throttled_ones() {
    let mut tenant = sim::small_tenant();
    let groups = tenant["groups"].as_array_mut().expect("groups");
    for n in 10..32 {
        groups.push(security_group(n, &format!("SG-Bulk-{n}"), &[]));
    }
    let sim = Sim::start(&tenant, &[]);
    let client = sim.client();
    let enable = json!({"writebackConfiguration": {"isEnabled": true}});
    let mut requests: Vec<BatchRequest> = (10..32)
        .map(|n| BatchRequest::patch(format!("/groups/{}", id(0xbbbb, n)), enable.clone()))
        .collect();
    // One group that does not exist and one write Graph refuses: their own answers only.
    let missing = id(0xdddd, 1);
    requests.push(BatchRequest::patch(
        format!("/groups/{missing}"),
        enable.clone(),
    ));
    requests.push(BatchRequest::patch(
        format!("/groups/{}", id(0xbbbb, 1)),
        json!({"noSuchProperty": 1}),
    ));
    sim.admin(
        "/_sim/faults",
        json!({"throttle_share": 0.3, "retry_after_secs": 0}),
    )
    .await;
    let answers = client.batch("beta", &requests).await.expect("batched");
    sim.admin("/_sim/faults", json!({})).await;
    assert_eq!(answers.len(), requests.len());
    assert!(answers[..22].iter().all(|a| a.is_success()));
    assert_eq!(answers[22].status, 404);
    let words = answers[22]
        .error(&Method::PATCH, &format!("/beta/groups/{missing}"))
        .to_string();
    assert!(
        words.contains(&missing) && words.contains("(in $batch)"),
        "{words}"
    );
    assert_eq!(answers[23].status, 400);
    for n in 10..32 {
        let g = client
            .get_json(&format!(
                "/beta/groups/{}?$select=id,writebackConfiguration",
                id(0xbbbb, n)
            ))
            .await
            .expect("group");
        assert_eq!(g["writebackConfiguration"]["isEnabled"], true, "{g}");
    }
}

#[tokio::test]
async fn device_delta_and_cloud_managed_groups_are_read() {
    let pc = id(0xdddd, 1);
    let phone = id(0xdddd, 2);
    let mut group = security_group(7, "FS-Share", &[pc.clone(), phone.clone()]);
    group["onPremisesSyncEnabled"] = json!(null);
    group["onPremisesSecurityIdentifier"] = json!("S-1-5-21-1-2-3-4101");
    group["onPremisesSyncBehavior"] = json!({"isCloudManaged": true});
    let tenant = json!({
        "users": [],
        "devices": [
            {"id": pc, "displayName": "PC-1", "deviceId": "d-1", "onPremisesSyncEnabled": true,
             "onPremisesSecurityIdentifier": "S-1-5-21-1-2-3-6001"},
            {"id": phone, "displayName": "Phone", "deviceId": "d-2"},
        ],
        "groups": [group, security_group(8, "SG-Plain", &[])],
    });
    let sim = Sim::start(&tenant, &[]);
    let client = sim.client();
    let round = client.device_delta(None).await.expect("device round");
    let mut snapshot = CloudSnapshot::default();
    wb_graph::apply_device_changes(&mut snapshot, &round);
    assert_eq!(snapshot.devices.len(), 2);
    assert_eq!(
        snapshot.devices[&pc]
            .on_premises_security_identifier
            .as_deref(),
        Some("S-1-5-21-1-2-3-6001")
    );
    assert_eq!(snapshot.devices[&phone].on_premises_sync_enabled, None);
    let groups = client.group_delta(None).await.unwrap();
    let _ = apply_group_changes(&mut snapshot, &groups);
    let members = &snapshot.groups[&id(0xbbbb, 7)].members;
    assert!(
        members.iter().all(|m| m.kind == MemberKind::Device),
        "{members:?}"
    );
    assert!(client.group_is_cloud_managed(&id(0xbbbb, 7)).await.unwrap());
    assert!(!client.group_is_cloud_managed(&id(0xbbbb, 8)).await.unwrap());
    assert!(!client
        .group_is_cloud_managed("00000000-0000-0000-0000-00000000dead")
        .await
        .unwrap());
    let again = client.device_delta(Some(&round.delta_link)).await.unwrap();
    assert!(again.changes.is_empty());
}
