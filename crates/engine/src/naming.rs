//! Names in AD: the CN of a written-back group, RFC 4514 escaping of RDN values,
//! sAMAccountName, and DN comparison the way AD compares DNs (case-insensitive).

use crate::config::Naming;
use std::borrow::Cow;
use std::fmt::Write as _;
use std::rc::Rc;
use wb_model::{anchor_value, CloudGroup};

/// AD's `cn` is at most 64 UTF-16 code units (AD counts lengths in UTF-16: an emoji or a
/// CJK Extension B character is two).
pub const CN_MAX_UNITS: usize = 64;
/// sAMAccountName length used by writeback, in UTF-16 units.
pub const SAM_MAX_UNITS: usize = 64;
/// Microsoft's `Left(Trim(displayName), 51)`, counted as AD counts: in UTF-16 units.
const CN_NAME_UNITS: usize = 51;
const CN_ID_CHARS: usize = 12;
/// Parts of the object id (dashes dropped) the sAMAccountName candidates add, in order.
const CANDIDATE_ID_CHARS: [usize; 3] = [8, 12, 32];
/// Candidates with a counter after the id parts (`<name>_<8 of id>_2` ...).
const CANDIDATE_COUNTERS: std::ops::RangeInclusive<u32> = 2..=6;

/// Characters RFC 4514 escapes anywhere in a value (`=` too, as AD does).
const RDN_SPECIALS: [char; 8] = [',', '+', '"', '\\', '<', '>', ';', '='];
/// Characters a raw (unescaped) value may not contain.
const RDN_FORBIDDEN_RAW: [char; 7] = [',', '+', '"', ';', '<', '>', '\0'];
/// The only character RFC 4514 lets a DN carry, unescaped, around its separators and at the
/// ends of its values: U+0020. Other spaces (no-break, ideographic, ...) are part of values.
const SPACE: char = ' ';
/// Characters AD refuses in sAMAccountName (SPEC §4); `is_sam_forbidden` is the same list
/// as a match (checked by a test).
#[cfg(test)]
const SAM_FORBIDDEN: [char; 16] = [
    '"', '/', '\\', '[', ']', ':', ';', '|', '=', ',', '+', '*', '?', '<', '>', '@',
];

/// Characters never put in a CN or a sAMAccountName: control characters (C0, DEL, C1),
/// which AD refuses in sAMAccountName and which no admin can type, and the bidi
/// overrides and isolates (U+202A–U+202E, U+2066–U+2069), which make a name display as
/// another one.
pub fn is_stripped_from_names(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The longest prefix of `s` that is at most `max` UTF-16 code units: never splits a
/// surrogate pair (characters are kept or dropped whole).
pub fn left_utf16(s: &str, max: usize) -> &str {
    // A character takes at least as many UTF-8 bytes as UTF-16 units.
    if s.len() <= max {
        return s;
    }
    if s.is_ascii() {
        return &s[..max];
    }
    let mut units = 0;
    for (i, c) in s.char_indices() {
        units += c.len_utf16();
        if units > max {
            return &s[..i];
        }
    }
    s
}

/// `s` without the characters [`is_stripped_from_names`] refuses.
fn strip_for_names(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_stripped_from_names) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.chars().filter(|c| !is_stripped_from_names(*c)).collect())
}

/// The CN (unescaped) of the AD group for `group` in the given naming mode: at most 64
/// UTF-16 units, no control or bidi characters. In display-name mode:
/// `Left(Trim(displayName), 51) + "_" + last 12 of the id`, the name cleaned of control
/// and bidi characters first; a name with nothing left gives `Group_<objectId>`.
pub fn cn(group: &CloudGroup, naming: Naming) -> String {
    let cn = match naming {
        Naming::ObjectId => anchor_value(&group.id),
        Naming::DisplayName => {
            let clean = strip_for_names(group.name());
            let name = left_utf16(clean.trim(), CN_NAME_UNITS);
            if name.is_empty() {
                anchor_value(&group.id)
            } else {
                // The last 12 characters of the id (all of it when shorter).
                let start = group
                    .id
                    .char_indices()
                    .rev()
                    .nth(CN_ID_CHARS - 1)
                    .map_or(0, |(i, _)| i);
                let tail = &group.id[start..];
                let mut cn = String::with_capacity(name.len() + 1 + tail.len());
                cn.push_str(name);
                cn.push('_');
                cn.push_str(tail);
                cn
            }
        }
    };
    // Only a group id that is not a GUID (refused by `decide`) can bring these here.
    match strip_for_names(&cn) {
        Cow::Borrowed(clean) if left_utf16(clean, CN_MAX_UNITS).len() == cn.len() => cn,
        clean => left_utf16(&clean, CN_MAX_UNITS).to_string(),
    }
}

