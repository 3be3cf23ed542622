//! Real-server tests of the LDAP connector against the lab's Samba AD DC (`lab/dc start`,
//! through wb-lab's `LabDc::ensure()`); each test works in its own fresh OU.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use wb_ad::{AdConnector, AdError, Applied};
use wb_lab::LabDc;
use wb_model::{
    Action, AdClass, AttrChange, Lookup, GROUP_TYPE_DOMAIN_LOCAL, GROUP_TYPE_SECURITY,
    GROUP_TYPE_UNIVERSAL,
};

const UNIVERSAL_SECURITY: i32 = GROUP_TYPE_UNIVERSAL | GROUP_TYPE_SECURITY;

async fn connect(dc: &LabDc) -> AdConnector {
    AdConnector::connect(&dc.ad_config())
        .await
        .expect("bind to the lab DC")
}

fn create_action(dn: &str, sam: &str, members: Vec<String>) -> Action {
    let id = uuid::Uuid::new_v4();
    let attrs = BTreeMap::from([
        (
            "objectClass".into(),
            vec!["top".to_string(), "group".to_string()],
        ),
        ("sAMAccountName".into(), vec![sam.to_string()]),
        ("groupType".into(), vec![UNIVERSAL_SECURITY.to_string()]),
        ("adminDescription".into(), vec![format!("Group_{id}")]),
        (
            "msDS-ExternalDirectoryObjectId".into(),
            vec![format!("Group_{id}")],
        ),
        ("displayName".into(), vec![sam.to_string()]),
    ]);
    Action::Create {
        dn: dn.to_string(),
        attrs: attrs.into_iter().map(|(k, v)| (k, v.into())).collect(),
        members: shared(&members),
        sam_account_name_fallbacks: vec![format!("{sam}-fb")],
    }
}

/// Creates one group as the exporter does — mark, add, read back — and returns what the
/// add did with the identity read back.
async fn create(ad: &mut AdConnector, action: &Action) -> Result<Applied, AdError> {
    let mark = ad.mark_creates().await?;
    let mut applied = ad.apply(action).await?;
    assert_eq!(applied.guid, None, "an add does not read back");
    let parent = applied
        .dn
        .split_once(',')
        .map(|(_, p)| p)
        .unwrap_or_default();
    let read = ad.read_back_created(parent, mark).await?;
    let g = read
        .into_iter()
        .find(|g| g.dn.eq_ignore_ascii_case(&applied.dn))
        .expect("the created group is read back");
    applied.guid = Some(g.guid);
    applied.sid = g.sid;
    Ok(applied)
}

/// A short unique name (sAMAccountName must be unique in the domain, tests share one).
fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

async fn users(dc: &LabDc, ou: &str, n: usize) -> Vec<String> {
    let mut ldap = dc.ldap().await;
    let tag = unique("u");
    let mut dns = Vec::with_capacity(n);
    for i in 0..n {
        let dn = format!("CN={tag}-{i},{ou}");
        let sam = format!("{tag}-{i}");
        let res = ldap
            .add(
                &dn,
                vec![
                    ("objectClass", HashSet::from(["user"])),
                    ("sAMAccountName", HashSet::from([sam.as_str()])),
                ],
            )
            .await
            .expect("add user");
        assert_eq!(res.rc, 0, "add {dn}: {}", res.text);
        dns.push(dn);
    }
    dns
}

#[tokio::test]
async fn connects_over_ldap_starttls_and_ldaps_with_the_lab_ca() {
    let dc = LabDc::ensure();
    assert!(dc.ca_file.is_some(), "the lab exports its CA");
    let plain = dc.ad_config();
    AdConnector::connect(&plain)
        .await
        .expect("plain ldap")
        .unbind()
        .await
        .expect("unbind");

    let starttls = wb_ad::AdConfig {
        starttls: true,
        ..dc.ad_config()
    };
    let mut c = AdConnector::connect(&starttls)
        .await
        .expect("StartTLS with the lab CA");
    assert!(c.ou_exists(&dc.base_dn).await.expect("read over StartTLS"));

    let ldaps = wb_ad::AdConfig {
        url: dc.ldaps_url.clone(),
        ..dc.ad_config()
    };
    let mut c = AdConnector::connect(&ldaps)
        .await
        .expect("ldaps with the lab CA");
    assert!(c.ou_exists(&dc.base_dn).await.expect("read over ldaps"));
}

