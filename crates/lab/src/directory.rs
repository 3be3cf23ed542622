//! Fallible lab directory writes over raw ldap3: bind, OUs, users and groups, each
//! idempotent (an object that already exists is read back, not an error).

use base64::Engine;
use ldap3::{Ldap, LdapConnAsync, Scope, SearchEntry};
use std::collections::HashSet;
use wb_ad::values::{first_binary, guid_text, sid_text};

/// A lab user and its identity, as the cloud's onPremises* properties carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabUser {
    pub dn: String,
    pub sid: String,
    pub guid: String,
    /// base64 of the objectGUID bytes (what Entra Connect puts in onPremisesImmutableId).
    pub immutable_id_base64: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabGroup {
    pub dn: String,
    pub sid: String,
    pub guid: String,
}

const ALREADY_EXISTS: u32 = 68;

pub async fn bind(url: &str, dn: &str, password: &str) -> Result<Ldap, String> {
    let (conn, mut ldap) = LdapConnAsync::new(url)
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    ldap3::drive!(conn);
    let res = ldap
        .simple_bind(dn, password)
        .await
        .map_err(|e| format!("bind {dn}: {e}"))?;
    if res.rc != 0 {
        return Err(format!("bind {dn}: rc {} {}", res.rc, res.text));
    }
    Ok(ldap)
}

async fn add(ldap: &mut Ldap, dn: &str, attrs: Vec<(&str, HashSet<&str>)>) -> Result<bool, String> {
    let res = ldap
        .add(dn, attrs)
        .await
        .map_err(|e| format!("add {dn}: {e}"))?;
    match res.rc {
        0 => Ok(true),
        ALREADY_EXISTS if !res.text.contains("00002071") => Ok(false),
        rc => Err(format!("add {dn}: rc {rc} {}", res.text)),
    }
}

pub async fn add_ou(ldap: &mut Ldap, dn: &str) -> Result<(), String> {
    add(
        ldap,
        dn,
        vec![("objectClass", HashSet::from(["top", "organizationalUnit"]))],
    )
    .await
    .map(|_| ())
}

pub async fn add_user(
    ldap: &mut Ldap,
    dn: &str,
    sam: &str,
    display: &str,
    base_dn: &str,
) -> Result<LabUser, String> {
    let realm = base_dn
        .split(',')
        .filter_map(|rdn| {
            rdn.trim()
                .strip_prefix("DC=")
                .or_else(|| rdn.trim().strip_prefix("dc="))
        })
        .collect::<Vec<_>>()
        .join(".");
    let upn = format!("{sam}@{realm}");
    add(
        ldap,
        dn,
        vec![
            (
                "objectClass",
                HashSet::from(["top", "person", "organizationalPerson", "user"]),
            ),
            ("sAMAccountName", HashSet::from([sam])),
            ("displayName", HashSet::from([display])),
            ("userPrincipalName", HashSet::from([upn.as_str()])),
        ],
    )
    .await?;
    let (dn, guid, sid, raw_guid) = identity(ldap, dn).await?;
    Ok(LabUser {
        dn,
        sid,
        guid,
        immutable_id_base64: base64::engine::general_purpose::STANDARD.encode(raw_guid),
    })
}

pub async fn add_group(
    ldap: &mut Ldap,
    dn: &str,
    sam: &str,
    group_type: i32,
    members: &[String],
) -> Result<LabGroup, String> {
    let group_type = group_type.to_string();
    let mut attrs = vec![
        ("objectClass", HashSet::from(["top", "group"])),
        ("sAMAccountName", HashSet::from([sam])),
        ("groupType", HashSet::from([group_type.as_str()])),
    ];
    if !members.is_empty() {
        attrs.push(("member", members.iter().map(String::as_str).collect()));
    }
    let created = add(ldap, dn, attrs).await?;
    if !created && !members.is_empty() {
        // Re-seeding: make sure the members are there (permissive modify: present is fine).
        let ctrl = ldap3::controls::RawControl {
            ctype: "1.2.840.113556.1.4.1413".into(),
            crit: false,
            val: None,
        };
        let set: HashSet<&str> = members.iter().map(String::as_str).collect();
        let res = ldap
            .with_controls(ctrl)
            .modify(dn, vec![ldap3::Mod::Add("member", set)])
            .await
            .map_err(|e| format!("add members to {dn}: {e}"))?;
        if res.rc != 0 && res.rc != ALREADY_EXISTS {
            return Err(format!("add members to {dn}: rc {} {}", res.rc, res.text));
        }
    }
    let (dn, guid, sid, _) = identity(ldap, dn).await?;
    Ok(LabGroup { dn, sid, guid })
}

/// The DN as the server spells it, objectGUID text, objectSid text and the raw objectGUID
/// bytes of `dn`.
pub async fn identity(
    ldap: &mut Ldap,
    dn: &str,
) -> Result<(String, String, String, Vec<u8>), String> {
    let (entries, _) = ldap
        .search(
            dn,
            Scope::Base,
            "(objectClass=*)",
            vec!["objectGUID", "objectSid"],
        )
        .await
        .map_err(|e| format!("read {dn}: {e}"))?
        .success()
        .map_err(|e| format!("read {dn}: {e}"))?;
    let entry = entries
        .into_iter()
        .next()
        .map(SearchEntry::construct)
        .ok_or_else(|| format!("read {dn}: not found"))?;
    let raw =
        first_binary(&entry, "objectGUID").ok_or_else(|| format!("read {dn}: no objectGUID"))?;
    let guid = guid_text(&raw).ok_or_else(|| format!("read {dn}: objectGUID is not 16 bytes"))?;
    let sid = first_binary(&entry, "objectSid")
        .and_then(|b| sid_text(&b))
        .ok_or_else(|| format!("read {dn}: no readable objectSid"))?;
    Ok((entry.dn, guid, sid, raw))
}