/// Escapes an attribute value for use in an RDN (RFC 4514 §2.4): `, + " \ < > ; =` with a
/// backslash, a leading `#` or space and a trailing space with a backslash, NUL and other
/// control characters as `\XX` hex pairs of their UTF-8 bytes.
pub fn escape_rdn_value(value: &str) -> String {
    let last = value.chars().count().saturating_sub(1);
    let mut out = String::with_capacity(value.len() + 4);
    for (i, c) in value.chars().enumerate() {
        let edge = (i == 0 && (c == ' ' || c == '#')) || (i == last && c == ' ');
        if edge || RDN_SPECIALS.contains(&c) {
            out.push('\\');
            out.push(c);
        } else if c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Reverses [`escape_rdn_value`], accepting any RFC 4514 escaping (`\,` or `\2C`).
/// `None` when the text is not a valid escaped value: a dangling or unknown escape,
/// hex pairs that are not UTF-8, an unescaped special, or a leading unescaped `#`.
pub fn unescape_rdn_value(value: &str) -> Option<String> {
    decode_value(value).map(|chars| chars.into_iter().map(|(c, _)| c).collect())
}

/// `CN=` + the escaped value.
pub fn rdn(cn: &str) -> String {
    format!("CN={}", escape_rdn_value(cn))
}

/// sAMAccountName for a CN: forbidden characters become `_`, control and bidi characters
/// are dropped, at most 64 UTF-16 units, no trailing dot or space (AD refuses a trailing
/// dot).
pub fn sam_account_name(cn: &str) -> String {
    // Most names need neither: no copy to filter (candidates are built from clean names).
    if is_clean_sam(cn) {
        return cn.to_string();
    }
    if !cn
        .chars()
        .any(|c| is_sam_forbidden(c) || is_stripped_from_names(c))
    {
        return left_utf16(cn, SAM_MAX_UNITS)
            .trim_end_matches(['.', ' '])
            .to_string();
    }
    let replaced: String = cn
        .chars()
        .filter(|c| !is_stripped_from_names(*c))
        .map(|c| if is_sam_forbidden(c) { '_' } else { c })
        .collect();
    left_utf16(&replaced, SAM_MAX_UNITS)
        .trim_end_matches(['.', ' '])
        .to_string()
}

/// The characters of [`SAM_FORBIDDEN`], as a match.
fn is_sam_forbidden(c: char) -> bool {
    matches!(
        c,
        '"' | '/'
            | '\\'
            | '['
            | ']'
            | ':'
            | ';'
            | '|'
            | '='
            | ','
            | '+'
            | '*'
            | '?'
            | '<'
            | '>'
            | '@'
    )
}

/// The sAMAccountNames to try for a new group, in order: the default (from the CN), then
/// the name shortened to make room for `_` + 8, 12 and 32 characters of the object id
/// (dashes dropped), then `_` + 8 of the id + `_2` ... `_6`. All distinct (as AD compares
/// them, case-insensitively), each at most 64 UTF-16 units; the exporter tries the next
/// when AD says one is taken, and reports only when all are.
pub fn sam_account_name_candidates(cn: &str, id: &str) -> Vec<String> {
    let id_part: String = sam_account_name(id).chars().filter(|c| *c != '-').collect();
    let short = left_utf16(&id_part, CANDIDATE_ID_CHARS[0]);
    let base = sam_account_name(cn);
    let mut out: Vec<String> = Vec::with_capacity(1 + CANDIDATE_ID_CHARS.len() + 5);
    let add = |out: &mut Vec<String>, suffix: &str| {
        let room = SAM_MAX_UNITS.saturating_sub(1 + suffix.encode_utf16().count());
        let name = left_utf16(&base, room).trim_end_matches(['.', ' ']);
        let mut candidate = String::with_capacity(name.len() + 1 + suffix.len());
        candidate.push_str(name);
        candidate.push('_');
        candidate.push_str(suffix);
        // `name` is part of a clean name: the candidate is clean when the suffix is (it is
        // short) and the whole is short enough — almost always; else it is cleaned.
        if !(is_clean_sam(suffix) && candidate.len() <= SAM_MAX_UNITS) {
            candidate = sam_account_name(&candidate);
        }
        if !candidate.is_empty() && !out.iter().any(|c| same_ignoring_case(c, &candidate)) {
            out.push(candidate);
        }
    };
    out.push(base.clone());
    for n in CANDIDATE_ID_CHARS {
        add(&mut out, left_utf16(&id_part, n));
    }
    for n in CANDIDATE_COUNTERS {
        let mut suffix = String::with_capacity(short.len() + 3);
        suffix.push_str(short);
        suffix.push('_');
        match char::from_digit(n, 10) {
            Some(digit) => suffix.push(digit),
            None => {
                let _ = write!(suffix, "{n}");
            }
        }
        add(&mut out, &suffix);
    }
    out
}

/// The sAMAccountNames to try after `chosen` when AD says it is taken: the candidates of
/// [`sam_account_name_candidates`] that follow it (none when it is not one of them). A plan
/// names the candidate it chose; the exporter derives the rest with this, so that a plan of
/// 100,000 creates does not carry 800,000 names it almost never needs.
pub fn sam_account_name_fallbacks(cn: &str, id: &str, chosen: &str) -> Vec<String> {
    let mut candidates = sam_account_name_candidates(cn, id);
    match candidates
        .iter()
        .position(|c| same_ignoring_case(c, chosen))
    {
        Some(at) => candidates.split_off(at + 1),
        None => Vec::new(),
    }
}

/// Whether `s` is its own [`sam_account_name`].
fn is_clean_sam(s: &str) -> bool {
    let clean_chars = if s.is_ascii() {
        !s.bytes()
            .any(|b| b < 0x20 || b == 0x7f || is_sam_forbidden(char::from(b)))
    } else {
        !s.chars()
            .any(|c| is_sam_forbidden(c) || is_stripped_from_names(c))
    };
    clean_chars
        && (s.len() <= SAM_MAX_UNITS || s.encode_utf16().count() <= SAM_MAX_UNITS)
        && !s.ends_with(['.', ' '])
}

/// Whether two names are equal lower-cased (as AD compares sAMAccountNames).
fn same_ignoring_case(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        // From the end: candidates differ in their suffixes.
        a.len() == b.len()
            && a.bytes()
                .rev()
                .zip(b.bytes().rev())
                .all(|(x, y)| x.eq_ignore_ascii_case(&y))
    } else {
        a.to_lowercase() == b.to_lowercase()
    }
}

/// The first fallback sAMAccountName: the name + `_` + the first 8 characters of the object
/// id (the second of [`sam_account_name_candidates`]).
pub fn sam_account_name_fallback(cn: &str, id: &str) -> String {
    sam_account_name_candidates(cn, id)
        .into_iter()
        .nth(1)
        .unwrap_or_default()
}

/// Whether two DNs name the same object: attribute types and values compared
/// case-insensitively, escaping normalised (`\,` = `\2C`), spaces around separators ignored.
pub fn dn_eq(a: &str, b: &str) -> bool {
    dn_key(a) == dn_key(b)
}

/// A canonical form of a DN, equal for DNs that [`dn_eq`] finds equal; for use as a map key.
pub fn dn_key(dn: &str) -> String {
    plain_dn_key(dn).unwrap_or_else(|| parsed_dn_key(dn))
}

/// A DN's [`dn_key`], and whether it is the plain form (see [`is_under_keyed`]): computed
/// once per DN by planners that compare the same DNs many times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DnKey {
    /// Shared by the planner's maps that hold it.
    pub key: Rc<str>,
    plain: bool,
}

