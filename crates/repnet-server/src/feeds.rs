//! Feeds on the server: imports uploaded through the admin API, and feeds refreshed on a
//! schedule from a URL (conditional GET with ETag/Last-Modified) or a local file.
//!
//! Either way the feed is first spooled to a temporary file in the data directory — memory
//! stays constant whatever its size — and then imported by `repnet-feeds` on a blocking
//! thread, one import at a time: an import holds a sort buffer, and LMDB has one writer
//! anyway. A failed refresh changes nothing: the source keeps its previous records, and the
//! failure shows in `GET /v1/admin/feeds` and in the metrics.
//!
//! What a scheduled feed last fetched (its validators, when it was imported) is kept in
//! `feeds-state.json` in the data directory, so that a restart does not download again what
//! has not changed.

use repnet_protocol::ErrorCode;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use repnet_feeds::{FeedError, FeedOptions, Format, Input};
use repnet_model::Timestamp;
use repnet_protocol::{FeedStatus, ImportReport};
use repnet_runtime::workers::{Clock, Context, Next, WorkError, Worker};
use repnet_store::Store;
use reqwest::{StatusCode, header};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;

use crate::config::FeedConfig;
use crate::metrics::Metrics;
use repnet_http::ApiError;

/// The server's feeds: the scheduled ones and the lock every import takes.
#[derive(Debug)]
pub(crate) struct Feeds {
    scheduled: Vec<Arc<Scheduled>>,
    /// One import at a time.
    import_lock: tokio::sync::Mutex<()>,
    data_dir: PathBuf,
    max_import_bytes: u64,
    /// How far a compressed feed may expand (`max_decompressed_bytes`, `max_expansion_ratio`).
    expansion: (u64, u64),
    /// Cancelled when the server stops: every import stops at its next read.
    stopping: repnet_feeds::Cancel,
    http: reqwest::Client,
    /// Serialises writes of the state file.
    state_lock: Mutex<()>,
    metrics: Metrics,
    /// The time schedules and statuses are kept in.
    clock: Clock,
}

/// Cancels an import when dropped.
struct CancelOnDrop(repnet_feeds::Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// A scheduled feed and how it went.
#[derive(Debug)]
struct Scheduled {
    config: FeedConfig,
    format: Format,
    status: Mutex<Status>,
    /// Held while the feed refreshes, so that a manual refresh and the schedule do not both
    /// download it.
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Debug, Clone, Default)]
struct Status {
    state: RefreshState,
    error: Option<String>,
    last_attempt: Option<Timestamp>,
    last_success: Option<Timestamp>,
    next_refresh: Option<Timestamp>,
    consecutive_failures: u64,
    fetched: Fetched,
    last_import: Option<ImportReport>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum RefreshState {
    #[default]
    Pending,
    Imported,
    NotModified,
    Failed,
}

impl RefreshState {
    fn as_str(self) -> &'static str {
        match self {
            RefreshState::Pending => "pending",
            RefreshState::Imported => "imported",
            RefreshState::NotModified => "not_modified",
            RefreshState::Failed => "failed",
        }
    }
}

/// What identifies the version of a feed that was last imported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Fetched {
    etag: Option<String>,
    last_modified: Option<String>,
    /// For a local file: its length and modification time.
    file: Option<(u64, i128)>,
}

/// One feed in `feeds-state.json`. The configuration is kept too: when it changes, the
/// validators no longer say anything about what the import would store.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved {
    config: FeedConfig,
    fetched: Fetched,
    last_success: Option<u64>,
    last_import: Option<ImportReport>,
}

const STATE_FILE: &str = "feeds-state.json";

/// Why a refresh or an upload did not import.
#[derive(Debug)]
enum Failure {
    /// The feed could not be fetched or read, or is not a usable feed.
    Feed(String),
    /// It is larger than `max_import_bytes`.
    TooLarge(u64),
    /// The knowledge base could not take it, or the disk is full.
    Store(String),
    /// The store cannot be reached (a Redis Cluster down or failing over).
    Unavailable(repnet_store::StoreError),
    /// The server is stopping.
    Cancelled,
}

