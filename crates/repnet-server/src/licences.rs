//! The licence-key side of the HTTP API: the middleware that lets requests through with a
//! valid key, and the admin endpoints that register, list and revoke keys. The keys
//! themselves are `repnet_licences`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

pub use repnet_licences::{BookFuture, KeyBook, Licence, Licences, RateLimit, Refusal, entry};

use crate::AppState;
use repnet_http::ApiError;

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
