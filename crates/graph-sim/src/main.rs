//! The `graph-sim` binary: parses flags into a `SimConfig` and runs the simulator.
//! Everything else lives in the library (`graph_sim`).

use anyhow::Context;
use clap::Parser;
use graph_sim::auth::{AuthConfig, ClientCertificate};
use graph_sim::faults::Faults;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A Microsoft Graph tenant simulator for writeback's tests, demo and benchmarks.
///
/// Serves the Entra token endpoint (`POST /{tenant}/oauth2/v2.0/token`) and Graph under
/// `/v1.0` and `/beta`: users, groups, members, owners, delta, directory/deletedItems,
/// group settings and `$batch`. Prints `listening on http://ADDR` when ready and runs
/// until killed. Control endpoints (no auth): `GET|POST /_sim/faults`,
/// `POST /_sim/expire-delta-tokens`, `GET|DELETE /_sim/stats`, `POST /_sim/save`.
#[derive(Debug, Parser)]
#[command(name = "graph-sim", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Tenant file to load at start (`{"users":[...],"groups":[...],"settings":[...]}`).
    #[arg(long)]
    tenant: Option<PathBuf>,
    /// File to write the tenant to on shutdown and on `POST /_sim/save`.
    #[arg(long)]
    save: Option<PathBuf>,
    /// The only client id accepted; without it any client id is accepted.
    #[arg(long)]
    client_id: Option<String>,
    /// The client secret accepted; without it any secret is accepted.
    #[arg(long)]
    client_secret: Option<String>,
    /// PEM certificate whose key verifies RS256 client_assertion JWTs (x5t must match).
    #[arg(long)]
    client_cert: Option<PathBuf>,
    /// Lifetime of issued access tokens, in seconds (`expires_in`).
    #[arg(long, default_value_t = 3599)]
    token_lifetime: u64,
    /// Share (0..1) of Graph requests answered 429 with Retry-After.
    #[arg(long, default_value_t = 0.0)]
    throttle_share: f64,
    /// Share (0..1) of Graph requests answered 503.
    #[arg(long, default_value_t = 0.0)]
    unavailable_share: f64,
    /// Milliseconds added to every Graph response.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Retry-After seconds sent with 429 and 503.
    #[arg(long, default_value_t = 1)]
    retry_after_secs: u64,
    /// Member entries per group-delta page; larger groups continue on the next page.
    #[arg(long, default_value_t = 500)]
    delta_member_chunk: usize,
    /// HTTP status of the syncStateNotFound answer to an expired delta token (410 or 400).
    #[arg(long, default_value_t = 410)]
    expired_delta_status: u16,
    /// Domain of `mail` for new mail-enabled groups.
    #[arg(long, default_value = "lab.example.test")]
    domain: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let certificate = match &args.client_cert {
        Some(path) => Some(ClientCertificate::from_pem_file(
            &path.display().to_string(),
        )?),
        None => None,
    };
    let faults = Faults {
        throttle_share: args.throttle_share,
        unavailable_share: args.unavailable_share,
        latency_ms: args.latency_ms,
        retry_after_secs: args.retry_after_secs,
        ..Faults::default()
    };
    faults
        .validate()
        .map_err(anyhow::Error::msg)
        .context("fault flags")?;
    let expired_delta_status = axum::http::StatusCode::from_u16(args.expired_delta_status)
        .context("--expired-delta-status")?;
    let cfg = graph_sim::SimConfig {
        listen: args.listen,
        tenant_file: args.tenant,
        save_file: args.save,
        auth: AuthConfig {
            client_id: args.client_id,
            client_secret: args.client_secret,
            certificate,
            token_lifetime: Duration::from_secs(args.token_lifetime),
        },
        faults,
        member_chunk: args.delta_member_chunk,
        expired_delta_status,
        domain: args.domain,
    };
    graph_sim::serve(cfg).await?;
    Ok(())
}
