//! `repnet serve`: configuration from file, environment and flags; logging; the server's life.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use repnet_server::{AdminToken, Role, Server, ServerConfig, UpstreamConfig};
use repnet_store::{Store, StoreOptions};

use crate::Outcome;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// TOML configuration file (see docs/configuration.md); environment and flags override it.
    #[arg(long, env = "REPNET_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "REPNET_LISTEN", value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Directory of the embedded knowledge base [default: ./repnet-data]; with --store, of
    /// this node's temporary files.
    #[arg(long, env = "REPNET_DATA", value_name = "DIR")]
    data: Option<PathBuf>,
    /// Keep the knowledge base in a Redis Cluster instead of the data directory:
    /// redis://host:port[,host:port…] (some of its nodes). Any number of nodes can serve it.
    #[arg(long, env = "REPNET_STORE", value_name = "redis://HOST:PORT[,…]")]
    store: Option<String>,
    /// File holding the admin token; enables the admin API. The token can also be given in
    /// the REPNET_ADMIN_TOKEN environment variable (never on the command line).
    #[arg(long, env = "REPNET_ADMIN_TOKEN_FILE", value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// Seconds clients may cache an answer with a known verdict [default: 3600].
    #[arg(long, env = "REPNET_TTL_SECONDS", value_name = "SECONDS")]
    ttl_seconds: Option<u32>,
    /// Seconds clients may cache an `unknown` answer [default: 300].
    #[arg(long, env = "REPNET_UNKNOWN_TTL_SECONDS", value_name = "SECONDS")]
    unknown_ttl_seconds: Option<u32>,
    /// Most items in one batch lookup, at most 10000 [default: 10000].
    #[arg(long, env = "REPNET_MAX_BATCH_ITEMS", value_name = "N")]
    max_batch_items: Option<usize>,
    /// Largest request body, in bytes [default: 4194304].
    #[arg(long, env = "REPNET_MAX_BODY_BYTES", value_name = "BYTES")]
    max_body_bytes: Option<usize>,
    /// Seconds in-flight requests get to finish at shutdown [default: 10].
    #[arg(long, env = "REPNET_SHUTDOWN_GRACE_SECONDS", value_name = "SECONDS")]
    shutdown_grace_seconds: Option<u64>,
    /// Threads serving requests; 0 for one per CPU core [default: 0].
    #[arg(long, env = "REPNET_WORKER_THREADS", value_name = "N")]
    worker_threads: Option<usize>,
    /// `global` serves everyone; `private` requires a licence key on every request and only
    /// pulls from its upstream [default: global].
    #[arg(long, env = "REPNET_ROLE", value_enum, value_name = "ROLE")]
    role: Option<RoleArg>,
    /// On a global server, require a licence key on lookups too.
    #[arg(long, env = "REPNET_REQUIRE_KEY")]
    require_key: bool,
    /// Pull the knowledge base from this server (https://…).
    #[arg(long, env = "REPNET_UPSTREAM", value_name = "URL")]
    upstream: Option<String>,
    /// The licence key registered upstream (prefer --upstream-key-file: command lines are
    /// visible to other users).
    #[arg(
        long,
        env = "REPNET_UPSTREAM_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    upstream_key: Option<String>,
    /// File holding the licence key registered upstream.
    #[arg(long, env = "REPNET_UPSTREAM_KEY_FILE", value_name = "FILE")]
    upstream_key_file: Option<PathBuf>,
    /// CA certificates (PEM) to trust for the upstream's HTTPS, besides the system's.
    #[arg(long, env = "REPNET_UPSTREAM_CA", value_name = "FILE")]
    upstream_ca: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, env = "REPNET_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "REPNET_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// The public key (`repnet bundle keygen`'s .pub) that uploaded bundles must be signed with.
    #[arg(long, env = "REPNET_BUNDLE_PUBLIC_KEY", value_name = "FILE")]
    bundle_public_key: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Log filter, in tracing's syntax (`info`, `repnet_server=debug`, …).
    #[arg(
        long,
        env = "REPNET_LOG",
        default_value = "info",
        value_name = "FILTER"
    )]
    log: String,
    /// Log format.
    #[arg(long, env = "REPNET_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RoleArg {
    Global,
    Private,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// Where the admin token came from, for `--print-config` and the startup log.
enum TokenSource {
    File(PathBuf),
    Environment,
    None,
}

