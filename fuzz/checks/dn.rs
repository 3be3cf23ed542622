// RDN/DN escaping and parsing (`wb_engine::naming`): never a panic, and
// - escaping then unescaping a value gives the value back, in an RDN value and in a DN;
// - the one DN comparison (`dn_eq` / `dn_key` / `is_under`) is reflexive and symmetric,
//   ignores ASCII case, and puts an escaped child under its parent;
// - a CN and every sAMAccountName candidate made from any display name are within AD's
//   limits (64 UTF-16 units, no control or bidi characters, no forbidden characters).
//
// Input: UTF-8 text (lossy); a first line and the rest are also used as a pair of DNs.
//
// Shared by the fuzz target `fuzz/fuzz_targets/dn.rs` and the test that runs the seed
// corpus `fuzz/corpus/dn/` in the normal test suite (`include!`d there).
use wb_engine::naming::*;
use wb_engine::Naming;
use wb_model::CloudGroup;

const PARENT: &str = "OU=Groups,OU=Writeback,DC=lab,DC=example,DC=test";

fn units(s: &str) -> usize {
    s.encode_utf16().count()
}

/// Checks one input; panics on a property that does not hold.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let text: &str = &text;
    let (a, b) = text.split_once('\n').unwrap_or((text, ""));

    // Escape → unescape is the identity, alone and inside a DN.
    for v in [text, a, b] {
        let escaped = escape_rdn_value(v);
        assert_eq!(unescape_rdn_value(&escaped).as_deref(), Some(v), "escaped {escaped:?}");
        let dn = format!("{},{PARENT}", rdn(v));
        if !v.is_empty() {
            assert_eq!(cn_of_dn(&dn).as_deref(), Some(v), "cn of {dn:?}");
            assert!(is_under(&dn, PARENT), "{dn:?} under {PARENT}");
            assert!(is_under(&dn, &PARENT.to_ascii_lowercase()));
            assert!(!is_under(PARENT, &dn));
            let upper = format!("{},{}", rdn(&v.to_ascii_uppercase()), PARENT.to_ascii_uppercase());
            assert!(dn_eq(&dn, &upper), "{dn:?} = {upper:?}");
        }
    }

    // The DN comparison on arbitrary text: no panic, reflexive, symmetric, key-based.
    assert!(dn_eq(a, a));
    assert_eq!(dn_eq(a, b), dn_eq(b, a));
    assert_eq!(dn_eq(a, b), dn_key(a) == dn_key(b));
    let _ = is_under(a, b);
    let _ = is_under(b, a);
    let _ = cn_of_dn(text);
    let _ = unescape_rdn_value(text);

    // Names made from any display name are names AD takes.
    let group = CloudGroup {
        id: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into(),
        display_name: Some(text.to_string()),
        ..CloudGroup::default()
    };
    for naming in [Naming::DisplayName, Naming::ObjectId] {
        let cn = cn(&group, naming);
        assert!(!cn.is_empty());
        assert!(units(&cn) <= CN_MAX_UNITS, "cn {cn:?}");
        assert!(!cn.chars().any(is_stripped_from_names), "cn {cn:?}");
        assert_eq!(cn_of_dn(&format!("{},{PARENT}", rdn(&cn))).as_deref(), Some(cn.as_str()));
        let candidates = sam_account_name_candidates(&cn, &group.id);
        let mut seen = std::collections::HashSet::new();
        for sam in &candidates {
            assert!(!sam.is_empty() && units(sam) <= SAM_MAX_UNITS, "sam {sam:?}");
            assert!(!sam.chars().any(is_stripped_from_names), "sam {sam:?}");
            assert!(!sam.ends_with('.') && !sam.ends_with(' '), "sam {sam:?}");
            assert!(
                !sam.contains(['"', '/', '\\', '[', ']', ':', ';', '|', '=', ',', '+', '*', '?', '<', '>']),
                "sam {sam:?}"
            );
            assert!(seen.insert(sam.to_lowercase()), "candidates repeat {sam:?}: {candidates:?}");
        }
    }
}

