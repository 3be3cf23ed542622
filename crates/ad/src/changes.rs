//! Reading what changed in AD since a cycle: the DC's identity and its highest committed
//! USN (rootDSE), every user, computer and group whose `uSNChanged` is above a given USN
//! (one paged search over the domain), and the objects deleted since (Deleted Objects,
//! with the show-deleted control). This is how Microsoft documents polling AD for changes.

use crate::values::{binary_values, first_binary, first_text, guid_text, sid_text};
use crate::{AdConnector, AdError};
use ldap3::controls::{ControlType, PagedResults, RawControl};
use ldap3::{Scope, SearchEntry};
use serde::{Deserialize, Serialize};
use wb_model::AdObjectRef;

/// LDAP_SERVER_SHOW_DELETED_OID: tombstones are returned by searches.
const SHOW_DELETED: &str = "1.2.840.113556.1.4.417";

/// Which DC answered and how far its changes go. Another `service` or `invocation_id`
/// (a failover, a restore from backup) or a lower `highest_usn` (a rollback) means USNs
/// seen before say nothing about this DC: read everything again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DcState {
    pub service: String,
    pub invocation_id: String,
    pub highest_usn: u64,
}

impl DcState {
    /// Whether changes since `earlier` can be read from this DC by USN.
    pub fn continues(&self, earlier: &DcState) -> bool {
        self.service.eq_ignore_ascii_case(&earlier.service)
            && self.invocation_id == earlier.invocation_id
            && self.highest_usn >= earlier.highest_usn
    }
}

/// A user, computer or group changed since the USN asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedObject {
    pub object: AdObjectRef,
    pub sid: Option<String>,
    /// objectGUID and mS-DS-ConsistencyGuid bytes (what onPremisesImmutableId encodes).
    pub immutable_ids: Vec<Vec<u8>>,
    pub usn: u64,
    /// A tombstone: the object was deleted (its DN is in Deleted Objects).
    pub deleted: bool,
}

const CHANGED_ATTRS: [&str; 7] = [
    "objectGUID",
    "objectSid",
    "mS-DS-ConsistencyGuid",
    "groupType",
    "objectClass",
    "uSNChanged",
    "isDeleted",
];

impl AdConnector {
    /// The DC's identity and highest committed USN: one rootDSE read, plus the NTDS
    /// Settings object's invocationId.
    pub async fn dc_state(&mut self) -> Result<DcState, AdError> {
        let root = self
            .base_entry(
                "",
                "(objectClass=*)",
                &["dsServiceName", "highestCommittedUSN"],
                "read rootDSE",
            )
            .await?
            .ok_or_else(|| AdError::Value {
                operation: "read rootDSE".into(),
                dn: String::new(),
                attr: "rootDSE".into(),
                message: "not readable".into(),
            })?;
        let missing = |attr: &str| AdError::Value {
            operation: "read rootDSE".into(),
            dn: String::new(),
            attr: attr.into(),
            message: "absent or not a number".into(),
        };
        let service = first_text(&root, "dsServiceName").ok_or_else(|| missing("dsServiceName"))?;
        let highest_usn = first_text(&root, "highestCommittedUSN")
            .and_then(|u| u.parse().ok())
            .ok_or_else(|| missing("highestCommittedUSN"))?;
        let invocation_id = self
            .base_entry(
                &service,
                "(objectClass=*)",
                &["invocationId"],
                "read the DC's invocationId",
            )
            .await?
            .and_then(|e| first_binary(&e, "invocationId"))
            .and_then(|b| guid_text(&b))
            .unwrap_or_default();
        Ok(DcState {
            service,
            invocation_id,
            highest_usn,
        })
    }