#[tokio::test]
async fn ldaps_without_the_lab_ca_is_a_tls_error() {
    let dc = LabDc::ensure();
    let ldaps = wb_ad::AdConfig {
        url: dc.ldaps_url.clone(),
        ca_file: None,
        ..dc.ad_config()
    };
    let err = AdConnector::connect(&ldaps)
        .await
        .expect_err("untrusted self-signed CA must be refused");
    assert!(matches!(err, AdError::Tls { .. }), "got {err}");
    assert!(err.is_unreachable_or_refused());
    // In words an operator acts on: the problem, and the fix.
    let said = err.to_string();
    assert!(said.contains("certificate is not trusted"), "{said}");
    assert!(said.contains("set ca_file"), "{said}");
    // StartTLS on plain LDAP is verified the same way.
    let starttls = wb_ad::AdConfig {
        starttls: true,
        ca_file: None,
        ..dc.ad_config()
    };
    let err = AdConnector::connect(&starttls)
        .await
        .expect_err("StartTLS with an untrusted CA must be refused");
    assert!(matches!(err, AdError::Tls { .. }), "got {err}");
    assert!(err.to_string().contains("set ca_file"), "{err}");
}

#[tokio::test]
async fn wrong_password_is_a_bind_error_with_code_49() {
    let dc = LabDc::ensure();
    let cfg = wb_ad::AdConfig {
        password: "not-the-password".into(),
        ..dc.ad_config()
    };
    let err = AdConnector::connect(&cfg)
        .await
        .expect_err("wrong password must fail");
    match &err {
        AdError::Bind { code, dn, .. } => {
            assert_eq!(*code, 49);
            assert_eq!(dn, &dc.bind_dn);
        }
        other => panic!("expected a bind error, got {other}"),
    }
    assert!(err.is_unreachable_or_refused());
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    let dc = LabDc::ensure();
    let cfg = wb_ad::AdConfig {
        url: "ldap://127.0.0.1:1".into(),
        ..dc.ad_config()
    };
    let err = AdConnector::connect(&cfg)
        .await
        .expect_err("port 1 has no LDAP server");
    assert!(matches!(err, AdError::Connect { .. }), "got {err}");
    assert!(err.is_unreachable_or_refused());
}

#[tokio::test]
async fn schema_2016_has_the_external_directory_object_id() {
    let dc = LabDc::ensure();
    let schema = connect(&dc)
        .await
        .detect_schema()
        .await
        .expect("detect schema");
    assert!(schema.external_directory_object_id);
    assert!(schema.mail);
    assert!(schema.proxy_addresses);
    assert!(!schema.mail_nickname, "Samba has no Exchange schema");
}

#[tokio::test]
async fn schema_2012_lacks_the_external_directory_object_id() {
    let dc = LabDc::ensure_2012();
    let schema = connect(&dc)
        .await
        .detect_schema()
        .await
        .expect("detect schema");
    assert!(!schema.external_directory_object_id);
    assert!(schema.mail);
}

