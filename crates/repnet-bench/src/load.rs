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
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// One request, ready to send again and again.
#[derive(Debug, Clone)]
pub(crate) enum Request {
    Http {
        method: hyper::Method,
        path: String,
        content_type: Option<&'static str>,
        body: Bytes,
    },
    /// An encoded RESP command.
    Redis(Bytes),
}

/// A connection to either server.
pub(crate) enum Connection {
    Http(SendRequest<Full<Bytes>>),
    Redis(RedisConnection),
}

impl Connection {
    pub(crate) async fn open(address: SocketAddr, redis: bool) -> anyhow::Result<Connection> {
        if redis {
            return Ok(Connection::Redis(RedisConnection::connect(address).await?));
        }
        let stream = tokio::net::TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Connection::Http(sender))
    }

    /// Sends `request` and reads the whole answer; returns the answer's body.
    pub(crate) async fn call(&mut self, request: &Request) -> anyhow::Result<Bytes> {
        match (self, request) {
            (
                Connection::Http(sender),
                Request::Http {
                    method,
                    path,
                    content_type,
                    body,
                },
            ) => {
                let mut builder = hyper::Request::builder()
                    .method(method.clone())
                    .uri(path.as_str())
                    .header(hyper::header::HOST, "127.0.0.1");
                if let Some(content_type) = content_type {
                    builder = builder.header(hyper::header::CONTENT_TYPE, *content_type);
                }
                let request = builder.body(Full::new(body.clone()))?;
                sender.ready().await?;
                let response = sender.send_request(request).await?;
                let status = response.status();
                let body = response.into_body().collect().await?.to_bytes();
                if !status.is_success() {
                    bail!(
                        "repnet answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                Ok(body)
            }
            (Connection::Redis(connection), Request::Redis(command)) => {
                connection.call(command).await
            }
            _ => bail!("a request for the other server"),
        }
    }
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
pub(crate) async fn open_loop(
    address: SocketAddr,
    redis: bool,
    requests: Arc<Vec<Request>>,
    connections: usize,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<Measurement> {
    let mut opened = Vec::with_capacity(connections);
    for _ in 0..connections {
        opened.push(Connection::open(address, redis).await?);
    }
    // Connection `w` sends at start + (w + k·connections) / rate, for k = 0, 1, …
    let interval = Duration::from_secs_f64(connections as f64 / rate.max(1.0));
    let started = Instant::now() + Duration::from_millis(10);
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(connections);
    for (worker, mut connection) in opened.into_iter().enumerate() {
        let requests = Arc::clone(&requests);
        let offset = Duration::from_secs_f64(worker as f64 / rate.max(1.0));
        tasks.push(tokio::spawn(async move {
            let mut latency = histogram();
            let mut done = 0u64;
            let mut scheduled = started + offset;
            let mut next = worker * requests.len() / connections.max(1);
            while scheduled < deadline {
                let now = Instant::now();
                // Late because the previous request took too long: time from the schedule.
                // On time: sleep, then time from the actual send (the timer's wake-up delay
                // is the load generator's, not the server's).
                let from = if now >= scheduled {
                    scheduled
                } else {
                    tokio::time::sleep_until(scheduled.into()).await;
                    Instant::now()
                };
                connection.call(&requests[next % requests.len()]).await?;
                let _ = latency.record(from.elapsed().as_micros().max(1) as u64);
                done += 1;
                next += 1;
                scheduled += interval;
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
