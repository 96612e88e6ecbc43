//! Proxies: those that pull from this server, as they last reported (version, health, cache
//! hit rate, lag, the settings they run with), and a form per proxy to change its settings,
//! which it applies on its next poll and reports back — the "KSN Proxy settings in the
//! Administration Server properties" of the model system.

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use repnet_http::ApiError;
use repnet_http::console::proxy_form::{ManagedForm, names_a_field};
use repnet_http::console::{Session, see_other};
use repnet_protocol::proxies::ProxyEntry;
use serde::Deserialize;

use super::{CsrfForm, Pages, SignedForm, SignedIn, failure, page};
use repnet_http::console::chart::share;

/// The settings form as sent (and sent back, filled in, when it is refused).
#[derive(Debug, Default, Deserialize)]
pub(super) struct SettingsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
    #[serde(flatten)]
    settings: ManagedForm,
}

impl CsrfForm for SettingsForm {
    fn csrf(&self) -> &str {
        &self.csrf
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
        .settings
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
    let fresh = ManagedForm::of(current);
    let (form, error) = match refused {
        Some((form, error)) => (&form.settings, Some(error)),
        None => (&fresh, None),
    };
    // Ids unique on the page: the proxy's id, as text fit for an id.
    let slug: String = proxy
        .id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    html! {
        section aria-labelledby=(format!("{slug}-heading")) {
            h2 #(format!("{slug}-heading")) { "Settings of " (proxy.name) }
            @if let Some(error) = error.filter(|error| !names_a_field(error)) { (failure(error)) }
            form method="post" action="/console/proxies" {
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name="id" value=(proxy.id);
                (form.fields(&slug, error))
                p { button type="submit" { "Save settings for " (proxy.name) } }
            }
        }
    }
}
