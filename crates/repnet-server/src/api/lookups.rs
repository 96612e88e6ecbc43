//! Lookups: one object by its path (`/v1/files/{hash}`, …), batches (JSON and binary), and
//! privacy-mode searches by hash prefix. Parsing and answering are `crate::lookup`'s; here is
//! what HTTP adds: parameters, bodies, headers.
use crate::AppState;
use crate::lookup::{Lookup, assess};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use repnet_http::ApiError;
use repnet_http::api::{
    JsonBody, body_bytes, json_response, media_type, path_value, unsupported_media_type,
};
use repnet_model::{Object, ObjectKind};
use repnet_protocol::ErrorCode;
use repnet_protocol::{ItemTarget, LookupItem};
use serde::Deserialize;
use std::sync::Arc;

/// `?explain=true`. Unknown parameters are errors: a misspelt `explain` must not be ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LookupParams {
    #[serde(default)]
    explain: Option<String>,
}

fn explain_flag(params: Result<Query<LookupParams>, QueryRejection>) -> Result<bool, ApiError> {
    let Query(params) = params.map_err(|rejection| {
        ApiError::bad_request(
            ErrorCode::InvalidQuery,
            format!(
                "{}: the only query parameter here is explain=true|false",
                rejection.body_text()
            ),
        )
    })?;
    explain_value(params.explain.as_deref())
}

/// `POST /v1/lookup`'s parameters: `explain`, and for the binary form `hash`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchParams {
    #[serde(default)]
    explain: Option<String>,
    #[serde(default)]
    hash: Option<String>,
}

fn explain_value(value: Option<&str>) -> Result<bool, ApiError> {
    match value {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(other) => Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            format!("explain must be true or false; got {other:?}"),
        )),
    }
}

/// The hashes of a file given by several, or the error naming the field at fault
/// (`items[3].file.sha1`).
fn item_file_hashes(
    hashes: &repnet_protocol::FileHashesText<'_>,
    field: &str,
) -> Result<repnet_model::FileHashes, ApiError> {
    hashes.parse().map_err(|(name, error)| {
        let path = match name {
            "" => format!("{field}.file"),
            name => format!("{field}.file.{name}"),
        };
        ApiError::invalid(&path, &error)
    })
}

/// Parses the query an item names; `field` is where it was (`items[3]`).
fn item_query(item: &LookupItem<'_>, field: &str) -> Result<Lookup, ApiError> {
    let target = item.target().map_err(|problem| {
        ApiError::bad_request(ErrorCode::InvalidRequest, format!("{field} {problem}"))
    })?;
    match target {
        ItemTarget::Object(kind, text) => Lookup::parse(kind, text)
            .map_err(|error| ApiError::invalid(&format!("{field}.{kind}"), &error)),
        ItemTarget::File(hashes) => {
            let hashes = item_file_hashes(hashes, field)?;
            Lookup::file(&hashes).ok_or_else(|| {
                ApiError::bad_request(
                    ErrorCode::InvalidHash,
                    format!("{field}.file names no hash"),
                )
            })
        }
    }
}

/// Parses the object an item names, with the file's other hashes when it gives several;
/// `field` is where it was (`object`).
pub(crate) fn item_object(
    item: &LookupItem<'_>,
    field: &str,
) -> Result<(Object, repnet_model::FileHashes), ApiError> {
    let target = item.target().map_err(|problem| {
        ApiError::bad_request(ErrorCode::InvalidRequest, format!("{field} {problem}"))
    })?;
    match target {
        ItemTarget::Object(kind, text) => Object::parse(kind, text)
            .map(|object| (object, repnet_model::FileHashes::default()))
            .map_err(|error| ApiError::invalid(&format!("{field}.{kind}"), &error)),
        ItemTarget::File(hashes) => {
            let hashes = item_file_hashes(hashes, field)?;
            let primary = hashes.primary().ok_or_else(|| {
                ApiError::bad_request(
                    ErrorCode::InvalidHash,
                    format!("{field}.file names no hash"),
                )
            })?;
            Ok((Object::File(primary), hashes))
        }
    }
}

pub(super) async fn single(
    state: &AppState,
    query: Lookup,
    explain: bool,
) -> Result<Response, ApiError> {
    let reputation = assess(state, vec![query]).await?.remove(0);
    let body = repnet_protocol::to_json(&repnet_protocol::ReputationJson {
        reputation: &reputation,
        explain,
    });
    let mut response = json_response(StatusCode::OK, body);
    let cache_control = if reputation.ttl == state.ttl.known {
        state.cache_control.known.clone()
    } else if reputation.ttl == state.ttl.unknown {
        state.cache_control.unknown.clone()
    } else {
        HeaderValue::from_str(&format!("private, max-age={}", reputation.ttl))
            .unwrap_or_else(|_| state.cache_control.unknown.clone())
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, cache_control);
    Ok(response)
}

