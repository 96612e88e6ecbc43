//! Participation on the client side: the client configuration (server, key, mode, accepted
//! statement, install id), the local answer cache that `off` mode answers from, and the queue
//! of statistics that `extended` mode sends (docs/privacy.md).
//!
//! Files follow the XDG base directory specification ([`ClientFiles`]).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};
use repnet_client::{Client, ClientError};
use repnet_model::privacy;
use repnet_protocol::{StatisticsBatch, StatisticsEvent};
use serde::{Deserialize, Serialize};

use crate::Outcome;
use crate::caches::Caches;
use crate::connect::ServerArgs;

/// What the client shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// No network traffic at all: lookups answer from the local cache.
    Off,
    /// Lookups only.
    #[default]
    Basic,
    /// Lookups and anonymous statistics (needs the statement accepted).
    Extended,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Basic => "basic",
            Mode::Extended => "extended",
        }
    }
}

/// `client.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ClientConfig {
    /// The server lookups go to (flags and `REPNET_SERVER` win).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server: Option<String>,
    /// The licence key (flags and `REPNET_KEY` win).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<String>,
    /// CA certificates (PEM) to trust for an https:// server (flags and `REPNET_CA` win).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ca: Option<PathBuf>,
    pub(crate) participation: Mode,
    /// The statement version the user accepted; 0 for none.
    pub(crate) statement_version: u32,
    /// This installation's token from the server (`POST /v1/installations`), made at the
    /// first statistics sent; sent only with statistics.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) installation: String,
    /// The random id of earlier versions: read, and dropped at the next save.
    #[serde(skip_serializing)]
    pub(crate) install_id: String,
}

/// Where the client keeps its files, by the XDG base directory specification: the
/// configuration in `$XDG_CONFIG_HOME/repnet/client.toml` (or `--client-config FILE`), caches
/// in `$XDG_CACHE_HOME/repnet` (`~/.cache/repnet`), state that must not be lost — the
/// statistics queue and the files an offline scan could not check — in `$XDG_STATE_HOME/repnet`
/// (`~/.local/state/repnet`).
#[derive(Debug, Clone)]
pub(crate) struct ClientFiles {
    config: PathBuf,
    cache_dir: PathBuf,
    state_dir: PathBuf,
}

/// `$name/repnet`, or `$HOME/fallback/repnet`; `None` when neither is set. Relative paths in
/// the variables are ignored, as the specification says.
fn xdg_dir(name: &str, fallback: &str) -> Option<PathBuf> {
    let absolute = |value: std::ffi::OsString| {
        let path = PathBuf::from(value);
        path.is_absolute().then_some(path)
    };
    std::env::var_os(name)
        .and_then(absolute)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(absolute)
                .map(|home| home.join(fallback))
        })
        .map(|dir| dir.join("repnet"))
}

impl ClientFiles {
    pub(crate) fn new(client_config: Option<&Path>) -> anyhow::Result<ClientFiles> {
        let config = match client_config {
            Some(path) => path.to_path_buf(),
            None => xdg_dir("XDG_CONFIG_HOME", ".config")
                .context("neither XDG_CONFIG_HOME nor HOME is set: give --client-config FILE")?
                .join("client.toml"),
        };
        // Without a home, caches and state go beside the configuration.
        let beside = config
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let files = ClientFiles {
            cache_dir: xdg_dir("XDG_CACHE_HOME", ".cache").unwrap_or_else(|| beside.clone()),
            state_dir: xdg_dir("XDG_STATE_HOME", ".local/state").unwrap_or(beside),
            config,
        };
        files.move_legacy_files();
        Ok(files)
    }

    /// Before the XDG layout everything lived beside `client.toml`: the queue and the offline
    /// list move to the state directory (nothing queued is lost); the old JSON caches, which
    /// could be hundreds of megabytes, are deleted.
    fn move_legacy_files(&self) {
        let Some(old) = self.config.parent() else {
            return;
        };
        for name in ["queue.json", "offline.json"] {
            let (from, to) = (old.join(name), self.state_dir.join(name));
            if from != to && from.is_file() && !to.exists() {
                let moved = std::fs::create_dir_all(&self.state_dir)
                    .and_then(|()| std::fs::copy(&from, &to).map(|_| ()))
                    .and_then(|()| std::fs::remove_file(&from));
                if let Err(error) = moved {
                    eprintln!(
                        "repnet: cannot move {} to {}: {error}",
                        from.display(),
                        to.display()
                    );
                }
            }
        }
        for name in ["cache.json", "hashes.json"] {
            let legacy = old.join(name);
            if legacy.is_file() && legacy != self.cache_dir.join(name) {
                let _ = std::fs::remove_file(legacy);
            }
        }
    }