/// What an upload over `limit` bytes is told.
pub(crate) fn too_large(limit: u64) -> String {
    Failure::TooLarge(limit).to_string()
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Feed(message) | Failure::Store(message) => f.write_str(message),
            Failure::Unavailable(error) => write!(f, "{error}"),
            Failure::Cancelled => f.write_str(&FeedError::Cancelled.to_string()),
            Failure::TooLarge(limit) => write!(
                f,
                "the feed is larger than max_import_bytes ({limit} bytes): raise it, or import the file locally with `repnet import`"
            ),
        }
    }
}

impl From<FeedError> for Failure {
    fn from(error: FeedError) -> Failure {
        match error {
            FeedError::Cancelled => Failure::Cancelled,
            // A disk that fills up while a feed is spilled is the server's trouble, not the
            // feed's.
            FeedError::Read { ref source, .. }
                if source.kind() == std::io::ErrorKind::StorageFull =>
            {
                Failure::Store(error.to_string())
            }
            FeedError::Store(error @ repnet_store::StoreError::Unavailable(_)) => {
                Failure::Unavailable(error)
            }
            error if error.is_feed_error() => Failure::Feed(error.to_string()),
            error => Failure::Store(error.to_string()),
        }
    }
}

/// A temporary file in the data directory, named so that the store removes it at the next
/// open if the process dies first.
pub(crate) fn temp_file(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(&format!("{}download-", repnet_store::TEMP_PREFIX))
        .tempfile_in(dir)
}

fn rfc3339(time: Option<Timestamp>) -> Option<String> {
    time.and_then(repnet_protocol::rfc3339)
}

