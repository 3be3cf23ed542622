//! The configuration file (TOML, SPEC §8): parsed strictly, every mistake reported with
//! the key that holds it; secrets resolved from literal / env / file and never printed.
//!
//! Commands that talk to AD or Graph load it with [`Config::load`] (secrets resolved: a
//! missing one is a mistake naming its key). The commands that read only the state file
//! (`status`, `runs`, `show`, `drift`) use [`Config::load_for_state`]: the whole file is
//! still checked, but no secret is read, so they run without the secrets in the environment.

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use wb_engine::naming::{is_at_or_under, is_valid_dn};
use wb_engine::{EngineConfig, Naming, Rule, RuleKind, RuleMatch};

/// A configuration mistake: the key and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

fn err(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        problem: problem.into(),
    }
}

/// A secret as written in the file: a literal, `{ env = "NAME" }` or `{ file = "PATH" }`.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub enum SecretSource {
    Literal(String),
    Env { env: String },
    File { file: PathBuf },
}

/// A resolved secret. Its Debug and Display never show the value.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl SecretSource {
    fn resolve(&self, key: &str, base: &Path) -> Result<Secret, ConfigError> {
        match self {
            SecretSource::Literal(s) if s.is_empty() => Err(err(key, "is empty")),
            SecretSource::Literal(s) => Ok(Secret(s.clone())),
            SecretSource::Env { env } => match std::env::var(env) {
                Ok(v) if !v.is_empty() => Ok(Secret(v)),
                Ok(_) => Err(err(key, format!("environment variable {env} is empty"))),
                Err(_) => Err(err(key, format!("environment variable {env} is not set"))),
            },
            SecretSource::File { file } => {
                let path = base.join(file);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    err(
                        key,
                        format!("cannot read secret file {}: {e}", path.display()),
                    )
                })?;
                let v = text.trim_end_matches(['\r', '\n']).to_string();
                if v.is_empty() {
                    return Err(err(key, format!("secret file {} is empty", path.display())));
                }
                Ok(Secret(v))
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    graph: RawGraph,
    ad: RawAd,
    #[serde(default)]
    writeback: RawWriteback,
    #[serde(default)]
    dashboard: RawDashboard,
}

