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

/// At most one log line per `interval`, for events that come by the thousand under load (shed
/// requests, accept errors): each line says how many happened since the last one.
pub struct Sampled {
    interval: Duration,
    epoch: std::time::Instant,
    /// When a line was last written, in milliseconds since `epoch` (+1, so 0 is never).
    last_ms: AtomicU64,
    /// Events since the last line.
    since: AtomicU64,
}

impl Sampled {
    pub fn new(interval: Duration) -> Self {
        Sampled {
            interval,
            epoch: std::time::Instant::now(),
            last_ms: AtomicU64::new(0),
            since: AtomicU64::new(0),
        }
    }

    /// Counts one event; `Some(n)` when this one should be logged, `n` counting it and those
    /// left unlogged before it.
    pub fn tick(&self) -> Option<u64> {
        self.since.fetch_add(1, Ordering::Relaxed);
        let now = u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = self.last_ms.load(Ordering::Relaxed);
        let interval = u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < interval {
            return None;
        }
        self.last_ms
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
            .ok()
            .map(|_| self.since.swap(0, Ordering::AcqRel))
    }
}

/// Why a request was refused before being handled (`passerelle_requests_refused_total`).
#[derive(Debug, Clone, Copy)]
pub enum Refusal {
    /// Its body did not arrive in time (408 `BODY_TIMEOUT`).
    BodyTimeout,
    /// The database was known to be down (503 `SERVICE_UNAVAILABLE`).
    DatabaseDown,
}

/// Counters of what hostile or unlucky clients cost: refused requests and connections closed
/// for them, for `/metrics` (issue 37).
pub struct Resilience {
    refused: [AtomicU64; 2],
    /// Every 503 answer, whatever its cause (shed, timed out, database down).
    pub unavailable: AtomicU64,
    pub connections_open: AtomicU64,
    pub connections_accepted: AtomicU64,
    /// Closed after `idle_timeout_ms` without a request or traffic.
    pub closed_idle: AtomicU64,
    /// Closed without a request in progress to make room (connection cap, or out of files).
    pub closed_pressure: AtomicU64,
    /// Closed because the headers did not arrive within `header_read_timeout_ms`.
    pub closed_header_timeout: AtomicU64,
    /// `accept` failures other than a client's reset (out of file descriptors, mostly).
    pub accept_errors: AtomicU64,
    /// Times a connection had to wait for `max_connections`.
    pub at_connection_cap: AtomicU64,
    /// One log line per interval for 503 answers.
    pub unavailable_log: Sampled,
    /// One log line per interval for accept failures.
    pub accept_log: Sampled,
}

impl Default for Resilience {
    fn default() -> Self {
        let every = Duration::from_secs(10);
        Resilience {
            refused: Default::default(),
            unavailable: AtomicU64::default(),
            connections_open: AtomicU64::default(),
            connections_accepted: AtomicU64::default(),
            closed_idle: AtomicU64::default(),
            closed_pressure: AtomicU64::default(),
            closed_header_timeout: AtomicU64::default(),
            accept_errors: AtomicU64::default(),
            at_connection_cap: AtomicU64::default(),
            unavailable_log: Sampled::new(every),
            accept_log: Sampled::new(every),
        }
    }
}

impl Resilience {
    pub fn refused(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text of these counters; `shed` is admission control's own count.
    pub fn render(&self, shed: u64) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in lines {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        metric(
            "passerelle_requests_refused_total",
            "counter",
            "Requests refused before being handled, by reason.",
            &[
                ("{reason=\"overloaded\"}", shed),
                ("{reason=\"body_timeout\"}", get(&self.refused[0])),
                ("{reason=\"database_down\"}", get(&self.refused[1])),
            ],
        );
        metric(
            "passerelle_responses_unavailable_total",
            "counter",
            "Answers with status 503, whatever the cause.",
            &[("", get(&self.unavailable))],
        );
        metric(
            "passerelle_connections_open",
            "gauge",
            "Client connections open now.",
            &[("", get(&self.connections_open))],
        );
        metric(
            "passerelle_connections_accepted_total",
            "counter",
            "Client connections accepted.",
            &[("", get(&self.connections_accepted))],
        );
        metric(
            "passerelle_connections_closed_total",
            "counter",
            "Client connections closed by the server, by reason.",
            &[
                ("{reason=\"idle\"}", get(&self.closed_idle)),
                ("{reason=\"pressure\"}", get(&self.closed_pressure)),
                (
                    "{reason=\"header_timeout\"}",
                    get(&self.closed_header_timeout),
                ),
            ],
        );
        metric(
            "passerelle_accept_errors_total",
            "counter",
            "Failures to accept a connection (out of file descriptors, mostly).",
            &[("", get(&self.accept_errors))],
        );
        metric(
            "passerelle_connection_cap_waits_total",
            "counter",
            "Times a new connection waited because max_connections were open.",
            &[("", get(&self.at_connection_cap))],
        );
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

    #[test]
    fn sampled_logs_once_per_interval_with_the_count() {
        let s = Sampled::new(Duration::from_secs(3600));
        assert_eq!(s.tick(), Some(1));
        assert_eq!((0..99).filter_map(|_| s.tick()).count(), 0);
        let s = Sampled::new(Duration::ZERO);
        assert_eq!(s.tick(), Some(1));
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(s.tick(), Some(1));
    }

    #[test]
    fn refusals_are_counted_by_reason() {
        let r = Resilience::default();
        r.refused(Refusal::BodyTimeout);
        r.refused(Refusal::BodyTimeout);
        let text = r.render(5);
        assert!(text.contains("passerelle_requests_refused_total{reason=\"overloaded\"} 5\n"));
        assert!(text.contains("passerelle_requests_refused_total{reason=\"body_timeout\"} 2\n"));
        assert!(text.contains("passerelle_requests_refused_total{reason=\"database_down\"} 0\n"));
        assert_eq!(text.matches("# TYPE").count(), 7);
    }
}
