//! The server's configuration: one documented struct, defaults in one place.
//!
//! Sources, in increasing precedence: the TOML file (`--config`), `REPNET_*` environment
//! variables, command-line flags. The binary merges the last two (clap does that); this module
//! reads the file and validates the result. Every key is documented in docs/configuration.md.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use repnet_model::TtlPolicy;
use serde::{Deserialize, Serialize};

/// The most items a batch lookup may hold, whatever the configuration says.
pub const MAX_BATCH_ITEMS: usize = 10_000;

/// Everything `repnet serve` can be told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// Directory of the embedded knowledge base; with a Redis Cluster `store`, of this
    /// node's temporary files (imports' sorted runs, downloads) and its runtime settings.
    pub data: PathBuf,
    /// Where the knowledge base lives: absent for the embedded store in `data`, or a Redis
    /// Cluster, `redis://host:port[,host:port…]` (some of its nodes; the rest are found).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// A Redis Cluster store's options (`[cluster]`).
    pub cluster: ClusterConfig,
    /// File holding the admin token; the admin API is disabled without a token.
    pub admin_token_file: Option<PathBuf>,
    /// Seconds clients may cache an answer with a known verdict.
    pub ttl_seconds: u32,
    /// Seconds clients may cache an `unknown` answer.
    pub unknown_ttl_seconds: u32,
    /// Most items in one `POST /v1/lookup` (at most 10,000).
    pub max_batch_items: usize,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Seconds to let in-flight requests finish after SIGINT/SIGTERM.
    pub shutdown_grace_seconds: u64,
    /// Threads serving requests; 0 for one per CPU core.
    pub worker_threads: usize,
    /// Largest feed accepted by `POST /v1/admin/imports` or downloaded for a scheduled feed,
    /// in bytes (it is spooled to the data directory, not held in memory).
    pub max_import_bytes: u64,
    /// The most bytes a compressed feed (gzip, zip) may expand to when imported.
    pub max_decompressed_bytes: u64,
    /// The most a compressed feed may expand, as a multiple of its compressed size, once past
    /// 64 MiB: real feeds compress 2 to 20 times, a decompression bomb a thousand.
    pub max_expansion_ratio: u64,
    /// Feeds to refresh on a schedule (`[[feeds]]` tables).
    pub feeds: Vec<FeedConfig>,
    /// `global` (the default) or `private`: a private server requires a licence key on every
    /// request but the admin API and operations, and never sends anything upstream.
    pub role: Role,
    /// On a global server, require a licence key on lookups too (sync always requires one).
    pub require_key: bool,
    /// Requests per second each licence key may make; 0 for no limit.
    pub key_requests_per_second: u32,
    /// Requests a key may make at once above its rate (the bucket's size); 0 for the rate.
    pub key_burst: u32,
    /// Most changes the change log keeps for servers that pull from this one; one further
    /// behind gets a snapshot. 0 keeps none.
    pub change_log_max: u64,
    /// The server to pull the knowledge base from (`[upstream]`).
    pub upstream: Option<UpstreamConfig>,
    /// PEM certificate chain and private key: serve HTTPS instead of HTTP (give both).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The Ed25519 public key (`repnet bundle keygen`'s `.pub` file) that offline bundles
    /// uploaded to `POST /v1/admin/bundles` must be signed with.
    pub bundle_public_key: Option<PathBuf>,
    /// The version of the participation statement statistics must name; raise it with every
    /// change of `statement_file`.
    pub statement_version: u32,
    /// A file with the statement's text, replacing the built-in one.
    pub statement_file: Option<PathBuf>,
    /// Days raw statistics events are kept; aggregates stay.
    pub statistics_retention_days: u32,
    /// Days after which the secret key of the install-id hash is replaced.
    pub device_secret_rotation_days: u32,
    /// Most events in one `POST /v1/statistics`.
    pub max_statistics_events: usize,
    /// Statistics batches one installation may send per minute (poisoning resistance); 0
    /// for no limit.
    pub install_batches_per_minute: u32,
    /// Leading zero bits of the proof of work an installation's enrolment needs (2^N
    /// SHA-256 hashes on average; 0 to 32).
    pub installation_difficulty: u8,
    /// Installations one address (an IPv6 /64) may enrol in an hour without a licence key.
    pub enrolments_per_address_per_hour: u32,
    /// Installations one licence key may enrol in an hour.
    pub enrolments_per_key_per_hour: u32,
    /// The reputation engine (`[engine]`).
    pub engine: crate::engine::EngineConfig,
    /// Replication streams (`/v1/changes`, `/v1/snapshot`) sent at once, in total.
    pub max_replication_streams: usize,
    /// Replication streams sent at once to one licence key.
    pub max_replication_streams_per_key: usize,
    /// Log a line per request (target `repnet::access`): method, route pattern, status,
    /// microseconds, bytes. Never the client's address or what was looked up.
    pub access_log: bool,
    /// What clients' connections may hold and for how long (`[connections]`).
    pub connections: repnet_http::Limits,
}

