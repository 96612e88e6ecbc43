//! `/v1/admin/feeds` and `/v1/admin/imports`: scheduled feeds' status and refreshes, and
//! uploaded imports. The feeds themselves are `crate::feeds`.
use std::path::Path;

use crate::AppState;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use repnet_feeds::{FeedOptions, Format};
use repnet_http::ApiError;
use repnet_http::api::json_response;
use repnet_protocol::ErrorCode;
use repnet_protocol::{FeedStatusList, ImportParams};
use std::sync::Arc;
use tokio::io::AsyncWriteExt as _;

/// `POST /v1/admin/imports?format=…&source=…`: the body is the feed file, as published
/// (plain, gzip or zip). Answers once it is imported.
#[utoipa::path(post, path = "/v1/admin/imports", tag = "admin",
    params(
        ("format" = Option<String>, Query, description = "The feed's format (urlhaus, malwarebazaar, threatfox, phishtank, openphish, nsrl, clamav, misp-warninglist, stix, tranco, hashlist, urllist, domainlist) or auto (the default)"),
        ("source" = Option<String>, Query, description = "The feed's name: records are stored as feed:<source>; the format's name by default"),
        ("verdict" = Option<String>, Query, description = "Overrides the format's verdict"),
        ("threat" = Option<String>, Query, description = "Overrides the feed's threat names"),
        ("category" = Option<String>, Query, description = "Categories added to every entry, comma-separated"),
        ("confidence" = Option<i64>, Query, description = "Overrides the format's confidence, 0-100"),
        ("top" = Option<u64>, Query, description = "Tranco: how many of the top domains to take (10,000)"),
        ("incremental" = Option<bool>, Query, description = "Only add; do not retract what the feed no longer lists"),
        ("allow_empty" = Option<bool>, Query, description = "Let a full import of an empty feed retract everything of its source"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The feed file as published: plain, gzip or zip"),
    responses((status = 200, body = repnet_protocol::ImportReport),
              (status = 400, body = repnet_protocol::ErrorBody),
              (status = 401, body = repnet_protocol::ErrorBody),
              (status = 413, body = repnet_protocol::ErrorBody),
              (status = 422, description = "Not a usable feed: unrecognised, unreadable or without entries; nothing was changed", body = repnet_protocol::ErrorBody)),
    security(("admin_token" = [])))]
pub(crate) async fn post_import(
    State(state): State<Arc<AppState>>,
    params: Result<Query<ImportParams>, QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let (format, options) = match upload_options(params, state.store.dir()) {
        Ok(settings) => settings,
        Err(error) => return Err(repnet_http::api::discard_body(body, error).await),
    };
    let path = spool_body(
        state.store.dir(),
        body,
        state.feeds.max_upload_bytes(),
        "the request body is empty: send the feed file as the body (e.g. curl --data-binary @feed.csv)",
    )
    .await?;
    let report = state
        .feeds
        .upload(&state.store, path, format, options)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        repnet_protocol::to_json(&report),
    ))
}

/// The scheduled feeds and how their last refresh went.
#[utoipa::path(get, path = "/v1/admin/feeds", tag = "admin",
    responses((status = 200, body = repnet_protocol::FeedStatusList),
              (status = 401, body = repnet_protocol::ErrorBody)),
    security(("admin_token" = [])))]
pub(crate) async fn list_feeds(State(state): State<Arc<AppState>>) -> Response {
    let list = FeedStatusList {
        feeds: state.feeds.statuses(),
    };
    json_response(StatusCode::OK, repnet_protocol::to_json(&list))
}

/// Refreshes a scheduled feed now; answers its status afterwards (a failed refresh is a
/// status with `state: failed`, not an error).
#[utoipa::path(post, path = "/v1/admin/feeds/{name}/refresh", tag = "admin",
    params(("name" = String, Path, description = "The feed's name in the configuration")),
    responses((status = 200, body = repnet_protocol::FeedStatus),
              (status = 401, body = repnet_protocol::ErrorBody),
              (status = 404, body = repnet_protocol::ErrorBody)),
    security(("admin_token" = [])))]
