//! The form of a proxy's managed settings ([`ManagedSettings`]), shared by the server's
//! Proxies page and the proxy's own settings page: filled in from the settings, read back
//! with the messages the API gives, its fields rendered with an error beside the one at
//! fault.

use maud::{Markup, html};
use repnet_protocol::ErrorCode;
use repnet_protocol::proxies::ManagedSettings;
use serde::Deserialize;

use crate::ApiError;

/// The fields as sent (and sent back, filled in, when refused). Check boxes are absent when
/// not ticked.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct ManagedForm {
    #[serde(default)]
    pub enabled: Option<String>,
    #[serde(default)]
    pub cache_max_entries: String,
    #[serde(default)]
    pub cache_max_megabytes: String,
    #[serde(default)]
    pub cache_max_ttl_seconds: String,
    #[serde(default)]
    pub allowed_networks: String,
    #[serde(default)]
    pub forward_statistics: Option<String>,
    #[serde(default)]
    pub require_device_key: Option<String>,
}

/// The settings' names an error message may start with, as `name:`.
pub const FIELDS: [&str; 4] = [
    "cache_max_entries",
    "cache_max_bytes",
    "cache_max_ttl_seconds",
    "allowed_networks",
];

impl ManagedForm {
    pub fn of(settings: &ManagedSettings) -> ManagedForm {
        let tick = |on: bool| on.then(|| "on".to_owned());
        ManagedForm {
            enabled: tick(settings.enabled),
            cache_max_entries: settings.cache_max_entries.to_string(),
            cache_max_megabytes: (settings.cache_max_bytes as f64 / f64::from(1 << 20)).to_string(),
            cache_max_ttl_seconds: settings.cache_max_ttl_seconds.to_string(),
            allowed_networks: settings.allowed_networks.join("\n"),
            forward_statistics: tick(settings.forward_statistics),
            require_device_key: tick(settings.require_device_key),
        }
    }

    /// The settings the form asks for, checked as the API checks them.
    pub fn settings(&self) -> Result<ManagedSettings, ApiError> {
        let invalid = |message: String| ApiError::bad_request(ErrorCode::InvalidSetting, message);
        let number = |field: &str, text: &str, allowed: &str| {
            text.trim().parse::<u64>().map_err(|_| {
                invalid(format!(
                    "{field}: {:?} is not a whole number; give one from {allowed}",
                    text.trim()
                ))
            })
        };
        let megabytes = self.cache_max_megabytes.trim();
        let cache_max_bytes = megabytes
            .parse::<f64>()
            .ok()
            .filter(|mb| mb.is_finite() && (1.0..=1_048_576.0).contains(mb))
            .map(|mb| (mb * f64::from(1 << 20)).round() as u64)
            .ok_or_else(|| {
                invalid(format!(
                    "cache_max_bytes: {megabytes:?} is not a size in MiB from 1 to 1048576"
                ))
            })?;
        let settings = ManagedSettings {
            enabled: self.enabled.is_some(),
            cache_max_entries: number(
                "cache_max_entries",
                &self.cache_max_entries,
                "1 to 100000000",
            )?,
            cache_max_bytes,
            cache_max_ttl_seconds: number(
                "cache_max_ttl_seconds",
                &self.cache_max_ttl_seconds,
                "0 (as the upstream says) to 2592000 (30 days)",
            )?,
            allowed_networks: self
                .allowed_networks
                .split(['\n', ','])
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .map(str::to_owned)
                .collect(),
            forward_statistics: self.forward_statistics.is_some(),
            require_device_key: self.require_device_key.is_some(),
        };
        settings
            .validate()
            .map_err(|(field, message)| invalid(format!("{field}: {message}")))?;
        Ok(settings)
    }

    /// The fields, their ids starting with `prefix`; `error` is shown beside the field its
    /// message names (`field: …`).
    pub fn fields(&self, prefix: &str, error: Option<&ApiError>) -> Markup {
        let id = |name: &str| format!("{prefix}-{name}");
        let error_for =
            |name: &str| error.filter(|error| error.message.starts_with(&format!("{name}:")));
        let text = |label: &str, name: &str, field: &str, value: &str, mode: &str| {
            let error = error_for(field);
            html! {
                label for=(id(name)) { (label) }
                input #(id(name)) name=(name) value=(value) inputmode=(mode)
                    aria-invalid=[error.map(|_| "true")]
                    aria-describedby=[error.map(|_| id(&format!("{name}-error")))];
                @if let Some(error) = error { p #(id(&format!("{name}-error"))) .error role="alert" { (error.message) } }
            }
        };
        let networks_error = error_for("allowed_networks");
        html! {
            label { input type="checkbox" name="enabled" checked[self.enabled.is_some()]; " Enabled (when off, devices are told to connect directly)" }
            (text("Cache size, in answers", "cache_max_entries", "cache_max_entries", &self.cache_max_entries, "numeric"))
            (text("Cache size, in MiB", "cache_max_megabytes", "cache_max_bytes", &self.cache_max_megabytes, "decimal"))
            (text("Cache lifetime, in seconds (0: as long as the upstream's answers say)", "cache_max_ttl_seconds", "cache_max_ttl_seconds", &self.cache_max_ttl_seconds, "numeric"))
            label for=(id("allowed_networks")) { "Allowed networks, one per line (empty: every address)" }
            textarea #(id("allowed_networks")) name="allowed_networks" rows="3" cols="40"
                aria-invalid=[networks_error.map(|_| "true")]
                aria-describedby=[networks_error.map(|_| id("allowed_networks-error"))] { (self.allowed_networks) }
            @if let Some(error) = networks_error { p #(id("allowed_networks-error")) .error role="alert" { (error.message) } }
            label { input type="checkbox" name="forward_statistics" checked[self.forward_statistics.is_some()]; " Forward devices' statistics upstream" }
            label { input type="checkbox" name="require_device_key" checked[self.require_device_key.is_some()]; " Devices must send a device key" }
        }
    }
}

/// Whether `error` is about one of the form's fields (shown beside it) rather than the form.
pub fn names_a_field(error: &ApiError) -> bool {
    FIELDS
        .iter()
        .any(|field| error.message.starts_with(&format!("{field}:")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_form_reads_back_the_settings_it_shows() {
        let settings = ManagedSettings {
            enabled: false,
            cache_max_entries: 5000,
            cache_max_bytes: 64 << 20,
            cache_max_ttl_seconds: 120,
            allowed_networks: vec!["10.0.0.0/8".to_owned(), "::1".to_owned()],
            forward_statistics: true,
            require_device_key: false,
        };
        assert_eq!(ManagedForm::of(&settings).settings().unwrap(), settings);
        let bad = ManagedForm {
            cache_max_megabytes: "lots".to_owned(),
            ..ManagedForm::of(&settings)
        };
        let error = bad.settings().unwrap_err();
        assert!(
            error.message.starts_with("cache_max_bytes:"),
            "{}",
            error.message
        );
        let page = bad.fields("p", Some(&error)).into_string();
        assert!(
            page.contains(r#"id="p-cache_max_megabytes-error""#),
            "{page}"
        );
    }
}
