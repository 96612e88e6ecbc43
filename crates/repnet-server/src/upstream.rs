//! Pulling the knowledge base of an upstream server (a private server's view of the global
//! network; see docs/private-network.md).
//!
//! A loop asks `GET /v1/changes?after=<cursor>` with the licence key, streams the answer into
//! the store (`Store::apply_stream`: read and checked whole, then applied in one transaction
//! that also moves the cursor), and asks again at once while the upstream has more, or after
//! the interval once caught up. No cursor yet, an answer `410 snapshot_required`, or an
//! upstream whose log changed (its data was replaced) means `GET /v1/snapshot` instead. A
//! failure keeps what was applied and retries with backoff; a crash at any moment leaves the
//! store at a consistent cursor, so nothing is missed or applied twice. Only these two
//! requests ever go upstream: never a lookup, never statistics.

use repnet_protocol::ErrorCode;
use std::io::Read;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use repnet_client::{Client, ClientError};
use repnet_model::Timestamp;
use repnet_protocol::UpstreamStatus;
use repnet_runtime::workers::{Context, Next, Stop, WorkError, Worker};
use repnet_store::Store;
use repnet_store::sync::{StreamKind, StreamReader};

use crate::config::UpstreamConfig;

/// The puller and what it knows of its last attempts.
#[derive(Debug)]
pub(crate) struct Upstream {
    metrics: crate::metrics::Metrics,
    url: String,
    /// With the licence key in use: replaced when the key file changes.
    client: RwLock<Client>,
    /// Without a key, to make `client` from.
    base: Client,
    /// The key file, read again when it changes (and on SIGHUP).
    key_file: Option<repnet_runtime::files::WatchedFile>,
    /// Wakes the loop to read the key file and pull now (SIGHUP).
    wake: tokio::sync::Notify,
    interval: Duration,
    page: usize,
    /// The longest a pull may go without a byte.
    progress_timeout: Duration,
    min_free_disk: u64,
    status: Mutex<Progress>,
}

/// How often the key file is looked at while waiting for the next pull.
const KEY_FILE_POLL: Duration = Duration::from_secs(2);

#[derive(Debug, Default, Clone)]
struct Progress {
    reachable: bool,
    upstream_log_id: Option<String>,
    upstream_sequence: Option<u64>,
    last_attempt: Option<Timestamp>,
    last_success: Option<Timestamp>,
    last_error: Option<String>,
    changes_applied: u64,
    snapshots_applied: u64,
    /// The pull under way: when it started, and when it last received a byte.
    pulling_since: Option<Timestamp>,
    last_byte: Option<std::time::Instant>,
}

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
enum PullError {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("{0}")]
    Store(#[from] repnet_store::StoreError),
    #[error("the pull stopped unexpectedly: {0}")]
    Task(String),
    /// The upstream's answer broke a bound (stalled, too large, without its length).
    #[error("{0}")]
    Refused(String),
    #[error("the server is stopping")]
    Stopping,
}

impl Upstream {
    pub(crate) fn new(
        config: &UpstreamConfig,
        key: String,
        metrics: crate::metrics::Metrics,
    ) -> Result<Upstream, ClientError> {
        let base = Client::with_ca(&config.url, config.ca_file.as_deref())?;
        Ok(Upstream {
            metrics,
            url: config.url.clone(),
            client: RwLock::new(base.clone().with_licence_key(key)),
            base,
            key_file: config
                .key_file
                .as_deref()
                .map(repnet_runtime::files::WatchedFile::new),
            wake: tokio::sync::Notify::new(),
            interval: Duration::from_secs(config.interval_seconds),
            page: config.page_size,
            progress_timeout: Duration::from_secs(config.progress_timeout_seconds),
            min_free_disk: config.min_free_disk_bytes,
            status: Mutex::new(Progress::default()),
        })
    }