#[tokio::test]
async fn group_lifecycle_keeps_guid_and_sid_through_rename_and_move() {
    let dc = LabDc::ensure();
    let ou = dc.fresh_ou("lifecycle").await;
    let other_ou = format!("OU=Other,{ou}");
    dc.create_ou(&other_ou).await;
    let mut ad = connect(&dc).await;
    let schema = ad.detect_schema().await.expect("schema");
    let members = users(&dc, &ou, 2).await;
    let sam = unique("life");
    let dn = format!("CN={sam},{ou}");

    let created = create(&mut ad, &create_action(&dn, &sam, members.clone()))
        .await
        .expect("create");
    let guid = created.guid.clone().expect("guid read back");
    let sid = created.sid.clone().expect("sid read back");
    assert!(sid.starts_with("S-1-5-21-"));
    assert!(created.member_errors.is_empty());

    let new_dn = format!("CN=Renamed\\, {sam},{other_ou}");
    let rename = Action::Rename {
        dn: dn.clone(),
        guid: guid.clone(),
        new_rdn: format!("CN=Renamed\\, {sam}"),
        new_parent: Some(other_ou.clone()),
        new_dn: new_dn.clone(),
    };
    assert_eq!(ad.apply(&rename).await.expect("rename").dn, new_dn);

    let modify = Action::Modify {
        dn: new_dn.clone(),
        guid: guid.clone(),
        changes: vec![
            AttrChange {
                attr: "description".into(),
                before: vec![],
                after: vec!["Finance, NL".into()],
            },
            AttrChange {
                attr: "displayName".into(),
                before: vec![sam.clone()],
                after: vec![],
            },
            // Removing an attribute that is not there is fine.
            AttrChange {
                attr: "mail".into(),
                before: vec![],
                after: vec![],
            },
        ],
    };
    ad.apply(&modify).await.expect("modify");

    let group = ad
        .read_group(&guid, &schema)
        .await
        .expect("read")
        .expect("group exists");
    assert_eq!(group.dn.to_lowercase(), new_dn.to_lowercase());
    assert_eq!(group.sid.as_deref(), Some(sid.as_str()));
    assert_eq!(group.description.as_deref(), Some("Finance, NL"));
    assert_eq!(group.display_name, None);
    assert_eq!(group.group_type, UNIVERSAL_SECURITY);
    assert!(group.anchor().is_some());
    assert_eq!(group.members.len(), 2);

    let listed = ad.read_groups(&ou, &schema).await.expect("read groups");
    assert_eq!(listed.iter().filter(|g| g.guid == guid).count(), 1);

    ad.apply(&Action::Delete {
        dn: new_dn.clone(),
        guid: guid.clone(),
    })
    .await
    .expect("delete");
    assert_eq!(
        ad.read_group(&guid, &schema)
            .await
            .expect("read after delete"),
        None
    );
    let err = ad
        .apply(&Action::Delete {
            dn: new_dn.clone(),
            guid,
        })
        .await
        .expect_err("second delete fails");
    match err {
        AdError::Ldap {
            code,
            operation,
            dn,
            ..
        } => {
            assert_eq!(code, 32);
            assert_eq!(operation, "delete");
            assert_eq!(dn, new_dn);
        }
        other => panic!("expected an LDAP error, got {other}"),
    }
}

#[tokio::test]
async fn range_retrieval_reads_all_3000_members() {
    let dc = LabDc::ensure();
    let ou = dc.fresh_ou("range").await;
    let members = users(&dc, &ou, 3000).await;
    let mut ad = connect(&dc).await;
    let schema = ad.detect_schema().await.expect("schema");
    let sam = unique("big");
    let dn = format!("CN={sam},{ou}");
    let before = ad.writes();
    let created = create(&mut ad, &create_action(&dn, &sam, members.clone()))
        .await
        .expect("create with 3000 members");
    // One add with 1,000 inline, then two modifies of 1,000.
    assert_eq!(ad.writes() - before, 3);
    let group = ad
        .read_group(created.guid.as_deref().expect("guid"), &schema)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(group.members.len(), 3000);
    let got: BTreeSet<String> = group.members.iter().map(|m| m.to_lowercase()).collect();
    let want: BTreeSet<String> = members.iter().map(|m| m.to_lowercase()).collect();
    assert_eq!(got, want);

    let listed = ad.read_groups(&ou, &schema).await.expect("read groups");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].members.len(), 3000);
}

