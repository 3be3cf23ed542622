//! Behaviour of the state store on a real SQLite file: round trips, atomic commits, run
//! history order, reopening, and a tenant-sized snapshot.

use std::collections::BTreeSet;
use time::macros::datetime;
use time::OffsetDateTime;
use wb_model::{
    Action, AdClass, AdGroup, AdObjectRef, CloudDeletion, CloudGroup, CloudUser, Decision,
    GroupKind, Join, Lookup, MemberKind, MemberRef, Operation, Plan, PlanCounts,
    WritebackConfiguration,
};
use wb_store::{Commit, ObjectError, OutcomesUpdate, RunRecord, RunStatus, Store, StoreError};

fn group(i: usize) -> CloudGroup {
    CloudGroup {
        id: format!("00000000-0000-0000-0000-{i:012}"),
        display_name: Some(format!("SG-Finance, \"Team\" {i}")),
        description: if i.is_multiple_of(2) {
            Some("desc".into())
        } else {
            None
        },
        group_types: if i.is_multiple_of(3) {
            vec!["Unified".into()]
        } else {
            vec![]
        },
        mail_enabled: Some(i.is_multiple_of(3)),
        security_enabled: Some(true),
        mail: None,
        mail_nickname: Some(format!("nick{i}")),
        proxy_addresses: vec![format!("SMTP:g{i}@example.test")],
        on_premises_sync_enabled: None,
        on_premises_security_identifier: None,
        writeback: WritebackConfiguration {
            is_enabled: Some(true),
            on_premises_group_type: Some("universalSecurityGroup".into()),
        },
        members: (0..5)
            .map(|m| MemberRef {
                kind: if m == 4 {
                    MemberKind::Group
                } else {
                    MemberKind::User
                },
                id: format!("user-{i}-{m}").into(),
            })
            .collect(),
        owners: BTreeSet::new(),
        deleted: if i == 7 {
            Some(CloudDeletion::SoftDeleted)
        } else {
            None
        },
        cloud_managed: (i == 3).then_some(true),
    }
}

fn user(i: usize) -> CloudUser {
    CloudUser {
        id: format!("user-{i}"),
        user_principal_name: Some(format!("u{i}@lab.example.test")),
        display_name: Some(format!("User {i}")),
        on_premises_sync_enabled: Some(i.is_multiple_of(2)),
        on_premises_security_identifier: Some(format!("S-1-5-21-1-2-3-{i}")),
        on_premises_immutable_id: None,
        on_premises_distinguished_name: None,
        on_premises_sam_account_name: Some(format!("u{i}")),
        on_premises_domain_name: Some("lab.example.test".into()),
    }
}

/// AD group `i` of an image (`CN=G{i}`, objectGUID `guid-{i}`) with these member values.
fn ad_group(i: usize, members: &[&str]) -> AdGroup {
    AdGroup {
        dn: format!("CN=G{i},OU=W,DC=t"),
        guid: format!("guid-{i}"),
        members: members.iter().map(|m| (*m).into()).collect(),
        ..AdGroup::default()
    }
}

fn join(group_id: &str, guid: &str) -> Join {
    Join {
        group: group_id.to_string(),
        guid: guid.to_string(),
        sid: Some("S-1-5-21-9-9-9-1105".into()),
        dn: format!("CN=Group_{group_id},OU=Groups,DC=lab,DC=example,DC=test"),
        adopted: false,
    }
}

fn run(mode: &str, status: RunStatus, at: OffsetDateTime) -> RunRecord {
    RunRecord {
        id: 0,
        started_at: at,
        finished_at: at + time::Duration::seconds(3),
        mode: mode.to_string(),
        status,
        staging: status == RunStatus::Staging,
        counts: PlanCounts {
            creates: 2,
            member_adds: 7,
            ..PlanCounts::default()
        },
        graph_requests: 2,
        ldap_writes: 9,
        errors: vec![ObjectError {
            group: Some("g1".into()),
            name: Some("SG-NL-Finance-Department".into()),
            dn: Some("CN=x,OU=Groups,DC=lab,DC=example,DC=test".into()),
            operation: "add-members".into(),
            message: "00000525: NameErr".into(),
        }],
        message: Some("2 groups created".into()),
        plan: None,
    }
}

fn sample_plan(name: &str) -> Plan {
    Plan {
        operations: vec![Operation {
            group: "g1".into(),
            name: name.into(),
            action: Action::Delete {
                dn: "CN=x,OU=Groups,DC=lab".into(),
                guid: "guid-1".into(),
            },
            reason: "permanently deleted in the cloud".into(),
        }],
        groups: vec![wb_model::GroupOutcome {
            id: "g1".into(),
            name: name.into(),
            kind: GroupKind::Security,
            decision: Decision::SoftDeleted,
            ad_state: wb_model::AdState::ToDelete,
            ad_dn: None,
            members: vec![],
            errors: vec![],
            drift: vec![],
            member_count: 0,
            written_count: 0,
            adopted: false,
        }],
        foreign: vec![],
        notices: vec!["mailNickname missing from schema".into()],
    }
}

fn temp_store() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("writeback.db");
    (dir, path)
}

