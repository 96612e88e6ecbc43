//! The `proxy` scenarios: `repnet proxy` in front of the benchmark's server.
//!
//! - **hits**: 1,000 keys asked again and again (all cached after the first pass) through the
//!   proxy, against the same requests sent to the server directly, A/B/A/B;
//! - **misses**: the single scenario's 200,000 different keys through a proxy whose cache
//!   holds one answer, so that nearly every question goes upstream, coalesced and batched.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::load::{self, Measurement, Request};
use crate::servers::{Process, start_command};

/// What the scenarios measured.
#[derive(Debug)]
pub(crate) struct ProxyResults {
    pub(crate) hits: Measurement,
    pub(crate) direct: Measurement,
    pub(crate) misses: Measurement,
}

fn start(
    repnet: &Path,
    dir: &Path,
    upstream: std::net::SocketAddr,
    cache: usize,
) -> anyhow::Result<Process> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let config = dir.join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "follow_changes = false\nupstream = \"http://{upstream}\"\ncache_max_entries = {cache}\n"
        ),
    )?;
    let config = config.display().to_string();
    start_command(
        repnet,
        "proxy",
        &dir.join("data"),
        &["--config", &config],
        &[],
    )
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    repnet: &Path,
    work_dir: &Path,
    upstream: std::net::SocketAddr,
    hot: Arc<Vec<Request>>,
    cold: Arc<Vec<Request>>,
    connections: usize,
    duration: Duration,
    rounds: usize,
) -> anyhow::Result<ProxyResults> {
    let proxy = start(repnet, &work_dir.join("proxy-hits"), upstream, 100_000)?;
    // Warm the cache.
    load::closed_loop(
        proxy.address,
        false,
        Arc::clone(&hot),
        connections,
        Duration::from_secs(1),
    )
    .await?;
    let (mut hits, mut direct) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        hits.push(
            load::closed_loop(
                proxy.address,
                false,
                Arc::clone(&hot),
                connections,
                duration,
            )
            .await?,
        );
        direct.push(
            load::closed_loop(upstream, false, Arc::clone(&hot), connections, duration).await?,
        );
    }
    drop(proxy);
    let proxy = start(repnet, &work_dir.join("proxy-misses"), upstream, 1)?;
    let mut misses = Vec::new();
    for _ in 0..rounds {
        misses.push(
            load::closed_loop(
                proxy.address,
                false,
                Arc::clone(&cold),
                connections,
                duration,
            )
            .await?,
        );
    }
    drop(proxy);
    let _ = std::fs::remove_dir_all(work_dir.join("proxy-hits"));
    let _ = std::fs::remove_dir_all(work_dir.join("proxy-misses"));
    let merge = |runs: Vec<Measurement>| {
        let mut runs = runs.into_iter();
        let mut first = runs.next().expect("at least one round");
        for run in runs {
            first.merge(&run);
        }
        first
    };
    Ok(ProxyResults {
        hits: merge(hits),
        direct: merge(direct),
        misses: merge(misses),
    })
}