impl Feeds {
    pub(crate) fn new(
        server: &crate::config::ServerConfig,
        data_dir: &Path,
        metrics: Metrics,
        clock: Clock,
    ) -> Feeds {
        let configs = &server.feeds;
        let saved = load_state(data_dir);
        let scheduled = configs
            .iter()
            .filter_map(|config| {
                // Validated with the rest of the configuration.
                let (format, _) = config.import_options(data_dir).ok()?;
                let mut status = Status::default();
                if let Some(saved) = saved.get(&config.name).filter(|s| s.config == *config) {
                    status.fetched = saved.fetched.clone();
                    status.last_success = saved.last_success.map(Timestamp);
                    status.last_import = saved.last_import.clone();
                    status.next_refresh = status
                        .last_success
                        .map(|last| Timestamp(last.0.saturating_add(config.interval_seconds)));
                }
                Some(Arc::new(Scheduled {
                    config: config.clone(),
                    format,
                    status: Mutex::new(status),
                    refreshing: tokio::sync::Mutex::new(()),
                }))
            })
            .collect();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("repnet/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            // A stalled download fails instead of holding the feed forever.
            .read_timeout(Duration::from_secs(120))
            .build()
            .unwrap_or_else(|error| {
                tracing::error!(%error, "cannot set up the feed downloader; using defaults");
                reqwest::Client::new()
            });
        Feeds {
            scheduled,
            import_lock: tokio::sync::Mutex::new(()),
            data_dir: data_dir.to_path_buf(),
            max_import_bytes: server.max_import_bytes,
            expansion: (server.max_decompressed_bytes, server.max_expansion_ratio),
            stopping: repnet_feeds::Cancel::new(),
            http,
            state_lock: Mutex::new(()),
            metrics,
            clock,
        }
    }

    /// A background worker per scheduled feed, which refreshes it when it is due.
    pub(crate) fn workers(self: &Arc<Self>, store: &Store) -> Vec<FeedWorker> {
        self.scheduled
            .iter()
            .map(|feed| FeedWorker {
                feeds: Arc::clone(self),
                feed: Arc::clone(feed),
                store: store.clone(),
            })
            .collect()
    }

    /// Every scheduled feed's status.
    pub(crate) fn statuses(&self) -> Vec<FeedStatus> {
        self.scheduled.iter().map(|feed| feed.status()).collect()
    }

    /// Refreshes the feed called `name` now; `None` if there is none.
    pub(crate) async fn refresh_named(&self, name: &str, store: &Store) -> Option<FeedStatus> {
        let feed = self
            .scheduled
            .iter()
            .find(|feed| feed.config.name == name)?;
        self.refresh(feed, store).await;
        Some(feed.status())
    }

    /// The names of the scheduled feeds, for messages.
    pub(crate) fn names(&self) -> Vec<&str> {
        self.scheduled
            .iter()
            .map(|feed| feed.config.name.as_str())
            .collect()
    }

    /// Fetches the feed and imports it if it changed; records how it went.
    async fn refresh(&self, feed: &Scheduled, store: &Store) {
        let _refreshing = feed.refreshing.lock().await;
        let started = self.clock.now();
        lock(&feed.status).last_attempt = Some(started);
        let name = feed.config.name.as_str();
        let result = self.fetch_and_import(feed, store).await;
        let now = self.clock.now();
        let mut status = lock(&feed.status);
        let outcome = match result {
            Ok(Some((report, fetched))) => {
                tracing::info!(
                    feed = name,
                    read = report.read,
                    stored = report.stored,
                    skipped = report.skipped,
                    retracted = report.retracted,
                    seconds = report.seconds,
                    "feed imported"
                );
                self.metrics.feed_imported(name, &report, now);
                status.state = RefreshState::Imported;
                status.fetched = fetched;
                status.last_import = Some(report);
                "imported"
            }
            Ok(None) => {
                tracing::debug!(feed = name, "feed not modified");
                self.metrics.feed_confirmed(name, now);
                status.state = RefreshState::NotModified;
                "not_modified"
            }
            Err(failure) => {
                let message = failure.to_string();
                // Logged by the feed's worker, or answered to whoever asked for the refresh.
                tracing::debug!(feed = name, error = %message, "feed refresh failed; keeping its previous data");
                status.state = RefreshState::Failed;
                status.error = Some(message);
                status.consecutive_failures += 1;
                // Retry sooner than the interval, backing off: 1, 2, 4, … minutes.
                let backoff = 60u64
                    .saturating_mul(1u64 << status.consecutive_failures.saturating_sub(1).min(10));
                status.next_refresh = Some(Timestamp(
                    now.0
                        .saturating_add(backoff.min(feed.config.interval_seconds)),
                ));
                self.metrics.feed_refresh(name, "failed", false);
                return;
            }
        };
        self.metrics.feed_refresh(name, outcome, true);
        status.error = None;
        status.consecutive_failures = 0;
        status.last_success = Some(now);
        status.next_refresh = Some(Timestamp(
            now.0.saturating_add(feed.config.interval_seconds),
        ));
        drop(status);
        self.save_state();
    }

    /// `Ok(None)` when the feed has not changed since its last import.
    async fn fetch_and_import(
        &self,
        feed: &Scheduled,
        store: &Store,
    ) -> Result<Option<(ImportReport, Fetched)>, Failure> {
        let known = {
            let status = lock(&feed.status);
            // Without a successful import there is nothing to be "not modified" from.
            status.last_import.is_some().then(|| status.fetched.clone())
        };
        let (input, fetched, _temporary) = match (&feed.config.url, &feed.config.path) {
            (Some(url), _) => {
                let Some((file, fetched)) = self
                    .download(url, &feed.config.headers, known.as_ref())
                    .await?
                else {
                    return Ok(None);
                };
                let input = Input::Named {
                    path: file.to_path_buf(),
                    name: url.clone(),
                };
                (input, fetched, Some(file))
            }
            (None, Some(path)) => {
                let metadata = tokio::fs::metadata(path)
                    .await
                    .map_err(|error| Failure::Feed(format!("{}: {error}", path.display())))?;
                let modified = metadata
                    .modified()
                    .ok()
                    .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |since| since.as_nanos() as i128);
                let fetched = Fetched {
                    file: Some((metadata.len(), modified)),
                    ..Fetched::default()
                };
                if known.as_ref() == Some(&fetched) {
                    return Ok(None);
                }
                (Input::Path(path.clone()), fetched, None)
            }
            (None, None) => return Err(Failure::Feed("no url or path configured".to_owned())),
        };
        let (_, options) = feed
            .config
            .import_options(&self.data_dir)
            .map_err(|error| Failure::Feed(error.to_string()))?;
        let report = self.import(store, input, feed.format, options).await?;
        Ok(Some((report, fetched)))
    }