#[test]
fn committed_state_reads_back_identically() {
    let (_dir, path) = temp_store();
    let mut store = Store::open(&path).unwrap();
    let groups: Vec<CloudGroup> = (0..10).map(group).collect();
    let users: Vec<CloudUser> = (0..4).map(user).collect();
    let mut c = Commit::for_run(run(
        "full",
        RunStatus::Success,
        datetime!(2026-01-02 03:04:05 UTC),
    ));
    c.replace_cloud = true;
    c.upsert_groups = groups.iter().collect();
    c.upsert_users = users.iter().collect();
    c.group_delta_link = Some("https://graph.example/beta/groups/delta?$deltatoken=abc".into());
    c.user_delta_link = Some("https://graph.example/v1.0/users/delta?$deltatoken=def".into());
    c.joins_upsert = vec![join(&groups[0].id, "guid-a"), join(&groups[1].id, "guid-b")];
    c.full_at = Some(datetime!(2026-01-02 03:04:08 UTC));
    c.config_refresh_at = Some(datetime!(2026-01-02 03:04:07 +01:00));
    c.run.plan = Some(sample_plan("SG-A"));
    let id = store.commit(&c).unwrap();
    assert!(id > 0);

    let state = store.load().unwrap();
    assert_eq!(state.cloud.groups.len(), 10);
    for g in &groups {
        assert_eq!(state.cloud.groups.get(&g.id), Some(g));
    }
    for u in &users {
        assert_eq!(state.cloud.users.get(&u.id), Some(u));
    }
    assert_eq!(state.group_delta_link, c.group_delta_link);
    assert_eq!(state.user_delta_link, c.user_delta_link);
    assert_eq!(state.joins.len(), 2);
    assert_eq!(
        state.joins.get(&groups[1].id),
        Some(&join(&groups[1].id, "guid-b"))
    );
    assert_eq!(state.last_full_at, c.full_at);
    assert_eq!(state.last_config_refresh_at, c.config_refresh_at);

    let mut expected_run = c.run.clone();
    expected_run.id = id;
    assert_eq!(store.run(id).unwrap(), Some(expected_run));
    assert_eq!(store.last_outcomes().unwrap(), Some(sample_plan("SG-A")));
}

#[test]
fn images_read_back_hold_one_copy_of_each_member_id_and_dn() {
    let (_dir, path) = temp_store();
    let mut store = Store::open(&path).unwrap();
    let shared = |mut g: CloudGroup| {
        g.members.insert(MemberRef {
            kind: MemberKind::User,
            id: "user-everywhere".into(),
        });
        g
    };
    let groups: Vec<CloudGroup> = (0..3).map(group).map(shared).collect();
    let ad: Vec<AdGroup> = (0..3)
        .map(|i| ad_group(i, &["CN=Everywhere,OU=U,DC=t", &format!("CN=Only{i},DC=t")]))
        .collect();
    let mut c = Commit::for_run(run("full", RunStatus::Success, OffsetDateTime::UNIX_EPOCH));
    c.replace_cloud = true;
    c.upsert_groups = groups.iter().collect();
    c.replace_ad = true;
    c.ad_groups_upsert = ad.iter().collect();
    store.commit(&c).unwrap();

    let state = store.load().unwrap();
    let ids: Vec<&std::sync::Arc<str>> = state
        .cloud
        .groups
        .values()
        .flat_map(|g| &g.members)
        .filter(|m| &*m.id == "user-everywhere")
        .map(|m| &m.id)
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| std::sync::Arc::ptr_eq(id, ids[0])));
    for g in &groups {
        assert_eq!(state.cloud.groups.get(&g.id), Some(g));
    }

    let rows = store.load_ad().unwrap();
    assert_eq!(rows.groups.len(), 3);
    let first: Vec<&std::sync::Arc<str>> = rows.groups.iter().map(|g| &g.members[0]).collect();
    assert!(first.iter().all(|dn| std::sync::Arc::ptr_eq(dn, first[0])));
    for g in &ad {
        assert!(rows.groups.contains(g));
    }
}

