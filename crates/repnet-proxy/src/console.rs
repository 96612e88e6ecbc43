//! The proxy's own administration console (`/console` on `repnet proxy`): its status and
//! cache (emptied on demand) and its settings, behind `repnet_http::console`'s sign-in with
//! the proxy's admin token. Settings change through [`State::change_settings`], the path of
//! `PATCH /v1/admin/settings` and of the upstream's managed settings.

use std::sync::{Arc, PoisonError};

use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use repnet_http::ApiError;
use repnet_http::console::chart::share;
use repnet_http::console::proxy_form::{ManagedForm, names_a_field};
use repnet_http::console::{
    Console, CsrfForm, NavLink, Session, SignedForm, SignedIn, failure, frame, html_page, see_other,
};
use repnet_protocol::ErrorCode;
use serde::Deserialize;

use crate::State;

const NAV: &[NavLink] = &[
    ("/console/status", "Status and cache"),
    ("/console/settings", "Settings"),
];

type PagesState = (Arc<State>, Arc<Console>);
type Pages = axum::extract::State<PagesState>;

/// The console's routes; with the admin API off every page sends the browser to the
/// sign-in page, which says the console is off.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(state: Arc<State>, tls: bool) -> Router<S> {
    let console = Arc::new(Console::new(Arc::clone(&state.admin), tls, "repnet proxy"));
    Router::new()
        .route(
            "/console",
            axum::routing::get(|| async { see_other("/console/status") }),
        )
        .route("/console/status", axum::routing::get(status))
        .route("/console/cache/empty", axum::routing::post(empty_cache))
        .route(
            "/console/settings",
            axum::routing::get(show_settings).post(save_settings),
        )
        .with_state((state, Arc::clone(&console)))
        .merge(repnet_http::console::routes(console))
}

fn page(
    console: &Console,
    session: &Session,
    current: &str,
    title: &str,
    status: StatusCode,
    body: Markup,
) -> Response {
    html_page(status, frame(console, NAV, current, session, title, body))
}

#[derive(Debug, Default, Deserialize)]
struct Done {
    #[serde(default)]
    done: String,
}

/// `GET /console/status`.
async fn status(
    axum::extract::State((state, console)): Pages,
    SignedIn(session): SignedIn,
    done: Result<Query<Done>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let done = done.map(|Query(done)| done.done).unwrap_or_default();
    let (hits, misses, stale) = (
        state.metrics.hits.get(),
        state.metrics.misses.get(),
        state.metrics.stale.get(),
    );
    let settings = state.settings();
    let health = state.upstream().health();
    let cache = state.cache();
    let position = state
        .position
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let workers = repnet_http::admin::worker_statuses(&state.workers);
    let managed = workers
        .iter()
        .find(|worker| worker.name == "upstream-report")
        .and_then(|worker| worker.progress.clone());
    let body = html! {
        @match done.as_str() {
            "emptied" => p.notice role="status" { "Cache emptied: the next questions go upstream." },
            _ => {}
        }
        dl {
            dt { "Version" } dd { (env!("CARGO_PKG_VERSION")) }
            dt { "Devices" } dd { @if settings.enabled { "served" } @else { strong { "disabled" } ": told to connect directly" } }
            dt { "Upstream" } dd {
                code { (settings.upstream) } " — "
                @if health.healthy { "answering" } @else { strong { "failing" } }
                @if let Some(refused) = &health.refused { br; span.error { "refuses this proxy: " (refused) } }
                @else if let Some(error) = &health.last_error { br; span.hint { "last error: " (error) } }
            }
            dt { "Managed by the upstream" } dd {
                @if state.config.managed_by_upstream { (managed.as_deref().unwrap_or("not reported yet")) }
                @else { "no (managed_by_upstream = false)" }
            }
            dt { "Change log" } dd {
                @match &position {
                    Some((log_id, sequence)) => { "at " (sequence) " of " code { (log_id) } }
                    None => "not following yet",
                }
            }
        }
        h2 { "Cache" }
        dl {
            dt { "Answers" } dd { (cache.len()) " of at most " (settings.cache_max_entries) }
            dt { "Size" } dd { (format!("{:.1}", cache.bytes() as f64 / f64::from(1 << 20))) " MiB of at most " (format!("{:.1}", settings.cache_max_bytes as f64 / f64::from(1 << 20))) " MiB" }
            dt { "Lifetime" } dd {
                @if settings.cache_max_ttl_seconds == 0 { "as long as the upstream's answers say" }
                @else { "at most " (settings.cache_max_ttl_seconds) " s" }
            }
            dt { "Hit rate" } dd { (share(hits, hits + misses)) " (" (hits) " hits, " (misses) " misses, " (stale) " stale answers since the start)" }
        }
        form method="post" action="/console/cache/empty" {
            input type="hidden" name="csrf" value=(session.csrf);
            button type="submit" { "Empty the cache" }
        }
        h2 { "Background work" }
        (repnet_http::console::workers_table(&workers))
    };
    page(
        &console,
        &session,
        "/console/status",
        "Status and cache",
        StatusCode::OK,
        body,
    )
}

