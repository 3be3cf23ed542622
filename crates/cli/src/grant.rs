//! `writeback ad grant-permissions`: the service account's rights on the managed OUs (what
//! Microsoft's `Set-ADSyncUnifiedGroupWritebackPermissions` does for Group Writeback), added
//! to each OU's DACL over LDAP — idempotently, DACL only; `--dry-run` shows them in SDDL.

use crate::config::AdAdminConfig;
use clap::Subcommand;
use serde::Serialize;
use wb_ad::acl::{group_writeback_aces, rights, AccessAce, Principal, SecurityDescriptor};
use wb_ad::AdConnector;
use wb_engine::naming::{dn_eq, is_at_or_under, is_valid_dn};

/// Active Directory admin commands: they bind with the `[ad]` credentials of the
/// configuration and need no Graph credential.
#[derive(Subcommand, Debug)]
pub enum AdCommand {
    /// Give the service account the rights writeback needs on the managed OUs.
    ///
    /// The ACEs of Microsoft's Set-ADSyncUnifiedGroupWritebackPermissions that writeback
    /// uses: create and delete group objects in each OU, read and write all properties of
    /// the groups below it (which covers renames). Adds only the ACEs that are missing from each OU's DACL (owner, group and SACL
    /// are not touched); nothing outside the OUs is changed. Run it with an [ad] account
    /// allowed to change the OUs' permissions (e.g. a domain admin's config), once.
    /// Exit 0 when every OU has the ACEs, 1 when some OU failed, 2 for a usage or
    /// configuration mistake (an unknown or ambiguous ACCOUNT, an OU that does not exist),
    /// 3 when AD cannot be reached, refuses the credentials, or every OU failed.
    GrantPermissions {
        /// The service account: its DN, its UPN (svc-writeback@corp.example) or its
        /// sAMAccountName (also as DOMAIN\name), found under ad.base_dn.
        #[arg(long, value_name = "ACCOUNT")]
        account: String,
        /// An OU to grant on (repeatable). Default: the managed OUs, ad.ou and every
        /// writeback.rule[].ou.
        #[arg(long = "ou", value_name = "DN")]
        ous: Vec<String>,
        /// Show the ACEs that would be added, in SDDL, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(cfg: &AdAdminConfig, command: AdCommand, json: bool) -> i32 {
    match command {
        AdCommand::GrantPermissions {
            account,
            ous,
            dry_run,
        } => grant_permissions(cfg, &account, ous, dry_run, json).await,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum OuResult {
    Added,
    WouldAdd,
    NothingToAdd,
    Failed,
}

#[derive(Debug, Serialize)]
struct OuReport {
    ou: String,
    result: OuResult,
    /// The ACEs added (or that would be), in SDDL.
    aces: Vec<String>,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct AccountReport {
    name: String,
    dn: String,
    sid: String,
}

#[derive(Debug, Serialize)]
struct Report {
    account: AccountReport,
    dry_run: bool,
    ous: Vec<OuReport>,
}

/// A stop before any write, with its exit code.
struct Stop {
    code: i32,
    message: String,
}

fn usage(message: String) -> Stop {
    Stop { code: 2, message }
}

async fn grant_permissions(
    cfg: &AdAdminConfig,
    account: &str,
    ous: Vec<String>,
    dry_run: bool,
    json: bool,
) -> i32 {
    match grant(cfg, account, ous, dry_run).await {
        Ok(report) => {
            render(&report, json);
            let failed = report
                .ous
                .iter()
                .filter(|o| o.result == OuResult::Failed)
                .count();
            match failed {
                0 => 0,
                n if n == report.ous.len() => 3,
                _ => 1,
            }
        }
        Err(stop) => {
            eprintln!("error: {}", stop.message);
            stop.code
        }
    }
}

async fn grant(
    cfg: &AdAdminConfig,
    account: &str,
    ous: Vec<String>,
    dry_run: bool,
) -> Result<Report, Stop> {
    let ous = target_ous(cfg, ous)?;
    let unreachable = |e: wb_ad::AdError| Stop {
        code: 3,
        message: format!("Active Directory: {e}"),
    };
    let mut ad = AdConnector::connect(&cfg.ad.connector())
        .await
        .map_err(unreachable)?;
    let principal = find_account(&mut ad, account, &cfg.ad.base_dn).await?;

    // Every OU is read before anything is written: one that does not exist stops the command.
    let mut current = Vec::with_capacity(ous.len());
    for ou in ous {
        match ad.read_dacl(&ou).await {
            Ok(Some(sd)) => current.push((ou, Ok(sd))),
            Ok(None) => {
                return Err(usage(format!(
                    "OU {ou} does not exist in AD: nothing changed (create it, or fix ad.ou / writeback.rule[].ou / --ou)"
                )))
            }
            Err(e) if e.is_unreachable_or_refused() => return Err(unreachable(e)),
            Err(e) => current.push((ou, Err(e.to_string()))),
        }
    }
    let wanted = group_writeback_aces(&principal.sid);
    let mut reports = Vec::with_capacity(current.len());
    for (ou, sd) in current {
        reports.push(grant_on(&mut ad, ou, sd, &wanted, dry_run).await);
    }
    let _ = ad.unbind().await;
    Ok(Report {
        account: AccountReport {
            name: account.to_string(),
            dn: principal.dn,
            sid: principal.sid.to_string(),
        },
        dry_run,
        ous: reports,
    })
}

/// `--ou` values (each a DN under ad.base_dn), else the managed OUs.
fn target_ous(cfg: &AdAdminConfig, given: Vec<String>) -> Result<Vec<String>, Stop> {
    if given.is_empty() {
        return Ok(cfg.managed_ous.clone());
    }
    let mut out: Vec<String> = Vec::with_capacity(given.len());
    for ou in given {
        let ou = ou.trim().to_string();
        if !is_valid_dn(&ou) {
            return Err(usage(format!("--ou {ou:?} is not a distinguished name")));
        }
        if !is_at_or_under(&ou, &cfg.ad.base_dn) {
            return Err(usage(format!(
                "--ou {ou:?} is not under ad.base_dn {:?}",
                cfg.ad.base_dn
            )));
        }
        if !out.iter().any(|o| dn_eq(o, &ou)) {
            out.push(ou);
        }
    }
    Ok(out)
}

async fn find_account(
    ad: &mut AdConnector,
    account: &str,
    base_dn: &str,
) -> Result<Principal, Stop> {
    let found = ad.find_principals(account).await.map_err(|e| Stop {
        code: 3,
        message: format!("Active Directory: {e}"),
    })?;
    the_one(account, base_dn, found)
}

/// The one principal found for `account`; none or several is a usage error naming it.
fn the_one(account: &str, base_dn: &str, found: Vec<Principal>) -> Result<Principal, Stop> {
    match <[Principal; 1]>::try_from(found) {
        Ok([one]) => Ok(one),
        Err(found) if found.is_empty() => Err(usage(format!(
            "account {account:?}: no account with that DN, userPrincipalName or sAMAccountName under {base_dn}"
        ))),
        Err(found) => Err(usage(format!(
            "account {account:?} is ambiguous: {} accounts match ({}); give its DN",
            found.len(),
            found
                .iter()
                .map(|p| p.dn.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ))),
    }
}

async fn grant_on(
    ad: &mut AdConnector,
    ou: String,
    sd: Result<SecurityDescriptor, String>,
    wanted: &[AccessAce],
    dry_run: bool,
) -> OuReport {
    let report = |result, aces, error| OuReport {
        ou: ou.clone(),
        result,
        aces,
        error,
    };
    let mut sd = match sd {
        Ok(sd) => sd,
        Err(e) => return report(OuResult::Failed, Vec::new(), Some(e)),
    };
    let Some(dacl) = sd.dacl.as_mut() else {
        return report(
            OuResult::Failed,
            Vec::new(),
            Some(
                "the OU has no DACL (a NULL DACL lets everyone do anything): adding ACEs would restrict it; give it a DACL first"
                    .into(),
            ),
        );
    };
    let missing: Vec<AccessAce> = wanted.iter().filter(|w| !dacl.grants(w)).cloned().collect();
    let aces: Vec<String> = missing.iter().map(AccessAce::sddl).collect();
    if missing.is_empty() {
        return report(OuResult::NothingToAdd, aces, None);
    }
    if dry_run {
        return report(OuResult::WouldAdd, aces, None);
    }
    for ace in missing {
        dacl.insert_canonical(ace);
    }
    if let Err(e) = ad.write_dacl(&ou, &sd).await {
        return report(OuResult::Failed, aces, Some(e.to_string()));
    }
    // What counts is what the DC holds now.
    match ad.read_dacl(&ou).await {
        Ok(Some(after))
            if after
                .dacl
                .as_ref()
                .is_some_and(|d| wanted.iter().all(|w| d.grants(w))) =>
        {
            report(OuResult::Added, aces, None)
        }
        Ok(_) => report(
            OuResult::Failed,
            aces,
            Some("written, but the DACL read back does not hold the ACEs".into()),
        ),
        Err(e) => report(
            OuResult::Failed,
            aces,
            Some(format!("written, but reading it back failed: {e}")),
        ),
    }
}

/// What an ACE of [`group_writeback_aces`] is for, in the words of the Security tab.
fn purpose(sddl: &str, wanted: &[AccessAce]) -> &'static str {
    match wanted.iter().find(|w| w.sddl() == sddl) {
        Some(w) if w.mask & rights::CREATE_CHILD != 0 => {
            "create and delete group objects in this OU"
        }
        Some(_) => "read and write all properties of the group objects below it",
        None => "",
    }
}

fn render(report: &Report, json: bool) {
    if json {
        match serde_json::to_string_pretty(report) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("error: cannot render JSON: {e}"),
        }
        return;
    }
    let sid = report.account.sid.parse().ok();
    let wanted = sid.map(|s| group_writeback_aces(&s)).unwrap_or_default();
    println!(
        "account {}: {} ({})",
        report.account.name, report.account.dn, report.account.sid
    );
    if report.dry_run {
        println!("dry run: nothing is changed");
    }
    for ou in &report.ous {
        let n = ou.aces.len();
        let what = match ou.result {
            OuResult::Added => format!("added {n} ACE{}", plural(n)),
            OuResult::WouldAdd => format!("would add {n} ACE{}", plural(n)),
            OuResult::NothingToAdd => "nothing to add (the account has these rights)".into(),
            OuResult::Failed => {
                format!("FAILED: {}", ou.error.as_deref().unwrap_or("unknown error"))
            }
        };
        println!("{}: {what}", ou.ou);
        for ace in &ou.aces {
            println!("  {ace}  {}", purpose(ace, &wanted));
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(dn: &str) -> Principal {
        Principal {
            dn: dn.into(),
            sid: "S-1-5-21-1-2-3-1104".parse().expect("SID"),
        }
    }

    #[test]
    fn an_account_matching_none_or_several_objects_is_a_usage_error_naming_it() {
        let base = "DC=corp,DC=example";
        let none = the_one("svc@corp.example", base, Vec::new()).expect_err("error");
        assert_eq!(none.code, 2);
        assert!(none.message.contains("\"svc@corp.example\"") && none.message.contains(base));
        let two = the_one(
            "svc",
            base,
            vec![
                principal("CN=svc,OU=A,DC=corp"),
                principal("CN=svc,OU=B,DC=corp"),
            ],
        )
        .expect_err("error");
        assert_eq!(two.code, 2);
        for needle in [
            "\"svc\" is ambiguous",
            "CN=svc,OU=A,DC=corp",
            "CN=svc,OU=B,DC=corp",
            "give its DN",
        ] {
            assert!(two.message.contains(needle), "{needle}: {}", two.message);
        }
        let one = the_one("svc", base, vec![principal("CN=svc,OU=A,DC=corp")]).ok();
        assert_eq!(one.map(|p| p.dn).as_deref(), Some("CN=svc,OU=A,DC=corp"));
    }

    #[test]
    fn named_ous_must_be_dns_under_the_base() {
        let cfg = AdAdminConfig {
            ad: crate::config::AdSettings {
                url: "ldap://dc".into(),
                bind_dn: "CN=a,DC=corp,DC=example".into(),
                password: Default::default(),
                base_dn: "DC=corp,DC=example".into(),
                ou: "OU=G,DC=corp,DC=example".into(),
                starttls: false,
                ca_file: None,
                tls_verify: true,
                timeout: std::time::Duration::from_secs(1),
            },
            managed_ous: vec!["OU=G,DC=corp,DC=example".into()],
        };
        assert_eq!(
            target_ous(&cfg, Vec::new()).ok(),
            Some(cfg.managed_ous.clone())
        );
        assert_eq!(
            target_ous(
                &cfg,
                vec![
                    "OU=A,DC=corp,DC=example".into(),
                    "ou=a, dc=corp, dc=example".into()
                ]
            )
            .ok(),
            Some(vec!["OU=A,DC=corp,DC=example".to_string()]),
            "the same OU once"
        );
        for bad in ["Groups", "OU=A,DC=other,DC=test"] {
            assert_eq!(
                target_ous(&cfg, vec![bad.into()]).err().map(|s| s.code),
                Some(2),
                "{bad}"
            );
        }
    }
}