    /// Downloads `url` into a temporary file, unless the server says it has not changed.
    async fn download(
        &self,
        url: &str,
        headers: &BTreeMap<String, String>,
        known: Option<&Fetched>,
    ) -> Result<Option<(tempfile::TempPath, Fetched)>, Failure> {
        let mut request = self.http.get(url);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(known) = known {
            if let Some(etag) = &known.etag {
                request = request.header(header::IF_NONE_MATCH, etag);
            }
            if let Some(modified) = &known.last_modified {
                request = request.header(header::IF_MODIFIED_SINCE, modified);
            }
        }
        let failed = |error: reqwest::Error| {
            Failure::Feed(format!("downloading {url}: {}", error_chain(&error)))
        };
        let mut response = request.send().await.map_err(failed)?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED && known.is_some() {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(Failure::Feed(format!(
                "downloading {url}: the server answered {status}"
            )));
        }
        let header_text = |name: header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let fetched = Fetched {
            etag: header_text(header::ETAG),
            last_modified: header_text(header::LAST_MODIFIED),
            file: None,
        };
        if let Some(length) = response.content_length()
            && length > self.max_import_bytes
        {
            return Err(Failure::TooLarge(self.max_import_bytes));
        }
        let spool_error = |error: std::io::Error| {
            Failure::Store(format!(
                "cannot write the download to the data directory: {error}"
            ))
        };
        let temporary = temp_file(&self.data_dir).map_err(spool_error)?;
        let (file, path) = temporary.into_parts();
        let mut file = tokio::fs::File::from_std(file);
        let mut written = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            written += chunk.len() as u64;
            if written > self.max_import_bytes {
                return Err(Failure::TooLarge(self.max_import_bytes));
            }
            file.write_all(&chunk).await.map_err(spool_error)?;
        }
        file.flush().await.map_err(spool_error)?;
        Ok(Some((path, fetched)))
    }

    /// Imports `input` on a blocking thread, one import at a time.
    async fn import(
        &self,
        store: &Store,
        input: Input,
        format: Format,
        mut options: FeedOptions,
    ) -> Result<ImportReport, Failure> {
        let _importing = self.import_lock.lock().await;
        options.now = self.clock.now();
        (options.max_decompressed_bytes, options.max_expansion_ratio) = self.expansion;
        // Stopped with the server, or when this future is dropped: the client that uploaded
        // the feed went away, or the feed's schedule was stopped.
        options.cancel = self.stopping.child();
        let _cancel_when_dropped = CancelOnDrop(options.cancel.clone());
        let store = store.clone();
        let started = Instant::now();
        tracing::info!(feed = %input, %format, "import started");
        let report = tokio::task::spawn_blocking(move || {
            let result = repnet_feeds::import(
                &store,
                std::slice::from_ref(&input),
                format,
                &options,
                &repnet_feeds::NoProgress,
            );
            // Logged here: when the client went away, nobody awaits this task any more.
            match &result {
                Ok(_) => {}
                Err(FeedError::Cancelled) => {
                    tracing::warn!(feed = %input, "import cancelled: nothing was changed")
                }
                Err(error) => tracing::warn!(feed = %input, %error, "import failed"),
            }
            result
        })
        .await
        .map_err(|error| Failure::Store(format!("the import stopped unexpectedly: {error}")))??;
        Ok(report.to_wire(started.elapsed().as_secs_f64()))
    }

    /// Cancels every import, running or to come: the server is stopping.
    pub(crate) fn stop_imports(&self) {
        self.stopping.cancel();
    }

    /// The largest upload (`max_import_bytes`).
    pub(crate) fn max_upload_bytes(&self) -> u64 {
        self.max_import_bytes
    }

    /// Imports an uploaded feed, spooled to `path` in the data directory.
    pub(crate) async fn upload(
        &self,
        store: &Store,
        path: tempfile::TempPath,
        format: Format,
        options: FeedOptions,
    ) -> Result<ImportReport, ApiError> {
        let input = Input::Named {
            path: path.to_path_buf(),
            name: "the upload".to_owned(),
        };
        match self.import(store, input, format, options).await {
            Ok(report) => Ok(report),
            Err(Failure::Feed(message)) => {
                Err(ApiError::unprocessable(ErrorCode::InvalidFeed, message))
            }
            Err(Failure::Cancelled) => Err(ApiError::unavailable(
                ErrorCode::Stopping,
                "the server is stopping: the import was cancelled and nothing was changed; send it again once the server is back",
            )),
            Err(Failure::Unavailable(error)) => {
                Err(crate::failures::store_failed("the import failed", &error))
            }
            Err(failure) => Err(ApiError::internal("the import failed", &failure)),
        }
    }

    fn save_state(&self) {
        let _writing = lock(&self.state_lock);
        let saved: BTreeMap<String, Saved> = self
            .scheduled
            .iter()
            .map(|feed| {
                let status = lock(&feed.status);
                (
                    feed.config.name.clone(),
                    Saved {
                        config: feed.config.clone(),
                        fetched: status.fetched.clone(),
                        last_success: status.last_success.map(|t| t.0),
                        last_import: status.last_import.clone(),
                    },
                )
            })
            .collect();
        let result = (|| -> std::io::Result<()> {
            let text = serde_json::to_vec_pretty(&saved).map_err(std::io::Error::other)?;
            repnet_runtime::files::write_atomically(&self.data_dir.join(STATE_FILE), &text)
        })();
        if let Err(error) = result {
            tracing::warn!(%error, "cannot save the feeds' state; they will be downloaded again after a restart");
        }
    }
}