#[derive(Debug, Deserialize)]
struct EmptyForm {
    #[serde(default)]
    csrf: String,
}

impl CsrfForm for EmptyForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /console/cache/empty`.
async fn empty_cache(
    axum::extract::State((state, _)): Pages,
    SignedForm(_, _): SignedForm<EmptyForm>,
) -> Response {
    let cache = state.cache();
    let dropped = cache.len();
    cache.clear();
    tracing::info!(dropped, "cache emptied from the console");
    see_other("/console/status?done=emptied")
}

/// The settings form: the upstream and the coalescing window beside the settings an
/// upstream may manage.
#[derive(Debug, Default, Deserialize)]
struct SettingsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    upstream: String,
    #[serde(default)]
    coalescing_window_ms: String,
    #[serde(flatten)]
    managed: ManagedForm,
}

impl CsrfForm for SettingsForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `GET /console/settings`.
async fn show_settings(
    axum::extract::State((state, console)): Pages,
    SignedIn(session): SignedIn,
    done: Result<Query<Done>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let saved = done.is_ok_and(|Query(done)| done.done == "saved");
    let settings = state.settings();
    let form = SettingsForm {
        csrf: String::new(),
        upstream: settings.upstream.clone(),
        coalescing_window_ms: settings.coalescing_window_ms.to_string(),
        managed: ManagedForm::of(&settings.managed()),
    };
    let body = settings_page(&state, &session, &form, None, saved);
    page(
        &console,
        &session,
        "/console/settings",
        "Settings",
        StatusCode::OK,
        body,
    )
}

/// `POST /console/settings`: changes the settings as `PATCH /v1/admin/settings` does.
async fn save_settings(
    axum::extract::State((state, console)): Pages,
    SignedForm(session, form): SignedForm<SettingsForm>,
) -> Response {
    let result = match form.managed.settings() {
        Err(error) => Err(error),
        Ok(managed) => {
            let window = form.coalescing_window_ms.trim().parse::<u64>().map_err(|_| {
                ApiError::bad_request(
                    ErrorCode::InvalidSetting,
                    format!("invalid setting coalescing_window_ms: {:?} is not a whole number of milliseconds; give one from 0 to 1000", form.coalescing_window_ms.trim()),
                )
            });
            match window {
                Err(error) => Err(error),
                Ok(window) => {
                    let upstream = form.upstream.trim().to_owned();
                    state
                        .change_settings(|current| {
                            Ok(crate::Settings {
                                upstream,
                                coalescing_window_ms: window,
                                ..current.with_managed(&managed)
                            })
                        })
                        .await
                }
            }
        }
    };
    match result {
        Ok(_) => see_other("/console/settings?done=saved"),
        Err(error) => {
            let body = settings_page(&state, &session, &form, Some(&error), false);
            page(
                &console,
                &session,
                "/console/settings",
                "Settings",
                error.status,
                body,
            )
        }
    }
}

fn settings_page(
    state: &State,
    session: &Session,
    form: &SettingsForm,
    error: Option<&ApiError>,
    saved: bool,
) -> Markup {
    // The proxy's own checks word an error `invalid setting KEY: …`; the form's own `KEY: …`.
    let about = |key: &str| {
        error.filter(|error| {
            error.message.starts_with(&format!("{key}:"))
                || error
                    .message
                    .starts_with(&format!("invalid setting {key}:"))
        })
    };
    let upstream_error = about("upstream");
    let window_error = about("coalescing_window_ms");
    let general = error.filter(|error| {
        !names_a_field(error) && upstream_error.is_none() && window_error.is_none()
    });
    html! {
        @if saved { p.notice role="status" { "Settings saved and applied; they are kept for the next start." } }
        @if state.config.managed_by_upstream {
            p.hint { "The upstream's administrator may set this proxy's settings too (its console's Proxies page); their next change replaces what is set here, except the upstream and the coalescing window." }
        }
        @if let Some(error) = general { (failure(error)) }
        form method="post" action="/console/settings" {
            input type="hidden" name="csrf" value=(session.csrf);
            label for="upstream" { "Upstream server" }
            input #upstream name="upstream" value=(form.upstream) size="50" required
                aria-invalid=[upstream_error.map(|_| "true")]
                aria-describedby=[upstream_error.map(|_| "upstream-error")];
            @if let Some(error) = upstream_error { p #upstream-error .error role="alert" { (error.message) } }
            label for="coalescing_window_ms" { "Coalescing window, in milliseconds (0 to 1000)" }
            input #coalescing_window_ms name="coalescing_window_ms" value=(form.coalescing_window_ms) inputmode="numeric"
                aria-invalid=[window_error.map(|_| "true")]
                aria-describedby=[window_error.map(|_| "coalescing_window_ms-error")];
            @if let Some(error) = window_error { p #coalescing_window_ms-error .error role="alert" { (error.message) } }
            (form.managed.fields("proxy", error))
            p { button type="submit" { "Save settings" } }
        }
    }
}
