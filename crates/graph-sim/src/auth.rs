//! Entra's token endpoint (client credentials with a secret or a certificate-signed
//! client_assertion) and the Bearer check every Graph call passes through.

use crate::error::{GraphError, GraphResult, SimError};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde_json::json;
use sha1::{Digest, Sha1};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The app registration the simulator accepts.
pub struct AuthConfig {
    /// None: any client id is accepted (the flow is still required).
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub certificate: Option<ClientCertificate>,
    pub token_lifetime: Duration,
}

/// The public half of the app's certificate: what verifies a client_assertion.
pub struct ClientCertificate {
    key: jsonwebtoken::DecodingKey,
    /// base64url SHA-1 of the certificate's DER: the `x5t` a signed assertion must name.
    x5t: String,
}

impl ClientCertificate {
    /// Reads a PEM certificate file.
    pub fn from_pem_file(path: &str) -> Result<Self, SimError> {
        let fail = |reason: String| SimError::Certificate {
            path: path.to_string(),
            reason,
        };
        let text = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        let block = pem::parse(&text).map_err(|e| fail(e.to_string()))?;
        if block.tag() != "CERTIFICATE" {
            return Err(fail(format!(
                "expected a CERTIFICATE block, found {}",
                block.tag()
            )));
        }
        let der = block.contents();
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|e| fail(e.to_string()))?;
        let spki = cert.public_key();
        let key = match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => {
                // ASN.1 integers carry a sign byte that the verifier does not want.
                let modulus = strip_leading_zeros(rsa.modulus);
                let exponent = strip_leading_zeros(rsa.exponent);
                jsonwebtoken::DecodingKey::from_rsa_raw_components(modulus, exponent)
            }
            _ => return Err(fail("the certificate's key is not an RSA key".into())),
        };
        let x5t = URL_SAFE_NO_PAD.encode(Sha1::digest(der));
        Ok(ClientCertificate { key, x5t })
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// Issued access tokens and their expiry.
pub struct AuthState {
    pub config: AuthConfig,
    tokens: Mutex<HashMap<String, Instant>>,
}

impl AuthState {
    pub fn new(config: AuthConfig) -> Self {
        AuthState {
            config,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    fn issue(&self) -> String {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        let token = format!("gsim.{}", URL_SAFE_NO_PAD.encode(bytes));
        let expiry = Instant::now() + self.config.token_lifetime;
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.clone(), expiry);
        token
    }

    /// Graph's Bearer check: missing, unknown and expired tokens are each answered as Graph does.
    pub fn check_bearer(&self, headers: &HeaderMap) -> GraphResult<()> {
        let value = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .unwrap_or("")
            .trim();
        if token.is_empty() {
            return Err(GraphError::unauthenticated("Access token is empty."));
        }
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        match tokens.get(token) {
            None => Err(GraphError::unauthenticated(
                "CompactToken parsing failed with error code: 80049217",
            )),
            Some(expiry) if *expiry <= Instant::now() => Err(GraphError::unauthenticated(
                "Lifetime validation failed, the token is expired.",
            )),
            Some(_) => Ok(()),
        }
    }
}

/// An error in Entra's token-endpoint shape (`AADSTS...`).
struct EntraError {
    status: StatusCode,
    error: &'static str,
    code: u32,
    text: String,
}

impl EntraError {
    fn new(status: StatusCode, error: &'static str, code: u32, text: impl Into<String>) -> Self {
        EntraError {
            status,
            error,
            code,
            text: text.into(),
        }
    }
}

impl IntoResponse for EntraError {
    fn into_response(self) -> Response {
        let trace = uuid::Uuid::new_v4().to_string();
        let correlation = uuid::Uuid::new_v4().to_string();
        let timestamp = crate::clock::now_rfc3339_seconds().replace('T', " ");
        let body = json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {timestamp}",
                self.code, self.text
            ),
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.code),
        });
        (self.status, axum::Json(body)).into_response()
    }
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub async fn token(
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match issue_token(&app, &tenant, &headers, &body) {
        Ok(token) => {
            let secs = app.auth.config.token_lifetime.as_secs();
            axum::Json(json!({
                "token_type": "Bearer",
                "expires_in": secs,
                "ext_expires_in": secs,
                "access_token": token,
            }))
            .into_response()
        }
        Err(e) => e.into_response(),
    }
}

fn issue_token(
    app: &AppState,
    tenant: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, EntraError> {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let field = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
    let missing = |name: &str| {
        EntraError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{name}'."),
        )
    };
    let grant = field("grant_type").ok_or_else(|| missing("grant_type"))?;
    if grant != "client_credentials" {
        return Err(EntraError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant}'."),
        ));
    }
    let client_id = field("client_id").ok_or_else(|| missing("client_id"))?;
    let scope = field("scope").ok_or_else(|| missing("scope"))?;
    if !scope.ends_with("/.default") {
        return Err(EntraError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            format!("The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."),
        ));
    }
    let cfg = &app.auth.config;
    if cfg.client_id.as_deref().is_some_and(|id| id != client_id) {
        return Err(EntraError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."),
        ));
    }
    if let Some(secret) = field("client_secret") {
        if cfg.client_secret.as_deref().is_some_and(|s| s != secret) {
            return Err(EntraError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '".to_string() + client_id + "'.",
            ));
        }
        return Ok(app.auth.issue());
    }
    if let Some(assertion) = field("client_assertion") {
        if field("client_assertion_type")
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        {
            return Err(missing("client_assertion_type"));
        }
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        verify_assertion(cfg, assertion, client_id, tenant, host)?;
        return Ok(app.auth.issue());
    }
    Err(EntraError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    ))
}

fn verify_assertion(
    cfg: &AuthConfig,
    assertion: &str,
    client_id: &str,
    tenant: &str,
    host: &str,
) -> Result<(), EntraError> {
    let invalid = |code: u32, text: &str| {
        EntraError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            code,
            text.to_string(),
        )
    };
    let Some(cert) = &cfg.certificate else {
        return Err(invalid(
            700027,
            "Client assertion failed signature validation. No certificate is registered on the application.",
        ));
    };
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| invalid(50027, "JWT token is invalid or malformed."))?;
    if header.x5t.as_deref() != Some(cert.x5t.as_str()) {
        return Err(invalid(
            700027,
            "The certificate with identifier used to sign the client assertion is not registered on application.",
        ));
    }
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_aud = false;
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(assertion, &cert.key, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => invalid(
                700024,
                "Client assertion is not within its valid time range.",
            ),
            jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                invalid(700027, "Client assertion failed signature validation.")
            }
            _ => invalid(50027, "JWT token is invalid or malformed."),
        })?;
    let claims = data.claims;
    let aud = claims.get("aud").and_then(|v| v.as_str()).unwrap_or("");
    let accepted = [
        format!("http://{host}/{tenant}/oauth2/v2.0/token"),
        format!("https://{host}/{tenant}/oauth2/v2.0/token"),
        format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"),
        format!("https://login.microsoftonline.com/{tenant}/v2.0"),
    ];
    if !accepted.iter().any(|a| a == aud) {
        return Err(invalid(
            700021,
            "Client assertion audience claim does not match Realm issuer.",
        ));
    }
    let iss = claims.get("iss").and_then(|v| v.as_str());
    let sub = claims.get("sub").and_then(|v| v.as_str());
    if iss != Some(client_id) || sub != Some(client_id) {
        return Err(invalid(
            700023,
            "Client assertion contains an invalid issuer or subject: both must be the client id.",
        ));
    }
    Ok(())
}
