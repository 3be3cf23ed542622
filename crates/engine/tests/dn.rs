//! One DN comparison for everyone (`wb_engine::naming`): equality and containment as
//! RFC 4514 reads a DN — case-insensitive types and values, `\,` and `\2C` the same
//! character, spaces around `=` and `,` not part of the value, multi-valued RDNs in any
//! order — and containment RDN by RDN, never on the text.

use proptest::prelude::*;
use wb_engine::naming::{dn_eq, dn_key, escape_rdn_value, is_at_or_under, is_under, is_valid_dn};

const MANAGED: &str = "OU=Managed,DC=lab,DC=example,DC=test";

#[test]
fn an_escaped_comma_does_not_make_a_dn_look_under_an_ou() {
    // One RDN whose value is "Evil,OU=Managed": its parent is DC=lab,..., not the OU.
    for evil in [
        r"OU=Evil\,OU=Managed,DC=lab,DC=example,DC=test",
        r"OU=Evil\2COU=Managed,DC=lab,DC=example,DC=test",
        r"OU=Evil\2cOU=Managed,DC=lab,DC=example,DC=test",
        r"CN=x,OU=Evil\,OU=Managed,DC=lab,DC=example,DC=test",
    ] {
        assert!(!is_under(evil, MANAGED), "{evil} is not under {MANAGED}");
        assert!(!is_at_or_under(evil, MANAGED), "{evil}");
    }
    assert!(is_under(
        r"CN=a\,b,OU=Managed,DC=lab,DC=example,DC=test",
        MANAGED
    ));
    // Nor does an escaped comma in the OU make something under it.
    assert!(!is_under("CN=x,OU=b,DC=lab", r"OU=a\,OU=b,DC=lab"));
}

#[test]
fn case_and_spaces_around_separators_do_not_matter() {
    assert!(dn_eq("ou=managed, dc=lab", "OU=Managed,DC=lab"));
    assert!(dn_eq(" ou = managed ,  dc = lab ", "OU=Managed,DC=lab"));
    assert!(is_under("cn=G , ou=MANAGED, dc=Lab", "OU=Managed,DC=lab"));
    assert!(is_at_or_under("ou=managed, dc=lab", "OU=Managed,DC=lab"));
    assert!(
        !is_under("ou=managed, dc=lab", "OU=Managed,DC=lab"),
        "not below itself"
    );
    // An escaped space is part of the value.
    assert!(!dn_eq(r"CN=a\ ,DC=lab", "CN=a,DC=lab"));
    assert!(dn_eq(r"CN=a\20,DC=lab", r"CN=a\ ,DC=lab"));
}

#[test]
fn hex_escapes_equal_plain_escapes_and_plain_characters() {
    assert!(dn_eq(r"CN=a\,b,DC=lab", r"CN=a\2Cb,DC=lab"));
    assert!(dn_eq(r"CN=a\2cb,DC=lab", r"CN=A\,B,DC=LAB"));
    assert!(dn_eq(r"CN=Caf\C3\A9,DC=lab", "CN=café,DC=lab"));
    assert!(dn_eq(r"CN=a\=b,DC=lab", r"CN=a\3Db,DC=lab"));
    assert!(!dn_eq(r"CN=a\,b,DC=lab", "CN=a,CN=b,DC=lab"));
}

#[test]
fn multi_valued_rdns_compare_in_any_order() {
    assert!(dn_eq("CN=a+UID=b,DC=lab", "uid=B+cn=A,dc=lab"));
    assert!(is_under("CN=x,OU=a+L=b,DC=lab", "l=B + ou=A,DC=lab"));
    assert!(!dn_eq("CN=a+UID=b,DC=lab", "CN=a,UID=b,DC=lab"));
    assert!(!dn_eq(r"CN=a\+UID=b,DC=lab", "CN=a+UID=b,DC=lab"));
}

#[test]
fn numeric_attribute_types_equal_their_names() {
    assert!(dn_eq(
        "2.5.4.3=G,OID.2.5.4.11=Managed,0.9.2342.19200300.100.1.25=lab",
        "CN=G,OU=Managed,DC=lab"
    ));
    assert!(is_under("2.5.4.3=G,OU=Managed,DC=lab", "ou=managed,dc=lab"));
}

#[test]
fn a_dn_that_does_not_parse_is_under_nothing() {
    for broken in [
        r"CN=a\,OU=Managed,DC=lab\",
        r"CN=a\zz,OU=Managed,DC=lab",
        "CN=a;b\"c,OU=Managed,DC=lab",
    ] {
        assert!(!is_under(broken, "OU=Managed,DC=lab"), "{broken}");
        assert!(!is_valid_dn(broken), "{broken}");
    }
    assert!(!is_under("CN=a,OU=Managed,DC=lab", ""));
    assert!(!is_valid_dn(""));
    assert!(!is_valid_dn("not a dn"));
    assert!(is_valid_dn(MANAGED));
    assert!(is_valid_dn(r"CN=a\,b+UID=c,DC=lab"));
}

/// A DN's RDN values, each written in one of the ways RFC 4514 allows.
fn spellings(value: &str, how: u8) -> String {
    let escaped = escape_rdn_value(value);
    match how % 3 {
        0 => escaped,
        // Every escaped special as a hex pair.
        1 => {
            let mut out = String::new();
            let mut chars = escaped.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    let next = chars.next().unwrap_or('\\');
                    let mut buf = [0u8; 4];
                    for b in next.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\{b:02x}"));
                    }
                } else {
                    out.push(c);
                }
            }
            out
        }
        _ => escaped.to_uppercase(),
    }
}

proptest! {
    /// However a DN is spelled, it equals itself, and it is under each of its ancestors
    /// (spelled differently) and nothing else of the same shape.
    #[test]
    fn spelling_never_changes_equality_or_containment(
        values in proptest::collection::vec(r##"[a-zA-Z ,+=\\"#<>;é]{1,6}"##, 2..5),
        how_a in any::<u8>(),
        how_b in any::<u8>(),
        cut in 1usize..4,
    ) {
        let rdn = |i: usize, how: u8| format!(
            "{}={}",
            if i.is_multiple_of(2) { "OU" } else { "ou " },
            spellings(&values[i], how.wrapping_add(i as u8))
        );
        let dn = |from: usize, how: u8| (from..values.len()).map(|i| rdn(i, how)).collect::<Vec<_>>().join(", ");
        let a = dn(0, how_a);
        let b = dn(0, how_b);
        prop_assert!(dn_eq(&a, &b), "{} = {}", a, b);
        prop_assert_eq!(dn_key(&a), dn_key(&b));
        let parent = dn(cut.min(values.len() - 1), how_b);
        prop_assert!(is_under(&a, &parent), "{} under {}", a, parent);
        prop_assert!(!is_under(&parent, &a));
        // Folding the first RDN into the next one's value (`\,`) is never "under".
        let folded = format!("{}\\,{}", rdn(0, how_a), dn(1, how_a));
        prop_assert!(!is_under(&folded, &dn(1, how_b)), "{} under {}", folded, dn(1, how_b));
    }
}
