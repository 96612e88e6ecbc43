//! `repnet scan PATH…`: walk, hash in parallel, look up in batches while hashing goes on,
//! and say what is untrusted. Hashes of unchanged files (same device, inode, size and mtime)
//! and answers still within their TTL come from the client's caches; when the network is
//! unreachable the scan finishes with what the cache knows and records the rest for
//! `repnet scan --recheck`.

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use repnet_client::{Client, ClientError, PrivateTarget};
use repnet_model::{FileHash, ObjectKind, Sha256};
use repnet_protocol::{LookupItem, Reputation, StatisticsEvent, Verdict};
use serde::{Deserialize, Serialize};

use crate::Outcome;
use crate::participation::{self, ClientFiles, Mode};

#[derive(Debug, Args)]
pub(crate) struct ScanArgs {
    /// Files and folders to scan.
    #[arg(value_name = "PATH", required_unless_present = "recheck")]
    paths: Vec<PathBuf>,
    /// The repnet server [default: the client configuration's, else http://127.0.0.1:8080].
    #[arg(long, env = "REPNET_SERVER", value_name = "URL")]
    server: Option<String>,
    /// The organisation's licence key, for servers that require one.
    #[arg(long, env = "REPNET_KEY", value_name = "KEY", hide_env_values = true)]
    key: Option<String>,
    /// CA certificates (PEM) to trust for an https:// server.
    #[arg(long, env = "REPNET_CA", value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Hashing threads [default: one per core].
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: ScanFormat,
    /// Print only untrusted files (the summary still counts everything).
    #[arg(long)]
    only_untrusted: bool,
    /// Privacy mode: send only 4-byte prefixes of the files' SHA-256.
    #[arg(long)]
    private: bool,
    /// Also compute MD5 and SHA-1 (from the same read of each file).
    #[arg(long)]
    all_hashes: bool,
    /// Only files whose path matches (a glob, e.g. '*.exe'; repeatable).
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,
    /// Skip files and folders whose path matches (repeatable).
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Skip files larger than this many bytes.
    #[arg(long, value_name = "BYTES")]
    max_size: Option<u64>,
    /// Follow symbolic links (loops are detected and skipped).
    #[arg(long)]
    follow_symlinks: bool,
    /// Look up again the files an offline scan could not, and report what they turned out to be.
    #[arg(long)]
    recheck: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ScanFormat {
    Table,
    Json,
    Ndjson,
    Csv,
}

/// What the scan found about one file.
#[derive(Debug, Clone, Serialize)]
struct Scanned {
    path: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    md5: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha1: Option<String>,
    /// `untrusted`, `riskware`, `trusted`, `unknown`, `unknown (offline)` or `unreadable`.
    verdict: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    threat: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    /// Why a file could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The whole answer, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    reputation: Option<Reputation>,
}

const OFFLINE: &str = "unknown (offline)";

/// Most files whose hashes `hashes.json` remembers (about 150 bytes each).
const MAX_HASH_CACHE: usize = 1_000_000;
const UNREADABLE: &str = "unreadable";

fn rank(verdict: &str) -> u8 {
    match verdict {
        "untrusted" => 0,
        "riskware" => 1,
        OFFLINE => 2,
        UNREADABLE => 3,
        "unknown" => 4,
        _ => 5,
    }
}

/// `hashes.json`: `device:inode:size:mtime` → the file's hashes, so unchanged files are not
/// read again.
#[derive(Debug, Default, Serialize, Deserialize)]
struct HashCache {
    entries: HashMap<String, Hashes>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Hashes {
    sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    md5: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha1: Option<String>,
}

/// `offline.json`: files an offline scan could not look up, by SHA-256.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Pending {
    files: BTreeMap<String, Vec<String>>,
}

/// One file to hash.
struct Job {
    path: PathBuf,
    size: u64,
    identity: Option<String>,
}

fn identity(metadata: &std::fs::Metadata) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        Some(format!(
            "{}:{}:{}:{}.{}",
            metadata.dev(),
            metadata.ino(),
            metadata.len(),
            metadata.mtime(),
            metadata.mtime_nsec()
        ))
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        None
    }
}