/// How a node uses a Redis Cluster store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Every key this knowledge base writes starts with this and a colon: several can share
    /// a cluster. Every node of one knowledge base names the same.
    pub namespace: String,
    /// Replicas of each master that must have a write before it is acknowledged (Redis's
    /// `WAIT`): 1 survives the failover of a master; 0 for a cluster without replicas.
    pub replicas: u32,
    /// Milliseconds a connection to a node, and an answer, may take before the request
    /// fails as unavailable.
    pub timeout_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            namespace: "repnet".to_owned(),
            replicas: 1,
            timeout_ms: 2_000,
        }
    }
}

/// The nodes named by a `store` setting, as `redis://host:port` each; or what is wrong.
pub fn cluster_nodes(store: &str) -> Result<Vec<String>, String> {
    let rest = store.strip_prefix("redis://").ok_or_else(|| {
        if store.starts_with("rediss://") {
            "TLS to the cluster (rediss://) is not supported; use redis:// on a trusted network".to_owned()
        } else {
            format!(
                "{store:?} is not a store: give redis://host:port[,host:port…] for a Redis Cluster, or leave it out for the embedded store in `data`"
            )
        }
    })?;
    rest.split(',')
        .map(|node| {
            let node = node.trim();
            let node = node.strip_prefix("redis://").unwrap_or(node);
            let (host, port) = node.rsplit_once(':').ok_or_else(|| {
                format!("{node:?} has no port: write host:port (e.g. 127.0.0.1:7000)")
            })?;
            if host.is_empty() || host.contains(['/', '@', '?', '#']) {
                return Err(format!(
                    "{node:?} is not host:port (credentials and paths are not supported)"
                ));
            }
            port.parse::<u16>()
                .ok()
                .filter(|port| *port != 0)
                .ok_or_else(|| format!("{node:?}: the port must be a number from 1 to 65535"))?;
            Ok(format!("redis://{node}"))
        })
        .collect()
}

/// Where a server pulls its knowledge base from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The upstream server's base URL, `https://…` (or `http://` on a trusted network).
    pub url: String,
    /// The licence key registered for this organisation upstream…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// …or a file holding it (preferred: the key stays out of the configuration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Seconds between pulls once caught up.
    #[serde(default = "UpstreamConfig::default_interval")]
    pub interval_seconds: u64,
    /// Changes asked for per page (a server sends at most 100,000, and says where it ended).
    #[serde(default = "UpstreamConfig::default_page_size")]
    pub page_size: usize,
    /// CA certificates (PEM) to trust for the upstream's HTTPS, besides the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Seconds a pull may go without receiving a byte before it fails as stalled.
    #[serde(default = "UpstreamConfig::default_progress_timeout")]
    pub progress_timeout_seconds: u64,
    /// Bytes of disk a snapshot must leave free in the data directory: one that would not
    /// (counting three times its size: the download's sorted runs and the store's growth) is
    /// refused.
    #[serde(default = "UpstreamConfig::default_min_free_disk")]
    pub min_free_disk_bytes: u64,
}

