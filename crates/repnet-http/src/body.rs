//! What a request's body may cost: an early `413`, a bound on bodies held at once, and
//! deadlines for slow clients.

use repnet_protocol::ErrorCode;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::Body as _;
use tokio::sync::Semaphore;

use crate::Limits;

/// Bodies are reserved in units of this many bytes, and each at least one unit: a thousand
/// clients trickling tiny bodies cost what they hold the server to.
const UNIT: u64 = 16 << 10;

/// The limits [`guard_requests`] holds requests to.
#[derive(Debug)]
pub struct RequestLimits {
    max_body_bytes: u64,
    request_timeout: Duration,
    body_read_timeout: Duration,
    /// Units of [`UNIT`] bytes that bodies being received may hold, all together.
    buffered: Arc<Semaphore>,
    max_buffered_body_bytes: u64,
    /// Whether a path's body or answer is a stream, or its work long (uploads of feeds and
    /// bundles, replication, a feed's refresh): such requests get a progress deadline for
    /// their body instead of a deadline for the whole request.
    long: fn(&str) -> bool,
}

impl RequestLimits {
    pub fn new(limits: &Limits, max_body_bytes: usize, long: fn(&str) -> bool) -> RequestLimits {
        let units = usize::try_from(limits.max_buffered_body_bytes / UNIT)
            .unwrap_or(usize::MAX)
            .clamp(1, Semaphore::MAX_PERMITS);
        RequestLimits {
            max_body_bytes: max_body_bytes as u64,
            request_timeout: Duration::from_secs(limits.request_timeout_seconds),
            body_read_timeout: Duration::from_secs(limits.body_read_timeout_seconds),
            buffered: Arc::new(Semaphore::new(units)),
            max_buffered_body_bytes: limits.max_buffered_body_bytes,
            long,
        }
    }
}

/// Middleware (`axum::middleware::from_fn_with_state`) holding every request to `limits`.
pub async fn guard_requests(
    State(limits): State<Arc<RequestLimits>>,
    request: Request,
    next: Next,
) -> Response {
    if (limits.long)(request.uri().path()) {
        let timeout = limits.body_read_timeout;
        let request = request.map(|body| Body::new(Progress::new(body, timeout)));
        return next.run(request).await;
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limits.max_body_bytes) {
        return crate::error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BodyTooLarge,
            format!(
                "the request body is larger than accepted here ({} bytes, max_body_bytes): split the batch into smaller requests",
                limits.max_body_bytes
            ),
            None,
        );
    }
    let hint = request.body().size_hint();
    let has_body = hint.exact() != Some(0);
    let _permit = if has_body {
        let bytes = declared
            .or(hint.upper())
            .unwrap_or(limits.max_body_bytes)
            .min(limits.max_body_bytes);
        let units = u32::try_from(bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX);
        match Arc::clone(&limits.buffered).try_acquire_many_owned(units) {
            Ok(permit) => Some(permit),
            Err(_) => {
                return crate::error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Busy,
                    format!(
                        "the server is receiving as many request bodies as it holds at once ({} bytes, max_buffered_body_bytes); try again in a second",
                        limits.max_buffered_body_bytes
                    ),
                    Some(1),
                );
            }
        }
    } else {
        None
    };
    let received = Arc::new(AtomicBool::new(!has_body));
    let request = {
        let received = Arc::clone(&received);
        request.map(|body| {
            Body::new(Finished {
                inner: body,
                received,
            })
        })
    };
    let seconds = limits.request_timeout.as_secs();
    match tokio::time::timeout(limits.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) if !received.load(Ordering::SeqCst) => crate::error_response(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::RequestTimeout,
            format!(
                "the request body did not arrive within {seconds} seconds (request_timeout_seconds): send it at once, or split it"
            ),
            None,
        ),
        Err(_) => {
            // Not the path: it may name what was looked up.
            tracing::warn!("a request took longer than request_timeout_seconds");
            crate::error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Timeout,
                format!(
                    "the server did not answer within {seconds} seconds (request_timeout_seconds); try again later"
                ),
                Some(1),
            )
        }
    }
}

/// A body that notes when it has been read to its end.
struct Finished {
    inner: Body,
    received: Arc<AtomicBool>,
}

impl http_body::Body for Finished {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || this.inner.is_end_stream() {
            this.received.store(true, Ordering::SeqCst);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A streamed body that fails when the client sends nothing for `timeout`.
struct Progress {
    inner: Body,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Progress {
    fn new(inner: Body, timeout: Duration) -> Progress {
        Progress {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl http_body::Body for Progress {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = tokio::time::Instant::now() + this.timeout;
                this.deadline.as_mut().reset(next);
                Poll::Ready(frame)
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the client sent nothing for {} seconds (body_read_timeout_seconds)",
                        this.timeout.as_secs()
                    ),
                ))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
