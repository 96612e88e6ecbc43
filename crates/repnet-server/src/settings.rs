//! Runtime settings: what an administrator changes on a running server without a restart
//! (`GET/PATCH /v1/admin/settings`, `repnet admin settings show|set`), kept in
//! `settings.json` in the data directory, where they win over the configuration file at the
//! next start.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::ServerConfig;
use crate::licences;

/// The settings that change at run time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSettings {
    /// Lookups need a licence key (always on a private server).
    pub require_key: bool,
    /// Requests per second per licence key (0: no limit), and bursts above it.
    pub key_requests_per_second: u32,
    pub key_burst: u32,
    /// Statistics batches per installation per minute (0: no limit).
    pub install_batches_per_minute: u32,
    /// The reputation engine's thresholds.
    pub engine_detecting_devices: u64,
    pub engine_trusted_devices: u64,
}

impl RuntimeSettings {
    pub fn of(config: &ServerConfig) -> RuntimeSettings {
        RuntimeSettings {
            require_key: config.require_key,
            key_requests_per_second: config.key_requests_per_second,
            key_burst: config.key_burst,
            install_batches_per_minute: config.install_batches_per_minute,
            engine_detecting_devices: config.engine.detecting_devices,
            engine_trusted_devices: config.engine.trusted_devices,
        }
    }

    /// `config` with these settings.
    pub fn apply_to(&self, config: &mut ServerConfig) {
        config.require_key = self.require_key;
        config.key_requests_per_second = self.key_requests_per_second;
        config.key_burst = self.key_burst;
        config.install_batches_per_minute = self.install_batches_per_minute;
        config.engine.detecting_devices = self.engine_detecting_devices;
        config.engine.trusted_devices = self.engine_trusted_devices;
    }

    /// What is wrong with these settings, naming the setting.
    pub fn check(&self) -> Result<(), SettingsError> {
        if self.engine_detecting_devices == 0 || self.engine_trusted_devices == 0 {
            return Err(SettingsError::EngineThreshold);
        }
        Ok(())
    }

    /// What an earlier run kept, if anything.
    pub fn load(data: &Path) -> Result<Option<RuntimeSettings>, repnet_runtime::files::FileError> {
        let path = data.join("settings.json");
        let Some(bytes) = repnet_runtime::files::read_if_present(&path)? else {
            return Ok(None);
        };
        repnet_protocol::from_json(&bytes)
            .map(Some)
            .map_err(|error| repnet_runtime::files::FileError::Damaged {
                path,
                reason: error.to_string(),
            })
    }

    pub(crate) fn save(&self, data: &Path) -> std::io::Result<()> {
        repnet_runtime::files::write_atomically(
            &data.join("settings.json"),
            &repnet_protocol::to_json(self),
        )
    }
}

/// A runtime setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("engine_detecting_devices and engine_trusted_devices must be at least 1")]
    EngineThreshold,
}

/// The rate limit the settings give each key.
pub(crate) fn rate_limit(per_second: u32, burst: u32) -> Option<licences::RateLimit> {
    (per_second > 0).then(|| licences::RateLimit {
        per_second: f64::from(per_second),
        burst: f64::from(burst.max(per_second)),
    })
}
