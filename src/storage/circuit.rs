//! Whether the database is known to be down, or its disk full. A request that could not get a
//! connection within `db_connect_timeout_secs` opens the circuit: from then on, requests that
//! need the database are answered 503 `SERVICE_UNAVAILABLE` with `Retry-After` at once, rather
//! than each waiting the connect timeout while holding a slot (which shed the rest as
//! `OVERLOADED`), and `/readyz` says not ready without asking the database. One background
//! probe tries a new connection every `db_probe_interval_ms` and closes the circuit when one
//! opens. A restart shorter than the connect timeout never opens it.
//!
//! A full disk (SQLite's `SQLITE_FULL`, PostgreSQL's `disk_full`) fails writes, not reads:
//! those writes are answered 503 (`Error::StorageFull`), and `/readyz` says not ready for
//! [`FULL_HOLD`] after the last one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::Error;

/// How long `/readyz` reports a full disk after a write last failed for it.
pub const FULL_HOLD: Duration = Duration::from_secs(30);

pub struct Circuit {
    open: AtomicBool,
    probing: AtomicBool,
    probe_interval: Duration,
    epoch: Instant,
    /// When a write last failed on a full disk, in milliseconds since `epoch` (+1; 0: never).
    full_at_ms: AtomicU64,
}

impl Circuit {
    pub fn new(probe_interval: Duration) -> Self {
        Circuit {
            open: AtomicBool::new(false),
            probing: AtomicBool::new(false),
            probe_interval,
            epoch: Instant::now(),
            full_at_ms: AtomicU64::new(0),
        }
    }

    /// `Some` while the database is known to be down: the error to answer with.
    pub fn refusal(&self) -> Option<Error> {
        self.open
            .load(Ordering::Acquire)
            .then(|| Error::DatabaseDown {
                retry_after_secs: u64::try_from(self.probe_interval.as_millis().div_ceil(1000))
                    .unwrap_or(u64::MAX)
                    .max(1),
            })
    }

    /// Opens the circuit; `true` when the caller should start the probe (no probe runs yet).
    pub fn trip(&self) -> bool {
        if !self.open.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                probe_every_ms = self.probe_interval.as_millis() as u64,
                "the database is unreachable: answering 503 at once until a probe connects"
            );
        }
        !self.probing.swap(true, Ordering::AcqRel)
    }

    /// The probe connected: requests go to the database again.
    pub fn close(&self) {
        self.probing.store(false, Ordering::Release);
        if self.open.swap(false, Ordering::AcqRel) {
            tracing::info!("the database answers again");
        }
    }

    pub fn probe_interval(&self) -> Duration {
        self.probe_interval
    }

    /// Notes a write that failed on a full disk.
    pub fn note_full(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.full_at_ms
            .store(ms.saturating_add(1), Ordering::Release);
    }

    /// Whether a write failed on a full disk within [`FULL_HOLD`].
    pub fn full_recently(&self) -> bool {
        let at = self.full_at_ms.load(Ordering::Acquire);
        at != 0 && self.epoch.elapsed() < Duration::from_millis(at - 1).saturating_add(FULL_HOLD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_once_probes_once_and_closes() {
        let c = Circuit::new(Duration::from_millis(2500));
        assert!(c.refusal().is_none());
        assert!(c.trip());
        // Tripped again while the probe runs: no second probe.
        assert!(!c.trip());
        match c.refusal() {
            Some(Error::DatabaseDown { retry_after_secs }) => assert_eq!(retry_after_secs, 3),
            other => panic!("{other:?}"),
        }
        c.close();
        assert!(c.refusal().is_none());
        assert!(c.trip());
    }

    #[test]
    fn a_full_disk_is_remembered_for_a_while() {
        let c = Circuit::new(Duration::from_secs(1));
        assert!(!c.full_recently());
        c.note_full();
        assert!(c.full_recently());
    }
}
