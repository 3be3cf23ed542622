//! Reading AD: rootDSE and schema detection, OU checks, and groups under a base — paged,
//! referrals dropped, `member` always read with explicit range retrieval.

use crate::values::{first_binary, first_text, guid_text, sid_text, text_values};
use crate::{AdConnector, AdError};
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Scope, SearchEntry};
use std::sync::Arc;
use wb_model::{AdGroup, AdSchema, GroupAttr, Interner};

/// Page size of every subtree search (Windows' MaxPageSize default).
pub(crate) const PAGE_SIZE: i32 = 1000;
/// Values per `member;range=` window (Windows' MaxValRange default).
const RANGE_WINDOW: usize = 1500;
const NO_SUCH_OBJECT: u32 = 32;
const INVALID_DN_SYNTAX: u32 = 34;

impl AdConnector {
    /// Detects what the schema offers: rootDSE `schemaNamingContext`, then the
    /// attributeSchema objects of the attributes writeback may write.
    pub async fn detect_schema(&mut self) -> Result<AdSchema, AdError> {
        let root = self
            .base_entry(
                "",
                "(objectClass=*)",
                &["schemaNamingContext"],
                "read rootDSE",
            )
            .await?
            .ok_or_else(|| AdError::Ldap {
                operation: "read rootDSE".into(),
                dn: String::new(),
                code: NO_SUCH_OBJECT,
                message: "rootDSE not readable".into(),
            })?;
        let schema_nc = first_text(&root, "schemaNamingContext").ok_or_else(|| AdError::Value {
            operation: "read rootDSE".into(),
            dn: String::new(),
            attr: "schemaNamingContext".into(),
            message: "absent".into(),
        })?;
        let filter = "(&(objectClass=attributeSchema)(|(lDAPDisplayName=msDS-ExternalDirectoryObjectId)\
                      (lDAPDisplayName=mail)(lDAPDisplayName=proxyAddresses)(lDAPDisplayName=mailNickname)))";
        let found = self
            .paged_search(
                &schema_nc,
                Scope::OneLevel,
                filter,
                &["lDAPDisplayName"],
                "detect schema",
            )
            .await?;
        let has = |name: &str| {
            found.iter().any(|e| {
                first_text(e, "lDAPDisplayName").is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
        };
        Ok(AdSchema {
            external_directory_object_id: has(GroupAttr::ExternalDirectoryObjectId.name()),
            mail: has(GroupAttr::Mail.name()),
            proxy_addresses: has(GroupAttr::ProxyAddresses.name()),
            mail_nickname: has(GroupAttr::MailNickname.name()),
        })
    }

    /// Whether an object (an OU, typically) exists at `dn`.
    pub async fn ou_exists(&mut self, dn: &str) -> Result<bool, AdError> {
        Ok(self
            .base_entry(dn, "(objectClass=*)", &["objectClass"], "read OU")
            .await?
            .is_some())
    }

    /// Every group under `base` (subtree), with its full member list.
    pub async fn read_groups(
        &mut self,
        base: &str,
        schema: &AdSchema,
    ) -> Result<Vec<AdGroup>, AdError> {
        let attrs = group_attrs(schema);
        let entries = self
            .paged_search(
                base,
                Scope::Subtree,
                "(objectClass=group)",
                &attrs,
                "read groups",
            )
            .await?;
        let mut groups = Vec::with_capacity(entries.len());
        let mut dns = Interner::default();
        for entry in entries {
            groups.push(
                self.group_from_entry(entry, "read groups", &mut dns)
                    .await?,
            );
        }
        Ok(groups)
    }

    /// The group whose objectGUID is `guid` (wherever it is), if any.
    pub async fn read_group(
        &mut self,
        guid: &str,
        schema: &AdSchema,
    ) -> Result<Option<AdGroup>, AdError> {
        let base = format!("<GUID={guid}>");
        let attrs = group_attrs(schema);
        match self
            .base_entry(&base, "(objectClass=group)", &attrs, "read group")
            .await?
        {
            Some(entry) => Ok(Some(
                self.group_from_entry(entry, "read group", &mut Interner::default())
                    .await?,
            )),
            None => Ok(None),
        }
    }

    /// The group whose objectSid is `sid` (`S-1-5-…`), wherever it is in the domain, if any
    /// (a `<SID=…>` base, as AD and Samba take it).
    pub async fn read_group_by_sid(
        &mut self,
        sid: &str,
        schema: &AdSchema,
    ) -> Result<Option<AdGroup>, AdError> {
        let sid = sid.trim();
        if !sid.starts_with("S-") || !sid[2..].chars().all(|c| c.is_ascii_digit() || c == '-') {
            return Ok(None);
        }
        let base = format!("<SID={sid}>");
        let attrs = group_attrs(schema);
        match self
            .base_entry(&base, "(objectClass=group)", &attrs, "read group by SID")
            .await?
        {
            Some(entry) => Ok(Some(
                self.group_from_entry(entry, "read group by SID", &mut Interner::default())
                    .await?,
            )),
            None => Ok(None),
        }
    }

    async fn group_from_entry(
        &mut self,
        entry: SearchEntry,
        operation: &str,
        dns: &mut Interner,
    ) -> Result<AdGroup, AdError> {
        let dn = entry.dn.clone();
        let value_error = |attr: &str, message: &str| AdError::Value {
            operation: operation.to_string(),
            dn: dn.clone(),
            attr: attr.to_string(),
            message: message.to_string(),
        };
        let guid = first_binary(&entry, "objectGUID")
            .as_deref()
            .and_then(guid_text)
            .ok_or_else(|| value_error("objectGUID", "absent or not 16 bytes"))?;
        let sid = match first_binary(&entry, "objectSid") {
            Some(bytes) => {
                Some(sid_text(&bytes).ok_or_else(|| value_error("objectSid", "not a SID"))?)
            }
            None => None,
        };
        let group_type = match first_text(&entry, GroupAttr::GroupType.name()) {
            Some(t) => t
                .parse::<i32>()
                .map_err(|e| value_error(GroupAttr::GroupType.name(), &e.to_string()))?,
            None => 0,
        };
        let members = self.members_of(&entry, operation, dns).await?;
        let mut group = AdGroup {
            guid,
            sid,
            cn: first_text(&entry, "cn").unwrap_or_default(),
            group_type,
            critical: first_text(&entry, "isCriticalSystemObject")
                .is_some_and(|v| v.eq_ignore_ascii_case("TRUE")),
            admin_count: first_text(&entry, "adminCount").is_some_and(|v| v.trim() == "1"),
            members,
            dn,
            ..AdGroup::default()
        };
        for attr in GroupAttr::ALL {
            if attr != GroupAttr::GroupType {
                attr.set(&mut group, &text_values(&entry, attr.name()));
            }
        }
        Ok(group)
    }

    /// The full `member` list: the first window came with the entry; further windows are
    /// asked for until the server answers with a range ending in `*`.
    async fn members_of(
        &mut self,
        entry: &SearchEntry,
        operation: &str,
        dns: &mut Interner,
    ) -> Result<Vec<Arc<str>>, AdError> {
        let mut members = Vec::new();
        let mut window = ranged_values(entry);
        loop {
            match window {
                None => return Ok(members),
                Some((values, end)) => {
                    members.extend(values.iter().map(|v| dns.intern(v)));
                    let Some(last) = end else { return Ok(members) };
                    let next = format!("member;range={}-{}", last + 1, last + RANGE_WINDOW);
                    let more = self
                        .base_entry(&entry.dn, "(objectClass=*)", &[next.as_str()], operation)
                        .await?;
                    window = match more {
                        Some(e) => ranged_values(&e),
                        None => None,
                    };
                }
            }
        }
    }

    /// A base-scope search; `None` when the object does not exist.
    pub(crate) async fn base_entry(
        &mut self,
        dn: &str,
        filter: &str,
        attrs: &[&str],
        operation: &str,
    ) -> Result<Option<SearchEntry>, AdError> {
        self.count_search();
        let result = self
            .op()
            .search(dn, Scope::Base, filter, attrs.to_vec())
            .await;
        let result = result.map_err(|e| AdError::from_ldap(operation, dn, e))?;
        match result.1.rc {
            0 => Ok(result
                .0
                .into_iter()
                .filter(|e| !e.is_ref())
                .map(SearchEntry::construct)
                .next()),
            NO_SUCH_OBJECT | INVALID_DN_SYNTAX => Ok(None),
            _ => Err(AdError::from_result(operation, dn, result.1)),
        }
    }

    /// A paged search (1,000 per page) with continuation references dropped.
    pub(crate) async fn paged_search(
        &mut self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
        operation: &str,
    ) -> Result<Vec<SearchEntry>, AdError> {
        let attrs: Vec<String> = attrs.iter().map(|a| a.to_string()).collect();
        let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(PAGE_SIZE)),
        ];
        let timeout = self.timeout;
        self.count_search();
        let mut stream = self
            .ldap
            .with_timeout(timeout)
            .streaming_search_with(adapters, base, scope, filter, attrs)
            .await
            .map_err(|e| AdError::from_ldap(operation, base, e))?;
        let mut entries = Vec::new();
        while let Some(entry) = stream
            .next()
            .await
            .map_err(|e| AdError::from_ldap(operation, base, e))?
        {
            entries.push(SearchEntry::construct(entry));
        }
        let done = stream.finish().await;
        match done.rc {
            0 => Ok(entries),
            // Searching under a base that is gone is "nothing there", not a failure.
            NO_SUCH_OBJECT if entries.is_empty() => Ok(entries),
            _ => Err(AdError::from_result(operation, base, done)),
        }
    }
}