pub(crate) async fn refresh_feed(
    State(state): State<Arc<AppState>>,
    name: Result<UrlPath<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let UrlPath(name) = name.map_err(|rejection| {
        ApiError::bad_request(ErrorCode::InvalidPath, rejection.body_text())
    })?;
    match state.feeds.refresh_named(&name, &state.store).await {
        Some(status) => Ok(json_response(
            StatusCode::OK,
            repnet_protocol::to_json(&status),
        )),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownFeed,
            format!(
                "no scheduled feed is called {name:?}; the configured feeds are: {}",
                match state.feeds.names().join(", ") {
                    names if names.is_empty() => "none".to_owned(),
                    names => names,
                }
            ),
        )),
    }
}

/// The import's format and options from the query of `POST /v1/admin/imports`.
pub(crate) fn upload_options(
    params: Result<Query<ImportParams>, QueryRejection>,
    data_dir: &Path,
) -> Result<(Format, FeedOptions), ApiError> {
    let invalid = |message: String| ApiError::bad_request(ErrorCode::InvalidQuery, message);
    let Query(params) = params.map_err(|rejection| {
        invalid(format!(
            "{}: the parameters are format, source, verdict, threat, category, confidence, top, incremental and allow_empty",
            rejection.body_text()
        ))
    })?;
    let format_name = params.format.as_deref().unwrap_or("auto");
    let format = Format::parse(format_name).ok_or_else(|| {
        let known: Vec<&str> = std::iter::once(Format::Auto)
            .chain(Format::CONCRETE)
            .map(Format::name)
            .collect();
        invalid(format!(
            "format: unknown format {format_name:?}; use one of {}",
            known.join(", ")
        ))
    })?;
    let mut options = FeedOptions::new(repnet_runtime::now(), data_dir.to_path_buf());
    options
        .apply(&repnet_feeds::Settings {
            source: params.source.as_deref(),
            verdict: params.verdict.as_deref(),
            threat: params.threat.as_deref(),
            categories: params
                .category
                .as_deref()
                .map(|list| list.split(',').filter(|c| !c.trim().is_empty()).collect())
                .unwrap_or_default(),
            confidence: params.confidence,
        })
        .map_err(|error| invalid(error.to_string()))?;
    if let Some(top) = params.top {
        options.top = top;
    }
    options.incremental = params.incremental.unwrap_or(false);
    options.allow_empty = params.allow_empty.unwrap_or(false);
    Ok((format, options))
}

/// Writes a request body to a temporary file in `dir` (removed when the answer is dropped),
/// refusing bodies over `max_bytes` (413) and empty ones (400, with `empty_message`).
pub(super) async fn spool_body(
    dir: &Path,
    body: Body,
    max_bytes: u64,
    empty_message: &str,
) -> Result<tempfile::TempPath, ApiError> {
    spool_stream(dir, body.into_data_stream(), max_bytes, empty_message).await
}

/// Writes an upload's bytes (a body, a form's file field) to a temporary file in `dir`,
/// refusing more than `max_bytes` and nothing at all.
pub(crate) async fn spool_stream<E: std::fmt::Display>(
    dir: &Path,
    stream: impl futures_util::Stream<Item = Result<bytes::Bytes, E>>,
    max_bytes: u64,
    empty_message: &str,
) -> Result<tempfile::TempPath, ApiError> {
    let temporary = crate::feeds::temp_file(dir)
        .map_err(|error| ApiError::internal("cannot spool the upload", &error))?;
    let (file, path) = temporary.into_parts();
    let mut file = tokio::fs::File::from_std(file);
    let mut stream = std::pin::pin!(stream);
    let mut written = 0u64;
    use futures_util::StreamExt as _;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| {
            ApiError::bad_request(
                ErrorCode::InvalidBody,
                format!("cannot read the request body: {error}"),
            )
        })?;
        written += chunk.len() as u64;
        if written > max_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::BodyTooLarge,
                crate::feeds::too_large(max_bytes),
            ));
        }
        file.write_all(&chunk)
            .await
            .map_err(|error| ApiError::internal("cannot spool the upload", &error))?;
    }
    file.flush()
        .await
        .map_err(|error| ApiError::internal("cannot spool the upload", &error))?;
    if written == 0 {
        return Err(ApiError::bad_request(ErrorCode::EmptyBody, empty_message));
    }
    Ok(path)
}