#[tokio::test]
async fn resolve_finds_objects_by_sid_immutable_id_and_dn() {
    let dc = LabDc::ensure();
    let ou = dc.fresh_ou("resolve").await;
    let anna = dc.create_user(&ou, &unique("anna"), "Anna, de Wit").await;
    let bram = dc.create_user(&ou, &unique("bram"), "Bram Jansen").await;
    let carla = dc.create_user(&ou, &unique("carla"), "Carla Visser").await;
    let local = dc
        .create_group(
            &ou,
            &unique("DL"),
            GROUP_TYPE_DOMAIN_LOCAL | GROUP_TYPE_SECURITY,
        )
        .await;
    let missing_dn = format!("CN=Nobody,{ou}");
    let lookups = BTreeSet::from([
        Lookup::Sid(anna.sid.clone()),
        Lookup::ImmutableId(bram.immutable_id_base64.clone()),
        Lookup::Dn(carla.dn.clone()),
        Lookup::Sid(local.sid.clone()),
        Lookup::Sid("S-1-5-21-1-2-3-999999".into()),
        Lookup::ImmutableId("AAAAAAAAAAAAAAAAAAAAAA==".into()),
        Lookup::ImmutableId("not base64!".into()),
        Lookup::Dn(missing_dn.clone()),
    ]);
    let res = connect(&dc).await.resolve(&lookups).await.expect("resolve");
    assert_eq!(res.asked, lookups);
    assert_eq!(res.found.len(), 4, "found: {:?}", res.found.keys());
    assert_eq!(res.found[&Lookup::Sid(anna.sid.clone())].guid, anna.guid);
    assert_eq!(
        res.found[&Lookup::Sid(anna.sid)].dn.to_lowercase(),
        anna.dn.to_lowercase()
    );
    assert_eq!(
        res.found[&Lookup::ImmutableId(bram.immutable_id_base64)].guid,
        bram.guid
    );
    assert_eq!(res.found[&Lookup::Dn(carla.dn)].guid, carla.guid);
    let group = &res.found[&Lookup::Sid(local.sid)];
    assert_eq!(
        group.group_type,
        Some(GROUP_TYPE_DOMAIN_LOCAL | GROUP_TYPE_SECURITY)
    );
    assert!(!res.found.contains_key(&Lookup::Dn(missing_dn)));
}

#[tokio::test]
async fn a_missing_member_dn_is_reported_and_the_others_are_applied() {
    let dc = LabDc::ensure();
    let ou = dc.fresh_ou("memberr").await;
    let good = users(&dc, &ou, 3).await;
    let missing = format!("CN=Does Not Exist,{ou}");
    let mut ad = connect(&dc).await;
    let schema = ad.detect_schema().await.expect("schema");

    // Inline in a create: the group is still created, with the good members.
    let sam = unique("err");
    let dn = format!("CN={sam},{ou}");
    let mut with_bad = good.clone();
    with_bad.insert(1, missing.clone());
    let created = create(&mut ad, &create_action(&dn, &sam, with_bad.clone()))
        .await
        .expect("create");
    assert_eq!(created.member_errors.len(), 1);
    assert_eq!(created.member_errors[0].member, missing);
    assert_eq!(created.member_errors[0].code, 32);
    let guid = created.guid.expect("guid");
    assert_eq!(
        ad.read_group(&guid, &schema)
            .await
            .expect("read")
            .expect("exists")
            .members
            .len(),
        3
    );

    // In an add-members chunk: same.
    let more = users(&dc, &ou, 2).await;
    let mut chunk = more.clone();
    chunk.push(missing.clone());
    let applied = ad
        .apply(&Action::AddMembers {
            dn: dn.clone(),
            guid: Some(guid.clone()),
            members: shared(&chunk),
        })
        .await
        .expect("add members");
    assert_eq!(
        applied
            .member_errors
            .iter()
            .map(|e| e.member.as_str())
            .collect::<Vec<_>>(),
        vec![missing.as_str()]
    );
    assert_eq!(
        ad.read_group(&guid, &schema)
            .await
            .expect("read")
            .expect("exists")
            .members
            .len(),
        5
    );
}

