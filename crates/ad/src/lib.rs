//! wb-ad: writeback's LDAP connector to Active Directory — connect and bind, detect the
//! schema, read groups (paged, with member range retrieval), resolve members, apply actions,
//! and (`acl`) read and extend the permissions of the managed OUs.
//!
//! It knows LDAP and AD, nothing of writeback's rules: the engine decides, this crate sends.

pub mod acl;
mod changes;
mod error;
mod export;
mod identity;
mod read;
mod resolve;
pub mod values;

/// LDAP search requests sent by every connector of this process (for its metrics).
static SEARCHES_TOTAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// LDAP search requests sent so far by every connector of this process (each page counts).
pub fn searches_total() -> u64 {
    SEARCHES_TOTAL.load(std::sync::atomic::Ordering::Relaxed)
}

pub use changes::{ChangedObject, DcState};
pub use error::AdError;
pub use export::{Applied, CreateMark, CreatedGroup, MemberError};
pub use identity::{BindName, BoundIdentity};

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How to reach and bind to a domain controller.
#[derive(Clone)]
pub struct AdConfig {
    /// `ldap://host[:port]` or `ldaps://host[:port]`.
    pub url: String,
    /// The simple-bind name: a DN, a UPN (`svc@corp.example`) or `DOMAIN\user`.
    pub bind_dn: String,
    pub password: String,
    /// Upgrade an `ldap://` connection with StartTLS before binding.
    pub starttls: bool,
    /// PEM file of the CA(s) to trust; the system store when absent.
    pub ca_file: Option<PathBuf>,
    /// false: accept any certificate (lab only).
    pub tls_verify: bool,
    /// The domain's naming context, e.g. `DC=corp,DC=example`: where lookups search.
    pub base_dn: String,
    /// Connection and per-operation timeout.
    pub timeout: Duration,
}

// The password never reaches a log line through Debug.
impl std::fmt::Debug for AdConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdConfig")
            .field("url", &self.url)
            .field("bind_dn", &self.bind_dn)
            .field("password", &"<redacted>")
            .field("starttls", &self.starttls)
            .field("ca_file", &self.ca_file)
            .field("tls_verify", &self.tls_verify)
            .field("base_dn", &self.base_dn)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A bound LDAP connection to one domain controller.
pub struct AdConnector {
    ldap: Ldap,
    base_dn: String,
    timeout: Duration,
    writes: u64,
    searches: u64,
    permissive_modify: bool,
}

impl std::fmt::Debug for AdConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdConnector")
            .field("base_dn", &self.base_dn)
            .field("writes", &self.writes)
            .finish()
    }
}

impl AdConnector {
    /// Connects, optionally upgrades with StartTLS, and binds with the configured account.
    pub async fn connect(cfg: &AdConfig) -> Result<Self, AdError> {
        let tls = cfg.url.to_ascii_lowercase().starts_with("ldaps://") || cfg.starttls;
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(cfg.timeout)
            .set_starttls(cfg.starttls);
        if !cfg.tls_verify {
            tracing::warn!(url = %cfg.url, "TLS certificate verification is OFF for AD");
            settings = settings.set_no_tls_verify(true);
        } else if let Some(path) = &cfg.ca_file {
            settings = settings.set_config(tls_config(path)?);
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &cfg.url)
            .await
            .map_err(|e| connect_error(&cfg.url, tls, cfg.ca_file.as_deref(), e))?;
        ldap3::drive!(conn);
        let bound = ldap
            .with_timeout(cfg.timeout)
            .simple_bind(&cfg.bind_dn, &cfg.password)
            .await
            .map_err(|e| match AdError::from_ldap("bind", &cfg.bind_dn, e) {
                AdError::Ldap { code, message, .. } => AdError::Bind {
                    dn: cfg.bind_dn.clone(),
                    code,
                    message,
                },
                other => other,
            })?;
        if bound.rc != 0 {
            return Err(AdError::Bind {
                dn: cfg.bind_dn.clone(),
                code: bound.rc,
                message: bound.text,
            });
        }
        tracing::debug!(url = %cfg.url, dn = %cfg.bind_dn, "bound to AD");
        Ok(AdConnector {
            ldap,
            base_dn: cfg.base_dn.clone(),
            timeout: cfg.timeout,
            writes: 0,
            searches: 0,
            permissive_modify: true,
        })
    }

    /// Count of LDAP write operations (add, modify, modifyDN, delete) sent so far.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// Count of LDAP search requests sent so far (each page of a paged search counts).
    pub fn searches(&self) -> u64 {
        self.searches
    }

    fn count_search(&mut self) {
        self.searches += 1;
        SEARCHES_TOTAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether member modifies carry the permissive-modify control (default on). Off, the
    /// connector behaves as with a server that lacks it: duplicate adds (68) and absent
    /// removes (53/16) are still success, found by retrying a refused chunk value by value.
    pub fn set_permissive_modify(&mut self, on: bool) {
        self.permissive_modify = on;
    }

    /// Ends the session politely.
    pub async fn unbind(mut self) -> Result<(), AdError> {
        self.ldap
            .unbind()
            .await
            .map_err(|e| AdError::from_ldap("unbind", "", e))
    }

    /// The handle for the next operation, with the per-operation timeout applied.
    fn op(&mut self) -> &mut Ldap {
        self.ldap.with_timeout(self.timeout)
    }
}

fn connect_error(
    url: &str,
    tls: bool,
    ca_file: Option<&std::path::Path>,
    err: ldap3::LdapError,
) -> AdError {
    let message = err.to_string();
    let transport_refused = match &err {
        ldap3::LdapError::Io { source } => {
            matches!(
                source.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::AddrNotAvailable
                    | std::io::ErrorKind::NotFound
            ) && !message.to_ascii_lowercase().contains("certificate")
        }
        ldap3::LdapError::Timeout { .. }
        | ldap3::LdapError::UrlParsing { .. }
        | ldap3::LdapError::UnknownScheme(_) => true,
        _ => false,
    };
    if tls && !transport_refused {
        AdError::Tls {
            url: url.to_string(),
            message: match tls_hint(&message, ca_file) {
                Some(hint) => format!("{hint} ({message})"),
                None => message,
            },
        }
    } else {
        AdError::Connect {
            url: url.to_string(),
            message,
        }
    }
}

/// What an operator must know about a failed TLS handshake, in words: rustls says
/// `UnknownIssuer`, an operator needs "not trusted: set ca_file".
fn tls_hint(message: &str, ca_file: Option<&std::path::Path>) -> Option<String> {
    let m = message.to_ascii_lowercase().replace([' ', '_'], "");
    if m.contains("unknownissuer") || m.contains("unknownca") || m.contains("badsignature") {
        return Some(match ca_file {
            None => "the DC's certificate is not trusted: its issuer is not a CA this host \
                     trusts; set ca_file to the PEM file of the CA that issued it (verification \
                     stays on)"
                .to_string(),
            Some(path) => format!(
                "the DC's certificate is not trusted: ca_file {} does not hold the CA that \
                 issued it",
                path.display()
            ),
        });
    }
    if m.contains("notvalidforname") {
        return Some(
            "the DC's certificate does not name the host in the URL: connect by a name its \
             subjectAltName lists"
                .to_string(),
        );
    }
    if m.contains("expired") {
        return Some("the DC's certificate has expired".to_string());
    }
    None
}

fn tls_config(path: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, AdError> {
    let ca_error = |message: String| AdError::CaFile {
        path: path.display().to_string(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| ca_error(e.to_string()))?;
        roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ca_error("no certificate found in the file".to_string()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ca_error(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}
