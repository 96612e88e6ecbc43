//! Participation: the statement, statistics from participants, the engine's progress and
//! the review queue. Checking, scrubbing and storing are `crate::statistics`'s.
use crate::AppState;
use crate::statistics::{device, event};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use repnet_http::ApiError;
use repnet_http::api::{JsonBody, body_bytes, json_response, require_json};
use repnet_protocol::ErrorCode;
use repnet_protocol::{
    ObjectRef, ReviewEntry, ReviewList, SettleReview, StatisticsAccepted, StatisticsBatch,
};
use std::sync::Arc;
use tokio::sync::oneshot;

/// The participation statement.
#[utoipa::path(get, path = "/v1/statement", tag = "participation",
    responses((status = 200, body = repnet_protocol::Statement)))]
pub(crate) async fn get_statement(State(state): State<Arc<AppState>>) -> Response {
    json_response(StatusCode::OK, repnet_protocol::to_json(&state.statement))
}

/// Anonymous statistics from a participant in extended mode.
#[utoipa::path(post, path = "/v1/statistics", tag = "participation",
    request_body = repnet_protocol::StatisticsBatch,
    responses((status = 202, description = "the events are on disk", body = repnet_protocol::StatisticsAccepted),
              (status = 400, body = repnet_protocol::ErrorBody),
              (status = 403, description = "the statement version is not the one this server publishes", body = repnet_protocol::ErrorBody)))]
pub(crate) async fn post_statistics(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    JsonBody(batch): JsonBody<StatisticsBatch>,
) -> Result<Response, ApiError> {
    if batch.statement_version != state.statement.version {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::StatementNotAccepted,
            format!(
                "statement_version {} is not the statement this server publishes (version {}): read it with `repnet statement` and accept it with `repnet statement --accept`",
                batch.statement_version, state.statement.version
            ),
        ));
    }
    let installation = state
        .installations
        .verify(&batch.installation)
        .ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::InvalidInstallation,
                "installation: not a token this server issued: enrol with GET /v1/installations/challenge and POST /v1/installations, and send the token you get",
            )
        })?;
    if let Some(bound) = installation.key {
        let sent = state.licences.key_id(&headers, repnet_store::now());
        if sent.map(|id| state.installations.key_binding(&id)) != Some(bound) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::InstallationKeyMismatch,
                "installation: this installation was enrolled with a licence key; send its statistics with the same key (Authorization: Bearer KEY)",
            ));
        }
    }
    if batch.product.is_empty()
        || batch.product.len() > 100
        || batch.product.chars().any(|c| c.is_control())
    {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidProduct,
            "product: the product's name and version, 1 to 100 characters",
        ));
    }
    if batch.events.is_empty() || batch.events.len() > state.max_statistics_events {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidEvents,
            format!(
                "events: from 1 to {} events per request; got {}",
                state.max_statistics_events,
                batch.events.len()
            ),
        ));
    }
    let now = repnet_store::now();
    let secret = state
        .store
        .device_secret(now, state.device_secret_rotation_seconds)
        .await
        .map_err(|error| {
            crate::failures::store_failed("the statistics could not be stored", &error)
        })?;
    let device = device(&secret, &installation.id);
    let established = now.0
        >= installation
            .enrolled
            .0
            .saturating_add(state.engine.established_after_hours().saturating_mul(3600));
    if let Err(wait) = state.install_limit.take(device) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            format!(
                "this installation sent more than {} statistics batches in a minute: send fewer, larger batches (up to {} events each); retry after {wait} s",
                state.install_limit.per_minute(),
                state.max_statistics_events
            ),
        )
        .with_header(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(wait),
        ));
    }
    let events = batch
        .events
        .iter()
        .enumerate()
        .map(|(index, e)| event(index, e, device, established, now))
        .collect::<Result<Vec<_>, _>>()?;
    let accepted = events.len() as u64;
    let (done, stored) = oneshot::channel();
    state.statistics.send((events, done)).await.map_err(|_| {
        ApiError::internal("the statistics could not be stored", &"the writer stopped")
    })?;
    match stored.await {
        Ok(Ok(())) => {
            // Counts only: nothing of the request (address, install id, content) is logged.
            tracing::debug!(events = accepted, "statistics stored");
            Ok(json_response(
                StatusCode::ACCEPTED,
                repnet_protocol::to_json(&StatisticsAccepted { accepted }),
            ))
        }
        Ok(Err(error)) => Err(ApiError::internal(
            "the statistics could not be stored",
            &error,
        )),
        Err(_) => Err(ApiError::internal(
            "the statistics could not be stored",
            &"the writer stopped",
        )),
    }
}

/// The reputation engine's settings and progress.
#[utoipa::path(get, path = "/v1/admin/engine", tag = "admin",
    responses((status = 200, body = repnet_protocol::EngineStatus),
              (status = 401, body = repnet_protocol::ErrorBody)),
    security(("admin_token" = [])))]
pub(crate) async fn get_engine(State(state): State<Arc<AppState>>) -> Response {
    json_response(
        StatusCode::OK,
        repnet_protocol::to_json(&state.engine.status(&state.store).await),
    )
}