impl DnKey {
    pub fn of(dn: &str) -> Self {
        match plain_dn_key(dn) {
            Some(key) => DnKey {
                key: key.into(),
                plain: true,
            },
            None => DnKey {
                key: parsed_dn_key(dn).into(),
                plain: false,
            },
        }
    }
}

/// [`is_under`] with both keys known: no key is computed again for plain DNs.
pub(crate) fn is_under_keyed(dn: &str, d: &DnKey, ou: &str, o: &DnKey) -> bool {
    if d.plain && o.plain {
        let (d, o) = (&d.key, &o.key);
        return !o.is_empty()
            && d.len() > o.len()
            && d.ends_with(&**o)
            && d.as_bytes()[d.len() - o.len() - 1] == b',';
    }
    is_under(dn, ou)
}

/// The key of a DN without escapes, multi-valued RDNs or characters that need escaping:
/// the common case, computed without building the parsed form (plans compare many DNs).
fn plain_dn_key(dn: &str) -> Option<String> {
    let ascii = dn.is_ascii();
    let plain = if ascii {
        !dn.bytes().any(|b| needs_parsing(char::from(b)))
    } else {
        !dn.chars().any(needs_parsing)
    };
    if !plain {
        return None;
    }
    if ascii && is_tight_ascii_dn(dn.as_bytes()) {
        return Some(dn.to_ascii_lowercase());
    }
    let mut key = String::with_capacity(dn.len());
    for (i, rdn) in dn.trim_matches(SPACE).split(',').enumerate() {
        let (t, v) = rdn.split_once('=')?;
        let (t, v) = (t.trim_matches(SPACE), v.trim_matches(' '));
        // Numeric types (`2.5.4.3`, `OID.2.5.4.3`) and anything odd: the parsed form.
        if v.contains('=')
            || !t.starts_with(|c: char| c.is_ascii_alphabetic())
            || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return None;
        }
        if i > 0 {
            key.push(',');
        }
        // Lower case without a copy per part: `t` is ASCII (checked above).
        key.extend(t.bytes().map(|b| char::from(b.to_ascii_lowercase())));
        key.push('=');
        if ascii {
            key.extend(v.bytes().map(|b| char::from(b.to_ascii_lowercase())));
        } else {
            key.push_str(&v.to_lowercase());
        }
    }
    Some(key)
}

