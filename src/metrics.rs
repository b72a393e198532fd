//! Where a request's time goes, for `/metrics`: one latency histogram per stage (Prometheus
//! `passerelle_stage_seconds{stage=...}`), recorded with a few relaxed atomic additions, so it
//! stays on in production. When latency climbs near capacity, the stage whose histogram moves
//! says whether the time is spent waiting for a request slot, for a database connection, for a
//! blocking thread, in the database, or for the audit log.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds (`le` in seconds on the way out).
const BOUNDS_US: [u64; 15] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000,
];

/// A Prometheus histogram with fixed buckets.
#[derive(Default)]
pub struct Histogram {
    /// Observations at or under each bound (not cumulative here; summed on the way out), and
    /// one more for those above the last.
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_US.partition_point(|&bound| bound < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The `_bucket`, `_sum` and `_count` lines of this histogram under `name{labels}`.
    fn render(&self, name: &str, labels: &str, out: &mut String) {
        let mut cumulative = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = match BOUNDS_US.get(i) {
                Some(us) => format!("{}", *us as f64 / 1e6),
                None => "+Inf".to_owned(),
            };
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// The stages of a request that can wait or take time, each timed on its own.
#[derive(Default)]
pub struct Stages {
    /// A whole `/graphql` request, from its arrival at admission control to its response.
    pub request: Histogram,
    /// Waiting for a request slot (admission control), shed requests included.
    pub admission: Histogram,
    /// Waiting for one of the database connection slots.
    pub database_slot: Histogram,
    /// From a database slot to the blocking thread that runs the work starting.
    pub blocking_thread: Histogram,
    /// Taking the pooled connection and running the statements on it.
    pub database_work: Histogram,
    /// Waiting for the request's audit entry to be committed.
    pub audit: Histogram,
}

/// The stages' names, as `/metrics` labels them.
pub const STAGE_NAMES: [&str; 6] = [
    "request",
    "admission",
    "database_slot",
    "blocking_thread",
    "database_work",
    "audit",
];

impl Stages {
    /// Each stage under its name, in the order of [`STAGE_NAMES`].
    fn each(&self) -> impl Iterator<Item = (&'static str, &Histogram)> {
        STAGE_NAMES.into_iter().zip([
            &self.request,
            &self.admission,
            &self.database_slot,
            &self.blocking_thread,
            &self.database_work,
            &self.audit,
        ])
    }

    /// The Prometheus text of every stage's histogram.
    pub fn render(&self) -> String {
        let name = "passerelle_stage_seconds";
        let mut out = format!(
            "# HELP {name} Time spent in each stage of a request (request: the whole of one).\n\
             # TYPE {name} histogram\n"
        );
        for (stage, histogram) in self.each() {
            histogram.render(name, &format!("stage=\"{stage}\""), &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_cumulative_buckets_with_their_sum() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50)); // on a bound: that bucket
        h.observe(Duration::from_micros(51));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10)); // above the last bound
        let mut out = String::new();
        h.render("t", "stage=\"x\"", &mut out);
        let line = |le: &str| {
            out.lines()
                .find(|l| l.starts_with(&format!("t_bucket{{stage=\"x\",le=\"{le}\"}}")))
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_owned)
        };
        assert_eq!(line("0.00005").as_deref(), Some("1"));
        assert_eq!(line("0.0001").as_deref(), Some("2"));
        assert_eq!(line("0.0025").as_deref(), Some("2"));
        assert_eq!(line("0.005").as_deref(), Some("3"));
        assert_eq!(line("2.5").as_deref(), Some("3"));
        assert_eq!(line("+Inf").as_deref(), Some("4"));
        assert!(out.contains("t_sum{stage=\"x\"} 10.003101\n"), "{out}");
        assert!(out.contains("t_count{stage=\"x\"} 4\n"), "{out}");
        assert_eq!(h.count(), 4);
    }

    #[test]
    fn every_stage_is_exposed_once() {
        let stages = Stages::default();
        stages.audit.observe(Duration::from_millis(1));
        let text = stages.render();
        assert!(text.contains("passerelle_stage_seconds_count{stage=\"audit\"} 1\n"));
        for stage in STAGE_NAMES.into_iter().filter(|s| *s != "audit") {
            let label = format!("passerelle_stage_seconds_count{{stage=\"{stage}\"}} 0\n");
            assert_eq!(text.matches(&label).count(), 1, "{stage}: {text}");
        }
        assert_eq!(text.matches("# TYPE").count(), 1);
    }
}