#[tokio::test]
async fn member_adds_and_removes_are_idempotent() {
    let dc = LabDc::ensure();
    let ou = dc.fresh_ou("permissive").await;
    let members = users(&dc, &ou, 4).await;
    let mut ad = connect(&dc).await;
    let schema = ad.detect_schema().await.expect("schema");
    let sam = unique("perm");
    let dn = format!("CN={sam},{ou}");
    let guid = create(&mut ad, &create_action(&dn, &sam, members[..2].to_vec()))
        .await
        .expect("create")
        .guid
        .expect("guid");

    // Adding two present values and two new ones, twice.
    for _ in 0..2 {
        let add = Action::AddMembers {
            dn: dn.clone(),
            guid: Some(guid.clone()),
            members: shared(&members),
        };
        assert!(ad.apply(&add).await.expect("add").member_errors.is_empty());
    }
    assert_eq!(
        ad.read_group(&guid, &schema)
            .await
            .expect("read")
            .expect("exists")
            .members
            .len(),
        4
    );

    // Removing, twice; the second time none is a member.
    for _ in 0..2 {
        let remove = Action::RemoveMembers {
            dn: dn.clone(),
            guid: guid.clone(),
            members: shared(&members[1..]),
        };
        assert!(ad
            .apply(&remove)
            .await
            .expect("remove")
            .member_errors
            .is_empty());
    }
    let left = ad
        .read_group(&guid, &schema)
        .await
        .expect("read")
        .expect("exists")
        .members;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].to_lowercase(), members[0].to_lowercase());
}

#[tokio::test]
async fn a_taken_sam_account_name_falls_back() {
    let dc = LabDc::ensure();
    let ou = dc.fresh_ou("samfb").await;
    let taken = unique("taken");
    dc.create_group(&ou, &taken, UNIVERSAL_SECURITY).await;
    let mut ad = connect(&dc).await;
    let schema = ad.detect_schema().await.expect("schema");
    let dn = format!("CN=Second {taken},{ou}");
    let created = create(&mut ad, &create_action(&dn, &taken, vec![]))
        .await
        .expect("create with fallback");
    let group = ad
        .read_group(created.guid.as_deref().expect("guid"), &schema)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(group.sam_account_name, Some(format!("{taken}-fb")));
}

#[tokio::test]
async fn writes_counts_every_write_and_no_read() {
    let dc = LabDc::ensure();
    let ou = dc.fresh_ou("writes").await;
    let members = users(&dc, &ou, 2).await;
    let mut ad = connect(&dc).await;
    let schema = ad.detect_schema().await.expect("schema");
    ad.read_groups(&ou, &schema).await.expect("read");
    assert_eq!(ad.writes(), 0);
    let sam = unique("w");
    let dn = format!("CN={sam},{ou}");
    let guid = create(&mut ad, &create_action(&dn, &sam, vec![]))
        .await
        .expect("create")
        .guid
        .expect("guid");
    assert_eq!(ad.writes(), 1);
    ad.apply(&Action::AddMembers {
        dn: dn.clone(),
        guid: Some(guid.clone()),
        members: shared(&members),
    })
    .await
    .expect("add");
    assert_eq!(ad.writes(), 2);
    ad.apply(&Action::Delete { dn, guid })
        .await
        .expect("delete");
    assert_eq!(ad.writes(), 3);
}

#[tokio::test]
async fn reading_groups_from_the_domain_root_skips_referrals() {
    let dc = LabDc::ensure();
    let mut ad = connect(&dc).await;
    let schema = ad.detect_schema().await.expect("schema");
    let groups = ad
        .read_groups(&dc.base_dn, &schema)
        .await
        .expect("subtree read from the domain root");
    let admins = groups
        .iter()
        .find(|g| g.cn == "Domain Admins")
        .expect("built-in Domain Admins is found");
    assert!(
        admins.sid.as_deref().is_some_and(|s| s.ends_with("-512")),
        "RID 512: {:?}",
        admins.sid
    );
    assert!(!admins.members.is_empty(), "Administrator is a member");
}

