//! `repnet proxy`: the fleet gateway. Managed devices ask it what they would ask a server
//! (the same client API); it answers from its cache, sends misses upstream coalesced and in
//! batches with the organisation's licence key, keeps answering (marked `stale`) when the
//! upstream is briefly down, and follows the upstream's change log so that a verdict fixed
//! upstream reaches devices within seconds. See docs/proxy.md.
//!
//! It never touches storage: its only state on disk is `settings.json`, the runtime settings
//! an administrator changed.

mod cache;
mod console;
mod keys;
mod report;
mod routes;
pub mod settings;
mod upstream;

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use axum::http::StatusCode;
use repnet_http::ApiError;
use repnet_http::admin::AdminToken;
use repnet_protocol::ErrorCode;
use tokio::net::TcpListener;

use crate::cache::Cache;
pub use crate::settings::{ProxyConfig, Settings, SettingsError};
use crate::upstream::{Metrics, Upstream};

/// Why the proxy cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("upstream: {0}")]
    Upstream(#[from] repnet_client::ClientError),
    #[error("device keys: {0}")]
    Keys(#[source] repnet_licences::BookError),
}

/// What every handler can reach.
#[derive(Debug)]
pub(crate) struct State {
    config: ProxyConfig,
    settings: RwLock<Settings>,
    /// Replaced when the settings name another upstream or window.
    upstream: Arc<RwLock<Arc<Upstream>>>,
    /// Replaced when the settings change its size.
    cache: Arc<RwLock<Arc<Cache>>>,
    /// Where the change-log follower is: the upstream log's id and sequence.
    position: Arc<Mutex<Option<(String, u64)>>>,
    /// The licence key sent upstream: replaced when its file changes (or on SIGHUP).
    upstream_key: RwLock<Option<String>>,
    upstream_key_file: Option<repnet_runtime::files::WatchedFile>,
    /// Wakes the key file's watcher (SIGHUP).
    reload: tokio::sync::Notify,
    admin: Arc<repnet_http::admin::AdminGate>,
    /// Device keys (`require_device_key`).
    devices: Arc<repnet_licences::Licences>,
    metrics: Metrics,
    registry: prometheus_client::registry::Registry,
    /// The background workers: started by `run`, in `/v1/admin/status` and the metrics.
    workers: repnet_runtime::Workers,
    /// Serialises settings changes.
    changing: tokio::sync::Mutex<()>,
}

impl State {
    fn upstream(&self) -> Arc<Upstream> {
        Arc::clone(&self.upstream.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn cache(&self) -> Arc<Cache> {
        Arc::clone(&self.cache.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Changes the runtime settings to what `change` makes of the current ones: checked,
    /// applied at once (a new upstream or window starts a new upstream client; a new size a
    /// new, empty cache; a new lifetime applies to answers cached from now on), and kept for
    /// the next start. One change at a time; a change that cannot be kept is not applied, so
    /// that the file and what runs never disagree.
    pub(crate) async fn change_settings(
        &self,
        change: impl FnOnce(&Settings) -> Result<Settings, ApiError>,
    ) -> Result<Settings, ApiError> {
        let _one_at_a_time = self.changing.lock().await;
        let current = self.settings();
        let settings = change(&current)?;
        settings
            .validate()
            .map_err(|error| ApiError::bad_request(ErrorCode::InvalidSetting, error.to_string()))?;
        // Everything that can fail first, then the file, then the running state.
        let upstream = if settings.upstream != current.upstream
            || settings.coalescing_window_ms != current.coalescing_window_ms
        {
            let upstream = self.start_upstream(&settings).map_err(|error| {
                ApiError::bad_request(ErrorCode::InvalidSetting, format!("upstream: {error}"))
            })?;
            Some(Arc::new(upstream))
        } else {
            None
        };
        if let Err(error) = settings.save(&self.config.data) {
            tracing::error!(%error, "the proxy's settings could not be saved; nothing changed");
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                format!("the settings could not be kept, so nothing changed: {error}"),
            ));
        }
        if let Some(upstream) = upstream {
            *self
                .upstream
                .write()
                .unwrap_or_else(PoisonError::into_inner) = upstream;
            if settings.upstream != current.upstream {
                self.cache().clear();
                *self.position.lock().unwrap_or_else(PoisonError::into_inner) = None;
            }
        }
        if settings.cache_max_entries != current.cache_max_entries
            || settings.cache_max_bytes != current.cache_max_bytes
        {
            let cache = Cache::new(settings.cache_max_entries, settings.cache_max_bytes);
            *self.cache.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(cache);
        }
        self.cache().set_max_ttl(settings.cache_max_ttl_seconds);
        tracing::info!(settings = ?settings, "proxy settings changed");
        *self
            .settings
            .write()
            .unwrap_or_else(PoisonError::into_inner) = settings.clone();
        Ok(settings)
    }

    fn start_upstream(&self, settings: &Settings) -> Result<Upstream, repnet_client::ClientError> {
        let key = self
            .upstream_key
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Upstream::start(
            &settings.upstream,
            key.as_deref(),
            self.config.upstream_ca_file.as_deref(),
            Duration::from_millis(self.config.upstream_timeout_ms),
            Duration::from_millis(settings.coalescing_window_ms),
            self.metrics.clone(),
        )
    }
}

/// A configured proxy, ready to run on a listener.
#[derive(Debug)]
pub struct Proxy {
    state: Arc<State>,
    /// HTTPS, when configured.
    tls: Option<repnet_http::tls::Certificates>,
}

impl Proxy {
    /// A proxy with `config`; runtime settings kept in its data directory by an earlier run
    /// win over the file's. Must be called within a Tokio runtime.
    pub async fn new(
        config: ProxyConfig,
        admin_token: Option<AdminToken>,
    ) -> Result<Proxy, StartError> {
        let settings = match Settings::load(&config.data)? {
            Some(saved) => {
                tracing::info!(data = %config.data.display(), "runtime settings from an earlier run");
                saved
            }
            None => config.settings.clone(),
        };
        settings.validate()?;
        if let Some(name) = &config.name {
            repnet_protocol::proxies::check_proxy_name(name).map_err(|message| {
                SettingsError::Invalid {
                    key: "name",
                    message,
                }
            })?;
        }
        config
            .connections
            .validate()
            .map_err(|message| SettingsError::Invalid {
                key: "connections",
                message: message.to_string(),
            })?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(
                repnet_http::tls::Certificates::load(cert, key).map_err(|message| {
                    SettingsError::Invalid {
                        key: "tls_cert",
                        message: message.to_string(),
                    }
                })?,
            ),
            (None, None) => None,
            _ => {
                return Err(SettingsError::Invalid {
                    key: "tls_cert",
                    message:
                        "give both tls_cert and tls_key (--tls-cert and --tls-key), or neither"
                            .to_owned(),
                }
                .into());
            }
        };
        if config.max_body_bytes < 1024
            || config.connections.max_buffered_body_bytes < config.max_body_bytes as u64
        {
            return Err(SettingsError::Invalid {
                key: "max_body_bytes",
                message: format!(
                    "must be at least 1024 and at most connections.max_buffered_body_bytes; got {}",
                    config.max_body_bytes
                ),
            }
            .into());
        }
        let upstream_key = config.upstream_key()?;
        // A key given in full is fixed; one in a file follows the file.
        let upstream_key_file = config
            .upstream_key_file
            .as_deref()
            .filter(|_| config.upstream_key.is_none())
            .map(repnet_runtime::files::WatchedFile::new);
        let (metrics, mut registry) = Metrics::new();
        let workers = repnet_runtime::Workers::new(repnet_runtime::Clock::system());
        registry.register_collector(Box::new(repnet_runtime::workers::WorkerMetrics(
            workers.clone(),
        )));
        registry.register_collector(Box::new(repnet_runtime::process::ProcessMetrics {
            component: "proxy",
        }));
        let upstream = Upstream::start(
            &settings.upstream,
            upstream_key.as_deref(),
            config.upstream_ca_file.as_deref(),
            Duration::from_millis(config.upstream_timeout_ms),
            Duration::from_millis(settings.coalescing_window_ms),
            metrics.clone(),
        )?;
        let cache = Cache::new(settings.cache_max_entries, settings.cache_max_bytes);
        cache.set_max_ttl(settings.cache_max_ttl_seconds);
        let devices = repnet_licences::Licences::load(
            Arc::new(keys::FileBook::new(&config.data)),
            true,
            None,
        )
        .await
        .map_err(StartError::Keys)?;
        Ok(Proxy {
            state: Arc::new(State {
                config,
                settings: RwLock::new(settings),
                upstream: Arc::new(RwLock::new(Arc::new(upstream))),
                cache: Arc::new(RwLock::new(Arc::new(cache))),
                position: Arc::new(Mutex::new(None)),
                upstream_key_file,
                upstream_key: RwLock::new(upstream_key),
                reload: tokio::sync::Notify::new(),
                admin: Arc::new(repnet_http::admin::AdminGate::new(admin_token)),
                devices: Arc::new(devices),
                metrics,
                registry,
                workers,
                changing: tokio::sync::Mutex::new(()),
            }),
            tls,
        })
    }

    /// Serves devices on `listener` until `shutdown` completes.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let workers = &self.state.workers;
        if self.state.config.follow_changes {
            workers.spawn(upstream::Follower {
                upstream: Arc::clone(&self.state.upstream),
                cache: Arc::clone(&self.state.cache),
                interval: Duration::from_secs(self.state.config.follow_interval_seconds.max(1)),
                position: Arc::clone(&self.state.position),
            });
        }
        workers.spawn(report::Reporter {
            state: Arc::clone(&self.state),
            name: self
                .state
                .config
                .name
                .clone()
                .unwrap_or_else(report::default_name),
            interval: Duration::from_secs(self.state.config.follow_interval_seconds.max(1)),
            applied: 0,
            tried: 0,
            error: None,
            unsupported: false,
        });
        workers.spawn(self.state.devices.recorder());
        if self.state.upstream_key_file.is_some() {
            workers.spawn(KeyFileWatcher {
                state: Arc::clone(&self.state),
                read: None,
            });
        }
        let router = routes::router(Arc::clone(&self.state), self.tls.is_some());
        let limits = self.state.config.connections.clone();
        let result = match self.tls {
            Some(certificates) => {
                repnet_http::serve(
                    repnet_http::tls::TlsListener::new(listener, certificates),
                    router,
                    limits,
                    shutdown,
                )
                .await
            }
            None => {
                repnet_http::serve(repnet_http::TcpAccept(listener), router, limits, shutdown).await
            }
        };
        self.state.workers.stop().await;
        result
    }

    /// Reads the upstream key file again now, and the TLS certificate and key (SIGHUP); the
    /// key file is also read whenever it changes.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            state: Arc::clone(&self.state),
            tls: self.tls.clone(),
        }
    }

    /// `https` when the proxy serves TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

