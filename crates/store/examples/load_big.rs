//! Benchmark: reading back the state of one group at the 250,000-member limit (what a
//! one-shot `sync` loads before it can plan a change of that group), and committing the
//! group again. `BIG_MEMBERS` resizes. Prints each phase's time.

use std::sync::Arc;
use std::time::Instant;
use time::OffsetDateTime;
use wb_model::{
    AdClass, AdGroup, AdObjectRef, CloudGroup, CloudUser, Lookup, MemberKind, MemberRef,
};
use wb_store::{Commit, RunRecord, RunStatus, Store};

fn main() {
    let n: usize = std::env::var("BIG_MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(250_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.db");
    let mut store = Store::open(&path).expect("store");

    let uid = |i: usize| format!("00000000-0000-4000-8000-{i:012}");
    let sid = |i: usize| format!("S-1-5-21-1004336348-1177238915-682003330-{}", 10_000 + i);
    let dn = |i: usize| {
        format!(
            "CN=bg{i},OU=bg-{},OU=BigUsers,DC=lab,DC=example,DC=test",
            i / 10_000
        )
    };
    let users: Vec<CloudUser> = (0..n)
        .map(|i| CloudUser {
            id: uid(i),
            user_principal_name: Some(format!("bg{i}@lab.example.test")),
            display_name: Some(format!("bg{i}")),
            on_premises_sync_enabled: Some(true),
            on_premises_security_identifier: Some(sid(i)),
            ..CloudUser::default()
        })
        .collect();
    let mut group = CloudGroup {
        id: "00000000-0000-4000-9000-000000000001".into(),
        display_name: Some("SG-Big".into()),
        security_enabled: Some(true),
        mail_enabled: Some(false),
        ..CloudGroup::default()
    };
    group.writeback.is_enabled = Some(true);
    group.members = (0..n)
        .map(|i| MemberRef {
            kind: MemberKind::User,
            id: Arc::from(uid(i)),
        })
        .collect();
    let ad = AdGroup {
        dn: "CN=SG-Big,OU=Groups,DC=lab,DC=example,DC=test".into(),
        guid: "6f1c2b1e-0000-4000-a000-000000000001".into(),
        cn: "SG-Big".into(),
        group_type: -2147483640,
        members: (0..n).map(|i| Arc::from(dn(i))).collect(),
        ..AdGroup::default()
    };
    let lookups: Vec<(Lookup, AdObjectRef)> = (0..n)
        .map(|i| {
            (
                Lookup::Sid(sid(i)),
                AdObjectRef {
                    dn: dn(i),
                    guid: format!("6f1c2b1e-0000-4000-b000-{i:012}"),
                    group_type: None,
                    class: AdClass::User,
                },
            )
        })
        .collect();
    let run = || RunRecord {
        id: 0,
        started_at: OffsetDateTime::now_utc(),
        finished_at: OffsetDateTime::now_utc(),
        mode: "delta".into(),
        status: RunStatus::Success,
        staging: false,
        counts: Default::default(),
        graph_requests: 0,
        ldap_writes: 0,
        errors: Vec::new(),
        message: None,
        plan: None,
    };
    let mut c = Commit::for_run(run());
    c.replace_cloud = true;
    c.upsert_groups = vec![&group];
    c.upsert_users = users.iter().collect();
    c.replace_ad = true;
    c.ad_groups_upsert = vec![&ad];
    c.ad_lookups_upsert = lookups.iter().map(|(l, o)| (l, Some(o))).collect();
    c.ad_image = Some("{}".into());
    let t = Instant::now();
    store.commit(&c).expect("first commit");
    println!(
        "{n} members: first commit {:.3}s",
        t.elapsed().as_secs_f64()
    );
    drop(c);

    for round in 0..3 {
        let store = Store::open(&path).expect("store");
        let t = Instant::now();
        let state = store.load().expect("load");
        let cloud = t.elapsed();
        let rows = store.load_ad().expect("load AD");
        let all = t.elapsed();
        assert_eq!(state.cloud.users.len(), n);
        assert_eq!(rows.groups[0].members.len(), n);
        println!(
            "round {round}: load cloud {:.3}s, AD image {:.3}s, together {:.3}s",
            cloud.as_secs_f64(),
            (all - cloud).as_secs_f64(),
            all.as_secs_f64()
        );
        std::mem::forget((state, rows));
        let t = Instant::now();
        let both = store.load_with_ad().expect("load both");
        println!(
            "round {round}: both side by side (load_with_ad) {:.3}s",
            t.elapsed().as_secs_f64()
        );
        std::mem::forget(both);
    }
    for round in 0..3 {
        group.members.pop_first();
        let mut c = Commit::for_run(run());
        c.upsert_groups = vec![&group];
        c.ad_groups_upsert = vec![&ad];
        let t = Instant::now();
        store.commit(&c).expect("commit");
        println!(
            "round {round}: commit of the group and its AD image {:.3}s",
            t.elapsed().as_secs_f64()
        );
    }
}
