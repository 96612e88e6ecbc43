//! How every client command finds its server: `--server`/`REPNET_SERVER`, `--key`/`REPNET_KEY`
//! and `--ca`/`REPNET_CA`, each falling back to the client configuration (`repnet config`).

use crate::config::DEFAULT_SERVER;
use std::path::PathBuf;

use clap::Args;
use repnet_client::Client;

use crate::config::ClientConfig;

/// The server a client command talks to. The same flags, environment variables and
/// configuration keys for every command, so that a private network's key works everywhere.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ServerArgs {
    /// The repnet server or proxy [default: the client configuration's `server`, else
    /// http://127.0.0.1:8080].
    #[arg(long, env = "REPNET_SERVER", value_name = "URL")]
    pub(crate) server: Option<String>,
    /// The organisation's licence key, for servers that require one (a private network)
    /// [default: the client configuration's `key`].
    #[arg(long, env = "REPNET_KEY", value_name = "KEY", hide_env_values = true)]
    pub(crate) key: Option<String>,
    /// CA certificates (PEM) to trust for an https:// server, besides the system's [default:
    /// the client configuration's `ca`].
    #[arg(long, env = "REPNET_CA", value_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
}

impl ServerArgs {
    /// The server's URL: the flag or variable, else the configuration's, else the default.
    pub(crate) fn url(&self, config: &ClientConfig) -> String {
        self.server
            .clone()
            .or_else(|| config.server.clone())
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned())
    }

    /// The licence key, if any.
    pub(crate) fn key(&self, config: &ClientConfig) -> Option<String> {
        self.key
            .clone()
            .or_else(|| config.key.clone())
            .map(|key| key.trim().to_owned())
            .filter(|key| !key.is_empty())
    }

    /// A client for the server, with the key and the CA.
    pub(crate) fn client(&self, config: &ClientConfig) -> anyhow::Result<Client> {
        let ca = self.ca.clone().or_else(|| config.ca.clone());
        let client = Client::with_ca(&self.url(config), ca.as_deref())?;
        Ok(match self.key(config) {
            Some(key) => client.with_licence_key(key),
            None => client,
        })
    }
}
