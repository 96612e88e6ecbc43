//! What operators and load balancers ask: liveness, readiness, metrics, the OpenAPI
//! description, and the middleware that counts every request.
use crate::AppState;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use repnet_http::ApiError;
use repnet_http::api::json_response;
use repnet_protocol::ErrorCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200)))]
pub(crate) async fn healthz() -> Response {
    json_response(StatusCode::OK, br#"{"status":"ok"}"#.to_vec())
}

/// Readiness: 200 while serving, 503 before start and during shutdown, and while the store
/// cannot be reached (a Redis Cluster down).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200), (status = 503, body = repnet_protocol::ErrorBody)))]
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.ready.load(Ordering::SeqCst) {
        if let Err(error) = state.store.check().await {
            return crate::failures::store_failed("the server cannot serve", &error)
                .into_response();
        }
        json_response(StatusCode::OK, br#"{"status":"ready"}"#.to_vec())
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NotReady,
            "the server is starting or shutting down: retry shortly",
        )
        .into_response()
    }
}

/// Prometheus metrics (OpenMetrics text format).
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "application/openmetrics-text")))]
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

/// This API's OpenAPI description.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200)))]
pub(crate) async fn openapi() -> Response {
    json_response(StatusCode::OK, super::openapi::openapi_json().into_bytes())
}

/// What [`track`] needs: the metrics, and whether to log each request.
pub(crate) struct Tracking {
    pub(crate) metrics: crate::metrics::Metrics,
    pub(crate) access_log: bool,
}

/// Middleware counting and timing every request, and with `access_log` logging it: the
/// method, the route's pattern (`/v1/domains/{domain}`, never the domain: what a device looks
/// up is its user's), the status, the time and the answer's length. No client address.
pub(crate) async fn track(
    // In an `Arc`: axum clones the state for every request, and one atomic is cheaper than
    // the five of `Metrics`.
    State(tracking): State<Arc<Tracking>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let matched = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|matched| matched.as_str());
    let route = crate::metrics::route_index(matched);
    let method = tracking.access_log.then(|| request.method().clone());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    tracking
        .metrics
        .observe_request(route, response.status().as_u16(), elapsed.as_secs_f64());
    if let Some(method) = method {
        // Streamed answers (snapshots, exports) have no length yet: logged as absent.
        let bytes = axum::body::HttpBody::size_hint(response.body()).exact();
        tracing::info!(
            target: "repnet::access",
            method = %method,
            route = crate::metrics::route_name(route),
            status = response.status().as_u16(),
            micros = elapsed.as_micros() as u64,
            bytes,
            "request"
        );
    }
    response
}