/// The two images read side by side (two connections) are the images read one after the
/// other; a commit made since is seen by the next read.
#[test]
fn both_images_read_at_once_are_the_images_read_one_by_one() {
    let (_dir, path) = temp_store();
    let mut store = Store::open(&path).unwrap();
    let groups: Vec<CloudGroup> = (0..4).map(group).collect();
    let users: Vec<CloudUser> = (0..5).map(user).collect();
    let ad: Vec<AdGroup> = (0..3)
        .map(|i| ad_group(i, &[&format!("CN=U{i},DC=t")]))
        .collect();
    let found = AdObjectRef {
        dn: "CN=U0,DC=t".into(),
        guid: "guid-u0".into(),
        group_type: None,
        class: AdClass::User,
    };
    let (sid, gone) = (
        Lookup::Sid("S-1-5-21-1".into()),
        Lookup::Dn("CN=X,DC=t".into()),
    );
    let mut c = Commit::for_run(run("full", RunStatus::Success, OffsetDateTime::UNIX_EPOCH));
    c.replace_cloud = true;
    c.upsert_groups = groups.iter().collect();
    c.upsert_users = users.iter().collect();
    c.replace_ad = true;
    c.ad_groups_upsert = ad.iter().collect();
    c.ad_lookups_upsert = vec![(&sid, Some(&found)), (&gone, None)];
    c.ad_image = Some("{}".into());
    store.commit(&c).unwrap();

    let (state, rows) = store.load_with_ad().unwrap();
    assert_eq!(state, store.load().unwrap());
    assert_eq!(rows, store.load_ad().unwrap());
    assert_eq!(rows.groups.len(), 3);
    assert_eq!(rows.resolutions.found.get(&sid), Some(&found));
    assert_eq!(
        rows.resolutions.asked,
        BTreeSet::from([sid.clone(), gone.clone()])
    );
    assert_eq!(state.cloud.groups.len(), 4);

    // Another process's commit: the next read sees it in both images.
    let mut other = Store::open(&path).unwrap();
    let mut d = Commit::for_run(run("delta", RunStatus::Success, OffsetDateTime::UNIX_EPOCH));
    d.remove_groups = vec![groups[0].id.clone()];
    d.ad_groups_remove = vec!["guid-0".into()];
    other.commit(&d).unwrap();
    let (state, rows) = store.load_with_ad().unwrap();
    assert_eq!(state.cloud.groups.len(), 3);
    assert_eq!(rows.groups.len(), 2);

    // A commit landing between the two reads' starts: both images are the state before it.
    let mut e = Commit::for_run(run("delta", RunStatus::Success, OffsetDateTime::UNIX_EPOCH));
    e.remove_groups = vec![groups[1].id.clone()];
    e.ad_groups_remove = vec!["guid-1".into()];
    let (state, rows) = store
        .load_with_ad_and(|| {
            other.commit(&e).unwrap();
        })
        .unwrap();
    assert_eq!(
        state.cloud.groups.len(),
        3,
        "the cloud state before the commit"
    );
    assert_eq!(rows.groups.len(), 2, "the AD image of the same state");
    let (state, rows) = store.load_with_ad().unwrap();
    assert_eq!((state.cloud.groups.len(), rows.groups.len()), (2, 1));
}

#[test]
fn delta_commit_changes_only_what_it_names() {
    let (_dir, path) = temp_store();
    let mut store = Store::open(&path).unwrap();
    let groups: Vec<CloudGroup> = (0..5).map(group).collect();
    let mut c = Commit::for_run(run("full", RunStatus::Success, OffsetDateTime::UNIX_EPOCH));
    c.upsert_groups = groups.iter().collect();
    c.group_delta_link = Some("link-1".into());
    c.joins_upsert = vec![join(&groups[0].id, "guid-a"), join(&groups[1].id, "guid-b")];
    c.full_at = Some(datetime!(2026-01-01 0:00 UTC));
    store.commit(&c).unwrap();

    let mut renamed = groups[2].clone();
    renamed.display_name = Some("renamed".into());
    let mut d = Commit::for_run(run("delta", RunStatus::Success, OffsetDateTime::UNIX_EPOCH));
    d.upsert_groups = vec![&renamed];
    d.remove_groups = vec![groups[3].id.clone()];
    d.joins_remove = vec![groups[0].id.clone()];
    d.joins_upsert = vec![join(&groups[1].id, "guid-b2")];
    d.group_delta_link = Some("link-2".into());
    store.commit(&d).unwrap();

    let state = store.load().unwrap();
    assert_eq!(state.cloud.groups.len(), 4);
    assert_eq!(state.cloud.groups[&groups[2].id], renamed);
    assert_eq!(state.cloud.groups[&groups[4].id], groups[4]);
    assert!(!state.cloud.groups.contains_key(&groups[3].id));
    assert_eq!(state.group_delta_link.as_deref(), Some("link-2"));
    assert_eq!(state.user_delta_link, None);
    assert_eq!(
        state.last_full_at, c.full_at,
        "a None time leaves the stored one"
    );
    assert_eq!(state.joins.len(), 1);
    assert_eq!(state.joins[&groups[1].id].guid, "guid-b2");
}

#[test]
fn replace_cloud_forgets_groups_and_users_not_in_the_commit() {
    let (_dir, path) = temp_store();
    let mut store = Store::open(&path).unwrap();
    let groups: Vec<CloudGroup> = (0..5).map(group).collect();
    let users: Vec<CloudUser> = (0..3).map(user).collect();
    let mut c = Commit::for_run(run("full", RunStatus::Success, OffsetDateTime::UNIX_EPOCH));
    c.upsert_groups = groups.iter().collect();
    c.upsert_users = users.iter().collect();
    store.commit(&c).unwrap();

    let mut full = Commit::for_run(run("full", RunStatus::Success, OffsetDateTime::UNIX_EPOCH));
    full.replace_cloud = true;
    full.upsert_groups = vec![&groups[1]];
    full.upsert_users = vec![&users[2]];
    store.commit(&full).unwrap();

    let state = store.load().unwrap();
    assert_eq!(
        state.cloud.groups.keys().collect::<Vec<_>>(),
        vec![&groups[1].id]
    );
    assert_eq!(
        state.cloud.users.keys().collect::<Vec<_>>(),
        vec![&users[2].id]
    );
}

