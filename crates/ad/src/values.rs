//! AD's binary value forms and how they appear on the wire: objectGUID and objectSid in
//! their canonical text forms, and filter assertions for binary and text values (RFC 4515).

use ldap3::SearchEntry;
use std::fmt::Write;

/// objectGUID bytes → AD's canonical text form (first three fields little-endian), lower-case.
pub fn guid_text(bytes: &[u8]) -> Option<String> {
    uuid::Uuid::from_slice_le(bytes)
        .ok()
        .map(|u| u.hyphenated().to_string())
}

/// AD's canonical GUID text → the 16 objectGUID bytes.
pub fn guid_bytes(text: &str) -> Option<[u8; 16]> {
    uuid::Uuid::parse_str(text.trim_matches(|c| c == '{' || c == '}'))
        .ok()
        .map(|u| u.to_bytes_le())
}

/// objectSid bytes → `S-1-5-21-...`. The one SID decoder ([`crate::acl::Sid`]) reads
/// objectSid values and the SIDs of security descriptors alike: revision 1, at most 15
/// sub-authorities, nothing after them.
pub fn sid_text(bytes: &[u8]) -> Option<String> {
    crate::acl::Sid::from_bytes(bytes)
        .ok()
        .map(|sid| sid.to_string())
}

/// `S-1-5-21-...` → objectSid bytes: revision 1, an authority below 2^48, at most 15
/// sub-authorities, each part decimal digits only (the text [`sid_text`] gives).
pub fn sid_bytes(text: &str) -> Option<Vec<u8>> {
    let number = |part: &str| -> Option<u64> {
        if part.is_empty() || part.len() > 20 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let mut parts = text
        .strip_prefix("S-")
        .or_else(|| text.strip_prefix("s-"))?
        .split('-');
    if number(parts.next()?)? != 1 {
        return None;
    }
    let authority = number(parts.next()?)?;
    if authority >= 1 << 48 {
        return None;
    }
    let subs: Vec<u32> = parts
        .map(|p| number(p).and_then(|n| u32::try_from(n).ok()))
        .collect::<Option<_>>()?;
    if subs.len() > 15 {
        return None;
    }
    let mut out = vec![1, subs.len() as u8];
    out.extend_from_slice(&authority.to_be_bytes()[2..]);
    for sub in subs {
        out.extend_from_slice(&sub.to_le_bytes());
    }
    Some(out)
}

/// A binary value as a filter assertion value: every byte as `\xx` (RFC 4515).
pub fn escape_binary(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 3), |mut s, b| {
            let _ = write!(s, "\\{b:02x}");
            s
        })
}

/// A text value as a filter assertion value (RFC 4515: `* ( ) \ NUL` escaped).
pub fn escape_text(value: &str) -> String {
    ldap3::ldap_escape(value).into_owned()
}

/// Values of `attr` (case-insensitive name), as bytes. ldap3 puts an attribute in its text
/// map when all its values happen to be valid UTF-8, so a binary attribute is read from both.
pub fn binary_values(entry: &SearchEntry, attr: &str) -> Vec<Vec<u8>> {
    if let Some((_, v)) = entry
        .bin_attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
    {
        return v.clone();
    }
    text_values(entry, attr)
        .into_iter()
        .map(String::into_bytes)
        .collect()
}

pub fn first_binary(entry: &SearchEntry, attr: &str) -> Option<Vec<u8>> {
    binary_values(entry, attr).into_iter().next()
}

/// Values of a text attribute (case-insensitive name).
pub fn text_values(entry: &SearchEntry, attr: &str) -> Vec<String> {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

pub fn first_text(entry: &SearchEntry, attr: &str) -> Option<String> {
    text_values(entry, attr).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_text_uses_ad_byte_order() {
        let bytes = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        assert_eq!(
            guid_text(&bytes).as_deref(),
            Some("00112233-4455-6677-8899-aabbccddeeff")
        );
        assert_eq!(
            guid_bytes("00112233-4455-6677-8899-AABBCCDDEEFF"),
            Some(bytes)
        );
        assert_eq!(guid_text(&bytes[..15]), None);
    }

    #[test]
    fn sid_round_trips_between_binary_and_text() {
        let text = "S-1-5-21-918875236-3096034218-2029155553-1104";
        let bytes = sid_bytes(text).unwrap();
        assert_eq!(bytes.len(), 8 + 4 * 5);
        assert_eq!(&bytes[..8], &[1, 5, 0, 0, 0, 0, 0, 5]);
        assert_eq!(sid_text(&bytes).as_deref(), Some(text));
        assert_eq!(sid_text(&bytes[..bytes.len() - 1]), None);
        assert_eq!(sid_bytes("S-1-5-x"), None);
        assert_eq!(sid_bytes("not a sid"), None);
    }

    #[test]
    fn both_sid_decoders_agree_on_what_a_sid_is() {
        // Found by the `ad_values` fuzz target: `sid_text` read any revision and up to 255
        // sub-authorities, which `acl::Sid` (and AD) refuse, and `sid_bytes` took `+5`.
        let mut bytes = sid_bytes("S-1-5-21-1-2-3-1104").unwrap();
        bytes[0] = 255;
        assert_eq!(sid_text(&bytes), None);
        let sixteen = [vec![1u8, 16, 0, 0, 0, 0, 0, 5], vec![0u8; 64]].concat();
        assert_eq!(sid_text(&sixteen), None);
        for text in [
            "S-2-5-21",
            "S-1-+5-21",
            "S-1-5-+21",
            "S-1-5- 21",
            "S-1-5-4294967296",
        ] {
            assert_eq!(sid_bytes(text), None, "{text}");
        }
        let ok = "S-1-5-32-544";
        assert_eq!(sid_text(&sid_bytes(ok).unwrap()).as_deref(), Some(ok));
    }

    #[test]
    fn filter_values_are_escaped() {
        assert_eq!(escape_binary(&[0x00, 0x2a, 0xff]), "\\00\\2a\\ff");
        assert_eq!(escape_text("a*(b)\\c"), "a\\2a\\28b\\29\\5cc");
    }
}