    /// The configuration; the defaults (basic, nothing accepted) when there is no file yet.
    pub(crate) fn load(&self) -> anyhow::Result<ClientConfig> {
        match std::fs::read_to_string(&self.config) {
            Ok(text) => toml::from_str(&text).with_context(|| {
                format!(
                    "{} is not a valid client configuration",
                    self.config.display()
                )
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Ok(ClientConfig::default())
            }
            Err(error) => {
                Err(error).with_context(|| format!("cannot read {}", self.config.display()))
            }
        }
    }

    /// Writes the configuration (atomically).
    pub(crate) fn save(&self, config: &mut ClientConfig) -> anyhow::Result<()> {
        let text = toml::to_string(config).context("cannot write the client configuration")?;
        write_atomically(&self.config, text.as_bytes())
    }

    /// A JSON file of the state directory; its default when there is none.
    pub(crate) fn read_state<T: for<'de> Deserialize<'de> + Default>(
        &self,
        name: &str,
    ) -> anyhow::Result<T> {
        let path = self.state_dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is damaged: delete it", path.display())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
            Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes a JSON file of the state directory, atomically.
    pub(crate) fn write_state<T: Serialize>(&self, name: &str, value: &T) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec(value).context("cannot encode")?;
        write_atomically(&self.state_dir.join(name), &bytes)
    }

    pub(crate) fn queue(&self) -> anyhow::Result<Vec<StatisticsEvent>> {
        self.read_state("queue.json")
    }

    fn save_queue(&self, queue: &[StatisticsEvent]) -> anyhow::Result<()> {
        self.write_state("queue.json", &queue)
    }

    /// The caches of hashes and answers.
    pub(crate) fn caches(&self) -> anyhow::Result<Caches> {
        Caches::open(&self.cache_dir)
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    repnet_server::files::write_atomically(path, bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The batch that would be sent now.
pub(crate) fn next_batch(config: &ClientConfig, events: Vec<StatisticsEvent>) -> StatisticsBatch {
    StatisticsBatch {
        statement_version: config.statement_version,
        installation: match config.installation.as_str() {
            "" => "<a token from the server, made when statistics are first sent>".to_owned(),
            token => token.to_owned(),
        },
        product: concat!("repnet/", env!("CARGO_PKG_VERSION")).to_owned(),
        events,
    }
}

/// Scrubs an event the way the server will, before it is queued, and more: this device's
/// home folder and user name wherever they appear (the server cannot know them).
pub(crate) fn scrubbed(mut event: StatisticsEvent) -> StatisticsEvent {
    let env = |names: &[&str]| {
        names
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
    };
    let home = env(&["HOME", "USERPROFILE"]);
    let user = env(&["USER", "USERNAME", "LOGNAME"]);
    let scrub = |text: &str| privacy::scrub_text_for(text, home.as_deref(), user.as_deref());
    event.url = event
        .url
        .map(|url| privacy::scrub_url(&url).unwrap_or_else(|| "<url>".to_owned()));
    event.name = event.name.map(|name| scrub(&name));
    event.comment = event.comment.map(|comment| scrub(&comment));
    event.threat = event
        .threat
        .and_then(|threat| privacy::scrub_threat(&threat));
    event
}

/// Queues events (extended mode only) and sends the queue. A send that fails leaves the queue
/// for next time; a server that publishes a newer statement puts the client back to basic.
pub(crate) async fn queue_and_send(
    files: &ClientFiles,
    config: &mut ClientConfig,
    client: &Client,
    events: Vec<StatisticsEvent>,
) -> anyhow::Result<()> {
    if config.participation != Mode::Extended {
        return Ok(());
    }
    let mut queue = files.queue()?;
    queue.extend(events.into_iter().map(scrubbed));
    files.save_queue(&queue)?;
    if queue.is_empty() {
        return Ok(());
    }
    let mut enrolled_now = false;
    for chunk in queue.clone().chunks(1000) {
        if config.installation.is_empty() {
            match client.enrol_installation().await {
                Ok(token) => {
                    config.installation = token.installation;
                    files.save(config)?;
                    enrolled_now = true;
                }
                Err(error) => {
                    eprintln!(
                        "repnet: statistics not sent, kept for the next time: cannot enrol this installation: {error}"
                    );
                    return Ok(());
                }
            }
        }
        let mut sent = client
            .send_statistics(&next_batch(config, chunk.to_vec()))
            .await;
        // A token of another server (the configured server changed), or one bound to another
        // licence key: enrol again, once.
        if let Err(ClientError::Api { code, .. }) = &sent
            && matches!(
                code.as_str(),
                "invalid_installation" | "installation_key_mismatch"
            )
            && !enrolled_now
        {
            config.installation.clear();
            match client.enrol_installation().await {
                Ok(token) => {
                    config.installation = token.installation;
                    files.save(config)?;
                    enrolled_now = true;
                    sent = client
                        .send_statistics(&next_batch(config, chunk.to_vec()))
                        .await;
                }
                Err(error) => {
                    files.save(config)?;
                    eprintln!(
                        "repnet: statistics not sent, kept for the next time: cannot enrol this installation: {error}"
                    );
                    return Ok(());
                }
            }
        }
        match sent {
            Ok(_) => {
                let rest: Vec<StatisticsEvent> =
                    files.queue()?.into_iter().skip(chunk.len()).collect();
                files.save_queue(&rest)?;
            }
            Err(ClientError::Api { code, .. }) if code == "statement_not_accepted" => {
                config.participation = Mode::Basic;
                files.save(config)?;
                eprintln!(
                    "repnet: the server's participation statement has changed: participation is back to basic (no statistics) until you read it (`repnet statement`) and accept it (`repnet statement --accept`)"
                );
                return Ok(());
            }
            Err(error) => {
                eprintln!("repnet: statistics not sent, kept for the next time: {error}");
                return Ok(());
            }
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub(crate) enum ParticipationCommand {
    /// The mode, the accepted statement, the server, what lookups send, and exactly the JSON
    /// the next statistics batch would contain.
    Show {
        #[command(flatten)]
        connection: ServerArgs,
    },
    /// No network traffic at all: lookups answer from the local cache only.
    Off,
    /// Lookups only, no statistics.
    Basic,
    /// Lookups and anonymous statistics; needs the server's statement accepted.
    Extended {
        #[command(flatten)]
        connection: ServerArgs,
    },
}

pub(crate) async fn participation(
    files: &ClientFiles,
    command: ParticipationCommand,
) -> anyhow::Result<Outcome> {
    let mut config = files.load()?;
    match command {
        ParticipationCommand::Show { connection } => {
            println!("participation: {}", config.participation.as_str());
            println!("server: {}", connection.url(&config));
            match config.statement_version {
                0 => println!("statement accepted: none"),
                version => println!("statement accepted: version {version}"),
            }
            match config.participation {
                Mode::Off => println!("lookups: none are sent; answers come from the local cache"),
                Mode::Basic | Mode::Extended => println!(
                    "lookups: each lookup sends what it asks about: files' hashes (never the files), and URLs, domains and IP addresses as given (`--private` sends 4-byte hash prefixes instead)"
                ),
            }
            let queue = files.queue()?;
            if config.participation == Mode::Extended {
                println!("statistics: the next batch, exactly as it would be sent:");
            } else {
                println!(
                    "statistics: none are sent in {} mode; in extended mode the next batch would be:",
                    config.participation.as_str()
                );
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&next_batch(&config, queue))?
            );
        }
        ParticipationCommand::Off | ParticipationCommand::Basic => {
            config.participation = if matches!(command, ParticipationCommand::Off) {
                Mode::Off
            } else {
                Mode::Basic
            };
            files.save(&mut config)?;
            println!("participation: {}", config.participation.as_str());
        }
        ParticipationCommand::Extended { connection } => {
            let statement = connection.client(&config)?.statement().await?;
            if config.statement_version != statement.version {
                anyhow::bail!(
                    "extended participation needs the server's statement (version {}) accepted: read it with `repnet statement`, then accept it with `repnet statement --accept`",
                    statement.version
                );
            }
            config.participation = Mode::Extended;
            files.save(&mut config)?;
            println!(
                "participation: extended (statement version {})",
                statement.version
            );
        }
    }
    Ok(Outcome::Clean)
}

/// `repnet statement [--accept]`.
pub(crate) async fn statement(
    files: &ClientFiles,
    connection: &ServerArgs,
    accept: bool,
) -> anyhow::Result<Outcome> {
    let mut config = files.load()?;
    let statement = connection.client(&config)?.statement().await?;
    println!(
        "statement version {}\n\n{}\n\nWhat is collected:",
        statement.version, statement.text
    );
    for category in &statement.categories {
        println!("- {category}");
    }
    if accept {
        config.statement_version = statement.version;
        files.save(&mut config)?;
        println!(
            "\naccepted statement version {}; `repnet participation extended` turns statistics on",
            statement.version
        );
    } else if config.statement_version != statement.version {
        println!("\nto accept it: repnet statement --accept");
    }
    Ok(Outcome::Clean)
}

/// `repnet report-false-positive FILE|SHA256|URL|DOMAIN|IP [--comment TEXT]`.
pub(crate) async fn report_false_positive(
    files: &ClientFiles,
    connection: &ServerArgs,
    target: &str,
    comment: Option<String>,
) -> anyhow::Result<Outcome> {
    let mut config = files.load()?;
    if config.participation != Mode::Extended {
        anyhow::bail!(
            "false-positive reports are statistics: they are sent in extended participation only (now: {}); see `repnet statement` and `repnet participation extended`",
            config.participation.as_str()
        );
    }
    let reported = crate::lookup::reported_object(target)?;
    let event = StatisticsEvent {
        kind: "false_positive".to_owned(),
        file: reported.file,
        url: reported.url,
        size: None,
        signer: None,
        name: None,
        threat: None,
        comment,
    };
    let client = connection.client(&config)?;
    queue_and_send(files, &mut config, &client, vec![event]).await?;
    if files.queue()?.is_empty() {
        println!("reported: the network's administrator will review it");
    } else {
        println!("queued: it will be sent with the next statistics");
    }
    Ok(Outcome::Clean)
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// The configuration file, its settings (the key partly hidden), and where the caches and
    /// the state are.
    Show,
    /// Sets `server` (a URL), `key` (the licence key) or `ca` (a PEM file).
    Set {
        #[arg(value_enum)]
        name: Setting,
        value: String,
    },
    /// Removes `server`, `key` or `ca`.
    Unset {
        #[arg(value_enum)]
        name: Setting,
    },
}

/// What `repnet config set` sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Setting {
    Server,
    Key,
    Ca,
}

/// `repnet config show|set|unset`.
pub(crate) fn config(files: &ClientFiles, command: ConfigCommand) -> anyhow::Result<Outcome> {
    let mut config = files.load()?;
    match command {
        ConfigCommand::Show => {
            println!("configuration: {}", files.config.display());
            println!(
                "server: {}",
                match &config.server {
                    Some(server) => server.clone(),
                    None => format!("{} (the default)", crate::connect::DEFAULT_SERVER),
                }
            );
            println!(
                "key: {}",
                match &config.key {
                    Some(key) => hidden(key),
                    None => "none".to_owned(),
                }
            );
            println!(
                "ca: {}",
                config.ca.as_ref().map_or_else(
                    || "none (the system's certificates)".to_owned(),
                    |ca| ca.display().to_string()
                )
            );
            println!("participation: {}", config.participation.as_str());
            println!("caches: {}", files.cache_dir.display());
            println!("state: {}", files.state_dir.display());
            println!(
                "(REPNET_SERVER, REPNET_KEY, REPNET_CA and the flags --server, --key, --ca win over these)"
            );
        }
        ConfigCommand::Set { name, value } => {
            let value = value.trim().to_owned();
            match name {
                Setting::Server => {
                    // Checked as a client would use it.
                    Client::new(&value)?;
                    config.server = Some(value);
                }
                Setting::Key => {
                    if value.is_empty() {
                        anyhow::bail!("the key is empty: to remove it, `repnet config unset key`");
                    }
                    config.key = Some(value);
                }
                Setting::Ca => {
                    let path = std::path::absolute(&value)
                        .with_context(|| format!("{value} is not a usable path"))?;
                    Client::with_ca(crate::connect::DEFAULT_SERVER, Some(&path))?;
                    config.ca = Some(path);
                }
            }
            files.save(&mut config)?;
            println!("{} set in {}", name.as_str(), files.config.display());
        }
        ConfigCommand::Unset { name } => {
            match name {
                Setting::Server => config.server = None,
                Setting::Key => config.key = None,
                Setting::Ca => config.ca = None,
            }
            files.save(&mut config)?;
            println!("{} removed from {}", name.as_str(), files.config.display());
        }
    }
    Ok(Outcome::Clean)
}

impl Setting {
    fn as_str(self) -> &'static str {
        match self {
            Setting::Server => "server",
            Setting::Key => "key",
            Setting::Ca => "ca",
        }
    }
}

/// A secret as `ABCD…` with its length, enough to tell two keys apart.
fn hidden(secret: &str) -> String {
    let shown: String = secret.chars().take(4).collect();
    format!("{shown}… ({} characters)", secret.chars().count())
}
