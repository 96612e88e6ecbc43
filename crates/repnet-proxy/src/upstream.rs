//! Talking to the upstream server: misses coalesced and batched, a circuit breaker, and a
//! follower of the upstream's change log that keeps the cache right.
//!
//! Every miss goes to one task. Questions asked while the same question is already waiting or
//! in flight join it (500 devices asking one hash make one upstream question); distinct
//! questions that arrive within `coalescing_window_ms` of each other leave together as one
//! `POST /v1/lookup`. An upstream that fails several times in a row is left alone for a
//! while (the breaker opens: misses fail at once), then tried again.

use repnet_protocol::ErrorCode;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use repnet_client::{Client, ClientError};
use repnet_model::PrefixOf;
use repnet_protocol::{LookupItem, LookupResult, Reputation};
use tokio::sync::{mpsc, oneshot};

use crate::cache::{Cache, Key, Prefix, PrefixAnswer};

/// Why the upstream gave no answer. Never cached.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("the upstream server is unreachable or failing ({0}); the proxy retries with backoff")]
    Unavailable(String),
    #[error("the upstream server failed several times in a row; the proxy tries it again in {0} s")]
    CircuitOpen(u64),
    #[error("the upstream server refused: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
}

/// The proxy's metrics.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    pub(crate) hits: Counter,
    pub(crate) misses: Counter,
    pub(crate) stale: Counter,
    pub(crate) upstream_requests: Counter,
    pub(crate) upstream_errors: Counter,
    pub(crate) invalidated: Counter,
    pub(crate) cache_entries: Gauge,
    pub(crate) cache_bytes: Gauge,
    pub(crate) upstream_latency: Histogram,
}

impl Metrics {
    pub(crate) fn new() -> (Metrics, Registry) {
        let metrics = Metrics {
            hits: Counter::default(),
            misses: Counter::default(),
            stale: Counter::default(),
            upstream_requests: Counter::default(),
            upstream_errors: Counter::default(),
            invalidated: Counter::default(),
            cache_entries: Gauge::default(),
            cache_bytes: Gauge::default(),
            upstream_latency: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
        };
        let mut registry = Registry::default();
        registry.register(
            "repnet_proxy_cache_hits",
            "Answers served from the cache while fresh",
            metrics.hits.clone(),
        );
        registry.register(
            "repnet_proxy_cache_misses",
            "Questions the cache could not answer fresh",
            metrics.misses.clone(),
        );
        registry.register(
            "repnet_proxy_cache_stale",
            "Answers served past their TTL because the upstream could not answer",
            metrics.stale.clone(),
        );
        registry.register(
            "repnet_proxy_upstream_requests",
            "Requests sent to the upstream server",
            metrics.upstream_requests.clone(),
        );
        registry.register(
            "repnet_proxy_upstream_errors",
            "Upstream requests that failed",
            metrics.upstream_errors.clone(),
        );
        registry.register(
            "repnet_proxy_invalidated",
            "Cached answers dropped because the upstream's change log named them",
            metrics.invalidated.clone(),
        );
        registry.register(
            "repnet_proxy_cache_entries",
            "Answers in the cache",
            metrics.cache_entries.clone(),
        );
        registry.register(
            "repnet_proxy_cache_bytes",
            "About the bytes the cached answers hold (at most cache_max_bytes)",
            metrics.cache_bytes.clone(),
        );
        registry.register(
            "repnet_proxy_upstream_request_duration_seconds",
            "Time upstream requests took",
            metrics.upstream_latency.clone(),
        );
        (metrics, registry)
    }
}

type Reply<A> = oneshot::Sender<Result<A, UpstreamError>>;

/// The circuit breaker's state.
#[derive(Debug, Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    last_error: Option<String>,
    /// Why the upstream refuses the proxy itself (its key revoked, expired, unknown, or rate
    /// limited), until a request is accepted again. Not a failure of the upstream: the
    /// breaker stays closed, but the proxy is not healthy.
    refused: Option<String>,
}

/// How one upstream request went, for the breaker and the health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Answered,
    /// The upstream could not be reached or failed (5xx).
    Failed(String),
    /// The upstream refused the proxy (401, 403, 429).
    Refused(String),
}

impl Outcome {
    /// The outcome of an answer with `status` (and the error's text when it is one).
    pub(crate) fn of_status(status: u16, error: impl FnOnce() -> String) -> Outcome {
        match status {
            401 | 403 | 429 => Outcome::Refused(error()),
            500.. => Outcome::Failed(error()),
            _ => Outcome::Answered,
        }
    }
}

