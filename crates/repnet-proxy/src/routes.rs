//! The proxy's HTTP API: the server's client API for devices, its own admin API
//! (`/v1/admin/status`, `/v1/admin/settings`) and operations.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, Request, State as Extract};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use repnet_http::ApiError;
use repnet_http::api::{JsonBody, json_response};
use repnet_model::{CanonicalUrl, FileHash, Object, ObjectKind};
use repnet_protocol::{ErrorCode, LookupResponse, LookupResult, Reputation};
use serde::Deserialize;

use crate::State;
use crate::cache::{Cached, Key};
use crate::cache::{Prefix, PrefixAnswer};
use crate::upstream::{Outcome, UpstreamError};

type Shared = Arc<State>;

/// A request's body, read within `max_body_bytes`; a body too large or unreadable is
/// answered in the API's error shape.
struct Payload(Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Payload {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Payload, ApiError> {
        repnet_http::api::body_bytes(Bytes::from_request(request, state).await).map(Payload)
    }
}

pub(crate) fn router(state: Shared, tls: bool) -> Router {
    let devices = Router::new()
        .route("/v1/files/{value}", get(get_file))
        .route("/v1/domains/{value}", get(get_domain))
        .route("/v1/ips/{value}", get(get_ip))
        .route("/v1/certificates/{value}", get(get_certificate))
        .route("/v1/urls", get(get_url))
        .route("/v1/lookup", post(lookup_batch))
        .route("/v1/hashes:search", post(search_hashes))
        .route("/v1/statement", get(pass_through))
        // Enrolment goes to the server with the proxy's licence key: the fleet's
        // installations are bound to it.
        .route("/v1/installations/challenge", get(pass_through))
        .route("/v1/installations", post(pass_through))
        .route("/v1/statistics", post(statistics))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&state), admit));
    let admin = Router::new()
        .route("/v1/admin/status", get(status))
        .merge(repnet_http::keys::routes(Arc::clone(&state.devices)))
        .route(
            "/v1/admin/settings",
            get(get_settings).patch(patch_settings),
        )
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state.admin),
            repnet_http::admin::require_admin,
        ));
    Router::new()
        .merge(devices)
        .merge(admin)
        .merge(crate::console::routes(Arc::clone(&state), tls))
        .route("/healthz", get(|| async { json_response(StatusCode::OK, br#"{"status":"ok"}"#.to_vec()) }))
        .route("/readyz", get(|| async { json_response(StatusCode::OK, br#"{"status":"ready"}"#.to_vec()) }))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such endpoint: the proxy serves the lookup API (/v1/files, /v1/urls, /v1/lookup, …)")
        })
        .layer(middleware::from_fn_with_state(
            Arc::new(repnet_http::RequestLimits::new(
                &state.config.connections,
                state.config.max_body_bytes,
                |_| false,
            )),
            repnet_http::guard_requests,
        ))
        // The body extractor stops reading at the limit; `body_bytes` turns that into JSON.
        .layer(axum::extract::DefaultBodyLimit::max(state.config.max_body_bytes))
        .with_state(state)
}

/// Devices: the proxy enabled, and their address in an allowed network.
async fn admit(
    Extract(state): Extract<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let settings = state.settings();
    if !settings.enabled {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ProxyDisabled,
            "this proxy is disabled by its administrator: use the reputation server directly",
        )
        .into_response();
    }
    let networks = settings.networks();
    if !networks.is_empty() && !networks.iter().any(|network| network.contains(peer.ip())) {
        // The address is not logged: it is a device's.
        return ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::NetworkNotAllowed,
            "this proxy serves the networks its administrator allowed, and yours is not one of them",
        )
        .into_response();
    }
    if settings.require_device_key
        && let Err(refusal) = state
            .devices
            .check(request.headers(), repnet_runtime::now())
    {
        return ApiError::from(refusal).into_response();
    }
    next.run(request).await
}

/// The question's cache key, checked like the server checks it.
fn key(kind: ObjectKind, text: &str) -> Result<Key, ApiError> {
    let invalid = |error: repnet_model::ParseError| {
        ApiError::bad_request(repnet_protocol::ErrorCode::of(&error), error.to_string())
    };
    let value = match kind {
        ObjectKind::Url => CanonicalUrl::parse(text.as_bytes())
            .map_err(invalid)?
            .to_string(),
        kind => Object::parse(kind, text).map_err(invalid)?.to_string(),
    };
    Ok((kind, value))
}

/// The storage keys an answer depends on, for invalidation.
fn dependencies(key: &Key, reputation: &Reputation) -> Vec<u64> {
    let mut objects = Vec::new();
    match key.0 {
        ObjectKind::File => {
            // The key names one hash, or several (`cache::file_key`).
            let hashes = reputation.object.hashes.clone().unwrap_or_default();
            for hash in [hashes.md5, hashes.sha1, hashes.sha256]
                .into_iter()
                .flatten()
                .chain(key.1.split(',').map(str::to_owned))
            {
                if let Ok(hash) = FileHash::from_hex(&hash) {
                    objects.push(Object::File(hash));
                }
            }
        }
        ObjectKind::Url | ObjectKind::Domain | ObjectKind::Ip => {
            let url = match key.0 {
                ObjectKind::Url => key.1.clone(),
                _ if key.1.contains(':') => format!("http://[{}]/", key.1),
                _ => format!("http://{}/", key.1),
            };
            if let Ok(url) = CanonicalUrl::parse(url.as_bytes()) {
                objects.extend(url.expressions().into_iter().map(Object::Url));
            }
        }
        ObjectKind::Certificate => {
            if let Ok(object) = Object::parse(key.0, &key.1) {
                objects.push(object);
            }
        }
    }
    objects
        .iter()
        .map(|object| crate::cache::short_key(repnet_model::key::ObjectKey::of(object).as_bytes()))
        .collect()
}

/// How an answer was found; a response of several answers is the worst of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Hit,
    Miss,
    Stale,
}

impl Source {
    fn header(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Source::Hit => "hit",
            Source::Miss => "miss",
            Source::Stale => "stale",
        })
    }
}

