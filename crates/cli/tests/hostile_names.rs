//! Names AD refuses (SPEC §10): lengths counted in UTF-16 code units, control and bidi
//! characters, and sAMAccountNames already taken in the domain. Each group must be written
//! once and then left alone — never an error on every cycle.

mod support;

use std::collections::HashSet;
use support::*;

fn units(s: &str) -> usize {
    s.encode_utf16().count()
}

fn is_stripped(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[tokio::test]
async fn names_longer_than_ad_allows_in_utf16_units_are_written_once() {
    let mut w = World::new("hostile-long").await;
    w.writeback_toml = "naming = \"display-name\"".into();
    w.write_config();
    let names = [
        "😀".repeat(30),
        "\u{20000}".repeat(26),
        "L".repeat(300),
        "😀".repeat(150),
        format!(
            "Pay\u{202E}roll\u{1}\u{7F}\u{85}\u{2066}Team\u{2069}\t{}",
            "é".repeat(80)
        ),
    ];
    let mut ids = Vec::new();
    for name in &names {
        // Security groups: no mail attributes (graph-sim derives a mail address from the
        // name, and real mail nicknames are at most 64 characters).
        ids.push(w.security_group(name, Some(true), None).await);
    }
    let first = w.sync_ok();
    assert!(
        first["errors"].as_array().is_none_or(|e| e.is_empty()),
        "{first}"
    );
    for (id, name) in ids.iter().zip(&names) {
        let g = w
            .ad_group_of(id)
            .await
            .unwrap_or_else(|| panic!("{name:?} was written"));
        assert!(units(&g.cn) <= 64, "cn {:?}: {} units", g.cn, units(&g.cn));
        assert!(!g.cn.chars().any(is_stripped), "cn {:?}", g.cn);
        let sam = g.sam.clone().unwrap_or_default();
        assert!(!sam.is_empty() && units(&sam) <= 64, "{sam:?}");
        assert!(!sam.chars().any(is_stripped), "sAMAccountName {sam:?}");
        let display = g.display_name.clone().unwrap_or_default();
        assert!(
            units(&display) <= 256,
            "displayName: {} units",
            units(&display)
        );
        assert!(!display.contains('\0'));
    }
    let long = w.ad_group_of(&ids[2]).await.expect("written");
    assert_eq!(long.display_name.as_deref(), Some("L".repeat(256).as_str()));
    let emoji = w.ad_group_of(&ids[3]).await.expect("written");
    assert_eq!(
        emoji.display_name.as_deref(),
        Some("😀".repeat(128).as_str())
    );
    let tail = &ids[0][ids[0].len() - 12..];
    assert_eq!(
        w.ad_group_of(&ids[0]).await.expect("written").cn,
        format!("{}_{tail}", "😀".repeat(25))
    );

    let second = w.sync_ok();
    assert_eq!(second["ldapWrites"], 0, "the second sync wrote: {second}");
}

/// A group with the sAMAccountName `sam`, outside the managed OU (writeback cannot see it).
async fn squat(w: &World, ou: &str, cn: &str, sam: &str) {
    let mut ldap = w.ldap().await;
    let dn = format!("CN={cn},{ou}");
    ldap.add(
        &dn,
        vec![
            ("objectClass", HashSet::from(["group"])),
            ("sAMAccountName", HashSet::from([sam])),
        ],
    )
    .await
    .expect("add")
    .success()
    .unwrap_or_else(|e| panic!("add {dn}: {e}"));
}

#[tokio::test]
async fn a_group_whose_sam_account_name_and_first_fallback_are_taken_uses_a_further_candidate() {
    let mut w = World::new("hostile-sam").await;
    w.writeback_toml = "naming = \"display-name\"".into();
    w.write_config();
    let id = w.security_group("SG-Squatted", Some(true), None).await;
    let cn = format!("SG-Squatted_{}", &id[id.len() - 12..]);
    let first_fallback = format!("{cn}_{}", &id[..8]);
    let squats = format!("OU=Squatters,{}", w.root_ou);
    w.dc.create_ou(&squats).await;
    squat(&w, &squats, "Squat-1", &cn).await;
    squat(&w, &squats, "Squat-2", &first_fallback).await;

    let out = w.sync_ok();
    let g = w
        .ad_group_of(&id)
        .await
        .unwrap_or_else(|| panic!("created: {out}"));
    let sam = g.sam.expect("sAMAccountName");
    assert!(
        !sam.eq_ignore_ascii_case(&cn) && !sam.eq_ignore_ascii_case(&first_fallback),
        "{sam}"
    );
    assert!(sam.starts_with(&cn) && units(&sam) <= 64, "{sam}");
    assert_eq!(w.sync_ok()["ldapWrites"], 0);
}