/// Reads a proxy's upstream key file again. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Reloader {
    state: Arc<State>,
    tls: Option<repnet_http::tls::Certificates>,
}

impl Reloader {
    pub fn reload(&self) {
        self.state.reload.notify_one();
        if let Some(tls) = &self.tls {
            tls.reload();
        }
    }
}

/// How often the upstream key file is looked at.
const KEY_FILE_POLL: Duration = Duration::from_secs(2);

/// Watches the upstream key file: a new key (after a licence change) starts a new upstream
/// client with it, without a restart (a background worker, [`repnet_runtime::workers`]).
struct KeyFileWatcher {
    state: Arc<State>,
    /// A key read from the file, not yet in use.
    read: Option<String>,
}

impl repnet_runtime::Worker for KeyFileWatcher {
    fn name(&self) -> String {
        "upstream-key-file".to_owned()
    }

    async fn work(
        &mut self,
        _cx: &repnet_runtime::Context,
    ) -> Result<repnet_runtime::Next, repnet_runtime::WorkError> {
        // The first unit finds nothing: the key was read at start.
        let Some(key) = self.read.take() else {
            return Ok(repnet_runtime::Next::Idle);
        };
        let state = &self.state;
        let _one_at_a_time = state.changing.lock().await;
        let same = state
            .upstream_key
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_deref()
            == Some(key.as_str());
        if same {
            return Ok(repnet_runtime::Next::Idle);
        }
        *state
            .upstream_key
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(key);
        let upstream = state.start_upstream(&state.settings()).map_err(|error| {
            format!("cannot start the upstream client with the new key: {error}")
        })?;
        *state
            .upstream
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(upstream);
        tracing::info!("the upstream key file changed: asking upstream with the new key");
        Ok(repnet_runtime::Next::Idle)
    }

    /// Until the file holds another key: looked at every [`KEY_FILE_POLL`], and at once on
    /// SIGHUP.
    async fn wait_for_work(&mut self, _cx: &repnet_runtime::Context) {
        let state = &self.state;
        let Some(file) = &state.upstream_key_file else {
            return std::future::pending().await;
        };
        loop {
            let force = tokio::select! {
                () = tokio::time::sleep(KEY_FILE_POLL) => false,
                () = state.reload.notified() => true,
            };
            if let Some(key) = file.read_if_changed(force) {
                self.read = Some(key);
                return;
            }
        }
    }
}