fn unavailable(error: &UpstreamError) -> ApiError {
    match error {
        // The proxy's own key or request was refused upstream: a gateway's failure, not the
        // device's (its key, if any, is the proxy's business).
        UpstreamError::Refused {
            status,
            code,
            message,
        } => ApiError::new(
            StatusCode::BAD_GATEWAY,
            ErrorCode::UpstreamRefused,
            format!("the upstream server refused the proxy ({status} {code}): {message}"),
        ),
        other => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::UpstreamUnavailable,
            format!(
                "{other}; nothing is cached for this question: ask the reputation server directly"
            ),
        ),
    }
}

/// One answer: fresh from the cache (with what is left of its lifetime as its `ttl`), or from
/// upstream (coalesced), or stale (marked so, `ttl` 0) when the upstream cannot answer.
async fn answer(state: &State, key: Key) -> Result<Answer, ApiError> {
    let now = tokio::time::Instant::now();
    let cache = state.cache();
    let expired = match cache.get(&key, now) {
        Cached::Fresh(reputation, left) => {
            state.metrics.hits.inc();
            let original_ttl = reputation.ttl;
            let mut reputation = (*reputation).clone();
            reputation.ttl = u32::try_from(left.as_secs()).unwrap_or(u32::MAX);
            return Ok(Answer {
                reputation,
                source: Source::Hit,
                original_ttl,
            });
        }
        Cached::Expired(reputation) => Some(reputation),
        Cached::Missing => None,
    };
    state.metrics.misses.inc();
    match state.upstream().ask(key.clone()).await {
        Ok(reputation) => {
            let keys = dependencies(&key, &reputation);
            cache.insert(key, reputation.clone(), keys, tokio::time::Instant::now());
            state.metrics.cache_entries.set(cache.len() as i64);
            state
                .metrics
                .cache_bytes
                .set(i64::try_from(cache.bytes()).unwrap_or(i64::MAX));
            Ok(Answer {
                original_ttl: reputation.ttl,
                reputation,
                source: Source::Miss,
            })
        }
        Err(error) => match expired {
            Some(reputation) if !matches!(error, UpstreamError::Refused { .. }) => {
                state.metrics.stale.inc();
                let original_ttl = reputation.ttl;
                let mut reputation = (*reputation).clone();
                reputation.stale = true;
                reputation.ttl = 0;
                Ok(Answer {
                    reputation,
                    source: Source::Stale,
                    original_ttl,
                })
            }
            _ => Err(unavailable(&error)),
        },
    }
}

