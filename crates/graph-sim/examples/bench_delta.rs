//! Times full delta rounds against a running graph-sim: follows every nextLink to the
//! deltaLink and reports pages, objects, member entries, bytes and seconds.
//!
//! `cargo run --release -p graph-sim --example bench_delta -- http://127.0.0.1:PORT`

use serde_json::Value;
use std::time::Instant;

async fn round(http: &reqwest::Client, token: &str, first: String) -> anyhow::Result<String> {
    let start = Instant::now();
    let (mut pages, mut objects, mut members, mut bytes) = (0usize, 0usize, 0usize, 0usize);
    let mut url = first;
    loop {
        let resp = http.get(&url).bearer_auth(token).send().await?;
        anyhow::ensure!(resp.status().is_success(), "{url}: {}", resp.status());
        let body = resp.bytes().await?;
        bytes += body.len();
        pages += 1;
        let page: Value = serde_json::from_slice(&body)?;
        for entry in page["value"].as_array().into_iter().flatten() {
            objects += 1;
            members += entry["members@delta"].as_array().map_or(0, Vec::len);
        }
        match page["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    Ok(format!(
        "pages={pages} entries={objects} member_entries={members} MiB={:.1} seconds={:.2}",
        bytes as f64 / 1048576.0,
        start.elapsed().as_secs_f64()
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let base = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: bench_delta BASE_URL"))?;
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{base}/bench/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "bench"),
            ("client_secret", "bench"),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await?
        .json()
        .await?;
    let token = token["access_token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no access_token"))?;
    let groups = format!("{base}/beta/groups/delta?$select=id,displayName,members");
    println!(
        "group delta ($select=id,displayName,members): {}",
        round(&http, token, groups).await?
    );
    let users = format!(
        "{base}/v1.0/users/delta?$select=id,displayName,userPrincipalName,onPremisesSecurityIdentifier"
    );
    println!("user delta: {}", round(&http, token, users).await?);
    Ok(())
}