/// `[dashboard]`: the web dashboard and service endpoints of `writeback run`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDashboard {
    enabled: Option<bool>,
    listen: Option<String>,
    token: Option<SecretSource>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGraph {
    tenant: String,
    client_id: String,
    client_secret: Option<SecretSource>,
    certificate: Option<RawCertificate>,
    #[serde(default = "default_graph_url")]
    graph_url: String,
    #[serde(default = "default_login_url")]
    login_url: String,
    timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCertificate {
    cert: PathBuf,
    key: PathBuf,
}

fn default_graph_url() -> String {
    "https://graph.microsoft.com".into()
}
fn default_login_url() -> String {
    "https://login.microsoftonline.com".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAd {
    url: String,
    /// The bind account: a DN, a UPN or `DOMAIN\user`.
    bind: Option<String>,
    /// The former name of `bind`, still accepted.
    bind_dn: Option<String>,
    password: SecretSource,
    base_dn: String,
    ou: String,
    #[serde(default)]
    starttls: bool,
    ca_file: Option<PathBuf>,
    #[serde(default = "yes")]
    tls_verify: bool,
    timeout: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWriteback {
    naming: Option<String>,
    state: Option<PathBuf>,
    interval: Option<String>,
    full_interval: Option<String>,
    config_refresh: Option<String>,
    delete_threshold: Option<usize>,
    member_removal_threshold: Option<usize>,
    create_threshold: Option<usize>,
    delete_out_of_scope: Option<bool>,
    staging: Option<bool>,
    legacy_v1: Option<bool>,
    write_owners: Option<bool>,
    m365_member_limit: Option<usize>,
    security_member_limit: Option<usize>,
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(rename = "match")]
    matcher: RawMatch,
    enable: Option<bool>,
    ou: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    kind: Option<String>,
    name_prefix: Option<String>,
    name_regex: Option<String>,
    ids: Option<Vec<String>>,
}

/// How writeback authenticates to Graph.
#[derive(Debug, Clone)]
pub enum GraphCredential {
    Secret(Secret),
    Certificate { cert_pem: String, key_pem: Secret },
}

#[derive(Debug, Clone)]
pub struct GraphSettings {
    pub tenant: String,
    pub client_id: String,
    pub credential: GraphCredential,
    pub graph_url: String,
    pub login_url: String,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct AdSettings {
    pub url: String,
    /// The bind name (config key `ad.bind`, alias `ad.bind_dn`): a DN, a UPN
    /// (`svc@corp.example`) or `DOMAIN\user`, as AD's simple bind accepts them.
    pub bind_dn: String,
    pub password: Secret,
    pub base_dn: String,
    pub ou: String,
    pub starttls: bool,
    pub ca_file: Option<PathBuf>,
    pub tls_verify: bool,
    pub timeout: Duration,
}

/// `[dashboard]`, validated: where `writeback run` serves the dashboard, `/metrics`,
/// `/healthz` and `/readyz`, and the token that protects it (when set).
#[derive(Debug, Clone)]
pub struct DashboardSettings {
    /// `None` when `enabled = false`: no listener at all.
    pub listen: Option<std::net::SocketAddr>,
    /// `listen` was not in the file: the default address, which another process (another
    /// writeback on the host) may hold — then the daemon runs without the dashboard.
    pub listen_is_default: bool,
    /// Required for every page, `/metrics` and POST when set (bearer or login cookie).
    pub token: Option<Secret>,
}

/// The whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub graph: GraphSettings,
    pub ad: AdSettings,
    pub engine: EngineConfig,
    pub state: PathBuf,
    pub interval: Duration,
    pub full_interval: Duration,
    pub config_refresh: Duration,
    pub delete_threshold: usize,
    pub member_removal_threshold: usize,
    /// More creates than this in one cycle (after the first) → nothing is created (exit 4).
    pub create_threshold: usize,
    pub staging: bool,
    pub dashboard: DashboardSettings,
}

/// What the read-only commands need: the state file. Loaded without resolving secrets.
#[derive(Debug, Clone)]
pub struct StateConfig {
    pub state: PathBuf,
}

/// What the AD admin commands (`writeback ad …`) need: the `[ad]` settings with their
/// password, and the managed OUs. Loaded without reading the Graph credential.
#[derive(Debug, Clone)]
pub struct AdAdminConfig {
    pub ad: AdSettings,
    /// `ad.ou` and every `writeback.rule[].ou`, without duplicates.
    pub managed_ous: Vec<String>,
}

impl AdSettings {
    /// The connector's settings.
    pub fn connector(&self) -> wb_ad::AdConfig {
        wb_ad::AdConfig {
            url: self.url.clone(),
            bind_dn: self.bind_dn.clone(),
            password: self.password.expose().to_string(),
            starttls: self.starttls,
            ca_file: self.ca_file.clone(),
            tls_verify: self.tls_verify,
            base_dn: self.base_dn.clone(),
            timeout: self.timeout,
        }
    }
}

fn duration(key: &str, v: Option<&str>, default: &str) -> Result<Duration, ConfigError> {
    let text = v.unwrap_or(default);
    let d = humantime::parse_duration(text).map_err(|e| {
        err(
            key,
            format!("{text:?} is not a duration like \"30s\", \"5m\", \"24h\" ({e})"),
        )
    })?;
    if d.is_zero() {
        return Err(err(key, "must be greater than zero"));
    }
    Ok(d)
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| err("--config", format!("cannot read {}: {e}", path.display())))
}

/// Whether validation reads the secrets (literal, env, file) or leaves them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Secrets {
    Resolve,
    Skip,
    /// `ad.password` only.
    AdOnly,
}

