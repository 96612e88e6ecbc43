//! The licence-key side of the HTTP API: the middleware that lets requests through with a
//! valid key, and the admin endpoints that register, list and revoke keys. The keys
//! themselves are `repnet_licences`.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use repnet_protocol::{AddLicenceKey, LicenceKeyList};

pub use repnet_licences::{BookFuture, KeyBook, Licence, Licences, RateLimit, Refusal, entry};

use crate::AppState;
use crate::api::{JsonBody, json_response};
use crate::error::ApiError;

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut error = ApiError::new(status, refusal.code, refusal.message);
        if status == StatusCode::UNAUTHORIZED {
            error = error.with_header(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"repnet\""),
            );
        }
        if let Some(wait) = refusal.retry_after {
            error = error.with_header(header::RETRY_AFTER, HeaderValue::from(wait));
        }
        error
    }
}

/// Lets a lookup through only with a valid licence key, when this server requires one.
pub(crate) async fn require_licence_for_lookups(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if state.licences.required()
        && let Err(refusal) = state.licences.check(request.headers(), repnet_store::now())
    {
        state.metrics.licence_refused(refusal.code);
        return ApiError::from(refusal).into_response();
    }
    next.run(request).await
}

/// Lets a request through only with a valid licence key, whatever the server's role.
pub(crate) async fn require_licence(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if let Err(refusal) = state.licences.check(request.headers(), repnet_store::now()) {
        state.metrics.licence_refused(refusal.code);
        return ApiError::from(refusal).into_response();
    }
    next.run(request).await
}

/// Registers a licence key.
#[utoipa::path(post, path = "/v1/admin/keys", tag = "admin",
    request_body = repnet_protocol::AddLicenceKey,
    responses((status = 201, body = repnet_protocol::LicenceKeyEntry),
              (status = 400, body = repnet_protocol::ErrorBody),
              (status = 401, body = repnet_protocol::ErrorBody),
              (status = 409, description = "the key is registered already", body = repnet_protocol::ErrorBody)),
    security(("admin_token" = [])))]
pub(crate) async fn add_key(
    State(state): State<Arc<AppState>>,
    JsonBody(request): JsonBody<AddLicenceKey>,
) -> Result<Response, ApiError> {
    let licence = state
        .licences
        .register(&request, repnet_store::now())
        .await?;
    Ok(json_response(
        StatusCode::CREATED,
        repnet_protocol::to_json(&entry(&licence)),
    ))
}

/// Every licence key ever registered (never the keys themselves).
#[utoipa::path(get, path = "/v1/admin/keys", tag = "admin",
    responses((status = 200, body = repnet_protocol::LicenceKeyList),
              (status = 401, body = repnet_protocol::ErrorBody)),
    security(("admin_token" = [])))]
pub(crate) async fn list_keys(State(state): State<Arc<AppState>>) -> Response {
    let list = LicenceKeyList {
        keys: state.licences.list().iter().map(entry).collect(),
    };
    json_response(StatusCode::OK, repnet_protocol::to_json(&list))
}

/// Revokes a licence key: it stays listed, and a request with it gets `licence_revoked`.
#[utoipa::path(delete, path = "/v1/admin/keys/{id}", tag = "admin",
    params(("id" = String, Path, description = "the key's id, as listed")),
    responses((status = 200, body = repnet_protocol::LicenceKeyEntry),
              (status = 401, body = repnet_protocol::ErrorBody),
              (status = 404, body = repnet_protocol::ErrorBody)),
    security(("admin_token" = [])))]
pub(crate) async fn revoke_key(
    State(state): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Ok(Path(id)) = id else {
        return Err(ApiError::bad_request(
            "invalid_id",
            "the path must be /v1/admin/keys/<id>, with an id from GET /v1/admin/keys",
        ));
    };
    let licence = state.licences.revoke(&id, repnet_store::now()).await?;
    Ok(json_response(
        StatusCode::OK,
        repnet_protocol::to_json(&entry(&licence)),
    ))
}
