//! The accept loop and the HTTP/1 connections under the router, served with hyper directly
//! rather than `axum::serve`, for what a hostile or unlucky client must not be able to hold:
//!
//! - at most `max_connections` open at once; beyond it, new ones wait in the kernel's queue,
//!   and connections without a request in progress that have been quiet for a moment are closed
//!   to make room;
//! - a request's headers must arrive within `header_read_timeout_ms` of their first byte;
//! - a connection without a request in progress and without traffic for `idle_timeout_ms` is
//!   closed (a new connection that sends nothing, a keep-alive one between requests, half-sent
//!   headers);
//! - when `accept` fails for want of file descriptors, the loop closes quiet connections, waits
//!   a moment and accepts again, logging once per interval rather than once per failure.
//!
//! Slow bodies are the router's business ([`super::body`]).

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::Router;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tower::ServiceExt;

use crate::metrics::Resilience;

/// How long a connection without a request in progress must have been quiet before it is
/// closed to make room (at the connection cap, or out of file descriptors).
const QUIET_UNDER_PRESSURE: Duration = Duration::from_secs(1);
/// How long the loop waits after a failed `accept` before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// The connection limits, from `Config` (the block "Connections and slow clients").
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Limits {
    pub fn from_config(config: &crate::config::Config) -> Self {
        Limits {
            max_connections: config.max_connections.max(1),
            header_read_timeout: Duration::from_millis(config.header_read_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(config.idle_timeout_ms.max(1)),
        }
    }
}

/// What one connection's task and its I/O share: when it last moved a byte, how many of its
/// requests are being answered (until their response bodies end), and since when the headers
/// of the next one have been arriving.
struct Activity {
    epoch: Instant,
    last_us: AtomicU64,
    in_flight: AtomicUsize,
    /// When the first byte came in with no request in progress, in microseconds since
    /// `epoch` (+1; 0: none); cleared once the headers are in.
    head_since_us: AtomicU64,
    /// Wakes the connection's task when headers start, to time them.
    head_started: Notify,
}

impl Activity {
    fn new() -> Self {
        Activity {
            epoch: Instant::now(),
            last_us: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            head_since_us: AtomicU64::new(0),
            head_started: Notify::new(),
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last_us.store(self.now_us(), Ordering::Relaxed);
    }

    /// Bytes came in: with no request in progress, they start the next one's headers.
    fn received(&self) {
        let now = self.now_us();
        self.last_us.store(now, Ordering::Relaxed);
        if !self.busy()
            && self
                .head_since_us
                .compare_exchange(
                    0,
                    now.saturating_add(1),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            self.head_started.notify_one();
        }
    }

    /// How long the headers being received have taken so far.
    fn head_for(&self) -> Option<Duration> {
        match self.head_since_us.load(Ordering::Acquire) {
            0 => None,
            since => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_micros(since - 1)),
            ),
        }
    }

    /// How long since the last byte in or out.
    fn quiet_for(&self) -> Duration {
        let now = self.epoch.elapsed();
        now.saturating_sub(Duration::from_micros(self.last_us.load(Ordering::Relaxed)))
    }

    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }
}

/// A request being answered; dropped when its response body ends (or the client goes away).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.head_since_us.store(0, Ordering::Release);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.touch();
    }
}