/// `GET /v1/<kind>s/{value}`: the one object named by the path.
async fn lookup_path(
    state: &AppState,
    kind: ObjectKind,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<LookupParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let explain = explain_flag(params)?;
    let text = path_value(path)?;
    let query = Lookup::parse(kind, &text).map_err(|e| ApiError::invalid("", &e))?;
    single(state, query, explain).await
}

/// File reputation by MD5, SHA-1 or SHA-256 (the kind is told by the length).
#[utoipa::path(get, path = "/v1/files/{hash}", tag = "lookup",
    params(("hash" = String, Path, description = "MD5, SHA-1 or SHA-256, hexadecimal in any case"),
           ("explain" = Option<bool>, Query, description = "add every contributing source record")),
    responses((status = 200, body = repnet_protocol::Reputation), (status = 400, body = repnet_protocol::ErrorBody)))]
pub(crate) async fn get_file(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<LookupParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    lookup_path(&state, ObjectKind::File, path, params).await
}

/// Domain reputation. Internationalised names are accepted and answered in punycode.
#[utoipa::path(get, path = "/v1/domains/{domain}", tag = "lookup",
    params(("domain" = String, Path), ("explain" = Option<bool>, Query)),
    responses((status = 200, body = repnet_protocol::Reputation), (status = 400, body = repnet_protocol::ErrorBody)))]
pub(crate) async fn get_domain(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<LookupParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    lookup_path(&state, ObjectKind::Domain, path, params).await
}

/// IP address reputation (IPv4 or IPv6).
#[utoipa::path(get, path = "/v1/ips/{ip}", tag = "lookup",
    params(("ip" = String, Path), ("explain" = Option<bool>, Query)),
    responses((status = 200, body = repnet_protocol::Reputation), (status = 400, body = repnet_protocol::ErrorBody)))]
pub(crate) async fn get_ip(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<LookupParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    lookup_path(&state, ObjectKind::Ip, path, params).await
}

/// Code-signing certificate reputation by SHA-256 thumbprint.
#[utoipa::path(get, path = "/v1/certificates/{sha256}", tag = "lookup",
    params(("sha256" = String, Path), ("explain" = Option<bool>, Query)),
    responses((status = 200, body = repnet_protocol::Reputation), (status = 400, body = repnet_protocol::ErrorBody)))]
pub(crate) async fn get_certificate(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<LookupParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    lookup_path(&state, ObjectKind::Certificate, path, params).await
}

/// Percent-decodes a query-string component (form encoding: `+` is a space) to bytes.
fn form_decode(text: &str) -> Vec<u8> {
    let hex = |byte: Option<&u8>| {
        byte.and_then(|b| (*b as char).to_digit(16))
            .map(|d| d as u8)
    };
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(high), Some(low)) => {
                out.push(high << 4 | low);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (other, _, _) => {
                out.push(other);
                i += 1;
            }
        }
    }
    out
}

/// URL reputation: the URL is canonicalised, every expression of it looked up, and the most
/// specific match decides (`matched`).
#[utoipa::path(get, path = "/v1/urls", tag = "lookup",
    params(("url" = String, Query, description = "the URL, percent-encoded; a scheme is optional"),
           ("explain" = Option<bool>, Query)),
    responses((status = 200, body = repnet_protocol::Reputation), (status = 400, body = repnet_protocol::ErrorBody)))]
pub(crate) async fn get_url(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    // The query is parsed here rather than by serde: a URL may hold bytes that are not UTF-8
    // once decoded, and canonicalisation works on bytes.
    let mut url = None;
    let mut explain = false;
    for pair in query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "url" => url = Some(form_decode(value)),
            "explain" => {
                explain = explain_value(Some(&String::from_utf8_lossy(&form_decode(value))))?
            }
            other => {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidQuery,
                    format!(
                        "unknown query parameter {other:?}: give url=<URL> and optionally explain=true"
                    ),
                ));
            }
        }
    }
    let url = url.ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::InvalidUrl,
            "give the URL to look up as ?url=<percent-encoded URL>",
        )
    })?;
    let lookup = Lookup::url(&url).map_err(|e| ApiError::invalid("url", &e))?;
    single(&state, lookup, explain).await
}