    pub(crate) async fn status(&self, store: &Store) -> UpstreamStatus {
        let progress = self
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let cursor = store
            .sync_state()
            .await
            .ok()
            .and_then(|state| state.upstream);
        let local_sequence = cursor.map(|cursor| cursor.sequence);
        let same_log = match (&progress.upstream_log_id, cursor) {
            (Some(id), Some(cursor)) => *id == cursor.log_id.to_string(),
            _ => false,
        };
        let lag = match (progress.upstream_sequence, local_sequence) {
            (Some(upstream), Some(local)) if same_log => Some(upstream.saturating_sub(local)),
            (Some(upstream), _) => Some(upstream),
            _ => None,
        };
        UpstreamStatus {
            url: self.url.clone(),
            reachable: progress.reachable,
            upstream_log_id: progress.upstream_log_id,
            upstream_sequence: progress.upstream_sequence,
            local_sequence,
            lag,
            last_attempt: progress.last_attempt.and_then(repnet_protocol::rfc3339),
            last_success: progress.last_success.and_then(repnet_protocol::rfc3339),
            last_error: progress.last_error,
            changes_applied: progress.changes_applied,
            snapshots_applied: progress.snapshots_applied,
            pulling_since: progress.pulling_since.and_then(repnet_protocol::rfc3339),
            stalled_seconds: progress.last_byte.map(|at| at.elapsed().as_secs()),
        }
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn client(&self) -> Client {
        self.client
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads the key file again and pulls at once (SIGHUP).
    pub(crate) fn reload(&self) {
        self.wake.notify_one();
    }

    /// Takes a new key from the key file if it changed (or, with `force`, whatever it holds
    /// differs from the key in use); answers whether the key changed.
    fn refresh_key(&self, force: bool) -> bool {
        let Some(file) = &self.key_file else {
            return false;
        };
        let Some(key) = file.read_if_changed(force) else {
            return false;
        };
        let mut client = self.client.write().unwrap_or_else(PoisonError::into_inner);
        if client.licence_key() == Some(key.as_str()) {
            return false;
        }
        *client = self.base.clone().with_licence_key(key);
        tracing::info!(upstream = %self.url, file = %file.path().display(), "the upstream key file changed: pulling with the new key");
        true
    }

    /// One request and its application. Answers whether this server is caught up. Ends
    /// early, applying nothing, when `stop` turns true.
    async fn pull(&self, store: &Store, stop: &Stop) -> Result<bool, PullError> {
        {
            let mut progress = self.progress();
            let now = repnet_store::now();
            progress.last_attempt = Some(now);
            progress.pulling_since = Some(now);
            progress.last_byte = Some(std::time::Instant::now());
        }
        let result = self.pull_once(store, stop).await;
        let mut progress = self.progress();
        progress.pulling_since = None;
        progress.last_byte = None;
        result
    }

    async fn pull_once(&self, store: &Store, stop: &Stop) -> Result<bool, PullError> {
        let response = tokio::select! {
            response = self.request(store) => response?,
            () = stop.stopped() => return Err(PullError::Stopping),
        };
        let (response, snapshot) = response;
        {
            let mut progress = self.progress();
            progress.reachable = true;
            progress.upstream_log_id = log_id(&response);
            if let Some(sequence) = header_u64(&response, "x-repnet-sequence") {
                progress.upstream_sequence = Some(sequence);
            }
        }
        let max_entries = if snapshot {
            self.check_room(store, &response)?;
            u64::MAX
        } else {
            self.page as u64
        };
        let applied = self
            .apply_response(store, response, max_entries, stop)
            .await?;
        let header = applied.header;
        let caught_up = header.to >= header.sequence;
        let now = repnet_store::now();
        self.metrics.upstream_pulled(
            applied.entries,
            header.sequence.saturating_sub(header.to),
            now,
        );
        {
            let mut progress = self.progress();
            progress.last_success = Some(now);
            progress.last_error = None;
            progress.upstream_sequence = Some(header.sequence);
            match header.kind {
                StreamKind::Snapshot => progress.snapshots_applied += 1,
                StreamKind::Changes => progress.changes_applied += applied.entries,
            }
        }
        if applied.entries > 0 || header.kind == StreamKind::Snapshot {
            tracing::info!(
                upstream = %self.url,
                kind = ?header.kind,
                entries = applied.entries,
                keys_written = applied.keys_written,
                sequence = header.to,
                upstream_sequence = header.sequence,
                "applied from upstream"
            );
        }
        Ok(caught_up)
    }

    /// Asks for the changes after the cursor, or a snapshot when there is none, the log
    /// changed or the cursor is too old. Answers the response and whether it is a snapshot.
    async fn request(&self, store: &Store) -> Result<(reqwest::Response, bool), PullError> {
        let snapshot = || async {
            Ok::<_, PullError>((
                self.client().replication_stream("/v1/snapshot").await?,
                true,
            ))
        };
        let Some(cursor) = store.sync_state().await?.upstream else {
            tracing::info!(upstream = %self.url, "fetching a snapshot from upstream (first pull)");
            return snapshot().await;
        };
        let path = format!("/v1/changes?after={}&limit={}", cursor.sequence, self.page);
        match self.client().replication_stream(&path).await {
            Ok(response) if log_id(&response).is_some_and(|id| id != cursor.log_id.to_string()) => {
                tracing::warn!(upstream = %self.url, "the upstream's change log changed (its data was replaced): fetching a snapshot");
                snapshot().await
            }
            Ok(response) => Ok((response, false)),
            Err(ClientError::Api { code, .. }) if code == ErrorCode::SnapshotRequired.as_str() => {
                tracing::info!(upstream = %self.url, after = cursor.sequence, "too far behind the upstream's change log: fetching a snapshot");
                snapshot().await
            }
            Err(error) => Err(error.into()),
        }
    }

    /// A snapshot must say how large it is, and fit on the disk with room to spare: an
    /// endless one must not fill the data directory.
    fn check_room(&self, store: &Store, response: &reqwest::Response) -> Result<(), PullError> {
        let Some(length) = response.content_length() else {
            return Err(PullError::Refused(
                "the upstream sent a snapshot without its length (Content-Length): refused, as it could be endless".to_owned(),
            ));
        };
        let free = free_disk(store.dir()).map_err(|error| {
            PullError::Refused(format!("cannot tell the free disk space: {error}"))
        })?;
        let needed = length.saturating_mul(3).saturating_add(self.min_free_disk);
        if free < needed {
            return Err(PullError::Refused(format!(
                "the upstream's snapshot is {length} bytes: applying it needs {needed} bytes free (three times its size and min_free_disk_bytes), and the data directory has {free}"
            )));
        }
        Ok(())
    }

    /// Streams a response body into `Store::apply_stream` on a blocking thread: at most
    /// `max_entries`, each chunk within the progress deadline, and nothing applied if `stop`
    /// turns true first.
    async fn apply_response(
        &self,
        store: &Store,
        mut response: reqwest::Response,
        max_entries: u64,
        stop: &Stop,
    ) -> Result<repnet_store::StreamApplied, PullError> {
        // A tokio channel: the sending side awaits room without blocking a runtime thread.
        let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(16);
        let store = store.clone();
        let applying = tokio::task::spawn_blocking(move || {
            tracing::debug!("applying a stream from upstream");
            let reader = std::io::BufReader::with_capacity(
                1 << 20,
                ChannelReader {
                    receiver,
                    current: bytes::Bytes::new(),
                },
            );
            let stream = StreamReader::new(reader)?.with_max_entries(max_entries);
            store.apply_stream(stream)
        });
        let mut broken = None;
        loop {
            let chunk = tokio::select! {
                chunk = tokio::time::timeout(self.progress_timeout, response.chunk()) => chunk,
                () = stop.stopped() => {
                    broken = Some(PullError::Stopping);
                    break;
                }
            };
            match chunk {
                Ok(Ok(Some(chunk))) => {
                    self.progress().last_byte = Some(std::time::Instant::now());
                    if sender.send(Ok(chunk)).await.is_err() {
                        break; // The reader stopped: its error says why.
                    }
                }
                Ok(Ok(None)) => break,
                Ok(Err(error)) => {
                    broken = Some(PullError::Refused(format!(
                        "the download from upstream broke off: {error}"
                    )));
                    break;
                }
                Err(_) => {
                    broken = Some(PullError::Refused(format!(
                        "the upstream stalled: nothing received for {} seconds (progress_timeout_seconds)",
                        self.progress_timeout.as_secs()
                    )));
                    break;
                }
            }
        }
        if broken.is_some() {
            // The reader sees an error, not an end: nothing is applied.
            let _ = sender
                .send(Err(std::io::Error::other("the download did not finish")))
                .await;
        }
        drop(sender);
        let applied = applying
            .await
            .map_err(|error| PullError::Task(error.to_string()))?;
        match broken {
            Some(error) => Err(error),
            None => Ok(applied?),
        }
    }
}

/// Bytes available to this process on the filesystem holding `dir`.
fn free_disk(dir: &std::path::Path) -> std::io::Result<u64> {
    let stats = rustix::fs::statvfs(dir)?;
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

fn log_id(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("x-repnet-log-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

fn header_u64(response: &reqwest::Response, name: &str) -> Option<u64> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
}

/// A `Read` over chunks sent from an async task.
struct ChannelReader {
    receiver: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    current: bytes::Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                Some(chunk) => self.current = chunk?,
                None => return Ok(0),
            }
        }
        let len = buffer.len().min(self.current.len());
        buffer[..len].copy_from_slice(&self.current[..len]);
        self.current = self.current.slice(len..);
        Ok(len)
    }
}

/// Pulls from the upstream, on the background-work shape ([`repnet_runtime::workers`]): a
/// pull per unit; then at once while behind, after `interval_seconds` once caught up, or
/// backing off after failures — unless SIGHUP or a new key file says to pull now. A download
/// under way is dropped at a stop (nothing of it is applied: a stalled upstream must not
/// hold up shutdown); one already downloaded and being applied is finished first (its
/// transaction, and the store it holds, are let go of before the worker stops).
pub(crate) struct Puller {
    upstream: Arc<Upstream>,
    store: Store,
    failures: u32,
    wait: Duration,
}

impl Puller {
    pub(crate) fn new(upstream: Arc<Upstream>, store: Store) -> Puller {
        Puller {
            upstream,
            store,
            failures: 0,
            wait: Duration::ZERO,
        }
    }
}

/// The shortest lease of pulls on a shared store, in seconds: longer than a page takes.
const PULL_LEASE_MIN_SECONDS: u64 = 300;

impl Worker for Puller {
    fn name(&self) -> String {
        "upstream".to_owned()
    }

