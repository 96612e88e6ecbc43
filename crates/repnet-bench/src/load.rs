//! The load generator: keep-alive connections, each running one request at a time.
//!
//! Closed loop (`closed_loop`): every connection sends its next request as soon as the last
//! is answered; throughput is completed requests over time. Open loop (`open_loop`): each
//! connection sends on a fixed schedule, so that the offered rate does not depend on how fast
//! the server answers; a request delayed because its connection was still busy is timed from
//! when it should have been sent (no coordinated omission).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// One request, encoded once (HTTP/1.1 or RESP) and sent again and again.
#[derive(Debug, Clone)]
pub(crate) struct Request(pub(crate) Bytes);

impl Request {
    /// An HTTP/1.1 request for repnet.
    pub(crate) fn http(
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Request {
        let mut out = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n").into_bytes();
        if let Some(content_type) = content_type {
            out.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        }
        if !body.is_empty() || method == "POST" {
            out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        Request(Bytes::from(out))
    }

    /// A Redis command.
    pub(crate) fn redis(parts: &[&[u8]]) -> Request {
        let mut out = format!("*{}\r\n", parts.len()).into_bytes();
        for part in parts {
            out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
            out.extend_from_slice(part);
            out.extend_from_slice(b"\r\n");
        }
        Request(Bytes::from(out))
    }
}

/// A connection to either server. Both clients are minimal and alike — pre-encoded requests
/// written as they are, answers parsed only as far as needed to find their end — so that
/// the load generator costs each server's side about the same.
pub(crate) enum Connection {
    Http(HttpConnection),
    Redis(RedisConnection),
}

impl Connection {
    pub(crate) async fn open(address: SocketAddr, redis: bool) -> anyhow::Result<Connection> {
        Ok(if redis {
            Connection::Redis(RedisConnection::connect(address).await?)
        } else {
            Connection::Http(HttpConnection::connect(address).await?)
        })
    }

    /// Sends `request` and reads the whole answer; returns the answer's body (for Redis, a
    /// summary: `values,nils`).
    pub(crate) async fn call(&mut self, request: &Request) -> anyhow::Result<Bytes> {
        match self {
            Connection::Http(connection) => connection.call(&request.0).await,
            Connection::Redis(connection) => connection.call(&request.0).await,
        }
    }
}

/// A minimal HTTP/1.1 client for answers with a Content-Length, which is how repnet answers.
pub(crate) struct HttpConnection {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    line: Vec<u8>,
}

impl HttpConnection {
    async fn connect(address: SocketAddr) -> anyhow::Result<HttpConnection> {
        let stream = tokio::net::TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let (reader, writer) = stream.into_split();
        Ok(HttpConnection {
            reader: BufReader::with_capacity(1 << 16, reader),
            writer,
            line: Vec::with_capacity(256),
        })
    }

    async fn call(&mut self, request: &[u8]) -> anyhow::Result<Bytes> {
        self.writer.write_all(request).await?;
        self.line.clear();
        self.reader.read_until(b'\n', &mut self.line).await?;
        let status_line = String::from_utf8_lossy(&self.line).into_owned();
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("a malformed HTTP status line: {status_line:?}"))?;
        let mut length = None;
        loop {
            self.line.clear();
            self.reader.read_until(b'\n', &mut self.line).await?;
            if self.line.is_empty() {
                bail!("repnet closed the connection in an answer");
            }
            if self.line == b"\r\n" {
                break;
            }
            if let Some(value) = header_value(&self.line, b"content-length") {
                length = Some(std::str::from_utf8(value)?.trim().parse::<usize>()?);
            }
        }
        let length = length.context("an answer without Content-Length")?;
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body).await?;
        // hashlookup's shape answers an unknown hash with a 404: an answer, not a failure.
        let unknown_to_hashlookup =
            status == 404 && body.starts_with(b"{\"message\":\"Non existing");
        if !(200..300).contains(&status) && !unknown_to_hashlookup {
            bail!(
                "repnet answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(Bytes::from(body))
    }
}

/// The value of header `name` (lower case) if `line` is that header.
fn header_value<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let colon = line.iter().position(|b| *b == b':')?;
    line[..colon]
        .eq_ignore_ascii_case(name)
        .then(|| &line[colon + 1..])
}

/// A minimal RESP client: enough for GET, MGET, SET and PING.
pub(crate) struct RedisConnection {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    line: Vec<u8>,
}

/// What a Redis reply held: the raw bulk values, and how many were nil.
#[derive(Debug, Default)]
pub(crate) struct RedisReply {
    pub(crate) values: usize,
    pub(crate) nils: usize,
}

impl RedisConnection {
    pub(crate) async fn connect(address: SocketAddr) -> anyhow::Result<RedisConnection> {
        let stream = tokio::net::TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let (reader, writer) = stream.into_split();
        Ok(RedisConnection {
            reader: BufReader::with_capacity(1 << 16, reader),
            writer,
            line: Vec::with_capacity(64),
        })
    }

    /// Sends a command and reads its reply; returns the reply summarised in a small body:
    /// `values,nils` as text (the load generator only counts bytes; checks parse it).
    pub(crate) async fn call(&mut self, command: &[u8]) -> anyhow::Result<Bytes> {
        self.writer.write_all(command).await?;
        let mut reply = RedisReply::default();
        self.read_reply(&mut reply, 0).await?;
        Ok(Bytes::from(format!("{},{}", reply.values, reply.nils)))
    }

    async fn read_line(&mut self) -> anyhow::Result<()> {
        self.line.clear();
        self.reader.read_until(b'\n', &mut self.line).await?;
        if self.line.len() < 3 || !self.line.ends_with(b"\r\n") {
            bail!("redis closed the connection or sent a malformed line");
        }
        Ok(())
    }

