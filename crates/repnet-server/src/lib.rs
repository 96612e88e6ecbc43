//! repnet's reputation server: the HTTP API (lookups, local verdicts, licence keys,
//! replication, operations) over the knowledge base, and pulling from an upstream server.
//!
//! [`Server::run`] takes a bound listener and a shutdown future, so tests start the real
//! server on port 0 and stop it when they like (the shape of tokio's mini-redis).

pub use repnet_http::admin;
mod activity;
mod api;
pub mod bundle;
pub mod config;
mod console;
pub mod engine;
pub mod export;
mod failures;
mod feeds;
mod housekeeping;
mod installations;
pub mod licences;
mod lookup;
mod metrics;
mod proxies;
pub mod settings;
mod statistics;

mod upstream;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use repnet_model::TtlPolicy;
use repnet_store::Store;
use tokio::net::TcpListener;

/// How often a node of a shared store (a Redis Cluster) reads the licence keys again, for
/// keys registered or revoked through another node; a request with an unknown key makes it
/// read them within a second.
const LICENCE_REFRESH: std::time::Duration = std::time::Duration::from_secs(10);

pub use crate::config::{
    AdminToken, ClusterConfig, ConfigError, Role, ServerConfig, UpstreamConfig, cluster_nodes,
};
/// This API's OpenAPI description, as JSON.
pub fn openapi_json() -> String {
    api::openapi_json()
}

/// What every handler can reach.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    store: Store,
    workers: repnet_runtime::Workers,
    ttl: TtlPolicy,
    max_batch_items: usize,
    /// `access_log`: a line per request.
    access_log: bool,
    metrics: metrics::Metrics,
    /// `None` disables the admin API.
    admin: Arc<admin::AdminGate>,
    /// False until the server serves and again from the moment shutdown begins, so that a
    /// load balancer stops sending traffic before connections close. An atomic because
    /// `/readyz` reads it on every probe and shutdown flips it once.
    ready: Arc<AtomicBool>,
    /// `Cache-Control` of single lookups, made once rather than per answer.
    cache_control: CacheControl,
    /// Uploaded and scheduled feeds.
    feeds: Arc<feeds::Feeds>,
    /// Registered licence keys.
    licences: Arc<licences::Licences>,
    /// What this server is in its network.
    role: config::Role,
    /// The server this one pulls from.
    upstream: Option<Arc<upstream::Upstream>>,
    /// The key offline bundles must be signed with.
    bundle_key: Option<ed25519_dalek::VerifyingKey>,
    /// The participation statement.
    statement: repnet_protocol::Statement,
    /// Statistics batches waiting for the writer.
    statistics: statistics::Queue,
    max_statistics_events: usize,
    device_secret_rotation_seconds: u64,
    /// The reputation engine.
    engine: Arc<engine::Engine>,
    /// Statistics batches per installation.
    install_limit: Arc<statistics::InstallLimit>,
    /// Enrolment of installations, and their tokens.
    installations: Arc<installations::Installations>,
    /// The settings that change at run time, as they are now.
    runtime: Arc<std::sync::Mutex<settings::RuntimeSettings>>,
    changing_settings: Arc<tokio::sync::Mutex<()>>,
    /// Replication streams under way.
    streams: Arc<api::replication::StreamSlots>,
    /// When the server started (the console's uptime).
    started: std::time::Instant,
    /// How long raw statistics events are kept (the console's privacy page).
    statistics_retention_days: u32,
    /// The proxies that report to this server, and their settings.
    proxies: Arc<proxies::Proxies>,
    /// The activity over time (the console's overview).
    activity: housekeeping::ActivitySources,
}

#[derive(Clone, Debug)]
struct CacheControl {
    known: axum::http::HeaderValue,
    unknown: axum::http::HeaderValue,
}

impl CacheControl {
    fn new(ttl: &TtlPolicy) -> CacheControl {
        let value = |seconds: u32| {
            axum::http::HeaderValue::from_str(&format!("private, max-age={seconds}"))
                .unwrap_or_else(|_| axum::http::HeaderValue::from_static("no-cache"))
        };
        CacheControl {
            known: value(ttl.known),
            unknown: value(ttl.unknown),
        }
    }
}

/// Reloads what a running server read from files at start: the upstream's licence key file
/// (which is also read again whenever it changes) and the TLS certificate and key. Cheap to
/// clone; `repnet serve` calls it on SIGHUP.
#[derive(Debug, Clone)]
pub struct Reloader {
    upstream: Option<Arc<upstream::Upstream>>,
    tls: Option<repnet_http::tls::Certificates>,
}

impl Reloader {
    pub fn reload(&self) {
        if let Some(upstream) = &self.upstream {
            upstream.reload();
        }
        if let Some(tls) = &self.tls {
            tls.reload();
        }
    }
}