/// Walks `paths`: regular files (special files skipped), with the globs and size limit.
fn walk(args: &ScanArgs, unreadable: &mut Vec<Scanned>) -> anyhow::Result<Vec<Job>> {
    let mut jobs = Vec::new();
    for root in &args.paths {
        let mut overrides = ignore::overrides::OverrideBuilder::new(root);
        for glob in &args.include {
            overrides
                .add(glob)
                .with_context(|| format!("--include {glob:?} is not a glob"))?;
        }
        for glob in &args.exclude {
            overrides
                .add(&format!("!{glob}"))
                .with_context(|| format!("--exclude {glob:?} is not a glob"))?;
        }
        let overrides = overrides.build().context("invalid --include/--exclude")?;
        let walker = ignore::WalkBuilder::new(root)
            .standard_filters(false)
            .follow_links(args.follow_symlinks)
            .overrides(overrides)
            .build();
        for entry in walker {
            let entry = match entry {
                Ok(entry) => entry,
                Err(error) => {
                    let path = match &error {
                        ignore::Error::WithPath { path, .. } => path.display().to_string(),
                        _ => root.display().to_string(),
                    };
                    if error.is_io() || matches!(error, ignore::Error::WithPath { .. }) {
                        unreadable.push(unreadable_entry(path, 0, error.to_string()));
                    }
                    continue;
                }
            };
            let Some(kind) = entry.file_type() else {
                continue;
            };
            if !kind.is_file() {
                continue; // Folders, symlinks not followed, devices, sockets, pipes.
            }
            let metadata = match entry.metadata() {
                Ok(metadata) => metadata,
                Err(error) => {
                    unreadable.push(unreadable_entry(
                        entry.path().display().to_string(),
                        0,
                        error.to_string(),
                    ));
                    continue;
                }
            };
            if args.max_size.is_some_and(|max| metadata.len() > max) {
                continue;
            }
            jobs.push(Job {
                path: entry.into_path(),
                size: metadata.len(),
                identity: identity(&metadata),
            });
        }
    }
    Ok(jobs)
}

fn unreadable_entry(path: String, size: u64, error: String) -> Scanned {
    Scanned {
        path,
        size,
        sha256: None,
        md5: None,
        sha1: None,
        verdict: UNREADABLE.to_owned(),
        threat: None,
        source: None,
        error: Some(error),
        reputation: None,
    }
}

/// One read of the file feeds every hash asked for.
fn hash(path: &Path, all: bool) -> std::io::Result<Hashes> {
    use sha2::Digest as _;
    let mut file = std::fs::File::open(path)?;
    let mut sha256 = sha2::Sha256::new();
    let mut md5 = all.then(md5::Md5::new);
    let mut sha1 = all.then(sha1::Sha1::new);
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        sha256.update(&buffer[..read]);
        if let Some(md5) = &mut md5 {
            md5.update(&buffer[..read]);
        }
        if let Some(sha1) = &mut sha1 {
            sha1.update(&buffer[..read]);
        }
    }
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    Ok(Hashes {
        sha256: hex(&sha256.finalize()),
        md5: md5.map(|h| hex(&h.finalize())),
        sha1: sha1.map(|h| hex(&h.finalize())),
    })
}

/// Progress on a terminal (files, bytes, rate, ETA, untrusted so far); nothing otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    untrusted: AtomicU64,
}

impl Progress {
    fn new(total_bytes: u64) -> Progress {
        use std::io::IsTerminal as _;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total_bytes);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {msg} [{bar:25}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        Progress {
            bar,
            untrusted: AtomicU64::new(0),
        }
    }

