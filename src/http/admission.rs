//! Admission control: at most `max_concurrent_requests` requests are handled at once. A request
//! that finds every slot busy waits for one, then is shed with 503 `OVERLOADED` and
//! `Retry-After`, before its body is even read; once too many already wait, it is shed at once
//! (a queue longer than the server can drain in time only holds memory and ends in the same 503,
//! later).
//!
//! How long a request may wait depends on whether the queue is a burst or standing, as in CoDel
//! (Nichols and Jacobson, "Controlling Queue Delay", ACM Queue 2012) and Facebook's adaptive
//! queues ("Fail at Scale", ACM Queue 2015): a queue that has emptied within the last
//! `queue_standing_after_ms` is a burst: its requests may wait up to `queue_timeout_ms`, and up
//! to `max_queued_requests` may wait. One that has not is standing (the server is over
//! capacity): new requests wait at most `queue_timeout_standing_ms`, and are shed at once when
//! as many already wait as the server admitted in the last `queue_standing_after_ms` (about
//! that long a wait), and never fewer than half of `max_queued_requests`. So a short stall, at
//! any load, is ridden out with the whole queue instead of answered with 503s, and sustained
//! overload keeps the requests the server admits to a wait of about `queue_standing_after_ms`
//! on a fast server, or to half the queue on a slow one. A fixed half alone shed requests at
//! 95% of a fast server's capacity after a short stall, where the 64 waiting were 55 ms of work.
//! `queue_timeout_standing_ms` ships equal to `queue_timeout_ms`: lower suits a server of fast
//! queries only, as it sheds every request that takes longer than it to serve.
//!
//! A streamed export holds its slot until the response starts, not while it streams.
//!
//! A request reaches admission once its body has been read ([`super::body`]): a slow client
//! holds no slot. While the database is known to be down ([`crate::storage::Store::down`]),
//! requests are answered 503 `SERVICE_UNAVAILABLE` with `Retry-After` before taking a slot.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::graphql::error_response;
use super::negotiate::{negotiate, Format};
use crate::app::App;
use crate::error::{Error, Result};

/// How long requests may wait for a slot (see the module's documentation).
#[derive(Debug, Clone, Copy)]
pub struct Waits {
    /// In a burst: a queue that emptied within `standing_after`.
    pub burst: Duration,
    /// In a standing queue.
    pub standing: Duration,
    pub standing_after: Duration,
}

impl Waits {
    pub fn from_config(config: &crate::config::Config) -> Self {
        Waits {
            burst: Duration::from_millis(config.queue_timeout_ms),
            standing: Duration::from_millis(config.queue_timeout_standing_ms),
            standing_after: Duration::from_millis(config.queue_standing_after_ms),
        }
    }
}

#[derive(Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
    max: usize,
    waits: Waits,
    /// Requests waiting for a slot now, and how many may.
    queued: Arc<AtomicUsize>,
    max_queued: usize,
    /// When the queue was last empty, in microseconds since `epoch`: when a request joined an
    /// empty queue, or the last waiter left.
    last_empty_us: Arc<AtomicU64>,
    epoch: Instant,
    shed: Arc<AtomicU64>,
    /// Requests admitted in the current window of `standing_after`, since when, and in the
    /// last whole one (scaled to `standing_after` when it ran longer): what a standing queue
    /// may hold.
    window_admitted: Arc<AtomicU64>,
    window_start_us: Arc<AtomicU64>,
    admitted_per_window: Arc<AtomicU64>,
    /// Refusals and connections, for `/metrics`.
    counters: Arc<crate::metrics::Resilience>,
}

/// One place in the queue, given back however the wait ends (the client may go away too).
struct Queued<'a>(&'a Admission);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if self.0.queued.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.mark_empty();
        }
    }
}

impl Admission {
    pub fn new(max: usize, waits: Waits, max_queued: usize) -> Self {
        Admission {
            slots: Arc::new(Semaphore::new(max)),
            max,
            waits,
            queued: Arc::default(),
            max_queued,
            last_empty_us: Arc::default(),
            epoch: Instant::now(),
            shed: Arc::default(),
            window_admitted: Arc::default(),
            window_start_us: Arc::default(),
            admitted_per_window: Arc::default(),
            counters: Arc::default(),
        }
    }

    /// Refused requests and connections closed for clients (issue 37), for `/metrics`.
    pub fn counters(&self) -> &Arc<crate::metrics::Resilience> {
        &self.counters
    }