/// A configured server, ready to run on a listener.
#[derive(Debug)]
pub struct Server {
    router: Router,
    store: Store,
    feeds: Arc<feeds::Feeds>,
    licences: Arc<licences::Licences>,
    upstream: Option<Arc<upstream::Upstream>>,
    tls: Option<repnet_http::tls::Certificates>,
    /// Taken by `run`, which starts the statistics writer on it.
    statistics: std::sync::Mutex<Option<statistics::Batches>>,
    retention: Duration,
    engine: Arc<engine::Engine>,
    activity: housekeeping::ActivitySources,
    /// Started by `run`, stopped when it ends; their statuses are in `/v1/admin/status`.
    workers: repnet_runtime::Workers,
    ready: Arc<AtomicBool>,
    grace: Duration,
    connections: repnet_http::Limits,
}

/// Why a server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] repnet_store::StoreError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The licence keys could not be read: what went wrong says whether the store is at fault.
    #[error("cannot read the licence keys: {0}")]
    Licences(#[source] repnet_licences::BookError),
    /// The runtime settings an earlier run kept cannot be read.
    #[error("runtime settings: {0}")]
    SavedSettings(#[source] repnet_runtime::files::FileError),
    #[error("bundle_public_key: {0}")]
    BundleKey(#[source] bundle::BundleError),
}

impl Server {
    /// A server answering from `store` with the settings of `config`; `admin_token` enables
    /// the admin API. Fails if the store cannot be read, or if a file the configuration names
    /// (the upstream's key, the bundle key, the TLS certificate and key) is unusable.
    pub async fn new(
        store: Store,
        config: &ServerConfig,
        admin_token: Option<AdminToken>,
    ) -> Result<Server, StartError> {
        // Settings changed at run time by an earlier run win over the file's.
        let mut config = config.clone();
        if let Some(saved) =
            settings::RuntimeSettings::load(store.dir()).map_err(StartError::SavedSettings)?
        {
            tracing::info!(data = %store.dir().display(), "runtime settings from an earlier run");
            saved.apply_to(&mut config);
        }
        let config = &config;
        let limit = settings::rate_limit(config.key_requests_per_second, config.key_burst);
        let licences = Arc::new(
            licences::Licences::load(Arc::new(store.clone()), config.key_required(), limit)
                .await
                .map_err(StartError::Licences)?,
        );
        let workers = repnet_runtime::Workers::new(repnet_runtime::Clock::system());
        let metrics = metrics::Metrics::new(&workers, config.upstream.is_some());
        let upstream = match &config.upstream {
            Some(upstream) => Some(Arc::new(
                upstream::Upstream::new(upstream, upstream.licence_key()?, metrics.clone())
                    .map_err(|message| ConfigError::Invalid {
                        key: "upstream",
                        message: message.to_string(),
                    })?,
            )),
            None => None,
        };
        let bundle_key = match &config.bundle_public_key {
            Some(path) => Some(bundle::read_public_key(path).map_err(StartError::BundleKey)?),
            None => None,
        };
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(
                repnet_http::tls::Certificates::load(cert, key).map_err(|message| {
                    ConfigError::Invalid {
                        key: "tls_cert",
                        message: message.to_string(),
                    }
                })?,
            ),
            _ => None,
        };
        let statement_text = match &config.statement_file {
            Some(path) => {
                Some(
                    std::fs::read_to_string(path).map_err(|error| ConfigError::Invalid {
                        key: "statement_file",
                        message: format!("cannot read {}: {error}", path.display()),
                    })?,
                )
            }
            None => None,
        };
        let (statistics_queue, statistics_batches) = tokio::sync::mpsc::channel(1024);
        let activity = Arc::new(activity::Activity::load(store.dir()));
        let engine = Arc::new(engine::Engine::new(
            config.engine.clone(),
            Arc::clone(&activity),
        ));
        let activity = housekeeping::ActivitySources {
            activity,
            metrics: metrics.clone(),
            store: store.clone(),
            engine: Arc::clone(&engine),
        };
        let ready = Arc::new(AtomicBool::new(false));
        let feeds = Arc::new(feeds::Feeds::new(
            config,
            store.dir(),
            metrics.clone(),
            workers.clock(),
        ));
        let state = AppState {
            store: store.clone(),
            workers: workers.clone(),
            ttl: config.ttl_policy(),
            max_batch_items: config.max_batch_items,
            access_log: config.access_log,
            metrics,
            admin: Arc::new(admin::AdminGate::new(admin_token)),
            ready: Arc::clone(&ready),
            cache_control: CacheControl::new(&config.ttl_policy()),
            feeds: Arc::clone(&feeds),
            licences: Arc::clone(&licences),
            role: config.role,
            upstream: upstream.clone(),
            bundle_key,
            statement: statistics::statement(
                config.statement_version,
                statement_text,
                config.statistics_retention_days,
            ),
            statistics: statistics_queue,
            max_statistics_events: config.max_statistics_events,
            device_secret_rotation_seconds: u64::from(config.device_secret_rotation_days) * 86_400,
            engine: Arc::clone(&engine),
            install_limit: Arc::new(statistics::InstallLimit::new(
                config.install_batches_per_minute,
            )),
            installations: Arc::new(installations::Installations::new(
                store.permanent_secret("installations").await?,
                installations::EnrolmentLimits {
                    difficulty: config.installation_difficulty,
                    per_address: config.enrolments_per_address_per_hour,
                    per_key: config.enrolments_per_key_per_hour,
                },
            )),
            runtime: Arc::new(std::sync::Mutex::new(settings::RuntimeSettings::of(config))),
            changing_settings: Arc::new(tokio::sync::Mutex::new(())),
            streams: Arc::new(api::replication::StreamSlots::new(
                config.max_replication_streams,
                config.max_replication_streams_per_key,
            )),
            started: std::time::Instant::now(),
            statistics_retention_days: config.statistics_retention_days,
            proxies: Arc::new(proxies::Proxies::load(
                store.dir(),
                Arc::clone(&activity.activity),
            )),
            activity: activity.clone(),
        };
        Ok(Server {
            router: api::router(
                Arc::new(state),
                config.max_body_bytes,
                &config.connections,
                tls.is_some(),
            ),
            store,
            feeds,
            licences,
            upstream,
            tls,
            statistics: std::sync::Mutex::new(Some(statistics_batches)),
            retention: Duration::from_secs(u64::from(config.statistics_retention_days) * 86_400),
            engine,
            activity,
            workers,
            ready,
            grace: Duration::from_secs(config.shutdown_grace_seconds),
            connections: config.connections.clone(),
        })
    }

    /// What reloads the files the server reads at start (SIGHUP): the upstream's key file and
    /// the TLS certificate and key.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            upstream: self.upstream.clone(),
            tls: self.tls.clone(),
        }
    }

    /// `https` when the server serves TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Serves HTTP/1.1 and HTTP/2 (over TLS when configured) on `listener` until `shutdown` completes, then
    /// stops accepting, reports not ready, and lets in-flight requests finish for up to the
    /// configured grace period. Scheduled feeds refresh while it serves.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let ready = Arc::clone(&self.ready);
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let graceful = async move {
            shutdown.await;
            ready.store(false, Ordering::SeqCst);
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = stopping_tx.send(());
        };
        let serve = async move {
            match self.tls {
                Some(certificates) => {
                    repnet_http::serve(
                        repnet_http::tls::TlsListener::new(listener, certificates),
                        self.router,
                        self.connections,
                        graceful,
                    )
                    .await
                }
                None => {
                    repnet_http::serve(
                        repnet_http::TcpAccept(listener),
                        self.router,
                        self.connections,
                        graceful,
                    )
                    .await
                }
            }
        };
        let workers = &self.workers;
        let store = &self.store;
        workers.spawn(housekeeping::FilterBuild {
            store: store.clone(),
        });
        for feed in self.feeds.workers(store) {
            workers.spawn(feed);
        }
        workers.spawn(self.engine.worker(store.clone()));
        if let Some(upstream) = &self.upstream {
            workers.spawn(upstream::Puller::new(Arc::clone(upstream), store.clone()));
        }
        let batches = self
            .statistics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(batches) = batches {
            workers.spawn(statistics::Writer::new(
                store.clone(),
                batches,
                Arc::clone(&self.activity.activity),
            ));
        }
        workers.spawn(housekeeping::Retention {
            store: store.clone(),
            retention: self.retention,
        });
        workers.spawn(self.licences.recorder());
        if store.shared() {
            // Keys registered or revoked through another node of the same cluster.
            workers.spawn(self.licences.refresher(LICENCE_REFRESH));
            // A key's rate is shared by every node serving it.
            workers.spawn(housekeeping::CountServers {
                store: store.clone(),
                licences: Arc::clone(&self.licences),
            });
        }
        workers.spawn(housekeeping::LapseLocalVerdicts {
            store: store.clone(),
        });
        workers.spawn(housekeeping::ActivitySampler {
            sources: self.activity.clone(),
            samples: 0,
        });
        self.ready.store(true, Ordering::SeqCst);
        let grace = self.grace;
        let grace_expired = async move {
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let result = tokio::select! {
            result = serve => result,
            () = grace_expired => {
                tracing::warn!(grace_seconds = grace.as_secs(), "requests still running after the grace period; stopping anyway");
                Ok(())
            }
        };
        // Imports still running stop at their next read (a long SQLite query within a
        // fraction of a second); the workers finish their units of work (the statistics
        // writer stores what is queued: the router, and with it the queue's sender, is gone)
        // and let go of the store.
        self.feeds.stop_imports();
        self.workers.stop().await;
        result
    }
}