    fn file_done(&self, files: usize, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
            bar.set_message(format!(
                "{files} files, {} untrusted",
                self.untrusted.load(Ordering::Relaxed)
            ));
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn from_reputation(mut scanned: Scanned, reputation: Reputation) -> Scanned {
    scanned.verdict = reputation.verdict.as_str().to_owned();
    scanned.threat = reputation.threat.clone();
    scanned.source = reputation.source.clone();
    scanned.reputation = Some(reputation);
    scanned
}

/// Looks up one batch: answers in order, or `None` for every file when the server cannot be
/// reached (the scan goes on offline).
async fn look_up(
    client: &Client,
    private: bool,
    hashes: &[String],
) -> anyhow::Result<Option<Vec<Reputation>>> {
    let result = if private {
        let targets = hashes
            .iter()
            .map(|hex| match FileHash::from_hex(hex) {
                Ok(FileHash::Sha256(sha256)) => Ok(PrivateTarget::File(sha256)),
                _ => Err(anyhow::anyhow!("{hex} is not a SHA-256")),
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        client.lookup_private(&targets).await.map(|answers| {
            answers
                .into_iter()
                .zip(hashes)
                .map(|(answer, hex)| private_reputation(hex, answer))
                .collect()
        })
    } else {
        let items: Vec<LookupItem<'_>> = hashes
            .iter()
            .map(|hex| LookupItem::new(ObjectKind::File, hex.as_str()))
            .collect();
        client.lookup(&items, false).await
    };
    match result {
        Ok(answers) => Ok(Some(answers)),
        Err(ClientError::Unreachable { .. }) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// A privacy-mode answer in the shape of a reputation.
fn private_reputation(hex: &str, answer: repnet_client::PrivateAnswer) -> Reputation {
    let object = repnet_model::Object::parse(ObjectKind::File, hex).unwrap_or(
        repnet_model::Object::File(FileHash::Sha256(Sha256([0; 32]))),
    );
    let ttl = repnet_model::TtlPolicy {
        known: 3600,
        unknown: 300,
    };
    let mut reputation =
        Reputation::from_model(&repnet_model::Reputation::unknown(object, &ttl), false);
    if let Some(found) = answer.found {
        reputation.verdict = found.verdict;
        reputation.threat = found.threat;
        reputation.source = found.source;
        reputation.confidence = found.confidence;
        reputation.categories = found.categories;
    }
    reputation
}

pub(crate) async fn run(args: ScanArgs, files: &ClientFiles) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let mut config = files.load()?;
    let server = participation::server_url(&config, args.server.clone());
    let mut client = Client::with_ca(&server, args.ca.as_deref())?;
    if let Some(key) = args.key.as_ref().or(config.key.as_ref()) {
        client = client.with_licence_key(key.trim());
    }
    if args.recheck {
        return recheck(&args, files, &client, config.participation).await;
    }
    let mut results: Vec<Scanned> = Vec::new();
    let jobs = walk(&args, &mut results)?;
    let total_bytes: u64 = jobs.iter().map(|job| job.size).sum();
    let hash_cache: HashCache = files.read_json("hashes.json")?;
    let mut verdicts = files.cache()?;
    let progress = Arc::new(Progress::new(total_bytes));
    let online = config.participation != Mode::Off;

    // Hashing threads take jobs by index and hand each file to the lookup side at once.
    let jobs = Arc::new(jobs);
    let hash_cache = Arc::new(hash_cache);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let hashed_now = Arc::new(AtomicU64::new(0));
    let (sender, mut receiver) =
        tokio::sync::mpsc::unbounded_channel::<(usize, std::io::Result<Hashes>)>();
    let threads = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let all_hashes = args.all_hashes;
    let mut workers = Vec::new();
    for _ in 0..threads {
        let (jobs, hash_cache, next, sender, progress, done, hashed_now) = (
            Arc::clone(&jobs),
            Arc::clone(&hash_cache),
            Arc::clone(&next),
            sender.clone(),
            Arc::clone(&progress),
            Arc::clone(&done),
            Arc::clone(&hashed_now),
        );
        workers.push(std::thread::spawn(move || {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(index) else { break };
                let cached = job
                    .identity
                    .as_ref()
                    .and_then(|identity| hash_cache.entries.get(identity))
                    .filter(|hashes| !all_hashes || (hashes.md5.is_some() && hashes.sha1.is_some()))
                    .cloned();
                let result = match cached {
                    Some(hashes) => Ok(hashes),
                    None => {
                        hashed_now.fetch_add(1, Ordering::Relaxed);
                        hash(&job.path, all_hashes)
                    }
                };
                let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                progress.file_done(finished, job.size);
                if sender.send((index, result)).is_err() {
                    break;
                }
            }
        }));
    }
    drop(sender);

    // Lookups, a batch of 1,000 at a time, while hashing goes on.
    let mut scanned: Vec<Option<Scanned>> = vec![None; jobs.len()];
    let mut new_hashes: Vec<(String, Hashes)> = Vec::new();
    let mut batch: Vec<usize> = Vec::new();
    let mut offline = false;
    let mut lookups = 0u64;
    let mut pending = Pending::default();
    loop {
        let item = receiver.recv().await;
        let finished = item.is_none();
        if let Some((index, result)) = item {
            let job = &jobs[index];
            let path = job.path.display().to_string();
            match result {
                Err(error) => {
                    scanned[index] = Some(unreadable_entry(path, job.size, error.to_string()))
                }
                Ok(hashes) => {
                    if let Some(identity) = &job.identity {
                        new_hashes.push((identity.clone(), hashes.clone()));
                    }
                    let entry = Scanned {
                        path,
                        size: job.size,
                        sha256: Some(hashes.sha256.clone()),
                        md5: hashes.md5.clone(),
                        sha1: hashes.sha1.clone(),
                        verdict: "unknown".to_owned(),
                        threat: None,
                        source: None,
                        error: None,
                        reputation: None,
                    };
                    scanned[index] = Some(match verdicts.get("file", &hashes.sha256) {
                        Some(reputation) => from_reputation(entry, reputation.clone()),
                        None if online && !offline => {
                            batch.push(index);
                            entry
                        }
                        None if online => {
                            pending
                                .files
                                .entry(hashes.sha256.clone())
                                .or_default()
                                .push(entry.path.clone());
                            Scanned {
                                verdict: OFFLINE.to_owned(),
                                ..entry
                            }
                        }
                        None => entry,
                    });
                }
            }
        }
        if batch.len() >= repnet_client::BATCH_LIMIT / 10 || (finished && !batch.is_empty()) {
            let indices = std::mem::take(&mut batch);
            let hashes: Vec<String> = indices
                .iter()
                .filter_map(|i| scanned[*i].as_ref().and_then(|s| s.sha256.clone()))
                .collect();
            lookups += 1;
            match look_up(&client, args.private, &hashes).await? {
                Some(answers) => {
                    for (index, reputation) in indices.iter().zip(answers) {
                        if let Some(entry) = scanned[*index].take() {
                            if !args.private
                                && let Some(sha256) = &entry.sha256
                            {
                                verdicts.put("file", sha256, &reputation);
                            }
                            if reputation.verdict == Verdict::Untrusted {
                                progress.untrusted.fetch_add(1, Ordering::Relaxed);
                            }
                            scanned[*index] = Some(from_reputation(entry, reputation));
                        }
                    }
                }
                None => {
                    offline = true;
                    for index in indices {
                        if let Some(entry) = scanned[index].take() {
                            if let Some(sha256) = &entry.sha256 {
                                pending
                                    .files
                                    .entry(sha256.clone())
                                    .or_default()
                                    .push(entry.path.clone());
                            }
                            scanned[index] = Some(Scanned {
                                verdict: OFFLINE.to_owned(),
                                ..entry
                            });
                        }
                    }
                }
            }
        }
        if finished {
            break;
        }
    }
    for worker in workers {
        let _ = worker.join();
    }
    progress.finish();
    results.extend(scanned.into_iter().flatten());

    // Keep what was learnt: hashes of unchanged files, answers, what to recheck.
    let mut hash_cache = Arc::try_unwrap(hash_cache).unwrap_or_default();
    if hash_cache.entries.len() + new_hashes.len() > MAX_HASH_CACHE {
        // Bounded: past the limit, only the files of this scan are remembered.
        hash_cache.entries.clear();
    }
    hash_cache.entries.extend(new_hashes);
    let _ = files.write_json("hashes.json", &hash_cache);
    if !args.private {
        let _ = files.save_cache(&verdicts);
    }
    if !pending.files.is_empty() {
        let mut kept: Pending = files.read_json("offline.json").unwrap_or_default();
        for (sha256, paths) in pending.files {
            kept.files.entry(sha256).or_default().extend(paths);
        }
        files.write_json("offline.json", &kept)?;
        eprintln!(
            "repnet: {} could not be reached: {} file(s) are marked unknown (offline); `repnet scan --recheck` looks them up later",
            server,
            kept.files.len()
        );
    }
    if config.participation == Mode::Off {
        eprintln!("repnet: participation is off: verdicts come from the local cache only");
    }

    // Extended participation: detections.
    let events: Vec<StatisticsEvent> = results
        .iter()
        .filter(|r| r.verdict == "untrusted")
        .map(|r| StatisticsEvent {
            kind: "detection".to_owned(),
            file: r.sha256.clone(),
            url: None,
            size: Some(r.size),
            signer: None,
            name: Some(r.path.clone()),
            threat: r.threat.clone(),
            comment: None,
        })
        .collect();
    if !offline && !events.is_empty() {
        participation::queue_and_send(files, &mut config, &client, events).await?;
    }

    let summary = Summary::of(
        &results,
        started,
        hashed_now.load(Ordering::Relaxed),
        lookups,
    );
    print(&args, &mut results)?;
    eprintln!("{}", summary.line());
    Ok(if summary.untrusted > 0 {
        Outcome::UntrustedFound
    } else {
        Outcome::Clean
    })
}

struct Summary {
    files: usize,
    bytes: u64,
    seconds: f64,
    counts: BTreeMap<String, usize>,
    untrusted: usize,
    hashed: u64,
    lookups: u64,
}

impl Summary {
    fn of(results: &[Scanned], started: Instant, hashed: u64, lookups: u64) -> Summary {
        let mut counts = BTreeMap::new();
        for result in results {
            *counts.entry(result.verdict.clone()).or_insert(0) += 1;
        }
        Summary {
            files: results.len(),
            bytes: results.iter().map(|r| r.size).sum(),
            seconds: started.elapsed().as_secs_f64(),
            untrusted: counts.get("untrusted").copied().unwrap_or(0),
            counts,
            hashed,
            lookups,
        }
    }

    fn line(&self) -> String {
        let counts: Vec<String> = self
            .counts
            .iter()
            .map(|(verdict, count)| format!("{verdict} {count}"))
            .collect();
        format!(
            "scanned {} files, {:.1} MB in {:.2} s ({:.1} MB/s): {}; {} hashed, {} lookup requests",
            self.files,
            self.bytes as f64 / 1e6,
            self.seconds,
            self.bytes as f64 / 1e6 / self.seconds.max(1e-9),
            counts.join(", "),
            self.hashed,
            self.lookups
        )
    }
}

fn print(args: &ScanArgs, results: &mut Vec<Scanned>) -> anyhow::Result<()> {
    results.sort_by(|a, b| {
        rank(&a.verdict)
            .cmp(&rank(&b.verdict))
            .then_with(|| a.path.cmp(&b.path))
    });
    if args.only_untrusted {
        results.retain(|r| r.verdict == "untrusted");
    }
    match args.format {
        ScanFormat::Json => println!("{}", serde_json::to_string_pretty(results)?),
        ScanFormat::Ndjson => {
            for result in results.iter() {
                println!("{}", serde_json::to_string(result)?);
            }
        }
        ScanFormat::Csv => {
            println!("path,size,sha256,verdict,threat,source,error");
            let field = |text: &str| {
                if text.contains([',', '"', '\n']) {
                    format!("\"{}\"", text.replace('"', "\"\""))
                } else {
                    text.to_owned()
                }
            };
            for r in results.iter() {
                println!(
                    "{},{},{},{},{},{},{}",
                    field(&r.path),
                    r.size,
                    r.sha256.as_deref().unwrap_or(""),
                    field(&r.verdict),
                    field(r.threat.as_deref().unwrap_or("")),
                    field(r.source.as_deref().unwrap_or("")),
                    field(r.error.as_deref().unwrap_or(""))
                );
            }
        }
        ScanFormat::Table => {
            let width = results
                .iter()
                .map(|r| r.path.chars().count())
                .max()
                .unwrap_or(4)
                .max(4);
            println!(
                "{:<width$}  {:<18}  {:<24}  SOURCE",
                "PATH", "VERDICT", "THREAT"
            );
            for r in results.iter() {
                println!(
                    "{:<width$}  {:<18}  {:<24}  {}",
                    r.path,
                    r.verdict,
                    r.threat.as_deref().or(r.error.as_deref()).unwrap_or("-"),
                    r.source.as_deref().unwrap_or("-")
                );
            }
        }
    }
    Ok(())
}

/// `--recheck`: the files an offline scan could not look up, looked up now.
async fn recheck(
    args: &ScanArgs,
    files: &ClientFiles,
    client: &Client,
    mode: Mode,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let pending: Pending = files.read_json("offline.json")?;
    if pending.files.is_empty() {
        eprintln!("repnet: nothing to recheck: no offline scan left files unknown");
        return Ok(Outcome::Clean);
    }
    if mode == Mode::Off {
        anyhow::bail!(
            "participation is off: `repnet participation basic` lets the recheck ask the server"
        );
    }
    let hashes: Vec<String> = pending.files.keys().cloned().collect();
    let mut verdicts = files.cache()?;
    let mut results = Vec::new();
    let mut lookups = 0;
    for chunk in hashes.chunks(repnet_client::BATCH_LIMIT) {
        lookups += 1;
        let Some(answers) = look_up(client, args.private, chunk).await? else {
            anyhow::bail!(
                "the server still cannot be reached: the files stay recorded for the next --recheck"
            );
        };
        for (sha256, reputation) in chunk.iter().zip(answers) {
            if !args.private {
                verdicts.put("file", sha256, &reputation);
            }
            for path in &pending.files[sha256] {
                let size = std::fs::metadata(path).map_or(0, |m| m.len());
                let entry = Scanned {
                    path: path.clone(),
                    size,
                    sha256: Some(sha256.clone()),
                    md5: None,
                    sha1: None,
                    verdict: OFFLINE.to_owned(),
                    threat: None,
                    source: None,
                    error: None,
                    reputation: None,
                };
                results.push(from_reputation(entry, reputation.clone()));
            }
        }
    }
    let _ = files.save_cache(&verdicts);
    files.write_json("offline.json", &Pending::default())?;
    let summary = Summary::of(&results, started, 0, lookups);
    print(args, &mut results)?;
    eprintln!("rechecked: {}", summary.line());
    Ok(if summary.untrusted > 0 {
        Outcome::UntrustedFound
    } else {
        Outcome::Clean
    })
}