    /// The refusal of a request that needs the database while it is known to be down.
    fn database_down(&self, app: &App) -> Option<Error> {
        let e = app.store.down()?;
        self.counters.refused(crate::metrics::Refusal::DatabaseDown);
        Some(e)
    }

    /// Counts an admission in the current window, and closes the window once `standing_after`
    /// has passed. Approximate under races, which only move the count by a request or two.
    fn note_admitted(&self) {
        let now = self.since_epoch_us();
        let start = self.window_start_us.load(Ordering::Acquire);
        let window = u64::try_from(self.waits.standing_after.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let elapsed = now.saturating_sub(start);
        if elapsed >= window
            && self
                .window_start_us
                .compare_exchange(start, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            let admitted = self.window_admitted.swap(1, Ordering::AcqRel);
            let per_window = u128::from(admitted) * u128::from(window) / u128::from(elapsed);
            self.admitted_per_window.store(
                u64::try_from(per_window).unwrap_or(u64::MAX),
                Ordering::Release,
            );
        } else {
            self.window_admitted.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// How many may wait in a standing queue: as many as were admitted in the last window
    /// of `standing_after`, at least half of `max_queued`, at most all of it.
    fn standing_length(&self) -> usize {
        let drained =
            usize::try_from(self.admitted_per_window.load(Ordering::Acquire)).unwrap_or(usize::MAX);
        drained.clamp(self.max_queued / 2, self.max_queued)
    }

    fn since_epoch_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn mark_empty(&self) {
        self.last_empty_us
            .fetch_max(self.since_epoch_us(), Ordering::AcqRel);
    }

    /// Whether the queue a request joins now stands (has not emptied for `standing_after`).
    fn standing(&self, joined_empty: bool) -> bool {
        if joined_empty {
            self.mark_empty();
            return false;
        }
        let stood = self
            .since_epoch_us()
            .saturating_sub(self.last_empty_us.load(Ordering::Acquire));
        Duration::from_micros(stood) >= self.waits.standing_after
    }

    fn overloaded(&self) -> Error {
        self.shed.fetch_add(1, Ordering::Relaxed);
        Error::Overloaded
    }

    /// A slot, held until the permit drops; `Overloaded` when the queue is full or no slot
    /// frees up in time.
    pub async fn enter(&self) -> Result<OwnedSemaphorePermit> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            self.note_admitted();
            return Ok(permit);
        }
        let ahead = self.queued.fetch_add(1, Ordering::AcqRel);
        let place = Queued(self);
        // A standing queue is kept to what the server drains in `standing_after` (at least half
        // the length a burst may reach), and short waits: a request it could not serve in time
        // is shed at once, not after waiting.
        let (wait, longest) = if self.standing(ahead == 0) {
            (
                self.waits.standing.min(self.waits.burst),
                self.standing_length(),
            )
        } else {
            (self.waits.burst, self.max_queued)
        };
        if ahead >= longest {
            drop(place);
            return Err(self.overloaded());
        }
        match tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => {
                self.note_admitted();
                Ok(permit)
            }
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
    let arrived = std::time::Instant::now();
    if let Some(e) = app.admission.database_down(&app) {
        return error_response(&e, negotiate(request.headers()).unwrap_or(Format::Json));
    }
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
    if let Some(e) = app.admission.database_down(&app) {
        return e.into_response();
    }
    match app.admission.enter().await {
        Ok(_slot) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waits(burst_ms: u64, standing_ms: u64, standing_after_ms: u64) -> Waits {
        Waits {
            burst: Duration::from_millis(burst_ms),
            standing: Duration::from_millis(standing_ms),
            standing_after: Duration::from_millis(standing_after_ms),
        }
    }

    #[tokio::test]
    async fn sheds_once_every_slot_stays_busy() {
        let admission = Admission::new(2, waits(20, 20, 100), 8);
        let a = admission.enter().await.ok();
        let b = admission.enter().await.ok();
        assert!(a.is_some() && b.is_some());
        assert_eq!(admission.in_flight(), 2);
        assert!(matches!(admission.enter().await, Err(Error::Overloaded)));
        assert_eq!(admission.shed(), 1);
        drop(a);
        // A freed slot admits the next request, even one already waiting.
        assert!(waiter(&admission).await.unwrap_or(false));
        assert_eq!(admission.shed(), 1);
        assert_eq!(admission.queued(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_sheds_at_once() {
        let admission = Admission::new(1, waits(30_000, 30_000, 100), 2);
        let _busy = admission.enter().await.ok();
        // Two wait (the queue's length); the third is shed without waiting its 30 s.
        let waiters: Vec<_> = (0..2).map(|_| waiter(&admission)).collect();
        until_queued(&admission, 2).await;
        let started = std::time::Instant::now();
        assert!(matches!(admission.enter().await, Err(Error::Overloaded)));
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!((admission.shed(), admission.queued()), (1, 2));
        // A waiter that goes away gives its place back.
        give_up(waiters).await;
        assert_eq!(admission.queued(), 0);
    }

    /// Takes a slot in a task of its own, as a request would, and reports how its wait ended.
    fn waiter(admission: &Admission) -> tokio::task::JoinHandle<bool> {
        let admission = admission.clone();
        tokio::spawn(async move { admission.enter().await.is_ok() })
    }

    async fn until_queued(admission: &Admission, n: usize) {
        while admission.queued() < n {
            tokio::task::yield_now().await;
        }
    }

    /// Their clients go away: each waiter is dropped, as a closed connection drops its request.
    async fn give_up(waiters: Vec<tokio::task::JoinHandle<bool>>) {
        for w in &waiters {
            w.abort();
        }
        for w in waiters {
            let _ = w.await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_waits_as_long_as_queue_timeout() {
        let admission = Admission::new(1, waits(500, 50, 100), 8);
        let busy = admission.enter().await.ok();
        // Each joins a queue that emptied moments ago: a burst, whose requests may wait 500 ms.
        let first = waiter(&admission);
        until_queued(&admission, 1).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
        let second = waiter(&admission);
        until_queued(&admission, 2).await;
        // The slot frees after 300 ms: past the standing queue's 50, within the burst's 500.
        tokio::time::sleep(Duration::from_millis(240)).await;
        drop(busy);
        assert!(first.await.unwrap());
        assert!(second.await.unwrap());
        assert_eq!(admission.shed(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_standing_queue_sheds_new_requests_after_the_short_wait() {
        let admission = Admission::new(1, waits(30_000, 50, 100), 8);
        let busy = admission.enter().await.ok();
        let early = waiter(&admission);
        until_queued(&admission, 1).await;
        // The queue has not emptied for 150 ms: it is standing.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let started = Instant::now();
        assert!(matches!(admission.enter().await, Err(Error::Overloaded)));
        assert_eq!(started.elapsed(), Duration::from_millis(50));
        assert_eq!(admission.shed(), 1);
        // The request that joined during the burst keeps its own, longer wait.
        drop(busy);
        assert!(early.await.unwrap());
        // Once the queue has emptied, the next one is a burst again.
        let busy = admission.enter().await.ok();
        let next = waiter(&admission);
        until_queued(&admission, 1).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(busy);
        assert!(next.await.unwrap());
        assert_eq!(admission.shed(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_standing_queue_holds_half_as_many_as_a_burst() {
        let admission = Admission::new(1, waits(30_000, 50, 100), 4);
        let _busy = admission.enter().await.ok();
        // A burst: four may wait.
        let burst: Vec<_> = (0..4).map(|_| waiter(&admission)).collect();
        until_queued(&admission, 4).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        // Standing now, with four waiting: a fifth is shed at once, not after its 50 ms.
        let started = Instant::now();
        assert!(matches!(admission.enter().await, Err(Error::Overloaded)));
        assert_eq!(started.elapsed(), Duration::ZERO);
        give_up(burst).await;
        assert_eq!(admission.queued(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_standing_queue_holds_what_the_server_admits_in_standing_after() {
        let admission = Admission::new(1, waits(30_000, 30_000, 100), 8);
        // Eight requests served in one window of 100 ms.
        for _ in 0..8 {
            drop(admission.enter().await.ok());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _busy = admission.enter().await.ok();
        let mut waiting: Vec<_> = (0..6).map(|_| waiter(&admission)).collect();
        until_queued(&admission, 6).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        // Standing, with six waiting: more than half of eight, but less than the eight the
        // server drains in 100 ms; two more may wait, the next is shed at once.
        waiting.extend((0..2).map(|_| waiter(&admission)));
        for _ in 0..1_000 {
            tokio::task::yield_now().await;
        }
        assert_eq!((admission.queued(), admission.shed()), (8, 0));
        let started = Instant::now();
        assert!(matches!(admission.enter().await, Err(Error::Overloaded)));
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(admission.shed(), 1);
        give_up(waiting).await;
        assert_eq!(admission.queued(), 0);
    }
}
