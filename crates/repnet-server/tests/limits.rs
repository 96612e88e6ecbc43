//! Connection and request limits against a real server over loopback: a crowd of idle and
//! slow clients larger than `max_connections` does not keep a well-behaved client waiting,
//! a server whose every connection is busy says so, slow bodies and idle connections time
//! out, and a body too large is refused before it is sent.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;
#[path = "../../repnet-http/tests/support/crowd.rs"]
mod crowd;

use std::net::SocketAddr;
use std::time::Duration;

use common::TestServer;
use repnet_server::ServerConfig;

fn address(server: &TestServer) -> SocketAddr {
    server.base.trim_start_matches("http://").parse().unwrap()
}

fn unknown_file_url(server: &TestServer) -> String {
    format!("{}/v1/files/{}", server.base, "00".repeat(32))
}

#[tokio::test]
async fn more_idle_and_slow_clients_than_connections_do_not_hold_up_a_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        max_body_bytes: 256 << 10,
        connections: repnet_http::Limits {
            max_connections: 32,
            max_buffered_body_bytes: 1 << 20,
            ..repnet_http::Limits::default()
        },
        ..ServerConfig::default()
    };
    let server = TestServer::start(dir.path(), config).await;
    // 40 silent connections, 16 that never finish their headers, 10 that trickle a body:
    // twice the connections the server serves.
    let crowd = crowd::gather(address(&server), "/v1/lookup", 40, 16, 10, 200_000).await;
    let median = crowd::median_answer_time(&unknown_file_url(&server)).await;
    assert!(
        median < Duration::from_millis(100),
        "a well-behaved client waited {median:?}"
    );
    // The bodies beyond what the server holds at once (1 MiB: four of 200 kB) were turned
    // away at once, in the API's error shape, with a time to come back.
    let mut busy = 0;
    for trickle in &crowd.slow_bodies {
        if let Some(answer) = &trickle.refused {
            assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
            assert!(answer.contains("\"code\":\"busy\""), "{answer}");
            assert!(
                answer.to_ascii_lowercase().contains("retry-after: 1"),
                "{answer}"
            );
            busy += 1;
        }
    }
    assert_eq!(busy, 6, "four bodies fit in max_buffered_body_bytes");
    drop(crowd);
    server.stop().await;
}

#[tokio::test]
async fn when_every_connection_is_busy_a_newcomer_is_told_to_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        connections: repnet_http::Limits {
            max_connections: 3,
            request_timeout_seconds: 1,
            ..repnet_http::Limits::default()
        },
        ..ServerConfig::default()
    };
    let server = TestServer::start(dir.path(), config).await;
    let mut slow = crowd::gather(address(&server), "/v1/lookup", 0, 0, 3, 1000).await;
    assert!(
        slow.slow_bodies
            .iter()
            .all(|trickle| trickle.refused.is_none())
    );
    // The three are in flight (not idle): nothing can be evicted for the newcomer.
    let mut newcomer = tokio::net::TcpStream::connect(address(&server))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut newcomer,
        b"GET /healthz HTTP/1.1\r\nHost: newcomer\r\n\r\n",
    )
    .await
    .unwrap();
    let answer = crowd::answer(&mut newcomer, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("\"code\":\"busy\"") && answer.contains("max_connections"),
        "{answer}"
    );
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    // The slow bodies run out of time (request_timeout_seconds = 1): 408, in JSON.
    for trickle in &mut slow.slow_bodies {
        let answer = crowd::answer(&mut trickle.stream, Duration::from_secs(10))
            .await
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
    }
    // And then the server has room again.
    assert!(crowd::median_answer_time(&unknown_file_url(&server)).await < Duration::from_secs(1));
    server.stop().await;
}

#[tokio::test]
async fn idle_connections_are_closed_and_large_bodies_refused_before_they_are_sent() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        connections: repnet_http::Limits {
            idle_timeout_seconds: 1,
            ..repnet_http::Limits::default()
        },
        ..ServerConfig::default()
    };
    let server = TestServer::start(dir.path(), config).await;
    let mut idle = tokio::net::TcpStream::connect(address(&server))
        .await
        .unwrap();
    assert!(crowd::closed_within(&mut idle, Duration::from_secs(10)).await);

    // 100 MB announced, none sent: refused at once, as JSON.
    let large = crowd::trickle(address(&server), "/v1/lookup", 100_000_000).await;
    let answer = large.refused.unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("\"code\":\"body_too_large\"") && answer.contains("max_body_bytes"),
        "{answer}"
    );
    server.stop().await;
}
