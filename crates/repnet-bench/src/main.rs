//! `repnet-bench`: the end-to-end benchmark. It builds a knowledge base of N SHA-256 entries,
//! loads it into repnet (through `repnet import`) and into Redis (pipelined SETs of the same
//! keys), starts both servers on loopback, and measures them side by side, alternating
//! A/B/A/B so that machine noise hits both alike:
//!
//! - **batch**: 1,000 hashes per request (half present): repnet `POST /v1/lookup` in JSON and
//!   in the binary form, against Redis `MGET` of the same keys;
//! - **single**: one hash per request at 64 connections: `GET /v1/files/{sha256}` against
//!   Redis `GET`;
//! - **hashlookup**: the same, in CIRCL hashlookup's shape (`GET /lookup/sha256/{h}`);
//! - **latency**: percentiles of single lookups at a fixed offered rate, half the lower of
//!   the two measured maxima, for both;
//! - **imports**: `repnet import` of the N entries as a hash list (how the knowledge base is
//!   built) and as a MalwareBazaar CSV dump, rows/s and peak memory, against Redis loading
//!   the same keys with pipelined SETs;
//! - **statistics**: events accepted durably per second by `POST /v1/statistics`, and the
//!   room each tracked object's aggregate takes;
//! - **client URLs**: the client library's lookups of 1,000 URLs by hash prefix (what
//!   `repnet lookup` does by default) against direct lookups of the same URLs;
//! - **proxy**: `repnet proxy` in front of the server: cached answers against the server's own
//!   single lookups, and the miss path (coalesced, batched);
//! - **scan**: `repnet scan` of a generated tree against `sha256sum` (one process and two);
//! - **sync**: a private server catching up with a global one through a snapshot and through
//!   the change log, and a signed offline bundle of the knowledge base (size, export, import).
//!
//! It prints a table and, with `--json FILE`, writes the same numbers as JSON.
//! `cargo build --release && cargo run --release -p repnet-bench -- --json bench.json`

mod client_urls;
mod cluster;
mod ingest;
mod keys;
mod load;
mod proxying;
mod report;
mod scanning;
mod servers;
mod soak;
mod sync;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;

use crate::load::{Measurement, Request};
use crate::report::Report;