    fn line_number(&self) -> anyhow::Result<i64> {
        std::str::from_utf8(&self.line[1..self.line.len() - 2])?
            .parse()
            .context("a malformed number in a redis reply")
    }

    async fn read_reply(&mut self, reply: &mut RedisReply, depth: usize) -> anyhow::Result<()> {
        self.read_line().await?;
        match self.line[0] {
            b'+' | b':' => Ok(()),
            b'-' => bail!(
                "redis error: {}",
                String::from_utf8_lossy(&self.line).trim()
            ),
            b'$' => {
                let len = self.line_number()?;
                if len < 0 {
                    reply.nils += 1;
                    return Ok(());
                }
                let mut skip = (len as u64) + 2;
                let mut buffer = [0u8; 4096];
                while skip > 0 {
                    let n = self
                        .reader
                        .read(&mut buffer[..skip.min(4096) as usize])
                        .await?;
                    if n == 0 {
                        bail!("redis closed the connection in a reply");
                    }
                    skip -= n as u64;
                }
                reply.values += 1;
                Ok(())
            }
            b'*' if depth == 0 => {
                let count = self.line_number()?;
                for _ in 0..count.max(0) {
                    Box::pin(self.read_reply(reply, depth + 1)).await?;
                }
                Ok(())
            }
            _ => bail!(
                "an unexpected redis reply: {}",
                String::from_utf8_lossy(&self.line).trim()
            ),
        }
    }
}

/// What one run of load measured.
#[derive(Debug, Clone)]
pub(crate) struct Measurement {
    pub(crate) requests: u64,
    pub(crate) elapsed: Duration,
    /// Request latencies in microseconds.
    pub(crate) latency: Histogram<u64>,
}

impl Measurement {
    pub(crate) fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub(crate) fn merge(&mut self, other: &Measurement) {
        self.requests += other.requests;
        self.elapsed += other.elapsed;
        let _ = self.latency.add(&other.latency);
    }
}

/// Latencies from 1 µs to 100 s, to 3 significant figures.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("constant, valid histogram bounds")
}

/// Runs `connections` connections flat out for `duration`.
pub(crate) async fn closed_loop(
    address: SocketAddr,
    redis: bool,
    requests: Arc<Vec<Request>>,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Measurement> {
    let mut opened = Vec::with_capacity(connections);
    for _ in 0..connections {
        opened.push(Connection::open(address, redis).await?);
    }
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(connections);
    for (worker, mut connection) in opened.into_iter().enumerate() {
        let requests = Arc::clone(&requests);
        tasks.push(tokio::spawn(async move {
            let mut latency = histogram();
            let mut done = 0u64;
            let mut next = worker * requests.len() / connections.max(1);
            while Instant::now() < deadline {
                let sent = Instant::now();
                connection.call(&requests[next % requests.len()]).await?;
                let _ = latency.record(sent.elapsed().as_micros().max(1) as u64);
                done += 1;
                next += 1;
            }
            anyhow::Ok((done, latency))
        }));
    }
    let mut measurement = Measurement {
        requests: 0,
        elapsed: Duration::ZERO,
        latency: histogram(),
    };
    for task in tasks {
        let (done, latency) = task.await??;
        measurement.requests += done;
        let _ = measurement.latency.add(&latency);
    }
    measurement.elapsed = started.elapsed();
    Ok(measurement)
}

/// Offers `rate` requests per second over `connections` connections for `duration`.
///
/// A pacer thread releases requests on schedule, every 100 µs all those due (tokio's timer
/// ticks every millisecond, which would send them in bursts), to the connections in turn.
/// A request waits in its connection's queue while the connection is busy, and its latency
/// counts from its release: a slow answer delays the requests behind it, as it would
/// delay real clients.
pub(crate) async fn open_loop(
    address: SocketAddr,
    redis: bool,
    requests: Arc<Vec<Request>>,
    connections: usize,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<Measurement> {
    let connections = connections.max(1);
    let mut opened = Vec::with_capacity(connections);
    for _ in 0..connections {
        opened.push(Connection::open(address, redis).await?);
    }
    let mut queues = Vec::with_capacity(connections);
    let mut tasks = Vec::with_capacity(connections);
    for (worker, mut connection) in opened.into_iter().enumerate() {
        let (sender, mut released) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        queues.push(sender);
        let requests = Arc::clone(&requests);
        tasks.push(tokio::spawn(async move {
            let mut latency = histogram();
            let mut done = 0u64;
            let mut next = worker * requests.len() / connections;
            while let Some(release) = released.recv().await {
                connection.call(&requests[next % requests.len()]).await?;
                let _ = latency.record(release.elapsed().as_micros().max(1) as u64);
                done += 1;
                next += 1;
            }
            anyhow::Ok((done, latency))
        }));
    }
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let started = Instant::now();
    let pacer = std::thread::spawn(move || {
        let deadline = started + duration;
        let mut sent = 0u64;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            // Everything due by now, to the connections in turn.
            while started + interval.mul_f64(sent as f64) <= now {
                let _ = queues[(sent % queues.len() as u64) as usize].send(Instant::now());
                sent += 1;
            }
            // A pacer must sleep between releases; it is the load generator's clock, not a
            // wait for readiness.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_micros(100));
        }
        // Dropping the queues ends the connections' loops once they have drained them.
    });
    let mut measurement = Measurement {
        requests: 0,
        elapsed: Duration::ZERO,
        latency: histogram(),
    };
    for task in tasks {
        let (done, latency) = task.await??;
        measurement.requests += done;
        let _ = measurement.latency.add(&latency);
    }
    let _ = pacer.join();
    measurement.elapsed = started.elapsed();
    Ok(measurement)
}
