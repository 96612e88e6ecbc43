//! The client's configuration and files: `client.toml` (server, key, participation mode,
//! accepted statement, install id), where the client keeps its files by the XDG base
//! directory specification ([`ClientFiles`]), and `repnet config`.

use crate::Outcome;
use crate::caches::Caches;
use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};
use repnet_client::Client;
use repnet_protocol::StatisticsEvent;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Basic => "basic",
            Mode::Extended => "extended",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Mode> {
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
    pub(crate) from_environment: Option<Mode>,
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
    pub(crate) fn mode_and_origin(&self, files: &ClientFiles) -> String {
        match (self.from_environment, self.participation) {
            (Some(mode), _) => format!("{} (from {MODE_VARIABLE})", mode.as_str()),
            (None, Some(mode)) => format!("{} (chosen in {})", mode.as_str(), files.config.display()),
            (None, None) => "not chosen yet: nothing is sent until it is (`repnet participation off|basic|extended`)".to_owned(),
        }
    }
}

/// Where the client keeps its files, by the XDG base directory specification: the
/// configuration in `$XDG_CONFIG_HOME/repnet/client.toml` (or `--client-config FILE`), caches
/// in `$XDG_CACHE_HOME/repnet` (`~/.cache/repnet`), state that must not be lost — the
/// statistics queue and the files an offline scan could not check — in `$XDG_STATE_HOME/repnet`
/// (`~/.local/state/repnet`).
#[derive(Debug, Clone)]
pub(crate) struct ClientFiles {
    pub(crate) config: PathBuf,
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

    pub(crate) fn save_queue(&self, queue: &[StatisticsEvent]) -> anyhow::Result<()> {
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
                    None => format!("{} (the default)", crate::config::DEFAULT_SERVER),
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
                    Client::with_ca(crate::config::DEFAULT_SERVER, Some(&path))?;
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
    pub(crate) fn as_str(self) -> &'static str {
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

/// Where a client command goes when nothing says otherwise.
pub(crate) const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";