#[tokio::test]
async fn without_the_permissive_control_duplicates_and_absentees_are_still_success() {
    let dc = LabDc::ensure();
    let ou = dc.fresh_ou("strict").await;
    let members = users(&dc, &ou, 4).await;
    let mut ad = connect(&dc).await;
    ad.set_permissive_modify(false);
    let schema = ad.detect_schema().await.expect("schema");
    let sam = unique("strict");
    let dn = format!("CN={sam},{ou}");
    let guid = create(&mut ad, &create_action(&dn, &sam, members[..2].to_vec()))
        .await
        .expect("create")
        .guid
        .expect("guid");
    let add = Action::AddMembers {
        dn: dn.clone(),
        guid: Some(guid.clone()),
        members: shared(&members),
    };
    assert!(ad
        .apply(&add)
        .await
        .expect("add with two present")
        .member_errors
        .is_empty());
    assert_eq!(
        ad.read_group(&guid, &schema)
            .await
            .expect("read")
            .expect("exists")
            .members
            .len(),
        4
    );
    let remove = Action::RemoveMembers {
        dn: dn.clone(),
        guid: guid.clone(),
        members: shared(&members[..3]),
    };
    assert!(ad
        .apply(&remove)
        .await
        .expect("remove")
        .member_errors
        .is_empty());
    assert!(ad
        .apply(&remove)
        .await
        .expect("remove again, none present")
        .member_errors
        .is_empty());
    assert_eq!(
        ad.read_group(&guid, &schema)
            .await
            .expect("read")
            .expect("exists")
            .members
            .len(),
        1
    );
}

#[tokio::test]
async fn resolve_records_the_class_of_what_it_finds() {
    let dc = LabDc::ensure();
    let ou = dc.fresh_ou("resolve-class").await;
    let user = dc.create_user(&ou, &unique("usr"), "Class User").await;
    let group = dc
        .create_group(&ou, &unique("grp"), UNIVERSAL_SECURITY)
        .await;
    // A computer account is of class user too: it must not pass for one.
    let pc_dn = format!("CN=PC-Class,{ou}");
    let mut ldap = dc.ldap().await;
    let sam = format!("{}$", unique("pc"));
    let res = ldap
        .add(
            &pc_dn,
            vec![
                ("objectClass", HashSet::from(["computer"])),
                ("sAMAccountName", HashSet::from([sam.as_str()])),
            ],
        )
        .await
        .expect("add computer");
    assert_eq!(res.rc, 0, "add {pc_dn}: {}", res.text);
    let lookups = BTreeSet::from([
        Lookup::Sid(user.sid.clone()),
        Lookup::Sid(group.sid.clone()),
        Lookup::Dn(pc_dn.clone()),
        Lookup::Dn(group.dn.clone()),
    ]);
    let res = connect(&dc).await.resolve(&lookups).await.expect("resolve");
    let class = |l: Lookup| res.found[&l].class.clone();
    assert_eq!(class(Lookup::Sid(user.sid)), AdClass::User);
    assert_eq!(class(Lookup::Sid(group.sid)), AdClass::Group);
    assert_eq!(class(Lookup::Dn(group.dn)), AdClass::Group);
    assert_eq!(class(Lookup::Dn(pc_dn)), AdClass::Computer);
}

