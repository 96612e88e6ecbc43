//! The one error type of the HTTP API: a status, a stable machine-readable code, and a message
//! that says what was wrong and what to do. Internal details go to the log, never to the client.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use repnet_protocol::{BodyError, ErrorBody};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    /// Extra headers (`Retry-After`, `WWW-Authenticate`).
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub(crate) fn with_header(mut self, name: HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }

    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A client's input that the model refused, with `field` naming where it was.
    pub(crate) fn invalid(field: &str, error: &repnet_model::ParseError) -> ApiError {
        let message = if field.is_empty() {
            error.to_string()
        } else {
            format!("{field}: {error}")
        };
        ApiError::bad_request(error.code(), message)
    }

    pub(crate) fn from_body(error: BodyError) -> ApiError {
        ApiError::bad_request(error.code, error.message)
    }

    /// A failure of the server itself. The details are logged; the client gets a message
    /// that points at the log.
    /// A full disk is no fault of the server's code: `507 insufficient_storage`, which tells
    /// the client that trying again later may work.
    pub(crate) fn internal(context: &str, error: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(%error, "{context}");
        if is_disk_full(&error.to_string()) {
            return ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_storage",
                format!(
                    "{context}: the server's disk is full; nothing was changed, try again once its operator has freed space"
                ),
            );
        }
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
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
        assert_eq!(error.code, "insufficient_storage");
        assert!(!error.message.contains("os error"), "{}", error.message);
        let error = ApiError::internal("the import failed", &"permission denied");
        assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