    /// The DC (dsServiceName) and its highest committed USN: one rootDSE read, what a
    /// quiet cycle costs on the AD side.
    pub async fn root_usn(&mut self) -> Result<(String, u64), AdError> {
        let root = self
            .base_entry(
                "",
                "(objectClass=*)",
                &["dsServiceName", "highestCommittedUSN"],
                "read rootDSE",
            )
            .await?;
        let service = root
            .as_ref()
            .and_then(|r| first_text(r, "dsServiceName"))
            .unwrap_or_default();
        let usn = root
            .as_ref()
            .and_then(|r| first_text(r, "highestCommittedUSN"))
            .and_then(|u| u.parse().ok())
            .ok_or_else(|| AdError::Value {
                operation: "read rootDSE".into(),
                dn: String::new(),
                attr: "highestCommittedUSN".into(),
                message: "absent or not a number".into(),
            })?;
        Ok((service, usn))
    }

    /// Every user, computer and group of the domain changed or deleted after `usn`: one
    /// search (paged by hand, since it carries the show-deleted control too), tombstones
    /// marked `deleted`.
    pub async fn changes_since(&mut self, usn: u64) -> Result<Vec<ChangedObject>, AdError> {
        let filter = format!(
            "(&(|(objectClass=user)(objectClass=group))(uSNChanged>={}))",
            usn.saturating_add(1)
        );
        let base = self.base_dn.clone();
        let mut out = Vec::new();
        let mut cookie: Vec<u8> = Vec::new();
        loop {
            let controls: Vec<RawControl> = vec![
                PagedResults {
                    size: crate::read::PAGE_SIZE,
                    cookie: cookie.clone(),
                }
                .into(),
                RawControl {
                    ctype: SHOW_DELETED.to_string(),
                    crit: true,
                    val: None,
                },
            ];
            let timeout = self.timeout;
            self.count_search();
            let result = self
                .ldap
                .with_timeout(timeout)
                .with_controls(controls)
                .search(&base, Scope::Subtree, &filter, CHANGED_ATTRS.to_vec())
                .await
                .map_err(|e| AdError::from_ldap("read changes", &base, e))?;
            let (entries, res) = (result.0, result.1);
            if res.rc != 0 {
                return Err(AdError::from_result("read changes", &base, res));
            }
            for e in entries.into_iter().filter(|e| !e.is_ref()) {
                let e = SearchEntry::construct(e);
                let Some(object) = crate::resolve::object_ref(&e) else {
                    continue;
                };
                out.push(ChangedObject {
                    object,
                    sid: first_binary(&e, "objectSid").and_then(|b| sid_text(&b)),
                    immutable_ids: ["objectGUID", "mS-DS-ConsistencyGuid"]
                        .iter()
                        .flat_map(|a| binary_values(&e, a))
                        .collect(),
                    usn: first_text(&e, "uSNChanged")
                        .and_then(|u| u.parse().ok())
                        .unwrap_or(0),
                    deleted: first_text(&e, "isDeleted")
                        .is_some_and(|v| v.eq_ignore_ascii_case("TRUE")),
                });
            }
            let next = res
                .ctrls
                .iter()
                .find(|c| matches!(c.0, Some(ControlType::PagedResults)))
                .map(|c| c.1.parse::<PagedResults>().cookie)
                .unwrap_or_default();
            if next.is_empty() {
                return Ok(out);
            }
            cookie = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dc(service: &str, inv: &str, usn: u64) -> DcState {
        DcState {
            service: service.into(),
            invocation_id: inv.into(),
            highest_usn: usn,
        }
    }

    #[test]
    fn another_dc_a_restore_or_a_rollback_breaks_the_usn_chain() {
        let before = dc("CN=NTDS Settings,CN=DC1", "inv-1", 100);
        assert!(dc("cn=ntds settings,cn=dc1", "inv-1", 100).continues(&before));
        assert!(dc("CN=NTDS Settings,CN=DC1", "inv-1", 150).continues(&before));
        assert!(!dc("CN=NTDS Settings,CN=DC2", "inv-1", 150).continues(&before));
        assert!(!dc("CN=NTDS Settings,CN=DC1", "inv-2", 150).continues(&before));
        assert!(!dc("CN=NTDS Settings,CN=DC1", "inv-1", 99).continues(&before));
    }
}
