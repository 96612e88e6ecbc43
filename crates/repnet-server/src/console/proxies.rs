//! Proxies: those that pull from this server, as they last reported (version, health, cache
//! hit rate, lag, the settings they run with), and a form per proxy to change its settings,
//! which it applies on its next poll and reports back — the "KSN Proxy settings in the
//! Administration Server properties" of the model system.

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use repnet_http::ApiError;
use repnet_http::console::{Session, see_other};
use repnet_protocol::ErrorCode;
use repnet_protocol::proxies::{ManagedSettings, ProxyEntry};
use serde::Deserialize;

use super::{CsrfForm, Pages, SignedForm, SignedIn, failure, page};
use repnet_http::console::chart::share;

/// The settings form as sent (and sent back, filled in, when it is refused). Check boxes
/// are absent when not ticked.
#[derive(Debug, Default, Deserialize)]
pub(super) struct SettingsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    enabled: Option<String>,
    #[serde(default)]
    cache_max_entries: String,
    #[serde(default)]
    cache_max_megabytes: String,
    #[serde(default)]
    cache_max_ttl_seconds: String,
    #[serde(default)]
    allowed_networks: String,
    #[serde(default)]
    forward_statistics: Option<String>,
    #[serde(default)]
    require_device_key: Option<String>,
}

impl CsrfForm for SettingsForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

impl SettingsForm {
    fn of(id: &str, settings: &ManagedSettings) -> SettingsForm {
        let tick = |on: bool| on.then(|| "on".to_owned());
        SettingsForm {
            csrf: String::new(),
            id: id.to_owned(),
            enabled: tick(settings.enabled),
            cache_max_entries: settings.cache_max_entries.to_string(),
            cache_max_megabytes: (settings.cache_max_bytes as f64 / f64::from(1 << 20)).to_string(),
            cache_max_ttl_seconds: settings.cache_max_ttl_seconds.to_string(),
            allowed_networks: settings.allowed_networks.join("\n"),
            forward_statistics: tick(settings.forward_statistics),
            require_device_key: tick(settings.require_device_key),
        }
    }

