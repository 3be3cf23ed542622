//! Naming (SPEC §4): CN, RFC 4514 escaping, sAMAccountName and DN comparison.

mod fixture;

use fixture::*;
use proptest::prelude::*;
use wb_engine::naming::{
    cn, dn_eq, escape_rdn_value, rdn, sam_account_name, sam_account_name_fallback,
    unescape_rdn_value,
};
use wb_engine::Naming;

const SPECIALS: &[char] = &[',', '+', '"', '\\', '<', '>', ';', '=', '\0'];
const SAM_FORBIDDEN: &[char] = &[
    '"', '/', '\\', '[', ']', ':', ';', '|', '=', ',', '+', '*', '?', '<', '>',
];

#[test]
fn display_name_cn_is_trimmed_left_51_plus_last_12_of_the_id() {
    let long = format!("  {}  ", "A".repeat(60));
    let g = m365("6f1b2c3d-0000-4000-8000-abcdef012345", &long);
    assert_eq!(
        cn(&g, Naming::DisplayName),
        format!("{}_abcdef012345", "A".repeat(51))
    );
    let short = m365("6f1b2c3d-0000-4000-8000-abcdef012345", " SG-NL-Finance ");
    assert_eq!(
        cn(&short, Naming::DisplayName),
        "SG-NL-Finance_abcdef012345"
    );
}

#[test]
fn object_id_cn_is_group_underscore_id() {
    let g = m365("6f1b2c3d-0000-4000-8000-abcdef012345", "Team");
    assert_eq!(
        cn(&g, Naming::ObjectId),
        "Group_6f1b2c3d-0000-4000-8000-abcdef012345"
    );
}

#[test]
fn cn_counts_characters_not_bytes() {
    let g = m365(&gid(7), &"é".repeat(70));
    let name = cn(&g, Naming::DisplayName);
    assert_eq!(name.chars().count(), 64);
    assert!(name.starts_with(&"é".repeat(51)));
}

