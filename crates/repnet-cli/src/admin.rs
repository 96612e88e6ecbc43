//! `repnet admin`: the admin API of a running server, from the command line.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use repnet_client::Client;
use repnet_protocol::{AddLicenceKey, LicenceKeyEntry};

use crate::Outcome;

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
    /// The server's role, change log, and how pulling from its upstream goes.
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
        println!("no open false-positive reports");
        return;
    }
    for item in &list.items {
        println!(
            "{}  {} {}  {} report(s), now {}, last {}",
            item.id,
            item.object.kind,
            item.object.value,
            item.reports,
            item.verdict.as_str(),
            or_dash(item.last_reported.as_deref())
        );
        if let Some(comment) = &item.comment {
            println!("    {comment}");
        }
    }
}

/// Which server, and how to reach its admin API.
#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// The repnet server.
    #[arg(
        long,
        env = "REPNET_SERVER",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    server: String,
    /// File holding the server's admin token (or set REPNET_ADMIN_TOKEN).
    #[arg(long, env = "REPNET_ADMIN_TOKEN_FILE", value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// CA certificates (PEM) to trust for an https:// server, besides the system's.
    #[arg(long, env = "REPNET_CA", value_name = "FILE")]
    ca: Option<PathBuf>,
}

impl ServerArgs {
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        let token = crate::admin_token(self.admin_token_file.as_deref())?;
        Ok(Client::with_ca(&self.server, self.ca.as_deref())?.with_admin_token(token))
    }
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

pub(crate) async fn run(command: AdminCommand) -> anyhow::Result<Outcome> {
    match command {
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
                .client()?
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
            let list = server.client()?.licence_keys().await?;
            if json {
                println!("{}", repnet_protocol::to_pretty_json(&list));
            } else {
                print_keys(&list.keys);
            }
        }
        AdminCommand::Keys(KeysCommand::Revoke { key, server }) => {
            let client = server.client()?;
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
            let list = server.client()?.review().await?;
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
                .client()?
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
            let settings = server.client()?.settings().await?;
            println!("{}", serde_json::to_string_pretty(&settings)?);
        }
        AdminCommand::Settings(SettingsCommand::Set { key, value, server }) => {
            let value = serde_json::from_str::<serde_json::Value>(&value)
                .unwrap_or(serde_json::Value::String(value));
            let mut patch = serde_json::Map::new();
            patch.insert(key, value);
            let settings = server
                .client()?
                .patch_settings(&serde_json::Value::Object(patch))
                .await?;
            println!("{}", serde_json::to_string_pretty(&settings)?);
        }
        AdminCommand::Engine { server } => {
            let engine = server.client()?.engine().await?;
            println!("{}", repnet_protocol::to_pretty_json(&engine));
        }
        AdminCommand::Status { server, json } => {
            let status = server.client()?.server_status().await?;
            if json {
                println!("{}", repnet_protocol::to_pretty_json(&status));
            } else {
                println!("role:            {}", status.role);
                println!("key required:    {}", status.key_required);
                println!("keys:            {}", status.keys);
                println!("change log:      {} at {}", status.log_id, status.sequence);
                match &status.upstream {
                    None => println!("upstream:        none"),
                    Some(upstream) => {
                        println!("upstream:        {}", upstream.url);
                        println!("reachable:       {}", upstream.reachable);
                        let number = |n: Option<u64>| n.map_or("-".to_owned(), |n| n.to_string());
                        println!("upstream seq:    {}", number(upstream.upstream_sequence));
                        println!("local seq:       {}", number(upstream.local_sequence));
                        println!("lag:             {}", number(upstream.lag));
                        println!(
                            "last success:    {}",
                            or_dash(upstream.last_success.as_deref())
                        );
                        println!(
                            "last error:      {}",
                            or_dash(upstream.last_error.as_deref())
                        );
                    }
                }
            }
        }
    }
    Ok(Outcome::Clean)
}