/// The upstream, as the proxy uses it.
#[derive(Debug)]
pub(crate) struct Upstream {
    client: Client,
    asks: mpsc::UnboundedSender<(Key, Reply<Reputation>)>,
    searches: mpsc::UnboundedSender<(Prefix, Reply<Arc<PrefixAnswer>>)>,
    breaker: Arc<Mutex<Breaker>>,
    pub(crate) metrics: Metrics,
}

/// What the admin status shows of the upstream.
#[derive(Debug, Clone)]
pub(crate) struct Health {
    pub(crate) healthy: bool,
    pub(crate) consecutive_failures: u32,
    pub(crate) last_error: Option<String>,
    /// Why the upstream refuses the proxy, while it does.
    pub(crate) refused: Option<String>,
}

impl Upstream {
    /// An upstream at `url`; starts its batching task (which ends when this is dropped).
    pub(crate) fn start(
        url: &str,
        key: Option<&str>,
        ca_file: Option<&std::path::Path>,
        timeout: Duration,
        window: Duration,
        metrics: Metrics,
    ) -> Result<Upstream, ClientError> {
        let mut client = Client::with_ca_and_timeout(url, ca_file, timeout)?;
        if let Some(key) = key {
            client = client.with_licence_key(key);
        }
        let (asks, receiver) = mpsc::unbounded_channel();
        let breaker = Arc::new(Mutex::new(Breaker::default()));
        tokio::spawn(batcher::<Lookups>(
            client.clone(),
            receiver,
            window,
            Arc::clone(&breaker),
            metrics.clone(),
        ));
        let (searches, receiver) = mpsc::unbounded_channel();
        tokio::spawn(batcher::<Searches>(
            client.clone(),
            receiver,
            window,
            Arc::clone(&breaker),
            metrics.clone(),
        ));
        Ok(Upstream {
            client,
            asks,
            searches,
            breaker,
            metrics,
        })
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Asks the upstream about one object, coalesced and batched with other misses.
    pub(crate) async fn ask(&self, key: Key) -> Result<Reputation, UpstreamError> {
        wait_for(&self.asks, key).await
    }

    /// Asks the upstream for every full hash under one prefix, coalesced and batched with
    /// other devices' prefixes.
    pub(crate) async fn search(&self, prefix: Prefix) -> Result<Arc<PrefixAnswer>, UpstreamError> {
        wait_for(&self.searches, prefix).await
    }

    pub(crate) fn health(&self) -> Health {
        let breaker = self.breaker.lock().unwrap_or_else(PoisonError::into_inner);
        Health {
            healthy: breaker.failures == 0 && breaker.refused.is_none(),
            consecutive_failures: breaker.failures,
            last_error: breaker.last_error.clone(),
            refused: breaker.refused.clone(),
        }
    }

    /// Counts a request made outside the batcher (pass-through routes), for the breaker.
    pub(crate) fn record(&self, started: Instant, outcome: Outcome) {
        self.metrics.upstream_requests.inc();
        self.metrics
            .upstream_latency
            .observe(started.elapsed().as_secs_f64());
        note(&self.breaker, &self.metrics, outcome);
    }

    /// Notes how a request that is not timed went (the change-log follower's).
    pub(crate) fn note(&self, outcome: Outcome) {
        note(&self.breaker, &self.metrics, outcome);
    }
}

async fn wait_for<Q, A>(
    batcher: &mpsc::UnboundedSender<(Q, Reply<A>)>,
    question: Q,
) -> Result<A, UpstreamError> {
    let stopping = || UpstreamError::Unavailable("the proxy is stopping".to_owned());
    let (reply, answer) = oneshot::channel();
    batcher.send((question, reply)).map_err(|_| stopping())?;
    answer.await.unwrap_or_else(|_| Err(stopping()))
}

fn record(breaker: &Mutex<Breaker>, metrics: &Metrics, started: Instant, outcome: Outcome) {
    metrics.upstream_requests.inc();
    metrics
        .upstream_latency
        .observe(started.elapsed().as_secs_f64());
    note(breaker, metrics, outcome);
}

fn note(breaker: &Mutex<Breaker>, metrics: &Metrics, outcome: Outcome) {
    let mut breaker = breaker.lock().unwrap_or_else(PoisonError::into_inner);
    match outcome {
        Outcome::Answered => {
            breaker.failures = 0;
            breaker.open_until = None;
            if breaker.refused.take().is_some() {
                tracing::info!("the upstream server accepts the proxy again");
            }
        }
        Outcome::Refused(reason) => {
            metrics.upstream_errors.inc();
            // The upstream answers: it is not failing, it refuses the proxy. Logged when it
            // starts (or its reason changes), not for every device's question.
            if breaker.refused.as_ref() != Some(&reason) {
                tracing::warn!(
                    %reason,
                    "the upstream server refuses the proxy: devices get 502 upstream_refused for what is not cached; register the proxy's key upstream, or give it a valid one (upstream_key_file)"
                );
            }
            breaker.failures = 0;
            breaker.open_until = None;
            breaker.last_error = Some(reason.clone());
            breaker.refused = Some(reason);
        }
        Outcome::Failed(error) => {
            metrics.upstream_errors.inc();
            breaker.failures = breaker.failures.saturating_add(1);
            if breaker.failures >= 3 {
                let backoff =
                    Duration::from_millis(250 << breaker.failures.min(10).saturating_sub(3))
                        .min(Duration::from_secs(30));
                breaker.open_until = Some(Instant::now() + backoff);
            }
            breaker.last_error = Some(error);
        }
    }
}

/// A kind of question the proxy coalesces and batches upstream: lookups of objects, and
/// privacy-mode searches by hash prefix.
pub(crate) trait Questions: Send + Sync + 'static {
    type Question: Clone + Eq + std::hash::Hash + Send + Sync + 'static;
    type Answer: Clone + Send + 'static;
    /// The most questions in one upstream request.
    const LIMIT: usize;
    /// Asks the upstream all of `questions` in one request; answers them in their order.
    fn ask(
        client: &Client,
        questions: &[Self::Question],
    ) -> impl Future<Output = Result<Vec<Result<Self::Answer, UpstreamError>>, ClientError>> + Send;
}

