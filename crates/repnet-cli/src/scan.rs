//! `repnet scan PATH…`: walk, hash in parallel, look up in batches while hashing goes on,
//! and say what is untrusted. Hashes of unchanged files (same device, inode, size and mtime)
//! and answers still within their TTL come from the client's caches; when the network is
//! unreachable the scan finishes with what the cache knows and records the rest for
//! `repnet scan --recheck`.

use repnet_protocol::ErrorCode;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use repnet_client::{Client, ClientError, PrivateTarget};
use repnet_model::{FileHash, FileHashes};
use repnet_protocol::{LookupItem, LookupResult, Reputation, StatisticsEvent};
use serde::{Deserialize, Serialize};

use crate::caches::{Asked, Caches, ServerId};
use crate::config::{ClientFiles, Mode};
use crate::connect::ServerArgs;
use crate::hashing::{self, Which};
use crate::participation::{self};
use crate::{FailOn, Outcome};

#[derive(Debug, Args)]
pub(crate) struct ScanArgs {
    /// Files and folders to scan.
    #[arg(value_name = "PATH", required_unless_present = "recheck")]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    connection: ServerArgs,
    /// Hashing threads [default: one per core].
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: ScanFormat,
    /// Print only untrusted files (the summary still counts everything).
    #[arg(long)]
    only_untrusted: bool,
    /// Privacy mode: send only 4-byte prefixes of the files' hashes.
    #[arg(long)]
    private: bool,
    /// Which hashes to compute and look up: all (MD5, SHA-1 and SHA-256, from one read of
    /// each file; feeds such as ClamAV's list files by MD5 only) or sha256 (faster, and
    /// blind to what is listed by MD5 or SHA-1 only).
    #[arg(long, value_enum, default_value = "all", value_name = "WHICH")]
    hashes: HashChoice,
    /// Exit 1 when any file is at least this bad.
    #[arg(long, value_enum, default_value = "untrusted", value_name = "VERDICT")]
    fail_on: FailOn,
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
enum HashChoice {
    All,
    Sha256,
}

impl HashChoice {
    fn which(self) -> Which {
        match self {
            HashChoice::All => Which::All,
            HashChoice::Sha256 => Which::Sha256,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ScanFormat {
    Table,
    Json,
    Ndjson,
    Csv,
}

impl ScanFormat {
    /// Whether the output has each file's whole answer.
    fn shows_answers(self) -> bool {
        matches!(self, ScanFormat::Json | ScanFormat::Ndjson)
    }
}

/// What the scan found about one file. Kept small: a scan holds one per file until it
/// prints them, untrusted first.
#[derive(Debug, Clone, Serialize)]
struct Scanned {
    path: String,
    size: u64,
    /// `sha256`, `md5` and `sha1`, as hexadecimal text.
    #[serde(flatten)]
    hashes: HexHashes,
    /// `untrusted`, `riskware`, `trusted`, `unknown`, `unknown (offline)` or `unreadable`.
    verdict: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    threat: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    /// Why a file could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The answer was served past its lifetime by a proxy whose upstream is down.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stale: bool,
    /// The whole answer, when there is one and the output shows it (JSON, NDJSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    reputation: Option<Box<Reputation>>,
}

/// A file's hashes, written as the fields `sha256`, `md5` and `sha1` (those known).
#[derive(Debug, Clone, Copy, Default)]
struct HexHashes(FileHashes);

impl Serialize for HexHashes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(None)?;
        if let Some(sha256) = &self.0.sha256 {
            map.serialize_entry("sha256", &sha256.to_string())?;
        }
        if let Some(md5) = &self.0.md5 {
            map.serialize_entry("md5", &md5.to_string())?;
        }
        if let Some(sha1) = &self.0.sha1 {
            map.serialize_entry("sha1", &sha1.to_string())?;
        }
        map.end()
    }
}

impl Scanned {
    /// An entry for a file just hashed, not yet looked up.
    fn hashed(path: String, size: u64, hashes: &FileHashes) -> Scanned {
        Scanned {
            path,
            size,
            hashes: HexHashes(*hashes),
            verdict: "unknown",
            threat: None,
            source: None,
            error: None,
            stale: false,
            reputation: None,
        }
    }
}

const OFFLINE: &str = "unknown (offline)";
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

/// `offline.json` in the state directory: files that could not be checked, by the server
/// that was asked (its URL), then by SHA-256, with their other hashes and paths.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Offline {
    #[serde(default)]
    servers: BTreeMap<String, BTreeMap<String, PendingFile>>,
    /// Before files were kept by server: SHA-256 → paths. Rechecked against any server.
    #[serde(default, skip_serializing)]
    files: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PendingFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    md5: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha1: Option<String>,
    paths: Vec<String>,
}

impl PendingFile {
    fn hashes(&self, sha256: &str) -> FileHashes {
        let mut hashes = FileHashes::default();
        for text in [Some(sha256), self.md5.as_deref(), self.sha1.as_deref()]
            .into_iter()
            .flatten()
        {
            // Written by this program from parsed hashes; a damaged one is left out.
            if let Ok(hash) = FileHash::from_hex(text) {
                hashes.insert(hash);
            }
        }
        hashes
    }
}

impl Offline {
    fn add(&mut self, server: &str, hashes: &FileHashes, path: String) {
        let Some(sha256) = hashes.sha256 else {
            return;
        };
        let file = self
            .servers
            .entry(server.to_owned())
            .or_default()
            .entry(sha256.to_string())
            .or_default();
        file.md5 = file
            .md5
            .take()
            .or_else(|| hashes.md5.map(|h| h.to_string()));
        file.sha1 = file
            .sha1
            .take()
            .or_else(|| hashes.sha1.map(|h| h.to_string()));
        if !file.paths.contains(&path) {
            file.paths.push(path);
        }
    }