/// A socket that notes when it last moved a byte.
struct Tracked {
    io: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.received();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The process's soft limit on open files, where Linux says (`/proc/self/limits`).
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether an `accept` error concerns only the client that was leaving (nothing to wait for).
fn client_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, closes the
/// connections without a request in progress, and returns once the others have been answered
/// (the caller bounds that wait).
pub async fn serve(
    router: Router,
    listener: TcpListener,
    limits: Limits,
    counters: Arc<Resilience>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    if let Some(files) = open_file_limit() {
        if limits.max_connections.saturating_add(64) > files {
            tracing::warn!(
                max_connections = limits.max_connections,
                open_file_limit = files,
                "max_connections is close to the open-file limit: raise LimitNOFILE (ulimit -n) or lower max_connections"
            );
        }
    }
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Tells quiet connections to close, to make room.
    let pressure = Arc::new(Notify::new());
    // Closed (every sender dropped) to ask connections to finish; each task holds `done_rx`
    // until it ends, so `done_tx.closed()` says when all have.
    let (stop_tx, stop_rx) = watch::channel(());
    let (done_tx, done_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                counters.at_connection_cap.fetch_add(1, Ordering::Relaxed);
                pressure.notify_waiters();
                tokio::select! {
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    _ = &mut shutdown => break,
                }
            }
        };
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if client_gone(&e) => continue,
                Err(e) => {
                    counters.accept_errors.fetch_add(1, Ordering::Relaxed);
                    if let Some(n) = counters.accept_log.tick() {
                        tracing::warn!(error = %e, failures = n, open = counters.connections_open.load(Ordering::Relaxed),
                            "cannot accept connections (counted since the last such line); closing quiet ones and retrying");
                    }
                    // Out of descriptors, most likely: make room, then try again.
                    pressure.notify_waiters();
                    drop(permit);
                    tokio::select! {
                        _ = tokio::time::sleep(ACCEPT_RETRY) => continue,
                        _ = &mut shutdown => break,
                    }
                }
            },
            _ = &mut shutdown => break,
        };
        counters
            .connections_accepted
            .fetch_add(1, Ordering::Relaxed);
        counters.connections_open.fetch_add(1, Ordering::Relaxed);
        let connection = Connection {
            router: router.clone(),
            limits,
            counters: counters.clone(),
            pressure: pressure.clone(),
            stop: stop_rx.clone(),
        };
        let done = done_rx.clone();
        tokio::spawn(async move {
            connection.run(stream).await;
            drop(permit);
            drop(done);
        });
    }
    tracing::info!("shutting down: finishing in-flight requests");
    drop(listener);
    drop(stop_tx);
    drop(done_rx);
    done_tx.closed().await;
}

struct Connection {
    router: Router,
    limits: Limits,
    counters: Arc<Resilience>,
    pressure: Arc<Notify>,
    stop: watch::Receiver<()>,
}

impl Connection {
    async fn run(mut self, stream: TcpStream) {
        let activity = Arc::new(Activity::new());
        activity.touch();
        let io = TokioIo::new(Tracked {
            io: stream,
            activity: activity.clone(),
        });
        let router = self.router.clone();
        let requests = activity.clone();
        let service =
            hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let in_flight = InFlight::new(&requests);
                let router = router.clone();
                async move {
                    let response = router.oneshot(request.map(Body::new)).await;
                    // The request counts as in progress until its body has been sent.
                    response.map(|r| {
                        r.map(|body| {
                            Body::new(body.map_frame(move |frame| {
                                let _held = &in_flight;
                                frame
                            }))
                        })
                    })
                }
            });
        // No timer for hyper: its header timeout would also run between keep-alive requests;
        // both timeouts are kept here.
        let builder = hyper::server::conn::http1::Builder::new();
        let mut conn = pin!(builder.serve_connection(io, service));
        let header_timeout = self.limits.header_read_timeout;
        let idle = self.limits.idle_timeout;
        let mut stopping = false;
        let closed_by = loop {
            // A request in progress is not idle: looked at again a whole `idle` later.
            let wait = if activity.busy() {
                idle
            } else {
                let to_idle = idle.saturating_sub(activity.quiet_for());
                match activity.head_for() {
                    Some(took) => to_idle.min(header_timeout.saturating_sub(took)),
                    None => to_idle,
                }
            };
            let idle_check = tokio::time::sleep(wait);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::trace!(error = %e, "connection ended with an error");
                    }
                    break None;
                }
                // Headers started arriving: the timer is set again, to their deadline.
                _ = activity.head_started.notified(), if !stopping => {}
                _ = idle_check, if !stopping => {
                    if activity.busy() {
                        continue;
                    }
                    if activity.head_for().is_some_and(|took| took >= header_timeout) {
                        break Some(&self.counters.closed_header_timeout);
                    }
                    if activity.quiet_for() >= idle {
                        break Some(&self.counters.closed_idle);
                    }
                }
                _ = self.pressure.notified(), if !stopping => {
                    if !activity.busy() && activity.quiet_for() >= QUIET_UNDER_PRESSURE.min(idle) {
                        break Some(&self.counters.closed_pressure);
                    }
                }
                _ = self.stop.changed(), if !stopping => {
                    // Shutting down: answer what is in progress, then close; a connection
                    // waiting for a request is closed now.
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                    if !activity.busy() {
                        break None;
                    }
                }
            }
        };
        if let Some(counter) = closed_by {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        self.counters
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_open_file_limit() {
        let n = super::open_file_limit();
        assert!(n.is_some_and(|n| n > 0), "{n:?}");
    }
}
