//! `repnet admin`: the admin API of a running server, from the command line.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use repnet_client::Client;
use repnet_protocol::{AddLicenceKey, LicenceKeyEntry};

use crate::Outcome;
use crate::config::{ClientConfig, ClientFiles};

#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// The licence keys of the organisations that may use this server.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// False-positive reports from participants, awaiting your decision.
    #[command(subcommand)]
    Review(ReviewCommand),
    /// A proxy's runtime settings: show them, or set one (kept across restarts).
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// The reputation engine's thresholds and progress.
    Engine {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Local verdicts: list them, set one (any object, with a comment and an expiry), delete
    /// one.
    #[command(subcommand)]
    Verdicts(VerdictsCommand),
    /// Scheduled feeds: their state, last success, last error and counts; refresh one now.
    #[command(subcommand)]
    Feeds(FeedsCommand),
    /// Back up a running server: its knowledge base (a consistent, compacted copy) and state
    /// files, into DIR (new or empty).
    Backup {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Restore a backup into a new or empty data directory (the server stopped, or not yet
    /// started there), and check that it opens.
    Restore {
        /// The directory `repnet admin backup` wrote.
        #[arg(value_name = "BACKUP")]
        backup: PathBuf,
        /// The data directory to restore into.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
    },
    /// A server's role, knowledge base, licence keys, change log and upstream; or a proxy's
    /// cache and upstream.
    Status {
        #[command(flatten)]
        server: ServerArgs,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Register a licence key (as issued to an organisation).
    Add {
        /// The key: 8 to 512 printable ASCII characters, no spaces.
        key: String,
        /// Who it is for.
        #[arg(long, value_name = "TEXT")]
        label: Option<String>,
        /// When it stops working: 2027-01-01 (midnight UTC) or 2027-01-01T00:00:00Z.
        #[arg(long, value_name = "DATE")]
        expires: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List every key ever registered: id, label, dates; never the keys themselves.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key, by its id (as listed) or by the key itself.
    Revoke {
        #[arg(value_name = "ID|KEY")]
        key: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum VerdictsCommand {
    /// Every local verdict: object, verdict, threat, expiry, comment.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set (or replace) the local verdict on an object: a file (hashed here: all three
    /// hashes), a hash, a URL, a domain, an IP address, or a certificate (`certificate:`).
    Set {
        #[arg(value_name = "OBJECT")]
        object: String,
        /// trusted, riskware or untrusted.
        #[arg(long, value_name = "VERDICT")]
        verdict: String,
        /// A threat name.
        #[arg(long, value_name = "NAME")]
        threat: Option<String>,
        /// Categories, comma-separated (malware, phishing, c2, …).
        #[arg(long, value_name = "C,…", value_delimiter = ',')]
        category: Vec<String>,
        /// Why (a ticket number, a note).
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
        /// When it lapses (within seconds of it): a date (2027-01-01), a time (RFC 3339) or a
        /// duration from now (90s, 90m, 12h, 30d).
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Remove the local verdict on an object.
    Delete {
        #[arg(value_name = "OBJECT")]
        object: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum FeedsCommand {
    /// The scheduled feeds: state, last success, last error, rows stored.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Refresh a feed now and print how it went.
    Refresh {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// `WHEN` of `--expires`: a duration from now (`90m`, `12h`, `30d`), or a date or time as the
/// API takes it.
fn expiry(text: &str) -> anyhow::Result<String> {
    let text = text.trim();
    let duration = text
        .strip_suffix('s')
        .map(|n| (n, 1))
        .or_else(|| text.strip_suffix('m').map(|n| (n, 60)))
        .or_else(|| text.strip_suffix('h').map(|n| (n, 3600)))
        .or_else(|| text.strip_suffix('d').map(|n| (n, 86_400)))
        .and_then(|(number, unit)| number.parse::<u64>().ok().map(|n| n.saturating_mul(unit)));
    match duration {
        Some(0) => anyhow::bail!("--expires {text}: a duration of zero has already passed"),
        Some(seconds) => {
            let when = repnet_model::Timestamp(repnet_store::now().0.saturating_add(seconds));
            repnet_protocol::rfc3339(when)
                .ok_or_else(|| anyhow::anyhow!("--expires {text}: too far in the future"))
        }
        None => {
            repnet_protocol::parse_time(text).map_err(|error| {
                anyhow::anyhow!("--expires: {error}, or a duration such as 90s, 90m, 12h or 30d")
            })?;
            Ok(text.to_owned())
        }
    }
}

fn print_verdicts(list: &repnet_protocol::LocalVerdictList) {
    if list.verdicts.is_empty() {
        println!("no local verdicts");
        return;
    }
    println!(
        "{:<11}  {:<9}  {:<24}  {:<20}  {:<40}  COMMENT",
        "TYPE", "VERDICT", "THREAT", "EXPIRES", "OBJECT"
    );
    for entry in &list.verdicts {
        println!(
            "{:<11}  {:<9}  {:<24}  {:<20}  {:<40}  {}",
            entry.object.kind,
            entry.verdict.as_str(),
            or_dash(entry.threat.as_deref()),
            or_dash(entry.expires.as_deref()),
            entry.object.value,
            or_dash(entry.comment.as_deref())
        );
    }
}

fn print_feeds(feeds: &[repnet_protocol::FeedStatus]) {
    if feeds.is_empty() {
        println!("no scheduled feeds ([[feeds]] in the server's configuration)");
        return;
    }
    for feed in feeds {
        let stored = feed.last_import.as_ref().map_or("-".to_owned(), |report| {
            format!(
                "read {}, stored {}, skipped {}",
                report.read, report.stored, report.skipped
            )
        });
        println!(
            "{} ({}, every {} s): {}",
            feed.name, feed.format, feed.interval_seconds, feed.state
        );
        println!("    location:      {}", feed.location);
        println!(
            "    last success:  {}",
            or_dash(feed.last_success.as_deref())
        );
        println!(
            "    last attempt:  {}",
            or_dash(feed.last_attempt.as_deref())
        );
        println!(
            "    next refresh:  {}",
            or_dash(feed.next_refresh.as_deref())
        );
        println!("    last import:   {stored}");
        if let Some(error) = &feed.error {
            println!(
                "    last error:    {error} ({} failure(s) in a row)",
                feed.consecutive_failures
            );
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum SettingsCommand {
    /// The runtime settings, as JSON.
    Show {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Set one: `enabled false`, `forward_statistics true`, `cache_max_entries 500000`,
    /// `allowed_networks '["10.0.0.0/8"]'`, `upstream https://…`.
    Set {
        key: String,
        /// A JSON value (number, true/false, list) or plain text.
        value: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ReviewCommand {
    /// The open reports, oldest first: id, object, reports, current verdict, comment.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Settle a report: a local verdict on its object (trusted, riskware, untrusted), or
    /// dismiss it.
    Settle {
        id: String,
        #[arg(long, value_name = "trusted|riskware|untrusted|dismiss")]
        verdict: String,
        /// Kept with the local verdict.
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

fn print_review(list: &repnet_protocol::ReviewList) {
    if list.items.is_empty() {
        println!("nothing to review: no false-positive reports, no new verdicts of the engine");
        return;
    }
    for item in &list.items {
        match item.engine_verdict {
            Some(verdict) => println!(
                "{}  {} {}  engine verdict {}, now {}, set {}",
                item.id,
                item.object.kind,
                item.object.value,
                verdict.as_str(),
                item.verdict.as_str(),
                or_dash(item.first_reported.as_deref())
            ),
            None => println!(
                "{}  {} {}  {} report(s), now {}, last {}",
                item.id,
                item.object.kind,
                item.object.value,
                item.reports,
                item.verdict.as_str(),
                or_dash(item.last_reported.as_deref())
            ),
        }
        if let Some(comment) = &item.comment {
            println!("    {comment}");
        }
    }
}

/// Which server, and how to reach its admin API.
#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// The repnet server or proxy [default: the client configuration's `server`, else
    /// http://127.0.0.1:8080].
    #[arg(long, env = "REPNET_SERVER", value_name = "URL")]
    server: Option<String>,
    /// File holding the server's admin token (or set REPNET_ADMIN_TOKEN).
    #[arg(long, env = "REPNET_ADMIN_TOKEN_FILE", value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// CA certificates (PEM) to trust for an https:// server, besides the system's [default:
    /// the client configuration's `ca`].
    #[arg(long, env = "REPNET_CA", value_name = "FILE")]
    ca: Option<PathBuf>,
}

impl ServerArgs {
    /// A client of the admin API, with the client configuration's server and CA as defaults.
    pub(crate) fn client(&self, config: &ClientConfig) -> anyhow::Result<Client> {
        let token = crate::admin_token(self.admin_token_file.as_deref())?;
        let connection = crate::connect::ServerArgs {
            server: self.server.clone(),
            key: None,
            ca: self.ca.clone(),
        };
        let ca = self.ca.clone().or(config.ca.clone());
        Ok(Client::with_ca(&connection.url(config), ca.as_deref())?.with_admin_token(token))
    }
}

fn print_server_status(status: &repnet_protocol::ServerStatus) {
    println!("role:                    {}", status.role);
    println!("licence key required:    {}", status.key_required);
    println!("licence keys (active):   {}", status.licence_keys);
    println!("knowledge base entries:  {}", status.knowledge_base_entries);
    println!(
        "own change log:          {} at {}",
        status.log_id, status.sequence
    );
    if let Some(fed) = &status.fed_from {
        println!(
            "fed from:                {} up to {} (the next bundle: repnet bundle export --after {})",
            fed.log_id, fed.sequence, fed.sequence
        );
    }
    match &status.upstream {
        None => println!("upstream:                none"),
        Some(upstream) => {
            println!("upstream:                {}", upstream.url);
            println!("reachable:               {}", upstream.reachable);
            let number = |n: Option<u64>| n.map_or("-".to_owned(), |n| n.to_string());
            println!(
                "upstream seq:            {}",
                number(upstream.upstream_sequence)
            );
            println!(
                "local seq:               {}",
                number(upstream.local_sequence)
            );
            println!("lag:                     {}", number(upstream.lag));
            println!(
                "last success:            {}",
                or_dash(upstream.last_success.as_deref())
            );
            println!(
                "last error:              {}",
                or_dash(upstream.last_error.as_deref())
            );
        }
    }
    print_workers(&status.workers);
}

/// One line per background worker: its state, its units and failures, its progress, and
/// its last failure.
fn print_workers(workers: &[repnet_protocol::WorkerStatus]) {
    if workers.is_empty() {
        return;
    }
    println!("workers:");
    let width = workers.iter().map(|w| w.name.len()).max().unwrap_or(0);
    for worker in workers {
        let mut line = format!(
            "  {:width$}  {:7}  {} done, {} failed",
            worker.name, worker.state, worker.units, worker.errors
        );
        if let Some(progress) = &worker.progress {
            line.push_str(&format!("; {progress}"));
        }
        if let (Some(error), Some(at)) = (&worker.last_error, &worker.last_error_at) {
            line.push_str(&format!("; last failure at {at}: {error}"));
        }
        println!("{line}");
    }
}

fn print_proxy_status(status: &serde_json::Value) {
    let text = |value: &serde_json::Value| match value {
        serde_json::Value::Null => "-".to_owned(),
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let upstream = &status["upstream"];
    println!("role:                    proxy");
    println!(
        "upstream:                {}",
        text(&status["settings"]["upstream"])
    );
    println!("healthy:                 {}", text(&upstream["healthy"]));
    if !upstream["refused"].is_null() {
        println!("refused:                 {}", text(&upstream["refused"]));
    }
    println!(
        "failures in a row:       {}",
        text(&upstream["consecutive_failures"])
    );
    println!("last error:              {}", text(&upstream["last_error"]));
    println!(
        "cache entries:           {}",
        text(&status["cache_entries"])
    );
    println!(
        "hits, misses, stale:     {}, {}, {} (hit rate {})",
        text(&status["hits"]),
        text(&status["misses"]),
        text(&status["stale"]),
        text(&status["hit_rate"])
    );
    let log = &status["change_log"];
    if !log.is_null() {
        println!(
            "upstream change log:     {} at {}",
            text(&log["log_id"]),
            text(&log["sequence"])
        );
    }
    let workers: Vec<repnet_protocol::WorkerStatus> =
        serde_json::from_value(status["workers"].clone()).unwrap_or_default();
    print_workers(&workers);
}

fn or_dash(value: Option<&str>) -> &str {
    value.unwrap_or("-")
}

fn print_keys(keys: &[LicenceKeyEntry]) {
    println!(
        "{:<16}  {:<20}  {:<20}  {:<20}  {:<20}  LABEL",
        "ID", "CREATED", "EXPIRES", "LAST USED", "REVOKED"
    );
    for key in keys {
        println!(
            "{:<16}  {:<20}  {:<20}  {:<20}  {:<20}  {}",
            key.id,
            or_dash(key.created.as_deref()),
            or_dash(key.expires.as_deref()),
            or_dash(key.last_used.as_deref()),
            or_dash(key.revoked.as_deref()),
            or_dash(key.label.as_deref()),
        );
    }
}

pub(crate) async fn run(command: AdminCommand, files: &ClientFiles) -> anyhow::Result<Outcome> {
    // A configuration that cannot be read gives no defaults; the commands still run.
    let config = files.load().unwrap_or_default();
    match command {
        AdminCommand::Backup { dir, server } => {
            return crate::backup::backup(&dir, &server.client(&config)?).await;
        }
        AdminCommand::Restore { backup, data } => {
            return crate::backup::restore(&backup, &data).await;
        }
        AdminCommand::Keys(KeysCommand::Add {
            key,
            label,
            expires,
            server,
        }) => {
            let key = key.trim().to_owned();
            repnet_protocol::check_licence_key(&key).map_err(anyhow::Error::msg)?;
            if let Some(expires) = &expires {
                repnet_protocol::parse_time(expires)
                    .map_err(|error| anyhow::anyhow!("--expires: {error}"))?;
            }
            let entry = server
                .client(&config)?
                .add_licence_key(&AddLicenceKey {
                    key,
                    label,
                    expires,
                })
                .await?;
            println!("registered licence key {}", entry.id);
            print_keys(&[entry]);
        }
        AdminCommand::Keys(KeysCommand::List { server, json }) => {
            let list = server.client(&config)?.licence_keys().await?;
            if json {
                println!("{}", repnet_protocol::to_pretty_json(&list));
            } else {
                print_keys(&list.keys);
            }
        }
        AdminCommand::Keys(KeysCommand::Revoke { key, server }) => {
            let client = server.client(&config)?;
            let list = client.licence_keys().await?;
            let key = key.trim();
            // An id as listed, or the key itself (whose id is derived from it).
            let derived =
                repnet_protocol::licence_key_id(&repnet_model::Sha256::digest(key.as_bytes()));
            let id = [key, derived.as_str()]
                .into_iter()
                .find(|candidate| list.keys.iter().any(|entry| entry.id == *candidate))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "no registered licence key has the id or value {key:?}: `repnet admin keys list` shows the ids"
                    )
                })?
                .to_owned();
            let entry = client.revoke_licence_key(&id).await?;
            println!("revoked licence key {}", entry.id);
            print_keys(&[entry]);
        }
        AdminCommand::Review(ReviewCommand::List { server, json }) => {
            let list = server.client(&config)?.review().await?;
            if json {
                println!("{}", repnet_protocol::to_pretty_json(&list));
            } else {
                print_review(&list);
            }
        }
        AdminCommand::Review(ReviewCommand::Settle {
            id,
            verdict,
            comment,
            server,
        }) => {
            let list = server
                .client(&config)?
                .settle_review(
                    &id,
                    &repnet_protocol::SettleReview {
                        verdict: verdict.clone(),
                        comment,
                    },
                )
                .await?;
            println!("settled {id}: {verdict}");
            print_review(&list);
        }
        AdminCommand::Settings(SettingsCommand::Show { server }) => {
            let settings = server.client(&config)?.settings().await?;
            println!("{}", serde_json::to_string_pretty(&settings)?);
        }
        AdminCommand::Settings(SettingsCommand::Set { key, value, server }) => {
            let value = serde_json::from_str::<serde_json::Value>(&value)
                .unwrap_or(serde_json::Value::String(value));
            let mut patch = serde_json::Map::new();
            patch.insert(key, value);
            let settings = server
                .client(&config)?
                .patch_settings(&serde_json::Value::Object(patch))
                .await?;
            println!("{}", serde_json::to_string_pretty(&settings)?);
        }
        AdminCommand::Engine { server } => {
            let engine = server.client(&config)?.engine().await?;
            println!("{}", repnet_protocol::to_pretty_json(&engine));
        }
        AdminCommand::Verdicts(VerdictsCommand::List { server, json }) => {
            let list = server.client(&config)?.local_verdicts().await?;
            if json {
                println!("{}", repnet_protocol::to_pretty_json(&list));
            } else {
                print_verdicts(&list);
            }
        }
        AdminCommand::Verdicts(VerdictsCommand::Set {
            object,
            verdict,
            threat,
            category,
            comment,
            expires,
            server,
        }) => {
            let item = crate::lookup::admin_item(&object)?;
            let expires = expires.as_deref().map(expiry).transpose()?;
            let reputation = server
                .client(&config)?
                .set_local_verdict(&repnet_protocol::SetLocalVerdict {
                    object: item,
                    verdict,
                    threat,
                    categories: category,
                    comment,
                    expires: expires.clone(),
                })
                .await?;
            println!(
                "{} {}: local verdict {}{}",
                reputation.object.kind,
                reputation.object.value,
                reputation.verdict.as_str(),
                expires.map(|e| format!(" until {e}")).unwrap_or_default()
            );
        }
        AdminCommand::Verdicts(VerdictsCommand::Delete { object, server }) => {
            let item = crate::lookup::admin_item(&object)?;
            let (kind, value) = match item.target().map_err(anyhow::Error::msg)? {
                repnet_protocol::ItemTarget::Object(kind, value) => (kind, value.to_owned()),
                repnet_protocol::ItemTarget::File(hashes) => {
                    let hashes = hashes
                        .parse()
                        .map_err(|(_, error)| anyhow::Error::from(error))?;
                    let primary = hashes
                        .primary()
                        .ok_or_else(|| anyhow::anyhow!("{object}: no hash"))?;
                    (repnet_model::ObjectKind::File, primary.to_string())
                }
            };
            let reputation = server
                .client(&config)?
                .remove_local_verdict(kind, &value)
                .await?;
            println!(
                "{} {}: local verdict removed; now {}",
                reputation.object.kind,
                reputation.object.value,
                reputation.verdict.as_str()
            );
        }
        AdminCommand::Feeds(FeedsCommand::List { server, json }) => {
            let list = server.client(&config)?.feeds().await?;
            if json {
                println!("{}", repnet_protocol::to_pretty_json(&list));
            } else {
                print_feeds(&list.feeds);
            }
        }
        AdminCommand::Feeds(FeedsCommand::Refresh { name, server }) => {
            let status = server.client(&config)?.refresh_feed(&name).await?;
            print_feeds(std::slice::from_ref(&status));
            if status.state == "failed" {
                return Ok(Outcome::Incomplete);
            }
        }
        AdminCommand::Status { server, json } => {
            let status = server.client(&config)?.status_json().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else if status["role"] == "proxy" {
                print_proxy_status(&status);
            } else {
                let status: repnet_protocol::ServerStatus = serde_json::from_value(status)
                    .map_err(|error| anyhow::anyhow!("the server's status is not understood ({error}): is it a repnet server of a compatible version?"))?;
                print_server_status(&status);
            }
        }
    }
    Ok(Outcome::Clean)
}
