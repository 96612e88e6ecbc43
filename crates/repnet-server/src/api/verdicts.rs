//! `/v1/admin/verdicts`: the administrator's local verdicts, set, removed and listed.
use super::lookups::{item_object, single};
use crate::AppState;
use crate::lookup::Lookup;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use repnet_http::ApiError;
use repnet_http::api::{body_bytes, json_response, require_json};
use repnet_model::{Category, Confidence, Object, Source, SourceRecord, ThreatName, Verdict};
use repnet_protocol::ErrorCode;
use repnet_protocol::{LocalVerdictEntry, LocalVerdictList, LookupItem, SetLocalVerdict};
use repnet_store::{Change, Outcome};
use serde::Deserialize;
use std::sync::Arc;

const MAX_COMMENT_CHARS: usize = 1000;

/// Sets or replaces the local verdict on one object; answers the object's new reputation.
#[utoipa::path(put, path = "/v1/admin/verdicts", tag = "admin",
    request_body = repnet_protocol::SetLocalVerdict,
    responses((status = 200, body = repnet_protocol::Reputation),
              (status = 400, body = repnet_protocol::ErrorBody),
              (status = 401, body = repnet_protocol::ErrorBody)),
    security(("admin_token" = [])))]
pub(crate) async fn set_local_verdict(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require_json(&headers)?;
    let body = body_bytes(body)?;
    let request: SetLocalVerdict<'_> =
        repnet_protocol::parse_body(&body).map_err(ApiError::from_body)?;
    let object = set_local(&state, &request).await?;
    single(&state, admin_query(object), true).await
}

/// Checks a local verdict as the API and the console receive it, and stores it; answers its
/// object. Every error names the field (`object`, `verdict`, `threat`, `categories[i]`,
/// `comment`, `expires`) at the start of its message.
pub(crate) async fn set_local(
    state: &AppState,
    request: &SetLocalVerdict<'_>,
) -> Result<Object, ApiError> {
    let (object, hashes) = item_object(&request.object, "object")?;
    let verdict: Verdict = request
        .verdict
        .parse()
        .map_err(|e| ApiError::invalid("verdict", &e))?;
    if verdict == Verdict::Unknown {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidVerdict,
            "verdict: a local verdict is trusted, riskware or untrusted; to remove one, DELETE /v1/admin/verdicts?<type>=<value>",
        ));
    }
    let threat = match request.threat.as_deref() {
        None => None,
        Some(text) => Some(ThreatName::new(text).map_err(|e| ApiError::invalid("threat", &e))?),
    };
    let mut categories = repnet_model::Categories::EMPTY;
    for (index, text) in request.categories.iter().enumerate() {
        let category: Category = text
            .parse()
            .map_err(|e| ApiError::invalid(&format!("categories[{index}]"), &e))?;
        categories = categories.with(category);
    }
    if let Some(comment) = &request.comment {
        let chars = comment.chars().count();
        if chars > MAX_COMMENT_CHARS {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidComment,
                format!("comment: at most {MAX_COMMENT_CHARS} characters; got {chars}"),
            ));
        }
        // NUL and other control characters (line breaks aside) end up in logs and listings.
        if let Some(bad) = comment
            .chars()
            .find(|&c| repnet_model::is_control_or_bidi(c) && !matches!(c, '\n' | '\t'))
        {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidComment,
                format!(
                    "comment: control and text-direction characters are not allowed (found U+{:04X})",
                    u32::from(bad)
                ),
            ));
        }
    }
    let now = repnet_store::now();
    let expires = match request.expires.as_deref() {
        None => None,
        Some(text) => {
            let expires = repnet_protocol::parse_time(text).map_err(|message| {
                ApiError::bad_request(ErrorCode::InvalidExpires, format!("expires: {message}"))
            })?;
            if expires <= now {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidExpires,
                    format!(
                        "expires: {text} is not in the future: give a later time, or none for a verdict that does not lapse"
                    ),
                ));
            }
            Some(expires)
        }
    };
    let mut record = SourceRecord::new(Source::Local, verdict, Confidence::MAX, now);
    record.threat = threat;
    record.categories = categories;
    state
        .store
        .apply(vec![Change::Local {
            object: object.clone(),
            hashes,
            record,
            comment: request.comment.clone(),
            expires,
        }])
        .await
        .map_err(|error| {
            crate::failures::store_failed("the local verdict could not be stored", &error)
        })?;
    // URLs and hashes are what users look up: never in the log at the default level.
    tracing::debug!(object = %object, %verdict, "local verdict set");
    tracing::info!(kind = %object.kind(), %verdict, "local verdict set");
    Ok(object)
}

