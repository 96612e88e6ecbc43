//! `GET /v1/export`: what the knowledge base blocks, in a format for enforcement points
//! (`crate::export`), written to an unnamed temporary file and streamed, with an ETag that
//! changes with the change log and the request, so that a poller downloads only changes.
use std::io::Seek as _;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use repnet_http::ApiError;
use repnet_protocol::ErrorCode;
use repnet_store::TEMP_PREFIX;
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
    let store = state.store.clone();
    let (file, length) = tokio::task::spawn_blocking(move || {
        let dir = store.dir().to_path_buf();
        let io = |source| repnet_store::StoreError::Io {
            action: "write an export to a temporary file in",
            path: dir.clone(),
            source,
        };
        let mut file = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(&dir)
            .map_err(io)?
            .into_file();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut file);
        crate::export::write(&store, format, &filter, &zone, &mut out)?;
        out.into_inner().map_err(|error| io(error.into_error()))?;
        let length = file.stream_position().map_err(io)?;
        file.rewind().map_err(io)?;
        Ok::<_, repnet_store::StoreError>((file, length))
    })
    .await
    .map_err(|error| ApiError::internal("the export could not be written", &error))?
    .map_err(|error| crate::failures::store_failed("the export could not be written", &error))?;
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
