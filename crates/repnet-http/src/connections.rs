//! The accept loop and each connection's life: counted, closed when idle or stalled, and
//! evicted (idle ones only) when the count is at its limit.

use repnet_protocol::ErrorCode;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt as _;

use crate::Limits;

/// Where connections come from: a TCP listener, or one that completes TLS handshakes first.
pub trait Accept: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The next connection and its peer. Errors (out of descriptors, say) are for the
    /// implementation to log and wait out.
    fn accept(&mut self) -> impl Future<Output = (Self::Io, SocketAddr)> + Send;

    fn local_addr(&self) -> std::io::Result<SocketAddr>;
}

/// A TCP listener whose connections send each answer at once: answers are small and latency
/// matters, so Nagle's algorithm must not wait for the acknowledgement of the previous one.
#[derive(Debug)]
pub struct TcpAccept(pub TcpListener);

impl Accept for TcpAccept {
    type Io = TcpStream;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.0.accept().await {
                Ok((stream, address)) => {
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%error, "cannot set TCP_NODELAY on a connection");
                    }
                    return (stream, address);
                }
                Err(error) => {
                    // Out of descriptors and the like: wait a little rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// Milliseconds since the first call, never 0 (0 means "not set" in the atomics below).
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

/// What the accept loop and the connection's task know of one connection.
#[derive(Debug)]
struct Connection {
    /// Requests whose answer is not completely handed to hyper yet.
    in_flight: AtomicUsize,
    /// When the last request began or ended (or the connection was accepted).
    last_active: AtomicU64,
    /// When the answer's body last gave hyper a frame that hyper has not come back for:
    /// hyper asks for the next frame only once the last one is on its way, so a time long
    /// past means that the client does not read. 0 when hyper is not waiting on the client.
    handed_at: AtomicU64,
    /// Picked to make room: set once, by the accept loop.
    evicted: AtomicBool,
    evict: Notify,
}

impl Connection {
    fn new() -> Connection {
        Connection {
            in_flight: AtomicUsize::new(0),
            last_active: AtomicU64::new(now_ms()),
            handed_at: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        }
    }

    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0
    }

    /// Why the connection should close now, if it should.
    fn expired(&self, limits: &Limits, now: u64) -> Option<&'static str> {
        let elapsed = |since: u64| Duration::from_millis(now.saturating_sub(since));
        if self.idle() && elapsed(self.last_active.load(Ordering::SeqCst)) >= limits.idle_timeout()
        {
            return Some("idle past idle_timeout_seconds");
        }
        let handed = self.handed_at.load(Ordering::SeqCst);
        if handed != 0 && elapsed(handed) >= limits.write_timeout() {
            return Some("the client did not read its answer within write_timeout_seconds");
        }
        None
    }

    fn begin(self: &Arc<Connection>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.last_active.store(now_ms(), Ordering::SeqCst);
        InFlight(Arc::clone(self))
    }
}

/// One request in flight, until its answer's body is dropped (sent, or abandoned).
#[derive(Debug)]
struct InFlight(Arc<Connection>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.handed_at.store(0, Ordering::SeqCst);
        self.0.last_active.store(now_ms(), Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An answer's body, which tells its connection when hyper waits on the client.
#[derive(Debug)]
struct Tracked {
    inner: axum::body::Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let connection = &this._in_flight.0;
        connection.handed_at.store(0, Ordering::SeqCst);
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &polled {
            connection.handed_at.store(now_ms(), Ordering::SeqCst);
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

/// The connections being served, for eviction.
#[derive(Debug, Default)]
struct Registry {
    live: Mutex<HashMap<u64, Arc<Connection>>>,
    next: AtomicU64,
}

impl Registry {
    /// Registers a new connection if there is room, making room by closing the connection
    /// idle longest when there is not; `None` when every connection is busy.
    fn admit(&self, max: usize) -> Option<(u64, Arc<Connection>)> {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        // Connections already told to go still count until they have gone, so that a
        // burst does not evict more than it needs.
        let leaving = live
            .values()
            .filter(|c| c.evicted.load(Ordering::SeqCst))
            .count();
        if live.len() - leaving >= max {
            let victim = live
                .values()
                .filter(|c| c.idle() && !c.evicted.load(Ordering::SeqCst))
                .min_by_key(|c| c.last_active.load(Ordering::SeqCst))?;
            victim.evicted.store(true, Ordering::SeqCst);
            victim.evict.notify_one();
        }
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        let connection = Arc::new(Connection::new());
        live.insert(id, Arc::clone(&connection));
        Some((id, connection))
    }

    fn remove(&self, id: u64) {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }
}

/// The descriptors left for everything but client connections: the store, feeds being
/// imported, the upstream, logs.
const RESERVED_DESCRIPTORS: u64 = 256;

/// `max_connections`, or fewer when the process may not open that many descriptors even
/// after raising its soft limit to the hard one.
fn connection_cap(limits: &Limits) -> usize {
    let wanted = limits.max_connections;
    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::debug!(%error, "cannot raise the descriptor limit");
    }
    match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _)) if soft != rlimit::INFINITY => {
            let room = usize::try_from(soft.saturating_sub(RESERVED_DESCRIPTORS).max(16))
                .unwrap_or(usize::MAX);
            if room < wanted {
                tracing::warn!(
                    max_connections = wanted,
                    descriptor_limit = soft,
                    serving = room,
                    "the descriptor limit (ulimit -n) leaves room for fewer connections than max_connections"
                );
                room
            } else {
                wanted
            }
        }
        _ => wanted,
    }
}