/// An answer as a device gets it.
#[derive(Debug)]
struct Answer {
    reputation: Reputation,
    source: Source,
    /// The lifetime the upstream gave it (for `Age`).
    original_ttl: u32,
}

fn reputation_response(answer: &Answer) -> Response {
    let Answer {
        reputation,
        source,
        original_ttl,
    } = answer;
    let (source, original_ttl) = (*source, *original_ttl);
    let mut response = json_response(StatusCode::OK, repnet_protocol::to_json(reputation));
    let headers = response.headers_mut();
    headers.insert("x-repnet-cache", source.header());
    if let Ok(value) = HeaderValue::from_str(&format!("private, max-age={}", reputation.ttl)) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    // How long the answer has been in the cache (RFC 9111): the device's own cache counts
    // from when the proxy got it, not from now.
    if source != Source::Miss {
        let age = original_ttl.saturating_sub(reputation.ttl);
        headers.insert(header::AGE, HeaderValue::from(age));
    }
    response
}

#[derive(Debug, Deserialize)]
struct SingleParams {
    #[serde(default)]
    explain: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

async fn single(
    state: Shared,
    kind: ObjectKind,
    value: &str,
    params: &SingleParams,
    uri: &axum::http::Uri,
) -> Response {
    if params.explain.is_some() {
        // An explanation is for a person looking closely: asked upstream as it is.
        return forward(&state, Method::GET, uri, None, Vec::new()).await;
    }
    let key = match key(kind, value) {
        Ok(key) => key,
        Err(failure) => return failure.into_response(),
    };
    match answer(&state, key).await {
        Ok(answer) => reputation_response(&answer),
        Err(failure) => failure.into_response(),
    }
}

async fn get_file(
    Extract(state): Extract<Shared>,
    Path(value): Path<String>,
    Query(params): Query<SingleParams>,
    uri: axum::http::Uri,
) -> Response {
    single(state, ObjectKind::File, &value, &params, &uri).await
}

async fn get_domain(
    Extract(state): Extract<Shared>,
    Path(value): Path<String>,
    Query(params): Query<SingleParams>,
    uri: axum::http::Uri,
) -> Response {
    single(state, ObjectKind::Domain, &value, &params, &uri).await
}

async fn get_ip(
    Extract(state): Extract<Shared>,
    Path(value): Path<String>,
    Query(params): Query<SingleParams>,
    uri: axum::http::Uri,
) -> Response {
    single(state, ObjectKind::Ip, &value, &params, &uri).await
}

async fn get_certificate(
    Extract(state): Extract<Shared>,
    Path(value): Path<String>,
    Query(params): Query<SingleParams>,
    uri: axum::http::Uri,
) -> Response {
    single(state, ObjectKind::Certificate, &value, &params, &uri).await
}

async fn get_url(
    Extract(state): Extract<Shared>,
    Query(params): Query<SingleParams>,
    uri: axum::http::Uri,
) -> Response {
    let Some(url) = params.url.clone() else {
        return ApiError::bad_request(
            ErrorCode::InvalidUrl,
            "give the URL to look up: /v1/urls?url=<percent-encoded URL>",
        )
        .into_response();
    };
    single(state, ObjectKind::Url, &url, &params, &uri).await
}

/// `POST /v1/lookup`: JSON batches item by item through the cache; the binary form and
/// explained lookups go upstream as they are.
async fn lookup_batch(
    Extract(state): Extract<Shared>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Payload(body): Payload,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if !content_type.starts_with("application/json")
        || uri.query().is_some_and(|q| q.contains("explain"))
    {
        return forward(
            &state,
            Method::POST,
            &uri,
            Some(&content_type),
            body.to_vec(),
        )
        .await;
    }
    let request = match repnet_protocol::parse_lookup_request(&body) {
        Ok(request) => request,
        Err(error) => return ApiError::bad_request(error.code, error.message).into_response(),
    };
    if request.items.len() > repnet_client::BATCH_LIMIT {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BatchTooLarge,
            format!(
                "at most {} items per request; got {}",
                repnet_client::BATCH_LIMIT,
                request.items.len()
            ),
        )
        .into_response();
    }
    let mut keys = Vec::with_capacity(request.items.len());
    for (index, item) in request.items.iter().enumerate() {
        let (kind, value) = match item.target() {
            Ok(repnet_protocol::ItemTarget::Object(kind, value)) => (kind, value),
            Ok(repnet_protocol::ItemTarget::File(hashes)) => match hashes.parse() {
                Ok(hashes) => {
                    keys.push(crate::cache::file_key(&hashes));
                    continue;
                }
                Err((field, error)) => {
                    let path = match field {
                        "" => format!("items[{index}].file"),
                        field => format!("items[{index}].file.{field}"),
                    };
                    return ApiError::bad_request(
                        repnet_protocol::ErrorCode::of(&error),
                        format!("{path}: {error}"),
                    )
                    .into_response();
                }
            },
            Err(problem) => {
                return ApiError::bad_request(
                    ErrorCode::InvalidRequest,
                    format!("items[{index}] {problem}"),
                )
                .into_response();
            }
        };
        match key(kind, value) {
            Ok(key) => keys.push(key),
            Err(failure) => {
                return ApiError::bad_request(
                    failure.code,
                    format!("items[{index}].{}: {}", kind.as_str(), failure.message),
                )
                .into_response();
            }
        }
    }
    let mut answers =
        futures_util::future::join_all(keys.into_iter().map(|key| answer(&state, key))).await;
    // What could be answered is; an item that could not (the upstream down and the item not
    // cached) gets its error in its place. Only when nothing could be answered is the whole
    // batch refused, as a single lookup would be.
    if !answers.is_empty()
        && answers.iter().all(Result::is_err)
        && let Err(failure) = answers.swap_remove(0)
    {
        return failure.into_response();
    }
    let mut results = Vec::with_capacity(request.items.len());
    let mut overall = Source::Hit;
    for answer in answers {
        match answer {
            Ok(Answer {
                reputation, source, ..
            }) => {
                overall = match (overall, source) {
                    (Source::Stale, _) | (_, Source::Stale) => Source::Stale,
                    (Source::Miss, _) | (_, Source::Miss) => Source::Miss,
                    _ => Source::Hit,
                };
                results.push(LookupResult::Reputation(reputation));
            }
            Err(failure) => {
                overall = Source::Stale;
                results.push(LookupResult::Unavailable(repnet_protocol::ErrorBody::new(
                    failure.code,
                    failure.message,
                )));
            }
        }
    }
    let mut response = json_response(
        StatusCode::OK,
        repnet_protocol::to_json(&LookupResponse { results }),
    );
    response
        .headers_mut()
        .insert("x-repnet-cache", overall.header());
    response
}