    async fn work(&mut self, cx: &Context) -> Result<Next, WorkError> {
        let upstream = &self.upstream;
        if upstream.refresh_key(false) {
            self.failures = 0;
        }
        // One node of a shared store pulls (pages must apply in order): the one holding the
        // lease, which it keeps by pulling.
        let lease = upstream
            .interval
            .as_secs()
            .saturating_mul(3)
            .max(PULL_LEASE_MIN_SECONDS);
        if !self
            .store
            .lease("upstream", lease)
            .await
            .map_err(|error| WorkError::from(format!("cannot take the lease of pulls: {error}")))?
        {
            self.wait = upstream.interval;
            return Ok(Next::Idle);
        }
        match upstream.pull(&self.store, &cx.stop).await {
            Ok(caught_up) => {
                self.failures = 0;
                self.wait = upstream.interval;
                // More to fetch: at once.
                Ok(if caught_up { Next::Idle } else { Next::Busy })
            }
            Err(PullError::Stopping) => Ok(Next::Idle),
            Err(error) => {
                self.failures = self.failures.saturating_add(1);
                let backoff = upstream
                    .interval
                    .saturating_mul(1 << self.failures.min(6).saturating_sub(1));
                self.wait = backoff.min(Duration::from_secs(600)).max(upstream.interval);
                upstream.metrics.upstream_failed();
                let mut progress = upstream.progress();
                progress.last_error = Some(error.to_string());
                // A refusal (a revoked key, say) is an answer: the upstream is reachable.
                progress.reachable = matches!(error, PullError::Client(ClientError::Api { .. }));
                Err(error.into())
            }
        }
    }

    async fn wait_for_work(&mut self, _cx: &Context) {
        let upstream = &self.upstream;
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return,
                () = tokio::time::sleep(KEY_FILE_POLL) => {
                    if upstream.refresh_key(false) {
                        self.failures = 0;
                        return;
                    }
                }
                () = upstream.wake.notified() => {
                    tracing::info!(upstream = %upstream.url, "reloading: the upstream key file is read again, and a pull starts");
                    if upstream.refresh_key(true) {
                        self.failures = 0;
                    }
                    return;
                }
            }
        }
    }

    fn progress(&self) -> Option<String> {
        (self.failures > 0).then(|| {
            format!(
                "{} failed pulls in a row (the data applied so far is kept); next in {} s",
                self.failures,
                self.wait.as_secs()
            )
        })
    }
}