#[test]
fn failing_commit_leaves_the_previous_state() {
    let (_dir, path) = temp_store();
    let mut store = Store::open(&path).unwrap();
    let groups: Vec<CloudGroup> = (0..3).map(group).collect();
    let mut c = Commit::for_run(run("full", RunStatus::Success, OffsetDateTime::UNIX_EPOCH));
    c.upsert_groups = groups.iter().collect();
    c.group_delta_link = Some("link-1".into());
    c.joins_upsert = vec![join(&groups[0].id, "guid-a")];
    store.commit(&c).unwrap();
    let before = store.load().unwrap();
    let runs_before = store.runs(10).unwrap();

    // Groups, users and the link are written before the joins; the second join claims an
    // AD object already joined to another group (UNIQUE guid) and fails the commit.
    let new_group = group(9);
    let mut bad = Commit::for_run(run("delta", RunStatus::Success, OffsetDateTime::UNIX_EPOCH));
    bad.upsert_groups = vec![&new_group];
    bad.remove_groups = vec![groups[1].id.clone()];
    bad.group_delta_link = Some("link-2".into());
    bad.joins_upsert = vec![join(&groups[2].id, "guid-a")];
    let err = store.commit(&bad).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Sql {
                operation: "write join",
                ..
            }
        ),
        "{err}"
    );

    assert_eq!(store.load().unwrap(), before);
    assert_eq!(store.runs(10).unwrap(), runs_before);
}

#[test]
fn run_with_an_invalid_mode_is_refused_with_the_rest_of_its_commit() {
    let (_dir, path) = temp_store();
    let mut store = Store::open(&path).unwrap();
    let g = group(1);
    let mut c = Commit::for_run(run(
        "sideways",
        RunStatus::Success,
        OffsetDateTime::UNIX_EPOCH,
    ));
    c.upsert_groups = vec![&g];
    assert!(store.commit(&c).is_err());
    assert!(store.load().unwrap().cloud.groups.is_empty());
    assert!(store.runs(10).unwrap().is_empty());
}

#[test]
fn runs_are_listed_newest_first_and_limited() {
    let (_dir, path) = temp_store();
    let mut store = Store::open(&path).unwrap();
    let statuses = [
        RunStatus::Success,
        RunStatus::CompletedWithErrors,
        RunStatus::StoppedByThreshold,
        RunStatus::Failed,
        RunStatus::Staging,
    ];
    let mut ids = Vec::new();
    for (i, st) in statuses.iter().enumerate() {
        let r = run(
            "delta",
            *st,
            datetime!(2026-03-01 0:00 UTC) + time::Duration::minutes(i as i64),
        );
        ids.push(store.record_run(&r).unwrap());
    }
    let listed = store.runs(3).unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ids[4], ids[3], ids[2]]
    );
    assert_eq!(listed[0].status, RunStatus::Staging);
    assert_eq!(store.runs(100).unwrap().len(), 5);
    assert_eq!(
        store.run(ids[1]).unwrap().map(|r| r.status),
        Some(RunStatus::CompletedWithErrors)
    );
    assert_eq!(store.run(9999).unwrap(), None);
}

#[test]
fn run_summaries_leave_plans_out_and_the_last_good_run_is_found_by_status() {
    let (_dir, path) = temp_store();
    let mut store = Store::open(&path).unwrap();
    assert_eq!(store.last_finished(&[RunStatus::Success]).unwrap(), None);
    let t0 = datetime!(2026-03-01 0:00 UTC);
    let mut ok = run("delta", RunStatus::Success, t0);
    ok.plan = Some(Plan::default());
    store.record_run(&ok).unwrap();
    store
        .record_run(&run(
            "delta",
            RunStatus::Failed,
            t0 + time::Duration::minutes(1),
        ))
        .unwrap();
    let listed = store.run_summaries(10).unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|r| r.plan.is_none()));
    assert_eq!(listed[1].counts.member_adds, 7);
    assert_eq!(
        store
            .last_finished(&[RunStatus::Success, RunStatus::Staging])
            .unwrap(),
        Some(t0 + time::Duration::seconds(3))
    );
    assert_eq!(
        store.last_finished(&[RunStatus::Failed]).unwrap(),
        Some(t0 + time::Duration::minutes(1) + time::Duration::seconds(3))
    );
}

#[test]
fn last_outcomes_skip_runs_without_a_plan() {
    let (_dir, path) = temp_store();
    let mut store = Store::open(&path).unwrap();
    assert_eq!(store.last_outcomes().unwrap(), None);
    let mut with_plan = run("delta", RunStatus::Success, OffsetDateTime::UNIX_EPOCH);
    with_plan.plan = Some(sample_plan("first"));
    store.record_run(&with_plan).unwrap();
    with_plan.plan = Some(sample_plan("second"));
    store.record_run(&with_plan).unwrap();
    store
        .record_run(&run("delta", RunStatus::Failed, OffsetDateTime::UNIX_EPOCH))
        .unwrap();
    assert_eq!(store.last_outcomes().unwrap(), Some(sample_plan("second")));
}