impl ServeArgs {
    /// The configuration file, overridden by environment and flags (clap has already given
    /// flags precedence over the environment).
    fn effective_config(&self) -> anyhow::Result<ServerConfig> {
        let mut config = match &self.config {
            Some(path) => ServerConfig::from_file(path)?,
            None => ServerConfig::default(),
        };
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(data) = &self.data {
            config.data = data.clone();
        }
        if let Some(store) = &self.store {
            config.store = Some(store.clone());
        }
        if let Some(file) = &self.admin_token_file {
            config.admin_token_file = Some(file.clone());
        }
        if let Some(ttl) = self.ttl_seconds {
            config.ttl_seconds = ttl;
        }
        if let Some(ttl) = self.unknown_ttl_seconds {
            config.unknown_ttl_seconds = ttl;
        }
        if let Some(items) = self.max_batch_items {
            config.max_batch_items = items;
        }
        if let Some(bytes) = self.max_body_bytes {
            config.max_body_bytes = bytes;
        }
        if let Some(seconds) = self.shutdown_grace_seconds {
            config.shutdown_grace_seconds = seconds;
        }
        if let Some(threads) = self.worker_threads {
            config.worker_threads = threads;
        }
        if let Some(role) = self.role {
            config.role = match role {
                RoleArg::Global => Role::Global,
                RoleArg::Private => Role::Private,
            };
        }
        if self.require_key {
            config.require_key = true;
        }
        if let Some(url) = &self.upstream {
            let mut upstream = config
                .upstream
                .take()
                .unwrap_or_else(|| UpstreamConfig::new(url));
            upstream.url = url.clone();
            config.upstream = Some(upstream);
        }
        if self.upstream_key.is_some()
            || self.upstream_key_file.is_some()
            || self.upstream_ca.is_some()
        {
            let upstream = config.upstream.as_mut().context(
                "--upstream-key, --upstream-key-file and --upstream-ca go with --upstream URL (or [upstream] in the configuration)",
            )?;
            if self.upstream_key.is_some() || self.upstream_key_file.is_some() {
                upstream.key = self.upstream_key.clone();
                upstream.key_file = self.upstream_key_file.clone();
            }
            if let Some(ca) = &self.upstream_ca {
                upstream.ca_file = Some(ca.clone());
            }
        }
        if let Some(cert) = &self.tls_cert {
            config.tls_cert = Some(cert.clone());
        }
        if let Some(key) = &self.tls_key {
            config.tls_key = Some(key.clone());
        }
        if let Some(key) = &self.bundle_public_key {
            config.bundle_public_key = Some(key.clone());
        }
        config.validate()?;
        Ok(config)
    }

    /// A token file named by a flag or `REPNET_ADMIN_TOKEN_FILE` wins; then the
    /// `REPNET_ADMIN_TOKEN` variable; then the config file's `admin_token_file`.
    fn admin_token(
        &self,
        config: &ServerConfig,
    ) -> anyhow::Result<(Option<AdminToken>, TokenSource)> {
        if let Some(path) = &self.admin_token_file {
            return Ok((
                Some(AdminToken::from_file(path)?),
                TokenSource::File(path.clone()),
            ));
        }
        if let Some(token) = std::env::var_os("REPNET_ADMIN_TOKEN") {
            let token = token
                .into_string()
                .map_err(|_| anyhow::anyhow!("REPNET_ADMIN_TOKEN is not valid UTF-8"))?;
            return Ok((Some(AdminToken::new(&token)?), TokenSource::Environment));
        }
        if let Some(path) = &config.admin_token_file {
            return Ok((
                Some(AdminToken::from_file(path)?),
                TokenSource::File(path.clone()),
            ));
        }
        Ok((None, TokenSource::None))
    }
}

fn init_logging(args: &ServeArgs) -> anyhow::Result<()> {
    start_logging(&args.log, args.log_format == LogFormat::Json)
}

/// Logs to stderr with a `tracing` filter, as text or JSON lines.
pub(crate) fn start_logging(filter: &str, json: bool) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).with_context(|| {
        format!("invalid log filter {filter:?} (try `info` or `repnet_server=debug`)")
    })?;
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|error| anyhow::anyhow!("cannot set up logging: {error}"))
}

