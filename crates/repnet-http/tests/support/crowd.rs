//! Hostile crowds for the connection-limit tests of the server and the proxy: connections
//! that send nothing, clients that never finish their headers, clients that trickle a body.
//! Included by path (`#[path = …] mod crowd;`) where it is used.

#![allow(dead_code, unreachable_pub)] // Each test file uses part of it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Connections held open until dropped.
pub struct Crowd {
    pub idle: Vec<TcpStream>,
    pub slow_headers: Vec<TcpStream>,
    pub slow_bodies: Vec<Trickle>,
}

/// Opens `idle` connections that send nothing, `slow_headers` that send part of a request's
/// headers, and `slow_bodies` that send a request announcing a `body_bytes` JSON body and
/// then one byte of it (see [`trickle`]), to `path` at `address`.
pub async fn gather(
    address: SocketAddr,
    path: &str,
    idle: usize,
    slow_headers: usize,
    slow_bodies: usize,
    body_bytes: usize,
) -> Crowd {
    let mut crowd = Crowd {
        idle: Vec::new(),
        slow_headers: Vec::new(),
        slow_bodies: Vec::new(),
    };
    for _ in 0..idle {
        crowd.idle.push(TcpStream::connect(address).await.unwrap());
    }
    for _ in 0..slow_headers {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(format!("POST {path} HTTP/1.1\r\nHost: crowd\r\n").as_bytes())
            .await
            .unwrap();
        crowd.slow_headers.push(stream);
    }
    for _ in 0..slow_bodies {
        crowd
            .slow_bodies
            .push(trickle(address, path, body_bytes).await);
    }
    crowd
}

/// A client trickling a body: its connection, and what the peer answered before the body
/// (a refusal), if it did.
pub struct Trickle {
    pub stream: TcpStream,
    pub refused: Option<String>,
}

/// A request whose headers announce `body_bytes` of JSON and ask to be told to go on
/// (`Expect: 100-continue`), which the server does once the request is in flight: then one
/// byte of the body. A refusal instead (`413`, `503`) is kept.
pub async fn trickle(address: SocketAddr, path: &str, body_bytes: usize) -> Trickle {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: crowd\r\nContent-Type: application/json\r\nContent-Length: {body_bytes}\r\nExpect: 100-continue\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let head = answer(&mut stream, Duration::from_secs(10))
        .await
        .expect("the server answers a request that expects 100-continue");
    if head.starts_with("HTTP/1.1 100") {
        stream.write_all(b"{").await.unwrap();
        Trickle {
            stream,
            refused: None,
        }
    } else {
        Trickle {
            stream,
            refused: Some(head),
        }
    }
}

/// What the peer answered on `stream` within `wait` (the head and as much body as came),
/// or `None` when it answered nothing and kept the connection open.
pub async fn answer(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                received.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&received);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|line| {
                            let (name, value) = line.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break;
                    }
                }
            }
            Err(_) => break,
        }
    }
    (!received.is_empty()).then(|| String::from_utf8_lossy(&received).into_owned())
}

/// Whether the peer closed `stream` within `wait` (having answered or not).
pub async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

/// The median time of five GETs of `url`, each on a new connection, each answered 200.
pub async fn median_answer_time(url: &str) -> Duration {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let response = client.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        response.bytes().await.unwrap();
        times.push(started.elapsed());
    }
    times.sort();
    times[2]
}