/// Privacy mode: full hashes (of files, and of URL expressions) that start with the given
/// prefixes, with their verdicts. The server never learns which of them the client wanted.
#[utoipa::path(post, path = "/v1/hashes:search", tag = "lookup",
    request_body = repnet_protocol::HashSearchRequest,
    responses((status = 200, body = repnet_protocol::HashSearchResponse),
              (status = 400, body = repnet_protocol::ErrorBody),
              (status = 413, body = repnet_protocol::ErrorBody)))]
pub(crate) async fn search_hashes(
    State(state): State<Arc<AppState>>,
    JsonBody(request): JsonBody<repnet_protocol::HashSearchRequest>,
) -> Result<Response, ApiError> {
    if let Some(message) = request.too_large() {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BatchTooLarge,
            message,
        ));
    }
    let prefixes: Vec<repnet_store::SearchPrefix> = request
        .parsed()
        .map_err(|(field, error)| ApiError::invalid(&field, &error))?
        .into_iter()
        .map(|(of, bytes)| repnet_store::SearchPrefix { of, bytes })
        .collect();
    let (found, truncated) = state
        .store
        .search_prefixes(&prefixes, MAX_SEARCH_MATCHES)
        .await
        .map_err(|error| {
            crate::failures::store_failed("the knowledge base could not be searched", &error)
        })?;
    if truncated {
        return Err(ApiError::bad_request(
            ErrorCode::TooManyMatches,
            format!(
                "the prefixes match more than {MAX_SEARCH_MATCHES} hashes: send longer prefixes"
            ),
        ));
    }
    let matches = found
        .into_iter()
        .map(|found| {
            let (kind, object, hash) = match found.matched {
                repnet_store::Matched::File(hash) => ("file", Object::File(hash), hash.to_string()),
                repnet_store::Matched::Url(hash) => (
                    "url",
                    Object::File(repnet_model::FileHash::Sha256(hash)),
                    hash.to_string(),
                ),
            };
            let known = found.knowledge;
            let reputation = repnet_model::Reputation::assess(
                object,
                known.hashes,
                known.records,
                known.prevalence,
                &state.ttl,
            );
            repnet_protocol::HashMatch::from_model(kind, &hash, &reputation)
        })
        .collect();
    let response = repnet_protocol::HashSearchResponse {
        matches,
        cache_seconds: state.ttl.known,
        unknown_cache_seconds: Some(state.ttl.unknown),
    };
    Ok(json_response(
        StatusCode::OK,
        repnet_protocol::to_json(&response),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilesParams {
    #[serde(default)]
    hash: Option<String>,
}

/// Batch lookup of files in the binary form: the body is the files' digests of the kinds
/// `hash=` names, one after the other; the answer is one fixed-size record per file
/// (docs/http-api.md, "Binary batch lookups"). The same as `POST /v1/lookup` with an
/// `application/octet-stream` body, as an operation of its own so that a generated client
/// reads its answer as bytes.
#[utoipa::path(post, path = "/v1/files:lookup", tag = "lookup",
    params(("hash" = String, Query, description = "what each file carries, in order: sha256, sha1, md5, or several such as sha256,sha1,md5")),
    request_body(description = "the files' digests, one after the other",
        content((Vec<u8> = "application/octet-stream"))),
    responses((status = 200, description = "RPNB records, one per file in the order asked: see docs/http-api.md",
               content((Vec<u8> = "application/octet-stream"))),
              (status = 400, body = repnet_protocol::ErrorBody),
              (status = 413, body = repnet_protocol::ErrorBody),
              (status = 415, body = repnet_protocol::ErrorBody)))]
pub(crate) async fn lookup_files(
    State(state): State<Arc<AppState>>,
    params: Result<Query<FilesParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|rejection| {
        bad_query(
            &rejection,
            "the query parameter here is hash=sha256 (or md5, sha1, or several such as sha256,sha1,md5)",
        )
    })?;
    if !media_type(&headers)
        .is_some_and(|media| media.eq_ignore_ascii_case(repnet_protocol::binary::MEDIA_TYPE))
    {
        return Err(unsupported_media_type(
            &headers,
            "send the digests with Content-Type: application/octet-stream (JSON batches go to POST /v1/lookup)",
        ));
    }
    let body = body_bytes(body)?;
    binary_batch(&state, params.hash.as_deref(), &body).await
}

/// A query that could not be read: what was wrong, then what the route takes.
fn bad_query(rejection: &QueryRejection, allowed: &str) -> ApiError {
    ApiError::bad_request(
        ErrorCode::InvalidQuery,
        format!("{}: {allowed}", rejection.body_text()),
    )
}