/// Privacy-mode searches: each prefix answered from the cache while fresh, the others
/// coalesced with other devices' prefixes and asked upstream in one search. An expired
/// answer serves when the upstream cannot answer (with `cache_seconds` 0). Like the server,
/// the proxy learns only prefixes.
async fn search_hashes(
    Extract(state): Extract<Shared>,
    JsonBody(request): JsonBody<repnet_protocol::HashSearchRequest>,
) -> Response {
    if let Some(message) = request.too_large() {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BatchTooLarge,
            message,
        )
        .into_response();
    }
    let mut prefixes: Vec<Prefix> = match request.parsed() {
        Ok(parsed) => parsed
            .into_iter()
            .map(|(of, bytes)| Prefix { of, bytes })
            .collect(),
        Err((field, error)) => {
            return ApiError::bad_request(
                repnet_protocol::ErrorCode::of(&error),
                format!("{field}: {error}"),
            )
            .into_response();
        }
    };
    prefixes.sort_by(|a, b| (a.of, &a.bytes).cmp(&(b.of, &b.bytes)));
    prefixes.dedup();
    let answers = futures_util::future::join_all(
        prefixes
            .into_iter()
            .map(|prefix| search_answer(&state, prefix)),
    )
    .await;
    let mut response = repnet_protocol::HashSearchResponse {
        matches: Vec::new(),
        cache_seconds: u32::MAX,
        unknown_cache_seconds: Some(u32::MAX),
    };
    let mut overall = Source::Hit;
    let mut seen = std::collections::HashSet::new();
    for answer in answers {
        let (answer, age, source) = match answer {
            Ok(answered) => answered,
            // A search is answered whole or not at all: a client decides from all of it.
            Err(failure) => return failure.into_response(),
        };
        overall = overall.max(source);
        // The upstream's lifetimes, less the time the answer has spent here; nothing for
        // an answer served stale.
        let left = |seconds: u32| match source {
            Source::Stale => 0,
            _ => seconds.saturating_sub(age),
        };
        response.cache_seconds = response.cache_seconds.min(left(answer.cache_seconds));
        response.unknown_cache_seconds = response
            .unknown_cache_seconds
            .map(|u| u.min(left(answer.unknown_cache_seconds)));
        // A hash under two of the prefixes (one longer than the other) is sent once.
        for found in &answer.matches {
            if seen.insert((found.kind.clone(), found.hash.clone())) {
                response.matches.push(found.clone());
            }
        }
    }
    if response.cache_seconds == u32::MAX {
        (response.cache_seconds, response.unknown_cache_seconds) = (0, Some(0));
    }
    let mut reply = json_response(StatusCode::OK, repnet_protocol::to_json(&response));
    reply
        .headers_mut()
        .insert("x-repnet-cache", overall.header());
    reply
}

