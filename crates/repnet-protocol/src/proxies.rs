//! What a proxy and the server it pulls from tell each other (`POST /v1/proxies/report`):
//! the proxy's name, version, health and cache counts, and the settings it runs with; the
//! server answers with the settings its administrator chose for that proxy, which the proxy
//! applies and reports back. The settings are checked here, by the proxy and the server
//! alike.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A proxy in `GET /v1/admin/proxies`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProxyEntry {
    /// `key_id/name`: the licence key's id and the proxy's name.
    pub id: String,
    pub key_id: String,
    pub name: String,
    pub version: String,
    /// When it first and last reported (RFC 3339).
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub upstream_ok: bool,
    pub lookups: u64,
    pub cache_hits: u64,
    pub cache_entries: u64,
    /// Changes of this server's log the proxy has not followed yet, when it follows it.
    pub lag: Option<u64>,
    /// What it runs with, as it last reported.
    pub applied: AppliedSettings,
    /// The settings set for it here, and their revision (0: none set).
    pub revision: u64,
    pub settings: Option<ManagedSettings>,
}

/// `GET /v1/admin/proxies`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProxyList {
    pub proxies: Vec<ProxyEntry>,
}

/// Longest proxy name.
pub const MAX_NAME_CHARS: usize = 64;

/// Checks a proxy's name: 1 to 64 letters, digits, `.`, `-` or `_`.
pub fn check_proxy_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "{name:?}: a proxy's name is 1 to {MAX_NAME_CHARS} characters"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!(
            "{name:?}: {bad:?} is not allowed in a proxy's name; use letters, digits, '.', '-' and '_'"
        ));
    }
    Ok(())
}

/// The settings of a proxy that the administrator of the server it pulls from may set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ManagedSettings {
    /// When false, devices get `503 proxy_disabled` and fall back to a direct connection.
    pub enabled: bool,
    /// Most answers kept in the cache (1 to 100,000,000).
    pub cache_max_entries: u64,
    /// About the most bytes the cached answers hold (1 MiB to 1 TiB).
    pub cache_max_bytes: u64,
    /// Longest time an answer stays in the cache, in seconds (0: as long as the upstream's
    /// answer says; at most 30 days).
    pub cache_max_ttl_seconds: u64,
    /// Networks devices may connect from (CIDR); empty admits every address.
    pub allowed_networks: Vec<String>,
    /// Forward devices' statistics upstream.
    pub forward_statistics: bool,
    /// Devices must send a device key registered on the proxy.
    pub require_device_key: bool,
}

/// The longest cache lifetime a proxy may be given.
pub const MAX_CACHE_TTL_SECONDS: u64 = 30 * 86_400;

impl ManagedSettings {
    /// Checks every setting; the error names the setting and what is allowed.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(1..=100_000_000).contains(&self.cache_max_entries) {
            return Err((
                "cache_max_entries",
                format!("from 1 to 100000000; got {}", self.cache_max_entries),
            ));
        }
        if !((1 << 20)..=(1 << 40)).contains(&self.cache_max_bytes) {
            return Err((
                "cache_max_bytes",
                format!(
                    "from 1048576 (1 MiB) to 1099511627776 (1 TiB); got {}",
                    self.cache_max_bytes
                ),
            ));
        }
        if self.cache_max_ttl_seconds > MAX_CACHE_TTL_SECONDS {
            return Err((
                "cache_max_ttl_seconds",
                format!(
                    "from 0 (as the upstream says) to {MAX_CACHE_TTL_SECONDS} (30 days); got {}",
                    self.cache_max_ttl_seconds
                ),
            ));
        }
        if self.allowed_networks.len() > 1000 {
            return Err((
                "allowed_networks",
                format!("at most 1000 networks; got {}", self.allowed_networks.len()),
            ));
        }
        for network in &self.allowed_networks {
            Network::parse(network).map_err(|error| ("allowed_networks", error.to_string()))?;
        }
        Ok(())
    }
}

/// What a proxy applied of the settings it was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppliedSettings {
    /// The revision of the server's settings it applied; 0 when it was never sent any.
    pub revision: u64,
    /// The settings it runs with now.
    pub settings: ManagedSettings,
    /// Why it could not apply the latest revision, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `POST /v1/proxies/report`: a proxy says who it is and how it does, on every poll of the
/// change log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyReport {
    /// The proxy's name (its `name` setting), unique among the proxies of one licence key.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Whether its upstream answered its last request.
    pub upstream_ok: bool,
    /// Lookups answered since it started, and those answered from its cache.
    pub lookups: u64,
    pub cache_hits: u64,
    /// Answers in its cache now.
    pub cache_entries: u64,
    /// The change-log sequence it has followed to, if it follows one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    pub applied: AppliedSettings,
}

/// The answer to a [`ProxyReport`]: the settings the administrator set for the proxy, if
/// any, and their revision (it applies a revision above the one it applied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProxyInstructions {
    pub revision: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<ManagedSettings>,
}

/// A text that is not a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("{0:?} is not a network: write 10.0.0.0/8 or 2001:db8::/32")]
    Address(String),
    #[error("{network:?}: the prefix length is 0 to {max}")]
    Prefix { network: String, max: u8 },
}

/// A network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn parse(text: &str) -> Result<Network, NetworkError> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address
            .trim()
            .parse()
            .map_err(|_| NetworkError::Address(text.to_owned()))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= max)
                .ok_or_else(|| NetworkError::Prefix {
                    network: text.to_owned(),
                    max,
                })?,
        };
        Ok(Network { address, prefix })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        match (self.address, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_and_plain() {
        assert!(check_proxy_name("branch-office_1.lan").is_ok());
        assert!(check_proxy_name("").is_err());
        assert!(check_proxy_name("a b").unwrap_err().contains("' '"));
        assert!(check_proxy_name("<script>").is_err());
        assert!(check_proxy_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn settings_name_the_field_that_is_wrong() {
        let good = ManagedSettings {
            enabled: true,
            cache_max_entries: 1000,
            cache_max_bytes: 1 << 20,
            cache_max_ttl_seconds: 0,
            allowed_networks: vec!["10.0.0.0/8".to_owned()],
            forward_statistics: false,
            require_device_key: false,
        };
        assert!(good.validate().is_ok());
        let bad = ManagedSettings {
            allowed_networks: vec!["10.0.0.0/33".to_owned()],
            ..good.clone()
        };
        assert_eq!(bad.validate().unwrap_err().0, "allowed_networks");
        let bad = ManagedSettings {
            cache_max_ttl_seconds: MAX_CACHE_TTL_SECONDS + 1,
            ..good
        };
        assert_eq!(bad.validate().unwrap_err().0, "cache_max_ttl_seconds");
    }
}
