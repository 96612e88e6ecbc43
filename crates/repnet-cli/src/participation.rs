//! Participation on the client side: the client configuration (server, key, mode, accepted
//! statement, install id), the local answer cache that `off` mode answers from, and the queue
//! of statistics that `extended` mode sends (docs/privacy.md).
//!
//! Files follow the XDG base directory specification ([`ClientFiles`]).

use repnet_protocol::ErrorCode;
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// No network traffic at all: lookups answer from the local cache.
    Off,
    /// Lookups only: web addresses by hash prefix, files by their hashes.
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

    fn parse(text: &str) -> Option<Mode> {
        match text.trim().to_ascii_lowercase().as_str() {
            "off" | "o" => Some(Mode::Off),
            "basic" | "b" => Some(Mode::Basic),
            "extended" | "e" => Some(Mode::Extended),
            _ => None,
        }
    }
}

/// The environment variable that chooses the mode for a run, over the configuration (for
/// fleet installers, and scripts that must not depend on a user's choice).
pub(crate) const MODE_VARIABLE: &str = "REPNET_PARTICIPATION";

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
    /// What the user chose; `None` until they choose: nothing is sent until then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) participation: Option<Mode>,
    /// `REPNET_PARTICIPATION` for this run: it wins over `participation`, and is not saved.
    #[serde(skip)]
    from_environment: Option<Mode>,
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

impl ClientConfig {
    /// The mode in force: `REPNET_PARTICIPATION`, else the configuration's; `off` while none
    /// is chosen (commands that would send something ask first: [`require_choice`]).
    pub(crate) fn mode(&self) -> Mode {
        self.from_environment
            .or(self.participation)
            .unwrap_or(Mode::Off)
    }

    /// The mode in force and where it comes from, as `participation show` says it.
    fn mode_and_origin(&self, files: &ClientFiles) -> String {
        match (self.from_environment, self.participation) {
            (Some(mode), _) => format!("{} (from {MODE_VARIABLE})", mode.as_str()),
            (None, Some(mode)) => format!("{} (chosen in {})", mode.as_str(), files.config.display()),
            (None, None) => "not chosen yet: nothing is sent until it is (`repnet participation off|basic|extended`)".to_owned(),
        }
    }
}

/// Makes sure a participation mode is chosen before anything is sent: on a terminal, the
/// invitation asks the user (and the answer is saved); elsewhere (scripts, installers) the
/// command fails with what to run, and nothing is sent.
pub(crate) async fn require_choice(
    files: &ClientFiles,
    config: &mut ClientConfig,
    connection: &ServerArgs,
) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    if config.from_environment == Some(Mode::Extended) && config.statement_version == 0 {
        anyhow::bail!(
            "{MODE_VARIABLE}=extended needs the server's statement accepted first: read it with `repnet statement`, accept it with `repnet statement --accept`; nothing was sent"
        );
    }
    if config.from_environment.is_some() || config.participation.is_some() {
        return Ok(());
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        anyhow::bail!(
            "nothing was sent: choose what this device shares first, with `repnet participation basic` (lookups: hash prefixes of web addresses, full hashes of files), `repnet participation extended` (and anonymous statistics, once the statement is accepted) or `repnet participation off` (nothing leaves the device); an installer sets {MODE_VARIABLE}=basic in the environment or `participation = \"basic\"` in {} (docs/privacy.md)",
            files.config.display()
        );
    }
    invite(files, config, connection).await
}

/// What each mode sends, as the invitation and `participation show` say it (docs/privacy.md
/// and the server's statement say the same).
const MODES: &str = concat!(
    "  off       nothing leaves this device: lookups answer from its local cache only.\n",
    "  basic     lookups only: hash prefixes of web addresses, full hashes of files. A web\n",
    "            address goes as 4 bytes of the SHA-256 of each of its expressions, never as\n",
    "            the URL, the domain or the IP address; a file as its MD5, SHA-1 and SHA-256,\n",
    "            never its content, name or path. No statistics.\n",
    "  extended  basic, and anonymous statistics: hashes, sizes and scrubbed names of files\n",
    "            detected or seen for the first time, web addresses of detections without\n",
    "            query strings, and your false-positive reports. Only after you accept the\n",
    "            server's statement; raw statistics are deleted after its retention period\n",
    "            (`repnet statement` says how long), only counts remain."
);

/// The invitation: the summary of what each mode sends, then the question, on the terminal.
async fn invite(
    files: &ClientFiles,
    config: &mut ClientConfig,
    connection: &ServerArgs,
) -> anyhow::Result<()> {
    let server = connection.url(config);
    eprintln!(
        "repnet takes part in a reputation network: before anything is sent to {server}, choose what this device shares.\n\n{MODES}\n\nNo personal data is collected, processed or stored in any mode. You can change this at any time with `repnet participation off|basic|extended`."
    );
    for _ in 0..5 {
        let Some(answer) = ask("Participation [off/basic/extended]: ")? else {
            break;
        };
        let Some(mode) = Mode::parse(&answer) else {
            eprintln!("Please answer off, basic or extended.");
            continue;
        };
        if mode == Mode::Extended {
            let statement = connection.client(config)?.statement().await?;
            eprintln!(
                "\nstatement version {}\n\n{}\n\nWhat is collected:",
                statement.version, statement.text
            );
            for category in &statement.categories {
                eprintln!("- {category}");
            }
            match ask("\nDo you accept this statement? [yes/no]: ")? {
                Some(yes) if matches!(yes.trim().to_ascii_lowercase().as_str(), "yes" | "y") => {
                    config.statement_version = statement.version;
                }
                _ => {
                    eprintln!(
                        "Not accepted: no statistics will be sent. Choose off or basic, or extended to read it again."
                    );
                    continue;
                }
            }
        }
        config.participation = Some(mode);
        files.save(config)?;
        eprintln!(
            "participation: {} (saved in {})\n",
            mode.as_str(),
            files.config.display()
        );
        return Ok(());
    }
    anyhow::bail!(
        "no participation mode was chosen, so nothing was sent: run `repnet participation off|basic|extended`"
    )
}

