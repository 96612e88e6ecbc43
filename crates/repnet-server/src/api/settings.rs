//! `/v1/admin/settings`: the runtime settings, shown and changed.
use crate::AppState;
use crate::settings::{RuntimeSettings, rate_limit};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use repnet_http::ApiError;
use repnet_http::api::json_response;
use repnet_protocol::ErrorCode;
use std::sync::Arc;

/// The runtime settings.
#[utoipa::path(get, path = "/v1/admin/settings", tag = "admin",
    responses((status = 200, body = Object, description = "the runtime settings"),
              (status = 401, body = repnet_protocol::ErrorBody)),
    security(("admin_token" = [])))]
pub(crate) async fn get_settings(State(state): State<Arc<AppState>>) -> Response {
    let settings = state
        .runtime
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    json_response(StatusCode::OK, repnet_protocol::to_json(&settings))
}

/// Changes runtime settings: only those named; checked, applied at once, kept.
#[utoipa::path(patch, path = "/v1/admin/settings", tag = "admin",
    request_body(content = Object, description = "the settings to change, e.g. {\"require_key\":true}"),
    responses((status = 200, body = Object, description = "the runtime settings now"),
              (status = 400, body = repnet_protocol::ErrorBody),
              (status = 401, body = repnet_protocol::ErrorBody)),
    security(("admin_token" = [])))]
pub(crate) async fn patch_settings(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    repnet_http::api::require_merge_patch(&headers)?;
    let body = repnet_http::api::body_bytes(body)?;
    let _one_at_a_time = state.changing_settings.lock().await;
    let current = state
        .runtime
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let settings: RuntimeSettings = repnet_protocol::merge_patch(&current, &body)
        .map_err(|error| ApiError::bad_request(ErrorCode::InvalidSetting, error.to_string()))?;
    settings
        .check()
        .map_err(|error| ApiError::bad_request(ErrorCode::InvalidSetting, error.to_string()))?;
    settings
        .save(state.store.dir())
        .map_err(|error| ApiError::internal("the settings could not be kept", &error))?;
    state.licences.set_policy(
        settings.require_key || state.role == crate::config::Role::Private,
        rate_limit(settings.key_requests_per_second, settings.key_burst),
    );
    state.install_limit.set(settings.install_batches_per_minute);
    state.engine.set_thresholds(
        settings.engine_detecting_devices,
        settings.engine_trusted_devices,
    );
    tracing::info!(?settings, "runtime settings changed");
    *state
        .runtime
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = settings.clone();
    Ok(json_response(
        StatusCode::OK,
        repnet_protocol::to_json(&settings),
    ))
}
