//! `/v1/admin/keys`: register, list and revoke licence keys — one set of handlers for a
//! server (the organisations' keys, kept in its store) and a proxy (its devices' keys, kept in
//! `keys.json`), mounted behind the admin gate ([`crate::admin::require_admin`]). The keys
//! themselves are `repnet_licences`.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use repnet_licences::{Licences, entry};
use repnet_protocol::{AddLicenceKey, ErrorCode, LicenceKeyList};

use crate::ApiError;
use crate::api::{JsonBody, json_response};

/// The routes that manage `licences`, to merge into a router of any state.
pub fn routes<S: Clone + Send + Sync + 'static>(licences: Arc<Licences>) -> Router<S> {
    Router::new()
        .route(
            "/v1/admin/keys",
            axum::routing::get(list_keys).post(add_key),
        )
        .route("/v1/admin/keys/{id}", axum::routing::delete(revoke_key))
        .with_state(licences)
}

/// Registers a licence key.
#[utoipa::path(post, path = "/v1/admin/keys", tag = "admin",
    request_body = repnet_protocol::AddLicenceKey,
    responses((status = 201, body = repnet_protocol::LicenceKeyEntry),
              (status = 400, body = repnet_protocol::ErrorBody),
              (status = 401, body = repnet_protocol::ErrorBody),
              (status = 409, description = "the key is registered already", body = repnet_protocol::ErrorBody),
              (status = 415, body = repnet_protocol::ErrorBody)),
    security(("admin_token" = [])))]
pub async fn add_key(
    State(licences): State<Arc<Licences>>,
    JsonBody(request): JsonBody<AddLicenceKey>,
) -> Result<Response, ApiError> {
    let licence = licences.register(&request, repnet_runtime::now()).await?;
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
pub async fn list_keys(State(licences): State<Arc<Licences>>) -> Response {
    let list = LicenceKeyList {
        keys: licences.list().iter().map(entry).collect(),
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
pub async fn revoke_key(
    State(licences): State<Arc<Licences>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Ok(Path(id)) = id else {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidId,
            "the path must be /v1/admin/keys/<id>, with an id from GET /v1/admin/keys",
        ));
    };
    let licence = licences.revoke(&id, repnet_runtime::now()).await?;
    Ok(json_response(
        StatusCode::OK,
        repnet_protocol::to_json(&entry(&licence)),
    ))
}