/// Prints a configuration for `--print-config`. The server and the proxy ignore SIGPIPE
/// (a log reader that goes away must not stop them), so a reader that stops early
/// (`| head`) is a write error here: the end of the output, not a failure.
pub(crate) fn print_config(text: &str) -> anyhow::Result<Outcome> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::anyhow!("cannot print the configuration: {error}"))
        }
        _ => Ok(Outcome::Clean),
    }
}

/// `repnet serve`: reads the configuration, then runs the server on a runtime of the
/// configured size.
pub(crate) fn main(args: ServeArgs) -> anyhow::Result<Outcome> {
    let config = args.effective_config()?;
    let (admin_token, token_source) = args.admin_token(&config)?;
    if args.print_config {
        let token = match token_source {
            TokenSource::File(path) => {
                format!("# admin API enabled, token from {}\n", path.display())
            }
            TokenSource::Environment => {
                "# admin API enabled, token from REPNET_ADMIN_TOKEN\n".to_owned()
            }
            TokenSource::None => "# admin API disabled: no admin token\n".to_owned(),
        };
        return print_config(&format!("{}\n{token}", config.to_toml()));
    }
    init_logging(&args)?;
    let runtime = crate::runtime(config.worker_threads)?;
    let result = runtime.block_on(run(config, admin_token));
    // The server has stopped and cancelled its imports; work that has not noticed yet (an
    // import between two reads) does not hold the exit: its transaction is never committed.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

async fn run(config: ServerConfig, admin_token: Option<AdminToken>) -> anyhow::Result<Outcome> {
    let store_options = StoreOptions {
        change_log_max: config.change_log_max,
        ..StoreOptions::default()
    };
    let store = open_store(&config, &store_options).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: is another server using it? choose another with --listen",
                config.listen
            )
        })?;
    let address = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let stats = store.stats().await?;
    let admin_enabled = admin_token.is_some();
    // Ready to handle SIGTERM before anyone can know the address to send it after.
    let shutdown = shutdown_signal()?;
    let server = Server::new(store, &config, admin_token).await?;
    let reloader = server.reloader();
    on_hangup(move || reloader.reload())?;
    tracing::info!(
        address = %format!("{}://{address}", server.scheme()),
        upstream = config.upstream.as_ref().map(|upstream| upstream.url.as_str()),
        data = %config.data.display(),
        store = config.store.as_deref().unwrap_or("embedded"),
        role = config.role.as_str(),
        key_required = config.key_required(),
        keys = stats.keys,
        admin_api = admin_enabled,
        feeds = config.feeds.len(),
        "repnet serve is listening"
    );
    server
        .run(listener, shutdown)
        .await
        .context("the server stopped with an error")?;
    tracing::info!("repnet serve stopped");
    Ok(Outcome::Clean)
}

/// The embedded store in the data directory, or the Redis Cluster `store` names.
async fn open_store(config: &ServerConfig, options: &StoreOptions) -> anyhow::Result<Store> {
    let Some(store) = &config.store else {
        return Store::open(&config.data, options).with_context(|| {
            format!(
                "cannot open the knowledge base in {}",
                config.data.display()
            )
        });
    };
    let nodes = repnet_server::cluster_nodes(store).map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&config.data).with_context(|| {
        format!(
            "cannot create {} for this node's temporary files",
            config.data.display()
        )
    })?;
    let cluster = repnet_store::ClusterOptions {
        nodes,
        namespace: config.cluster.namespace.clone(),
        scratch: config.data.clone(),
        timeout: std::time::Duration::from_millis(config.cluster.timeout_ms),
        replicas: config.cluster.replicas,
    };
    Store::connect_cluster(&cluster, options)
        .await
        .with_context(|| {
            format!(
                "cannot reach the Redis Cluster at {store} (is it running, and are these its nodes' addresses?)"
            )
        })
}

/// Calls `reload` on every SIGHUP, from now on: reading key files and certificates again,
/// rather than stopping (the default action, exit 129).
pub(crate) fn on_hangup(reload: impl Fn() + Send + 'static) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("received SIGHUP: reading key files and TLS certificates again");
                reload();
            }
        });
    }
    #[cfg(not(unix))]
    let _ = reload;
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed when this is called,
/// not when the future is first polled.
pub(crate) fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("received SIGINT"),
                _ = terminate.recv() => tracing::info!("received SIGTERM"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::info!("received Ctrl-C");
            } else {
                std::future::pending::<()>().await;
            }
        })
    }
}
