//! `repnet proxy`: the fleet gateway (docs/proxy.md).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use repnet_proxy::{Proxy, ProxyConfig};
use repnet_server::AdminToken;

use crate::Outcome;

#[derive(Debug, Args)]
pub(crate) struct ProxyArgs {
    /// TOML configuration file (docs/proxy.md); flags override it.
    #[arg(long, env = "REPNET_PROXY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// The reputation server to ask (https://…).
    #[arg(long, env = "REPNET_UPSTREAM", value_name = "URL")]
    upstream: Option<String>,
    /// The organisation's licence key upstream (prefer --upstream-key-file).
    #[arg(
        long,
        env = "REPNET_UPSTREAM_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    upstream_key: Option<String>,
    /// File holding the organisation's licence key upstream.
    #[arg(long, env = "REPNET_UPSTREAM_KEY_FILE", value_name = "FILE")]
    upstream_key_file: Option<PathBuf>,
    /// The name this proxy gives its upstream, which lists and manages proxies by it
    /// [default: the host's name].
    #[arg(long, env = "REPNET_PROXY_NAME", value_name = "NAME")]
    name: Option<String>,
    /// Where devices connect [default: 0.0.0.0:13111, every interface].
    #[arg(long, env = "REPNET_PROXY_LISTEN", value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Where runtime settings are kept [default: ./repnet-proxy-data].
    #[arg(long, env = "REPNET_PROXY_DATA", value_name = "DIR")]
    data: Option<PathBuf>,
    /// File holding the admin token; the token can also come from REPNET_ADMIN_TOKEN.
    #[arg(long, env = "REPNET_ADMIN_TOKEN_FILE", value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, env = "REPNET_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "REPNET_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Log filter, in tracing's syntax.
    #[arg(
        long,
        env = "REPNET_LOG",
        default_value = "info",
        value_name = "FILTER"
    )]
    log: String,
    /// Log format.
    #[arg(long, env = "REPNET_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: crate::serve::LogFormat,
}

pub(crate) fn main(args: ProxyArgs) -> anyhow::Result<Outcome> {
    let mut config = match &args.config {
        Some(path) => ProxyConfig::from_file(path)?,
        None => ProxyConfig::default(),
    };
    if let Some(upstream) = &args.upstream {
        config.settings.upstream = upstream.clone();
    }
    if args.upstream_key.is_some() || args.upstream_key_file.is_some() {
        config.upstream_key = args.upstream_key.clone();
        config.upstream_key_file = args.upstream_key_file.clone();
    }
    if let Some(name) = &args.name {
        config.name = Some(name.clone());
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(data) = &args.data {
        config.data = data.clone();
    }
    if let Some(file) = &args.admin_token_file {
        config.admin_token_file = Some(file.clone());
    }
    if let Some(cert) = &args.tls_cert {
        config.tls_cert = Some(cert.clone());
    }
    if let Some(key) = &args.tls_key {
        config.tls_key = Some(key.clone());
    }
    if args.print_config {
        return crate::serve::print_config(&config.to_toml());
    }
    let admin_token = match (
        &config.admin_token_file,
        std::env::var("REPNET_ADMIN_TOKEN"),
    ) {
        (Some(path), _) => Some(AdminToken::from_file(path)?),
        (None, Ok(token)) => Some(AdminToken::new(&token)?),
        (None, Err(_)) => None,
    };
    crate::serve::start_logging(&args.log, args.log_format == crate::serve::LogFormat::Json)?;
    crate::runtime(0)?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}: choose another with --listen", config.listen))?;
        let address = listener.local_addr()?;
        let shutdown = crate::serve::shutdown_signal()?;
        let upstream = config.settings.upstream.clone();
        let proxy = Proxy::new(config, admin_token).await?;
        let reloader = proxy.reloader();
        crate::serve::on_hangup(move || reloader.reload())?;
        let scheme = proxy.scheme();
        tracing::info!(address = %format!("{scheme}://{address}"), %upstream, "repnet proxy is listening");
        proxy.run(listener, shutdown).await.context("the proxy stopped with an error")?;
        tracing::info!("repnet proxy stopped");
        Ok(Outcome::Clean)
    })
}