impl Scheduled {
    fn status(&self) -> FeedStatus {
        let status = lock(&self.status).clone();
        FeedStatus {
            name: self.config.name.clone(),
            format: self.config.format.clone(),
            location: self.config.location(),
            interval_seconds: self.config.interval_seconds,
            state: status.state.as_str().to_owned(),
            error: status.error,
            last_attempt: rfc3339(status.last_attempt),
            last_success: rfc3339(status.last_success),
            next_refresh: rfc3339(status.next_refresh),
            consecutive_failures: status.consecutive_failures,
            etag: status.fetched.etag,
            last_modified: status.fetched.last_modified,
            last_import: status.last_import,
        }
    }
}

fn load_state(dir: &Path) -> BTreeMap<String, Saved> {
    let path = dir.join(STATE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
            tracing::warn!(path = %path.display(), %error, "ignoring an unreadable feeds state file");
            BTreeMap::new()
        }),
        Err(_) => BTreeMap::new(),
    }
}

/// A poisoned lock still holds usable status: a panic elsewhere must not stop the feeds.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The root cause of a download error ("Connection refused", "operation timed out").
fn error_chain(error: &reqwest::Error) -> String {
    let mut root: &dyn std::error::Error = error;
    while let Some(cause) = root.source() {
        root = cause;
    }
    root.to_string()
}

/// Refreshes a scheduled feed when it is due (a background worker,
/// [`repnet_runtime::workers`]); named `feed:<name>`. At a stop, a refresh under way is
/// dropped: a download holds nothing, and an import is cancelled at its next read with
/// nothing changed.
pub(crate) struct FeedWorker {
    feeds: Arc<Feeds>,
    feed: Arc<Scheduled>,
    store: Store,
}

impl FeedWorker {
    /// Seconds until the feed is due; 0 when it is (or has never been fetched).
    fn due_in(&self, now: Timestamp) -> u64 {
        let due = lock(&self.feed.status).next_refresh;
        due.map_or(0, |due| due.0.saturating_sub(now.0))
    }
}

impl Worker for FeedWorker {
    fn name(&self) -> String {
        format!("feed:{}", self.feed.config.name)
    }