impl UpstreamConfig {
    /// An upstream at `url` with the default settings.
    pub fn new(url: &str) -> UpstreamConfig {
        UpstreamConfig {
            url: url.to_owned(),
            key: None,
            key_file: None,
            interval_seconds: UpstreamConfig::default_interval(),
            page_size: UpstreamConfig::default_page_size(),
            ca_file: None,
            progress_timeout_seconds: UpstreamConfig::default_progress_timeout(),
            min_free_disk_bytes: UpstreamConfig::default_min_free_disk(),
        }
    }

    fn default_progress_timeout() -> u64 {
        60
    }

    fn default_min_free_disk() -> u64 {
        1 << 30
    }

    fn default_interval() -> u64 {
        10
    }

    fn default_page_size() -> usize {
        100_000
    }

    /// The licence key, from `key` or `key_file`, checked.
    pub fn licence_key(&self) -> Result<String, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            key: "upstream",
            message,
        };
        let key = match (&self.key, &self.key_file) {
            (Some(key), None) => key.trim().to_owned(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|error| {
                    invalid(format!("cannot read key_file {}: {error}", path.display()))
                })?
                .trim()
                .to_owned(),
            (None, None) => {
                return Err(invalid(
                    "the licence key for the upstream is missing: give --upstream-key-file FILE (or key_file), or --upstream-key / REPNET_UPSTREAM_KEY".to_owned(),
                ));
            }
            (Some(_), Some(_)) => {
                return Err(invalid("give key or key_file, not both".to_owned()));
            }
        };
        repnet_protocol::check_licence_key(&key)
            .map_err(|message| invalid(format!("key: {message}")))?;
        Ok(key)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            key: "upstream",
            message,
        };
        match reqwest::Url::parse(&self.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            _ => {
                return Err(invalid(format!(
                    "url {:?} is not an http:// or https:// URL (e.g. https://global.example:8443)",
                    self.url
                )));
            }
        }
        if self.interval_seconds == 0 {
            return Err(invalid("interval_seconds must be at least 1".to_owned()));
        }
        if !(1..=1_000_000).contains(&self.page_size) {
            return Err(invalid(format!(
                "page_size must be from 1 to 1000000; got {}",
                self.page_size
            )));
        }
        if self.progress_timeout_seconds == 0 {
            return Err(invalid(
                "progress_timeout_seconds must be at least 1".to_owned(),
            ));
        }
        self.licence_key().map(|_| ())
    }
}

/// What a server is to its network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Serves the network's clients; feeds and statistics make its knowledge.
    #[default]
    Global,
    /// An organisation's own server: answers its devices, pulls the global knowledge base,
    /// sends nothing outside.
    Private,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Global => "global",
            Role::Private => "private",
        }
    }
}

/// A feed the server refreshes on a schedule, from a URL or a local file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// The feed's name: its records are stored as `feed:<name>`.
    pub name: String,
    /// The feed's format (`urlhaus`, …), or `auto`.
    #[serde(default = "FeedConfig::default_format")]
    pub format: String,
    /// An `http://` or `https://` URL to download it from (with a conditional GET)…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// …or a local file to read when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Seconds between refreshes.
    #[serde(default = "FeedConfig::default_interval")]
    pub interval_seconds: u64,
    /// Overrides the format's verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// Overrides the feed's threat names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threat: Option<String>,
    /// Categories added to every entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// Overrides the format's confidence, 0-100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<i64>,
    /// Tranco: how many of the top domains to take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top: Option<u64>,
    /// Only add; never retract what the feed stops listing.
    #[serde(default)]
    pub incremental: bool,
    /// Let a download without a single row retract everything the feed had (refused by
    /// default: an empty file is more often a failed download).
    #[serde(default)]
    pub allow_empty: bool,
    /// HTTP headers sent with every download (`Auth-Key`, `Authorization`, …), for feeds
    /// that need a key.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub headers: std::collections::BTreeMap<String, String>,
}

