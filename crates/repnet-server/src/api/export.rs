//! `GET /v1/export`: what the knowledge base blocks, in a format for enforcement points
//! (`crate::export`), written to an unnamed temporary file and streamed, with an ETag that
//! changes with the change log and the request, so that a poller downloads only changes.
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use repnet_http::ApiError;
use repnet_protocol::ErrorCode;
use serde::Deserialize;
use sha2::Digest as _;

use crate::AppState;
use crate::export::{Filter, Format};

/// The query of `GET /v1/export`. Unknown parameters are refused.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ExportParams {
    /// rpz (default), domains, hosts, suricata, suricata-domains, stix.
    format: Option<String>,
    /// Verdicts listed, comma-separated (default: untrusted).
    verdict: Option<String>,
    /// Categories, comma-separated: an entry with any of them is listed (default: any).
    category: Option<String>,
    /// Deciding sources, comma-separated (`feed:urlhaus`, `local`…; default: any).
    source: Option<String>,
    /// The least confidence listed, 0-100 (default: 0).
    min_confidence: Option<i64>,
    /// The RPZ zone's name, for its SOA (default: rpz.repnet).
    zone: Option<String>,
}

/// The blocklist.
#[utoipa::path(get, path = "/v1/export", tag = "sync",
    params(ExportParams),
    responses((status = 200, description = "the blocklist in the format asked: an RPZ zone (text/dns), a list, a Suricata dataset, a STIX 2.1 bundle", body = String),
              (status = 304, description = "unchanged since the ETag sent in If-None-Match"),
              (status = 400, body = repnet_protocol::ErrorBody),
              (status = 401, description = "no valid licence key", body = repnet_protocol::ErrorBody)),
    security(("licence_key" = [])))]
pub(crate) async fn get_export(
    State(state): State<Arc<AppState>>,
    params: Result<Query<ExportParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|rejection| {
        ApiError::bad_request(
            ErrorCode::InvalidQuery,
            format!(
                "{}: the parameters are format, verdict, category, source, min_confidence, zone",
                rejection.body_text()
            ),
        )
    })?;
    let invalid = |message: String| ApiError::bad_request(ErrorCode::InvalidQuery, message);
    let format: Format = params
        .format
        .as_deref()
        .unwrap_or("rpz")
        .parse()
        .map_err(|error| invalid(format!("format: {error}")))?;
    let filter = Filter::parse(
        params.verdict.as_deref(),
        params.category.as_deref(),
        params.source.as_deref(),
        params.min_confidence,
    )
    .map_err(invalid)?;
    let zone = params.zone.unwrap_or_else(|| "rpz.repnet".to_owned());
    repnet_model::Domain::new(&zone).map_err(|error| invalid(format!("zone: {error}")))?;

    // The ETag: the change log's position and what was asked. Nothing listed changes
    // without a change in the log (imports, verdicts, their expiry, the engine).
    let sequence = state
        .store
        .sync_state()
        .await
        .map_err(|error| crate::failures::store_failed("the change log could not be read", &error))?
        .sequence;
    let asked = sha2::Sha256::digest(format!("{} {} {zone}", format.as_str(), filter.describe()));
    let etag = format!("\"{sequence}-{}\"", hex::encode(&asked[..8]));
    let etag_value = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\""));
    let matches = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|tag| tag.trim() == etag || tag.trim() == "*");
    if matches {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        response.headers_mut().insert(header::ETAG, etag_value);
        return Ok(response);
    }

    let slot = state
        .streams
        .acquire(state.licences.key_id(&headers, repnet_store::now()))?;
    let (_, file, length) = super::replication::spool(&state.store, "export", move |store, out| {
        crate::export::write(store, format, &filter, &zone, out)
    })
    .await?;
    let mut response =
        (StatusCode::OK, super::replication::stream_file(file, slot)).into_response();
    let response_headers = response.headers_mut();
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.media_type()),
    );
    response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response_headers.insert(header::ETAG, etag_value);
    response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}
