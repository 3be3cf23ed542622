// The LDAP value decoders (`wb_ad::values`, `wb_ad::acl`): objectGUID and objectSid bytes ⇄
// text, and `nTSecurityDescriptor` bytes → `SecurityDescriptor` → bytes. Never a panic, and
// - a GUID or SID decoded to text encodes back to the same bytes;
// - a SID text that encodes decodes to a text that encodes to the same bytes;
// - both SID decoders (`values::sid_text`, `acl::Sid::from_bytes`) accept the same values
//   and give the same text;
// - a parsed security descriptor serialises to bytes that parse to the same descriptor.
//
// Input: the first byte picks the decoder, the rest is the value.
//
// Shared by the fuzz target `fuzz/fuzz_targets/ad_values.rs` and the test that runs the seed
// corpus `fuzz/corpus/ad_values/` in the normal test suite (`include!`d there).
use wb_ad::acl::{SecurityDescriptor, Sid};
use wb_ad::values;

/// Checks one input; panics on a property that does not hold.
pub fn check(data: &[u8]) {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 4 {
        0 => {
            if let Some(text) = values::guid_text(bytes) {
                assert_eq!(values::guid_bytes(&text).map(Vec::from), Some(bytes.to_vec()), "{text}");
            }
            if let Ok(text) = std::str::from_utf8(bytes) {
                if let Some(b) = values::guid_bytes(text) {
                    assert!(values::guid_text(&b).is_some());
                }
            }
        }
        1 => {
            let text = values::sid_text(bytes);
            let typed = Sid::from_bytes(bytes).ok();
            assert_eq!(text, typed.as_ref().map(Sid::to_string), "two SID decoders disagree");
            if let Some(text) = text {
                assert_eq!(values::sid_bytes(&text).as_deref(), Some(bytes), "{text}");
                assert_eq!(text.parse::<Sid>().ok(), typed);
            }
            let _ = values::escape_binary(bytes);
        }
        2 => {
            let Ok(text) = std::str::from_utf8(bytes) else {
                return;
            };
            let _ = values::escape_text(text);
            if let Some(b) = values::sid_bytes(text) {
                let again = values::sid_text(&b).expect("an encoded SID decodes");
                assert_eq!(values::sid_bytes(&again), Some(b), "{text:?} → {again}");
            }
        }
        _ => {
            if let Ok(sd) = SecurityDescriptor::parse(bytes) {
                let out = sd.to_bytes();
                let again = SecurityDescriptor::parse(&out).expect("serialised descriptor parses");
                assert_eq!(again, sd);
                assert_eq!(again.to_bytes(), out);
            }
        }
    }
}