#[derive(Debug, Parser)]
#[command(
    name = "repnet-bench",
    about = "repnet against Redis on the same keys, side by side"
)]
struct Args {
    /// SHA-256 entries in the knowledge base.
    #[arg(long, default_value_t = 10_000_000)]
    entries: u64,
    /// URL entries in the knowledge base (besides the files).
    #[arg(long, default_value_t = 1_000_000)]
    urls: u64,
    /// A short run for CI: 100,000 entries and 10,000 URLs, 1 s per measurement.
    #[arg(long)]
    quick: bool,
    /// Seconds per measurement [default: 10, or 1 with --quick].
    #[arg(long)]
    duration: Option<f64>,
    /// A/B rounds per scenario.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Seed of the keys and of the picks.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Connections for the batch scenario.
    #[arg(long, default_value_t = 4)]
    batch_connections: usize,
    /// Connections for the single and latency scenarios.
    #[arg(long, default_value_t = 64)]
    single_connections: usize,
    /// Threads of the load generator.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// `repnet serve --worker-threads` (0: the server's default, one per core).
    #[arg(long, default_value_t = 0)]
    repnet_threads: usize,
    /// Scenarios to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "batch,single,latency,urls,privacy,client-urls,imports,sync,statistics,proxy,scan,hashlookup"
    )]
    scenarios: Vec<Scenario>,
    /// Offered rate of the latency scenario [default: half the lower of the two servers'
    /// single-lookup maxima].
    #[arg(long, value_name = "REQUESTS_PER_SECOND")]
    latency_rate: Option<f64>,
    /// Also write the results as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// The repnet binary [default: next to this one].
    #[arg(long, value_name = "PATH")]
    repnet: Option<PathBuf>,
    /// The redis-server binary.
    #[arg(long, value_name = "PATH", default_value = "redis-server")]
    redis_server: PathBuf,
    /// Where to put the data (a temporary directory by default, removed at the end).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Run the soak instead of the benchmark, for this many seconds (600 for the documented
    /// ten minutes): mixed load at 80 % of the maximum on a global and a private server while
    /// one of them is killed and restarted, then checks memory, acknowledged writes and
    /// answers. Fails if any check does.
    #[arg(long, value_name = "SECONDS")]
    soak: Option<u64>,
    /// Seconds between two kills in the soak.
    #[arg(long, value_name = "SECONDS", default_value_t = 45)]
    chaos_every: u64,
    /// The most memory (RSS) each server may reach in the soak.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    memory_bound_mib: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    Batch,
    Single,
    Latency,
    Urls,
    Privacy,
    /// The client's lookups of 1,000 URLs by hash prefix (its default) against direct ones.
    ClientUrls,
    /// Importing a MalwareBazaar CSV dump of `--entries` rows (the hash list is always
    /// imported: it is the knowledge base).
    Imports,
    /// A private server catching up (snapshot, change log) and offline bundles.
    Sync,
    /// Statistics ingest: events accepted durably per second, room per tracked object.
    Statistics,
    /// `repnet proxy` in front of the server: cache hits against direct lookups, and misses.
    Proxy,
    /// `repnet scan` of a 20,000-file tree against `sha256sum`.
    Scan,
    /// `repnet serve --store redis://…` nodes on a Redis Cluster (three masters, three
    /// replicas) against raw `MGET`/`GET` on the same cluster: imports, memory per entry,
    /// batch and single lookups through one and two nodes. Not in the default run: 10 M
    /// entries take about 4 GB in the cluster. Run alone, it skips the embedded store.
    Cluster,
    /// A second `repnet scan` of 1,000,000 unchanged files (its caches warm) against
    /// walking them with `find`. Not in the default run: the tree takes minutes to write and
    /// about 4 GB of disk.
    Rescan,
    /// Single lookups in CIRCL hashlookup's shape (`GET /lookup/sha256/{h}`) against Redis
    /// `GET`, as `single` is.
    Hashlookup,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("repnet-bench: cannot start the runtime: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("repnet-bench: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Keys per batch request.
const BATCH: usize = 1_000;
/// Distinct batch requests of each kind, cycled through: 128,000 present keys in all, so
/// that neither server answers from a small, CPU-cache-hot set.
const BATCH_VARIANTS: usize = 256;
/// Distinct single requests, cycled through.
const SINGLE_VARIANTS: usize = 200_000;

/// The requests of every scenario, for both servers, on the same keys.
struct Workloads {
    batch_json: Arc<Vec<Request>>,
    batch_binary: Arc<Vec<Request>>,
    batch_mget: Arc<Vec<Request>>,
    single_http: Arc<Vec<Request>>,
    single_redis: Arc<Vec<Request>>,
    /// The same keys as `single_http`, asked as hashlookup's clients ask.
    single_hashlookup: Arc<Vec<Request>>,
    /// 1,000 URLs per request, half known (sent as a client might: upper case, a port, a
    /// fragment), against Redis `MGET` of the hashes of all their expressions.
    url_json: Arc<Vec<Request>>,
    url_mget: Arc<Vec<Request>>,
    /// The number of keys in each `url_mget` request, for the check.
    url_mget_keys: Vec<usize>,
    /// 1,000 prefixes per request, half of known files.
    privacy: Arc<Vec<Request>>,
}

fn url_workloads(
    seed: u64,
    urls: u64,
    rng: &mut keys::Rng,
) -> (Vec<Request>, Vec<Request>, Vec<usize>) {
    let (mut json, mut mget, mut counts) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..BATCH_VARIANTS / 4 {
        let sent: Vec<String> = (0..BATCH)
            .map(|i| {
                if i % 2 == 0 {
                    keys::url_as_sent(seed, rng.below(urls))
                } else {
                    keys::absent_url(rng.next_u64())
                }
            })
            .collect();
        let items: Vec<String> = sent
            .iter()
            .map(|url| serde_json::json!({ "url": url }).to_string())
            .collect();
        let body = format!("{{\"items\":[{}]}}", items.join(","));
        json.push(Request::http(
            "POST",
            "/v1/lookup",
            Some("application/json"),
            body.as_bytes(),
        ));
        // What a Redis user would do: canonicalise and expand in the client, then ask for
        // every expression's hash at once.
        let hashes: Vec<[u8; 32]> = sent
            .iter()
            .filter_map(|url| repnet_model::CanonicalUrl::parse(url.as_bytes()).ok())
            .flat_map(|url| url.expressions())
            .map(|expression| expression.sha256().0)
            .collect();
        let mut parts: Vec<&[u8]> = vec![b"MGET"];
        parts.extend(hashes.iter().map(|hash| hash.as_slice()));
        mget.push(Request::redis(&parts));
        counts.push(hashes.len());
    }
    (json, mget, counts)
}

fn privacy_workload(seed: u64, entries: u64, rng: &mut keys::Rng) -> Vec<Request> {
    (0..BATCH_VARIANTS / 4)
        .map(|_| {
            let prefixes: Vec<String> = keys::mixed(seed, entries, BATCH, rng)
                .iter()
                .map(|(key, _)| format!("\"{}\"", &key.to_string()[..8]))
                .collect();
            let body = format!("{{\"prefixes\":[{}]}}", prefixes.join(","));
            Request::http(
                "POST",
                "/v1/hashes:search",
                Some("application/json"),
                body.as_bytes(),
            )
        })
        .collect()
}

fn workloads(seed: u64, entries: u64, urls: u64) -> Workloads {
    let mut rng = keys::Rng::new(seed.wrapping_add(1));
    let (mut batch_json, mut batch_binary, mut batch_mget) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..BATCH_VARIANTS {
        let keys = keys::mixed(seed, entries, BATCH, &mut rng);
        let items: Vec<String> = keys
            .iter()
            .map(|(key, _)| format!("{{\"file\":\"{key}\"}}"))
            .collect();
        let json = format!("{{\"items\":[{}]}}", items.join(","));
        batch_json.push(Request::http(
            "POST",
            "/v1/lookup",
            Some("application/json"),
            json.as_bytes(),
        ));
        let digests: Vec<u8> = keys.iter().flat_map(|(key, _)| key.0).collect();
        batch_binary.push(Request::http(
            "POST",
            "/v1/lookup?hash=sha256",
            Some(repnet_protocol::binary::MEDIA_TYPE),
            &digests,
        ));
        let mut parts: Vec<&[u8]> = vec![b"MGET"];
        parts.extend(keys.iter().map(|(key, _)| key.0.as_slice()));
        batch_mget.push(Request::redis(&parts));
    }
    let singles = keys::mixed(seed, entries, SINGLE_VARIANTS, &mut rng);
    let single_http = singles
        .iter()
        .map(|(key, _)| Request::http("GET", &format!("/v1/files/{key}"), None, &[]))
        .collect();
    let single_hashlookup = singles
        .iter()
        .map(|(key, _)| Request::http("GET", &format!("/lookup/sha256/{key}"), None, &[]))
        .collect();
    let single_redis = singles
        .iter()
        .map(|(key, _)| Request::redis(&[b"GET", key.0.as_slice()]))
        .collect();
    let (url_json, url_mget, url_mget_keys) = url_workloads(seed, urls, &mut rng);
    let privacy = privacy_workload(seed, entries, &mut rng);
    Workloads {
        url_json: Arc::new(url_json),
        url_mget: Arc::new(url_mget),
        url_mget_keys,
        privacy: Arc::new(privacy),
        batch_json: Arc::new(batch_json),
        batch_binary: Arc::new(batch_binary),
        batch_mget: Arc::new(batch_mget),
        single_http: Arc::new(single_http),
        single_redis: Arc::new(single_redis),
        single_hashlookup: Arc::new(single_hashlookup),
    }
}

/// Checks, before measuring, that both servers give the expected answers to the very
/// requests the benchmark sends: the comparison is only fair if they do the same work.
async fn verify(
    repnet: std::net::SocketAddr,
    redis: std::net::SocketAddr,
    workloads: &Workloads,
) -> anyhow::Result<()> {
    let half = BATCH / 2;
    let mut http = load::Connection::open(repnet, false).await?;
    let mut resp = load::Connection::open(redis, true).await?;

    let body = http.call(&workloads.batch_json[0]).await?;
    let answer: serde_json::Value = serde_json::from_slice(&body)?;
    let results = answer["results"]
        .as_array()
        .context("no results in the JSON answer")?;
    let untrusted = results
        .iter()
        .filter(|r| r["verdict"] == "untrusted")
        .count();
    if results.len() != BATCH || untrusted != half {
        bail!(
            "repnet's JSON answer: {} results, {untrusted} untrusted; expected {BATCH} and {half}",
            results.len()
        );
    }
    let body = http.call(&workloads.batch_binary[0]).await?;
    let answers = repnet_protocol::binary::parse_response(&body).map_err(anyhow::Error::msg)?;
    let untrusted = answers
        .iter()
        .filter(|a| a.verdict == repnet_model::Verdict::Untrusted)
        .count();
    if answers.len() != BATCH || untrusted != half {
        bail!(
            "repnet's binary answer: {} records, {untrusted} untrusted",
            answers.len()
        );
    }
    let counts = resp.call(&workloads.batch_mget[0]).await?;
    if counts.as_ref() != format!("{half},{half}").as_bytes() {
        bail!(
            "redis MGET answered {} (values,nils); expected {half},{half}",
            String::from_utf8_lossy(&counts)
        );
    }
    let body = http.call(&workloads.single_http[0]).await?;
    let answer: serde_json::Value = serde_json::from_slice(&body)?;
    if answer["verdict"] != "untrusted" || answer["threat"] != "Bench.Threat" {
        bail!("repnet's single answer for a present key: {answer}");
    }
    let body = http.call(&workloads.single_hashlookup[0]).await?;
    let answer: serde_json::Value = serde_json::from_slice(&body)?;
    if answer["repnet:verdict"] != "untrusted" || answer["repnet:threat"] != "Bench.Threat" {
        bail!("repnet's hashlookup answer for a present key: {answer}");
    }
    let body = http.call(&workloads.url_json[0]).await?;
    let answer: serde_json::Value = serde_json::from_slice(&body)?;
    let results = answer["results"]
        .as_array()
        .context("no results in the URL answer")?;
    let untrusted = results
        .iter()
        .filter(|r| r["verdict"] == "untrusted")
        .count();
    if results.len() != BATCH || untrusted != half {
        bail!(
            "repnet's URL answer: {} results, {untrusted} untrusted; expected {BATCH} and {half}",
            results.len()
        );
    }
    let counts = resp.call(&workloads.url_mget[0]).await?;
    let expected = format!("{half},{}", workloads.url_mget_keys[0] - half);
    if counts.as_ref() != expected.as_bytes() {
        bail!(
            "redis MGET of URL expressions answered {} (values,nils); expected {expected}",
            String::from_utf8_lossy(&counts)
        );
    }
    let body = http.call(&workloads.privacy[0]).await?;
    let answer: serde_json::Value = serde_json::from_slice(&body)?;
    let matches = answer["matches"]
        .as_array()
        .context("no matches in the privacy answer")?
        .len();
    if matches < half {
        bail!("repnet's privacy answer has {matches} matches for {half} prefixes of known files");
    }
    let counts = resp.call(&workloads.single_redis[0]).await?;
    if counts.as_ref() != b"1,0" {
        bail!(
            "redis GET of a present key answered {}",
            String::from_utf8_lossy(&counts)
        );
    }
    Ok(())
}

fn repnet_binary(args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.repnet {
        return Ok(path.clone());
    }
    servers::sibling_binary("repnet").context(
        "the repnet binary is not next to repnet-bench: build it first (`cargo build --release`), or pass --repnet PATH",
    )
}

async fn run(mut args: Args) -> anyhow::Result<()> {
    if args.quick {
        args.entries = 100_000;
        args.urls = 10_000;
        args.duration = Some(args.duration.unwrap_or(1.0));
    }
    let duration = Duration::from_secs_f64(args.duration.unwrap_or(10.0));
    if args.entries == 0 || args.rounds == 0 {
        bail!("--entries and --rounds must be at least 1");
    }
    let repnet = repnet_binary(&args)?;
    if let Some(seconds) = args.soak {
        let temp = tempfile::tempdir()?;
        let work = args
            .work_dir
            .clone()
            .unwrap_or_else(|| temp.path().to_path_buf());
        std::fs::create_dir_all(&work)?;
        soak::run(
            &repnet,
            &work,
            seconds,
            Duration::from_secs(args.chaos_every.max(5)),
            args.memory_bound_mib << 20,
            args.seed,
        )
        .await?;
        return Ok(());
    }
    let temp;
    let work_dir: &Path = match &args.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path()
        }
    };
    let mut report = Report::new(args.entries, duration, args.rounds);
    if args.scenarios.contains(&Scenario::Cluster) {
        let results = cluster::run(&cluster::Settings {
            repnet: &repnet,
            redis_server: &args.redis_server,
            work_dir,
            entries: args.entries,
            seed: args.seed,
            duration,
            rounds: args.rounds,
            batch_connections: args.batch_connections,
            single_connections: args.single_connections,
        })
        .await?;
        report.cluster(&results);
        if args.scenarios == [Scenario::Cluster] {
            print!("{}", report.table());
            if let Some(path) = &args.json {
                std::fs::write(path, report.json())?;
            }
            return Ok(());
        }
    }

    eprintln!(
        "generating {} SHA-256 entries (seed {})…",
        args.entries, args.seed
    );
    let list = work_dir.join("entries.txt");
    servers::write_hash_list(&list, args.seed, args.entries)?;
    let data = work_dir.join("repnet-data");
    if data.exists() {
        std::fs::remove_dir_all(&data)?;
    }
    eprintln!("importing into repnet…");
    let hashlist_import = servers::import(&repnet, &data, &list, "hashlist")?;
    let disk = std::fs::metadata(data.join("data.mdb"))?.len();
    report.import(hashlist_import, disk);
    eprintln!("generating and importing {} URLs…", args.urls);
    let url_list = work_dir.join("urls.txt");
    servers::write_url_list(&url_list, args.seed, args.urls)?;
    let url_import = servers::import(&repnet, &data, &url_list, "urllist")?;
    std::fs::remove_file(&url_list)?;
    // Before the servers start, so that nothing else competes for the cores.
    let csv_import = if args.scenarios.contains(&Scenario::Imports) {
        eprintln!(
            "imports: {} rows of MalwareBazaar CSV into a fresh knowledge base…",
            args.entries
        );
        let csv = work_dir.join("malwarebazaar.csv");
        servers::write_malwarebazaar(&csv, args.seed, args.entries)?;
        let csv_data = work_dir.join("import-data");
        if csv_data.exists() {
            std::fs::remove_dir_all(&csv_data)?;
        }
        let imported = servers::import(&repnet, &csv_data, &csv, "malwarebazaar")?;
        std::fs::remove_file(&csv)?;
        std::fs::remove_dir_all(&csv_data)?;
        Some(imported)
    } else {
        None
    };

    if args.scenarios.contains(&Scenario::Sync) {
        let results = sync::run(&repnet, work_dir, &data, &list, args.entries)?;
        report.sync(&results);
    }
    std::fs::remove_file(&list)?;

    if args.scenarios.contains(&Scenario::Statistics) {
        eprintln!(
            "statistics: batches of 100 events, {} connections…",
            ingest::CONNECTIONS
        );
        let results = ingest::run(&repnet, work_dir, args.seed, duration).await?;
        report.statistics(&results);
    }

    let repnet_server = servers::start_repnet(&repnet, &data, args.repnet_threads)?;
    let redis_dir = work_dir.join("redis");
    std::fs::create_dir_all(&redis_dir)?;
    let redis_server = servers::start_redis(&args.redis_server, &redis_dir).await?;
    eprintln!("loading redis…");
    let seed = args.seed;
    let redis_load = servers::load_redis(redis_server.address, args.entries, |i| {
        keys::present(seed, i)
    })
    .await?;
    report.redis_load(redis_load);
    if let Some(imported) = csv_import {
        report.csv_import(imported, redis_load);
    }
    let redis_url_load = servers::load_redis(redis_server.address, args.urls, |i| {
        repnet_model::Expression::parse(&keys::url(seed, i))
            .map(|expression| expression.sha256())
            .unwrap_or(repnet_model::Sha256([0; 32]))
    })
    .await?;
    report.url_load(args.urls, url_import.elapsed, redis_url_load);

    let workloads = workloads(args.seed, args.entries, args.urls);
    verify(repnet_server.address, redis_server.address, &workloads).await?;
    let (repnet_address, redis_address) = (repnet_server.address, redis_server.address);

    let closed = |address, redis, requests: &Arc<Vec<Request>>, connections| {
        load::closed_loop(address, redis, Arc::clone(requests), connections, duration)
    };
    if args.scenarios.contains(&Scenario::Batch) {
        eprintln!(
            "batch: {BATCH} keys per request, {} connections…",
            args.batch_connections
        );
        let (mut json, mut binary, mut mget) = (Vec::new(), Vec::new(), Vec::new());
        let connections = args.batch_connections;
        for _ in 0..args.rounds {
            json.push(closed(repnet_address, false, &workloads.batch_json, connections).await?);
            mget.push(closed(redis_address, true, &workloads.batch_mget, connections).await?);
            binary.push(closed(repnet_address, false, &workloads.batch_binary, connections).await?);
            mget.push(closed(redis_address, true, &workloads.batch_mget, connections).await?);
        }
        let mget = merged(&mget);
        report.batch("batch, JSON", &merged(&json), &mget, BATCH);
        report.batch("batch, binary", &merged(&binary), &mget, BATCH);
    }

    let mut rate = args.latency_rate;
    if args.scenarios.contains(&Scenario::Single) {
        eprintln!("single: {} connections…", args.single_connections);
        let (mut repnet_runs, mut redis_runs) = (Vec::new(), Vec::new());
        let connections = args.single_connections;
        for _ in 0..args.rounds {
            repnet_runs
                .push(closed(repnet_address, false, &workloads.single_http, connections).await?);
            redis_runs
                .push(closed(redis_address, true, &workloads.single_redis, connections).await?);
        }
        let (repnet_runs, redis_runs) = (merged(&repnet_runs), merged(&redis_runs));
        report.single(&repnet_runs, &redis_runs);
        rate = rate.or(Some(
            0.5 * repnet_runs
                .requests_per_second()
                .min(redis_runs.requests_per_second()),
        ));
    }

    if args.scenarios.contains(&Scenario::Hashlookup) {
        eprintln!("hashlookup: {} connections…", args.single_connections);
        let (mut repnet_runs, mut redis_runs) = (Vec::new(), Vec::new());
        let connections = args.single_connections;
        for _ in 0..args.rounds {
            repnet_runs.push(
                closed(
                    repnet_address,
                    false,
                    &workloads.single_hashlookup,
                    connections,
                )
                .await?,
            );
            redis_runs
                .push(closed(redis_address, true, &workloads.single_redis, connections).await?);
        }
        report.hashlookup(&merged(&repnet_runs), &merged(&redis_runs));
    }

    if args.scenarios.contains(&Scenario::Proxy) {
        eprintln!(
            "proxy: hits and misses, {} connections…",
            args.single_connections
        );
        let hot = Arc::new(
            workloads
                .single_http
                .iter()
                .take(1000)
                .cloned()
                .collect::<Vec<_>>(),
        );
        let results = proxying::run(
            &repnet,
            work_dir,
            repnet_address,
            hot,
            Arc::clone(&workloads.single_http),
            args.single_connections,
            duration,
            args.rounds,
        )
        .await?;
        report.proxy(&results);
    }

    if args.scenarios.contains(&Scenario::Scan) && !args.quick {
        eprintln!("scan: a tree of 20,000 files…");
        let results = scanning::run(&repnet, work_dir, repnet_address, args.seed)?;
        report.scan(&results);
    }

    if args.scenarios.contains(&Scenario::Rescan) && !args.quick {
        eprintln!("rescan: a tree of 1,000,000 files…");
        let results = scanning::rescan(&repnet, work_dir, repnet_address)?;
        report.rescan(&results);
    }

    if args.scenarios.contains(&Scenario::Latency) {
        let rate =
            rate.context("the latency scenario needs the single scenario or --latency-rate")?;
        eprintln!("latency: {rate:.0} requests/s offered…");
        let open = |address, redis, requests: &Arc<Vec<Request>>| {
            load::open_loop(
                address,
                redis,
                Arc::clone(requests),
                args.single_connections,
                rate,
                duration,
            )
        };
        let (mut repnet_runs, mut redis_runs) = (Vec::new(), Vec::new());
        for _ in 0..args.rounds {
            repnet_runs.push(open(repnet_address, false, &workloads.single_http).await?);
            redis_runs.push(open(redis_address, true, &workloads.single_redis).await?);
        }
        report.latency(rate, &merged(&repnet_runs), &merged(&redis_runs));
    }
    if args.scenarios.contains(&Scenario::Urls) {
        eprintln!(
            "URLs: {BATCH} per request, {} connections…",
            args.batch_connections
        );
        let (mut repnet_runs, mut redis_runs) = (Vec::new(), Vec::new());
        let connections = args.batch_connections;
        for _ in 0..args.rounds {
            repnet_runs
                .push(closed(repnet_address, false, &workloads.url_json, connections).await?);
            redis_runs.push(closed(redis_address, true, &workloads.url_mget, connections).await?);
        }
        report.batch(
            "batch of URLs, JSON",
            &merged(&repnet_runs),
            &merged(&redis_runs),
            BATCH,
        );
    }

    if args.scenarios.contains(&Scenario::Privacy) {
        eprintln!(
            "privacy search: {BATCH} prefixes per request, {} connections…",
            args.batch_connections
        );
        let runs: Vec<Measurement> = {
            let mut runs = Vec::new();
            for _ in 0..args.rounds {
                runs.push(
                    closed(
                        repnet_address,
                        false,
                        &workloads.privacy,
                        args.batch_connections,
                    )
                    .await?,
                );
            }
            runs
        };
        report.privacy(&merged(&runs), BATCH);
    }

    if args.scenarios.contains(&Scenario::ClientUrls) {
        eprintln!(
            "client URLs: {} URLs per lookup, by prefix and directly…",
            client_urls::URLS
        );
        let results = client_urls::measure(
            &format!("http://{repnet_address}"),
            args.seed,
            args.urls,
            args.rounds,
            duration,
        )
        .await?;
        report.client_urls(&results);
    }

    report.memory(repnet_server.rss_bytes(), redis_server.rss_bytes());
    let _ = (repnet_server.pid(), redis_server.pid());

    print!("{}", report.table());
    if let Some(path) = &args.json {
        std::fs::write(path, report.json())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Several rounds as one measurement.
fn merged(rounds: &[Measurement]) -> Measurement {
    let mut total = Measurement {
        requests: 0,
        elapsed: Duration::ZERO,
        latency: load::histogram(),
    };
    for round in rounds {
        total.merge(round);
    }
    total
}