#[tokio::test]
async fn create_tries_every_sam_account_name_candidate_and_names_them_when_all_are_taken() {
    let dc = LabDc::ensure();
    let ou = dc.fresh_ou("samcand").await;
    let taken: Vec<String> = (0..3).map(|i| unique(&format!("tk{i}"))).collect();
    for t in &taken {
        dc.create_group(&ou, t, UNIVERSAL_SECURITY).await;
    }
    let mut ad = connect(&dc).await;
    let schema = ad.detect_schema().await.expect("schema");

    // The third candidate is free: the group is created with it.
    let mut action = create_action(&format!("CN=Cand {},{ou}", taken[0]), &taken[0], vec![]);
    let free = unique("free");
    if let Action::Create {
        sam_account_name_fallbacks,
        ..
    } = &mut action
    {
        *sam_account_name_fallbacks = vec![taken[1].clone(), free.clone(), unique("never")];
    }
    let created = create(&mut ad, &action)
        .await
        .expect("create with a further candidate");
    let group = ad
        .read_group(created.guid.as_deref().expect("guid"), &schema)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(group.sam_account_name, Some(free));

    // Every candidate taken: one error naming them all, nothing created.
    let dn = format!("CN=None {},{ou}", taken[0]);
    let mut action = create_action(&dn, &taken[0], vec![]);
    if let Action::Create {
        sam_account_name_fallbacks,
        ..
    } = &mut action
    {
        *sam_account_name_fallbacks = vec![taken[1].clone(), taken[2].clone()];
    }
    match ad.apply(&action).await {
        Err(AdError::Ldap { code, message, .. }) => {
            assert_eq!(code, 68);
            for t in &taken {
                assert!(message.contains(t.as_str()), "{message}");
            }
        }
        other => panic!("expected rc 68, got {other:?}"),
    }
}

#[tokio::test]
async fn created_groups_are_read_back_together_in_one_search() {
    let dc = LabDc::ensure();
    let ou = dc.fresh_ou("readback").await;
    let before_mark = unique("old");
    dc.create_group(&ou, &before_mark, UNIVERSAL_SECURITY).await;
    let members = users(&dc, &ou, 3).await;
    let mut ad = connect(&dc).await;
    let schema = ad.detect_schema().await.expect("schema");
    let mark = ad.mark_creates().await.expect("mark");

    // Each create is one add: no read of any kind.
    let (writes, searches) = (ad.writes(), ad.searches());
    let mut dns = Vec::new();
    for i in 0..5 {
        let sam = unique(&format!("rb{i}"));
        let dn = format!("CN={sam},{ou}");
        let applied = ad
            .apply(&create_action(&dn, &sam, members.clone()))
            .await
            .expect("create");
        assert_eq!((applied.guid, applied.sid), (None, None));
        dns.push(dn);
    }
    assert_eq!(ad.writes() - writes, 5, "one add per group");
    assert_eq!(ad.searches() - searches, 0, "no read per group");

    // One search reads them all back; the group there before the mark is not among them.
    let read = ad.read_back_created(&ou, mark).await.expect("read back");
    assert_eq!(ad.searches() - searches, 1);
    assert_eq!(read.len(), 5, "{read:?}");
    for dn in &dns {
        let g = read
            .iter()
            .find(|g| g.dn.eq_ignore_ascii_case(dn))
            .expect("read back");
        let group = ad
            .read_group(&g.guid, &schema)
            .await
            .expect("read")
            .expect("exists");
        assert!(group.dn.eq_ignore_ascii_case(dn));
        assert_eq!(group.sid, g.sid);
        assert!(g.sid.as_deref().is_some_and(|s| s.starts_with("S-1-5-21-")));
    }
    assert!(!read.iter().any(|g| g.dn.contains(&before_mark)));

    // One at a time by DN (for a name the DN comparison misses), any spelling of it.
    let one = ad
        .read_created(&dns[0].to_lowercase())
        .await
        .expect("read")
        .expect("found by DN");
    let batch = read
        .iter()
        .find(|g| g.dn.eq_ignore_ascii_case(&dns[0]))
        .expect("read back");
    assert_eq!((&one.guid, &one.sid), (&batch.guid, &batch.sid));
    let gone = format!("CN=never-created-{},{ou}", unique("x"));
    assert_eq!(ad.read_created(&gone).await.expect("read"), None);
}

/// Member DNs as a plan holds them (shared strings).
fn shared(members: &[String]) -> Vec<Arc<str>> {
    members.iter().map(|m| Arc::from(m.as_str())).collect()
}
