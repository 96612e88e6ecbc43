//! The proxy's settings: a TOML file (`--config`) with flags over it, and the runtime
//! settings an administrator changes through the admin API (`PATCH /v1/admin/settings`),
//! which are kept in `settings.json` in the data directory and win over the file at the next
//! start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use repnet_protocol::proxies::{ManagedSettings, Network};
use serde::{Deserialize, Serialize};

/// Everything `repnet proxy` can be told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Where devices connect (KSN Proxy's port by default).
    pub listen: SocketAddr,
    /// Where the proxy keeps its runtime settings.
    pub data: PathBuf,
    /// File holding the admin token; the admin API is disabled without one.
    pub admin_token_file: Option<PathBuf>,
    /// The upstream server's licence key for this organisation…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_key: Option<String>,
    /// …or a file holding it.
    pub upstream_key_file: Option<PathBuf>,
    /// CA certificates (PEM) to trust for the upstream's HTTPS, besides the system's.
    pub upstream_ca_file: Option<PathBuf>,
    /// Milliseconds an upstream request may take before it counts as failed.
    pub upstream_timeout_ms: u64,
    /// Follow the upstream's change log and drop cached answers that changed.
    pub follow_changes: bool,
    /// The name this proxy gives the upstream when it reports (the upstream's console lists
    /// proxies by it); the host's name when not set.
    pub name: Option<String>,
    /// Apply the settings the upstream's administrator sets for this proxy (its console's
    /// Proxies page); when false the proxy still reports, and says it ignored them.
    pub managed_by_upstream: bool,
    /// Seconds between polls of the change log.
    pub follow_interval_seconds: u64,
    /// PEM certificate chain and private key: serve HTTPS (HTTP/2 by ALPN) instead of HTTP
    /// (give both). Devices send licence keys to the proxy, on every interface.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Largest request body accepted, in bytes: the server's limit, so that what the proxy
    /// takes the server takes too.
    pub max_body_bytes: usize,
    /// What devices' connections may hold and for how long (`[connections]`).
    pub connections: repnet_http::Limits,
    /// The settings that can also change at run time.
    #[serde(flatten)]
    pub settings: Settings,
}

/// What an administrator changes at run time (`GET/PATCH /v1/admin/settings`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The upstream server's base URL.
    pub upstream: String,
    /// Most answers kept in the cache.
    pub cache_max_entries: usize,
    /// About the most bytes the cached answers hold (long URLs make large entries).
    pub cache_max_bytes: u64,
    /// Longest time an answer stays in the cache, in seconds; 0 keeps it as long as the
    /// upstream's answer says.
    pub cache_max_ttl_seconds: u64,
    /// How long misses wait to be sent upstream together, in milliseconds (0: at once, still
    /// coalescing identical questions in flight).
    pub coalescing_window_ms: u64,
    /// Forward devices' statistics upstream (scrubbed again first); otherwise they are
    /// answered `202` and dropped.
    pub forward_statistics: bool,
    /// Networks devices may connect from (CIDR, e.g. `10.0.0.0/8`); empty admits every
    /// address.
    pub allowed_networks: Vec<String>,
    /// When false, devices get `503 proxy_disabled` and fall back to a direct connection.
    pub enabled: bool,
    /// Devices must send a device key registered on this proxy (`/v1/admin/keys`), besides
    /// connecting from an allowed network.
    pub require_device_key: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            upstream: String::new(),
            cache_max_entries: 100_000,
            cache_max_bytes: 256 << 20,
            cache_max_ttl_seconds: 0,
            coalescing_window_ms: 2,
            forward_statistics: false,
            allowed_networks: Vec::new(),
            enabled: true,
            require_device_key: false,
        }
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            // Where a fleet reaches it, as KSN Proxy: admit devices with `allowed_networks`
            // and device keys.
            listen: SocketAddr::from(([0, 0, 0, 0], 13111)),
            data: PathBuf::from("./repnet-proxy-data"),
            admin_token_file: None,
            upstream_key: None,
            upstream_key_file: None,
            upstream_ca_file: None,
            upstream_timeout_ms: 5_000,
            follow_changes: true,
            name: None,
            managed_by_upstream: true,
            follow_interval_seconds: 2,
            tls_cert: None,
            tls_key: None,
            max_body_bytes: 4 << 20,
            connections: repnet_http::Limits::default(),
            settings: Settings::default(),
        }
    }
}

