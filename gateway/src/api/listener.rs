//! The management API's front door: its own accept loop, so every connection is bounded before
//! any request is read, let alone authenticated.
//!
//! - a cap on open connections for the listener and one per source address: a socket past either
//!   is closed at accept (counted in `warden_api_connections_refused`), so stalled clients cannot
//!   use up the process's file descriptors;
//! - a header-read timeout (hyper's, which also covers an idle keep-alive connection waiting for
//!   its next request);
//! - an idle timeout: no byte in either direction for that long and the connection is closed
//!   (covers a client that sends a header announcing a body, then stalls);
//! - at most 64 KiB of buffered header per connection (hyper's parser limit); body size is capped
//!   by the router;
//! - on a TLS listener (the dashboard's LAN address), the handshake must finish within the
//!   header timeout.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use crate::metrics::{Metrics, RefusalLabels};

/// The peer of the connection a request came on (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub per_source: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// How long shutdown waits for open connections to finish their requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// hyper's read buffer (and so the largest request header), per connection.
const MAX_HEADER_BUF: usize = 64 * 1024;

/// Counts a source's open connections; the count goes down when the guard is dropped.
struct SourceGuard {
    map: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl SourceGuard {
    fn take(map: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, max: usize) -> Option<Self> {
        let mut g = map.lock().unwrap_or_else(|p| p.into_inner());
        let n = g.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Self {
            map: map.clone(),
            ip,
        })
    }
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        let mut g = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = g.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                g.remove(&self.ip);
            }
        }
    }
}

/// A TCP stream that notes when a byte last went either way.
struct Tracked {
    inner: TcpStream,
    base: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Tracked {
    fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn refused(metrics: &Metrics, cause: &str, peer: SocketAddr, last_warn: &mut Option<Instant>) {
    metrics
        .api_connections_refused
        .get_or_create(&RefusalLabels {
            cause: cause.to_owned(),
        })
        .inc();
    // one log line per second at most, whatever the flood
    if last_warn.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
        *last_warn = Some(Instant::now());
        tracing::warn!(%peer, cause, "management API connection refused");
    }
}

/// Resolves at shutdown (holds no borrow of the channel across the caller's awaits).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|v| *v).await;
}

/// Accepts connections until shutdown, then lets open ones finish (for a few seconds at most).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let sources = Arc::new(Mutex::new(HashMap::new()));
    let mut conns = tokio::task::JoinSet::new();
    let mut last_warn = None;
    loop {
        while conns.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // out of descriptors or a reset before accept: back off instead of spinning
                    tracing::warn!(error = %e, "management API accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut shutdown) => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused(&metrics, "listener-cap", peer, &mut last_warn);
            continue;
        };
        let Some(source) = SourceGuard::take(&sources, peer.ip(), limits.per_source) else {
            refused(&metrics, "source-cap", peer, &mut last_warn);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (app, metrics, shutdown) = (app.clone(), metrics.clone(), shutdown.clone());
        let tls = tls.clone();
        conns.spawn(async move {
            metrics.api_connections.inc();
            connection(stream, peer, app, limits, &metrics, shutdown, tls).await;
            metrics.api_connections.dec();
            drop((slot, source));
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    metrics: &Metrics,
    shutdown: watch::Receiver<bool>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let last_ms = Arc::new(AtomicU64::new(0));
    let base = Instant::now();
    let tracked = Tracked {
        inner: stream,
        base,
        last_ms: last_ms.clone(),
    };
    let Some(acceptor) = tls else {
        return serve_io(
            tracked, peer, app, limits, metrics, shutdown, last_ms, base, false,
        )
        .await;
    };
    match tokio::time::timeout(limits.header_timeout, acceptor.accept(tracked)).await {
        Ok(Ok(s)) => serve_io(s, peer, app, limits, metrics, shutdown, last_ms, base, true).await,
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "dashboard TLS handshake failed"),
        Err(_) => {
            metrics.api_connections_timed_out.inc();
            tracing::debug!(%peer, "dashboard TLS handshake timed out");
        }
    }
}

#[allow(clippy::too_many_arguments)] // one connection's whole context, passed once
async fn serve_io<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    metrics: &Metrics,
    mut shutdown: watch::Receiver<bool>,
    last_ms: Arc<AtomicU64>,
    base: Instant,
    over_tls: bool,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(Peer(peer));
        if over_tls {
            req.extensions_mut().insert(crate::web::session::OverTls);
        }
        let mut app = app.clone();
        // a Router is always ready: calling without poll_ready is how axum serves it too
        tower_service::Service::call(&mut app, req)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEADER_BUF)
        .serve_connection(io, svc);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let idle_deadline =
            base + Duration::from_millis(last_ms.load(Ordering::Relaxed)) + limits.idle_timeout;
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    if e.is_timeout() {
                        metrics.api_connections_timed_out.inc();
                    }
                    tracing::debug!(%peer, error = %e, "management API connection ended");
                }
                return;
            }
            _ = tokio::time::sleep_until(idle_deadline) => {
                let last = base + Duration::from_millis(last_ms.load(Ordering::Relaxed));
                if last.elapsed() >= limits.idle_timeout {
                    metrics.api_connections_timed_out.inc();
                    tracing::debug!(%peer, "management API connection idle; closed");
                    return;
                }
            }
            () = stopped(&mut shutdown), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