/// Lookups of objects (`POST /v1/lookup`).
pub(crate) struct Lookups;

impl Questions for Lookups {
    type Question = Key;
    type Answer = Reputation;
    const LIMIT: usize = repnet_client::BATCH_LIMIT;

    async fn ask(
        client: &Client,
        keys: &[Key],
    ) -> Result<Vec<Result<Reputation, UpstreamError>>, ClientError> {
        let items: Vec<LookupItem<'_>> = keys.iter().map(crate::cache::item).collect();
        let answers = client.lookup_items(&items, false).await?;
        Ok(answers
            .into_iter()
            .map(|answer| match answer {
                LookupResult::Reputation(reputation) => Ok(reputation),
                // An upstream that is itself a proxy may not answer every item.
                LookupResult::Unavailable(error) => Err(UpstreamError::Unavailable(format!(
                    "{}: {}",
                    error.error.code, error.error.message
                ))),
            })
            .collect())
    }
}

/// Privacy-mode searches (`POST /v1/hashes:search`), one prefix per question.
pub(crate) struct Searches;

impl Questions for Searches {
    type Question = Prefix;
    type Answer = Arc<PrefixAnswer>;
    const LIMIT: usize = repnet_protocol::MAX_PREFIXES;

    async fn ask(
        client: &Client,
        prefixes: &[Prefix],
    ) -> Result<Vec<Result<Arc<PrefixAnswer>, UpstreamError>>, ClientError> {
        let asked: Vec<(PrefixOf, Vec<u8>)> = prefixes
            .iter()
            .map(|prefix| (prefix.of, prefix.bytes.clone()))
            .collect();
        let response = client.search_prefixes(&asked).await?;
        let unknown_cache_seconds = response
            .unknown_cache_seconds
            .unwrap_or(response.cache_seconds);
        // Each match's hash decoded once and sorted, so that each prefix finds its matches by
        // binary search: a window of 1,000 prefixes and as many matches stays cheap.
        let mut found: Vec<(Vec<u8>, &repnet_protocol::HashMatch)> = response
            .matches
            .iter()
            .filter_map(|found| Some((hex::decode(&found.hash).ok()?, found)))
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(prefixes
            .iter()
            .map(|prefix| {
                let start =
                    found.partition_point(|(hash, _)| hash.as_slice() < prefix.bytes.as_slice());
                Ok(Arc::new(PrefixAnswer {
                    matches: found[start..]
                        .iter()
                        .take_while(|(hash, _)| hash.starts_with(&prefix.bytes))
                        .filter(|(hash, found)| prefix.matches(hash, found))
                        .map(|(_, found)| (*found).clone())
                        .collect(),
                    cache_seconds: response.cache_seconds,
                    unknown_cache_seconds,
                }))
            })
            .collect())
    }
}