/// A setting that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("invalid setting {key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Settings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |key, message: String| SettingsError::Invalid { key, message };
        match reqwest::Url::parse(&self.upstream) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            _ => {
                return Err(invalid(
                    "upstream",
                    format!(
                        "{:?} is not an http:// or https:// URL: give the upstream server, e.g. --upstream https://repnet.example:8443",
                        self.upstream
                    ),
                ));
            }
        }
        if self.coalescing_window_ms > 1_000 {
            return Err(invalid(
                "coalescing_window_ms",
                format!("from 0 to 1000; got {}", self.coalescing_window_ms),
            ));
        }
        // What the upstream's administrator may set is checked as the upstream checks it.
        self.managed()
            .validate()
            .map_err(|(key, message)| invalid(key, message))?;
        Ok(())
    }

    /// The settings the upstream's administrator may set, as they are.
    pub fn managed(&self) -> ManagedSettings {
        ManagedSettings {
            enabled: self.enabled,
            cache_max_entries: self.cache_max_entries as u64,
            cache_max_bytes: self.cache_max_bytes,
            cache_max_ttl_seconds: self.cache_max_ttl_seconds,
            allowed_networks: self.allowed_networks.clone(),
            forward_statistics: self.forward_statistics,
            require_device_key: self.require_device_key,
        }
    }

    /// These settings with `managed` over them.
    pub fn with_managed(&self, managed: &ManagedSettings) -> Settings {
        Settings {
            enabled: managed.enabled,
            cache_max_entries: usize::try_from(managed.cache_max_entries).unwrap_or(usize::MAX),
            cache_max_bytes: managed.cache_max_bytes,
            cache_max_ttl_seconds: managed.cache_max_ttl_seconds,
            allowed_networks: managed.allowed_networks.clone(),
            forward_statistics: managed.forward_statistics,
            require_device_key: managed.require_device_key,
            ..self.clone()
        }
    }

    pub(crate) fn networks(&self) -> Vec<Network> {
        self.allowed_networks
            .iter()
            .filter_map(|text| Network::parse(text).ok())
            .collect()
    }

    /// Applies a JSON object of settings (`PATCH`): only the keys it names change.
    pub fn patched(&self, patch: &[u8]) -> Result<Settings, SettingsError> {
        let settings: Settings = repnet_protocol::merge_patch(self, patch).map_err(|message| {
            SettingsError::Invalid {
                key: "body",
                message: message.to_string(),
            }
        })?;
        settings.validate()?;
        Ok(settings)
    }

    /// The settings kept by an earlier run, if any.
    pub(crate) fn load(data: &Path) -> Result<Option<Settings>, SettingsError> {
        let path = data.join("settings.json");
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|error| SettingsError::Invalid {
                        key: "settings.json",
                        message: format!(
                            "{} is damaged ({error}): fix or delete it",
                            path.display()
                        ),
                    })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SettingsError::Io {
                action: "read",
                path,
                source,
            }),
        }
    }

    /// Keeps the settings for the next start (written atomically).
    pub(crate) fn save(&self, data: &Path) -> Result<(), SettingsError> {
        let io = |action, source| SettingsError::Io {
            action,
            path: data.to_path_buf(),
            source,
        };
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        repnet_runtime::files::write_atomically(&data.join("settings.json"), &bytes)
            .map_err(|e| io("write in", e))
    }
}

impl ProxyConfig {
    pub fn from_file(path: &Path) -> Result<ProxyConfig, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|error| SettingsError::Invalid {
            key: "config",
            message: format!("{}: {}", path.display(), error.to_string().trim()),
        })
    }

    /// The upstream licence key, from `upstream_key` or `upstream_key_file`.
    pub fn upstream_key(&self) -> Result<Option<String>, SettingsError> {
        match (&self.upstream_key, &self.upstream_key_file) {
            (Some(key), _) => Ok(Some(key.trim().to_owned())),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|key| Some(key.trim().to_owned()))
                .map_err(|source| SettingsError::Io {
                    action: "read the upstream key file",
                    path: path.clone(),
                    source,
                }),
            (None, None) => Ok(None),
        }
    }

    /// The configuration as TOML, for `--print-config`, with the upstream key masked
    /// ([`repnet_runtime::HIDDEN_SECRET`]).
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        if shown.upstream_key.is_some() {
            shown.upstream_key = Some(repnet_runtime::HIDDEN_SECRET.to_owned());
        }
        toml::to_string(&shown)
            .unwrap_or_else(|error| format!("# cannot print the configuration: {error}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_what_they_should() {
        let lan = Network::parse("10.1.0.0/16").unwrap();
        assert!(lan.contains("10.1.200.3".parse().unwrap()));
        assert!(!lan.contains("10.2.0.1".parse().unwrap()));
        assert!(lan.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one = Network::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(
            Network::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            Network::parse("2001:db8::/32")
                .unwrap()
                .contains("2001:db8::1".parse().unwrap())
        );
        for bad in ["10.0.0.0/33", "example.com", "10.0.0.0/x"] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patches_change_only_what_they_name_and_are_checked() {
        let settings = Settings {
            upstream: "http://127.0.0.1:8080".to_owned(),
            ..Settings::default()
        };
        let patched = settings
            .patched(br#"{"forward_statistics": true}"#)
            .unwrap();
        assert!(patched.forward_statistics);
        assert_eq!(patched.cache_max_entries, settings.cache_max_entries);
        for bad in [
            serde_json::json!({"cache_max_entries": 0}),
            serde_json::json!({"allowed_networks": ["nope"]}),
            serde_json::json!({"unknown": 1}),
            serde_json::json!({"enabled": "yes"}),
            serde_json::json!([1]),
        ] {
            assert!(
                settings.patched(bad.to_string().as_bytes()).is_err(),
                "{bad}"
            );
        }
    }
}