/// A binary batch: `hash` (the query's) says what each file carries.
async fn binary_batch(
    state: &AppState,
    hash: Option<&str>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let layout = hash.ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::InvalidQuery,
            "a binary lookup names the hashes it carries: add ?hash=sha256 (or md5, or sha1, or several such as hash=sha256,sha1,md5 when each file is those digests one after the other)",
        )
    })?;
    let layout = repnet_protocol::binary::Layout::parse(layout)
        .map_err(|error| ApiError::bad_request(ErrorCode::InvalidQuery, error.to_string()))?;
    lookup_binary(state, body, &layout).await
}

/// The most full hashes one privacy-mode search returns.
const MAX_SEARCH_MATCHES: usize = 10_000;

/// Batch lookup: up to 10,000 objects, answered in the same order. One invalid item fails
/// the whole request with 400, naming the item. With `Content-Type: application/octet-stream`
/// the body is raw digests of the kinds `hash=` names and the answer fixed-size records
/// (docs/http-api.md); `POST /v1/files:lookup` is that form as an operation of its own.
#[utoipa::path(post, path = "/v1/lookup", tag = "lookup",
    params(("explain" = Option<bool>, Query),
           ("hash" = Option<String>, Query, description = "binary bodies only, and required for them: what each file carries, in order: sha256, sha1, md5, or several such as sha256,sha1,md5")),
    request_body(description = "JSON items, or (application/octet-stream) files of the digests that hash= names, one after the other",
        content(
            (repnet_protocol::LookupRequest = "application/json"),
            (Vec<u8> = "application/octet-stream"),
        )),
    responses((status = 200, description = "JSON results, or (application/octet-stream) RPNB records: see docs/http-api.md",
               content(
                  (repnet_protocol::LookupResponse = "application/json"),
                  (Vec<u8> = "application/octet-stream"),
              )),
              (status = 400, body = repnet_protocol::ErrorBody),
              (status = 413, body = repnet_protocol::ErrorBody),
              (status = 415, body = repnet_protocol::ErrorBody)))]
pub(crate) async fn lookup_batch(
    State(state): State<Arc<AppState>>,
    params: Result<Query<BatchParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|rejection| {
        bad_query(
            &rejection,
            "the query parameters here are explain=true|false and, for a binary body, hash=sha256 (or md5, sha1, or several such as sha256,sha1,md5)",
        )
    })?;
    let explain = explain_value(params.explain.as_deref())?;
    let binary = match media_type(&headers) {
        Some(media) if media.eq_ignore_ascii_case("application/json") => false,
        Some(media) if media.eq_ignore_ascii_case(repnet_protocol::binary::MEDIA_TYPE) => true,
        _ => {
            return Err(unsupported_media_type(
                &headers,
                "send JSON with Content-Type: application/json, or digests with Content-Type: application/octet-stream and ?hash=sha256",
            ));
        }
    };
    let body = body_bytes(body)?;
    if binary {
        return binary_batch(&state, params.hash.as_deref(), &body).await;
    }
    if params.hash.is_some() {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            "hash= describes a binary body (Content-Type: application/octet-stream); a JSON body names each hash in its items",
        ));
    }
    let request = repnet_protocol::parse_lookup_request(&body).map_err(ApiError::from_body)?;
    check_batch_size(&state, request.items.len())?;
    let queries = request
        .items
        .iter()
        .enumerate()
        .map(|(index, item)| item_query(item, &format!("items[{index}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let results = assess(&state, queries).await?;
    Ok(json_response(
        StatusCode::OK,
        repnet_protocol::to_json(&repnet_protocol::LookupResponseJson {
            results: &results,
            explain,
        }),
    ))
}

fn check_batch_size(state: &AppState, items: usize) -> Result<(), ApiError> {
    if items > state.max_batch_items {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BatchTooLarge,
            format!(
                "the batch has {items} items; the limit is {}: split it into several requests",
                state.max_batch_items
            ),
        ));
    }
    Ok(())
}

/// The binary form of a batch lookup: digests in, fixed-size records out.
async fn lookup_binary(
    state: &AppState,
    body: &[u8],
    layout: &repnet_protocol::binary::Layout,
) -> Result<Response, ApiError> {
    let files = repnet_protocol::binary::parse_request(body, layout)
        .map_err(|error| ApiError::bad_request(ErrorCode::InvalidBody, error.to_string()))?;
    check_batch_size(state, files.len())?;
    // Every file has a hash: `parse_request` refuses a file without one.
    let queries = files.iter().filter_map(Lookup::file).collect();
    let reputations = assess(state, queries).await?;
    let mut writer = repnet_protocol::binary::ResponseWriter::with_capacity(reputations.len());
    for reputation in &reputations {
        writer.push(reputation);
    }
    let mut response = (StatusCode::OK, writer.finish()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(repnet_protocol::binary::MEDIA_TYPE),
    );
    Ok(response)
}
