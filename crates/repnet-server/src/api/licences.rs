//! The middleware that lets lookups and pulls through with a valid licence key.
use crate::AppState;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use repnet_http::ApiError;
use std::sync::Arc;

/// Lets a lookup through only with a valid licence key, when this server requires one.
pub(crate) async fn require_licence_for_lookups(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if state.licences.required()
        && let Err(refusal) = state.licences.check(request.headers(), repnet_store::now())
    {
        state.metrics.licence_refused(refusal.code.as_str());
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
        state.metrics.licence_refused(refusal.code.as_str());
        return ApiError::from(refusal).into_response();
    }
    next.run(request).await
}
