//! Who the connection is bound as: the LDAP "Who am I?" extended operation (RFC 4532), and,
//! for servers that lack it (Samba answers rc 2), the account found from the bind name.

use crate::values::{escape_text, first_text};
use crate::{AdConnector, AdError};
use ldap3::exop::WhoAmI;
use ldap3::Scope;

/// The identity a bind name stands for, as the server sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundIdentity {
    /// AD's authorization id, e.g. `u:CORP\svc-writeback` (`dn:…` for a DN-form answer).
    pub authzid: String,
    /// `whoami` when the server answered the extended operation; `search` when it does not
    /// support it and the account was found from the bind name instead.
    pub source: &'static str,
    /// The account's DN, when it was looked up.
    pub dn: Option<String>,
}

/// The forms a bind name can take in AD's simple bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindName<'a> {
    /// `CN=svc,OU=…,DC=…`
    Dn(&'a str),
    /// `svc@corp.example`
    Upn { user: &'a str, suffix: &'a str },
    /// `CORP\svc`
    DownLevel { domain: &'a str, user: &'a str },
}

impl<'a> BindName<'a> {
    /// Classifies `name`; `None` when it is none of the three forms.
    pub fn parse(name: &'a str) -> Option<Self> {
        let name = name.trim();
        if let Some((domain, user)) = name.split_once('\\') {
            let ok = |s: &str| !s.is_empty() && !s.contains(['\\', '@', '=', ',']);
            return (ok(domain) && ok(user)).then_some(BindName::DownLevel { domain, user });
        }
        if name.contains('=') {
            return Some(BindName::Dn(name));
        }
        let (user, suffix) = name.rsplit_once('@')?;
        let ok = !user.is_empty()
            && !suffix.is_empty()
            && suffix.contains('.')
            && !suffix.starts_with('.')
            && !suffix.ends_with('.')
            && !user.contains(char::is_whitespace)
            && !suffix.contains(char::is_whitespace);
        ok.then_some(BindName::Upn { user, suffix })
    }
}

const PROTOCOL_ERROR: u32 = 2;
const UNAVAILABLE_CRITICAL_EXTENSION: u32 = 12;

impl AdConnector {
    /// Who this connection is bound as: the server's `whoami` answer, or — when the server
    /// does not implement the operation — `u:DOMAIN\sAMAccountName` of the account that
    /// `bind` names (found by DN, userPrincipalName or sAMAccountName).
    pub async fn whoami(&mut self, bind: &str) -> Result<BoundIdentity, AdError> {
        let answer = self
            .op()
            .extended(WhoAmI)
            .await
            .map_err(|e| AdError::from_ldap("whoami", "", e))?;
        match answer.1.rc {
            0 => {
                let authzid = answer
                    .0
                    .val
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
                    .unwrap_or_default();
                Ok(BoundIdentity {
                    authzid: if authzid.is_empty() {
                        "anonymous".into()
                    } else {
                        authzid
                    },
                    source: "whoami",
                    dn: None,
                })
            }
            PROTOCOL_ERROR | UNAVAILABLE_CRITICAL_EXTENSION => self.identity_by_search(bind).await,
            _ => Err(AdError::from_result("whoami", "", answer.1)),
        }
    }

    async fn identity_by_search(&mut self, bind: &str) -> Result<BoundIdentity, AdError> {
        let attrs = ["sAMAccountName"];
        let entry = match BindName::parse(bind) {
            Some(BindName::Dn(dn)) => {
                self.base_entry(dn, "(objectClass=*)", &attrs, "find the bind account")
                    .await?
            }
            Some(BindName::Upn { user, suffix }) => {
                // AD also accepts the implicit UPN sAMAccountName@<domain DNS name>.
                let upn = format!("{user}@{suffix}");
                let implicit = suffix.eq_ignore_ascii_case(&dns_name(&self.base_dn));
                let filter = if implicit {
                    format!(
                        "(&(objectClass=user)(|(userPrincipalName={})(sAMAccountName={})))",
                        escape_text(&upn),
                        escape_text(user)
                    )
                } else {
                    format!(
                        "(&(objectClass=user)(userPrincipalName={}))",
                        escape_text(&upn)
                    )
                };
                self.first_entry(&filter, &attrs).await?
            }
            Some(BindName::DownLevel { user, .. }) => {
                let filter = format!(
                    "(&(objectClass=user)(sAMAccountName={}))",
                    escape_text(user)
                );
                self.first_entry(&filter, &attrs).await?
            }
            None => None,
        };
        let netbios = self.netbios_name().await?;
        Ok(match entry {
            Some(e) => {
                let sam = first_text(&e, "sAMAccountName").unwrap_or_default();
                BoundIdentity {
                    authzid: match netbios {
                        Some(d) if !sam.is_empty() => format!("u:{d}\\{sam}"),
                        _ => format!("dn:{}", e.dn),
                    },
                    source: "search",
                    dn: Some(e.dn),
                }
            }
            None => BoundIdentity {
                authzid: format!("u:{bind}"),
                source: "search",
                dn: None,
            },
        })
    }

    async fn first_entry(
        &mut self,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Option<ldap3::SearchEntry>, AdError> {
        let base = self.base_dn.clone();
        Ok(self
            .paged_search(
                &base,
                Scope::Subtree,
                filter,
                attrs,
                "find the bind account",
            )
            .await?
            .into_iter()
            .next())
    }

    /// The domain's NetBIOS name (`nETBIOSName` of its crossRef in the configuration NC).
    async fn netbios_name(&mut self) -> Result<Option<String>, AdError> {
        let root = self
            .base_entry(
                "",
                "(objectClass=*)",
                &["configurationNamingContext"],
                "read rootDSE",
            )
            .await?;
        let Some(config) = root.and_then(|r| first_text(&r, "configurationNamingContext")) else {
            return Ok(None);
        };
        let partitions = format!("CN=Partitions,{config}");
        let filter = format!(
            "(&(objectClass=crossRef)(nCName={}))",
            escape_text(&self.base_dn)
        );
        let found = self
            .paged_search(
                &partitions,
                Scope::OneLevel,
                &filter,
                &["nETBIOSName"],
                "read the domain's NetBIOS name",
            )
            .await?;
        Ok(found.iter().find_map(|e| first_text(e, "nETBIOSName")))
    }
}

/// `DC=corp,DC=example` → `corp.example`.
pub(crate) fn dns_name(base_dn: &str) -> String {
    base_dn
        .split(',')
        .filter_map(|rdn| {
            let (k, v) = rdn.trim().split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("dc")
                .then(|| v.trim().to_string())
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_bind_forms_are_told_apart() {
        assert_eq!(
            BindName::parse("CN=svc,OU=S,DC=corp,DC=example"),
            Some(BindName::Dn("CN=svc,OU=S,DC=corp,DC=example"))
        );
        assert_eq!(
            BindName::parse("svc-writeback@corp.example"),
            Some(BindName::Upn {
                user: "svc-writeback",
                suffix: "corp.example"
            })
        );
        assert_eq!(
            BindName::parse("CORP\\svc"),
            Some(BindName::DownLevel {
                domain: "CORP",
                user: "svc"
            })
        );
        for bad in [
            "",
            "svc",
            "svc@",
            "@corp.example",
            "svc@corp",
            "\\svc",
            "CORP\\",
            "a b@c.d",
        ] {
            assert_eq!(BindName::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_domain_dns_name_comes_from_the_dc_components() {
        assert_eq!(dns_name("DC=lab,DC=example,DC=test"), "lab.example.test");
        assert_eq!(dns_name("dc=corp, dc=example"), "corp.example");
    }
}
