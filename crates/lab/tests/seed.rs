//! The seeder against the real lab DC: synced users and groups land in AD, the tenant comes
//! back with their identities, and a second run finds the same objects.

use ldap3::{Scope, SearchEntry};
use serde_json::json;
use wb_lab::seed::{seed, SeedTarget};
use wb_lab::LabDc;

#[tokio::test]
async fn seeding_fills_identities_and_is_repeatable() {
    let dc = LabDc::ensure();
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let user_dn = format!("CN=Seed User {tag},OU=People,OU=Lab,{}", dc.base_dn);
    let tenant = json!({
        "users": [
            {"id": "u1", "displayName": format!("Seed User {tag}"), "onPremisesSyncEnabled": true,
             "onPremisesSamAccountName": format!("seed.{tag}"), "onPremisesDistinguishedName": user_dn},
            {"id": "u2", "displayName": "Cloud Only", "onPremisesSyncEnabled": null}
        ],
        "groups": [
            {"id": "g1", "displayName": format!("DL-Seed-{tag}"), "onPremisesSyncEnabled": true, "members": ["u1", "u2"]},
            {"id": "g2", "displayName": format!("SG-Seed-{tag}"), "onPremisesSyncEnabled": true, "members": []},
            {"id": "g3", "displayName": format!("Cloud-{tag}"), "members": ["u1"]}
        ],
        "settings": []
    });
    let target = SeedTarget {
        url: dc.url.clone(),
        bind_dn: dc.bind_dn.clone(),
        password: dc.password.clone(),
        base_dn: dc.base_dn.clone(),
    };
    let (first, report) = seed(tenant.clone(), &target).await.expect("first seeding");
    assert_eq!((report.users, report.groups), (1, 2));
    let sid = first["users"][0]["onPremisesSecurityIdentifier"]
        .as_str()
        .expect("user SID filled")
        .to_string();
    assert!(sid.starts_with("S-1-5-21-"));
    assert_eq!(
        first["users"][0]["onPremisesImmutableId"]
            .as_str()
            .map(str::len),
        Some(24)
    );
    assert!(
        first["users"][1]
            .get("onPremisesSecurityIdentifier")
            .is_none(),
        "cloud-only users are left alone"
    );
    assert!(first["groups"][0]["onPremisesSecurityIdentifier"]
        .as_str()
        .is_some());
    assert!(
        first["groups"][2]
            .get("onPremisesSecurityIdentifier")
            .is_none(),
        "cloud groups are not created"
    );

    let (second, _) = seed(tenant, &target).await.expect("second seeding");
    assert_eq!(first, second, "re-seeding finds the same objects");

    let mut ldap = dc.ldap().await;
    let dl = format!("CN=DL-Seed-{tag},OU=Groups,OU=Lab,{}", dc.base_dn);
    let (entries, _) = ldap
        .search(
            &dl,
            Scope::Base,
            "(objectClass=group)",
            vec!["groupType", "member"],
        )
        .await
        .expect("search")
        .success()
        .expect("the DL group exists");
    let entry = SearchEntry::construct(entries.into_iter().next().expect("one entry"));
    assert_eq!(entry.attrs["groupType"], vec![(i32::MIN | 0x4).to_string()]);
    assert_eq!(entry.attrs["member"].len(), 1);
}
