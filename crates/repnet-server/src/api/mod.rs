//! The HTTP API: axum handlers only, one module per resource (in the spirit of mini-redis's
//! `cmd/`), and the router that mounts them. Handlers parse what HTTP carries (paths,
//! parameters, bodies, headers) and call the services — `crate::lookup`, `crate::feeds`,
//! `crate::statistics`, `crate::installations`, `crate::settings`, the store —
//! which import no axum. What the server and the proxy share (`ApiError`, `JsonBody`, the
//! admin gate, the licence-key endpoints) is `repnet_http`'s.

mod export;
pub(crate) mod feeds;
mod hashlookup;
mod installations;
mod licences;
pub(crate) mod lookups;
mod openapi;
pub(crate) mod proxies;
pub(crate) use openapi::openapi_json;
mod operations;
pub(crate) mod replication;
mod settings;
pub(crate) mod statistics;
pub(crate) mod verdicts;

use repnet_protocol::ErrorCode;

use axum::http::{Method, StatusCode};
use axum::routing::get;
use axum::{Router, middleware};

use std::sync::Arc;

use crate::AppState;
use repnet_http::ApiError;

/// Requests whose bodies or answers are streams, or whose work takes long (a feed's refresh
/// downloads and imports it): they get a progress deadline, not a whole one, and are not
/// counted as buffered bodies.
fn long_request(path: &str) -> bool {
    matches!(
        path,
        "/v1/admin/imports"
            | "/v1/admin/bundles"
            | "/v1/changes"
            | "/v1/snapshot"
            | "/v1/admin/backup"
            | "/v1/export"
            | "/console/feeds/upload"
            | "/console/feeds/refresh"
    ) || (path.starts_with("/v1/admin/feeds/") && path.ends_with("/refresh"))
}