#[test]
fn reopened_store_keeps_its_state() {
    let (_dir, path) = temp_store();
    let groups: Vec<CloudGroup> = (0..3).map(group).collect();
    let (state, run_id) = {
        let mut store = Store::open(&path).unwrap();
        let mut c = Commit::for_run(run("full", RunStatus::Success, OffsetDateTime::UNIX_EPOCH));
        c.upsert_groups = groups.iter().collect();
        c.user_delta_link = Some("users-link".into());
        c.joins_upsert = vec![join(&groups[0].id, "guid-a")];
        let id = store.commit(&c).unwrap();
        (store.load().unwrap(), id)
    };
    let store = Store::open(&path).unwrap();
    assert_eq!(store.load().unwrap(), state);
    assert_eq!(state.user_delta_link.as_deref(), Some("users-link"));
    assert_eq!(store.runs(1).unwrap()[0].id, run_id);
}

#[test]
fn store_written_by_a_newer_writeback_is_refused() {
    let (_dir, path) = temp_store();
    drop(Store::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::NewerSchema { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("writeback.db"), "{err}");
}

#[test]
fn corrupt_row_names_the_object() {
    let (_dir, path) = temp_store();
    drop(Store::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO cloud_groups (id, json) VALUES ('g-bad', '{not json')",
        [],
    )
    .unwrap();
    drop(conn);
    let err = Store::open(&path).unwrap().load().unwrap_err();
    assert!(err.to_string().contains("cloud group g-bad"), "{err}");
}

#[test]
fn run_status_text_round_trips() {
    for st in RunStatus::ALL {
        assert_eq!(RunStatus::parse(st.as_str()), Some(st));
        assert_eq!(
            serde_json::to_string(&st).unwrap(),
            format!("\"{}\"", st.as_str())
        );
    }
    assert_eq!(RunStatus::parse("nope"), None);
}

#[test]
fn tenant_sized_snapshot_commits_and_loads() {
    let (_dir, path) = temp_store();
    let mut store = Store::open(&path).unwrap();
    let groups: Vec<CloudGroup> = (0..20_000).map(group).collect();
    let users: Vec<CloudUser> = (0..5_000).map(user).collect();
    let mut c = Commit::for_run(run("full", RunStatus::Success, OffsetDateTime::UNIX_EPOCH));
    c.replace_cloud = true;
    c.upsert_groups = groups.iter().collect();
    c.upsert_users = users.iter().collect();
    store.commit(&c).unwrap();
    let state = store.load().unwrap();
    assert_eq!(state.cloud.groups.len(), 20_000);
    assert_eq!(state.cloud.users.len(), 5_000);
    assert_eq!(state.cloud.groups[&groups[19_999].id], groups[19_999]);
}

#[test]
fn a_repeated_no_change_plan_is_stored_once_and_old_plans_are_pruned() {
    let (_dir, path) = temp_store();
    let mut store = Store::open(&path).expect("open");
    let t = OffsetDateTime::now_utc();
    let mut noop = sample_plan("SG-Quiet");
    noop.operations.clear();
    let mut ids = Vec::new();
    for i in 0..3 {
        let mut r = run("delta", RunStatus::Success, t + time::Duration::seconds(i));
        r.plan = Some(noop.clone());
        ids.push(store.record_run(&r).expect("record"));
    }
    assert!(
        store.run(ids[0]).unwrap().unwrap().plan.is_some(),
        "the first no-change plan is kept"
    );
    assert!(
        store.run(ids[1]).unwrap().unwrap().plan.is_none(),
        "the same plan again is not stored"
    );
    assert!(store.run(ids[2]).unwrap().unwrap().plan.is_none());
    assert_eq!(
        store.last_outcomes().unwrap(),
        Some(noop.clone()),
        "status still has the outcomes"
    );

    // Plans with operations are always stored, and only the newest PLANS_KEPT are kept.
    let mut last = 0;
    for i in 0..(wb_store::PLANS_KEPT + 5) {
        let mut r = run(
            "delta",
            RunStatus::Success,
            t + time::Duration::seconds(10 + i as i64),
        );
        r.plan = Some(sample_plan(&format!("SG-{i}")));
        last = store.record_run(&r).expect("record");
    }
    assert!(store.run(last).unwrap().unwrap().plan.is_some());
    assert!(
        store.run(ids[0]).unwrap().unwrap().plan.is_none(),
        "old plans are pruned"
    );
    let with_plans = store
        .runs(1000)
        .unwrap()
        .into_iter()
        .filter(|r| r.plan.is_some())
        .count();
    assert_eq!(with_plans, wb_store::PLANS_KEPT);
}

#[test]
fn drift_is_kept_with_its_run_and_read_back_by_time() {
    use wb_model::{DriftEvent, DriftKind};
    let (_dir, path) = temp_store();
    let mut store = Store::open(&path).unwrap();
    let event = |group: &str, kind| DriftEvent {
        group: group.into(),
        name: format!("SG-{group}"),
        dn: format!("CN=SG-{group},OU=G,DC=x"),
        kind,
        attribute: "member".into(),
        before: vec!["CN=a,DC=x".into()],
        after: vec![],
        fix: "removed".into(),
    };
    let mut old = Commit::for_run(run(
        "delta",
        RunStatus::Success,
        datetime!(2026-01-01 00:00:00 UTC),
    ));
    old.drift = vec![event("a", DriftKind::MemberAdded)];
    let old_id = store.commit(&old).unwrap();
    let mut new = Commit::for_run(run(
        "delta",
        RunStatus::Success,
        datetime!(2026-01-02 00:00:00.5 UTC),
    ));
    new.drift = vec![
        event("b", DriftKind::Renamed),
        event("c", DriftKind::Deleted),
    ];
    let new_id = store.commit(&new).unwrap();
    store
        .commit(&Commit::for_run(run(
            "delta",
            RunStatus::Success,
            datetime!(2026-01-03 00:00:00 UTC),
        )))
        .unwrap();

    let all = store
        .drift_since(datetime!(2025-12-31 00:00:00 UTC))
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!((all[0].run, all[2].run), (new_id, old_id), "newest first");
    assert_eq!(all[0].event, new.drift[0]);
    assert_eq!(all[2].at, datetime!(2026-01-01 00:00:00 UTC));
    let recent = store
        .drift_since(datetime!(2026-01-01 12:00:00 UTC))
        .unwrap();
    assert_eq!(recent.len(), 2);
    assert!(recent.iter().all(|r| r.run == new_id));
    assert!(store.has_completed_run().unwrap());
}

#[test]
fn devices_and_adopted_joins_read_back_and_a_full_round_replaces_devices() {
    let (_dir, path) = temp_store();
    let mut store = Store::open(&path).unwrap();
    let devices: Vec<wb_model::CloudDevice> = (0..3)
        .map(|i| wb_model::CloudDevice {
            id: format!("device-{i}"),
            display_name: Some(format!("PC-{i}")),
            device_id: Some(format!("dev-{i}")),
            on_premises_sync_enabled: (i > 0).then_some(true),
            on_premises_security_identifier: (i > 0)
                .then(|| format!("S-1-5-21-1-2-3-{}", 6000 + i)),
        })
        .collect();
    let mut c = Commit::for_run(run(
        "full",
        RunStatus::Success,
        datetime!(2026-01-02 03:04:05 UTC),
    ));
    c.replace_cloud = true;
    c.upsert_devices = devices.iter().collect();
    c.device_delta_link = Some("https://graph.example/v1.0/devices/delta?$deltatoken=x".into());
    let mut adopted = join("00000000-0000-0000-0000-000000000001", "guid-adopted");
    adopted.adopted = true;
    c.joins_upsert = vec![adopted.clone()];
    store.commit(&c).unwrap();
    let state = store.load().unwrap();
    assert_eq!(state.cloud.devices.len(), 3);
    assert_eq!(state.cloud.devices.get("device-2"), Some(&devices[2]));
    assert_eq!(state.device_delta_link, c.device_delta_link);
    assert_eq!(state.joins.get(&adopted.group), Some(&adopted));

    let mut c = Commit::for_run(run(
        "full",
        RunStatus::Success,
        datetime!(2026-01-02 04:04:05 UTC),
    ));
    c.replace_cloud = true;
    c.upsert_devices = vec![&devices[0]];
    store.commit(&c).unwrap();
    assert_eq!(store.load().unwrap().cloud.devices.len(), 1);
}

#[test]
fn outcomes_are_kept_per_group_and_updated_by_the_groups_a_cycle_planned() {
    let (_dir, path) = temp_store();
    let mut store = Store::open(&path).unwrap();
    let outcome = |id: &str, name: &str, error: Option<&str>| {
        let mut g = sample_plan(name).groups.remove(0);
        g.id = id.into();
        g.errors = error.map(|e| vec![e.to_string()]).unwrap_or_default();
        g
    };
    let (a, b, c) = (
        outcome("a", "Alpha", None),
        outcome("b", "Beta", Some("cn taken")),
        outcome("c", "Gamma", None),
    );
    let at = OffsetDateTime::UNIX_EPOCH;
    // A legacy store (a run's plan only) reads its outcomes from that plan.
    let mut legacy = run("full", RunStatus::Success, at);
    legacy.plan = Some(sample_plan("legacy"));
    store.record_run(&legacy).unwrap();
    assert!(!store.outcomes_kept().unwrap());
    assert_eq!(store.last_outcomes().unwrap(), Some(sample_plan("legacy")));

    // A full plan replaces every outcome.
    let notices = vec!["a notice".to_string()];
    let mut commit = Commit::for_run(run("full", RunStatus::Success, at));
    commit.outcomes = Some(OutcomesUpdate {
        replace: true,
        upsert: vec![&a, &b, &c],
        remove: vec![],
        foreign: &[],
        notices: &notices,
    });
    store.commit(&commit).unwrap();
    assert!(store.outcomes_kept().unwrap());
    let plan = store.last_outcomes().unwrap().expect("outcomes");
    assert_eq!(plan.groups, vec![a.clone(), b.clone(), c.clone()]);
    assert_eq!(plan.notices, notices);
    assert_eq!(store.outcomes_with_errors().unwrap(), vec![b.clone()]);
    // By id: the groups it has, in the order asked.
    assert_eq!(
        store.outcomes_of(["c", "nope", "a"]).unwrap(),
        vec![c.clone(), a.clone()]
    );

    // A partial plan rewrites its groups and removes the gone ones; the others stay.
    let a2 = outcome("a", "Alpha", Some("member refused"));
    let mut commit = Commit::for_run(run("delta", RunStatus::Success, at));
    commit.outcomes = Some(OutcomesUpdate {
        replace: false,
        upsert: vec![&a2],
        remove: vec!["c".into()],
        foreign: &[],
        notices: &[],
    });
    store.commit(&commit).unwrap();
    let plan = store.last_outcomes().unwrap().expect("outcomes");
    assert_eq!(plan.groups, vec![a2.clone(), b.clone()]);
    assert_eq!(store.outcomes_with_errors().unwrap(), vec![a2, b]);
    // A commit without outcomes (a quiet cycle) leaves them.
    store
        .commit(&Commit::for_run(run("delta", RunStatus::Success, at)))
        .unwrap();
    assert_eq!(
        store
            .last_outcomes()
            .unwrap()
            .expect("outcomes")
            .groups
            .len(),
        2
    );
}

/// A cloud group with `n` user members and its AD group with `n` member DNs (in an order
/// that is not sorted, as AD returns them).
fn big_group(n: usize) -> (CloudGroup, AdGroup) {
    let mut g = group(1);
    g.members = (0..n)
        .map(|i| MemberRef {
            kind: MemberKind::User,
            id: format!("00000000-0000-4000-8000-{i:012}").into(),
        })
        .collect();
    let dns: Vec<String> = (0..n)
        .map(|i| format!("CN=bg{},OU=Big,DC=t", (i * 7919) % n))
        .collect();
    let refs: Vec<&str> = dns.iter().map(String::as_str).collect();
    (g, ad_group(1, &refs))
}

/// The member chunk rows of the store, by table, key and chunk, with their JSON.
fn chunk_rows(path: &std::path::Path) -> Vec<(String, String, i64, String)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut out = Vec::new();
    for (table, key) in [("cloud_group_chunks", "id"), ("ad_group_chunks", "guid")] {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {key}, chunk, json FROM {table} ORDER BY 1, 2"
            ))
            .unwrap();
        let rows = stmt
            .query_map([], |r| {
                Ok((table.to_string(), r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        out.extend(rows.map(Result::unwrap));
    }
    out
}

fn commit_groups(store: &mut Store, cloud: &[&CloudGroup], ad: &[&AdGroup]) {
    let mut c = Commit::for_run(run("delta", RunStatus::Success, OffsetDateTime::now_utc()));
    c.upsert_groups = cloud.to_vec();
    c.ad_groups_upsert = ad.to_vec();
    store.commit(&c).unwrap();
}

#[test]
fn a_big_group_reads_back_whole_and_one_member_in_or_out_rewrites_one_chunk() {
    let (_dir, path) = temp_store();
    let mut store = Store::open(&path).unwrap();
    let (mut cloud, mut ad) = big_group(60_000);
    let small = group(2);
    commit_groups(&mut store, &[&cloud, &small], &[&ad]);
    let read_back = |store: &Store| {
        let (state, rows) = store.load_with_ad().unwrap();
        (state.cloud.groups, rows.groups)
    };
    let (groups, ad_groups) = read_back(&store);
    assert_eq!(groups[&cloud.id], cloud);
    assert_eq!(groups[&small.id], small);
    assert_eq!(ad_groups, vec![ad.clone()], "members in AD's order");
    let before = chunk_rows(&path);
    assert!(before.len() > 20, "{} chunk rows", before.len());
    assert!(
        before
            .iter()
            .all(|(_, k, _, _)| *k == cloud.id || *k == "guid-1"),
        "a small group keeps its members in its row"
    );

    // One member out of the cloud group, one DN into the AD group.
    let gone = cloud.members.iter().nth(31_415).unwrap().clone();
    cloud.members.remove(&gone);
    ad.members.insert(12_345, "CN=newcomer,OU=Big,DC=t".into());
    commit_groups(&mut store, &[&cloud], &[&ad]);
    let after = chunk_rows(&path);
    let changed: Vec<_> = after.iter().filter(|r| !before.contains(r)).collect();
    assert!(
        (1..=4).contains(&changed.len()),
        "one chunk per image rewritten (two when the member is a boundary): {:?}",
        changed
            .iter()
            .map(|(t, _, n, _)| (t, n))
            .collect::<Vec<_>>()
    );
    let (groups, ad_groups) = read_back(&Store::open(&path).unwrap());
    assert_eq!(groups[&cloud.id], cloud);
    assert_eq!(ad_groups, vec![ad.clone()]);

    // Down to a few members: back in its row, its chunks gone; and up again.
    let few: BTreeSet<MemberRef> = cloud.members.iter().take(3).cloned().collect();
    let all = std::mem::replace(&mut cloud.members, few);
    ad.members.truncate(2);
    commit_groups(&mut store, &[&cloud], &[&ad]);
    assert_eq!(chunk_rows(&path), vec![]);
    let (groups, ad_groups) = read_back(&store);
    assert_eq!(groups[&cloud.id], cloud);
    assert_eq!(ad_groups, vec![ad.clone()]);
    cloud.members = all;
    commit_groups(&mut store, &[&cloud], &[]);
    assert_eq!(read_back(&store).0[&cloud.id], cloud);

    // A group removed, or the image replaced, takes its chunks along.
    let mut c = Commit::for_run(run("delta", RunStatus::Success, OffsetDateTime::now_utc()));
    c.remove_groups = vec![cloud.id.clone()];
    store.commit(&c).unwrap();
    assert_eq!(chunk_rows(&path), vec![]);
    assert!(!read_back(&store).0.contains_key(&cloud.id));
    let (_, big_ad) = big_group(10_000);
    commit_groups(&mut store, &[&cloud], &[&big_ad]);
    assert!(!chunk_rows(&path).is_empty());
    let mut c = Commit::for_run(run("full", RunStatus::Success, OffsetDateTime::now_utc()));
    c.replace_cloud = true;
    c.replace_ad = true;
    c.upsert_groups = vec![&small];
    store.commit(&c).unwrap();
    assert_eq!(chunk_rows(&path), vec![]);
    let (groups, ad_groups) = read_back(&store);
    assert_eq!(groups.keys().collect::<Vec<_>>(), vec![&small.id]);
    assert!(ad_groups.is_empty());
}

#[test]
fn a_big_group_stored_whole_by_an_older_writeback_reads_back_and_is_chunked_when_written() {
    let (_dir, path) = temp_store();
    let (mut cloud, ad) = big_group(9_000);
    // A store of schema 6 (before chunk rows): the group's members in its row.
    drop(Store::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TABLE cloud_group_chunks; DROP TABLE ad_group_chunks; PRAGMA user_version = 6;",
    )
    .unwrap();
    conn.execute(
        "INSERT INTO cloud_groups (id, json) VALUES (?1, ?2)",
        [&cloud.id, &serde_json::to_string(&cloud).unwrap()],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO ad_groups (guid, json) VALUES ('guid-1', ?1)",
        [&serde_json::to_string(&ad).unwrap()],
    )
    .unwrap();
    drop(conn);

    let mut store = Store::open(&path).unwrap();
    let (state, rows) = store.load_with_ad().unwrap();
    assert_eq!(state.cloud.groups[&cloud.id], cloud);
    assert_eq!(rows.groups, vec![ad.clone()]);
    assert_eq!(chunk_rows(&path), vec![]);

    cloud.members.pop_first();
    commit_groups(&mut store, &[&cloud], &[&ad]);
    assert!(chunk_rows(&path).len() > 4);
    let (state, rows) = Store::open(&path).unwrap().load_with_ad().unwrap();
    assert_eq!(state.cloud.groups[&cloud.id], cloud);
    assert_eq!(rows.groups, vec![ad]);
}

#[test]
fn users_and_lookup_results_read_back_from_compact_rows_and_from_rows_written_before() {
    let (_dir, path) = temp_store();
    let mut store = Store::open(&path).unwrap();
    // Every field set, each to its own value: a field read into another's place shows.
    let full = CloudUser {
        id: "user-full".into(),
        user_principal_name: Some("full@lab.example.test".into()),
        display_name: Some("Full, \"Quoted\" 🎉".into()),
        on_premises_sync_enabled: Some(true),
        on_premises_security_identifier: Some("S-1-5-21-1-2-3-1001".into()),
        on_premises_immutable_id: Some("aW1tdXRhYmxl".into()),
        on_premises_distinguished_name: Some("CN=Full,OU=U,DC=lab".into()),
        on_premises_sam_account_name: Some("full".into()),
        on_premises_domain_name: Some("lab.example.test".into()),
    };
    let bare = CloudUser {
        id: "user-bare".into(),
        ..CloudUser::default()
    };
    let sid = Lookup::Sid("S-1-5-21-1-2-3-1001".into());
    let found = AdObjectRef {
        dn: "CN=Full,OU=U,DC=lab".into(),
        guid: "6f1c2b1e-0000-4000-b000-000000000001".into(),
        group_type: Some(-2147483646),
        class: AdClass::Other("contact".into()),
    };
    let mut c = Commit::for_run(run("full", RunStatus::Success, OffsetDateTime::now_utc()));
    c.upsert_users = vec![&full, &bare];
    c.ad_lookups_upsert = vec![(&sid, Some(&found))];
    store.commit(&c).unwrap();

    // Rows as a writeback before schema 7 wrote them: JSON objects.
    let old = CloudUser {
        id: "user-old".into(),
        ..full.clone()
    };
    let old_sid = Lookup::Sid("S-1-5-21-1-2-3-1002".into());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO cloud_users (id, json) VALUES ('user-old', ?1)",
        [serde_json::to_string(&old).unwrap()],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO ad_lookups (lookup, json) VALUES (?1, ?2)",
        [
            serde_json::to_string(&old_sid).unwrap(),
            serde_json::to_string(&found).unwrap(),
        ],
    )
    .unwrap();
    let compact: String = conn
        .query_row(
            "SELECT json FROM cloud_users WHERE id = 'user-full'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(compact.starts_with("[\"user-full\""), "{compact}");
    drop(conn);

    let (state, rows) = Store::open(&path).unwrap().load_with_ad().unwrap();
    assert_eq!(state.cloud.users["user-full"], full);
    assert_eq!(state.cloud.users["user-bare"], bare);
    assert_eq!(state.cloud.users["user-old"], old);
    assert_eq!(rows.resolutions.found.get(&sid), Some(&found));
    assert_eq!(rows.resolutions.found.get(&old_sid), Some(&found));
}
