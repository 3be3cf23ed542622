//! The OAuth 2.0 client-credentials grant against the Microsoft identity platform: a
//! client secret, or a `client_assertion` JWT signed with the app's certificate key.

use crate::error::display_url;
use crate::{Credential, GraphConfig, GraphError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How the token request proves who we are.
pub(crate) enum Proof {
    Secret(String),
    Assertion { key: EncodingKey, x5t: String },
}

impl Proof {
    pub(crate) fn from_credential(credential: &Credential) -> Result<Self, GraphError> {
        match credential {
            Credential::Secret(s) => Ok(Proof::Secret(s.clone())),
            Credential::Certificate { cert_pem, key_pem } => {
                let blocks =
                    pem::parse_many(cert_pem.as_bytes()).map_err(|e| GraphError::Config {
                        message: format!("certificate PEM unreadable: {e}"),
                    })?;
                let cert = blocks
                    .iter()
                    .find(|b| b.tag() == "CERTIFICATE")
                    .ok_or_else(|| GraphError::Config {
                        message: "certificate PEM holds no CERTIFICATE block".to_string(),
                    })?;
                // x5t: base64url of the SHA-1 thumbprint of the DER certificate; Entra
                // uses it to pick the registered certificate that verifies the signature.
                let x5t = URL_SAFE_NO_PAD.encode(Sha1::digest(cert.contents()));
                let key = EncodingKey::from_rsa_pem(key_pem.as_bytes()).map_err(|e| {
                    GraphError::Config {
                        message: format!("certificate key is not an RSA private key in PEM: {e}"),
                    }
                })?;
                Ok(Proof::Assertion { key, x5t })
            }
        }
    }
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: u64,
    iat: u64,
    exp: u64,
}

/// A token and when to stop using it.
pub(crate) struct CachedToken {
    pub(crate) access_token: String,
    pub(crate) refresh_at: Instant,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct TokenRefusal {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// `{login_url}/{tenant}/oauth2/v2.0/token`.
pub(crate) fn token_endpoint(cfg: &GraphConfig) -> String {
    format!(
        "{}/{}/oauth2/v2.0/token",
        cfg.login_url.trim_end_matches('/'),
        cfg.tenant
    )
}

/// The `.default` scope of the Graph resource in use: a Microsoft cloud's own host, or
/// the public one when Graph is reached at a local address (the lab's simulator).
pub(crate) fn graph_scope(graph_url: &str) -> String {
    const PUBLIC: &str = "https://graph.microsoft.com/.default";
    let Ok(u) = url::Url::parse(graph_url) else {
        return PUBLIC.to_string();
    };
    match u.host() {
        Some(url::Host::Domain(d)) if u.scheme() == "https" && d != "localhost" => {
            format!("https://{d}/.default")
        }
        _ => PUBLIC.to_string(),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Builds the form of one token request.
pub(crate) fn token_form(
    cfg: &GraphConfig,
    proof: &Proof,
    endpoint: &str,
) -> Result<Vec<(&'static str, String)>, GraphError> {
    let mut form = vec![
        ("grant_type", "client_credentials".to_string()),
        ("client_id", cfg.client_id.clone()),
        ("scope", graph_scope(&cfg.graph_url)),
    ];
    match proof {
        Proof::Secret(s) => form.push(("client_secret", s.clone())),
        Proof::Assertion { key, x5t } => {
            let mut header = Header::new(Algorithm::RS256);
            header.x5t = Some(x5t.clone());
            let now = unix_now();
            let claims = AssertionClaims {
                aud: endpoint,
                iss: &cfg.client_id,
                sub: &cfg.client_id,
                jti: uuid::Uuid::new_v4().to_string(),
                nbf: now,
                iat: now,
                exp: now + 600,
            };
            let jwt =
                jsonwebtoken::encode(&header, &claims, key).map_err(|e| GraphError::Config {
                    message: format!("cannot sign the client assertion: {e}"),
                })?;
            form.push((
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
            ));
            form.push(("client_assertion", jwt));
        }
    }
    Ok(form)
}

/// Reads the token endpoint's answer: a token, or its refusal with the AADSTS text.
pub(crate) fn read_token_answer(
    endpoint: &str,
    status: u16,
    body: &[u8],
) -> Result<CachedToken, GraphError> {
    if (200..300).contains(&status) {
        let answer: TokenAnswer = serde_json::from_slice(body).map_err(|e| GraphError::Decode {
            url: display_url(endpoint),
            message: format!("token answer: {e}"),
        })?;
        // expires_in is a number of seconds (older endpoints sent it as a string).
        let lifetime = match &answer.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .unwrap_or(3599);
        // Renew 5 minutes early (or at half the life of a short-lived token), so a
        // request never leaves with a token that expires on the way.
        let margin = (lifetime / 2).min(300);
        Ok(CachedToken {
            access_token: answer.access_token,
            refresh_at: Instant::now() + Duration::from_secs(lifetime - margin),
        })
    } else {
        let refusal: TokenRefusal = serde_json::from_slice(body).unwrap_or(TokenRefusal {
            error: None,
            error_description: None,
        });
        let text = String::from_utf8_lossy(body);
        Err(GraphError::Auth {
            status,
            code: refusal.error.unwrap_or_else(|| "unknown".to_string()),
            message: refusal
                .error_description
                .unwrap_or_else(|| format!("token endpoint {endpoint} answered: {}", text.trim())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_follows_the_graph_host_of_a_national_cloud() {
        assert_eq!(
            graph_scope("https://graph.microsoft.us"),
            "https://graph.microsoft.us/.default"
        );
        assert_eq!(
            graph_scope("http://127.0.0.1:8080"),
            "https://graph.microsoft.com/.default"
        );
    }

    #[test]
    fn refusal_carries_the_aadsts_text() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#;
        match read_token_answer("https://login/x/oauth2/v2.0/token", 401, body) {
            Err(GraphError::Auth {
                status,
                code,
                message,
            }) => {
                assert_eq!(status, 401);
                assert_eq!(code, "invalid_client");
                assert!(message.starts_with("AADSTS7000215"));
            }
            other => panic!("expected Auth, got {:?}", other.map(|t| t.access_token)),
        }
    }

    fn throwaway_cert(dir: &std::path::Path) -> (String, String) {
        let (key, cert) = (dir.join("app.key"), dir.join("app.pem"));
        let out = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=writeback-unit-test", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            std::fs::read_to_string(cert).unwrap(),
            std::fs::read_to_string(key).unwrap(),
        )
    }

    fn jwt_part(jwt: &str, n: usize) -> serde_json::Value {
        let part = jwt.split('.').nth(n).expect("three JWT parts");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn client_assertion_names_the_certificate_and_the_token_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_pem, key_pem) = throwaway_cert(dir.path());
        let der = pem::parse(cert_pem.as_bytes()).unwrap().into_contents();
        let cfg = GraphConfig::new(
            "contoso.onmicrosoft.com",
            "app-id",
            Credential::Certificate { cert_pem, key_pem },
        );
        let proof = Proof::from_credential(&cfg.credential).unwrap();
        let endpoint = token_endpoint(&cfg);
        assert_eq!(
            endpoint,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        let form = token_form(&cfg, &proof, &endpoint).unwrap();
        let field = |k: &str| form.iter().find(|(f, _)| *f == k).map(|(_, v)| v.clone());
        assert_eq!(field("client_secret"), None);
        assert_eq!(
            field("client_assertion_type").as_deref(),
            Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        );
        let jwt = field("client_assertion").expect("an assertion");
        let header = jwt_part(&jwt, 0);
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["x5t"], URL_SAFE_NO_PAD.encode(Sha1::digest(&der)));
        let claims = jwt_part(&jwt, 1);
        assert_eq!(claims["aud"], endpoint);
        assert_eq!(claims["iss"], "app-id");
        assert_eq!(claims["sub"], "app-id");
        assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
        assert!(claims["exp"].as_u64() > claims["nbf"].as_u64());
        let second = token_form(&cfg, &proof, &endpoint).unwrap();
        assert_ne!(second, form, "every assertion has its own jti");
    }

    #[test]
    fn key_that_is_not_rsa_pem_is_a_configuration_error() {
        let c = Credential::Certificate {
            cert_pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
            key_pem: "not a key".into(),
        };
        assert!(matches!(
            Proof::from_credential(&c),
            Err(GraphError::Config { .. })
        ));
    }

    #[test]
    fn secret_never_shows_in_debug() {
        let c = Credential::Secret("hunter2-very-secret".into());
        let cfg = GraphConfig::new("t", "c", c);
        assert!(!format!("{cfg:?}").contains("hunter2"));
        let c = Credential::Certificate {
            cert_pem: "CERT".into(),
            key_pem: "-----BEGIN PRIVATE KEY-----SECRETKEY".into(),
        };
        assert!(!format!("{c:?}").contains("SECRETKEY"));
    }
}
