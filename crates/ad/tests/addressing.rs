//! Real-server test: every write to an existing object is addressed by its objectGUID, so
//! it lands on the object that was checked — never on whatever holds the DN an operation
//! names (a foreign object, or one that took the place of a moved group).

use ldap3::{Scope, SearchEntry};
use wb_ad::AdConnector;
use wb_lab::LabDc;
use wb_model::{Action, AttrChange, GROUP_TYPE_SECURITY, GROUP_TYPE_UNIVERSAL};

async fn description(dc: &LabDc, dn: &str) -> Option<String> {
    let mut ldap = dc.ldap().await;
    let (entries, _) = ldap
        .search(dn, Scope::Base, "(objectClass=*)", vec!["description"])
        .await
        .expect("search")
        .success()
        .expect("found");
    entries
        .into_iter()
        .map(SearchEntry::construct)
        .next()
        .and_then(|e| e.attrs.get("description").and_then(|v| v.first().cloned()))
}

#[tokio::test]
async fn writes_go_to_the_object_guid_not_to_the_dn_named() {
    let dc = LabDc::ensure();
    let ou = dc.fresh_ou("addressing").await;
    let t = GROUP_TYPE_UNIVERSAL | GROUP_TYPE_SECURITY;
    // sAMAccountName = CN must be unique in the domain, which every test run shares.
    let tag = &ou[3..ou.find(',').unwrap_or(ou.len())];
    let owned = dc.create_group(&ou, &format!("Owned-{tag}"), t).await;
    let foreign = dc.create_group(&ou, &format!("Foreign-{tag}"), t).await;
    let mut ad = AdConnector::connect(&dc.ad_config()).await.expect("bind");
    let schema = ad.detect_schema().await.expect("schema");
    let groups = ad.read_groups(&ou, &schema).await.expect("read");
    let guid = |dn: &str| {
        groups
            .iter()
            .find(|g| g.dn.eq_ignore_ascii_case(dn))
            .map(|g| g.guid.clone())
            .expect("group read")
    };
    let owned_guid = guid(&owned.dn);

    // An operation that names the foreign DN with the owned GUID changes the owned object.
    ad.apply(&Action::Modify {
        dn: foreign.dn.clone(),
        guid: owned_guid.clone(),
        changes: vec![AttrChange {
            attr: "description".into(),
            before: vec![],
            after: vec!["written by guid".into()],
        }],
    })
    .await
    .expect("modify");
    assert_eq!(
        description(&dc, &owned.dn).await.as_deref(),
        Some("written by guid")
    );
    assert_eq!(
        description(&dc, &foreign.dn).await,
        None,
        "the foreign object is untouched"
    );

    // A delete naming the foreign DN deletes the object with the GUID, and nothing else.
    ad.apply(&Action::Delete {
        dn: foreign.dn.clone(),
        guid: owned_guid.clone(),
    })
    .await
    .expect("delete");
    let after = ad.read_groups(&ou, &schema).await.expect("read");
    assert_eq!(after.len(), 1);
    assert!(after[0].dn.eq_ignore_ascii_case(&foreign.dn), "{:?}", after);

    // An object that is gone is an error, not a write to whatever has its old DN.
    let err = ad
        .apply(&Action::Modify {
            dn: foreign.dn.clone(),
            guid: owned_guid,
            changes: vec![AttrChange {
                attr: "description".into(),
                before: vec![],
                after: vec!["must not land".into()],
            }],
        })
        .await
        .expect_err("no such object");
    assert_eq!(err.code(), Some(32), "{err}");
    assert_eq!(description(&dc, &foreign.dn).await, None);
}

#[tokio::test]
async fn a_rename_in_place_by_guid_keeps_the_parent() {
    let dc = LabDc::ensure();
    let ou = dc.fresh_ou("guidrename").await;
    let tag = &ou[3..ou.find(',').unwrap_or(ou.len())];
    let t = GROUP_TYPE_UNIVERSAL | GROUP_TYPE_SECURITY;
    let g = dc.create_group(&ou, &format!("Before-{tag}"), t).await;
    let mut ad = AdConnector::connect(&dc.ad_config()).await.expect("bind");
    let schema = ad.detect_schema().await.expect("schema");
    let read = ad.read_groups(&ou, &schema).await.expect("read");
    let guid = read[0].guid.clone();
    let new_rdn = format!("CN=After-{tag}");
    let new_dn = format!("{new_rdn},{ou}");
    let applied = ad
        .apply(&Action::Rename {
            dn: g.dn.clone(),
            guid: guid.clone(),
            new_rdn,
            new_parent: None,
            new_dn: new_dn.clone(),
        })
        .await
        .expect("rename");
    assert_eq!(applied.dn, new_dn);
    let now = ad
        .read_group(&guid, &schema)
        .await
        .expect("read")
        .expect("found");
    assert!(
        now.dn.eq_ignore_ascii_case(&new_dn),
        "{} vs {new_dn}",
        now.dn
    );
}
