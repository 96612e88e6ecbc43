//! `repnet`: the reputation server, its client, and the tools around them, in one binary.
//!
//! Exit codes (documented in docs/cli.md): 1 something untrusted was found (whatever else
//! happened), else 2 something could not be checked or an error (with a message on stderr
//! saying what to do), else 0.

mod admin;
mod backup;
mod bundle;
mod caches;
mod config;
mod connect;
mod export;
mod hashing;
mod import;
mod lookup;
mod participation;
mod proxy;
mod report;
mod scan;
mod serve;
mod url;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "repnet",
    version,
    about = "A self-hostable reputation network for endpoint security",
    long_about = "A self-hostable reputation network for endpoint security: a knowledge base about files, domains, IP addresses and certificates that endpoint products query in milliseconds.\n\nStart a server with `repnet serve`, then ask it with `repnet lookup`."
)]
struct Cli {
    /// The client configuration file (participation, accepted statement, install id; the
    /// queue and the cache live beside it) [default: $XDG_CONFIG_HOME/repnet/client.toml].
    #[arg(long, global = true, env = "REPNET_CLIENT_CONFIG", value_name = "FILE")]
    client_config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the reputation server on its embedded knowledge base.
    Serve(serve::ServeArgs),
    /// Run the fleet gateway: the lookup API for managed devices, cached, toward one upstream.
    Proxy(proxy::ProxyArgs),
    /// Look up files, hashes, URLs, domains and IP addresses (exit 1 if any is untrusted).
    Lookup(lookup::LookupArgs),
    /// Scan files and folders: hash in parallel, look up in batches (exit 1 if any is untrusted).
    Scan(scan::ScanArgs),
    /// Load a feed into a knowledge base.
    Import(import::ImportArgs),
    /// Write what the knowledge base blocks for enforcement points: an RPZ zone, a domain
    /// list, a hosts file, Suricata datasets, a STIX bundle.
    Export(export::ExportArgs),
    /// Show how a URL is canonicalised and matched.
    #[command(subcommand)]
    Url(url::UrlCommand),
    /// Administer a running server: licence keys, status.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Offline bundles for air-gapped networks: keys, export, import.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// What this client shares: show it, or change it (off, basic, extended).
    #[command(subcommand)]
    Participation(participation::ParticipationCommand),
    /// Print the server's participation statement; --accept records that you accept it.
    Statement {
        #[command(flatten)]
        connection: connect::ServerArgs,
        /// Accept this version of the statement.
        #[arg(long)]
        accept: bool,
    },
    /// Report a wrong verdict on a file (hashed here), a SHA-256, a URL, a domain or an IP
    /// address (extended participation).
    ReportFalsePositive {
        #[arg(value_name = "FILE|SHA256|URL|DOMAIN|IP")]
        target: String,
        /// Why the verdict is wrong (e-mail and IP addresses are removed before sending).
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
        #[command(flatten)]
        connection: connect::ServerArgs,
    },
    /// The client configuration: the server, licence key and CA every client command uses.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Check that a server or proxy is up and ready (GET /readyz): exit 0 if it is, 1 if not
    /// — for container health checks, service managers and scripts.
    Health {
        #[command(flatten)]
        connection: connect::ServerArgs,
    },
    /// Print shell completions for SHELL (bash, zsh, fish, elvish, powershell) to install.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) of repnet; `--dir DIR` writes one per command there.
    Man {
        /// Write `repnet.1` and `repnet-<command>.1` for every command into this directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
}

/// What a command ended with, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Everything was checked and nothing failed (exit 0).
    Clean,
    /// Something untrusted (or, with `--fail-on riskware`, riskware) was found (exit 1).
    UntrustedFound,
    /// Nothing failed, but something could not be checked: offline, unreadable, no such
    /// path, refused (exit 2).
    Incomplete,
    /// `repnet health`: the server is not ready, or does not answer (exit 1, which container
    /// health checks read as "unhealthy"; they reserve 2).
    Unhealthy,
}

impl Outcome {
    /// Found beats incomplete: a CI gate must fail on a tree that holds malware even when
    /// part of it could not be checked.
    fn of(found: bool, incomplete: bool) -> Outcome {
        match (found, incomplete) {
            (true, _) => Outcome::UntrustedFound,
            (false, true) => Outcome::Incomplete,
            (false, false) => Outcome::Clean,
        }
    }
}

/// `--fail-on`: the least bad verdict that makes `lookup` and `scan` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FailOn {
    Untrusted,
    Riskware,
}

