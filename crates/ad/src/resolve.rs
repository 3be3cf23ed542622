//! Member resolution: finds the AD objects behind cloud members by objectSid, by
//! immutableId (objectGUID or mS-DS-ConsistencyGuid) or by DN, over the whole domain.

use crate::values::{
    binary_values, escape_binary, first_binary, first_text, guid_text, sid_bytes, text_values,
};
use crate::{AdConnector, AdError};
use base64::Engine;
use ldap3::{Scope, SearchEntry};
use std::collections::{BTreeSet, HashMap};
use wb_model::{AdClass, AdObjectRef, Lookup, Resolutions};

/// Assertions per OR filter: keeps filters well under server request-size limits.
const BATCH: usize = 200;
/// objectClass says what the object is: the engine writes a member only as an object of
/// its own kind (a cloud user's SID may name Domain Admins).
const ATTRS: [&str; 5] = [
    "objectGUID",
    "objectSid",
    "mS-DS-ConsistencyGuid",
    "groupType",
    "objectClass",
];

impl AdConnector {
    /// Resolves every lookup; `asked` holds all of them, `found` those that exist. A lookup
    /// whose value cannot be a SID or a 16-byte GUID is simply not found.
    pub async fn resolve(&mut self, lookups: &BTreeSet<Lookup>) -> Result<Resolutions, AdError> {
        let mut out = Resolutions {
            asked: lookups.clone(),
            ..Default::default()
        };
        // Binary value → the lookups it answers (one value may answer a SID and a GUID lookup).
        let mut by_value: HashMap<Vec<u8>, Vec<Lookup>> = HashMap::new();
        let mut assertions = Vec::new();
        for lookup in lookups {
            match lookup {
                Lookup::Sid(sid) => {
                    if let Some(bytes) = sid_bytes(sid) {
                        assertions.push(format!("(objectSid={})", escape_binary(&bytes)));
                        by_value.entry(bytes).or_default().push(lookup.clone());
                    }
                }
                Lookup::ImmutableId(b64) => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b64.trim())
                        .ok();
                    if let Some(bytes) = bytes.filter(|b| b.len() == 16) {
                        let v = escape_binary(&bytes);
                        assertions.push(format!("(objectGUID={v})(mS-DS-ConsistencyGuid={v})"));
                        by_value.entry(bytes).or_default().push(lookup.clone());
                    }
                }
                Lookup::Dn(dn) => {
                    if let Some(entry) = self
                        .base_entry(dn, "(objectClass=*)", &ATTRS, "resolve DN")
                        .await?
                    {
                        if let Some(found) = object_ref(&entry) {
                            out.found.insert(lookup.clone(), found);
                        }
                    }
                }
            }
        }
        let base = self.base_dn.clone();
        for batch in assertions.chunks(BATCH) {
            let filter = format!("(|{})", batch.concat());
            for entry in self
                .paged_search(&base, Scope::Subtree, &filter, &ATTRS, "resolve members")
                .await?
            {
                let Some(found) = object_ref(&entry) else {
                    continue;
                };
                for attr in ["objectSid", "objectGUID", "mS-DS-ConsistencyGuid"] {
                    for value in binary_values(&entry, attr) {
                        for lookup in by_value.get(&value).into_iter().flatten() {
                            let wanted = match lookup {
                                Lookup::Sid(_) => attr == "objectSid",
                                _ => attr != "objectSid",
                            };
                            if wanted {
                                out.found.insert(lookup.clone(), found.clone());
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

pub(crate) fn object_ref(entry: &SearchEntry) -> Option<AdObjectRef> {
    Some(AdObjectRef {
        dn: entry.dn.clone(),
        guid: guid_text(&first_binary(entry, "objectGUID")?)?,
        group_type: first_text(entry, "groupType").and_then(|t| t.parse().ok()),
        class: AdClass::from_object_classes(&text_values(entry, "objectClass")),
    })
}
