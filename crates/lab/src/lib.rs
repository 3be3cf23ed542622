//! wb-lab: the lab's Samba AD domain controller for tests and demos — find or start it
//! (`lab/dc start`), isolate each test in a fresh OU, create users and groups, and seed it.
//!
//! Test support panics loudly (with the server's words) instead of returning errors; the
//! fallible building blocks in [`directory`] are what the seeder uses.

pub mod directory;
pub mod seed;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

pub use directory::{LabGroup, LabUser};

/// Where the lab's base OU for tests lives, under the domain.
pub const TESTS_OU: &str = "OU=Tests";

/// A running lab DC and how to bind to it.
#[derive(Debug, Clone)]
pub struct LabDc {
    /// `ldap://ADDR:389`.
    pub url: String,
    pub bind_dn: String,
    pub password: String,
    pub base_dn: String,
    /// The lab CA (PEM) that signed the DC's certificate.
    pub ca_file: Option<PathBuf>,
    /// `ldaps://ADDR:636`.
    pub ldaps_url: String,
}

static DC_2016: OnceLock<Result<LabDc, String>> = OnceLock::new();
static DC_2012: OnceLock<Result<LabDc, String>> = OnceLock::new();

impl LabDc {
    /// The default (2016-schema) lab DC: from `WRITEBACK_LAB_*` variables when
    /// `WRITEBACK_LAB_LDAP_URL` is set, else by running `lab/dc start` (idempotent; it
    /// provisions on first use). Panics with instructions when there is no DC to be had.
    pub fn ensure() -> LabDc {
        resolve(&DC_2016, "2016")
    }

    /// The 2012-schema flavour (no msDS-ExternalDirectoryObjectId), on 127.0.0.2, side by
    /// side with the default one.
    pub fn ensure_2012() -> LabDc {
        resolve(&DC_2012, "2012")
    }

    /// Connector settings for this DC over plain LDAP.
    pub fn ad_config(&self) -> wb_ad::AdConfig {
        wb_ad::AdConfig {
            url: self.url.clone(),
            bind_dn: self.bind_dn.clone(),
            password: self.password.clone(),
            starttls: false,
            ca_file: self.ca_file.clone(),
            tls_verify: true,
            base_dn: self.base_dn.clone(),
            timeout: Duration::from_secs(60),
        }
    }

    /// Creates `OU=<label>-<random>,OU=Tests,<base>` and returns its DN.
    pub async fn fresh_ou(&self, label: &str) -> String {
        let mut ldap = self.ldap().await;
        let tests = format!("{TESTS_OU},{}", self.base_dn);
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let dn = format!("OU={}-{},{tests}", ldap3::dn_escape(label), &suffix[..10]);
        let made = async {
            directory::add_ou(&mut ldap, &tests).await?;
            directory::add_ou(&mut ldap, &dn).await
        };
        made.await
            .unwrap_or_else(|e| panic!("lab: cannot create test OU {dn}: {e}"));
        dn
    }

    /// Creates an OU (no error when it exists).
    pub async fn create_ou(&self, dn: &str) {
        let mut ldap = self.ldap().await;
        directory::add_ou(&mut ldap, dn)
            .await
            .unwrap_or_else(|e| panic!("lab: cannot create OU {dn}: {e}"));
    }

    /// Creates (or finds) the user `CN=<display>,<ou>` with this sAMAccountName.
    pub async fn create_user(&self, ou: &str, sam: &str, display: &str) -> LabUser {
        let mut ldap = self.ldap().await;
        let dn = format!("CN={},{ou}", ldap3::dn_escape(display));
        directory::add_user(&mut ldap, &dn, sam, display, &self.base_dn)
            .await
            .unwrap_or_else(|e| panic!("lab: cannot create user {dn}: {e}"))
    }

    /// Creates (or finds) the group `CN=<cn>,<ou>` with this groupType (sAMAccountName = cn).
    pub async fn create_group(&self, ou: &str, cn: &str, group_type: i32) -> LabGroup {
        let mut ldap = self.ldap().await;
        let dn = format!("CN={},{ou}", ldap3::dn_escape(cn));
        directory::add_group(&mut ldap, &dn, cn, group_type, &[])
            .await
            .unwrap_or_else(|e| panic!("lab: cannot create group {dn}: {e}"))
    }

    /// A bound raw connection (as Administrator), for assertions.
    pub async fn ldap(&self) -> ldap3::Ldap {
        directory::bind(&self.url, &self.bind_dn, &self.password)
            .await
            .unwrap_or_else(|e| panic!("lab: cannot bind to the lab DC at {}: {e}", self.url))
    }
}

fn resolve(cell: &OnceLock<Result<LabDc, String>>, schema: &str) -> LabDc {
    match cell.get_or_init(|| start(schema)) {
        Ok(dc) => dc.clone(),
        Err(why) => panic!(
            "\n\n*** The lab AD DC ({schema} schema) is not available: {why}\n\
             *** Start it as root with: lab/dc{} start   (see lab/README.md)\n\
             *** or point WRITEBACK_LAB_LDAP_URL, _BIND_DN, _PASSWORD, _BASE_DN at a DC.\n\n",
            if schema == "2012" {
                " --schema 2012"
            } else {
                ""
            }
        ),
    }
}

fn start(schema: &str) -> Result<LabDc, String> {
    let from_env: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("WRITEBACK_LAB_"))
        .collect();
    if schema == "2016" && from_env.contains_key("WRITEBACK_LAB_LDAP_URL") {
        return from_lines(&from_env);
    }
    let script = lab_script();
    let mut cmd = std::process::Command::new(&script);
    if schema != "2016" {
        cmd.args(["--schema", schema]);
    }
    let out = cmd
        .arg("start")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} start failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    from_lines(&lines)
}

fn from_lines(vars: &HashMap<String, String>) -> Result<LabDc, String> {
    let get = |k: &str| vars.get(k).cloned().ok_or_else(|| format!("{k} not given"));
    let url = get("WRITEBACK_LAB_LDAP_URL")?;
    let ldaps_url = vars
        .get("WRITEBACK_LAB_LDAPS_URL")
        .cloned()
        .unwrap_or_else(|| {
            url.replacen("ldap://", "ldaps://", 1)
                .replace(":389", ":636")
        });
    Ok(LabDc {
        url,
        bind_dn: get("WRITEBACK_LAB_BIND_DN")?,
        password: get("WRITEBACK_LAB_PASSWORD")?,
        base_dn: get("WRITEBACK_LAB_BASE_DN")?,
        ca_file: vars
            .get("WRITEBACK_LAB_CA_FILE")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
        ldaps_url,
    })
}

/// `lab/dc` of this repository.
pub fn lab_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lab/dc")
}