    /// The settings the form asks for, read with the messages the API gives.
    fn settings(&self) -> Result<ManagedSettings, ApiError> {
        let number = |field: &str, text: &str| {
            text.trim().parse::<u64>().map_err(|_| {
                ApiError::bad_request(
                    ErrorCode::InvalidSetting,
                    format!("{field}: {:?} is not a whole number", text.trim()),
                )
            })
        };
        let megabytes = self.cache_max_megabytes.trim();
        let cache_max_bytes = megabytes
            .parse::<f64>()
            .ok()
            .filter(|mb| mb.is_finite() && *mb >= 0.0 && *mb <= 1_048_576.0)
            .map(|mb| (mb * f64::from(1 << 20)).round() as u64)
            .ok_or_else(|| {
                ApiError::bad_request(
                    ErrorCode::InvalidSetting,
                    format!(
                        "cache_max_bytes: {megabytes:?} is not a size in MiB from 1 to 1048576"
                    ),
                )
            })?;
        Ok(ManagedSettings {
            enabled: self.enabled.is_some(),
            cache_max_entries: number("cache_max_entries", &self.cache_max_entries)?,
            cache_max_bytes,
            cache_max_ttl_seconds: number("cache_max_ttl_seconds", &self.cache_max_ttl_seconds)?,
            allowed_networks: self
                .allowed_networks
                .split(['\n', ','])
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .map(str::to_owned)
                .collect(),
            forward_statistics: self.forward_statistics.is_some(),
            require_device_key: self.require_device_key.is_some(),
        })
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Done {
    #[serde(default)]
    saved: String,
}

/// `GET /console/proxies`.
pub(super) async fn show(
    axum::extract::State((state, console)): Pages,
    SignedIn(session): SignedIn,
    done: Result<Query<Done>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let saved = done.map(|Query(done)| done.saved).unwrap_or_default();
    let body = listing(&state, &session, &saved, None).await;
    page(
        &console,
        &session,
        "/console/proxies",
        "Proxies",
        StatusCode::OK,
        body,
    )
}

/// `POST /console/proxies`: sets a proxy's settings, as
/// `PUT /v1/admin/proxies/{key_id}/{name}/settings` does.
pub(super) async fn save(
    axum::extract::State((state, console)): Pages,
    SignedForm(session, form): SignedForm<SettingsForm>,
) -> Response {
    let result = form
        .settings()
        .and_then(|settings| crate::api::proxies::set_settings(&state, &form.id, settings));
    match result {
        Ok(_) => see_other(&format!(
            "/console/proxies?saved={}",
            super::feeds::url_component(&form.id)
        )),
        Err(error) => {
            let status = error.status;
            let body = listing(&state, &session, "", Some((&form, &error))).await;
            page(
                &console,
                &session,
                "/console/proxies",
                "Proxies",
                status,
                body,
            )
        }
    }
}

/// Every proxy with its form; `refused` is a form sent back with its error.
async fn listing(
    state: &crate::AppState,
    session: &Session,
    saved: &str,
    refused: Option<(&SettingsForm, &ApiError)>,
) -> Markup {
    let proxies = crate::api::proxies::list(state).await.proxies;
    let now = repnet_runtime::now().0;
    html! {
        @if !saved.is_empty() {
            p.notice role="status" { "Settings saved for " strong { (saved) } ": the proxy applies them on its next poll (within seconds) and reports back below." }
        }
        @if let Some((form, error)) = refused {
            @if !proxies.iter().any(|proxy| proxy.id == form.id) { (failure(error)) }
        }
        @if proxies.is_empty() {
            p { "No proxy has reported to this server yet. A " code { "repnet proxy" } " whose upstream is this server reports on every poll of the change log, with its licence key and its " code { "name" } "; it appears here then." }
        } @else {
            div.table-wrap { table {
                thead { tr {
                    th scope="col" { "Proxy" } th scope="col" { "Version" } th scope="col" { "Last report" }
                    th scope="col" { "Health" } th scope="col" { "Cache hit rate" } th scope="col" { "Lag" } th scope="col" { "Settings" }
                } }
                tbody {
                    @for proxy in &proxies {
                        tr {
                            td { strong { (proxy.name) } br; span.hint { "key " code { (proxy.key_id) } } }
                            td { (proxy.version) }
                            td { (proxy.last_seen.as_deref().unwrap_or("—")) (silence(proxy, now)) }
                            td { @if proxy.upstream_ok { "upstream reachable" } @else { strong { "upstream failing" } } }
                            td { (share(proxy.cache_hits, proxy.lookups)) br; span.hint { (proxy.cache_hits) " of " (proxy.lookups) " lookups; " (proxy.cache_entries) " cached" } }
                            td { @match proxy.lag { Some(lag) => { (lag) " changes" }, None => "not following" } }
                            td { (applied(proxy)) }
                        }
                    }
                }
            } }
            @for proxy in &proxies {
                (settings_form(session, proxy, refused.filter(|(form, _)| form.id == proxy.id)))
            }
        }
    }
}

/// How long since the proxy's last report, when that is long.
fn silence(proxy: &ProxyEntry, now: u64) -> Markup {
    let last = proxy
        .last_seen
        .as_deref()
        .and_then(|text| repnet_protocol::parse_time(text).ok());
    html! {
        @if let Some(last) = last {
            @let quiet = now.saturating_sub(last.0);
            @if quiet > 60 { br; strong { "silent for " (super::status::duration(quiet)) } }
        }
    }
}

/// What the proxy runs with, against what was set for it.
fn applied(proxy: &ProxyEntry) -> Markup {
    html! {
        @if let Some(error) = &proxy.applied.error {
            span.error { "revision " (proxy.revision) " not applied: " (error) }
        } @else if proxy.revision == 0 {
            "its own (none set here)"
        } @else if proxy.applied.revision == proxy.revision {
            "revision " (proxy.revision) " applied"
        } @else {
            strong { "revision " (proxy.revision) " waiting for the proxy's next poll" }
        }
        br;
        span.hint {
            @if proxy.applied.settings.enabled { "enabled" } @else { strong { "disabled" } }
            " · cache " (proxy.applied.settings.cache_max_entries) " entries"
        }
    }
}

fn settings_form(
    session: &Session,
    proxy: &ProxyEntry,
    refused: Option<(&SettingsForm, &ApiError)>,
) -> Markup {
    let current = proxy.settings.as_ref().unwrap_or(&proxy.applied.settings);
    let fresh = SettingsForm::of(&proxy.id, current);
    let (form, error) = match refused {
        Some((form, error)) => (form, Some(error)),
        None => (&fresh, None),
    };
    // Which field the error is about: its message starts with the field's name.
    let field = error.and_then(|error| {
        [
            "cache_max_entries",
            "cache_max_bytes",
            "cache_max_ttl_seconds",
            "allowed_networks",
        ]
        .into_iter()
        .find(|field| error.message.starts_with(&format!("{field}:")))
    });
    let error_for = |name: &str| error.filter(|_| field == Some(name));
    // Ids unique on the page: the proxy's position would change; its id is text.
    let slug: String = proxy
        .id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let id = |name: &str| format!("{slug}-{name}");
    html! {
        section aria-labelledby=(id("heading")) {
            h2 #(id("heading")) { "Settings of " (proxy.name) }
            @if let Some(error) = error.filter(|_| field.is_none()) { (failure(error)) }
            form method="post" action="/console/proxies" {
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name="id" value=(proxy.id);
                label { input type="checkbox" name="enabled" checked[form.enabled.is_some()]; " Enabled (when off, devices are told to connect directly)" }
                label for=(id("entries")) { "Cache size, in answers" }
                input #(id("entries")) name="cache_max_entries" value=(form.cache_max_entries) inputmode="numeric"
                    aria-describedby=[error_for("cache_max_entries").map(|_| id("entries-error"))];
                @if let Some(error) = error_for("cache_max_entries") { p #(id("entries-error")) .error role="alert" { (error.message) } }
                label for=(id("bytes")) { "Cache size, in MiB" }
                input #(id("bytes")) name="cache_max_megabytes" value=(form.cache_max_megabytes) inputmode="decimal"
                    aria-describedby=[error_for("cache_max_bytes").map(|_| id("bytes-error"))];
                @if let Some(error) = error_for("cache_max_bytes") { p #(id("bytes-error")) .error role="alert" { (error.message) } }
                label for=(id("ttl")) { "Cache lifetime, in seconds (0: as long as this server's answers say)" }
                input #(id("ttl")) name="cache_max_ttl_seconds" value=(form.cache_max_ttl_seconds) inputmode="numeric"
                    aria-describedby=[error_for("cache_max_ttl_seconds").map(|_| id("ttl-error"))];
                @if let Some(error) = error_for("cache_max_ttl_seconds") { p #(id("ttl-error")) .error role="alert" { (error.message) } }
                label for=(id("networks")) { "Allowed networks, one per line (empty: every address)" }
                textarea #(id("networks")) name="allowed_networks" rows="3" cols="40"
                    aria-describedby=[error_for("allowed_networks").map(|_| id("networks-error"))] { (form.allowed_networks) }
                @if let Some(error) = error_for("allowed_networks") { p #(id("networks-error")) .error role="alert" { (error.message) } }
                label { input type="checkbox" name="forward_statistics" checked[form.forward_statistics.is_some()]; " Forward devices' statistics to this server" }
                label { input type="checkbox" name="require_device_key" checked[form.require_device_key.is_some()]; " Devices must send a device key" }
                p { button type="submit" { "Save settings for " (proxy.name) } }
            }
        }
    }
}