/// The answer to an admin change is about the object changed, as it is stored.
fn admin_query(object: Object) -> Lookup {
    Lookup::direct(object)
}

/// Which object to remove the local verdict from: exactly one parameter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ObjectParams {
    file: Option<String>,
    domain: Option<String>,
    ip: Option<String>,
    certificate: Option<String>,
    url: Option<String>,
}

/// Removes the local verdict on one object (`?file=…`, `?domain=…`, `?ip=…` or `?certificate=…`).
#[utoipa::path(delete, path = "/v1/admin/verdicts", tag = "admin",
    params(("file" = Option<String>, Query), ("domain" = Option<String>, Query),
           ("ip" = Option<String>, Query), ("certificate" = Option<String>, Query)),
    responses((status = 200, body = repnet_protocol::Reputation),
              (status = 404, body = repnet_protocol::ErrorBody)),
    security(("admin_token" = [])))]
pub(crate) async fn remove_local_verdict(
    State(state): State<Arc<AppState>>,
    params: Result<Query<ObjectParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|rejection| {
        ApiError::bad_request(
            ErrorCode::InvalidQuery,
            format!(
                "{}: name the object with exactly one of file=, domain=, ip=, certificate= or url=",
                rejection.body_text()
            ),
        )
    })?;
    let item = LookupItem {
        file: params
            .file
            .as_deref()
            .map(|hash| repnet_protocol::FileRef::Hash(hash.into())),
        domain: params.domain.as_deref().map(Into::into),
        ip: params.ip.as_deref().map(Into::into),
        certificate: params.certificate.as_deref().map(Into::into),
        url: params.url.as_deref().map(Into::into),
    };
    let (object, _) = item_object(&item, "query")?;
    remove_local(&state, &object).await?;
    single(&state, admin_query(object), true).await
}

/// Removes the local verdict on `object`; `404 no_local_verdict` when there is none.
pub(crate) async fn remove_local(state: &AppState, object: &Object) -> Result<(), ApiError> {
    let outcome = state
        .store
        .apply(vec![Change::Remove {
            object: object.clone(),
            source: Source::Local,
        }])
        .await
        .map_err(|error| {
            crate::failures::store_failed("the local verdict could not be removed", &error)
        })?;
    if outcome.first() != Some(&Outcome::Removed) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NoLocalVerdict,
            format!(
                "there is no local verdict on {} {object}: GET /v1/admin/verdicts lists them",
                object.kind()
            ),
        ));
    }
    tracing::debug!(object = %object, "local verdict removed");
    tracing::info!(kind = %object.kind(), "local verdict removed");
    Ok(())
}

/// Every local verdict.
#[utoipa::path(get, path = "/v1/admin/verdicts", tag = "admin",
    responses((status = 200, body = repnet_protocol::LocalVerdictList),
              (status = 401, body = repnet_protocol::ErrorBody)),
    security(("admin_token" = [])))]
pub(crate) async fn list_local_verdicts(
    State(state): State<Arc<AppState>>,
) -> Result<Response, ApiError> {
    let verdicts = state.store.local_verdicts().await.map_err(|error| {
        crate::failures::store_failed("the local verdicts could not be read", &error)
    })?;
    let list = LocalVerdictList {
        verdicts: verdicts
            .iter()
            .map(|v| {
                LocalVerdictEntry::from_model(&v.object, &v.record, v.comment.as_deref(), v.expires)
            })
            .collect(),
    };
    Ok(json_response(
        StatusCode::OK,
        repnet_protocol::to_json(&list),
    ))
}
