//! Serving HTTP with limits, for `repnet serve` and `repnet proxy` alike.
//!
//! An endpoint's clients are many and not all of them are kind. [`serve`] runs the accept
//! loop and each connection itself (hyper, HTTP/1.1 and HTTP/2) so that it can hold every
//! connection to the [`Limits`]:
//! - at most `max_connections` at once; past that, the connection that has waited longest
//!   without a request in flight is closed to make room (idle keep-alive connections, and
//!   clients that never finish their headers), and when every connection is busy the newcomer
//!   gets `503 busy` with `Retry-After`;
//! - a connection without a request in flight is closed after `idle_timeout_seconds`, one
//!   still sending its headers after `header_read_timeout_seconds`, and one whose client does
//!   not read its answer after `write_timeout_seconds`;
//! - [`guard_requests`] bounds what a request's body may cost: an early `413` from
//!   `Content-Length`, a bound on the bytes all bodies being received may hold at once, a
//!   deadline for the whole request, and a progress deadline for streamed uploads.
//!
//! axum's own `serve` offers none of these hooks, hence this module; the parts (hyper's
//! connection builders, tokio's semaphores) are the stock ones.

pub mod admin;
pub mod api;
mod body;
mod connections;
pub mod console;
mod error;
pub mod keys;
pub mod limits;
pub mod tls;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::body::{RequestLimits, guard_requests};
pub use crate::connections::{Accept, TcpAccept, serve};
pub use crate::error::ApiError;

/// What one server or proxy allows its clients (`[connections]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Connections served at once. Past it, the connection idle longest is closed to make
    /// room; when none is idle the newcomer is answered `503 busy`. Also capped by the
    /// process's descriptor limit (which the server raises to its hard limit at start).
    pub max_connections: usize,
    /// Seconds a client may take to send a request's headers.
    pub header_read_timeout_seconds: u64,
    /// Seconds a connection may stay open without a request in flight.
    pub idle_timeout_seconds: u64,
    /// Seconds from a request's headers to its answer (its body included), for every
    /// request but uploads of feeds and bundles, replication streams and feed refreshes.
    pub request_timeout_seconds: u64,
    /// Seconds an upload (a feed, a bundle) may go without sending a byte.
    pub body_read_timeout_seconds: u64,
    /// Seconds a client may leave its answer unread before the connection is closed.
    pub write_timeout_seconds: u64,
    /// Bytes that request bodies being received may hold at once, all clients together;
    /// past it a request with a body is answered `503 busy` with `Retry-After`.
    pub max_buffered_body_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            header_read_timeout_seconds: 10,
            idle_timeout_seconds: 60,
            request_timeout_seconds: 30,
            body_read_timeout_seconds: 30,
            write_timeout_seconds: 60,
            max_buffered_body_bytes: 256 << 20,
        }
    }
}

/// A limit that cannot be used, by its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    #[error("connections.{0} must be at least 1")]
    Zero(&'static str),
    #[error("connections.max_buffered_body_bytes must be at least 1048576 (1 MiB); got {0}")]
    BufferedBodyBytes(u64),
}

impl Limits {
    /// What is wrong with these limits, naming the key.
    pub fn validate(&self) -> Result<(), LimitsError> {
        let positive = [
            ("max_connections", self.max_connections as u64),
            (
                "header_read_timeout_seconds",
                self.header_read_timeout_seconds,
            ),
            ("idle_timeout_seconds", self.idle_timeout_seconds),
            ("request_timeout_seconds", self.request_timeout_seconds),
            ("body_read_timeout_seconds", self.body_read_timeout_seconds),
            ("write_timeout_seconds", self.write_timeout_seconds),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(LimitsError::Zero(key));
            }
        }
        if self.max_buffered_body_bytes < 1 << 20 {
            return Err(LimitsError::BufferedBodyBytes(self.max_buffered_body_bytes));
        }
        Ok(())
    }

    fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_seconds)
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_seconds)
    }

    fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_seconds)
    }
}

/// An answer in the API's error shape, for the answers this layer gives by itself.
fn error_response(
    status: axum::http::StatusCode,
    code: repnet_protocol::ErrorCode,
    message: String,
    retry_after: Option<u64>,
) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    use axum::response::IntoResponse as _;
    let body = repnet_protocol::to_json(&repnet_protocol::ErrorBody::new(code, message));
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(seconds) = retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}
