//! A private server pulling from a hostile upstream (a small axum server in the test): an
//! error answer with an endless body, an answer that stalls after its headers, an endless
//! snapshot, a page with more changes than asked for, and a redirect to another host. Each
//! fails the pull with a clear error in the status, applies nothing, and never holds up
//! shutdown.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use repnet_server::{Role, ServerConfig, UpstreamConfig};
use repnet_testkit::{Server as TestServer, eventually};

/// A hostile upstream answering every request with `answer`; counts the requests it gets.
async fn hostile(answer: fn() -> Response) -> (String, Arc<AtomicUsize>) {
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&asked);
    let app = Router::new().fallback(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async move { answer() }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, asked)
}

async fn private_of(dir: &std::path::Path, upstream: &str) -> TestServer {
    let mut config = UpstreamConfig::new(upstream);
    config.key = Some("HOSTILE-UPSTREAM-KEY".to_owned());
    config.interval_seconds = 1;
    config.progress_timeout_seconds = 1;
    TestServer::start(
        dir,
        ServerConfig {
            role: Role::Private,
            upstream: Some(config),
            ..ServerConfig::default()
        },
    )
    .await
}

async fn last_error(server: &TestServer) -> Option<String> {
    server
        .admin
        .server_status()
        .await
        .unwrap()
        .upstream
        .unwrap()
        .last_error
}

/// An endless body of zeros.
fn endless() -> Body {
    Body::from_stream(futures_util::stream::repeat_with(|| {
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(&[0u8; 65536]))
    }))
}

fn with_headers(status: StatusCode, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        "x-repnet-log-id",
        HeaderValue::from_static("0123456789abcdef0123456789abcdef"),
    );
    response
        .headers_mut()
        .insert("x-repnet-sequence", HeaderValue::from_static("1"));
    response
}

#[tokio::test]
async fn an_error_answer_with_an_endless_body_is_not_read_whole() {
    let (base, _) = hostile(|| with_headers(StatusCode::INTERNAL_SERVER_ERROR, endless())).await;
    let dir = tempfile::tempdir().unwrap();
    let private = private_of(dir.path(), &base).await;
    eventually(30, "the pull to fail", || async {
        last_error(&private).await.is_some()
    })
    .await;
    let error = last_error(&private).await.unwrap();
    assert!(error.contains("500"), "{error}");
    private.stop().await;
}

#[tokio::test]
async fn a_stalled_answer_is_reported_and_fails_and_does_not_hold_up_shutdown() {
    let (base, _) = hostile(|| {
        let mut response = with_headers(
            StatusCode::OK,
            Body::from_stream(futures_util::stream::pending::<
                Result<bytes::Bytes, std::io::Error>,
            >()),
        );
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("1000"));
        response
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let private = private_of(dir.path(), &base).await;
    // Under way, the status says for how long nothing came.
    eventually(30, "the pull to be seen under way", || async {
        let upstream = private
            .admin
            .server_status()
            .await
            .unwrap()
            .upstream
            .unwrap();
        upstream.pulling_since.is_some() && upstream.stalled_seconds.is_some()
    })
    .await;
    eventually(30, "the stall to fail the pull", || async {
        last_error(&private)
            .await
            .is_some_and(|error| error.contains("stalled"))
    })
    .await;
    let upstream = private
        .admin
        .server_status()
        .await
        .unwrap()
        .upstream
        .unwrap();
    assert!(!upstream.reachable, "{upstream:?}");
    assert_eq!(upstream.snapshots_applied, 0);
    // Stopping while the next pull stalls: done at once, not after the stall.
    eventually(30, "the next pull", || async {
        private
            .admin
            .server_status()
            .await
            .unwrap()
            .upstream
            .unwrap()
            .pulling_since
            .is_some()
    })
    .await;
    tokio::time::timeout(Duration::from_secs(5), private.stop())
        .await
        .expect("the server stops within its grace period");
}

#[tokio::test]
async fn an_endless_snapshot_is_refused_before_it_fills_the_disk() {
    // A snapshot without its length: the start of a valid stream, then zeros for ever.
    let (base, _) = hostile(|| with_headers(StatusCode::OK, endless())).await;
    let dir = tempfile::tempdir().unwrap();
    let private = private_of(dir.path(), &base).await;
    eventually(30, "the snapshot to be refused", || async {
        last_error(&private)
            .await
            .is_some_and(|error| error.contains("without its length"))
    })
    .await;
    private.stop().await;
}

#[tokio::test]
async fn a_redirect_to_another_host_is_not_followed() {
    let (elsewhere, asked_elsewhere) =
        hostile(|| with_headers(StatusCode::OK, Body::empty())).await;
    static ELSEWHERE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ELSEWHERE.set(elsewhere).unwrap();
    let (base, _) = hostile(|| {
        let mut response = with_headers(StatusCode::FOUND, Body::empty());
        response.headers_mut().insert(
            header::LOCATION,
            HeaderValue::from_str(&format!("{}/v1/snapshot", ELSEWHERE.get().unwrap())).unwrap(),
        );
        response
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let private = private_of(dir.path(), &base).await;
    eventually(30, "the redirect to be refused", || async {
        last_error(&private)
            .await
            .is_some_and(|error| error.contains("another host"))
    })
    .await;
    assert_eq!(asked_elsewhere.load(Ordering::SeqCst), 0);
    private.stop().await;
}