impl FeedConfig {
    fn default_format() -> String {
        "auto".to_owned()
    }

    fn default_interval() -> u64 {
        3600
    }

    /// Where the feed comes from, for messages.
    pub fn location(&self) -> String {
        match (&self.url, &self.path) {
            (Some(url), _) => url.clone(),
            (None, Some(path)) => path.display().to_string(),
            (None, None) => String::new(),
        }
    }

    /// The import's format and options, checked.
    pub fn import_options(
        &self,
        temp_dir: &Path,
    ) -> Result<(repnet_feeds::Format, repnet_feeds::FeedOptions), FeedConfigError> {
        let format = repnet_feeds::Format::parse(&self.format)
            .ok_or_else(|| FeedConfigError::Format(self.format.clone()))?;
        let mut options =
            repnet_feeds::FeedOptions::new(repnet_store::now(), temp_dir.to_path_buf());
        options.apply(&repnet_feeds::Settings {
            source: Some(&self.name),
            verdict: self.verdict.as_deref(),
            threat: self.threat.as_deref(),
            categories: self.categories.iter().map(String::as_str).collect(),
            confidence: self.confidence,
        })?;
        if let Some(top) = self.top {
            options.top = top;
        }
        options.incremental = self.incremental;
        options.allow_empty = self.allow_empty;
        Ok((format, options))
    }

    fn validate(&self) -> Result<(), FeedConfigError> {
        self.import_options(Path::new("."))?;
        match (&self.url, &self.path) {
            (Some(_), Some(_)) | (None, None) => return Err(FeedConfigError::Location),
            (Some(url), None) => {
                let lower = url.to_ascii_lowercase();
                if !(lower.starts_with("http://") || lower.starts_with("https://")) {
                    return Err(FeedConfigError::Url(url.clone()));
                }
            }
            (None, Some(_)) => {
                if !self.headers.is_empty() {
                    return Err(FeedConfigError::HeadersWithPath);
                }
            }
        }
        for (name, value) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(FeedConfigError::HeaderName(name.clone()));
            }
            if reqwest::header::HeaderValue::from_str(value).is_err() {
                return Err(FeedConfigError::HeaderValue(name.clone()));
            }
        }
        if self.interval_seconds == 0 {
            return Err(FeedConfigError::Interval);
        }
        Ok(())
    }
}

/// A `[[feeds]]` entry that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedConfigError {
    #[error("format: unknown format {0:?}")]
    Format(String),
    #[error(transparent)]
    Setting(#[from] repnet_feeds::SettingError),
    #[error("give either url or path")]
    Location,
    #[error("url {0:?} is not an http:// or https:// URL")]
    Url(String),
    #[error("headers are for downloads: give them with url, not path")]
    HeadersWithPath,
    #[error("headers: {0:?} is not an HTTP header name")]
    HeaderName(String),
    #[error("headers: the value of {0:?} is not a valid header value (printable ASCII)")]
    HeaderValue(String),
    #[error("interval_seconds must be at least 1")]
    Interval,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data: PathBuf::from("./repnet-data"),
            store: None,
            cluster: ClusterConfig::default(),
            admin_token_file: None,
            ttl_seconds: 3600,
            unknown_ttl_seconds: 300,
            max_batch_items: MAX_BATCH_ITEMS,
            max_body_bytes: 4 << 20,
            shutdown_grace_seconds: 10,
            worker_threads: 0,
            max_import_bytes: 16 << 30,
            max_decompressed_bytes: 256 << 30,
            max_expansion_ratio: 200,
            feeds: Vec::new(),
            role: Role::Global,
            require_key: false,
            key_requests_per_second: 0,
            key_burst: 0,
            change_log_max: 1_000_000,
            upstream: None,
            tls_cert: None,
            tls_key: None,
            bundle_public_key: None,
            statement_version: 1,
            statement_file: None,
            statistics_retention_days: 180,
            device_secret_rotation_days: 30,
            max_statistics_events: 1000,
            install_batches_per_minute: 60,
            installation_difficulty: 24,
            enrolments_per_address_per_hour: 10,
            enrolments_per_key_per_hour: 1000,
            engine: crate::engine::EngineConfig::default(),
            max_replication_streams: 32,
            max_replication_streams_per_key: 4,
            access_log: false,
            connections: repnet_http::Limits::default(),
        }
    }
}

