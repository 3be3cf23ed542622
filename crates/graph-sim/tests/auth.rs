//! The token endpoint (secret and certificate assertions) and the Bearer check, over HTTP.

mod support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::json;
use sha1::{Digest, Sha1};
use support::*;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A client_assertion signed with `key`, naming `cert`'s thumbprint in x5t.
fn assertion(key: &str, cert: &str, aud: &str, exp: u64, client_id: &str) -> String {
    let key_pem = std::fs::read(fixture(key)).unwrap();
    let cert_pem = std::fs::read(fixture(cert)).unwrap();
    let der = pem::parse(cert_pem).unwrap().into_contents();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.x5t = Some(URL_SAFE_NO_PAD.encode(Sha1::digest(&der)));
    let claims = json!({
        "aud": aud, "iss": client_id, "sub": client_id,
        "jti": "4b5c1bcb-2b5e-4b5b-9a1e-000000000001", "nbf": now() - 10, "exp": exp,
    });
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&key_pem).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

async fn assertion_request(sim: &Sim, jwt: &str) -> (StatusCode, serde_json::Value) {
    sim.token_request(&[
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("scope", "https://graph.microsoft.com/.default"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", jwt),
    ])
    .await
}

#[tokio::test]
async fn client_secret_grant_issues_a_bearer_token() {
    let sim = start(&[]).await;
    let (status, body) = sim
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert!(body["access_token"].as_str().unwrap().len() > 20);
}

#[tokio::test]
async fn wrong_client_secret_gets_entra_invalid_client() {
    let sim = start(&[]).await;
    let (status, body) = sim
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", "wrong"),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(body["error_codes"], json!([7000215]));
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .starts_with("AADSTS7000215: Invalid client secret provided."));
}

#[tokio::test]
async fn unknown_client_id_is_refused() {
    let sim = start(&[]).await;
    let (status, body) = sim
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", "00000000-0000-0000-0000-000000000000"),
            ("client_secret", SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "unauthorized_client");
}

#[tokio::test]
async fn graph_calls_without_or_with_a_bad_token_get_invalid_authentication_token() {
    let sim = start(&[]).await;
    let resp = sim
        .http
        .get(format!("{}/v1.0/users", sim.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert_eq!(body["error"]["message"], "Access token is empty.");
    let resp = sim
        .http
        .get(format!("{}/v1.0/users", sim.base))
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
}

#[tokio::test]
async fn expired_access_token_is_refused_as_graph_does() {
    let sim = start(&["--token-lifetime", "1"]).await;
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let (status, body) = sim.get("/v1.0/users").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));
}

#[tokio::test]
async fn certificate_assertion_is_verified_against_the_registered_certificate() {
    let cert = fixture("app.pem");
    let sim = start(&["--client-cert", &cert]).await;
    let aud = sim.token_url();
    let good = assertion("app.key", "app.pem", &aud, now() + 600, CLIENT_ID);
    let (status, body) = assertion_request(&sim, &good).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Signed by another key but claiming the registered thumbprint: bad signature.
    let forged = assertion("other.key", "app.pem", &aud, now() + 600, CLIENT_ID);
    let (status, body) = assertion_request(&sim, &forged).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error_codes"], json!([700027]));

    // Another certificate's thumbprint: not registered.
    let other = assertion("other.key", "other.pem", &aud, now() + 600, CLIENT_ID);
    let (status, body) = assertion_request(&sim, &other).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");

    // Expired assertion.
    let old = assertion("app.key", "app.pem", &aud, now() - 120, CLIENT_ID);
    let (status, body) = assertion_request(&sim, &old).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error_codes"], json!([700024]));

    // Wrong audience.
    let wrong_aud = assertion(
        "app.key",
        "app.pem",
        "https://example.com/token",
        now() + 600,
        CLIENT_ID,
    );
    let (status, _) = assertion_request(&sim, &wrong_aud).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn scope_without_default_suffix_is_refused() {
    let sim = start(&[]).await;
    let (status, body) = sim
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("scope", "https://graph.microsoft.com/User.Read.All"),
        ])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_scope");
}