impl Config {
    /// Reads and validates the file at `path`, secrets included.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read(path)?;
        Self::parse(&text, path)
    }

    /// Reads and validates the file at `path` without reading any secret: for the commands
    /// that read only the state file. Every other key is checked as by [`Config::load`].
    pub fn load_for_state(path: &Path) -> Result<StateConfig, ConfigError> {
        let text = read(path)?;
        let cfg = Self::parse_with(&text, path, Secrets::Skip)?;
        // The Config with unread secrets never leaves this module: nothing can bind with it.
        Ok(StateConfig { state: cfg.state })
    }

    /// Reads and validates the file at `path`, resolving `ad.password` but no Graph
    /// credential: for the AD admin commands, which talk only to AD.
    pub fn load_for_ad(path: &Path) -> Result<AdAdminConfig, ConfigError> {
        let text = read(path)?;
        let cfg = Self::parse_with(&text, path, Secrets::AdOnly)?;
        // As above: the Config with an unread Graph credential never leaves this module.
        Ok(AdAdminConfig {
            managed_ous: cfg.engine.managed_ous(),
            ad: cfg.ad,
        })
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Self::parse_with(text, path, Secrets::Resolve)
    }

    fn parse_with(text: &str, path: &Path, secrets: Secrets) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let msg = inner.message().to_string();
            let at = inner
                .span()
                .map(|s| {
                    format!(
                        " (line {})",
                        text[..s.start.min(text.len())].lines().count().max(1)
                    )
                })
                .unwrap_or_default();
            let key = if key == "." || key.is_empty() {
                "config".to_string()
            } else {
                key
            };
            err(key, format!("{msg}{at}"))
        })?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Self::validate(raw, &base, secrets)
    }

    fn validate(raw: RawConfig, base: &Path, secrets: Secrets) -> Result<Config, ConfigError> {
        let resolve = |s: &SecretSource, key: &str| match secrets {
            Secrets::Resolve => s.resolve(key, base),
            Secrets::AdOnly if key == "ad.password" => s.resolve(key, base),
            Secrets::Skip | Secrets::AdOnly => Ok(Secret::default()),
        };
        let g = raw.graph;
        if g.tenant.trim().is_empty() {
            return Err(err("graph.tenant", "is empty"));
        }
        if g.client_id.trim().is_empty() {
            return Err(err("graph.client_id", "is empty"));
        }
        let credential = match (g.client_secret, g.certificate) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "graph.client_secret",
                    "give either client_secret or certificate, not both",
                ))
            }
            (None, None) => {
                return Err(err(
                    "graph.client_secret",
                    "missing: give client_secret or certificate = { cert = \"app.pem\", key = \"app.key\" }",
                ))
            }
            (Some(s), None) => GraphCredential::Secret(resolve(&s, "graph.client_secret")?),
            (None, Some(_)) if secrets != Secrets::Resolve => GraphCredential::Certificate {
                cert_pem: String::new(),
                key_pem: Secret::default(),
            },
            (None, Some(c)) => {
                let cert_path = base.join(&c.cert);
                let cert_pem = std::fs::read_to_string(&cert_path).map_err(|e| {
                    err("graph.certificate.cert", format!("cannot read {}: {e}", cert_path.display()))
                })?;
                if !cert_pem.contains("BEGIN CERTIFICATE") {
                    return Err(err(
                        "graph.certificate.cert",
                        format!("{} holds no PEM certificate", cert_path.display()),
                    ));
                }
                let key = SecretSource::File { file: c.key }.resolve("graph.certificate.key", base)?;
                if !key.expose().contains("PRIVATE KEY") {
                    return Err(err("graph.certificate.key", "the file holds no PEM private key"));
                }
                GraphCredential::Certificate {
                    cert_pem,
                    key_pem: key,
                }
            }
        };
        for (k, v) in [
            ("graph.graph_url", &g.graph_url),
            ("graph.login_url", &g.login_url),
        ] {
            if !(v.starts_with("https://") || v.starts_with("http://")) {
                return Err(err(k, format!("{v:?} is not an http(s) URL")));
            }
        }
        let graph = GraphSettings {
            tenant: g.tenant,
            client_id: g.client_id,
            credential,
            graph_url: g.graph_url.trim_end_matches('/').to_string(),
            login_url: g.login_url.trim_end_matches('/').to_string(),
            timeout: duration("graph.timeout", g.timeout.as_deref(), "60s")?,
        };

        let a = raw.ad;
        let ldaps = a.url.starts_with("ldaps://");
        if !(ldaps || a.url.starts_with("ldap://")) {
            return Err(err(
                "ad.url",
                format!("{:?} must start with ldap:// or ldaps://", a.url),
            ));
        }
        if ldaps && a.starttls {
            return Err(err(
                "ad.starttls",
                "starttls is for ldap:// URLs; ldaps:// is already TLS",
            ));
        }
        let (bind_key, bind) =
            match (a.bind, a.bind_dn) {
                (Some(_), Some(_)) => return Err(err(
                    "ad.bind",
                    "ad.bind and ad.bind_dn (its former name) are both given: keep ad.bind only",
                )),
                (None, None) => return Err(err(
                    "ad.bind",
                    "missing: the bind account as a DN, a UPN (svc@corp.example) or DOMAIN\\user",
                )),
                (Some(b), None) => ("ad.bind", b),
                (None, Some(b)) => ("ad.bind_dn", b),
            };
        if bind.trim().is_empty() {
            return Err(err(bind_key, "is empty"));
        }
        if wb_ad::BindName::parse(&bind).is_none() {
            return Err(err(
                bind_key,
                format!(
                    "{bind:?} is not a distinguished name, a UPN (svc@corp.example) or DOMAIN\\user"
                ),
            ));
        }
        for (k, v) in [("ad.base_dn", &a.base_dn), ("ad.ou", &a.ou)] {
            if !is_valid_dn(v) {
                return Err(err(k, format!("{v:?} is not a distinguished name")));
            }
        }
        if !is_at_or_under(&a.ou, &a.base_dn) {
            return Err(err(
                "ad.ou",
                format!("{:?} is not under ad.base_dn {:?}", a.ou, a.base_dn),
            ));
        }
        if !a.tls_verify {
            tracing::warn!("ad.tls_verify = false: the directory's TLS certificate is NOT checked; use only in a lab");
        }
        let ca_file = a.ca_file.map(|p| base.join(p));
        if let Some(ca) = &ca_file {
            if !ca.is_file() {
                return Err(err(
                    "ad.ca_file",
                    format!("{} does not exist", ca.display()),
                ));
            }
        }
        let ad = AdSettings {
            password: resolve(&a.password, "ad.password")?,
            url: a.url,
            bind_dn: bind.trim().to_string(),
            base_dn: a.base_dn,
            ou: a.ou,
            starttls: a.starttls,
            ca_file,
            tls_verify: a.tls_verify,
            timeout: duration("ad.timeout", a.timeout.as_deref(), "30s")?,
        };

        let w = raw.writeback;
        // One rule, one place: the engine's parsers read the values it defines.
        let naming: Naming = w
            .naming
            .as_deref()
            .unwrap_or("object-id")
            .parse()
            .map_err(|e| err("writeback.naming", format!("{e}")))?;
        let mut rules = Vec::new();
        for (i, r) in w.rule.into_iter().enumerate() {
            let key = |k: &str| format!("writeback.rule[{i}].{k}");
            let kind = r
                .matcher
                .kind
                .as_deref()
                .map(str::parse::<RuleKind>)
                .transpose()
                .map_err(|e| err(key("match.kind"), format!("{e}")))?;
            let name_regex = match &r.matcher.name_regex {
                None => None,
                Some(re) => Some(regex::Regex::new(re).map_err(|e| {
                    err(
                        key("match.name_regex"),
                        format!("invalid regular expression: {e}"),
                    )
                })?),
            };
            let ids = r.matcher.ids.clone().unwrap_or_default();
            if kind.is_none()
                && r.matcher.name_prefix.is_none()
                && name_regex.is_none()
                && ids.is_empty()
            {
                return Err(err(
                    key("match"),
                    "matches every group: give at least one of kind, name_prefix, name_regex, ids",
                ));
            }
            if r.enable.is_none() && r.ou.is_none() {
                return Err(err(
                    key("enable"),
                    "a rule needs enable = true/false, ou = \"...\", or both",
                ));
            }
            if let Some(ou) = &r.ou {
                if !is_valid_dn(ou) {
                    return Err(err(
                        key("ou"),
                        format!("{ou:?} is not a distinguished name"),
                    ));
                }
                if !is_at_or_under(ou, &ad.base_dn) {
                    return Err(err(
                        key("ou"),
                        format!("{ou:?} is not under ad.base_dn {:?}", ad.base_dn),
                    ));
                }
            }
            rules.push(Rule {
                matcher: RuleMatch {
                    kind,
                    name_prefix: r.matcher.name_prefix,
                    name_regex,
                    ids: ids.iter().map(|s| s.to_ascii_lowercase()).collect(),
                },
                enable: r.enable,
                ou: r.ou.map(Into::into),
            });
        }
        let dashboard = dashboard_settings(raw.dashboard, &resolve)?;
        let engine = EngineConfig {
            naming,
            default_ou: ad.ou.clone().into(),
            rules,
            delete_out_of_scope: w.delete_out_of_scope.unwrap_or(false),
            legacy_v1: w.legacy_v1.unwrap_or(false),
            write_owners: w.write_owners.unwrap_or(false),
            m365_member_limit: w.m365_member_limit.unwrap_or(50_000),
            security_member_limit: w.security_member_limit.unwrap_or(250_000),
        };
        Ok(Config {
            graph,
            state: base.join(w.state.unwrap_or_else(|| PathBuf::from("writeback.db"))),
            interval: duration("writeback.interval", w.interval.as_deref(), "30s")?,
            full_interval: duration("writeback.full_interval", w.full_interval.as_deref(), "24h")?,
            config_refresh: duration(
                "writeback.config_refresh",
                w.config_refresh.as_deref(),
                "5m",
            )?,
            delete_threshold: w.delete_threshold.unwrap_or(500),
            member_removal_threshold: w.member_removal_threshold.unwrap_or(10_000),
            create_threshold: w.create_threshold.unwrap_or(1_000),
            staging: w.staging.unwrap_or(false),
            dashboard,
            ad,
            engine,
        })
    }
}