/// False-positive reports and the engine's verdicts awaiting the administrator, oldest
/// first.
#[utoipa::path(get, path = "/v1/admin/review", tag = "admin",
    responses((status = 200, body = repnet_protocol::ReviewList),
              (status = 401, body = repnet_protocol::ErrorBody)),
    security(("admin_token" = [])))]
pub(crate) async fn list_review(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let list = ReviewList {
        items: review_items(&state)
            .await?
            .iter()
            .map(|(item, reputation)| ReviewEntry {
                id: item.id.clone(),
                kind: match item.engine {
                    Some(_) => "engine",
                    None => "false_positive",
                }
                .to_owned(),
                engine_verdict: item.engine.map(Into::into),
                object: ObjectRef::from_model(&item.object, &repnet_model::FileHashes::default()),
                reports: item.reports,
                first_reported: repnet_protocol::rfc3339(item.first_reported),
                last_reported: repnet_protocol::rfc3339(item.last_reported),
                comment: item.comment.clone(),
                verdict: reputation.verdict.into(),
            })
            .collect(),
    };
    Ok(json_response(
        StatusCode::OK,
        repnet_protocol::to_json(&list),
    ))
}

/// The review queue's open items, each with its object's answer now (verdict, deciding
/// source, prevalence): what the API lists and the console shows.
pub(crate) async fn review_items(
    state: &AppState,
) -> Result<Vec<(repnet_store::ReviewItem, repnet_model::Reputation)>, ApiError> {
    let items = state.store.review_items().await.map_err(|error| {
        crate::failures::store_failed("the review queue could not be read", &error)
    })?;
    let lookups = items
        .iter()
        .map(|item| crate::lookup::Lookup::direct(item.object.clone()))
        .collect();
    let reputations = crate::lookup::assess(state, lookups).await?;
    Ok(items.into_iter().zip(reputations).collect())
}

/// Settles a report: a local verdict on its object (or `dismiss`), and the item closes.
#[utoipa::path(post, path = "/v1/admin/review/{id}", tag = "admin",
    params(("id" = String, Path, description = "the item's id, as listed")),
    request_body = repnet_protocol::SettleReview,
    responses((status = 200, body = repnet_protocol::ReviewList, description = "the items still open"),
              (status = 400, body = repnet_protocol::ErrorBody),
              (status = 401, body = repnet_protocol::ErrorBody),
              (status = 404, body = repnet_protocol::ErrorBody)),
    security(("admin_token" = [])))]
pub(crate) async fn settle_review(
    State(state): State<Arc<AppState>>,
    id: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Ok(axum::extract::Path(id)) = id else {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidPath,
            "the path is /v1/admin/review/<id>, with an id from GET /v1/admin/review",
        ));
    };
    require_json(&headers)?;
    let body = body_bytes(body)?;
    let request: SettleReview = repnet_protocol::parse_body(&body).map_err(ApiError::from_body)?;
    settle(&state, &id, request).await?;
    list_review(State(state)).await
}

/// Settles review item `id`: a local verdict on its object (`trusted`, `riskware`,
/// `untrusted`) or none (`dismiss`), and the item closes.
pub(crate) async fn settle(
    state: &AppState,
    id: &str,
    request: SettleReview,
) -> Result<(), ApiError> {
    let verdict = match request.verdict.as_str() {
        "dismiss" => None,
        text => Some(
            text.parse::<repnet_model::Verdict>()
                .ok()
                .filter(|verdict| *verdict != repnet_model::Verdict::Unknown)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        ErrorCode::InvalidVerdict,
                        "verdict: trusted, riskware or untrusted (a local verdict on the object), or dismiss",
                    )
                })?,
        ),
    };
    let items = state.store.review_items().await.map_err(|error| {
        crate::failures::store_failed("the review queue could not be read", &error)
    })?;
    let Some(item) = items.into_iter().find(|item| item.id == id) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::ReviewNotFound,
            format!("no open report has id {id:?}: GET /v1/admin/review lists them"),
        ));
    };
    if let Some(verdict) = verdict {
        let now = repnet_store::now();
        let record = repnet_model::SourceRecord::new(
            repnet_model::Source::Local,
            verdict,
            repnet_model::Confidence::MAX,
            now,
        );
        state
            .store
            .apply(vec![repnet_store::Change::Put {
                object: item.object.clone(),
                hashes: repnet_model::FileHashes::default(),
                record,
                comment: Some(request.comment.unwrap_or_else(|| {
                    format!("settled false-positive report ({} reports)", item.reports)
                })),
            }])
            .await
            .map_err(|error| {
                crate::failures::store_failed("the local verdict could not be stored", &error)
            })?;
    }
    state
        .store
        .remove_review(id.to_owned())
        .await
        .map_err(|error| {
            crate::failures::store_failed("the review item could not be closed", &error)
        })?;
    tracing::info!(kind = %item.object.kind(), settled = %request.verdict, engine = item.engine.is_some(), "review item settled");
    Ok(())
}