/// A character a DN's key is not computed for without parsing the DN.
fn needs_parsing(c: char) -> bool {
    matches!(c, '\\' | '+' | '"' | ';' | '<' | '>' | '#') || c.is_control()
}

/// Whether the [`dn_key`] of `dn` is `dn` in ASCII lower case (the common case: an ASCII
/// DN without escapes, multi-valued RDNs or spaces next to a separator), found by one pass
/// over the DN and without computing the key.
pub(crate) fn is_lower_case_keyed(dn: &str) -> bool {
    dn.is_ascii()
        && !dn.bytes().any(|b| needs_parsing(char::from(b)))
        && is_tight_ascii_dn(dn.as_bytes())
}

/// The ASCII letters and digits, in lower case, of the value of a DN's first RDN, read
/// from the DN's text (see [`first_value_alnum_parsed`]). `None` when they are not read
/// that way: a DN that is not ASCII, or whose first RDN has a hex escape or several values.
pub(crate) fn first_value_alnum(dn: &str) -> Option<String> {
    if !dn.is_ascii() {
        return None;
    }
    let (_, rest) = dn.split_once('=')?;
    let mut out = String::new();
    let mut bytes = rest.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'\\' => match bytes.next() {
                Some(e) if e.is_ascii_hexdigit() => return None,
                // An escaped special, space or `#`: not a letter or digit.
                Some(_) => {}
                None => break,
            },
            b',' => break,
            b'+' => return None,
            _ if b.is_ascii_alphanumeric() => out.push(char::from(b.to_ascii_lowercase())),
            _ => {}
        }
    }
    Some(out)
}

/// The ASCII letters and digits of the value of a DN's first RDN as [`dn_key`] reads it
/// (unescaped, in lower case). Two DNs with the same key have the same; and for a DN
/// [`first_value_alnum`] reads, it gives the same: so a DN whose [`first_value_alnum`]
/// differs from another DN's [`first_value_alnum_parsed`] has another key, found without
/// computing it. `None` for a DN that does not parse or whose first RDN has several values.
pub(crate) fn first_value_alnum_parsed(dn: &str) -> Option<String> {
    let rdns = parse_dn(dn)?;
    match rdns.first().map(Vec::as_slice) {
        Some([(_, value)]) => Some(value.chars().filter(char::is_ascii_alphanumeric).collect()),
        _ => None,
    }
}

/// Whether an ASCII DN (without the characters that need parsing) is `type=value` RDNs with
/// alphanumeric types starting with a letter, one `=` each, and no space next to a
/// separator or at the ends: its key is then the DN in lower case.
fn is_tight_ascii_dn(b: &[u8]) -> bool {
    if b.first().is_none_or(|c| *c == b' ') || b.last().is_none_or(|c| *c == b' ') {
        return false;
    }
    let spaced = |i: usize| b[i - 1] == b' ' || b.get(i + 1) == Some(&b' ');
    let (mut in_type, mut type_start) = (true, true);
    for (i, &c) in b.iter().enumerate() {
        match c {
            b',' => {
                if in_type || spaced(i) {
                    return false;
                }
                (in_type, type_start) = (true, true);
            }
            b'=' => {
                if !in_type || type_start || spaced(i) {
                    return false;
                }
                in_type = false;
            }
            _ if in_type => {
                let ok = if type_start {
                    c.is_ascii_alphabetic()
                } else {
                    c.is_ascii_alphanumeric() || c == b'-'
                };
                if !ok {
                    return false;
                }
                type_start = false;
            }
            _ => {}
        }
    }
    !in_type
}

