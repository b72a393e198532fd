//! Admission control: at most `max_concurrent_requests` requests are handled at once. A request
//! that finds every slot busy waits up to `queue_timeout_ms` for one, then is shed with 503
//! `OVERLOADED` and `Retry-After`, before its body is even read; once `max_queued_requests`
//! already wait, it is shed at once (a queue longer than the server can drain in time only
//! holds memory and ends in the same 503, later). Under overload the server so
//! keeps bounded memory and answers the requests it admits at their usual latency, instead of
//! queueing without end until every answer is late.
//!
//! A streamed export holds its slot until the response starts, not while it streams.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::graphql::error_response;
use super::negotiate::{negotiate, Format};
use crate::app::App;
use crate::error::{Error, Result};

#[derive(Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
    max: usize,
    wait: Duration,
    /// Requests waiting for a slot now, and how many may.
    queued: Arc<AtomicUsize>,
    max_queued: usize,
    shed: Arc<AtomicU64>,
}

/// One place in the queue, given back however the wait ends (the client may go away too).
struct Queued(Arc<AtomicUsize>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    pub fn new(max: usize, wait: Duration, max_queued: usize) -> Self {
        Admission {
            slots: Arc::new(Semaphore::new(max)),
            max,
            wait,
            queued: Arc::default(),
            max_queued,
            shed: Arc::default(),
        }
    }

    fn overloaded(&self) -> Error {
        self.shed.fetch_add(1, Ordering::Relaxed);
        Error::Overloaded
    }

    /// A slot, held until the permit drops; `Overloaded` when the queue is full or no slot
    /// frees up in time.
    pub async fn enter(&self) -> Result<OwnedSemaphorePermit> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(self.overloaded());
        }
        let _place = Queued(self.queued.clone());
        match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(self.overloaded()),
        }
    }

    /// Requests waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Requests shed since start.
    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// Requests being handled now.
    pub fn in_flight(&self) -> usize {
        self.max - self.slots.available_permits()
    }
}

/// For `/graphql`: a shed request gets a GraphQL-shaped error body. Times the wait for a slot
/// and the whole request ([`crate::metrics::Stages`]).
pub async fn graphql(State(app): State<App>, request: Request, next: Next) -> Response {
    let arrived = Instant::now();
    let entered = app.admission.enter().await;
    let stages = app.store.stages();
    stages.admission.observe(arrived.elapsed());
    let response = match entered {
        Ok(_slot) => next.run(request).await,
        Err(e) => error_response(&e, negotiate(request.headers()).unwrap_or(Format::Json)),
    };
    stages.request.observe(arrived.elapsed());
    response
}

/// For the other heavy routes (`/import`, `/export`, the OAuth endpoints).
pub async fn plain(State(app): State<App>, request: Request, next: Next) -> Response {
    match app.admission.enter().await {
        Ok(_slot) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sheds_once_every_slot_stays_busy() {
        let admission = Admission::new(2, Duration::from_millis(20), 8);
        let a = admission.enter().await.ok();
        let b = admission.enter().await.ok();
        assert!(a.is_some() && b.is_some());
        assert_eq!(admission.in_flight(), 2);
        assert!(matches!(admission.enter().await, Err(Error::Overloaded)));
        assert_eq!(admission.shed(), 1);
        drop(a);
        // A freed slot admits the next request, even one already waiting.
        let waiting = tokio::spawn({
            let admission = admission.clone();
            async move { admission.enter().await.is_ok() }
        });
        assert!(waiting.await.unwrap_or(false));
        assert_eq!(admission.shed(), 1);
        assert_eq!(admission.queued(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_sheds_at_once() {
        let admission = Admission::new(1, Duration::from_secs(30), 2);
        let _busy = admission.enter().await.ok();
        // Two wait (the queue's length); the third is shed without waiting its 30 s.
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let admission = admission.clone();
                tokio::spawn(async move { admission.enter().await.is_ok() })
            })
            .collect();
        while admission.queued() < 2 {
            tokio::task::yield_now().await;
        }
        let started = std::time::Instant::now();
        assert!(matches!(admission.enter().await, Err(Error::Overloaded)));
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!((admission.shed(), admission.queued()), (1, 2));
        // A waiter that goes away gives its place back.
        for w in &waiters {
            w.abort();
        }
        for w in waiters {
            let _ = w.await;
        }
        assert_eq!(admission.queued(), 0);
    }
}
