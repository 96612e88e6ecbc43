//! The cluster scenario (`--scenarios cluster`): `repnet serve --store redis://…` nodes on a
//! real Redis Cluster (three masters, three replicas of `redis-server`, in memory) against
//! raw commands on the same cluster, from the same load generator:
//!
//! - the import of the N entries through a node (`repnet import --server`), against loading
//!   the same keys raw (`SET`, pipelined by the cluster client);
//! - the masters' memory per entry, both ways (replicas hold as much again);
//! - batches of 1,000 hashes (half present) through one node and through two, in the binary
//!   form, against the cluster client's `MGET` of the same keys (the client splits it by
//!   slot) and against the same keys' `GET`s pipelined per master by hand (the fastest raw
//!   way, which is how repnet's store reads too);
//! - single lookups through one node and through two, against `GET`.
//!
//! Not in the default run: it needs `redis-cli` beside `redis-server`, and 10 M entries take
//! about 4 GB of memory in the cluster.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::future::try_join_all;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;

use repnet_testkit::{RedisCluster, redis_cli};

use crate::keys;
use crate::load::{self, Measurement, Request};

const TOKEN: &str = "repnet-bench-cluster-admin-token";
/// Keys per batch request.
const BATCH: usize = 1_000;
/// Distinct batch requests, cycled through.
const BATCH_VARIANTS: usize = 64;
/// Distinct single requests, cycled through.
const SINGLE_VARIANTS: usize = 20_000;

pub(crate) struct ClusterResults {
    pub(crate) entries: u64,
    pub(crate) import: Duration,
    pub(crate) raw_load: Duration,
    pub(crate) repnet_bytes_per_entry: f64,
    pub(crate) raw_bytes_per_entry: f64,
    pub(crate) batch_one: Measurement,
    pub(crate) batch_two: Measurement,
    pub(crate) batch_raw: Measurement,
    /// The same keys' `GET`s pipelined per master by hand (the fastest raw way).
    pub(crate) batch_pipelined: Measurement,
    pub(crate) single_one: Measurement,
    pub(crate) single_two: Measurement,
    pub(crate) single_raw: Measurement,
}

