//! Real-server tests of the security-descriptor code against the lab's Samba AD DC: what the
//! DC returns parses and serialises back to the same bytes, and a DACL written DACL-only
//! keeps the owner, group and SACL and holds the ACEs added.

use ldap3::controls::RawControl;
use ldap3::{Scope, SearchEntry};
use wb_ad::acl::{group_writeback_aces, Ace, SecurityDescriptor, Sid};
use wb_ad::values::first_binary;
use wb_ad::AdConnector;
use wb_lab::LabDc;

async fn connect(dc: &LabDc) -> AdConnector {
    AdConnector::connect(&dc.ad_config())
        .await
        .expect("bind to the lab DC")
}

/// The whole descriptor (owner, group, DACL, SACL) as the admin reads it, without the
/// connector: SD flags 0xF.
async fn full_descriptor(dc: &LabDc, dn: &str) -> Vec<u8> {
    let mut ldap = dc.ldap().await;
    let control = RawControl {
        ctype: "1.2.840.113556.1.4.801".into(),
        crit: true,
        val: Some(vec![0x30, 0x03, 0x02, 0x01, 0x0f]),
    };
    let (entries, _) = ldap
        .with_controls(control)
        .search(
            dn,
            Scope::Base,
            "(objectClass=*)",
            vec!["nTSecurityDescriptor"],
        )
        .await
        .expect("search")
        .success()
        .expect("search ok");
    let e = SearchEntry::construct(entries.into_iter().next().expect("entry"));
    let _ = ldap.unbind().await;
    first_binary(&e, "nTSecurityDescriptor").expect("nTSecurityDescriptor")
}

#[tokio::test(flavor = "multi_thread")]
async fn descriptors_the_dc_returns_round_trip_byte_for_byte() {
    let dc = LabDc::ensure();
    let ou = dc.fresh_ou("acl-roundtrip").await;
    let name = format!("aclrt{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let group = dc.create_group(&ou, &name, -2147483640).await;
    let objects = [
        dc.base_dn.clone(),
        format!("CN=Users,{}", dc.base_dn),
        format!("OU=Domain Controllers,{}", dc.base_dn),
        format!("CN=Administrator,CN=Users,{}", dc.base_dn),
        ou.clone(),
        group.dn.clone(),
    ];
    let mut ad = connect(&dc).await;
    for dn in &objects {
        // Whole descriptors, SACL included (the admin may read them) …
        let bytes = full_descriptor(&dc, dn).await;
        let sd = SecurityDescriptor::parse(&bytes).unwrap_or_else(|e| panic!("{dn}: {e}"));
        assert!(sd.owner.is_some() && sd.dacl.is_some(), "{dn}: {sd:?}");
        assert_eq!(sd.to_bytes(), bytes, "{dn}: whole descriptor round-trips");
        // … and the DACL-only form the connector reads.
        let dacl = ad.read_dacl(dn).await.expect("read").expect("exists");
        assert!(
            dacl.owner.is_none() && dacl.sacl.is_none(),
            "{dn}: DACL only"
        );
        assert_eq!(dacl.dacl, sd.dacl, "{dn}: the same DACL");
        let again = SecurityDescriptor::parse(&dacl.to_bytes()).expect("parses");
        assert_eq!(again, dacl);
    }
    assert_eq!(
        ad.read_dacl(&format!("OU=absent,{ou}")).await.ok(),
        Some(None)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dacl_written_dacl_only_keeps_owner_group_and_sacl() {
    let dc = LabDc::ensure();
    let ou = dc.fresh_ou("acl-write").await;
    let user = dc
        .create_user(
            &ou,
            &format!("aclw{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            "acl writer",
        )
        .await;
    let sid: Sid = user.sid.parse().expect("SID");
    let before = SecurityDescriptor::parse(&full_descriptor(&dc, &ou).await).expect("parses");

    let mut ad = connect(&dc).await;
    let mut sd = ad.read_dacl(&ou).await.expect("read").expect("exists");
    let wanted = group_writeback_aces(&sid);
    let dacl = sd.dacl.as_mut().expect("a DACL");
    assert!(!wanted.iter().any(|w| dacl.grants(w)));
    for ace in wanted.clone() {
        dacl.insert_canonical(ace);
    }
    ad.write_dacl(&ou, &sd).await.expect("write the DACL");

    let after = SecurityDescriptor::parse(&full_descriptor(&dc, &ou).await).expect("parses");
    assert_eq!(after.owner, before.owner);
    assert_eq!(after.group, before.group);
    assert_eq!(after.sacl, before.sacl);
    let dacl = after.dacl.expect("a DACL");
    // Samba 4.17 stores the DACL as sent: no reordering, no split of the inheritable ACE.
    assert_eq!(
        Some(&dacl),
        sd.dacl.as_ref(),
        "the DACL is stored as written"
    );
    for w in &wanted {
        assert!(dacl.grants(w), "{} kept: {dacl:?}", w.sddl());
    }
    // Every ACE of the account's is one we wrote: nothing was split or duplicated.
    let ours: Vec<&Ace> = dacl
        .aces
        .iter()
        .filter(|a| matches!(a, Ace::Access(a) if a.sid == sid))
        .collect();
    assert_eq!(ours.len(), 2, "{ours:?}");
    // Canonical order: no explicit ACE after an inherited one.
    let first_inherited = dacl.aces.iter().position(Ace::is_inherited);
    let last_explicit = dacl.aces.iter().rposition(|a| !a.is_inherited());
    if let (Some(i), Some(e)) = (first_inherited, last_explicit) {
        assert!(e < i, "explicit ACEs before inherited ones: {dacl:?}");
    }
}
