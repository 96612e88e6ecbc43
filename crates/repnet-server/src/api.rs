//! What every handler of the HTTP API shares, below the routes: JSON answers, the checks of a
//! request's content type, reading its body within the limit, and [`JsonBody`], which does all
//! of it and names the JSON path of a mistake. Handlers live in their resource's module
//! (`routes.rs` for lookups and local verdicts, `licences.rs`, `sync.rs`, `statistics.rs`,
//! `installations.rs`, `feeds.rs`, `settings.rs`); they all import from here, and nothing here
//! imports a handler.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, Path, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// A JSON request body of type `T`: declared `application/json`, read within the body limit,
/// and parsed with the JSON path of what is wrong (`items[3].file: …`). Every mistake is the
/// API's error shape.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<JsonBody<T>, ApiError> {
        require_json(request.headers())?;
        let body = body_bytes(Bytes::from_request(request, state).await)?;
        repnet_protocol::parse_body(&body)
            .map(JsonBody)
            .map_err(ApiError::from_body)
    }
}

pub(crate) fn path_value(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(value)| value).map_err(|rejection| {
        ApiError::bad_request(
            "invalid_path",
            format!(
                "{}: check the percent-encoding of the path",
                rejection.body_text()
            ),
        )
    })
}

/// JSON with the right content type.
pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The media type of the body, without parameters (`application/json; charset=utf-8` →
/// `application/json`).
pub(crate) fn media_type(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or("").trim())
}

pub(crate) fn unsupported_media_type(headers: &HeaderMap, what_to_do: &str) -> ApiError {
    let message = match headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        None => format!("the request has no Content-Type: {what_to_do}"),
        Some(content_type) => format!("the body is {content_type:?}: {what_to_do}"),
    };
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        message,
    )
}

/// Refuses bodies that are not declared as JSON.
pub(crate) fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    match media_type(headers) {
        Some(media) if media.eq_ignore_ascii_case("application/json") => Ok(()),
        _ => Err(unsupported_media_type(
            headers,
            "send it as JSON with Content-Type: application/json",
        )),
    }
}

/// Refuses bodies that are not declared as JSON or as a JSON merge patch (RFC 7396).
pub(crate) fn require_merge_patch(headers: &HeaderMap) -> Result<(), ApiError> {
    match media_type(headers) {
        Some(media)
            if media.eq_ignore_ascii_case("application/json")
                || media.eq_ignore_ascii_case("application/merge-patch+json") =>
        {
            Ok(())
        }
        _ => Err(unsupported_media_type(
            headers,
            "send it as JSON with Content-Type: application/json (or application/merge-patch+json)",
        )),
    }
}

pub(crate) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is larger than the server accepts (max_body_bytes): split the batch into smaller requests",
            )
        } else {
            ApiError::bad_request("invalid_body", format!("cannot read the request body: {}", rejection.body_text()))
        }
    })
}