/// Bytes the masters hold (`used_memory`), summed.
fn masters_memory(ports: &[u16]) -> u64 {
    ports
        .iter()
        .filter_map(|port| {
            let info = redis_cli(*port, &["info", "replication"])?;
            if !info.contains("role:master") {
                return None;
            }
            let memory = redis_cli(*port, &["info", "memory"])?;
            memory
                .lines()
                .find_map(|line| line.strip_prefix("used_memory:"))?
                .trim()
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// `repnet import --server` of the list through `node`; the time it took.
fn import_through(repnet: &Path, node: SocketAddr, list: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let output = Command::new(repnet)
        .args(["import", "--server", &format!("http://{node}")])
        .args(["--format", "hashlist", "--source", "bench"])
        .args(["--threat", "Bench.Threat"])
        .arg(list)
        .env("REPNET_ADMIN_TOKEN", TOKEN)
        .output()?;
    if !output.status.success() {
        bail!(
            "repnet import through the cluster node failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(started.elapsed())
}

/// The raw keys, `SET` by the cluster client, 10,000 in flight at a time.
async fn load_raw(
    connection: &ClusterConnection,
    seed: u64,
    entries: u64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for start in (0..entries).step_by(10_000) {
        try_join_all((start..(start + 10_000).min(entries)).map(|index| {
            let mut connection = connection.clone();
            async move {
                redis::cmd("SET")
                    .arg(keys::present(seed, index).as_bytes())
                    .arg(crate::servers::REDIS_VALUE)
                    .query_async::<()>(&mut connection)
                    .await
            }
        }))
        .await?;
    }
    Ok(started.elapsed())
}

/// Which master serves each slot (`CLUSTER SLOTS`): per slot, one slot of its master.
async fn master_routes(
    connection: &ClusterConnection,
) -> anyhow::Result<std::collections::HashMap<Slot, u16>> {
    let slots: redis::Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut connection.clone())
        .await?;
    let mut routes = std::collections::HashMap::new();
    if let redis::Value::Array(ranges) = slots {
        for range in ranges {
            if let redis::Value::Array(fields) = range
                && let (Some(redis::Value::Int(start)), Some(redis::Value::Int(end))) =
                    (fields.first(), fields.get(1))
            {
                for slot in *start..=*end {
                    if let Some(slot) = u16::try_from(slot).ok().and_then(Slot::new) {
                        routes.insert(slot, *start as u16);
                    }
                }
            }
        }
    }
    Ok(routes)
}

/// A batch's keys as `GET`s grouped by master: pipelines and the slot that routes each.
fn pipelined(keys: &[Vec<u8>], routes: &std::collections::HashMap<Slot, u16>) -> Raw {
    let mut groups: std::collections::HashMap<u16, redis::Pipeline> =
        std::collections::HashMap::new();
    for key in keys {
        let route = routes.get(&Slot::for_key(key)).copied().unwrap_or_default();
        groups
            .entry(route)
            .or_default()
            .cmd("GET")
            .arg(key.as_slice());
    }
    Raw::Pipelines(
        groups
            .into_iter()
            .map(|(route, pipeline)| (pipeline, route))
            .collect(),
    )
}

/// A raw request: one command through the cluster client (which splits a multi-slot `MGET`
/// by slot), or pipelines routed each to its master.
enum Raw {
    Command(redis::Cmd),
    Pipelines(Vec<(redis::Pipeline, u16)>),
}

impl Raw {
    async fn send(&self, connection: &ClusterConnection) -> redis::RedisResult<()> {
        use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
        match self {
            Raw::Command(command) => {
                let _: redis::Value = command.query_async(&mut connection.clone()).await?;
            }
            Raw::Pipelines(pipelines) => {
                try_join_all(pipelines.iter().map(|(pipeline, route)| {
                    let mut connection = connection.clone();
                    async move {
                        connection
                            .route_pipeline(
                                pipeline.clone(),
                                0,
                                pipeline.len(),
                                SingleNodeRoutingInfo::SpecificNode(Route::new(
                                    *route,
                                    SlotAddr::Master,
                                )),
                            )
                            .await
                    }
                }))
                .await?;
            }
        }
        Ok(())
    }
}

/// Raw requests, flat out on `connections` tasks for `duration` (as `load::closed_loop` runs
/// repnet's, through the cluster client instead of a connection of its own).
async fn raw_closed_loop(
    connection: &ClusterConnection,
    requests: Arc<Vec<Raw>>,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Measurement> {
    let started = Instant::now();
    let deadline = started + duration;
    let tasks = (0..connections).map(|worker| {
        let connection = connection.clone();
        let requests = Arc::clone(&requests);
        tokio::spawn(async move {
            let mut latency = load::histogram();
            let mut done = 0u64;
            let mut next = worker * requests.len() / connections.max(1);
            while Instant::now() < deadline {
                let sent = Instant::now();
                requests[next % requests.len()].send(&connection).await?;
                let _ = latency.record(sent.elapsed().as_micros().max(1) as u64);
                done += 1;
                next += 1;
            }
            anyhow::Ok((done, latency))
        })
    });
    let mut measurement = Measurement {
        requests: 0,
        elapsed: Duration::ZERO,
        latency: load::histogram(),
    };
    for task in try_join_all(tasks).await? {
        let (done, latency) = task?;
        measurement.requests += done;
        let _ = measurement.latency.add(&latency);
    }
    measurement.elapsed = started.elapsed();
    Ok(measurement)
}

/// The same requests through two nodes at once, half the connections each.
async fn through_two(
    nodes: [SocketAddr; 2],
    requests: &Arc<Vec<Request>>,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Measurement> {
    let half = (connections / 2).max(1);
    let (mut one, two) = tokio::try_join!(
        load::closed_loop(nodes[0], false, Arc::clone(requests), half, duration),
        load::closed_loop(nodes[1], false, Arc::clone(requests), half, duration),
    )?;
    one.requests += two.requests;
    one.elapsed = one.elapsed.max(two.elapsed);
    let _ = one.latency.add(&two.latency);
    Ok(one)
}

pub(crate) struct Settings<'a> {
    pub(crate) repnet: &'a Path,
    pub(crate) redis_server: &'a Path,
    pub(crate) work_dir: &'a Path,
    pub(crate) entries: u64,
    pub(crate) seed: u64,
    pub(crate) duration: Duration,
    pub(crate) rounds: usize,
    pub(crate) batch_connections: usize,
    pub(crate) single_connections: usize,
}

pub(crate) async fn run(settings: &Settings<'_>) -> anyhow::Result<ClusterResults> {
    let dir = settings.work_dir.join("cluster");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    eprintln!("cluster: starting three masters and three replicas…");
    let redis_server = settings.redis_server.to_path_buf();
    let cluster =
        tokio::task::spawn_blocking(move || RedisCluster::start_in_memory(&redis_server)).await?;
    let ports: Vec<u16> = cluster
        .addresses()
        .iter()
        .filter_map(|address| address.rsplit(':').next()?.parse().ok())
        .collect();
    let store = format!(
        "redis://{}",
        ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let start_node = |name: &str| {
        crate::servers::start_repnet_with(
            settings.repnet,
            &dir.join(name),
            &["--store", &store],
            &[("REPNET_ADMIN_TOKEN", TOKEN)],
        )
    };
    let one = start_node("one")?;
    let two = start_node("two")?;
    let client = redis::cluster::ClusterClient::builder(
        ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect::<Vec<_>>(),
    )
    .response_timeout(Duration::from_secs(30))
    .build()?;
    let connection = client.get_async_connection().await?;

    eprintln!(
        "cluster: importing {} entries through a node…",
        settings.entries
    );
    let list = dir.join("entries.txt");
    crate::servers::write_hash_list(&list, settings.seed, settings.entries)?;
    let before = masters_memory(&ports);
    let import = import_through(settings.repnet, one.address, &list)?;
    std::fs::remove_file(&list)?;
    let after_import = masters_memory(&ports);
    eprintln!("cluster: loading the same keys raw…");
    let raw_load = load_raw(&connection, settings.seed, settings.entries).await?;
    let after_raw = masters_memory(&ports);

    let mut rng = keys::Rng::new(settings.seed.wrapping_add(7));
    let (mut batch_http, mut batch_raw, mut batch_keys) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..BATCH_VARIANTS {
        let keys = keys::mixed(settings.seed, settings.entries, BATCH, &mut rng);
        let digests: Vec<u8> = keys.iter().flat_map(|(key, _)| key.0).collect();
        batch_http.push(Request::http(
            "POST",
            "/v1/lookup?hash=sha256",
            Some(repnet_protocol::binary::MEDIA_TYPE),
            &digests,
        ));
        let mut mget = redis::cmd("MGET");
        for (key, _) in &keys {
            mget.arg(key.0.as_slice());
        }
        batch_raw.push(Raw::Command(mget));
        batch_keys.push(
            keys.iter()
                .map(|(key, _)| key.0.to_vec())
                .collect::<Vec<_>>(),
        );
    }
    let routes = master_routes(&connection).await?;
    let batch_pipelined: Arc<Vec<Raw>> = Arc::new(
        batch_keys
            .iter()
            .map(|keys| pipelined(keys, &routes))
            .collect(),
    );
    let singles = keys::mixed(settings.seed, settings.entries, SINGLE_VARIANTS, &mut rng);
    let single_http: Vec<Request> = singles
        .iter()
        .map(|(key, _)| Request::http("GET", &format!("/v1/files/{key}"), None, &[]))
        .collect();
    let single_raw: Vec<Raw> = singles
        .iter()
        .map(|(key, _)| {
            let mut get = redis::cmd("GET");
            get.arg(key.0.as_slice());
            Raw::Command(get)
        })
        .collect();
    verify(one.address, &connection, &batch_http[0], &batch_raw[0]).await?;
    let (batch_http, batch_raw) = (Arc::new(batch_http), Arc::new(batch_raw));
    let (single_http, single_raw) = (Arc::new(single_http), Arc::new(single_raw));

    let empty = || Measurement {
        requests: 0,
        elapsed: Duration::ZERO,
        latency: load::histogram(),
    };
    let mut results = ClusterResults {
        entries: settings.entries,
        import,
        raw_load,
        repnet_bytes_per_entry: after_import.saturating_sub(before) as f64
            / settings.entries as f64,
        raw_bytes_per_entry: after_raw.saturating_sub(after_import) as f64
            / settings.entries as f64,
        batch_one: empty(),
        batch_two: empty(),
        batch_raw: empty(),
        batch_pipelined: empty(),
        single_one: empty(),
        single_two: empty(),
        single_raw: empty(),
    };
    let nodes = [one.address, two.address];
    let duration = settings.duration;
    for round in 0..settings.rounds {
        eprintln!("cluster: round {} of {}…", round + 1, settings.rounds);
        let connections = settings.batch_connections;
        results.batch_one.merge(
            &load::closed_loop(
                one.address,
                false,
                Arc::clone(&batch_http),
                connections,
                duration,
            )
            .await?,
        );
        results.batch_raw.merge(
            &raw_closed_loop(&connection, Arc::clone(&batch_raw), connections, duration).await?,
        );
        results.batch_pipelined.merge(
            &raw_closed_loop(
                &connection,
                Arc::clone(&batch_pipelined),
                connections,
                duration,
            )
            .await?,
        );
        results
            .batch_two
            .merge(&through_two(nodes, &batch_http, connections * 2, duration).await?);
        let connections = settings.single_connections;
        results.single_one.merge(
            &load::closed_loop(
                one.address,
                false,
                Arc::clone(&single_http),
                connections,
                duration,
            )
            .await?,
        );
        results.single_raw.merge(
            &raw_closed_loop(&connection, Arc::clone(&single_raw), connections, duration).await?,
        );
        results
            .single_two
            .merge(&through_two(nodes, &single_http, connections, duration).await?);
    }
    Ok(results)
}

/// Both ways answer the first batch as expected before anything is measured.
async fn verify(
    node: SocketAddr,
    connection: &ClusterConnection,
    batch: &Request,
    mget: &Raw,
) -> anyhow::Result<()> {
    let Raw::Command(mget) = mget else {
        bail!("the first raw batch is not an MGET");
    };
    let mut http = load::Connection::open(node, false).await?;
    let body = http.call(batch).await?;
    let answers = repnet_protocol::binary::parse_response(&body).map_err(anyhow::Error::msg)?;
    let untrusted = answers
        .iter()
        .filter(|answer| answer.verdict == repnet_model::Verdict::Untrusted)
        .count();
    if answers.len() != BATCH || untrusted != BATCH / 2 {
        bail!(
            "the cluster node answered {} records, {untrusted} untrusted; expected {BATCH} and {}",
            answers.len(),
            BATCH / 2
        );
    }
    let values: Vec<Option<Vec<u8>>> = mget.query_async(&mut connection.clone()).await?;
    let present = values.iter().filter(|value| value.is_some()).count();
    if values.len() != BATCH || present != BATCH / 2 {
        bail!(
            "the cluster's MGET answered {} values, {present} present",
            values.len()
        );
    }
    Ok(())
}