    fn merge(&mut self, other: Offline) {
        for (server, files) in other.servers {
            let kept = self.servers.entry(server).or_default();
            for (sha256, file) in files {
                let entry = kept.entry(sha256).or_default();
                entry.md5 = entry.md5.take().or(file.md5);
                entry.sha1 = entry.sha1.take().or(file.sha1);
                for path in file.paths {
                    if !entry.paths.contains(&path) {
                        entry.paths.push(path);
                    }
                }
            }
        }
    }

    /// Takes what waits for `server`, and what was recorded before files were kept by
    /// server.
    fn take(&mut self, server: &str) -> BTreeMap<String, PendingFile> {
        let mut taken = self.servers.remove(server).unwrap_or_default();
        for (sha256, paths) in std::mem::take(&mut self.files) {
            taken.entry(sha256).or_default().paths.extend(paths);
        }
        taken
    }

    fn count(&self) -> usize {
        self.servers.values().map(BTreeMap::len).sum::<usize>() + self.files.len()
    }
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
        if std::fs::symlink_metadata(root).is_err() {
            unreadable.push(unreadable_entry(
                output_path(root),
                0,
                "no such file or folder".to_owned(),
            ));
            continue;
        }
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
                        ignore::Error::WithPath { path, .. } => output_path(path),
                        _ => output_path(root),
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
                        output_path(entry.path()),
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
        hashes: HexHashes::default(),
        verdict: UNREADABLE,
        threat: None,
        source: None,
        error: Some(error),
        stale: false,
        reputation: None,
    }
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

/// `scanned` with its answer; the whole answer is kept only when the output shows it.
fn from_reputation(mut scanned: Scanned, reputation: Reputation, keep: bool) -> Scanned {
    scanned.verdict = reputation.verdict.as_str();
    scanned.stale = reputation.stale;
    if keep {
        scanned.threat = reputation.threat.clone();
        scanned.source = reputation.source.clone();
        scanned.reputation = Some(Box::new(reputation));
    } else {
        scanned.threat = reputation.threat;
        scanned.source = reputation.source;
    }
    scanned
}

/// Hashes and answers kept in memory before they are written to the caches.
const FLUSH_EVERY: usize = 20_000;

/// Writes what a scan learnt to the caches, and forgets it. A cache that cannot be written
/// costs the next scan time, nothing else.
fn flush(
    caches: &Caches,
    hashes: &mut Vec<(String, FileHashes)>,
    server: ServerId,
    answers: &mut Vec<(FileHashes, Reputation)>,
) {
    let asked: Vec<(Asked<'_>, &Reputation)> = answers
        .iter()
        .map(|(hashes, reputation)| (Asked::File(hashes), reputation))
        .collect();
    if let Err(error) = caches.save(hashes, server, &asked) {
        eprintln!("repnet: the caches could not be updated: {error:#}");
    }
    drop(asked);
    hashes.clear();
    answers.clear();
}

/// Looks up one batch: answers in order, each `None` when it could not be checked (a proxy
/// whose upstream is down answers what it has cached); `None` for the whole batch when the
/// server cannot be reached or cannot answer any of it (the scan goes on offline).
async fn look_up(
    client: &Client,
    private: bool,
    files: &[FileHashes],
) -> anyhow::Result<Option<Vec<Option<Reputation>>>> {
    let result = if private {
        let targets: Vec<PrivateTarget> = files
            .iter()
            .filter_map(|hashes| PrivateTarget::file(*hashes))
            .collect();
        client.lookup_private(&targets).await.map(|answers| {
            answers
                .iter()
                .map(|answer| Some(Reputation::from_model(answer, false)))
                .collect()
        })
    } else {
        let items: Vec<LookupItem<'_>> = files.iter().map(LookupItem::file).collect();
        client
            .lookup_items(&items, false)
            .await
            .map(|results| -> Vec<Option<Reputation>> {
                results
                    .into_iter()
                    .map(|result| match result {
                        LookupResult::Reputation(reputation) => Some(reputation),
                        LookupResult::Unavailable(_) => None,
                    })
                    .collect()
            })
    };
    match result {
        Ok(answers) if answers.len() == files.len() => Ok(Some(answers)),
        Ok(_) => anyhow::bail!("the server answered a different number of files than asked"),
        Err(ClientError::Unreachable { .. }) => Ok(None),
        // A proxy that cannot ask its upstream about any of them.
        Err(ClientError::Api { code, .. })
            if code == ErrorCode::UpstreamUnavailable.as_str()
                || code == ErrorCode::UpstreamRefused.as_str() =>
        {
            Ok(None)
        }
        Err(error) => Err(error.into()),
    }
}

pub(crate) async fn run(args: ScanArgs, files: &ClientFiles) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let mut config = files.load()?;
    participation::require_choice(files, &mut config, &args.connection).await?;
    let server = args.connection.url(&config);
    let client = args.connection.client(&config)?;
    // Answers are cached by the server and key that gave them.
    let server_id = ServerId::new(&server, args.connection.key(&config).as_deref());
    let caches = Arc::new(files.caches()?);
    if args.recheck {
        return recheck(&args, files, &client, &caches, server_id, config.mode()).await;
    }
    let mut results: Vec<Scanned> = Vec::new();
    let jobs = walk(&args, &mut results)?;
    let mut stream = Stream::new(&args);
    if let Some(stream) = stream.as_mut() {
        for entry in &results {
            stream.emit(entry)?;
        }
        stream.flush()?;
    }
    let total_bytes: u64 = jobs.iter().map(|job| job.size).sum();
    let progress = Arc::new(Progress::new(total_bytes));
    let online = config.mode() != Mode::Off;
    let keep_answers = args.format.shows_answers();

    // Hashing threads take jobs by index and hand each file to the lookup side at once.
    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let hashed_now = Arc::new(AtomicU64::new(0));
    // Each file's hashes, whether they were computed now (rather than cached), and the
    // cached answer about it, if any: the workers read the caches too, so that a rescan of an
    // unchanged tree uses every core.
    type Hashed = std::io::Result<(FileHashes, bool, Option<Reputation>)>;
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<(usize, Hashed)>();
    let threads = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let which = args.hashes.which();
    let mut workers = Vec::new();
    for _ in 0..threads {
        let (jobs, caches, next, sender, progress, done, hashed_now) = (
            Arc::clone(&jobs),
            Arc::clone(&caches),
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
                    .and_then(|identity| caches.hashes(identity, which == Which::All));
                let result = match cached {
                    Some(hashes) => Ok((hashes, false)),
                    None => {
                        hashed_now.fetch_add(1, Ordering::Relaxed);
                        hashing::hash_file(&job.path, which).map(|hashes| (hashes, true))
                    }
                }
                .map(|(hashes, computed)| {
                    let answer = caches.answer(server_id, Asked::File(&hashes));
                    (hashes, computed, answer)
                });
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
    let mut new_hashes: Vec<(String, FileHashes)> = Vec::new();
    let mut new_answers: Vec<(FileHashes, Reputation)> = Vec::new();
    let mut batch: Vec<usize> = Vec::new();
    let mut offline = false;
    let mut lookups = 0u64;
    let mut pending = Offline::default();
    loop {
        let item = receiver.recv().await;
        let finished = item.is_none();
        if let Some((index, result)) = item {
            let job = &jobs[index];
            let path = output_path(&job.path);
            match result {
                Err(error) => {
                    scanned[index] = Some(unreadable_entry(path, job.size, error.to_string()))
                }
                Ok((hashes, computed, cached)) => {
                    if computed && let Some(identity) = &job.identity {
                        new_hashes.push((identity.clone(), hashes));
                    }
                    let entry = Scanned::hashed(path, job.size, &hashes);
                    scanned[index] = Some(match cached {
                        Some(reputation) => from_reputation(entry, reputation, keep_answers),
                        None if online && !offline => {
                            batch.push(index);
                            entry
                        }
                        None if online => {
                            pending.add(&server, &hashes, entry.path.clone());
                            Scanned {
                                verdict: OFFLINE,
                                ..entry
                            }
                        }
                        None => entry,
                    });
                }
            }
            // Decided now, unless it waits in the batch.
            if let Some(stream) = stream.as_mut()
                && batch.last() != Some(&index)
                && let Some(entry) = &scanned[index]
            {
                stream.emit(entry)?;
                stream.flush()?;
            }
        }
        if batch.len() >= repnet_client::BATCH_LIMIT / 10 || (finished && !batch.is_empty()) {
            let indices = std::mem::take(&mut batch);
            let hashes: Vec<FileHashes> = indices
                .iter()
                .filter_map(|i| scanned[*i].as_ref().map(|s| s.hashes.0))
                .collect();
            lookups += 1;
            let answers = match look_up(&client, args.private, &hashes).await? {
                Some(answers) => answers,
                None => {
                    offline = true;
                    vec![None; indices.len()]
                }
            };
            for (index, answer) in indices.iter().zip(answers) {
                let Some(entry) = scanned[*index].take() else {
                    continue;
                };
                scanned[*index] = Some(match answer {
                    Some(reputation) => {
                        if !args.private {
                            new_answers.push((entry.hashes.0, reputation.clone()));
                        }
                        if args.fail_on.fails(reputation.verdict) {
                            progress.untrusted.fetch_add(1, Ordering::Relaxed);
                        }
                        from_reputation(entry, reputation, keep_answers)
                    }
                    // Not checked: recorded for `--recheck`.
                    None => {
                        pending.add(&server, &entry.hashes.0, entry.path.clone());
                        Scanned {
                            verdict: OFFLINE,
                            ..entry
                        }
                    }
                });
                if let Some(stream) = stream.as_mut()
                    && let Some(entry) = &scanned[*index]
                {
                    stream.emit(entry)?;
                }
            }
            if let Some(stream) = stream.as_mut() {
                stream.flush()?;
            }
        }
        // What was learnt goes to the caches as the scan goes, so that a scan of millions of
        // files holds a bounded amount of it.
        if new_hashes.len() + new_answers.len() >= FLUSH_EVERY {
            flush(&caches, &mut new_hashes, server_id, &mut new_answers);
        }
        if finished {
            break;
        }
    }
    for worker in workers {
        let _ = worker.join();
    }
    // The walk's list is not needed any more: free it before the results are sorted.
    drop(jobs);
    progress.finish();
    results.extend(scanned.into_iter().flatten());

    // Keep what was learnt: hashes of unchanged files, answers, what to recheck.
    flush(&caches, &mut new_hashes, server_id, &mut new_answers);
    if pending.count() > 0 {
        let unchecked = pending.count();
        let mut kept: Offline = files.read_state("offline.json").unwrap_or_default();
        kept.merge(pending);
        files.write_state("offline.json", &kept)?;
        eprintln!(
            "repnet: {server} could not answer for {unchecked} file(s) (unreachable, or a proxy whose upstream is down): they are marked unknown (offline); `repnet scan --recheck` looks them up later"
        );
    }
    if config.mode() == Mode::Off {
        eprintln!("repnet: participation is off: verdicts come from the local cache only");
    }

    // Extended participation: detections.
    let events: Vec<StatisticsEvent> = results
        .iter()
        .filter(|r| r.verdict == "untrusted")
        .map(|r| StatisticsEvent {
            kind: "detection".to_owned(),
            file: r.hashes.0.sha256.map(|h| h.to_string()),
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
    if stream.is_none() {
        print(&args, &mut results)?;
    }
    eprintln!("{}", summary.line());
    Ok(summary.outcome(args.fail_on))
}

struct Summary {
    files: usize,
    bytes: u64,
    seconds: f64,
    counts: BTreeMap<String, usize>,
    untrusted: usize,
    riskware: usize,
    /// Files that could not be checked: offline, unreadable, missing.
    unchecked: usize,
    hashed: u64,
    lookups: u64,
}

impl Summary {
    fn of(results: &[Scanned], started: Instant, hashed: u64, lookups: u64) -> Summary {
        let mut counts = BTreeMap::new();
        for result in results {
            *counts.entry(result.verdict.to_owned()).or_insert(0) += 1;
        }
        Summary {
            files: results.len(),
            bytes: results.iter().map(|r| r.size).sum(),
            seconds: started.elapsed().as_secs_f64(),
            untrusted: counts.get("untrusted").copied().unwrap_or(0),
            riskware: counts.get("riskware").copied().unwrap_or(0),
            unchecked: [OFFLINE, UNREADABLE]
                .iter()
                .filter_map(|label| counts.get(*label))
                .sum(),
            counts,
            hashed,
            lookups,
        }
    }

    /// 1 if anything failing was found, else 2 if anything could not be checked, else 0.
    fn outcome(&self, fail_on: FailOn) -> Outcome {
        let found = self.untrusted > 0 || (fail_on == FailOn::Riskware && self.riskware > 0);
        Outcome::of(found, self.unchecked > 0)
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

/// `--format ndjson` writes a line per file as soon as its verdict is decided (hashed and
/// answered from the cache, or its batch looked up), so that a pipeline acts on the first
/// results while the scan goes on: in the order decided, not sorted.
struct Stream {
    out: std::io::BufWriter<std::io::Stdout>,
    only_untrusted: bool,
}

impl Stream {
    fn new(args: &ScanArgs) -> Option<Stream> {
        (args.format == ScanFormat::Ndjson).then(|| Stream {
            out: std::io::BufWriter::new(std::io::stdout()),
            only_untrusted: args.only_untrusted,
        })
    }

    fn emit(&mut self, scanned: &Scanned) -> anyhow::Result<()> {
        use std::io::Write as _;
        if self.only_untrusted && scanned.verdict != "untrusted" {
            return Ok(());
        }
        serde_json::to_writer(&mut self.out, scanned)?;
        writeln!(self.out)?;
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        use std::io::Write as _;
        self.out.flush()?;
        Ok(())
    }
}

/// A path as output shows it, losslessly: UTF-8 as it is, but a backslash as `\\` and each
/// byte that is not UTF-8 as `\xHH` (the escapes of `printf %b`), so that the exact name of a
/// file whose name is not UTF-8 can be recovered (docs/cli.md, "Paths in output").
pub(crate) fn output_path(path: &std::path::Path) -> String {
    #[cfg(unix)]
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    #[cfg(not(unix))]
    let lossy = path.to_string_lossy();
    #[cfg(not(unix))]
    let bytes = lossy.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(&chunk.valid().replace('\\', "\\\\"));
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02X}"));
        }
    }
    out
}

/// A CSV field as RFC 4180 writes it: quoted, with quotes doubled, when it holds a comma, a
/// quote or a line break.
pub(crate) fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// A hash as hexadecimal text, or nothing.
fn hex(hash: Option<FileHash>) -> String {
    hash.map(|h| h.to_string()).unwrap_or_default()
}

fn print(args: &ScanArgs, results: &mut Vec<Scanned>) -> anyhow::Result<()> {
    use std::io::Write as _;
    results.sort_by(|a, b| {
        rank(a.verdict)
            .cmp(&rank(b.verdict))
            .then_with(|| a.path.cmp(&b.path))
    });
    if args.only_untrusted {
        results.retain(|r| r.verdict == "untrusted");
    }
    // Buffered: standard output is line-buffered, a write per line for a million files.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.format {
        ScanFormat::Json => {
            serde_json::to_writer_pretty(&mut out, results)?;
            writeln!(out)?;
        }
        ScanFormat::Ndjson => {
            for result in results.iter() {
                serde_json::to_writer(&mut out, result)?;
                writeln!(out)?;
            }
        }
        ScanFormat::Csv => {
            writeln!(
                out,
                "path,size,sha256,md5,sha1,verdict,threat,source,stale,error"
            )?;
            let field = csv_field;
            for r in results.iter() {
                writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{},{}",
                    field(&r.path),
                    r.size,
                    hex(r.hashes.0.sha256.map(FileHash::Sha256)),
                    hex(r.hashes.0.md5.map(FileHash::Md5)),
                    hex(r.hashes.0.sha1.map(FileHash::Sha1)),
                    field(r.verdict),
                    field(r.threat.as_deref().unwrap_or("")),
                    field(r.source.as_deref().unwrap_or("")),
                    if r.stale { "true" } else { "" },
                    field(r.error.as_deref().unwrap_or(""))
                )?;
            }
        }
        ScanFormat::Table => {
            let width = results
                .iter()
                .map(|r| r.path.chars().count())
                .max()
                .unwrap_or(4)
                .max(4);
            writeln!(
                out,
                "{:<width$}  {:<18}  {:<24}  SOURCE",
                "PATH", "VERDICT", "THREAT OR ERROR"
            )?;
            for r in results.iter() {
                let verdict = if r.stale {
                    format!("{} (stale)", r.verdict)
                } else {
                    r.verdict.to_owned()
                };
                writeln!(
                    out,
                    "{:<width$}  {:<18}  {:<24}  {}",
                    r.path,
                    verdict,
                    r.threat.as_deref().or(r.error.as_deref()).unwrap_or("-"),
                    r.source.as_deref().unwrap_or("-")
                )?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// `--recheck`: the files an offline scan could not look up from this server, looked up now.
async fn recheck(
    args: &ScanArgs,
    files: &ClientFiles,
    client: &Client,
    caches: &Caches,
    server_id: ServerId,
    mode: Mode,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let server = client.base_url().to_owned();
    let mut offline: Offline = files.read_state("offline.json")?;
    let pending = offline.take(&server);
    if pending.is_empty() {
        match offline.count() {
            0 => eprintln!("repnet: nothing to recheck: no offline scan left files unknown"),
            waiting => {
                let servers: Vec<&str> = offline.servers.keys().map(String::as_str).collect();
                eprintln!(
                    "repnet: nothing to recheck with {server}; {waiting} file(s) wait for {}: pass --server",
                    servers.join(", ")
                );
            }
        }
        return Ok(Outcome::Clean);
    }
    if mode == Mode::Off {
        anyhow::bail!(
            "participation is off: `repnet participation basic` lets the recheck ask the server"
        );
    }
    let pending: Vec<(FileHashes, PendingFile)> = pending
        .into_iter()
        .map(|(sha256, file)| (file.hashes(&sha256), file))
        .collect();
    let keep_answers = args.format.shows_answers();
    let mut results = Vec::new();
    let mut answers_kept: Vec<(FileHashes, Reputation)> = Vec::new();
    let mut lookups = 0;
    let mut still = Offline::default();
    for chunk in pending.chunks(repnet_client::BATCH_LIMIT) {
        lookups += 1;
        let asked: Vec<FileHashes> = chunk.iter().map(|(hashes, _)| *hashes).collect();
        let Some(answers) = look_up(client, args.private, &asked).await? else {
            anyhow::bail!(
                "the server still cannot be reached: the files stay recorded for the next --recheck"
            );
        };
        for ((hashes, file), answer) in chunk.iter().zip(answers) {
            let Some(reputation) = answer else {
                // Still not checked: kept for the next --recheck.
                for path in &file.paths {
                    still.add(&server, hashes, path.clone());
                }
                continue;
            };
            if !args.private {
                answers_kept.push((*hashes, reputation.clone()));
            }
            for path in &file.paths {
                let size = std::fs::metadata(path).map_or(0, |m| m.len());
                let entry = Scanned::hashed(path.clone(), size, hashes);
                results.push(from_reputation(entry, reputation.clone(), keep_answers));
            }
        }
    }
    let kept: Vec<(Asked<'_>, &Reputation)> = answers_kept
        .iter()
        .map(|(hashes, reputation)| (Asked::File(hashes), reputation))
        .collect();
    let _ = caches.save(&[], server_id, &kept);
    let unchecked = still.count();
    offline.merge(still);
    files.write_state("offline.json", &offline)?;
    let mut summary = Summary::of(&results, started, 0, lookups);
    summary.unchecked += unchecked;
    print(args, &mut results)?;
    eprintln!("rechecked: {}", summary.line());
    if unchecked > 0 {
        eprintln!(
            "repnet: {unchecked} file(s) could still not be checked: they stay recorded for the next --recheck"
        );
    }
    Ok(summary.outcome(args.fail_on))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_shown_losslessly() {
        assert_eq!(
            output_path(std::path::Path::new("/tmp/é t.txt")),
            "/tmp/é t.txt"
        );
        assert_eq!(output_path(std::path::Path::new("a\\b")), "a\\\\b");
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt as _;
            let path = std::path::Path::new(std::ffi::OsStr::from_bytes(b"/tmp/caf\xe9.bin"));
            assert_eq!(output_path(path), "/tmp/caf\\xE9.bin");
        }
    }
}
