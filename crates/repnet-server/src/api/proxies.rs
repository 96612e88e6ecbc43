//! The proxies that pull from this server: their reports (`POST /v1/proxies/report`, with
//! the proxy's licence key) and, for the administrator, the list and their settings
//! (`/v1/admin/proxies`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use repnet_http::ApiError;
use repnet_http::api::{JsonBody, json_response};
use repnet_model::Timestamp;
use repnet_protocol::ErrorCode;
use repnet_protocol::proxies::{ManagedSettings, ProxyEntry, ProxyList, ProxyReport};

use crate::AppState;
use crate::proxies::{Proxy, SetError};

/// Longest version and error texts a proxy may report.
const MAX_VERSION_CHARS: usize = 64;
const MAX_ERROR_CHARS: usize = 1000;

/// A proxy's report: who it is, how it does, what it runs with → the settings set for it.
#[utoipa::path(post, path = "/v1/proxies/report", tag = "sync",
    request_body = repnet_protocol::proxies::ProxyReport,
    responses((status = 200, body = repnet_protocol::proxies::ProxyInstructions, description = "the settings the administrator set for this proxy, if any"),
              (status = 400, body = repnet_protocol::ErrorBody),
              (status = 401, body = repnet_protocol::ErrorBody)),
    security(("licence_key" = [])))]
pub(crate) async fn post_report(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    JsonBody(report): JsonBody<ProxyReport>,
) -> Result<Response, ApiError> {
    check(&report)?;
    let now = repnet_store::now();
    // The licence layer let the request through with a registered key.
    let key_id = state
        .licences
        .key_id(&headers, now)
        .unwrap_or_else(|| "none".to_owned());
    let instructions = state.proxies.report(&key_id, report, now.0);
    Ok(json_response(
        StatusCode::OK,
        repnet_protocol::to_json(&instructions),
    ))
}

/// What a report must be: a proper name, short texts, settings a proxy can run with.
fn check(report: &ProxyReport) -> Result<(), ApiError> {
    let bad = |field: &str, message: String| {
        ApiError::bad_request(ErrorCode::InvalidRequest, format!("{field}: {message}"))
    };
    repnet_protocol::proxies::check_proxy_name(&report.name).map_err(|m| bad("name", m))?;
    if report.version.chars().count() > MAX_VERSION_CHARS {
        return Err(bad(
            "version",
            format!("at most {MAX_VERSION_CHARS} characters"),
        ));
    }
    if report
        .applied
        .error
        .as_ref()
        .is_some_and(|error| error.chars().count() > MAX_ERROR_CHARS)
    {
        return Err(bad(
            "applied.error",
            format!("at most {MAX_ERROR_CHARS} characters"),
        ));
    }
    report
        .applied
        .settings
        .validate()
        .map_err(|(field, message)| bad(&format!("applied.settings.{field}"), message))
}

/// The proxies that reported to this server.
#[utoipa::path(get, path = "/v1/admin/proxies", tag = "admin",
    responses((status = 200, body = repnet_protocol::proxies::ProxyList),
              (status = 401, body = repnet_protocol::ErrorBody)),
    security(("admin_token" = [])))]
pub(crate) async fn list_proxies(State(state): State<Arc<AppState>>) -> Response {
    json_response(
        StatusCode::OK,
        repnet_protocol::to_json(&list(&state).await),
    )
}

/// The proxies as the API and the console show them.
pub(crate) async fn list(state: &AppState) -> ProxyList {
    let sequence = state
        .store
        .sync_state()
        .await
        .ok()
        .map(|sync| sync.sequence);
    ProxyList {
        proxies: state
            .proxies
            .list()
            .into_iter()
            .map(|proxy| entry(proxy, sequence))
            .collect(),
    }
}

fn entry(proxy: Proxy, sequence: Option<u64>) -> ProxyEntry {
    let id = proxy.id();
    let report = proxy.report;
    ProxyEntry {
        id,
        key_id: proxy.key_id,
        lag: report
            .position
            .zip(sequence)
            .map(|(position, sequence)| sequence.saturating_sub(position)),
        name: report.name,
        version: report.version,
        first_seen: repnet_protocol::rfc3339(Timestamp(proxy.first_seen)),
        last_seen: repnet_protocol::rfc3339(Timestamp(proxy.last_seen)),
        upstream_ok: report.upstream_ok,
        lookups: report.lookups,
        cache_hits: report.cache_hits,
        cache_entries: report.cache_entries,
        applied: report.applied,
        revision: proxy.revision,
        settings: proxy.settings,
    }
}

/// Sets a proxy's settings; it applies them on its next report.
#[utoipa::path(put, path = "/v1/admin/proxies/{key_id}/{name}/settings", tag = "admin",
    params(("key_id" = String, Path, description = "the id of the proxy's licence key"),
           ("name" = String, Path, description = "the proxy's name")),
    request_body = repnet_protocol::proxies::ManagedSettings,
    responses((status = 200, body = repnet_protocol::proxies::ProxyEntry, description = "the proxy, with the settings it will apply"),
              (status = 400, body = repnet_protocol::ErrorBody),
              (status = 401, body = repnet_protocol::ErrorBody),
              (status = 404, body = repnet_protocol::ErrorBody)),
    security(("admin_token" = [])))]
pub(crate) async fn put_settings(
    State(state): State<Arc<AppState>>,
    Path((key_id, name)): Path<(String, String)>,
    JsonBody(settings): JsonBody<ManagedSettings>,
) -> Result<Response, ApiError> {
    let id = format!("{key_id}/{name}");
    set_settings(&state, &id, settings)?;
    let proxy = list(&state)
        .await
        .proxies
        .into_iter()
        .find(|proxy| proxy.id == id)
        .ok_or_else(|| unknown(&id))?;
    Ok(json_response(
        StatusCode::OK,
        repnet_protocol::to_json(&proxy),
    ))
}

/// Sets the settings of the proxy `id` (`key_id/name`), as the API and the console do.
pub(crate) fn set_settings(
    state: &AppState,
    id: &str,
    settings: ManagedSettings,
) -> Result<u64, ApiError> {
    let revision = state
        .proxies
        .set(id, settings)
        .map_err(|error| match error {
            SetError::Unknown(id) => unknown(&id),
            SetError::Invalid(field, message) => {
                ApiError::bad_request(ErrorCode::InvalidSetting, format!("{field}: {message}"))
            }
        })?;
    tracing::info!(proxy = %id, revision, "proxy settings set; the proxy applies them on its next report");
    Ok(revision)
}

fn unknown(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::UnknownProxy,
        format!(
            "no proxy {id:?} has reported to this server: proxies appear once they pull (GET /v1/admin/proxies lists them)"
        ),
    )
}