/// The answer for one prefix, how many seconds it has been cached, and how it was found.
async fn search_answer(
    state: &State,
    prefix: Prefix,
) -> Result<(Arc<PrefixAnswer>, u32, Source), ApiError> {
    let cache = state.cache();
    let seconds = |age: std::time::Duration| u32::try_from(age.as_secs()).unwrap_or(u32::MAX);
    let expired = match cache.get_prefix(&prefix, tokio::time::Instant::now()) {
        Some((answer, age, true)) => {
            state.metrics.hits.inc();
            return Ok((answer, seconds(age), Source::Hit));
        }
        Some((answer, age, false)) => Some((answer, age)),
        None => None,
    };
    state.metrics.misses.inc();
    match state.upstream().search(prefix.clone()).await {
        Ok(answer) => {
            cache.insert_prefix(prefix, Arc::clone(&answer), tokio::time::Instant::now());
            state.metrics.cache_entries.set(cache.len() as i64);
            state
                .metrics
                .cache_bytes
                .set(i64::try_from(cache.bytes()).unwrap_or(i64::MAX));
            Ok((answer, 0, Source::Miss))
        }
        Err(error) => match expired {
            Some((answer, age)) if !matches!(error, UpstreamError::Refused { .. }) => {
                state.metrics.stale.inc();
                Ok((answer, seconds(age), Source::Stale))
            }
            _ => Err(unavailable(&error)),
        },
    }
}

/// Sends a request upstream as it came, and its answer back.
async fn forward(
    state: &State,
    method: Method,
    uri: &axum::http::Uri,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Response {
    let path = uri
        .path_and_query()
        .map_or(uri.path(), |pq| pq.as_str())
        .to_owned();
    let upstream = state.upstream();
    let started = Instant::now();
    let reqwest_method =
        reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap_or(reqwest::Method::GET);
    match upstream
        .client()
        .forward(reqwest_method, &path, content_type, body)
        .await
    {
        Ok(response) => {
            let status =
                StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
            let bytes = if status.is_success() {
                match repnet_client::read_limited(response, repnet_client::MAX_ANSWER_BODY).await {
                    Ok(bytes) => bytes,
                    Err(error) => {
                        upstream.record(started, Outcome::Failed(error.to_string()));
                        return unavailable(&UpstreamError::Unavailable(error.to_string()))
                            .into_response();
                    }
                }
            } else {
                repnet_client::read_error_body(response).await
            };
            let (code, message) =
                match repnet_protocol::from_json::<repnet_protocol::ErrorBody>(&bytes) {
                    Ok(error) => (error.error.code, error.error.message),
                    Err(_) => ("-".to_owned(), format!("status {status}")),
                };
            let outcome = Outcome::of_status(status.as_u16(), || {
                format!("{} {code}: {message}", status.as_u16())
            });
            let refused = matches!(outcome, Outcome::Refused(_));
            upstream.record(started, outcome);
            // The upstream refusing the proxy's key is the gateway's failure, not the device's
            // (which would otherwise read a 401 as its own key being wrong).
            if refused {
                return unavailable(&UpstreamError::Refused {
                    status: status.as_u16(),
                    code,
                    message,
                })
                .into_response();
            }
            let mut answer = (status, Body::from(bytes)).into_response();
            if let Some(content_type) = content_type {
                answer
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, content_type);
            }
            answer
                .headers_mut()
                .insert("x-repnet-cache", Source::Miss.header());
            answer
        }
        Err(error) => {
            upstream.record(started, Outcome::Failed(error.to_string()));
            unavailable(&UpstreamError::Unavailable(error.to_string())).into_response()
        }
    }
}

