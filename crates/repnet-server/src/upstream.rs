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

use std::io::Read;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use repnet_client::{Client, ClientError};
use repnet_model::Timestamp;
use repnet_protocol::UpstreamStatus;
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
    key_file: Option<crate::files::WatchedFile>,
    /// Wakes the loop to read the key file and pull now (SIGHUP).
    wake: tokio::sync::Notify,
    interval: Duration,
    page: usize,
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
}

impl Upstream {
    pub(crate) fn new(
        config: &UpstreamConfig,
        key: String,
        metrics: crate::metrics::Metrics,
    ) -> Result<Upstream, String> {
        let base = Client::with_ca(&config.url, config.ca_file.as_deref())
            .map_err(|error| format!("upstream: {error}"))?;
        Ok(Upstream {
            metrics,
            url: config.url.clone(),
            client: RwLock::new(base.clone().with_licence_key(key)),
            base,
            key_file: config
                .key_file
                .as_deref()
                .map(crate::files::WatchedFile::new),
            wake: tokio::sync::Notify::new(),
            interval: Duration::from_secs(config.interval_seconds),
            page: config.page_size,
            status: Mutex::new(Progress::default()),
        })
    }

    pub(crate) fn status(&self, store: &Store) -> UpstreamStatus {
        let progress = self
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let cursor = store.sync_state().ok().and_then(|state| state.upstream);
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

    /// Pulls until `stop` resolves. A pull under way is finished first (its transaction, and
    /// the store it holds, are let go of before this returns), so shutdown can wait for a
    /// snapshot being applied.
    pub(crate) async fn run(
        self: Arc<Self>,
        store: Store,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut failures = 0u32;
        loop {
            if self.refresh_key(false) {
                failures = 0;
            }
            let outcome = self.pull(&store).await;
            let wait = match outcome {
                Ok(true) => {
                    failures = 0;
                    self.interval
                }
                // More to fetch: at once.
                Ok(false) => {
                    failures = 0;
                    Duration::ZERO
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let backoff = self
                        .interval
                        .saturating_mul(1 << failures.min(6).saturating_sub(1));
                    let backoff = backoff.min(Duration::from_secs(600)).max(self.interval);
                    tracing::warn!(upstream = %self.url, %error, retry_in_seconds = backoff.as_secs(), "pulling from upstream failed; the data applied so far is kept");
                    self.metrics.upstream_failed();
                    let mut progress = self.progress();
                    progress.last_error = Some(error.to_string());
                    // A refusal (a revoked key, say) is an answer: the upstream is reachable.
                    progress.reachable =
                        matches!(error, PullError::Client(ClientError::Api { .. }));
                    backoff
                }
            };
            // Wait, unless SIGHUP or a new key file says to pull now.
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => break,
                    () = tokio::time::sleep(KEY_FILE_POLL) => {
                        if self.refresh_key(false) {
                            failures = 0;
                            break;
                        }
                    }
                    () = self.wake.notified() => {
                        tracing::info!(upstream = %self.url, "reloading: the upstream key file is read again, and a pull starts");
                        if self.refresh_key(true) {
                            failures = 0;
                        }
                        break;
                    }
                    _ = stop.changed() => return,
                }
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// One request and its application. Answers whether this server is caught up.
    async fn pull(&self, store: &Store) -> Result<bool, PullError> {
        self.progress().last_attempt = Some(repnet_store::now());
        let cursor = store.sync_state()?.upstream;
        let response = match cursor {
            None => {
                tracing::info!(upstream = %self.url, "fetching a snapshot from upstream (first pull)");
                self.client().replication_stream("/v1/snapshot").await?
            }
            Some(cursor) => {
                let path = format!("/v1/changes?after={}&limit={}", cursor.sequence, self.page);
                match self.client().replication_stream(&path).await {
                    Ok(response)
                        if log_id(&response).is_some_and(|id| id != cursor.log_id.to_string()) =>
                    {
                        tracing::warn!(upstream = %self.url, "the upstream's change log changed (its data was replaced): fetching a snapshot");
                        self.client().replication_stream("/v1/snapshot").await?
                    }
                    Ok(response) => response,
                    Err(ClientError::Api { code, .. }) if code == "snapshot_required" => {
                        tracing::info!(upstream = %self.url, after = cursor.sequence, "too far behind the upstream's change log: fetching a snapshot");
                        self.client().replication_stream("/v1/snapshot").await?
                    }
                    Err(error) => return Err(error.into()),
                }
            }
        };
        {
            let mut progress = self.progress();
            progress.reachable = true;
            progress.upstream_log_id = log_id(&response);
            if let Some(sequence) = header_u64(&response, "x-repnet-sequence") {
                progress.upstream_sequence = Some(sequence);
            }
        }
        let applied = apply_response(store, response).await?;
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

/// Streams a response body into `Store::apply_stream` on a blocking thread.
async fn apply_response(
    store: &Store,
    mut response: reqwest::Response,
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
        let stream = StreamReader::new(reader)?;
        store.apply_stream(stream)
    });
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if sender.send(Ok(chunk)).await.is_err() {
                    break; // The reader stopped: its error says why.
                }
            }
            Ok(None) => break,
            Err(error) => {
                let _ = sender
                    .send(Err(std::io::Error::other(format!(
                        "the download from upstream broke off: {error}"
                    ))))
                    .await;
                break;
            }
        }
    }
    drop(sender);
    Ok(applying
        .await
        .map_err(|error| PullError::Task(error.to_string()))??)
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