fn parsed_dn_key(dn: &str) -> String {
    match parse_dn(dn) {
        Some(rdns) => rdns
            .iter()
            .map(|avas| {
                avas.iter()
                    .map(|(t, v)| format!("{t}={}", escape_rdn_value(v)))
                    .collect::<Vec<_>>()
                    .join("+")
            })
            .collect::<Vec<_>>()
            .join(","),
        None => dn.trim_matches(SPACE).to_lowercase(),
    }
}

/// Whether `dn` lies below `ou` (at any depth; `ou` itself is not below itself). RDN by
/// RDN, as [`dn_eq`] compares: `OU=Evil\,OU=Managed,DC=lab` is one RDN whose value holds a
/// comma, so it is *not* below `OU=Managed,DC=lab`. A DN that does not parse is below
/// nothing (fail closed: ownership and scope depend on this answer).
pub fn is_under(dn: &str, ou: &str) -> bool {
    // Plain DNs (the common case): their keys are their RDNs joined by commas that occur
    // nowhere else, so "below" is "the key ends with a comma and the OU's key".
    if let (Some(d), Some(o)) = (plain_dn_key(dn), plain_dn_key(ou)) {
        return !o.is_empty()
            && d.len() > o.len()
            && d.ends_with(&o)
            && d.as_bytes()[d.len() - o.len() - 1] == b',';
    }
    match (parse_dn(dn), parse_dn(ou)) {
        (Some(d), Some(o)) => !o.is_empty() && d.len() > o.len() && d[d.len() - o.len()..] == o[..],
        _ => false,
    }
}

/// Whether `dn` is `base` itself or lies below it (see [`is_under`]).
pub fn is_at_or_under(dn: &str, base: &str) -> bool {
    dn_eq(dn, base) || is_under(dn, base)
}

/// Whether `dn` is a distinguished name RFC 4514 can read: at least one RDN, each
/// `type=value` (several joined by `+`), values correctly escaped.
pub fn is_valid_dn(dn: &str) -> bool {
    parse_dn(dn).is_some_and(|rdns| !rdns.is_empty())
}

/// The first RDN and the parent DN, split at the first unescaped comma.
pub fn split_dn(dn: &str) -> Option<(&str, &str)> {
    let dn = trim_spaces(dn);
    let parts = split_unescaped(dn, ',');
    let first = parts.first()?;
    let parent = dn.get(first.len() + 1..)?;
    Some((trim_spaces(first), trim_spaces(parent)))
}

/// The unescaped CN of a DN whose first RDN is `CN=...`.
pub fn cn_of_dn(dn: &str) -> Option<String> {
    // Without escapes in the first RDN (the common case), its value is its text: no
    // parsing, one copy.
    if let Some(first) = dn.split(',').next().filter(|f| !f.contains('\\')) {
        if let Some((t, v)) = first.trim_matches(SPACE).split_once('=') {
            let v = v.trim_matches(SPACE);
            if !v.contains(RDN_FORBIDDEN_RAW) && !v.starts_with('#') {
                return t
                    .trim_matches(SPACE)
                    .eq_ignore_ascii_case("cn")
                    .then(|| v.to_string());
            }
        }
    }
    cn_of_dn_parsed(dn)
}

/// [`cn_of_dn`] by the parsed first RDN.
fn cn_of_dn_parsed(dn: &str) -> Option<String> {
    let (first, _) = split_dn(dn).or(Some((trim_spaces(dn), "")))?;
    let (t, v) = first.split_once('=')?;
    if !t.trim_matches(SPACE).eq_ignore_ascii_case("cn") {
        return None;
    }
    value_text(v)
}

/// RDNs of a DN, each a sorted list of (lower-case type, lower-case unescaped value).
fn parse_dn(dn: &str) -> Option<Vec<Vec<(String, String)>>> {
    let dn = trim_spaces(dn);
    if dn.is_empty() {
        return Some(Vec::new());
    }
    split_unescaped(dn, ',')
        .into_iter()
        .map(|rdn| {
            let mut avas = split_unescaped(rdn, '+')
                .into_iter()
                .map(|ava| {
                    let (t, v) = ava.split_once('=')?;
                    let t = attribute_type_key(t)?;
                    Some((t, value_text(v)?.to_lowercase()))
                })
                .collect::<Option<Vec<_>>>()?;
            avas.sort();
            Some(avas)
        })
        .collect()
}

