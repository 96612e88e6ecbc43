//! `/v1/installations`: enrolment challenges and enrolments. The rules are
//! `crate::installations`'s.

use repnet_http::ApiError;
use repnet_model::Timestamp;

/// A challenge to answer with a proof of work.
#[utoipa::path(get, path = "/v1/installations/challenge", tag = "participation",
    responses((status = 200, body = repnet_protocol::InstallationChallenge)))]
pub(crate) async fn get_challenge(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<crate::AppState>>,
) -> Result<axum::response::Response, ApiError> {
    let challenge = state.installations.challenge(repnet_store::now())?;
    Ok(repnet_http::api::json_response(
        axum::http::StatusCode::OK,
        repnet_protocol::to_json(&challenge),
    ))
}

/// Enrols an installation: a challenge answered with its proof of work gives a token.
#[utoipa::path(post, path = "/v1/installations", tag = "participation",
    request_body = repnet_protocol::EnrolInstallation,
    responses((status = 201, body = repnet_protocol::InstallationToken),
              (status = 400, body = repnet_protocol::ErrorBody),
              (status = 429, description = "too many enrolments from this address or key", body = repnet_protocol::ErrorBody)))]
pub(crate) async fn enrol(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<crate::AppState>>,
    client: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: axum::http::HeaderMap,
    repnet_http::api::JsonBody(request): repnet_http::api::JsonBody<
        repnet_protocol::EnrolInstallation,
    >,
) -> Result<axum::response::Response, ApiError> {
    let now = repnet_store::now();
    let key_id = state.licences.key_id(&headers, now);
    let address = client.map(|axum::Extension(axum::extract::ConnectInfo(client))| client.ip());
    let installation = state
        .installations
        .enrol(&request, key_id.as_deref(), address, now)?;
    let established = installation
        .enrolled
        .0
        .saturating_add(state.engine.established_after_hours().saturating_mul(3600));
    // Nothing of the client is logged.
    tracing::debug!(bound_to_key = key_id.is_some(), "installation enrolled");
    Ok(repnet_http::api::json_response(
        axum::http::StatusCode::CREATED,
        repnet_protocol::to_json(&repnet_protocol::InstallationToken {
            installation: state.installations.token(&installation),
            established: repnet_protocol::rfc3339(Timestamp(established)),
        }),
    ))
}