#[test]
fn rdn_escapes_commas_quotes_and_specials() {
    assert_eq!(
        escape_rdn_value(r#"Sales, "EMEA" <all>"#),
        r#"Sales\, \"EMEA\" \<all\>"#
    );
    assert_eq!(escape_rdn_value("a+b;c=d\\e"), r"a\+b\;c\=d\\e");
    assert_eq!(rdn("R&D, Lab"), r"CN=R&D\, Lab");
}

#[test]
fn rdn_escapes_leading_hash_and_space_and_trailing_space() {
    assert_eq!(escape_rdn_value("#1 team "), r"\#1 team\ ");
    assert_eq!(escape_rdn_value(" x"), r"\ x");
    assert_eq!(escape_rdn_value("a#b"), "a#b");
    assert_eq!(escape_rdn_value(" "), r"\ ");
}

#[test]
fn rdn_escapes_nul_as_hex() {
    assert_eq!(escape_rdn_value("a\0b"), r"a\00b");
}

#[test]
fn unescape_accepts_hex_pairs_and_rejects_broken_escapes() {
    assert_eq!(
        unescape_rdn_value(r"Sales\2C EMEA").as_deref(),
        Some("Sales, EMEA")
    );
    assert_eq!(unescape_rdn_value(r"caf\C3\A9").as_deref(), Some("café"));
    assert_eq!(unescape_rdn_value(r"dangling\"), None);
    assert_eq!(unescape_rdn_value(r"bad\4"), None);
    assert_eq!(unescape_rdn_value(r"not utf8\FF"), None);
    assert_eq!(unescape_rdn_value("raw,comma"), None);
    assert_eq!(unescape_rdn_value(r"\q"), None);
}

#[test]
fn sam_account_name_replaces_forbidden_characters() {
    assert_eq!(
        sam_account_name(r#"a"b/c\d[e]f:g;h|i=j,k+l*m?n<o>p"#),
        "a_b_c_d_e_f_g_h_i_j_k_l_m_n_o_p"
    );
    assert_eq!(sam_account_name(&"x".repeat(80)).chars().count(), 64);
}

#[test]
fn sam_account_name_fallback_adds_eight_characters_of_the_id() {
    let id = "6f1b2c3d-0000-4000-8000-abcdef012345";
    assert_eq!(
        sam_account_name_fallback("Team_abcdef012345", id),
        "Team_abcdef012345_6f1b2c3d"
    );
    let long = sam_account_name_fallback(&"y".repeat(64), id);
    assert_eq!(long.chars().count(), 64);
    assert!(long.ends_with("_6f1b2c3d"));
}

#[test]
fn dn_eq_ignores_case_escaping_and_spaces_after_commas() {
    assert!(dn_eq(
        "CN=Sales\\, EMEA,OU=Groups,DC=lab",
        "cn=sales\\2c emea, ou=GROUPS, dc=LAB"
    ));
    assert!(dn_eq("CN=Café,DC=lab", "CN=caf\\C3\\A9,DC=lab"));
    assert!(!dn_eq(
        "CN=Sales,OU=Groups,DC=lab",
        "CN=Sales,OU=Other,DC=lab"
    ));
    assert!(!dn_eq("CN=a\\,b,DC=lab", "CN=a,CN=b,DC=lab"));
}

/// Whether `escaped` contains a special character not preceded by an escaping backslash,
/// or an unescaped leading `#`/space or trailing space.
fn has_unescaped_special(escaped: &str) -> bool {
    let chars: Vec<char> = escaped.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            match chars.get(i + 1) {
                Some(n) if n.is_ascii_hexdigit() => i += 3,
                Some(_) => i += 2,
                None => return true,
            }
            continue;
        }
        let edge = (i == 0 && (c == '#' || c == ' ')) || (i + 1 == chars.len() && c == ' ');
        if SPECIALS.contains(&c) || edge {
            return true;
        }
        i += 1;
    }
    false
}

#[test]
fn the_special_checker_finds_unescaped_specials() {
    assert!(has_unescaped_special("a,b"));
    assert!(has_unescaped_special("#a"));
    assert!(has_unescaped_special("a "));
    assert!(!has_unescaped_special(r"a\,b"));
}

proptest! {
    #[test]
    fn escaping_round_trips_for_any_unicode(s in any::<String>()) {
        prop_assert_eq!(unescape_rdn_value(&escape_rdn_value(&s)), Some(s));
    }

    #[test]
    fn escaping_round_trips_for_names_full_of_specials(s in r#"[ #,+"\\<>;=a\x00é]{0,12}"#) {
        let escaped = escape_rdn_value(&s);
        prop_assert!(!has_unescaped_special(&escaped), "{:?} → {:?}", s, escaped);
        prop_assert_eq!(unescape_rdn_value(&escaped), Some(s));
    }

    #[test]
    fn escaped_value_never_has_an_unescaped_special(s in any::<String>()) {
        let escaped = escape_rdn_value(&s);
        prop_assert!(!has_unescaped_special(&escaped), "{:?} → {:?}", s, escaped);
    }

    #[test]
    fn dn_with_escaped_cn_compares_equal_to_itself_in_other_case(s in "[ -~é]{1,30}") {
        let dn = format!("{},{OU}", rdn(&s));
        prop_assert!(dn_eq(&dn, &dn.to_uppercase()) || s.to_uppercase().to_lowercase() != s.to_lowercase());
    }

    #[test]
    fn cn_is_at_most_64_characters(name in any::<String>(), n in any::<u32>()) {
        let g = m365(&gid(n), &name);
        prop_assert!(cn(&g, Naming::DisplayName).chars().count() <= 64);
        prop_assert!(cn(&g, Naming::ObjectId).chars().count() <= 64);
    }

    #[test]
    fn sam_account_name_has_no_forbidden_character_and_at_most_64(name in any::<String>(), n in any::<u32>()) {
        let g = m365(&gid(n), &name);
        let c = cn(&g, Naming::DisplayName);
        for sam in [sam_account_name(&c), sam_account_name_fallback(&c, &g.id)] {
            prop_assert!(sam.chars().count() <= 64);
            prop_assert!(!sam.chars().any(|ch| SAM_FORBIDDEN.contains(&ch)), "{:?}", sam);
        }
    }
}

// ---- hostile names (SPEC §10): UTF-16 lengths, control and bidi characters

fn units(s: &str) -> usize {
    s.encode_utf16().count()
}

/// Control characters (C0, DEL, C1) and bidi overrides / isolates.
fn is_stripped(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Any character, with plenty of the kinds that hurt: astral planes (surrogate pairs in
/// UTF-16), controls, bidi, RDN specials, spaces and dots.
fn hostile_char() -> impl Strategy<Value = char> {
    prop_oneof![
        any::<char>(),
        prop::char::range('\u{1F600}', '\u{1F64F}'),
        prop::char::range('\u{20000}', '\u{2A6DF}'),
        prop::char::range('\u{10000}', '\u{10FFFF}'),
        prop::char::range('\0', '\u{1F}'),
        prop::char::range('\u{7F}', '\u{9F}'),
        prop::char::range('\u{202A}', '\u{202E}'),
        prop::char::range('\u{2066}', '\u{2069}'),
        prop::sample::select(vec![' ', '.', ',', '#', '\\', '"', '+', '=', '_', 'a', 'Z']),
    ]
}

fn hostile_name() -> impl Strategy<Value = String> {
    prop::collection::vec(hostile_char(), 0..140).prop_map(|v| v.into_iter().collect())
}

#[test]
fn thirty_emoji_fit_the_cn_in_utf16_units() {
    let id = "6f1b2c3d-0000-4000-8000-abcdef012345";
    let c = cn(&m365(id, &"😀".repeat(30)), Naming::DisplayName);
    assert_eq!(c, format!("{}_abcdef012345", "😀".repeat(25)));
    assert!(units(&c) <= 64);
    let cjk = cn(&m365(id, &"\u{20000}".repeat(26)), Naming::DisplayName);
    assert_eq!(cjk, format!("{}_abcdef012345", "\u{20000}".repeat(25)));
}

#[test]
fn a_surrogate_pair_is_never_split_at_the_limit() {
    let id = "6f1b2c3d-0000-4000-8000-abcdef012345";
    // 50 units of ASCII, then an emoji that would need units 51 and 52.
    let c = cn(
        &m365(id, &format!("{}😀tail", "a".repeat(50))),
        Naming::DisplayName,
    );
    assert_eq!(c, format!("{}_abcdef012345", "a".repeat(50)));
}

#[test]
fn cn_and_sam_account_name_drop_control_and_bidi_characters() {
    let id = "6f1b2c3d-0000-4000-8000-abcdef012345";
    let g = m365(id, "\u{202E}Fin\u{0}an\u{1B}ce\u{7F}\u{85}\u{2067} ");
    let c = cn(&g, Naming::DisplayName);
    assert_eq!(c, "Finance_abcdef012345");
    assert_eq!(sam_account_name(&c), "Finance_abcdef012345");
    assert_eq!(sam_account_name("a\u{1}b\u{202D}c"), "abc");
}

#[test]
fn a_display_name_with_nothing_left_falls_back_to_the_object_id() {
    let id = "6f1b2c3d-0000-4000-8000-abcdef012345";
    for name in ["", "   ", "\u{202E}\u{1}\u{0} \u{85}"] {
        let c = cn(&m365(id, name), Naming::DisplayName);
        assert_eq!(c, format!("Group_{id}"), "{name:?}");
    }
}

#[test]
fn sam_account_name_never_ends_with_a_dot_or_a_space() {
    assert_eq!(sam_account_name("team. ."), "team");
    assert_eq!(
        sam_account_name(&format!("{}.x", "a".repeat(62))),
        format!("{}.x", "a".repeat(62))
    );
    // Cut at 64 units, right after a dot.
    assert_eq!(
        sam_account_name(&format!("{}.y", "a".repeat(63))),
        "a".repeat(63)
    );
}

#[test]
fn sam_account_name_candidates_go_from_the_name_to_longer_parts_of_the_id() {
    let id = "6f1b2c3d-0000-4000-8000-abcdef012345";
    let c = wb_engine::naming::sam_account_name_candidates("Team_abcdef012345", id);
    assert_eq!(
        c[..4],
        [
            "Team_abcdef012345".to_string(),
            "Team_abcdef012345_6f1b2c3d".to_string(),
            "Team_abcdef012345_6f1b2c3d0000".to_string(),
            "Team_abcdef012345_6f1b2c3d000040008000abcdef012345".to_string(),
        ]
    );
    assert!(c.len() >= 6, "then counters: {c:?}");
}

proptest! {
    #[test]
    fn cn_fits_64_utf16_units_for_any_name(name in hostile_name(), n in any::<u32>()) {
        let g = m365(&gid(n), &name);
        for naming in [Naming::DisplayName, Naming::ObjectId] {
            let c = cn(&g, naming);
            prop_assert!(units(&c) <= 64, "{:?} has {} units", c, units(&c));
            prop_assert!(!c.is_empty());
            prop_assert!(!c.chars().any(is_stripped), "{:?}", c);
            prop_assert_eq!(unescape_rdn_value(&escape_rdn_value(&c)), Some(c.clone()));
        }
        // The name part is Left(Trim(name without controls and bidi), 51 units).
        let clean: String = name.chars().filter(|c| !is_stripped(*c)).collect();
        let c = cn(&g, Naming::DisplayName);
        if let Some(part) = c.strip_suffix(&format!("_{}", &g.id[24..])) {
            prop_assert!(units(part) <= 51);
            prop_assert!(clean.trim().starts_with(part), "{:?} / {:?}", part, clean);
        } else {
            prop_assert_eq!(c, format!("Group_{}", g.id));
            prop_assert!(clean.trim().is_empty());
        }
    }

    #[test]
    fn sam_account_name_candidates_are_valid_and_distinct(name in hostile_name(), n in any::<u32>()) {
        let g = m365(&gid(n), &name);
        let c = cn(&g, Naming::DisplayName);
        let candidates = wb_engine::naming::sam_account_name_candidates(&c, &g.id);
        prop_assert_eq!(&candidates[0], &sam_account_name(&c));
        let mut seen = std::collections::BTreeSet::new();
        for sam in &candidates {
            prop_assert!(!sam.is_empty());
            prop_assert!(units(sam) <= 64, "{:?}", sam);
            prop_assert!(!sam.chars().any(|ch| SAM_FORBIDDEN.contains(&ch) || is_stripped(ch)), "{:?}", sam);
            prop_assert!(!sam.ends_with('.') && !sam.ends_with(' '), "{:?}", sam);
            prop_assert!(seen.insert(sam.to_lowercase()), "duplicate {:?} in {:?}", sam, candidates);
        }
    }
}