/// An attribute type as [`dn_key`] compares it: lower case, and the numeric form (`2.5.4.3`,
/// `OID.2.5.4.3`) of the types AD puts in DNs replaced by their names (RFC 4514 §3).
fn attribute_type_key(t: &str) -> Option<String> {
    let t = t.trim_matches(SPACE).to_ascii_lowercase();
    let oid = t.strip_prefix("oid.").unwrap_or(&t);
    let named = match oid {
        "2.5.4.3" => "cn",
        "2.5.4.11" => "ou",
        "2.5.4.10" => "o",
        "2.5.4.6" => "c",
        "2.5.4.7" => "l",
        "2.5.4.8" => "st",
        "2.5.4.9" => "street",
        "0.9.2342.19200300.100.1.25" => "dc",
        "0.9.2342.19200300.100.1.1" => "uid",
        _ => oid,
    };
    let well_formed = match named.chars().next() {
        Some(c) if c.is_ascii_alphabetic() => {
            named.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        }
        Some(c) if c.is_ascii_digit() => named
            .split('.')
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        _ => false,
    };
    well_formed.then(|| named.to_string())
}

/// An RDN value as it appears in a DN, unescaped, unescaped spaces around it dropped.
fn value_text(raw: &str) -> Option<String> {
    let mut chars = decode_value(raw.trim_start_matches(' '))?;
    while chars.last() == Some(&(' ', false)) {
        chars.pop();
    }
    Some(chars.into_iter().map(|(c, _)| c).collect())
}

/// `s` without the U+0020 spaces at its ends, except a last space escaped by a backslash
/// (`CN=x\ ` ends with a space that is part of the value).
fn trim_spaces(s: &str) -> &str {
    let s = s.trim_start_matches(SPACE);
    let bytes = s.as_bytes();
    let mut end = bytes.len();
    while end > 0 && bytes[end - 1] == b' ' {
        let backslashes = bytes[..end - 1]
            .iter()
            .rev()
            .take_while(|b| **b == b'\\')
            .count();
        if backslashes % 2 == 1 {
            break;
        }
        end -= 1;
    }
    &s[..end]
}

/// Splits at `sep` where it is not escaped by a backslash.
fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Decodes an escaped value into characters, each marked whether it was escaped.
fn decode_value(raw: &str) -> Option<Vec<(char, bool)>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes: Vec<u8> = Vec::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let next = chars.next()?;
            if let Some(hi) = next.to_digit(16) {
                let lo = chars.next()?.to_digit(16)?;
                bytes.push(u8::try_from(hi * 16 + lo).ok()?);
                continue;
            }
            flush_bytes(&mut bytes, &mut out)?;
            if RDN_SPECIALS.contains(&next) || next == ' ' || next == '#' {
                out.push((next, true));
            } else {
                return None;
            }
        } else {
            flush_bytes(&mut bytes, &mut out)?;
            if RDN_FORBIDDEN_RAW.contains(&c) {
                return None;
            }
            out.push((c, false));
        }
    }
    flush_bytes(&mut bytes, &mut out)?;
    if out.first() == Some(&('#', false)) {
        return None;
    }
    Some(out)
}

