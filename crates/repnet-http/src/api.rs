//! What every handler of the HTTP API shares, the server's and the proxy's: JSON answers, the
//! checks of a request's content type, reading its body within the limit, and [`JsonBody`],
//! which does all of it and names the JSON path of a mistake.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, Path, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use repnet_protocol::ErrorCode;

use crate::ApiError;

/// A JSON request body of type `T`: declared `application/json`, read within the body limit,
/// and parsed with the JSON path of what is wrong (`items[3].file: …`). Every mistake is the
/// API's error shape.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

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

pub fn path_value(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(value)| value).map_err(|rejection| {
        ApiError::bad_request(
            ErrorCode::InvalidPath,
            format!(
                "{}: check the percent-encoding of the path",
                rejection.body_text()
            ),
        )
    })
}

/// JSON with the right content type.
pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The media type of the body, without parameters (`application/json; charset=utf-8` →
/// `application/json`).
pub fn media_type(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or("").trim())
}

pub fn unsupported_media_type(headers: &HeaderMap, what_to_do: &str) -> ApiError {
    let message = match headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        None => format!("the request has no Content-Type: {what_to_do}"),
        Some(content_type) => format!("the body is {content_type:?}: {what_to_do}"),
    };
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::UnsupportedMediaType,
        message,
    )
}

/// Refuses bodies that are not declared as JSON.
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    match media_type(headers) {
        Some(media) if media.eq_ignore_ascii_case("application/json") => Ok(()),
        _ => Err(unsupported_media_type(
            headers,
            "send it as JSON with Content-Type: application/json",
        )),
    }
}

/// Refuses bodies that are not declared as JSON or as a JSON merge patch (RFC 7396).
pub fn require_merge_patch(headers: &HeaderMap) -> Result<(), ApiError> {
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

pub fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::BodyTooLarge,
                "the request body is larger than accepted here (max_body_bytes): split the batch into smaller requests",
            )
        } else {
            ApiError::bad_request(ErrorCode::InvalidBody, format!("cannot read the request body: {}", rejection.body_text()))
        }
    })
}

/// Reads and drops a request body (up to 1 GiB) before answering `error`: a client still
/// sending when the server answers sees its connection reset instead of the answer.
pub async fn discard_body(body: axum::body::Body, error: ApiError) -> ApiError {
    use futures_util::StreamExt as _;
    let mut stream = body.into_data_stream();
    let mut read = 0usize;
    while let Some(Ok(chunk)) = stream.next().await {
        read += chunk.len();
        if read > 1 << 30 {
            break;
        }
    }
    error
}