impl FailOn {
    fn fails(self, verdict: repnet_protocol::Verdict) -> bool {
        use repnet_protocol::Verdict;
        match self {
            FailOn::Untrusted => verdict == Verdict::Untrusted,
            FailOn::Riskware => matches!(verdict, Verdict::Untrusted | Verdict::Riskware),
        }
    }
}

/// An async runtime with `worker_threads` threads (0: one per CPU core).
fn runtime(worker_threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if worker_threads > 0 {
        builder.worker_threads(worker_threads);
    }
    builder
        .enable_all()
        .build()
        .map_err(|error| anyhow::anyhow!("cannot start the async runtime: {error}"))
}

fn run(command: Command, client_config: Option<&Path>) -> anyhow::Result<Outcome> {
    let files = || config::ClientFiles::new(client_config);
    match command {
        // The server's runtime is sized by its configuration, read first.
        Command::Serve(args) => serve::main(args),
        Command::Proxy(args) => proxy::main(args),
        Command::Lookup(args) => runtime(0)?.block_on(lookup::run(args, &files()?)),
        Command::Scan(args) => runtime(0)?.block_on(scan::run(args, &files()?)),
        Command::Import(args) => runtime(0)?.block_on(import::run(args)),
        Command::Export(args) => {
            runtime(0)?.block_on(export::run(args, &files()?.load().unwrap_or_default()))
        }
        Command::Url(command) => url::run(command),
        Command::Admin(command) => runtime(0)?.block_on(admin::run(command, &files()?)),
        Command::Bundle(command) => runtime(0)?.block_on(bundle::run(command)),
        Command::Participation(command) => {
            runtime(0)?.block_on(participation::participation(&files()?, command))
        }
        Command::Statement { connection, accept } => {
            runtime(0)?.block_on(participation::statement(&files()?, &connection, accept))
        }
        Command::ReportFalsePositive {
            target,
            comment,
            connection,
        } => runtime(0)?.block_on(report::report_false_positive(
            &files()?,
            &connection,
            &target,
            comment,
        )),
        Command::Config(command) => config::config(&files()?, command),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "repnet", &mut std::io::stdout());
            Ok(Outcome::Clean)
        }
        Command::Man { dir } => man(dir.as_deref()),
        Command::Health { connection } => {
            runtime(1)?.block_on(health(&files()?.load().unwrap_or_default(), &connection))
        }
    }
}

/// `repnet health`: asks `/readyz`; says why when the answer is not "ready".
async fn health(
    config: &config::ClientConfig,
    connection: &connect::ServerArgs,
) -> anyhow::Result<Outcome> {
    let url = connection.url(config);
    match connection.client(config)?.ready().await {
        Ok(()) => {
            println!("{url}: ready");
            Ok(Outcome::Clean)
        }
        Err(error) => {
            eprintln!("repnet: {url} is not ready: {error}");
            Ok(Outcome::Unhealthy)
        }
    }
}

/// The manual: to standard output, or a page per command into `dir`.
fn man(dir: Option<&Path>) -> anyhow::Result<Outcome> {
    let command = <Cli as clap::CommandFactory>::command();
    match dir {
        None => clap_mangen::Man::new(command)
            .render(&mut std::io::stdout())
            .context("cannot write the manual page")?,
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
        }
    }
    Ok(Outcome::Clean)
}

/// The admin token: from `--admin-token-file`, else `REPNET_ADMIN_TOKEN`.
pub(crate) fn admin_token(file: Option<&Path>) -> anyhow::Result<String> {
    let token = match file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the admin token file {}", path.display()))?,
        None => std::env::var("REPNET_ADMIN_TOKEN").map_err(|_| {
            anyhow::anyhow!(
                "--server needs the admin token: pass --admin-token-file FILE or set REPNET_ADMIN_TOKEN"
            )
        })?,
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        anyhow::bail!("the admin token is empty");
    }
    Ok(token)
}

/// The error's whole chain on one line — "cannot open …: data directory … is in use …" —
/// leaving out a cause its message already says (errors that show their source too).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_) | Command::Proxy(_)) {
        // `repnet … | head` closes the pipe early: end quietly, as other command-line tools
        // do, rather than panic in `println!`. The server and the proxy keep ignoring
        // SIGPIPE: a log reader that goes away must not stop them.
        sigpipe::reset();
    }
    match run(cli.command, cli.client_config.as_deref()) {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::UntrustedFound | Outcome::Unhealthy) => ExitCode::from(1),
        Ok(Outcome::Incomplete) => ExitCode::from(2),
        Err(error) => {
            eprintln!("repnet: {}", one_line(&error));
            ExitCode::from(2)
        }
    }
}