/// What a group read asks for: what identifies and protects it, the first window of its
/// members, and every managed attribute the schema has (`GroupAttr::ALL`).
fn group_attrs(schema: &AdSchema) -> Vec<&'static str> {
    let mut attrs = vec![
        "objectGUID",
        "objectSid",
        "cn",
        "isCriticalSystemObject",
        "adminCount",
        "member;range=0-1499",
    ];
    attrs.extend(
        GroupAttr::ALL
            .into_iter()
            .filter(|a| a.in_schema(schema))
            .map(GroupAttr::name),
    );
    attrs
}

/// The `member;range=a-b` values of an entry and the window's end (`None` when it ends in
/// `*`, the last window). A plain `member` attribute (a server that ignored the range
/// option) is complete. No member attribute at all: `None`.
fn ranged_values(entry: &SearchEntry) -> Option<(Vec<String>, Option<usize>)> {
    for (name, values) in &entry.attrs {
        let lower = name.to_ascii_lowercase();
        if lower == "member" {
            return Some((values.clone(), None));
        }
        if let Some(range) = lower.strip_prefix("member;range=") {
            let end = range.split_once('-').map(|(_, end)| end).unwrap_or("*");
            let end = if end == "*" {
                None
            } else {
                end.parse::<usize>().ok()
            };
            return Some((values.clone(), end));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn entry(attr: &str, n: usize) -> SearchEntry {
        let values = (0..n).map(|i| format!("CN=u{i},DC=x")).collect();
        SearchEntry {
            dn: "CN=g,DC=x".into(),
            attrs: HashMap::from([(attr.to_string(), values)]),
            bin_attrs: HashMap::new(),
        }
    }

    #[test]
    fn a_bounded_range_asks_for_the_next_window() {
        let (values, end) = ranged_values(&entry("member;range=0-1499", 1500)).unwrap();
        assert_eq!(values.len(), 1500);
        assert_eq!(end, Some(1499));
    }

    #[test]
    fn a_range_ending_in_star_is_the_last_window() {
        assert_eq!(
            ranged_values(&entry("member;range=1500-*", 3)).unwrap().1,
            None
        );
        assert_eq!(ranged_values(&entry("member", 3)).unwrap().1, None);
        assert!(ranged_values(&entry("cn", 1)).is_none());
    }
}
