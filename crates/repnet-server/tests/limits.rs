//! Connection and request limits against a real server over loopback: a crowd of idle and
//! slow clients larger than `max_connections` does not keep a well-behaved client waiting,
//! a server whose every connection is busy says so, slow bodies and idle connections time
//! out, and a body too large is refused before it is sent.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

#[path = "../../repnet-http/tests/support/crowd.rs"]
mod crowd;

use std::net::SocketAddr;
use std::time::Duration;

use repnet_server::ServerConfig;
use repnet_testkit::Server as TestServer;

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

/// A client that stops reading a page of changes or a snapshot holds up no one: not the
/// writers (which record their new keys where every lookup looks first), not the lookups
/// queued behind a writer. It once held a lock for as long as it did not read.
#[tokio::test]
async fn a_replica_that_stops_reading_holds_up_neither_writes_nor_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        connections: repnet_http::Limits {
            // The stalled streams are not let go while the test runs.
            write_timeout_seconds: 3600,
            ..repnet_http::Limits::default()
        },
        ..ServerConfig::default()
    };
    let server = TestServer::start(dir.path(), config).await;
    add_key(&server, "REPLICA-KEY").await;
    import_hashes(&server, 0..150_000).await;
    let (page, head) = unread(&server, "/v1/changes?after=0", "REPLICA-KEY").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (snapshot, head) = unread(&server, "/v1/snapshot", "REPLICA-KEY").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // New keys written, then looked up, while both streams wait on their readers. A hang
    // here is the failure (in a lock, where no async timeout reaches): the watchdog turns it
    // into a message.
    let watchdog = repnet_testkit::watchdog(
        120,
        "a write and a lookup while two replication streams were not read",
    );
    import_hashes(&server, 150_000..150_010).await;
    let last = hash_of(150_009);
    let (status, answer) = server.get(&format!("/v1/files/{last}")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["source"], "feed:feed", "{answer}");
    drop(watchdog);
    drop((page, snapshot));
    server.stop().await;
}

fn hash_of(i: u32) -> String {
    format!("{:064x}", u128::from(i) * 0x9e37_79b9_7f4a_7c15 + 1)
}

/// Imports the hashes numbered `range` as one feed: about 60 bytes of snapshot
/// each.
async fn import_hashes(server: &TestServer, range: std::ops::Range<u32>) {
    let hashes: String = range.map(|i| hash_of(i) + "\n").collect();
    server
        .admin
        .import_feed(
            &repnet_protocol::ImportParams {
                format: Some("hashlist".to_owned()),
                source: Some("feed".to_owned()),
                threat: Some("Test.Feed".to_owned()),
                ..repnet_protocol::ImportParams::default()
            },
            repnet_client::ImportBody::Bytes(hashes.into_bytes()),
        )
        .await
        .unwrap();
}

async fn add_key(server: &TestServer, key: &str) {
    server
        .admin
        .add_licence_key(&serde_json::from_value(serde_json::json!({ "key": key })).unwrap())
        .await
        .unwrap();
}

/// Sends `GET path` with `key` and reads nothing: its connection's receive buffer is a few
/// KiB, so the server's answer waits on it. Answers the stream and the status line.
async fn unread(server: &TestServer, path: &str, key: &str) -> (tokio::net::TcpStream, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(address(server)).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stream,
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    // The status line and headers arrive before the body waits.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let read = tokio::io::AsyncReadExt::read(&mut stream, &mut byte)
            .await
            .unwrap();
        assert_eq!(read, 1, "the server closed before answering");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    (stream, head)
}

#[tokio::test]
async fn replication_streams_are_capped_and_readers_that_do_not_read_are_let_go() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        max_replication_streams: 3,
        max_replication_streams_per_key: 2,
        connections: repnet_http::Limits {
            // Long enough that the streams opened first are still held when the last is
            // refused, on a loaded machine too (at 1 s, a busy CI let the first go early).
            write_timeout_seconds: 5,
            ..repnet_http::Limits::default()
        },
        ..ServerConfig::default()
    };
    let server = TestServer::start(dir.path(), config).await;
    for key in ["REPLICA-KEY-ONE", "REPLICA-KEY-TWO"] {
        add_key(&server, key).await;
    }
    // About 9 MB of snapshot: more than the socket buffers hold.
    import_hashes(&server, 0..150_000).await;

    // Two unread streams for one key: a third is refused, for that key only.
    let (first, head) = unread(&server, "/v1/snapshot", "REPLICA-KEY-ONE").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (second, head) = unread(
        &server,
        "/v1/changes?after=0&limit=1000000",
        "REPLICA-KEY-ONE",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // A page never holds more than 100,000 changes, whatever was asked; it says where it
    // ended.
    assert!(head.contains("x-repnet-to: 100000\r\n"), "{head}");
    let (_, head) = unread(&server, "/v1/snapshot", "REPLICA-KEY-ONE").await;
    assert!(
        head.starts_with("HTTP/1.1 429") && head.contains("retry-after: 5"),
        "{head}"
    );
    let (third, head) = unread(&server, "/v1/snapshot", "REPLICA-KEY-TWO").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Three in all: the server is busy for everyone else.
    let (_, head) = unread(&server, "/v1/snapshot", "REPLICA-KEY-TWO").await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    // Readers that do not read are closed after write_timeout_seconds, and their slots
    // come back without anyone hanging up.
    let keep = (first, second, third);
    repnet_testkit::eventually(60, "the unread streams to be let go", || async {
        let (_, head) = unread(&server, "/v1/changes?after=0&limit=10", "REPLICA-KEY-ONE").await;
        head.starts_with("HTTP/1.1 200")
    })
    .await;
    drop(keep);
    server.stop().await;
}
