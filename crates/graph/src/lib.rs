//! writeback's Microsoft Graph client: the client-credentials token, group, user and device delta
//! rounds, paging, throttling, and the merge of delta changes into a `CloudSnapshot`.
//!
//! This crate knows Graph's documented wire format and nothing of writeback's rules: it
//! turns delta pages into [`GroupChange`] / [`UserChange`] once, at the edge, and
//! [`apply_group_changes`] folds them into the cloud image the engine reasons on.
//!
//! Trust: a page that is not Graph's documented shape fails the round (nothing is read
//! from it); links are followed, and the token sent, only to `graph_url`'s origin; a group
//! leaves the image only on positive evidence (see [`apply_group_changes`]).
//!
//! Layout: [`auth`](crate::auth) gets tokens, `client` sends requests (retries, errors),
//! `delta` parses delta pages into changes, `apply` merges changes into a snapshot.

mod apply;
mod auth;
mod client;
mod delta;
mod error;

pub use apply::{
    apply_device_changes, apply_group_changes, apply_presence, apply_user_changes, Presence,
};
pub use client::{throttled_total, BatchAnswer, BatchRequest, GraphClient, MAX_BATCH};
pub use delta::pages;
pub use delta::{
    DeltaRound, DeviceChange, DevicePatch, GroupChange, GroupPatch, Tristate, UserChange, UserPatch,
};
pub use error::{display_url, GraphError};

use std::time::Duration;

/// The application's credential for the client-credentials grant.
#[derive(Clone)]
pub enum Credential {
    /// A client secret.
    Secret(String),
    /// A certificate registered on the app: PEM of the certificate and of its RSA key.
    Certificate { cert_pem: String, key_pem: String },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Secret(_) => f.write_str("Secret(<redacted>)"),
            Credential::Certificate { .. } => f
                .debug_struct("Certificate")
                .field("cert_pem", &"<certificate>")
                .field("key_pem", &"<redacted>")
                .finish(),
        }
    }
}

/// Where and as whom to talk to Graph.
#[derive(Debug, Clone)]
pub struct GraphConfig {
    /// Tenant id or domain.
    pub tenant: String,
    pub client_id: String,
    pub credential: Credential,
    /// `https://graph.microsoft.com` (or a national cloud, or the lab's simulator).
    pub graph_url: String,
    /// `https://login.microsoftonline.com` (or the matching national cloud endpoint).
    pub login_url: String,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
    /// Retries of a throttled (429/503/504) or failed-to-connect request.
    pub max_retries: u32,
}

impl GraphConfig {
    /// Microsoft's public cloud endpoints, 60 s timeout, 6 retries.
    pub fn new(tenant: &str, client_id: &str, credential: Credential) -> Self {
        GraphConfig {
            tenant: tenant.to_string(),
            client_id: client_id.to_string(),
            credential,
            graph_url: "https://graph.microsoft.com".to_string(),
            login_url: "https://login.microsoftonline.com".to_string(),
            timeout: Duration::from_secs(60),
            max_retries: 6,
        }
    }
}