/// The dashboard's default address: loopback only.
pub const DEFAULT_DASHBOARD_LISTEN: &str = "127.0.0.1:8080";

fn dashboard_settings(
    d: RawDashboard,
    resolve: &dyn Fn(&SecretSource, &str) -> Result<Secret, ConfigError>,
) -> Result<DashboardSettings, ConfigError> {
    let text = d.listen.as_deref().unwrap_or(DEFAULT_DASHBOARD_LISTEN);
    let listen: std::net::SocketAddr = text.trim().parse().map_err(|_| {
        err(
            "dashboard.listen",
            format!("{text:?} is not an address and port like \"127.0.0.1:8080\" (to turn the dashboard off: enabled = false)"),
        )
    })?;
    let token = d
        .token
        .as_ref()
        .map(|t| resolve(t, "dashboard.token"))
        .transpose()?;
    if d.enabled == Some(false) {
        return Ok(DashboardSettings {
            listen: None,
            listen_is_default: d.listen.is_none(),
            token,
        });
    }
    if token.is_none() && !listen.ip().is_loopback() {
        tracing::warn!(%listen, "dashboard.listen is not a loopback address and no dashboard.token is set: anyone who reaches it can read the dashboard and start a cycle");
    }
    Ok(DashboardSettings {
        listen: Some(listen),
        listen_is_default: d.listen.is_none(),
        token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[graph]
tenant = "contoso.onmicrosoft.com"
client_id = "00000000-0000-0000-0000-000000000000"
client_secret = "s3cret-value"

[ad]
url = "ldap://127.0.0.1:389"
bind_dn = "CN=Administrator,CN=Users,DC=lab,DC=example,DC=test"
password = "pw"
base_dn = "DC=lab,DC=example,DC=test"
ou = "OU=Groups,OU=Writeback,DC=lab,DC=example,DC=test"

[writeback]
naming = "display-name"
interval = "5s"

[[writeback.rule]]
match = { kind = "security", name_prefix = "SG-" }
enable = true
ou = "OU=Security,OU=Writeback,DC=lab,DC=example,DC=test"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/tmp/writeback.toml"))
    }

    #[test]
    fn the_specs_example_config_is_accepted() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.interval, Duration::from_secs(5));
        assert_eq!(c.delete_threshold, 500);
        assert_eq!(c.member_removal_threshold, 10_000);
        assert_eq!(c.engine.rules.len(), 1);
        assert_eq!(c.engine.naming, Naming::DisplayName);
        assert_eq!(c.state, PathBuf::from("/tmp/writeback.db"));
    }

    #[test]
    fn an_unknown_key_is_named() {
        let e = parse(&GOOD.replace("interval = \"5s\"", "intervall = \"5s\"")).unwrap_err();
        assert_eq!(e.key, "writeback.intervall");
        assert!(e.problem.contains("intervall"), "{e}");
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let e = parse(&GOOD.replace("naming = \"display-name\"", "naming = \"cn\"")).unwrap_err();
        assert_eq!(e.key, "writeback.naming");
        let e = parse(&GOOD.replace("interval = \"5s\"", "interval = \"soon\"")).unwrap_err();
        assert_eq!(e.key, "writeback.interval");
        let e = parse(&GOOD.replace("interval = \"5s\"", "interval = 5")).unwrap_err();
        assert_eq!(e.key, "writeback.interval", "{e}");
        let e = parse(&GOOD.replace("kind = \"security\"", "kind = \"dl\"")).unwrap_err();
        assert_eq!(e.key, "writeback.rule[0].match.kind");
        let e = parse(&GOOD.replace("url = \"ldap://", "url = \"http://")).unwrap_err();
        assert_eq!(e.key, "ad.url");
    }

    #[test]
    fn secrets_come_from_env_and_file_and_never_show_in_debug() {
        std::env::set_var("WB_TEST_SECRET_X", "from-env");
        let c = parse(&GOOD.replace("\"s3cret-value\"", "{ env = \"WB_TEST_SECRET_X\" }")).unwrap();
        let GraphCredential::Secret(s) = &c.graph.credential else {
            panic!()
        };
        assert_eq!(s.expose(), "from-env");
        assert!(!format!("{c:?}").contains("from-env"));
        let e = parse(&GOOD.replace("\"s3cret-value\"", "{ env = \"WB_TEST_SECRET_UNSET\" }"))
            .unwrap_err();
        assert_eq!(e.key, "graph.client_secret");
        let dir = std::env::temp_dir().join(format!("wbcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pw"), "file-secret\n").unwrap();
        let c = Config::parse(
            &GOOD.replace("password = \"pw\"", "password = { file = \"pw\" }"),
            &dir.join("writeback.toml"),
        )
        .unwrap();
        assert_eq!(c.ad.password.expose(), "file-secret");
    }

    #[test]
    fn an_ou_outside_the_base_dn_is_refused() {
        let e = parse(&GOOD.replace(
            "ou = \"OU=Groups,OU=Writeback,DC=lab,DC=example,DC=test\"",
            "ou = \"OU=Groups,DC=other,DC=test\"",
        ))
        .unwrap_err();
        assert_eq!(e.key, "ad.ou");
    }

    #[test]
    fn the_bind_account_is_a_dn_a_upn_or_domain_backslash_user() {
        let dn = "bind_dn = \"CN=Administrator,CN=Users,DC=lab,DC=example,DC=test\"";
        for (line, want) in [
            (
                dn.to_string(),
                "CN=Administrator,CN=Users,DC=lab,DC=example,DC=test",
            ),
            (
                "bind = \"Administrator@LAB.EXAMPLE.TEST\"".into(),
                "Administrator@LAB.EXAMPLE.TEST",
            ),
            ("bind = 'LAB\\Administrator'".into(), "LAB\\Administrator"),
            (
                "bind = \"CN=svc,DC=lab,DC=example,DC=test\"".into(),
                "CN=svc,DC=lab,DC=example,DC=test",
            ),
        ] {
            let c = parse(&GOOD.replace(dn, &line)).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(c.ad.bind_dn, want);
        }
        for (line, key) in [
            ("bind = \"\"", "ad.bind"),
            ("bind = \"svc-writeback\"", "ad.bind"),
            ("bind = \"svc@\"", "ad.bind"),
            ("bind_dn = \"  \"", "ad.bind_dn"),
            ("bind_dn = \"administrator\"", "ad.bind_dn"),
        ] {
            let e = parse(&GOOD.replace(dn, line)).unwrap_err();
            assert_eq!(e.key, key, "{line}: {e}");
        }
        let both = GOOD.replace(dn, &format!("{dn}\nbind = \"svc@lab.example.test\""));
        let e = parse(&both).unwrap_err();
        assert_eq!(e.key, "ad.bind");
        assert!(e.problem.contains("ad.bind_dn"), "{e}");
        let e = parse(&GOOD.replace(dn, "")).unwrap_err();
        assert_eq!(e.key, "ad.bind");
    }

    #[test]
    fn the_create_threshold_defaults_to_a_thousand() {
        assert_eq!(parse(GOOD).unwrap().create_threshold, 1_000);
        let c = parse(&GOOD.replace("interval = \"5s\"", "create_threshold = 3")).unwrap();
        assert_eq!(c.create_threshold, 3);
        let e = parse(&GOOD.replace("interval = \"5s\"", "create_threshold = -1")).unwrap_err();
        assert_eq!(e.key, "writeback.create_threshold");
    }

    #[test]
    fn the_state_commands_load_without_the_secrets_but_not_without_checks() {
        let text = GOOD
            .replace("\"s3cret-value\"", "{ env = \"WB_TEST_SECRET_NEVER_SET\" }")
            .replace(
                "password = \"pw\"",
                "password = { file = \"/nonexistent/pw\" }",
            );
        let dir = std::env::temp_dir().join(format!("wbcfg-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("writeback.toml");
        std::fs::write(&path, &text).unwrap();
        let e = Config::load(&path).unwrap_err();
        assert_eq!(e.key, "graph.client_secret");
        let state = Config::load_for_state(&path).unwrap();
        assert_eq!(state.state, dir.join("writeback.db"));
        std::fs::write(
            &path,
            text.replace("interval = \"5s\"", "interval = \"soon\""),
        )
        .unwrap();
        assert_eq!(
            Config::load_for_state(&path).unwrap_err().key,
            "writeback.interval"
        );
    }

    #[test]
    fn the_ad_commands_read_the_ad_password_but_no_graph_credential() {
        let text = GOOD.replace("\"s3cret-value\"", "{ env = \"WB_TEST_SECRET_NEVER_SET\" }");
        let dir = std::env::temp_dir().join(format!("wbcfg-ad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("writeback.toml");
        std::fs::write(&path, &text).unwrap();
        let ad = Config::load_for_ad(&path).unwrap();
        assert_eq!(ad.ad.password.expose(), "pw");
        assert_eq!(
            ad.managed_ous,
            Config::parse(GOOD, &path).unwrap().engine.managed_ous()
        );
        std::fs::write(
            &path,
            text.replace(
                "password = \"pw\"",
                "password = { env = \"WB_TEST_AD_PW_NEVER_SET\" }",
            ),
        )
        .unwrap();
        assert_eq!(Config::load_for_ad(&path).unwrap_err().key, "ad.password");
    }

    #[test]
    fn the_dashboard_listens_on_loopback_by_default_and_can_be_turned_off() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.dashboard.listen, Some("127.0.0.1:8080".parse().unwrap()));
        assert!(c.dashboard.token.is_none());
        assert!(c.dashboard.listen_is_default);
        let c = parse(&format!("{GOOD}\n[dashboard]\nenabled = false\n")).unwrap();
        assert_eq!(c.dashboard.listen, None);
        let c = parse(&format!(
            "{GOOD}\n[dashboard]\nlisten = \"127.0.0.1:9310\"\ntoken = \"dash-secret\"\n"
        ))
        .unwrap();
        assert_eq!(c.dashboard.listen, Some("127.0.0.1:9310".parse().unwrap()));
        assert_eq!(
            c.dashboard.token.as_ref().map(Secret::expose),
            Some("dash-secret")
        );
        assert!(!format!("{c:?}").contains("dash-secret"));
        for (extra, key) in [
            ("listen = \"localhost\"", "dashboard.listen"),
            ("listen = \"\"", "dashboard.listen"),
            ("token = \"\"", "dashboard.token"),
            (
                "token = { env = \"WB_TEST_DASH_UNSET\" }",
                "dashboard.token",
            ),
            ("port = 8080", "dashboard.port"),
            ("enabled = \"no\"", "dashboard.enabled"),
        ] {
            let e = parse(&format!("{GOOD}\n[dashboard]\n{extra}\n")).unwrap_err();
            assert_eq!(e.key, key, "{extra}: {e}");
        }
    }

    /// The fuzz target's checks (`fuzz/checks/config.rs`), run here on its seed corpus.
    mod fuzz_checks {
        include!("../../../fuzz/checks/config.rs");
    }

    #[test]
    fn the_config_fuzz_corpus_is_accepted_or_refused_naming_a_key() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/config");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("fuzz/corpus/config") {
            let data = std::fs::read(entry.expect("corpus entry").path()).expect("corpus file");
            fuzz_checks::check(&data);
            n += 1;
        }
        assert!(n > 0, "no corpus in {}", dir.display());
    }

    #[test]
    fn no_secret_shows_in_the_debug_output_of_any_configuration_struct() {
        let dir = std::env::temp_dir().join(format!("wbcfg-debug-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("app.pem"),
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("app.key"),
            "-----BEGIN PRIVATE KEY-----\nkey-material-s3cret\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let text = format!("{GOOD}\n[dashboard]\ntoken = \"dash-s3cret\"\n")
            .replace("password = \"pw\"", "password = \"ad-pw-s3cret\"");
        let path = dir.join("writeback.toml");
        let by_secret = Config::parse(&text, &path).unwrap();
        let by_cert = Config::parse(
            &text.replace(
                "client_secret = \"s3cret-value\"",
                "certificate = { cert = \"app.pem\", key = \"app.key\" }",
            ),
            &path,
        )
        .unwrap();
        std::fs::write(&path, &text).unwrap();
        let ad_admin = Config::load_for_ad(&path).unwrap();
        let state = Config::load_for_state(&path).unwrap();
        let shown = [
            format!("{by_secret:?}"),
            format!("{by_secret:#?}"),
            format!("{by_cert:?}"),
            format!("{:?}", by_secret.graph),
            format!("{:?}", by_secret.graph.credential),
            format!("{:?}", by_cert.graph.credential),
            format!("{:?}", by_secret.ad),
            format!("{:?}", by_secret.ad.connector()),
            format!("{:?}", by_secret.dashboard),
            format!("{ad_admin:?}"),
            format!("{state:?}"),
            format!("{:?}", crate::cycle::graph_config(&by_secret)),
            format!("{:?}", crate::cycle::graph_config(&by_cert)),
            format!("{:?}", crate::cycle::graph_client(&by_secret).unwrap()),
        ];
        for text in &shown {
            for secret in [
                "s3cret-value",
                "ad-pw-s3cret",
                "dash-s3cret",
                "key-material-s3cret",
            ] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
        }
        assert!(
            shown[0].contains("ad.example") || shown[0].contains("lab"),
            "Debug still shows the rest"
        );
    }

    #[test]
    fn a_configuration_error_never_echoes_a_secret() {
        let text = GOOD.replace("password = \"pw\"", "password = \"ad-pw-s3cret\"");
        for (broken, key) in [
            (text.replace("\"ad-pw-s3cret\"", "\"ad-pw-s3cret"), None),
            (
                text.replace("\"ad-pw-s3cret\"", "\"ad-pw-s3cret\" oops"),
                None,
            ),
            (
                text.replace("\"ad-pw-s3cret\"", "[\"ad-pw-s3cret\", 1]"),
                Some("ad.password"),
            ),
            (
                text.replace("\"ad-pw-s3cret\"", "{ value = \"ad-pw-s3cret\" }"),
                Some("ad.password"),
            ),
            (
                text.replace(
                    "\"s3cret-value\"",
                    "\"s3cret-value\"\nclient_secret = \"s3cret-value\"",
                ),
                None,
            ),
        ] {
            let e = parse(&broken).unwrap_err();
            if let Some(key) = key {
                assert_eq!(e.key, key, "{e}");
            }
            for secret in ["ad-pw-s3cret", "s3cret-value"] {
                assert!(!e.to_string().contains(secret), "{e}");
            }
        }
    }

    #[test]
    fn dn_containment_is_the_engines_rfc_4514_one() {
        let base = "DC=lab,DC=example,DC=test";
        let with_ou = |ou: &str| {
            GOOD.replace(
                "ou = \"OU=Security,OU=Writeback,DC=lab,DC=example,DC=test\"",
                &format!("ou = '{ou}'"),
            )
        };
        // Case and spaces around separators do not matter.
        parse(&with_ou("ou=security , dc=LAB,dc=example, dc=test")).unwrap();
        // One RDN whose value holds an escaped comma is not under the base DN (the naive
        // comparison, splitting the text at every comma, said it was).
        for evil in [
            r"OU=Evil\,DC=lab,DC=example,DC=test",
            r"OU=Evil\2CDC=lab,DC=example,DC=test",
        ] {
            assert!(!is_at_or_under(evil, base), "{evil}");
            let e = parse(&with_ou(evil)).unwrap_err();
            assert_eq!(e.key, "writeback.rule[0].ou", "{evil}: {e}");
        }
        let e = parse(&with_ou(r"OU=a\zz,DC=lab,DC=example,DC=test")).unwrap_err();
        assert_eq!(e.key, "writeback.rule[0].ou");
        assert!(e.problem.contains("not a distinguished name"), "{e}");
        let e = parse(&GOOD.replace(
            "base_dn = \"DC=lab,DC=example,DC=test\"",
            "base_dn = \"lab.example.test=\"",
        ))
        .unwrap_err();
        assert_eq!(e.key, "ad.base_dn");
    }

    #[test]
    fn the_ad_ou_may_be_spelled_differently_from_the_base_dn() {
        let c = parse(&GOOD.replace(
            "ou = \"OU=Groups,OU=Writeback,DC=lab,DC=example,DC=test\"",
            "ou = 'ou=groups, ou=writeback, dc=Lab, 0.9.2342.19200300.100.1.25=example, DC=test'",
        ))
        .unwrap();
        assert!(wb_engine::naming::dn_eq(
            &c.engine.default_ou,
            "OU=Groups,OU=Writeback,DC=lab,DC=example,DC=test"
        ));
    }

    fn with_kind(kind: &str) -> String {
        GOOD.replace(
            "kind = \"security\"",
            &format!("kind = {}", toml_string(kind)),
        )
    }

    fn toml_string(s: &str) -> String {
        toml::Value::String(s.to_string()).to_string()
    }

    #[test]
    fn the_config_accepts_exactly_the_rule_kinds_the_engine_accepts() {
        // The CLI's own parser refused "M365" and "microsoft-365", which the engine accepts.
        for kind in [
            "M365",
            "m365",
            "Microsoft365",
            "microsoft-365",
            "unified",
            "SECURITY",
        ] {
            let want: RuleKind = kind.parse().unwrap();
            let c = parse(&with_kind(kind)).unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(c.engine.rules[0].matcher.kind, Some(want), "{kind}");
        }
        let e = parse(&with_kind("dl")).unwrap_err();
        assert_eq!(e.key, "writeback.rule[0].match.kind");
        assert!(e.problem.contains("microsoft365, security"), "{e}");
    }

    #[test]
    fn the_config_accepts_exactly_the_naming_modes_the_engine_accepts() {
        for naming in [
            "object-id",
            "display-name",
            " display-name",
            "cn",
            "Object-Id",
            "",
        ] {
            let text = GOOD.replace(
                "naming = \"display-name\"",
                &format!("naming = {}", toml_string(naming)),
            );
            match (naming.parse::<Naming>(), parse(&text)) {
                (Ok(want), Ok(c)) => assert_eq!(c.engine.naming, want),
                (Err(_), Err(e)) => assert_eq!(e.key, "writeback.naming"),
                (engine, config) => panic!(
                    "{naming:?}: engine {:?}, config {:?}",
                    engine.is_ok(),
                    config.map(|_| ())
                ),
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn a_rule_kind_parses_in_the_config_iff_the_engine_parses_it(
            kind in "[ a-zA-Z0-9_-]{0,14}|(?i:m365|microsoft365|microsoft-365|unified|security)",
        ) {
            let engine = kind.parse::<RuleKind>();
            let config = parse(&with_kind(&kind));
            match (engine, config) {
                (Ok(want), Ok(c)) => proptest::prop_assert_eq!(c.engine.rules[0].matcher.kind, Some(want)),
                (Err(_), Err(e)) => proptest::prop_assert_eq!(e.key, "writeback.rule[0].match.kind"),
                (engine, config) => proptest::prop_assert!(
                    false,
                    "{:?}: engine {:?}, config {:?}",
                    kind,
                    engine,
                    config.map(|_| ())
                ),
            }
        }
    }
}