/// A configuration that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting {key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error(transparent)]
    AdminToken(#[from] repnet_http::admin::AdminTokenError),
}

pub use repnet_http::admin::{AdminToken, MIN_ADMIN_TOKEN_CHARS};

impl ServerConfig {
    /// Reads a TOML config file. Unknown keys are errors: a typo must not silently fall back
    /// to a default.
    pub fn from_file(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: error.to_string().trim().replace('\n', " "),
        })
    }

    /// Checks the settings that types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_batch_items == 0 || self.max_batch_items > MAX_BATCH_ITEMS {
            return Err(ConfigError::Invalid {
                key: "max_batch_items",
                message: format!(
                    "must be from 1 to {MAX_BATCH_ITEMS}; got {}",
                    self.max_batch_items
                ),
            });
        }
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid {
                key: "max_body_bytes",
                message: format!("must be at least 1024; got {}", self.max_body_bytes),
            });
        }
        if self.max_replication_streams == 0 || self.max_replication_streams_per_key == 0 {
            return Err(ConfigError::Invalid {
                key: "max_replication_streams",
                message:
                    "max_replication_streams and max_replication_streams_per_key must be at least 1"
                        .to_owned(),
            });
        }
        self.connections
            .validate()
            .map_err(|message| ConfigError::Invalid {
                key: "connections",
                message: message.to_string(),
            })?;
        if self.connections.max_buffered_body_bytes < self.max_body_bytes as u64 {
            return Err(ConfigError::Invalid {
                key: "connections",
                message: format!(
                    "connections.max_buffered_body_bytes ({}) must be at least max_body_bytes ({})",
                    self.connections.max_buffered_body_bytes, self.max_body_bytes
                ),
            });
        }
        if self.installation_difficulty > repnet_protocol::installation::MAX_DIFFICULTY {
            return Err(ConfigError::Invalid {
                key: "installation_difficulty",
                message: format!(
                    "must be from 0 to {}; got {}",
                    repnet_protocol::installation::MAX_DIFFICULTY,
                    self.installation_difficulty
                ),
            });
        }
        if self.max_expansion_ratio < 2 {
            return Err(ConfigError::Invalid {
                key: "max_expansion_ratio",
                message: format!(
                    "must be at least 2 (feeds compress 2 to 20 times); got {}",
                    self.max_expansion_ratio
                ),
            });
        }
        if self.max_decompressed_bytes < 1 << 20 {
            return Err(ConfigError::Invalid {
                key: "max_decompressed_bytes",
                message: format!(
                    "must be at least 1048576 (1 MiB); got {}",
                    self.max_decompressed_bytes
                ),
            });
        }
        if self.worker_threads > 1024 {
            return Err(ConfigError::Invalid {
                key: "worker_threads",
                message: format!(
                    "must be from 0 (one per CPU core) to 1024; got {}",
                    self.worker_threads
                ),
            });
        }
        if self.ttl_seconds == 0 || self.unknown_ttl_seconds == 0 {
            return Err(ConfigError::Invalid {
                key: "ttl_seconds",
                message: "ttl_seconds and unknown_ttl_seconds must be at least 1".to_owned(),
            });
        }
        if let Some(upstream) = &self.upstream {
            upstream.validate()?;
        }
        if let Some(store) = &self.store {
            cluster_nodes(store).map_err(|message| ConfigError::Invalid {
                key: "store",
                message,
            })?;
        }
        if self.cluster.namespace.is_empty()
            || !self
                .cluster
                .namespace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(ConfigError::Invalid {
                key: "cluster.namespace",
                message: format!(
                    "must be letters, digits, '-', '_' or '.'; got {:?}",
                    self.cluster.namespace
                ),
            });
        }
        if !(10..=60_000).contains(&self.cluster.timeout_ms) {
            return Err(ConfigError::Invalid {
                key: "cluster.timeout_ms",
                message: format!("must be from 10 to 60000; got {}", self.cluster.timeout_ms),
            });
        }
        self.engine
            .validate()
            .map_err(|message| ConfigError::Invalid {
                key: "engine",
                message: message.to_string(),
            })?;
        if self.statement_version == 0 {
            return Err(ConfigError::Invalid {
                key: "statement_version",
                message: "must be at least 1".to_owned(),
            });
        }
        if self.device_secret_rotation_days == 0 {
            return Err(ConfigError::Invalid {
                key: "device_secret_rotation_days",
                message: "must be at least 1".to_owned(),
            });
        }
        if !(1..=10_000).contains(&self.max_statistics_events) {
            return Err(ConfigError::Invalid {
                key: "max_statistics_events",
                message: format!(
                    "must be from 1 to 10000; got {}",
                    self.max_statistics_events
                ),
            });
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid {
                key: "tls_cert",
                message: "give tls_cert and tls_key together (a PEM certificate chain and its private key)".to_owned(),
            });
        }
        let mut names = std::collections::HashSet::new();
        for (index, feed) in self.feeds.iter().enumerate() {
            let invalid = |message: String| ConfigError::Invalid {
                key: "feeds",
                message: format!("feed {} ({:?}): {message}", index + 1, feed.name),
            };
            feed.validate()
                .map_err(|error| invalid(error.to_string()))?;
            if !names.insert(feed.name.as_str()) {
                return Err(invalid("another feed has the same name".to_owned()));
            }
        }
        Ok(())
    }

    /// Whether lookups need a licence key.
    pub fn key_required(&self) -> bool {
        self.role == Role::Private || self.require_key
    }

    pub fn ttl_policy(&self) -> TtlPolicy {
        TtlPolicy {
            known: self.ttl_seconds,
            unknown: self.unknown_ttl_seconds,
        }
    }

    /// The configuration as TOML, for `--print-config`.
    /// The configuration as TOML, for `--print-config` (and so `repnet.example.toml`):
    /// every setting with its value, the optional ones that are not set as commented-out
    /// examples ([`UNSET_EXAMPLES`]), secrets masked ([`repnet_runtime::HIDDEN_SECRET`]: an
    /// upstream's licence key, a feed's header values).
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        if let Some(upstream) = &mut shown.upstream
            && upstream.key.is_some()
        {
            upstream.key = Some(repnet_runtime::HIDDEN_SECRET.to_owned());
        }
        for feed in &mut shown.feeds {
            for value in feed.headers.values_mut() {
                *value = repnet_runtime::HIDDEN_SECRET.to_owned();
            }
        }
        let text = match toml::to_string(&shown) {
            Ok(text) => text,
            Err(error) => return format!("# cannot print the configuration: {error}\n"),
        };
        let unset: Vec<&(&str, &str)> = UNSET_EXAMPLES
            .iter()
            .filter(|(key, _)| !shown.is_set(key))
            .collect();
        if unset.is_empty() {
            return text;
        }
        // Top-level keys go before the first table, where TOML reads them as top-level.
        let tables = text.find("\n[").map_or(text.len(), |position| position + 1);
        let mut out = String::with_capacity(text.len() + 1024);
        out.push_str(&text[..tables]);
        out.push_str("# Not set (docs/configuration.md):\n");
        for (key, example) in &unset {
            out.push_str(&format!("# {key} = {example}\n"));
        }
        out.push('\n');
        out.push_str(&text[tables..]);
        if shown.upstream.is_none() {
            // The `[upstream]` table with its defaults, from the code.
            let mut example = UpstreamConfig::new("https://global.example");
            example.key_file = Some(PathBuf::from("/etc/repnet/upstream.key"));
            example.ca_file = Some(PathBuf::from("/etc/repnet/upstream-ca.pem"));
            if let Ok(table) = toml::to_string(&example) {
                out.push_str("\n# [upstream]\n");
                for line in table.lines() {
                    out.push_str(&format!("# {line}\n"));
                }
            }
        }
        out
    }

    /// Whether the optional setting `key` of [`UNSET_EXAMPLES`] has a value.
    fn is_set(&self, key: &str) -> bool {
        match key {
            "store" => self.store.is_some(),
            "admin_token_file" => self.admin_token_file.is_some(),
            "tls_cert" => self.tls_cert.is_some(),
            "tls_key" => self.tls_key.is_some(),
            "bundle_public_key" => self.bundle_public_key.is_some(),
            "statement_file" => self.statement_file.is_some(),
            _ => true,
        }
    }
}