/// Asks a question on standard error and reads the answer from standard input; `None` at
/// its end.
fn ask(question: &str) -> anyhow::Result<Option<String>> {
    use std::io::{BufRead as _, Write as _};
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let read = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the answer")?;
    Ok((read > 0).then_some(line))
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

    /// The configuration, with `REPNET_PARTICIPATION` applied; the defaults (no mode chosen,
    /// nothing accepted) when there is no file yet.
    pub(crate) fn load(&self) -> anyhow::Result<ClientConfig> {
        let mut config = self.load_file()?;
        if let Some(value) = std::env::var_os(MODE_VARIABLE).filter(|value| !value.is_empty()) {
            let value = value.to_string_lossy();
            config.from_environment = Some(Mode::parse(&value).with_context(|| {
                format!("{MODE_VARIABLE}={value:?} is not a participation mode: set it to off, basic or extended")
            })?);
        }
        Ok(config)
    }

    fn load_file(&self) -> anyhow::Result<ClientConfig> {
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
    repnet_runtime::files::write_atomically(path, bytes)
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
    if config.mode() != Mode::Extended {
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
            Err(ClientError::Api { code, .. })
                if code == ErrorCode::StatementNotAccepted.as_str() =>
            {
                config.participation = Some(Mode::Basic);
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
            let server = connection.url(&config);
            println!("participation: {}", config.mode_and_origin(files));
            println!("server: {server}");
            match config.statement_version {
                0 => println!("statement accepted: none"),
                version => println!("statement accepted: version {version}"),
            }
            println!("what each mode sends:\n{MODES}");
            let mode = config.mode();
            let chosen = config.from_environment.or(config.participation).is_some();
            match mode {
                _ if !chosen => println!(
                    "sent now: nothing; lookups and scans ask you to choose first (on a terminal) or stop"
                ),
                Mode::Off => println!("sent now: nothing; answers come from the local cache"),
                Mode::Basic | Mode::Extended => println!(
                    "sent now, to {server}, by each lookup or scan: hash prefixes of web addresses, full hashes of files (MD5, SHA-1, SHA-256), certificates' thumbprints, and the licence key if one is set; `repnet lookup --private` sends prefixes of files' hashes too, `--no-private` web addresses as they are"
                ),
            }
            let queue = files.queue()?;
            if mode == Mode::Extended && chosen {
                println!("statistics, to {server}: the next batch, exactly as it would be sent:");
            } else {
                println!(
                    "statistics: none are sent in this mode; in extended mode the next batch would be:"
                );
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&next_batch(&config, queue))?
            );
        }
        ParticipationCommand::Off | ParticipationCommand::Basic => {
            let mode = if matches!(command, ParticipationCommand::Off) {
                Mode::Off
            } else {
                Mode::Basic
            };
            config.participation = Some(mode);
            files.save(&mut config)?;
            println!("participation: {}", mode.as_str());
            overridden(&config);
        }
        ParticipationCommand::Extended { connection } => {
            let statement = connection.client(&config)?.statement().await?;
            if config.statement_version != statement.version {
                anyhow::bail!(
                    "extended participation needs the server's statement (version {}) accepted: read it with `repnet statement`, then accept it with `repnet statement --accept`",
                    statement.version
                );
            }
            config.participation = Some(Mode::Extended);
            files.save(&mut config)?;
            println!(
                "participation: extended (statement version {})",
                statement.version
            );
            overridden(&config);
        }
    }
    Ok(Outcome::Clean)
}

/// Says so when `REPNET_PARTICIPATION` will win over what was just saved.
fn overridden(config: &ClientConfig) {
    if let Some(mode) = config.from_environment {
        eprintln!(
            "repnet: {MODE_VARIABLE}={} is set: it wins over the configuration while it is",
            mode.as_str()
        );
    }
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
    if config.mode() != Mode::Extended {
        anyhow::bail!(
            "false-positive reports are statistics: they are sent in extended participation only (now: {}); see `repnet statement` and `repnet participation extended`",
            config.mode_and_origin(files)
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
            println!("participation: {}", config.mode_and_origin(files));
            println!("caches: {}", files.cache_dir.display());
            println!("state: {}", files.state_dir.display());
            println!(
                "(REPNET_SERVER, REPNET_KEY, REPNET_CA, REPNET_PARTICIPATION and the flags --server, --key, --ca win over these)"
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