pub(crate) fn router(
    state: Arc<AppState>,
    max_body_bytes: usize,
    connections: &repnet_http::Limits,
    tls: bool,
) -> Router {
    let requests = Arc::new(repnet_http::RequestLimits::new(
        connections,
        max_body_bytes,
        long_request,
    ));
    let admin = Router::new()
        .route(
            "/v1/admin/verdicts",
            get(verdicts::list_local_verdicts)
                .put(verdicts::set_local_verdict)
                .delete(verdicts::remove_local_verdict),
        )
        .route("/v1/admin/imports", axum::routing::post(feeds::post_import))
        .route("/v1/admin/feeds", get(feeds::list_feeds))
        .route(
            "/v1/admin/feeds/{name}/refresh",
            axum::routing::post(feeds::refresh_feed),
        )
        .merge(repnet_http::keys::routes(Arc::clone(&state.licences)))
        .route("/v1/admin/status", get(replication::get_status))
        .route("/v1/admin/engine", get(statistics::get_engine))
        .route(
            "/v1/admin/settings",
            get(settings::get_settings).patch(settings::patch_settings),
        )
        .route("/v1/admin/review", get(statistics::list_review))
        .route(
            "/v1/admin/review/{id}",
            axum::routing::post(statistics::settle_review),
        )
        .route(
            "/v1/admin/bundles",
            axum::routing::post(replication::post_bundle),
        )
        .route("/v1/admin/proxies", get(proxies::list_proxies))
        .route("/v1/admin/backup", get(replication::get_backup))
        .route(
            "/v1/admin/proxies/{key_id}/{name}/settings",
            axum::routing::put(proxies::put_settings),
        )
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state.admin),
            repnet_http::admin::require_admin,
        ));
    // What devices ask: a licence key when the server requires one (a private server, or
    // `require_key`).
    let lookups = Router::new()
        .route("/v1/files/{hash}", get(lookups::get_file))
        .route("/v1/domains/{domain}", get(lookups::get_domain))
        .route("/v1/ips/{ip}", get(lookups::get_ip))
        .route("/v1/certificates/{sha256}", get(lookups::get_certificate))
        .route("/v1/urls", get(lookups::get_url))
        .route("/v1/lookup", axum::routing::post(lookups::lookup_batch))
        .route(
            "/v1/files:lookup",
            axum::routing::post(lookups::lookup_files),
        )
        .route(
            "/v1/hashes:search",
            axum::routing::post(lookups::search_hashes),
        )
        .merge(hashlookup_routes())
        .route("/v1/statement", get(statistics::get_statement))
        .route(
            "/v1/installations/challenge",
            get(installations::get_challenge),
        )
        .route(
            "/v1/installations",
            axum::routing::post(installations::enrol),
        )
        .route(
            "/v1/statistics",
            axum::routing::post(statistics::post_statistics),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            licences::require_licence_for_lookups,
        ));
    // Replication: always a licence key.
    let sync = Router::new()
        .route("/v1/changes", get(replication::get_changes))
        .route("/v1/snapshot", get(replication::get_snapshot))
        .route("/v1/export", get(export::get_export))
        .route(
            "/v1/proxies/report",
            axum::routing::post(proxies::post_report),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            licences::require_licence,
        ));
    Router::new()
        .merge(lookups)
        .merge(sync)
        .route("/healthz", get(operations::healthz))
        .route("/readyz", get(operations::readyz))
        .route("/metrics", get(operations::metrics))
        .route("/openapi.json", get(operations::openapi))
        .merge(admin)
        .merge(crate::console::routes(
            Arc::clone(&state),
            Arc::new(repnet_http::console::Console::new(
                Arc::clone(&state.admin),
                tls,
                "repnet serve",
            )),
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            requests,
            repnet_http::guard_requests,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::new(operations::Tracking {
                metrics: state.metrics.clone(),
                access_log: state.access_log,
            }),
            operations::track,
        ))
        // The body extractor stops reading at the limit (at once when Content-Length already
        // says too much), and `body_bytes` turns that into our JSON 413.
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// CIRCL hashlookup's endpoints (`api/hashlookup.rs`), also under `//`: MISP's hashlookup
/// module joins its base URL, which ends in `/`, and `/lookup/…` into `…//lookup/…`.
fn hashlookup_routes() -> Router<Arc<AppState>> {
    let mut routes = Router::new();
    for prefix in ["", "/"] {
        routes = routes
            .route(
                &format!("{prefix}/lookup/md5/{{hash}}"),
                get(hashlookup::lookup_md5),
            )
            .route(
                &format!("{prefix}/lookup/sha1/{{hash}}"),
                get(hashlookup::lookup_sha1),
            )
            .route(
                &format!("{prefix}/lookup/sha256/{{hash}}"),
                get(hashlookup::lookup_sha256),
            )
            .route(
                &format!("{prefix}/bulk/md5"),
                axum::routing::post(hashlookup::bulk_md5),
            )
            .route(
                &format!("{prefix}/bulk/sha1"),
                axum::routing::post(hashlookup::bulk_sha1),
            )
            .route(&format!("{prefix}/info"), get(hashlookup::info))
            .route(&format!("{prefix}/stats/top"), get(hashlookup::top))
            .route(
                &format!("{prefix}/children/{{sha1}}/{{count}}/{{cursor}}"),
                get(hashlookup::children),
            )
            .route(
                &format!("{prefix}/parents/{{sha1}}/{{count}}/{{cursor}}"),
                get(hashlookup::parents),
            );
    }
    routes
}

// ----- helpers ----------------------------------------------------------------------------

// ----- lookups ----------------------------------------------------------------------------

// ----- admin ------------------------------------------------------------------------------

// ----- operations -------------------------------------------------------------------------

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        format!(
            "there is no endpoint {method} {}: /openapi.json lists the API",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        format!(
            "{} does not accept {method}: /openapi.json lists the methods of each endpoint",
            uri.path()
        ),
    )
}
