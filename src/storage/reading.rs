//! The latest reading of something other writers change (the `auth_changes` counter for
//! sessions, the feed of data changes for the response cache), and whether it is recent enough
//! to rely on: what a process remembers is used only while such a reading started less than
//! `recheck` ago, so that another writer's change shows within `recheck`, and at once while the
//! database cannot be read (nothing remembered is used then).

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct LatestReading<T> {
    recheck: Duration,
    /// When the latest recorded read started, and what it read.
    latest: Mutex<Option<(Instant, T)>>,
}

impl<T: Copy> LatestReading<T> {
    pub fn new(recheck: Duration) -> Self {
        LatestReading {
            recheck,
            latest: Mutex::new(None),
        }
    }

    pub fn recheck(&self) -> Duration {
        self.recheck
    }

    /// Records what a read that started at `started` read, unless a read that started later
    /// was recorded first (reads may finish out of order).
    pub fn record(&self, started: Instant, value: T) {
        if let Ok(mut latest) = self.latest.lock() {
            if latest.is_none_or(|(s, _)| s < started) {
                *latest = Some((started, value));
            }
        }
    }

    /// What the latest read read, if it started less than `recheck` before `now`.
    pub fn relied_on(&self, now: Instant) -> Option<T> {
        let (started, value) = (*self.latest.lock().ok()?)?;
        (now.saturating_duration_since(started) < self.recheck).then_some(value)
    }

    /// Whether a read that started at `since` or later has been recorded.
    pub fn read_since(&self, since: Instant) -> bool {
        self.latest
            .lock()
            .ok()
            .and_then(|l| *l)
            .is_some_and(|(started, _)| started >= since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_recent_reading_is_relied_on() {
        let reading = LatestReading::new(Duration::from_millis(500));
        let t = Instant::now();
        assert_eq!(reading.relied_on(t), None, "never read");
        assert!(!reading.read_since(t));
        reading.record(t, 7);
        assert_eq!(reading.relied_on(t), Some(7));
        assert_eq!(reading.relied_on(t + Duration::from_millis(499)), Some(7));
        assert_eq!(
            reading.relied_on(t + Duration::from_millis(500)),
            None,
            "too old"
        );
        assert!(reading.read_since(t));
        assert!(!reading.read_since(t + Duration::from_millis(1)));
    }

    #[test]
    fn a_read_that_started_later_is_kept() {
        let reading = LatestReading::new(Duration::from_millis(500));
        let t = Instant::now();
        reading.record(t + Duration::from_millis(100), 2);
        // An earlier read that finished last.
        reading.record(t, 1);
        assert_eq!(reading.relied_on(t + Duration::from_millis(100)), Some(2));
    }
}
