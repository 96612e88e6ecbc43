//! The `statistics` scenario: how many statistics events a server accepts durably per
//! second (every `202` is after the commit), and how much room each tracked object takes.
//!
//! 1,024 pre-encoded requests, each one install's batch of 100 events (80 % sightings, 20 %
//! detections) about files drawn from a pool of 20,000, so that objects are reported by many
//! distinct devices (about 5 each) — sent on [`CONNECTIONS`] keep-alive connections in a closed
//! loop against a fresh `repnet serve` (the reputation engine running, as in production).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::load::{self, Request};
use crate::servers::start_repnet_with;

/// Many devices send at once: 32 connections (the group commit folds what waits into one
/// transaction, so more senders mean fewer commits per event).
pub(crate) const CONNECTIONS: usize = 32;
const VARIANTS: usize = 1024;
const EVENTS: usize = 100;
const POOL: u64 = 20_000;

/// What the scenario measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IngestResults {
    pub(crate) events_per_second: f64,
    pub(crate) p99_ms: f64,
    pub(crate) objects: u64,
    pub(crate) aggregate_bytes: u64,
    pub(crate) raw_event_bytes: u64,
    pub(crate) raw_events: u64,
    pub(crate) rss: Option<u64>,
}

fn requests(seed: u64, installations: &[String]) -> Vec<Request> {
    let mut rng = crate::keys::Rng::new(seed.wrapping_add(7));
    installations
        .iter()
        .map(|installation| {
            let events: Vec<String> = (0..EVENTS)
                .map(|index| {
                    let file = repnet_model::Sha256::digest(&(rng.next_u64() % POOL).to_le_bytes());
                    let kind = if index % 5 == 0 { "detection" } else { "sighting" };
                    format!(r#"{{"type":"{kind}","file":"{file}","size":{}}}"#, 1000 + index)
                })
                .collect();
            let body = format!(
                r#"{{"statement_version":1,"installation":"{installation}","product":"repnet-bench/1","events":[{}]}}"#,
                events.join(",")
            );
            Request::http("POST", "/v1/statistics", Some("application/json"), body.as_bytes())
        })
        .collect()
}

pub(crate) async fn run(
    repnet: &Path,
    work_dir: &Path,
    seed: u64,
    duration: Duration,
) -> anyhow::Result<IngestResults> {
    let data = work_dir.join("statistics-data");
    if data.exists() {
        std::fs::remove_dir_all(&data)?;
    }
    // Installations enrol with a light proof of work, all from this one address, and count
    // at once: the steady state of a network whose devices are established.
    let config = work_dir.join("statistics.toml");
    std::fs::write(
        &config,
        "installation_difficulty = 8\nenrolments_per_address_per_hour = 100000\n[engine]\nestablished_after_hours = 0\n",
    )?;
    let server = start_repnet_with(
        repnet,
        &data,
        &["--config", config.to_str().unwrap_or_default()],
        &[("REPNET_ADMIN_TOKEN", "bench-admin-token-0123456789")],
    )?;
    let client = repnet_client::Client::new(&format!("http://{}", server.address))?;
    let mut installations = Vec::with_capacity(VARIANTS);
    for _ in 0..VARIANTS {
        installations.push(client.enrol_installation().await?.installation);
    }
    let requests = Arc::new(requests(seed, &installations));
    let measured = load::closed_loop(
        server.address,
        false,
        Arc::clone(&requests),
        CONNECTIONS,
        duration,
    )
    .await?;
    let rss = server.rss_bytes();
    let output = std::process::Command::new(repnet)
        .args([
            "admin",
            "status",
            "--json",
            "--server",
            &format!("http://{}", server.address),
        ])
        .env("REPNET_ADMIN_TOKEN", "bench-admin-token-0123456789")
        .output()?;
    let status: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    drop(server);
    std::fs::remove_dir_all(&data)?;
    let number = |name: &str| status[name].as_u64().unwrap_or(0);
    Ok(IngestResults {
        events_per_second: measured.requests_per_second() * EVENTS as f64,
        p99_ms: measured.latency.value_at_quantile(0.99) as f64 / 1000.0,
        objects: number("tracked_objects"),
        aggregate_bytes: number("aggregate_bytes"),
        raw_event_bytes: number("raw_event_bytes"),
        raw_events: number("raw_events"),
        rss,
    })
}