type Waiting<Q> = HashMap<<Q as Questions>::Question, Vec<Reply<<Q as Questions>::Answer>>>;

/// Collects misses for a window, coalescing identical ones, and sends each window's as one
/// batch. Questions whose answer is already on its way join it.
async fn batcher<Q: Questions>(
    client: Client,
    mut asks: mpsc::UnboundedReceiver<(Q::Question, Reply<Q::Answer>)>,
    window: Duration,
    breaker: Arc<Mutex<Breaker>>,
    metrics: Metrics,
) {
    let in_flight: Arc<Mutex<Waiting<Q>>> = Arc::default();
    while let Some((question, reply)) = asks.recv().await {
        let mut waiting: Waiting<Q> = HashMap::new();
        let add = |question: Q::Question, reply: Reply<Q::Answer>, waiting: &mut Waiting<Q>| {
            let mut flying = in_flight.lock().unwrap_or_else(PoisonError::into_inner);
            match flying.get_mut(&question) {
                Some(replies) => replies.push(reply),
                None => waiting.entry(question).or_default().push(reply),
            }
        };
        add(question, reply, &mut waiting);
        let deadline = tokio::time::Instant::now() + window;
        while waiting.len() < Q::LIMIT {
            tokio::select! {
                next = asks.recv() => match next {
                    Some((question, reply)) => add(question, reply, &mut waiting),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        if waiting.is_empty() {
            continue;
        }
        let open = {
            let breaker = breaker.lock().unwrap_or_else(PoisonError::into_inner);
            breaker
                .open_until
                .and_then(|until| until.checked_duration_since(Instant::now()))
        };
        if let Some(left) = open {
            for (_, replies) in waiting {
                for reply in replies {
                    let _ = reply.send(Err(UpstreamError::CircuitOpen(left.as_secs().max(1))));
                }
            }
            continue;
        }
        let questions: Vec<Q::Question> = waiting.keys().cloned().collect();
        in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(waiting);
        let (client, in_flight, breaker, metrics) = (
            client.clone(),
            Arc::clone(&in_flight),
            Arc::clone(&breaker),
            metrics.clone(),
        );
        tokio::spawn(async move {
            let started = Instant::now();
            let result = Q::ask(&client, &questions).await;
            let outcome = match &result {
                Ok(_) => Outcome::Answered,
                Err(ClientError::Api {
                    status,
                    code,
                    message,
                }) => Outcome::of_status(*status, || format!("{status} {code}: {message}")),
                Err(error) => Outcome::Failed(error.to_string()),
            };
            record(&breaker, &metrics, started, outcome);
            let replies: Vec<Vec<Reply<Q::Answer>>> = {
                let mut flying = in_flight.lock().unwrap_or_else(PoisonError::into_inner);
                questions
                    .iter()
                    .map(|question| flying.remove(question).unwrap_or_default())
                    .collect()
            };
            match result {
                Ok(answers) => {
                    for (replies, answer) in replies.into_iter().zip(answers) {
                        for reply in replies {
                            let _ = reply.send(answer.clone());
                        }
                    }
                }
                Err(error) => {
                    let error = match error {
                        ClientError::Api {
                            status,
                            code,
                            message,
                        } if status < 500 => UpstreamError::Refused {
                            status,
                            code,
                            message,
                        },
                        other => UpstreamError::Unavailable(other.to_string()),
                    };
                    for reply in replies.into_iter().flatten() {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        });
    }
}

/// Follows the upstream's change log from where it is now, dropping cached answers that a
/// change names (a background worker, [`repnet_runtime::workers`]). When the proxy falls
/// behind what the log keeps (or the log is replaced), it cannot know what changed: it
/// empties the cache.
pub(crate) struct Follower {
    pub(crate) upstream: Arc<std::sync::RwLock<Arc<Upstream>>>,
    pub(crate) cache: Arc<std::sync::RwLock<Arc<Cache>>>,
    pub(crate) interval: Duration,
    pub(crate) position: Arc<Mutex<Option<(String, u64)>>>,
}

impl repnet_runtime::Worker for Follower {
    fn name(&self) -> String {
        "change-log-follower".to_owned()
    }

    async fn work(
        &mut self,
        cx: &repnet_runtime::Context,
    ) -> Result<repnet_runtime::Next, repnet_runtime::WorkError> {
        let current = Arc::clone(&self.upstream.read().unwrap_or_else(PoisonError::into_inner));
        let cache = Arc::clone(&self.cache.read().unwrap_or_else(PoisonError::into_inner));
        // A request under way is dropped when the proxy stops (it holds nothing but the
        // connection): a stalled upstream does not hold up shutdown.
        tokio::select! {
            followed = follow_once(&current, &cache, &self.position) => {
                followed.map_err(|error| format!("following the upstream's change log: {error}"))?;
            }
            () = cx.stop.stopped() => {}
        }
        Ok(repnet_runtime::Next::Idle)
    }

    async fn wait_for_work(&mut self, _cx: &repnet_runtime::Context) {
        tokio::time::sleep(self.interval).await
    }

    fn progress(&self) -> Option<String> {
        let position = self.position.lock().unwrap_or_else(PoisonError::into_inner);
        Some(match &*position {
            Some((log_id, sequence)) => format!("at {sequence} of change log {log_id}"),
            None => "not following yet".to_owned(),
        })
    }
}

/// Why following the change log failed this time.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FollowError {
    #[error(transparent)]
    Upstream(#[from] ClientError),
    #[error("reading the change log: {0}")]
    Body(#[from] repnet_client::BodyError),
    #[error("the change log's stream: {0}")]
    Stream(#[from] repnet_protocol::replication::SyncError),
}

/// Notes a refusal of the proxy (the follower asks with the proxy's key too); answers the
/// error.
fn refusal(upstream: &Upstream, error: ClientError) -> FollowError {
    if let ClientError::Api {
        status,
        code,
        message,
    } = &error
        && let outcome @ Outcome::Refused(_) =
            Outcome::of_status(*status, || format!("{status} {code}: {message}"))
    {
        upstream.note(outcome);
    }
    FollowError::Upstream(error)
}

async fn follow_once(
    upstream: &Upstream,
    cache: &Cache,
    position: &Mutex<Option<(String, u64)>>,
) -> Result<(), FollowError> {
    let known = position
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let Some((log_id, after)) = known else {
        let (log_id, sequence) = upstream
            .client
            .log_position()
            .await
            .map_err(|e| refusal(upstream, e))?;
        *position.lock().unwrap_or_else(PoisonError::into_inner) = Some((log_id, sequence));
        return Ok(());
    };
    let path = format!("/v1/changes?after={after}&limit=100000");
    let response = match upstream.client.replication_stream(&path).await {
        Ok(response) => response,
        Err(ClientError::Api { code, .. }) if code == ErrorCode::SnapshotRequired.as_str() => {
            let dropped = cache.len();
            cache.clear();
            upstream.metrics.invalidated.inc_by(dropped as u64);
            tracing::info!(
                dropped,
                "the proxy fell behind the upstream's change log: cache emptied"
            );
            *position.lock().unwrap_or_else(PoisonError::into_inner) = None;
            return Ok(());
        }
        Err(error) => return Err(refusal(upstream, error)),
    };
    upstream.note(Outcome::Answered);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    if header("x-repnet-log-id").is_some_and(|id| id != log_id) {
        cache.clear();
        *position.lock().unwrap_or_else(PoisonError::into_inner) = None;
        return Ok(());
    }
    let body = repnet_client::read_limited(response, repnet_client::MAX_ANSWER_BODY).await?;
    let mut stream = repnet_protocol::replication::StreamReader::new(&body[..])?;
    let mut changed = crate::cache::Changes::default();
    while let Some(entry) = stream.next_entry()? {
        changed.add(&entry.key);
    }
    let to = stream.header().to;
    if !changed.is_empty() {
        let dropped = cache.invalidate(&changed);
        upstream.metrics.invalidated.inc_by(dropped as u64);
        tracing::debug!(
            changes = changed.len(),
            dropped,
            "cache invalidated from the change log"
        );
    }
    *position.lock().unwrap_or_else(PoisonError::into_inner) = Some((log_id, to));
    Ok(())
}
