//! The one error type of the HTTP API, the server's and the proxy's: a status, a stable
//! machine-readable code ([`ErrorCode`]), and a message that says what was wrong and what to
//! do. Internal details go to the log, never to the client.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use repnet_protocol::{BodyError, ErrorBody, ErrorCode};

/// An API error, answered as [`ErrorBody`] with its status and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    /// Extra headers (`Retry-After`, `WWW-Authenticate`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }

    /// `422`: the request was understood, its content cannot be used (a feed, a bundle).
    pub fn unprocessable(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// `503`: try again later (the server is stopping, busy).
    pub fn unavailable(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    /// `503` with `Retry-After: seconds`: a dependency (the store) is down for now.
    pub fn unavailable_for(code: ErrorCode, message: impl Into<String>, seconds: u64) -> ApiError {
        ApiError::unavailable(code, message)
            .with_header(header::RETRY_AFTER, HeaderValue::from(seconds))
    }

    /// `429 rate_limited` with `Retry-After: seconds`.
    pub fn rate_limited(message: impl Into<String>, seconds: u64) -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            message,
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from(seconds))
    }

    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A client's input that the model refused, with `field` naming where it was.
    pub fn invalid(field: &str, error: &repnet_model::ParseError) -> ApiError {
        let message = if field.is_empty() {
            error.to_string()
        } else {
            format!("{field}: {error}")
        };
        ApiError::bad_request(ErrorCode::of(error), message)
    }

    pub fn from_body(error: BodyError) -> ApiError {
        ApiError::bad_request(error.code, error.message)
    }

    /// A failure of the server itself. The details are logged; the client gets a message
    /// that points at the log.
    /// A full disk is no fault of the server's code: `507 insufficient_storage`, which tells
    /// the client that trying again later may work.
    pub fn internal(context: &str, error: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(%error, "{context}");
        if is_disk_full(&error.to_string()) {
            return ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                ErrorCode::InsufficientStorage,
                format!(
                    "{context}: the server's disk is full; nothing was changed, try again once its operator has freed space"
                ),
            );
        }
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            format!("{context}; the server's log has the details"),
        )
    }
}

/// Whether an error's text says the disk is full (ENOSPC). Errors reach the API through
/// several layers (the store, LMDB, the feed readers, the spooling of uploads), each keeping
/// the operating system's error only as text; ENOSPC reads the same in all of them.
fn is_disk_full(text: &str) -> bool {
    text.contains("No space left on device") || text.contains("os error 28")
}

/// A refused licence key: `401` with `WWW-Authenticate`, or `429` with `Retry-After`.
impl From<repnet_licences::Refusal> for ApiError {
    fn from(refusal: repnet_licences::Refusal) -> ApiError {
        let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut error = ApiError::new(status, refusal.code, refusal.message);
        if status == StatusCode::UNAUTHORIZED {
            error = error.with_header(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"repnet\""),
            );
        }
        if let Some(wait) = refusal.retry_after {
            error = error.with_header(header::RETRY_AFTER, HeaderValue::from(wait));
        }
        error
    }
}

/// A refused admin token: `403` when the admin API is off, `401`, or `429` with
/// `Retry-After` after too many wrong ones.
impl From<crate::admin::AdminRefusal> for ApiError {
    fn from(refusal: crate::admin::AdminRefusal) -> ApiError {
        let error = ApiError::new(
            StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::UNAUTHORIZED),
            refusal.code(),
            refusal.message(),
        );
        match refusal {
            crate::admin::AdminRefusal::Throttled(seconds) => {
                error.with_header(header::RETRY_AFTER, HeaderValue::from(seconds))
            }
            _ => error,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = repnet_protocol::to_json(&ErrorBody::new(self.code, self.message));
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_507_and_other_failures_500() {
        let full = std::io::Error::from_raw_os_error(28).to_string();
        let error = ApiError::internal(
            "the import failed",
            &format!("cannot read the upload: {full}"),
        );
        assert_eq!(error.status, StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(error.code, ErrorCode::InsufficientStorage);
        assert!(!error.message.contains("os error"), "{}", error.message);
        let error = ApiError::internal("the import failed", &"permission denied");
        assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