async fn pass_through(
    Extract(state): Extract<Shared>,
    method: Method,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Payload(body): Payload,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    forward(&state, method, &uri, content_type.as_deref(), body.to_vec()).await
}

/// Statistics: checked, scrubbed again and forwarded when the policy allows; otherwise
/// acknowledged and dropped (the device's participation is the user's choice; the proxy's
/// policy is the organisation's).
async fn statistics(
    Extract(state): Extract<Shared>,
    uri: axum::http::Uri,
    Payload(body): Payload,
) -> Response {
    let mut batch: repnet_protocol::StatisticsBatch = match repnet_protocol::parse_body(&body) {
        Ok(batch) => batch,
        Err(error) => return ApiError::bad_request(error.code, error.message).into_response(),
    };
    let events = batch.events.len();
    if !state.settings().forward_statistics {
        return json_response(
            StatusCode::ACCEPTED,
            format!(r#"{{"accepted":{events}}}"#).into_bytes(),
        );
    }
    for event in &mut batch.events {
        event.url = event
            .url
            .take()
            .map(|url| repnet_model::privacy::scrub_url(&url).unwrap_or_default());
        event.name = event
            .name
            .take()
            .map(|name| repnet_model::privacy::scrub_path(&name));
        event.comment = event
            .comment
            .take()
            .map(|comment| repnet_model::privacy::scrub_text(&comment));
        event.threat = event
            .threat
            .take()
            .and_then(|threat| repnet_model::privacy::scrub_threat(&threat));
    }
    forward(
        &state,
        Method::POST,
        &uri,
        Some("application/json"),
        repnet_protocol::to_json(&batch),
    )
    .await
}

async fn metrics(Extract(state): Extract<Shared>) -> Response {
    let mut text = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        tracing::error!(%error, "cannot encode metrics");
    }
    let mut response = (StatusCode::OK, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

async fn status(Extract(state): Extract<Shared>) -> Response {
    let (hits, misses, stale) = (
        state.metrics.hits.get(),
        state.metrics.misses.get(),
        state.metrics.stale.get(),
    );
    let health = state.upstream().health();
    let position = state
        .position
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let body = serde_json::json!({
        "role": "proxy",
        "settings": state.settings(),
        "cache_entries": state.cache().len(),
        "cache_bytes": state.cache().bytes(),
        "hits": hits,
        "misses": misses,
        "stale": stale,
        "hit_rate": if hits + misses == 0 { 0.0 } else { hits as f64 / (hits + misses) as f64 },
        "upstream": {
            "healthy": health.healthy,
            "refused": health.refused,
            "consecutive_failures": health.consecutive_failures,
            "last_error": health.last_error,
            "requests": state.metrics.upstream_requests.get(),
            "errors": state.metrics.upstream_errors.get(),
        },
        "change_log": position.map(|(log_id, sequence)| serde_json::json!({"log_id": log_id, "sequence": sequence})),
        "workers": repnet_http::admin::worker_statuses(&state.workers),
    });
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

async fn get_settings(Extract(state): Extract<Shared>) -> Response {
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&state.settings()).unwrap_or_default(),
    )
}

/// Changes runtime settings: checked, applied at once (a new upstream or window starts a new
/// upstream client; a new size a new, empty cache), and kept for the next start.
async fn patch_settings(
    Extract(state): Extract<Shared>,
    headers: HeaderMap,
    Payload(body): Payload,
) -> Response {
    if let Err(error) = repnet_http::api::require_merge_patch(&headers) {
        return error.into_response();
    }
    let changed = state
        .change_settings(|current| {
            current.patched(&body).map_err(|error| {
                ApiError::bad_request(ErrorCode::InvalidSetting, error.to_string())
            })
        })
        .await;
    let settings = match changed {
        Ok(settings) => settings,
        Err(error) => return error.into_response(),
    };
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&settings).unwrap_or_default(),
    )
}
