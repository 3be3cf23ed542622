//! `writeback preflight`: checks, before the first cycle, everything a cycle needs — bind,
//! TLS, OUs, rights (with a probe group, cleaned up), schema, Graph token and permissions.

use crate::config::Config;
use crate::cycle::graph_client;
use serde::Serialize;
use std::collections::BTreeMap;
use wb_ad::AdConnector;
use wb_model::{Action, GroupAttr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: String,
    pub verdict: Verdict,
    pub detail: String,
    /// What to do about a warning or failure.
    pub fix: Option<String>,
}

fn ok(check: &str, detail: impl Into<String>) -> Check {
    Check {
        check: check.into(),
        verdict: Verdict::Ok,
        detail: detail.into(),
        fix: None,
    }
}

fn bad(check: &str, verdict: Verdict, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        check: check.into(),
        verdict,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// Runs every check; never stops at the first failure unless later checks depend on it.
pub async fn run(cfg: &Config) -> (Vec<Check>, i32) {
    let mut checks = Vec::new();
    let mut unreachable = false;

    // --- Active Directory ---
    let secure = cfg.ad.url.starts_with("ldaps://") || cfg.ad.starttls;
    checks.push(if secure {
        ok(
            "ad.tls",
            format!(
                "{} with certificate verification {}",
                if cfg.ad.starttls { "StartTLS" } else { "LDAPS" },
                if cfg.ad.tls_verify { "on" } else { "OFF" }
            ),
        )
    } else {
        bad(
            "ad.tls",
            Verdict::Warn,
            "plain ldap:// without StartTLS: the bind password crosses the network in clear",
            "use ldaps:// or set ad.starttls = true (with ad.ca_file for your CA)",
        )
    });
    match AdConnector::connect(&cfg.ad.connector()).await {
        Err(e) => {
            unreachable = true;
            checks.push(bad(
                "ad.bind",
                Verdict::Fail,
                e.to_string(),
                "check ad.url (host, port, ldap/ldaps), ad.bind (a DN, a UPN or DOMAIN\\user) and ad.password; for TLS errors, ad.ca_file",
            ));
        }
        Ok(mut ad) => {
            checks.push(match ad.whoami(&cfg.ad.bind_dn).await {
                Ok(who) => ok(
                    "ad.bind",
                    format!(
                        "bound to {} as {}: {}{}",
                        cfg.ad.url,
                        cfg.ad.bind_dn,
                        who.authzid,
                        match (who.source, &who.dn) {
                            ("whoami", _) => String::new(),
                            (_, Some(dn)) => format!(
                                " ({dn}; the server has no whoami operation: found by search)"
                            ),
                            (_, None) => " (the server has no whoami operation and the account was not found by search)".into(),
                        }
                    ),
                ),
                Err(e) => bad(
                    "ad.bind",
                    Verdict::Warn,
                    format!(
                        "bound to {} as {}, but who the server sees could not be read: {e}",
                        cfg.ad.url, cfg.ad.bind_dn
                    ),
                    "the bind account should be able to read its own account object",
                ),
            });
            match ad.detect_schema().await {
                Ok(schema) => {
                    checks.push(if schema.external_directory_object_id {
                        ok("ad.schema.anchor", "msDS-ExternalDirectoryObjectId present: both anchors are written")
                    } else {
                        bad(
                            "ad.schema.anchor",
                            Verdict::Warn,
                            "msDS-ExternalDirectoryObjectId is missing (schema older than Windows Server 2016): the anchor is adminDescription only",
                            "optional: extend the schema to Windows Server 2016 or later",
                        )
                    });
                    checks.push(if schema.mail && schema.proxy_addresses && schema.mail_nickname {
                        ok("ad.schema.mail", "mail, proxyAddresses and mailNickname present")
                    } else {
                        let missing: Vec<&str> = [
                            GroupAttr::Mail,
                            GroupAttr::ProxyAddresses,
                            GroupAttr::MailNickname,
                        ]
                        .into_iter()
                        .filter(|a| !a.in_schema(&schema))
                        .map(GroupAttr::name)
                        .collect();
                        bad(
                            "ad.schema.mail",
                            Verdict::Warn,
                            format!("missing: {} — mail attributes of mail-enabled groups are skipped", missing.join(", ")),
                            "only needed for distribution / mail-enabled security groups: extend the schema (Exchange) if you need them",
                        )
                    });
                }
                Err(e) => checks.push(bad(
                    "ad.schema",
                    Verdict::Fail,
                    e.to_string(),
                    "the bind account must be able to read the schema naming context",
                )),
            }
            for ou in cfg.engine.managed_ous() {
                match ad.ou_exists(&ou).await {
                    Ok(true) => {
                        checks.push(ok("ad.ou", format!("{ou} exists")));
                        checks.extend(probe_rights(&mut ad, &ou).await);
                    }
                    Ok(false) => checks.push(bad(
                        "ad.ou",
                        Verdict::Fail,
                        format!("{ou} does not exist"),
                        "create the OU, or fix ad.ou / the rule's ou",
                    )),
                    Err(e) => checks.push(bad(
                        "ad.ou",
                        Verdict::Fail,
                        e.to_string(),
                        "the bind account must be able to read the OU",
                    )),
                }
            }
            let _ = ad.unbind().await;
        }
    }

    // --- Microsoft Graph ---
    match graph_client(cfg) {
        Err(e) => checks.push(bad(
            "graph.client",
            Verdict::Fail,
            e.to_string(),
            "check [graph] in the configuration",
        )),
        Ok(graph) => match graph.token().await {
            Err(e) => {
                unreachable = true;
                checks.push(bad(
                    "graph.token",
                    Verdict::Fail,
                    e.to_string(),
                    "check graph.tenant, graph.client_id and the secret or certificate registered on the app",
                ));
            }
            Ok(token) => {
                checks.push(ok(
                    "graph.token",
                    format!(
                        "token for {} from {}",
                        cfg.graph.client_id, cfg.graph.login_url
                    ),
                ));
                if let Some(roles) = token_roles(&token) {
                    checks.push(ok(
                        "graph.roles",
                        format!("application permissions in the token: {}", roles.join(", ")),
                    ));
                }
                let probes = [
                    (
                        "graph.permission.groups",
                        "/beta/groups?$select=id,writebackConfiguration&$top=1",
                        "GroupMember.Read.All or Group.Read.All",
                    ),
                    (
                        "graph.permission.users",
                        "/v1.0/users?$select=id,onPremisesSecurityIdentifier&$top=1",
                        "User.Read.All",
                    ),
                    (
                        "graph.permission.delta",
                        "/beta/groups/delta?$select=id,members",
                        "GroupMember.Read.All or Group.Read.All",
                    ),
                ];
                for (name, path, perm) in probes {
                    let url = format!("{}{}", cfg.graph.graph_url, path);
                    checks.push(match graph.get_json(&url).await {
                        Ok(_) => ok(name, format!("GET {path} allowed")),
                        Err(e) => bad(name, Verdict::Fail, e.to_string(), format!("grant the application permission {perm} (admin consent) to the app")),
                    });
                }
            }
        },
    }

    let code = if unreachable {
        3
    } else if checks.iter().any(|c| c.verdict == Verdict::Fail) {
        1
    } else {
        0
    };
    (checks, code)
}

/// Creates, modifies, renames and deletes a probe group in `ou`.
async fn probe_rights(ad: &mut AdConnector, ou: &str) -> Vec<Check> {
    let mut out = Vec::new();
    let tag = format!(
        "{:08x}",
        std::process::id()
            ^ (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0))
    );
    let cn = format!("writeback-preflight-{tag}");
    let dn = format!("CN={cn},{ou}");
    let mut attrs = BTreeMap::new();
    attrs.insert(
        "objectClass".into(),
        vec!["top".to_string(), "group".to_string()].into(),
    );
    attrs.insert("cn".into(), vec![cn.clone()].into());
    // sAMAccountName within the 20 characters older DCs accept.
    attrs.insert("sAMAccountName".into(), vec![format!("wbpf-{tag}")].into());
    attrs.insert(
        "groupType".into(),
        vec![(wb_model::GROUP_TYPE_UNIVERSAL | wb_model::GROUP_TYPE_SECURITY).to_string()].into(),
    );
    attrs.insert(
        "description".into(),
        vec!["writeback preflight probe; safe to delete".to_string()].into(),
    );
    let create = Action::Create {
        dn: dn.clone(),
        attrs,
        members: vec![],
        sam_account_name_fallbacks: vec![format!("wbpf{tag}x")],
    };
    // An add does not say which objectGUID it gave: read the probe back as the exporter
    // reads the groups it creates.
    let created = match ad.mark_creates().await {
        Ok(mark) => match ad.apply(&create).await {
            Ok(_) => ad.read_back_created(ou, mark).await.map(|read| {
                read.into_iter()
                    .find(|g| wb_engine::naming::dn_eq(&g.dn, &dn))
                    .map(|g| g.guid)
            }),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let guid = match created {
        Ok(Some(guid)) => {
            out.push(ok(
                "ad.rights.create",
                format!("created a probe group in {ou}"),
            ));
            guid
        }
        Ok(None) => {
            out.push(bad(
                "ad.rights.create",
                Verdict::Fail,
                format!("created the probe {dn}, but could not read it back in {ou}"),
                format!("grant the bind account 'Read' on the group objects in {ou}{GRANT_HINT}"),
            ));
            return out;
        }
        Err(e) => {
            out.push(bad(
                "ad.rights.create",
                Verdict::Fail,
                e.to_string(),
                format!("grant the bind account 'Create group objects' on {ou}{GRANT_HINT}"),
            ));
            return out;
        }
    };
    let modify = Action::Modify {
        dn: dn.clone(),
        guid: guid.clone(),
        changes: vec![wb_model::AttrChange {
            attr: "description".into(),
            before: vec![],
            after: vec!["writeback preflight probe (modified); safe to delete".into()],
        }],
    };
    out.push(match ad.apply(&modify).await {
        Ok(_) => ok("ad.rights.modify", "modified the probe group"),
        Err(e) => bad(
            "ad.rights.modify",
            Verdict::Fail,
            e.to_string(),
            format!("grant 'Write all properties' on group objects in {ou}{GRANT_HINT}"),
        ),
    });
    let new_rdn = format!("CN={cn}-renamed");
    let new_dn = format!("{new_rdn},{ou}");
    let rename = Action::Rename {
        dn: dn.clone(),
        guid: guid.clone(),
        new_rdn,
        new_parent: None,
        new_dn: new_dn.clone(),
    };
    let current = match ad.apply(&rename).await {
        Ok(_) => {
            out.push(ok("ad.rights.rename", "renamed the probe group"));
            new_dn
        }
        Err(e) => {
            out.push(bad(
                "ad.rights.rename",
                Verdict::Fail,
                e.to_string(),
                format!("grant 'Write name' and 'Write cn' on group objects in {ou}{GRANT_HINT}"),
            ));
            dn
        }
    };
    out.push(
        match ad
            .apply(&Action::Delete {
                dn: current.clone(),
                guid,
            })
            .await
        {
            Ok(_) => ok("ad.rights.delete", "deleted the probe group"),
            Err(e) => bad(
                "ad.rights.delete",
                Verdict::Fail,
                format!("{e} — the probe {current} is left behind; delete it by hand"),
                format!("grant 'Delete group objects' on {ou}{GRANT_HINT}"),
            ),
        },
    );
    out
}

/// How to give every right at once, appended to each rights check's fix.
const GRANT_HINT: &str = " — or run `writeback ad grant-permissions --account <the bind account>` with an admin's config: it grants all of them";

/// The `roles` claim of an Entra access token (a JWT); `None` for opaque tokens.
fn token_roles(token: &str) -> Option<Vec<String>> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let roles: Vec<String> = v
        .get("roles")?
        .as_array()?
        .iter()
        .filter_map(|r| r.as_str().map(String::from))
        .collect();
    Some(roles)
}

pub fn render(checks: &[Check], json: bool) {
    if json {
        match serde_json::to_string_pretty(checks) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("error: {e}"),
        }
        return;
    }
    for c in checks {
        let mark = match c.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        };
        println!("[{mark}] {:<26} {}", c.check, c.detail);
        if let Some(f) = &c.fix {
            println!("       {:<26} fix: {f}", "");
        }
    }
}