/// The optional top-level settings, with an example value each: what `--print-config`
/// prints, commented out, for those that are not set (the `[upstream]` table too, from
/// [`UpstreamConfig::new`]).
pub const UNSET_EXAMPLES: &[(&str, &str)] = &[
    ("store", "\"redis://10.0.0.1:6379,10.0.0.2:6379\""),
    ("admin_token_file", "\"/etc/repnet/admin-token\""),
    ("tls_cert", "\"/etc/repnet/cert.pem\""),
    ("tls_key", "\"/etc/repnet/key.pem\""),
    ("bundle_public_key", "\"/etc/repnet/bundle.pub\""),
    ("statement_file", "\"/etc/repnet/statement.txt\""),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// What `--print-config` prints, commented parts uncommented, is a valid configuration
    /// with every optional setting set: the examples are right, and none is forgotten.
    #[test]
    fn the_printed_examples_of_unset_settings_are_valid_settings() {
        let printed = ServerConfig::default().to_toml();
        let uncommented: String = printed
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest) if rest.contains(" = ") || rest.starts_with('[') => rest,
                _ => line,
            })
            .map(|line| format!("{line}\n"))
            .collect();
        let config: ServerConfig =
            toml::from_str(&uncommented).unwrap_or_else(|error| panic!("{error}\n{uncommented}"));
        for (key, _) in UNSET_EXAMPLES {
            assert!(config.is_set(key), "{key} is not set by:\n{uncommented}");
        }
        let upstream = config.upstream.unwrap();
        assert_eq!(upstream.url, "https://global.example");
        assert_eq!(
            upstream.interval_seconds,
            UpstreamConfig::new("x").interval_seconds
        );
        // And nothing optional is printed as unset when it is set.
        assert!(!config_with_everything().to_toml().contains("# Not set"));
    }

    fn config_with_everything() -> ServerConfig {
        let mut upstream = UpstreamConfig::new("https://global.example");
        upstream.key = Some("SECRET-ORGANISATION-KEY".to_owned());
        let path = Some(PathBuf::from("/x"));
        ServerConfig {
            store: Some("redis://127.0.0.1:1".to_owned()),
            admin_token_file: path.clone(),
            tls_cert: path.clone(),
            tls_key: path.clone(),
            bundle_public_key: path.clone(),
            statement_file: path,
            upstream: Some(upstream),
            ..ServerConfig::default()
        }
    }

    #[test]
    fn secrets_are_masked_when_printed() {
        let mut config = config_with_everything();
        let mut feed = FeedConfig {
            name: "corp".to_owned(),
            url: Some("https://feeds.example/x.csv".to_owned()),
            ..toml::from_str("name = \"corp\"").unwrap()
        };
        feed.headers
            .insert("Authorization".to_owned(), "Bearer FEED-SECRET".to_owned());
        config.feeds.push(feed);
        let printed = config.to_toml();
        assert!(!printed.contains("SECRET-ORGANISATION-KEY"), "{printed}");
        assert!(!printed.contains("FEED-SECRET"), "{printed}");
        assert!(printed.contains(repnet_runtime::HIDDEN_SECRET), "{printed}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repnet.toml");
        std::fs::write(&path, "listne = \"127.0.0.1:1\"\n").unwrap();
        let error = ServerConfig::from_file(&path).unwrap_err().to_string();
        assert!(error.contains("unknown field `listne`"), "{error}");
    }

    #[test]
    fn a_partial_file_keeps_defaults_for_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repnet.toml");
        std::fs::write(&path, "ttl_seconds = 60\n").unwrap();
        let config = ServerConfig::from_file(&path).unwrap();
        assert_eq!(config.ttl_seconds, 60);
        assert_eq!(config.listen, ServerConfig::default().listen);
        // What --print-config prints reads back to the same configuration.
        let printed = config.to_toml();
        std::fs::write(&path, &printed).unwrap();
        assert_eq!(ServerConfig::from_file(&path).unwrap(), config);
    }

    #[test]
    fn feeds_are_tables_that_print_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repnet.toml");
        std::fs::write(
            &path,
            "ttl_seconds = 60\n\n[[feeds]]\nname = \"urlhaus\"\nformat = \"urlhaus\"\nurl = \"https://urlhaus.abuse.ch/downloads/csv/\"\n\n[[feeds]]\nname = \"corp\"\nformat = \"domainlist\"\npath = \"/srv/corp.txt\"\ninterval_seconds = 600\ncategories = [\"malware\"]\n",
        )
        .unwrap();
        let config = ServerConfig::from_file(&path).unwrap();
        config.validate().unwrap();
        assert_eq!(config.feeds.len(), 2);
        assert_eq!(config.feeds[0].interval_seconds, 3600);
        assert_eq!(
            config.feeds[1].path.as_deref(),
            Some(Path::new("/srv/corp.txt"))
        );
        std::fs::write(&path, config.to_toml()).unwrap();
        assert_eq!(ServerConfig::from_file(&path).unwrap(), config);
        // A typo inside a feed is caught like one outside.
        std::fs::write(
            &path,
            "[[feeds]]\nname = \"x\"\nurll = \"https://x.example/\"\n",
        )
        .unwrap();
        let error = ServerConfig::from_file(&path).unwrap_err().to_string();
        assert!(error.contains("unknown field `urll`"), "{error}");
    }

    #[test]
    fn a_cluster_store_names_its_nodes() {
        assert_eq!(
            cluster_nodes("redis://127.0.0.1:7000,127.0.0.1:7001").unwrap(),
            ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]
        );
        assert_eq!(
            cluster_nodes("redis://a.example:7000, redis://[::1]:7001").unwrap(),
            ["redis://a.example:7000", "redis://[::1]:7001"]
        );
        for (store, says) in [
            ("127.0.0.1:7000", "not a store"),
            ("rediss://h:1", "TLS"),
            ("redis://h", "no port"),
            ("redis://h:0", "port must be"),
            ("redis://user:pw@h:1", "not host:port"),
            ("redis://h:1,", "no port"),
        ] {
            let error = cluster_nodes(store).unwrap_err();
            assert!(error.contains(says), "{store}: {error}");
        }
    }

    #[test]
    fn validation_names_the_key() {
        let config = ServerConfig {
            max_batch_items: 20_000,
            ..ServerConfig::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("max_batch_items")
        );
    }
}