/// Serves `router` on the connections `listener` accepts until `shutdown` completes, then
/// stops accepting, lets requests in flight finish and returns once every connection has
/// closed (the caller bounds that with its grace period). Each request carries
/// `ConnectInfo<SocketAddr>`.
pub async fn serve<A: Accept>(
    mut listener: A,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = Arc::new(limits);
    let max = connection_cap(&limits);
    let registry = Arc::new(Registry::default());
    // Newcomers answered `503 busy`, each for at most a few seconds.
    let overflow = Arc::new(Semaphore::new(max / 16 + 16));
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            (io, address) = listener.accept() => {
                match registry.admit(max) {
                    Some((id, connection)) => {
                        tasks.spawn(serve_connection(
                            io,
                            address,
                            router.clone(),
                            Arc::clone(&limits),
                            Arc::clone(&registry),
                            id,
                            connection,
                            stopped.clone(),
                        ));
                    }
                    None => match Arc::clone(&overflow).try_acquire_owned() {
                        Ok(permit) => {
                            tasks.spawn(async move {
                                answer_busy(io).await;
                                drop(permit);
                            });
                        }
                        // Not even room to say so: the client sees the connection close.
                        Err(_) => drop(io),
                    },
                }
            }
        }
    }
    let _ = stop.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

fn builder(limits: &Limits) -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout());
    builder.http2().timer(TokioTimer::new());
    builder
}

#[allow(clippy::too_many_arguments)]
async fn serve_connection<I>(
    io: I,
    address: SocketAddr,
    router: Router,
    limits: Arc<Limits>,
    registry: Arc<Registry>,
    id: u64,
    connection: Arc<Connection>,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let connection = Arc::clone(&connection);
        hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(address));
            let in_flight = connection.begin();
            let router = router.clone();
            async move {
                let response = match router.oneshot(request.map(axum::body::Body::new)).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                Ok::<_, Infallible>(response.map(|inner| Tracked {
                    inner,
                    _in_flight: in_flight,
                }))
            }
        })
    };
    let builder = builder(&limits);
    let serving = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(serving);
    let shortest = limits.idle_timeout().min(limits.write_timeout());
    let mut watch = tokio::time::interval(
        (shortest / 4).clamp(Duration::from_millis(20), Duration::from_secs(1)),
    );
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = serving.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "a connection ended with an error");
                }
                break;
            }
            () = connection.evict.notified() => {
                if connection.idle() {
                    tracing::debug!("closing an idle connection to make room (max_connections)");
                    break;
                }
                connection.evicted.store(false, Ordering::SeqCst);
            }
            _ = watch.tick() => {
                if let Some(why) = connection.expired(&limits, now_ms()) {
                    tracing::debug!("closing a connection: {why}");
                    break;
                }
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                serving.as_mut().graceful_shutdown();
            }
        }
    }
    registry.remove(id);
}

/// Tells a client that every connection is busy, then closes.
async fn answer_busy<I>(io: I)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(|_request: Request<Incoming>| async {
        let mut response = crate::error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Busy,
            "the server is serving as many connections as it may (max_connections) and none is idle; try again in a second".to_owned(),
            Some(1),
        );
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        Ok::<Response<axum::body::Body>, Infallible>(response)
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(2))
        .keep_alive(false);
    let serving = builder.serve_connection(TokioIo::new(io), service);
    let _ = tokio::time::timeout(Duration::from_secs(5), serving).await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn eviction_picks_the_connection_idle_longest_and_never_a_busy_one() {
        let registry = Registry::default();
        let (_, first) = registry.admit(2).unwrap();
        let (_, second) = registry.admit(2).unwrap();
        let _busy = first.begin();
        second.last_active.store(1, Ordering::SeqCst);
        // At the limit: the idle one goes.
        let (_, _third) = registry.admit(2).unwrap();
        assert!(second.evicted.load(Ordering::SeqCst));
        assert!(!first.evicted.load(Ordering::SeqCst));
        // The evicted one still counts until it has gone, but need not be evicted twice:
        // the third is idle and goes next, the busy first never.
        let (_, _fourth) = registry.admit(2).unwrap();
        assert!(!first.evicted.load(Ordering::SeqCst));
    }

    #[test]
    fn every_connection_busy_means_no_room() {
        let registry = Registry::default();
        let (_, only) = registry.admit(1).unwrap();
        let _busy = only.begin();
        assert!(registry.admit(1).is_none());
    }

    #[test]
    fn idle_and_unread_connections_expire() {
        let limits = Limits {
            idle_timeout_seconds: 1,
            write_timeout_seconds: 2,
            ..Limits::default()
        };
        let connection = Arc::new(Connection::new());
        let start = connection.last_active.load(Ordering::SeqCst);
        assert_eq!(connection.expired(&limits, start + 999), None);
        assert!(connection.expired(&limits, start + 1000).is_some());
        let in_flight = connection.begin();
        let start = connection.last_active.load(Ordering::SeqCst);
        assert_eq!(connection.expired(&limits, start + 60_000), None);
        connection.handed_at.store(start, Ordering::SeqCst);
        assert!(connection.expired(&limits, start + 2000).is_some());
        drop(in_flight);
        assert_eq!(connection.handed_at.load(Ordering::SeqCst), 0);
    }
}