fn flush_bytes(bytes: &mut Vec<u8>, out: &mut Vec<(char, bool)>) -> Option<()> {
    if !bytes.is_empty() {
        let text = String::from_utf8(std::mem::take(bytes)).ok()?;
        out.extend(text.chars().map(|c| (c, true)));
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn plain_dn_key_agrees_with_the_parsed_key(dn in "[ a-zA-Z=,é0-9#+\\\\]{0,40}") {
            if let Some(plain) = plain_dn_key(&dn) {
                prop_assert_eq!(plain, parsed_dn_key(&dn));
            }
        }
    }

    /// A DN spelled several ways: case, spaces around separators, escapes as `\,` or hex.
    fn spelled(values: &[String], how: u8) -> String {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut e = escape_rdn_value(v);
                if how & 1 == 1 {
                    e = e.replace("\\,", "\\2C");
                }
                if how & 2 == 2 {
                    e = e.to_uppercase();
                }
                let sep = if how & 4 == 4 { " , " } else { "," };
                format!(
                    "{}{}={e}",
                    if i == 0 { "" } else { sep },
                    if i % 2 == 0 { "CN" } else { "ou" }
                )
            })
            .collect()
    }

    proptest! {
        /// What a member delta relies on to look DNs up without computing their keys: the
        /// key of a lower-case-keyed DN is its lower case, and DNs of one key read the same
        /// letters and digits in their first value.
        #[test]
        fn dns_are_compared_without_their_keys_as_with_them(
            values in proptest::collection::vec("[ a-zA-Z0-9,+=\\\\\"#<>;éK\u{212A}]{1,8}", 1..4),
            how_a in any::<u8>(),
            how_b in any::<u8>(),
            raw in "[ a-zA-Z=,é0-9#+\\\\]{0,40}",
        ) {
            let (a, b) = (spelled(&values, how_a), spelled(&values, how_b));
            prop_assert_eq!(dn_key(&a), dn_key(&b));
            for dn in [&a, &b, &raw] {
                if is_lower_case_keyed(dn) {
                    prop_assert_eq!(dn_key(dn), dn.to_ascii_lowercase());
                }
            }
            if let (Some(x), Some(y)) = (first_value_alnum(&a), first_value_alnum_parsed(&dn_key(&b))) {
                prop_assert_eq!(x, y, "{} / {}", a, b);
            }
            if let (Some(x), Some(y)) = (first_value_alnum(&raw), first_value_alnum_parsed(&dn_key(&raw))) {
                prop_assert_eq!(x, y, "{}", raw);
            }
        }
    }

    proptest! {
        #[test]
        fn the_cn_of_a_dn_is_that_of_its_parsed_first_rdn(
            dn in "[ cCnNoOuU=,a-z#+\"\\\\;<>é\u{0}]{0,24}",
        ) {
            prop_assert_eq!(cn_of_dn(&dn), cn_of_dn_parsed(&dn), "{:?}", dn);
        }
    }

    proptest! {
        #[test]
        fn keys_of_well_formed_dns_agree_with_the_parsed_key(
            rdns in proptest::collection::vec("[ ]?[a-zA-Z0-9][a-zA-Z0-9-]{0,3}[ ]?=[ ]?[ a-zA-Z0-9é-]{0,6}", 1..5),
        ) {
            let dn = rdns.join(",");
            if let Some(plain) = plain_dn_key(&dn) {
                prop_assert_eq!(plain, parsed_dn_key(&dn), "{}", dn);
            }
        }
    }

    fn parsed_is_under(dn: &str, ou: &str) -> bool {
        match (parse_dn(dn), parse_dn(ou)) {
            (Some(d), Some(o)) => {
                !o.is_empty() && d.len() > o.len() && d[d.len() - o.len()..] == o[..]
            }
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn is_under_of_plain_dns_agrees_with_the_parsed_comparison(
            rdns in proptest::collection::vec("[ a-zA-Z]{1,3}=[ a-zA-Zé0-9]{1,4}", 1..5),
            cut in 0usize..5,
            case in any::<bool>(),
        ) {
            let dn = rdns.join(",");
            let ou = rdns[cut.min(rdns.len() - 1)..].join(",");
            let ou = if case { ou.to_uppercase() } else { ou };
            if plain_dn_key(&dn).is_some() && plain_dn_key(&ou).is_some() {
                prop_assert_eq!(is_under(&dn, &ou), parsed_is_under(&dn, &ou), "{} under {}", dn, ou);
                prop_assert_eq!(is_under(&ou, &dn), parsed_is_under(&ou, &dn), "{} under {}", ou, dn);
            }
        }
    }

    proptest! {
        #[test]
        fn is_under_with_known_keys_agrees_with_is_under(
            dn in "[ a-zA-Z=,é0-9#+\\\\]{0,30}",
            ou in "[ a-zA-Z=,é0-9#+\\\\]{0,20}",
        ) {
            let dn = format!("{dn},{ou}");
            let (d, o) = (DnKey::of(&dn), DnKey::of(&ou));
            prop_assert_eq!(d.key.to_string(), dn_key(&dn));
            prop_assert_eq!(is_under_keyed(&dn, &d, &ou, &o), is_under(&dn, &ou));
        }
    }

    /// The candidates as first written (one copy per step): what the faster version must
    /// still give.
    fn sam_account_name_candidates_reference(cn: &str, id: &str) -> Vec<String> {
        let id_part: String = sam_account_name(id).chars().filter(|c| *c != '-').collect();
        let mut suffixes: Vec<String> = CANDIDATE_ID_CHARS
            .iter()
            .map(|n| left_utf16(&id_part, *n).to_string())
            .collect();
        let short = left_utf16(&id_part, CANDIDATE_ID_CHARS[0]).to_string();
        suffixes.extend(CANDIDATE_COUNTERS.map(|n| format!("{short}_{n}")));
        let base = sam_account_name(cn);
        let mut lower = vec![base.to_lowercase()];
        let mut out = vec![base.clone()];
        for suffix in suffixes {
            let room = SAM_MAX_UNITS.saturating_sub(1 + suffix.encode_utf16().count());
            let name = left_utf16(&base, room).trim_end_matches(['.', ' ']);
            let candidate = sam_account_name(&format!("{name}_{suffix}"));
            let candidate_lower = candidate.to_lowercase();
            if !candidate.is_empty() && !lower.contains(&candidate_lower) {
                out.push(candidate);
                lower.push(candidate_lower);
            }
        }
        out
    }

    #[test]
    fn the_forbidden_sam_characters_are_those_of_the_list() {
        for c in (0..0x80u8).map(char::from) {
            assert_eq!(is_sam_forbidden(c), SAM_FORBIDDEN.contains(&c), "{c:?}");
        }
    }

    proptest! {
        #[test]
        fn sam_account_name_candidates_are_those_of_the_reference(
            cn in "[ -~éÉßİı\u{1}\u{202E}\u{1F600}]{0,70}",
            id in "[0-9a-fA-F\\-.İ ]{0,40}",
        ) {
            prop_assert_eq!(
                sam_account_name_candidates(&cn, &id),
                sam_account_name_candidates_reference(&cn, &id)
            );
        }

        #[test]
        fn the_fallbacks_of_a_candidate_are_the_candidates_after_it(
            cn in "[ -~éÉßİı\u{1F600}]{0,70}",
            id in "[0-9a-f\\-]{0,40}",
            pick in 0usize..9,
        ) {
            let candidates = sam_account_name_candidates(&cn, &id);
            let at = pick % candidates.len();
            prop_assert_eq!(
                sam_account_name_fallbacks(&cn, &id, &candidates[at].to_ascii_uppercase()),
                candidates[at + 1..].to_vec()
            );
            let none = sam_account_name_fallbacks(&cn, &id, "\u{0}not a candidate");
            prop_assert!(none.is_empty(), "{:?}", none);
        }
    }

    #[test]
    fn unicode_spaces_at_the_ends_of_dn_values_are_part_of_the_values() {
        // Found by the `dn` fuzz target: DNs were trimmed of every Unicode space, so a CN
        // ending in U+3000 lost it, and "OU=a<NBSP>" named the same OU as "OU=a".
        let v = "\u{a0}Team Finance\u{3000}";
        let dn = format!("{},OU=Groups,DC=lab", rdn(v));
        assert_eq!(cn_of_dn(&dn).as_deref(), Some(v));
        assert!(!dn_eq("OU=a\u{a0},DC=lab", "OU=a,DC=lab"));
        assert!(!dn_eq("CN=x,OU=a\u{2003}", "CN=x,OU=a"));
        assert!(is_under(&dn, "OU=Groups,DC=lab"));
        assert!(!is_under("CN=x,OU=Groups\u{a0},DC=lab", "OU=Groups,DC=lab"));
        // U+0020 around separators and at the ends stays insignificant, unless escaped.
        assert!(dn_eq(" CN=x , OU=a ,DC=lab ", "CN=x,OU=a,DC=lab"));
        let edge = "  leading and trailing  ";
        assert_eq!(
            cn_of_dn(&format!("{},OU=Groups,DC=lab", rdn(edge))).as_deref(),
            Some(edge)
        );
        assert_eq!(cn_of_dn(r"CN=x\ ").as_deref(), Some("x "));
        assert!(!dn_eq(r"CN=x,OU=a\ ", "CN=x,OU=a"));
    }

    #[test]
    fn plain_dn_key_is_used_for_ordinary_dns_only() {
        assert_eq!(
            plain_dn_key("CN=Team A, OU=Groups,DC=Lab").as_deref(),
            Some("cn=team a,ou=groups,dc=lab")
        );
        assert_eq!(plain_dn_key(r"CN=a\,b,DC=lab"), None);
        assert_eq!(plain_dn_key("CN=a=b,DC=lab"), None);
    }
}
