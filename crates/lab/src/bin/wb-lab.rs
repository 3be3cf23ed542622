//! `wb-lab`: the lab's seeder. `wb-lab seed` makes the lab DC hold the synced users and
//! groups of a graph-sim tenant file and writes the tenant back with their AD identities.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use wb_lab::seed::{seed, SeedTarget};

#[derive(Parser)]
#[command(
    name = "wb-lab",
    about = "Lab tools for writeback: seed the lab AD DC from a tenant file"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create OU=Lab (People, Groups, Writeback/Groups), every synced user at its
    /// onPremisesDistinguishedName and every synced group under OU=Groups,OU=Lab (DL-*
    /// domain-local, others global security); write the tenant with onPremisesSecurityIdentifier
    /// and onPremisesImmutableId filled. Safe to re-run.
    Seed {
        /// graph-sim tenant file to read.
        #[arg(long)]
        tenant: PathBuf,
        /// Where to write the tenant with AD identities filled in.
        #[arg(long)]
        out: PathBuf,
        #[arg(
            long,
            env = "WRITEBACK_LAB_LDAP_URL",
            default_value = "ldap://127.0.0.1:389"
        )]
        ldap_url: String,
        #[arg(
            long,
            env = "WRITEBACK_LAB_BIND_DN",
            default_value = "CN=Administrator,CN=Users,DC=lab,DC=example,DC=test"
        )]
        bind_dn: String,
        #[arg(
            long,
            env = "WRITEBACK_LAB_PASSWORD",
            hide_env_values = true,
            default_value = "Lab-Admin-Passw0rd"
        )]
        password: String,
        #[arg(
            long,
            env = "WRITEBACK_LAB_BASE_DN",
            default_value = "DC=lab,DC=example,DC=test"
        )]
        base_dn: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Seed {
            tenant,
            out,
            ldap_url,
            bind_dn,
            password,
            base_dn,
        } => {
            let text = std::fs::read_to_string(&tenant)
                .with_context(|| format!("reading {}", tenant.display()))?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", tenant.display()))?;
            let target = SeedTarget {
                url: ldap_url,
                bind_dn,
                password,
                base_dn,
            };
            let (seeded, report) = seed(value, &target).await.map_err(anyhow::Error::msg)?;
            let json = serde_json::to_string_pretty(&seeded)?;
            std::fs::write(&out, json + "\n")
                .with_context(|| format!("writing {}", out.display()))?;
            eprintln!(
                "seeded {} users and {} groups into {}; wrote {}",
                report.users,
                report.groups,
                target.url,
                out.display()
            );
        }
    }
    Ok(())
}