    async fn work(&mut self, cx: &Context) -> Result<Next, WorkError> {
        let now = cx.clock.now();
        if self.due_in(now) > 0 {
            return Ok(Next::Idle);
        }
        // On a store shared by several nodes, one refreshes the feed per interval: the one
        // that takes its lease, held for the interval; the others skip their turn.
        let interval = self.feed.config.interval_seconds;
        let name = &self.feed.config.name;
        match self.store.lease(&format!("feed:{name}"), interval).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(feed = %name, "another node refreshes this feed this time");
                lock(&self.feed.status).next_refresh = Some(Timestamp(now.0 + interval));
                return Ok(Next::Idle);
            }
            Err(error) => {
                lock(&self.feed.status).next_refresh = Some(Timestamp(now.0 + 60));
                return Err(format!("cannot take the feed's lease: {error}").into());
            }
        }
        tokio::select! {
            () = self.feeds.refresh(&self.feed, &self.store) => {}
            () = cx.stop.stopped() => return Ok(Next::Idle),
        }
        let status = lock(&self.feed.status);
        match status.state {
            RefreshState::Failed => {
                let error = status.error.as_deref().unwrap_or_default();
                Err(format!("{error}; the feed's previous data is kept").into())
            }
            _ => Ok(Next::Idle),
        }
    }

    async fn wait_for_work(&mut self, cx: &Context) {
        // A refresh asked for meanwhile moves the due time: the next unit looks again.
        let wait = self.due_in(cx.clock.now());
        tokio::time::sleep(Duration::from_secs(wait)).await
    }

    fn progress(&self) -> Option<String> {
        let status = lock(&self.feed.status);
        let last = format!("last refresh: {}", status.state.as_str());
        Some(
            match status.next_refresh.and_then(repnet_protocol::rfc3339) {
                Some(next) => format!("{last}, next at {next}"),
                None => last,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use repnet_runtime::workers::Workers;

    /// Lets the worker run until it has done `units` units of work: the import runs on
    /// blocking threads, during which tokio does not advance paused time.
    async fn settle(workers: &Workers, units: u64) {
        while workers.statuses()[0].units < units {
            tokio::task::yield_now().await;
        }
    }

    fn config(path: PathBuf) -> crate::config::ServerConfig {
        crate::config::ServerConfig {
            feeds: vec![FeedConfig {
                name: "local".to_owned(),
                format: "domainlist".to_owned(),
                url: None,
                path: Some(path),
                interval_seconds: 3600,
                verdict: Some("untrusted".to_owned()),
                threat: None,
                categories: Vec::new(),
                confidence: None,
                top: None,
                incremental: false,
                allow_empty: false,
                headers: Default::default(),
            }],
            ..crate::config::ServerConfig::default()
        }
    }

    /// The schedule on paused time: a refresh every `interval_seconds`, and after a failure
    /// a retry after 1, then 2 minutes.
    #[tokio::test(start_paused = true)]
    async fn a_feed_refreshes_at_its_interval_and_retries_sooner_after_a_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let path = dir.path().join("domains.txt");
        std::fs::write(&path, "bad.example\n").expect("write");
        let store = Store::open(&data, &repnet_store::StoreOptions::default()).expect("store");
        let epoch = Timestamp(1_000_000);
        let workers = Workers::new(Clock::following_tokio(epoch));
        let feeds = Arc::new(Feeds::new(
            &config(path.clone()),
            &data,
            Metrics::new(&workers, false),
            workers.clock(),
        ));
        for worker in feeds.workers(&store) {
            workers.spawn(worker);
        }
        settle(&workers, 1).await;
        let status = feeds.statuses().remove(0);
        assert_eq!(status.state, "imported");
        assert_eq!(status.last_success, repnet_protocol::rfc3339(epoch));

        // Not before the hour is up; then found unchanged.
        tokio::time::advance(Duration::from_secs(3599)).await;
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(workers.statuses()[0].units, 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        settle(&workers, 2).await;
        assert_eq!(feeds.statuses().remove(0).state, "not_modified");

        // Gone: the next refresh fails, and is retried after a minute, then two.
        std::fs::remove_file(&path).expect("remove");
        tokio::time::advance(Duration::from_secs(3600)).await;
        settle(&workers, 3).await;
        let failed = feeds.statuses().remove(0);
        assert_eq!(failed.state, "failed");
        assert_eq!(
            failed.next_refresh,
            repnet_protocol::rfc3339(Timestamp(epoch.0 + 7200 + 60))
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        settle(&workers, 4).await;
        assert_eq!(
            feeds.statuses().remove(0).next_refresh,
            repnet_protocol::rfc3339(Timestamp(epoch.0 + 7260 + 120))
        );
        assert_eq!(workers.statuses()[0].errors, 2);
        workers.stop().await;
    }
}
