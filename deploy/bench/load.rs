//! A small open-loop HTTP load generator for `deploy/bench/run.sh` (`cargo bench --bench load`).
//!
//! At a fixed rate it sends requests on schedule whatever the answers' latency, and measures
//! each latency from the scheduled start (so a stalled server shows in the percentiles instead of
//! slowing the load down: no coordinated omission). At `--rate 0` it saturates the server with
//! `--concurrency` closed loops. Each request can carry its own bearer token, taken in turn from
//! `--tokens-file`. It prints one JSON line of results; RSS is sampled from /proc while it runs,
//! and the share of the machine's CPU time the host stole (`steal_pct`) is read from /proc/stat.
//! `--timeline FILE` also writes, per 100 ms of the run (by each request's start), the requests
//! started, how many failed and their worst latency: a stall shows there as one slow bucket.
//! `--metrics URL` reads the server's stage histograms (`passerelle_stage_seconds`) before and
//! after the measured period and reports, per stage, how many times it ran, its mean and the
//! bucket bound its 99th percentile falls under: which stage grew when the latency did.
//!
//! cargo bench --bench load -- --url http://127.0.0.1:8080/graphql --body '{"query":"{__typename}"}' --rate 1000

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    url: String,
    body: String,
    method: String,
    headers: Vec<(String, String)>,
    tokens: Vec<String>,
    rate: u64,
    concurrency: usize,
    duration: Duration,
    warmup: Duration,
    pid: Option<u32>,
    label: String,
    timeline: Option<String>,
    metrics: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        url: String::new(),
        body: String::new(),
        method: "POST".into(),
        headers: Vec::new(),
        tokens: Vec::new(),
        rate: 0,
        concurrency: 32,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        pid: None,
        label: "load".into(),
        timeline: None,
        metrics: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = value(),
            "--body" => a.body = value(),
            "--body-file" => a.body = std::fs::read_to_string(value()).unwrap(),
            "--method" => a.method = value(),
            "--header" => {
                let h = value();
                let (k, v) = h.split_once(':').expect("--header NAME:VALUE");
                a.headers.push((k.trim().into(), v.trim().into()));
            }
            "--tokens-file" => {
                a.tokens = std::fs::read_to_string(value())
                    .unwrap()
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect()
            }
            "--rate" => a.rate = value().parse().unwrap(),
            "--concurrency" => a.concurrency = value().parse().unwrap(),
            "--duration" => a.duration = Duration::from_secs_f64(value().parse().unwrap()),
            "--warmup" => a.warmup = Duration::from_secs_f64(value().parse().unwrap()),
            "--pid" => a.pid = Some(value().parse().unwrap()),
            "--label" => a.label = value(),
            "--timeline" => a.timeline = Some(value()),
            "--metrics" => a.metrics = Some(value()),
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!a.url.is_empty(), "--url is required");
    a
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// (steal, all) jiffies of the whole machine, from the first line of /proc/stat: the time the
/// hypervisor gave this machine's virtual CPUs to someone else, and all the time counted.
fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    Some((*fields.get(7)?, fields.iter().sum()))
}

/// Per stage: (bucket bound in seconds, cumulative count) in order, and the sum in seconds.
type StageHistograms = std::collections::BTreeMap<String, (Vec<(f64, u64)>, f64)>;

/// The `passerelle_stage_seconds` histograms of a Prometheus text exposition.
async fn stage_histograms(client: &reqwest::Client, url: &str) -> Option<StageHistograms> {
    let text = client.get(url).send().await.ok()?.text().await.ok()?;
    let mut stages = StageHistograms::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("passerelle_stage_seconds_") else {
            continue;
        };
        let (series, value) = rest.rsplit_once(' ')?;
        let label = |name: &str| {
            let start = series.find(&format!("{name}=\""))? + name.len() + 2;
            let end = series[start..].find('"')? + start;
            Some(series[start..end].to_owned())
        };
        let entry = stages.entry(label("stage")?).or_default();
        if series.starts_with("bucket") {
            let le = label("le")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            entry.0.push((le, value.parse().ok()?));
        } else if series.starts_with("sum") {
            entry.1 = value.parse().ok()?;
        }
    }
    Some(stages)
}

/// Per stage, what happened between two readings: count, mean and the bucket bound under
/// which its 99th percentile falls (in ms; null when above the last bound).
fn stage_deltas(before: &StageHistograms, after: &StageHistograms) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (stage, (buckets, sum)) in after {
        let (old_buckets, old_sum) = before.get(stage).cloned().unwrap_or_default();
        let old = |i: usize| old_buckets.get(i).map_or(0, |b| b.1);
        let deltas: Vec<(f64, u64)> = buckets
            .iter()
            .enumerate()
            .map(|(i, (le, n))| (*le, n - old(i)))
            .collect();
        let count = deltas.last().map_or(0, |b| b.1);
        let p99 = deltas
            .iter()
            .find(|(_, n)| *n as f64 >= 0.99 * count as f64)
            .map(|(le, _)| *le * 1000.0)
            .filter(|ms| ms.is_finite());
        let mean = if count > 0 {
            (sum - old_sum) * 1000.0 / count as f64
        } else {
            0.0
        };
        out.insert(
            stage.clone(),
            serde_json::json!({ "count": count, "mean_ms": mean, "p99_under_ms": p99 }),
        );
    }
    serde_json::Value::Object(out)
}

struct Shared {
    client: reqwest::Client,
    args: Args,
    /// Parsed once: parsing a long GET URL (a persisted query's variables and extensions) for
    /// every request cost the generator, on the server's cores, a few µs each.
    url: reqwest::Url,
    /// Shared, not copied, by every request.
    body: bytes::Bytes,
}

async fn one(shared: &Shared, n: usize) -> bool {
    let a = &shared.args;
    let mut req = match a.method.as_str() {
        "GET" => shared.client.get(shared.url.clone()),
        _ => shared
            .client
            .post(shared.url.clone())
            .header("content-type", "application/json")
            .body(shared.body.clone()),
    };
    for (k, v) in &a.headers {
        req = req.header(k, v);
    }
    if !a.tokens.is_empty() {
        req = req.bearer_auth(&a.tokens[n % a.tokens.len()]);
    }
    match req.send().await {
        Ok(res) => {
            let ok = res.status().is_success();
            let gzipped = res
                .headers()
                .get("content-encoding")
                .is_some_and(|e| e == "gzip");
            let Ok(body) = res.bytes().await else {
                return false;
            };
            // A gzip-encoded answer is decoded and checked one time in 64: decoding each one
            // cost the load generator, which shares the cores with the server, about as much
            // as the server spent answering it. The server compresses an answer once for all
            // its hits, so the one checked stands for the others.
            let body = if gzipped {
                if !n.is_multiple_of(64) {
                    return ok && !body.is_empty();
                }
                let mut decoded = Vec::new();
                let read = std::io::Read::read_to_end(
                    &mut flate2::read::GzDecoder::new(&body[..]),
                    &mut decoded,
                );
                if read.is_err() {
                    return false;
                }
                bytes::Bytes::from(decoded)
            } else {
                body
            };
            // memmem, not a byte-by-byte scan: on a 12 KB answer the scan cost the load
            // generator about 50 µs per response.
            ok && memchr::memmem::find(&body, b"\"errors\":").is_none()
        }
        Err(_) => false,
    }
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .unwrap();
    let label = args.label.clone();
    let url = reqwest::Url::parse(&args.url).expect("--url is not a URL");
    let body = bytes::Bytes::from(args.body.clone());
    let shared = Arc::new(Shared {
        client,
        args,
        url,
        body,
    });
    let (latencies, errors, elapsed, rss, steal_pct, stages) = rt.block_on(async move {
        let rss_peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
        if let Some(pid) = shared.args.pid {
            let peak = rss_peak.clone();
            tokio::spawn(async move {
                loop {
                    if let Some(r) = rss_kib(pid) {
                        peak.fetch_max(r, std::sync::atomic::Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
        // Warm-up: connections, caches, the server's pools.
        let warm_until = Instant::now() + shared.args.warmup;
        let mut n = 0;
        while Instant::now() < warm_until {
            let _ = one(&shared, n).await;
            n += 1;
        }
        let metrics = shared.args.metrics.clone();
        let stages_before = match &metrics {
            Some(url) => stage_histograms(&shared.client, url).await,
            None => None,
        };
        let start = Instant::now();
        let jiffies_at_start = cpu_jiffies();
        let end = start + shared.args.duration;
        let mut handles = Vec::new();
        if shared.args.rate > 0 {
            let interval = Duration::from_secs_f64(1.0 / shared.args.rate as f64);
            let total = (shared.args.duration.as_secs_f64() * shared.args.rate as f64) as usize;
            for i in 0..total {
                let scheduled = start + interval * i as u32;
                tokio::time::sleep_until(scheduled.into()).await;
                let s = shared.clone();
                handles.push(tokio::spawn(async move {
                    let ok = one(&s, i).await;
                    vec![(scheduled - start, scheduled.elapsed(), ok)]
                }));
            }
        } else {
            for w in 0..shared.args.concurrency {
                let s = shared.clone();
                handles.push(tokio::spawn(async move {
                    let mut results = Vec::new();
                    let mut i = w;
                    while Instant::now() < end {
                        let t = Instant::now();
                        let ok = one(&s, i).await;
                        results.push((t - start, t.elapsed(), ok));
                        i += s.args.concurrency;
                    }
                    results
                }));
            }
        }
        let mut latencies = Vec::new();
        let mut errors = 0usize;
        // Per 100 ms bucket of start times: requests, errors, worst latency (µs).
        let mut buckets: Vec<(usize, usize, u64)> = Vec::new();
        for h in handles {
            for (at, lat, ok) in h.await.unwrap() {
                let lat = lat.as_micros() as u64;
                latencies.push(lat);
                let b = (at.as_millis() / 100) as usize;
                if buckets.len() <= b {
                    buckets.resize(b + 1, (0, 0, 0));
                }
                buckets[b].0 += 1;
                buckets[b].2 = buckets[b].2.max(lat);
                if !ok {
                    errors += 1;
                    buckets[b].1 += 1;
                }
            }
        }
        let elapsed = start.elapsed();
        let stages = match (&metrics, &stages_before) {
            (Some(url), Some(before)) => stage_histograms(&shared.client, url)
                .await
                .map(|after| stage_deltas(before, &after)),
            _ => None,
        };
        // The share of the machine's CPU time taken by the host while this run measured: on a
        // shared host it reaches tens of percent under load, and then latencies measure the host.
        let steal_pct = match (jiffies_at_start, cpu_jiffies()) {
            (Some((s0, a0)), Some((s1, a1))) if a1 > a0 => {
                Some(100.0 * (s1.saturating_sub(s0)) as f64 / (a1 - a0) as f64)
            }
            _ => None,
        };
        if let Some(path) = &shared.args.timeline {
            let mut csv = String::from("at_s,requests,errors,max_ms\n");
            for (i, (n, e, max)) in buckets.iter().enumerate() {
                csv += &format!(
                    "{:.1},{n},{e},{:.1}\n",
                    i as f64 / 10.0,
                    *max as f64 / 1000.0
                );
            }
            std::fs::write(path, csv).unwrap();
        }
        (
            latencies,
            errors,
            elapsed,
            rss_peak.load(std::sync::atomic::Ordering::Relaxed),
            steal_pct,
            stages,
        )
    });
    let mut sorted = latencies;
    sorted.sort_unstable();
    let pct = |p: f64| -> f64 {
        if sorted.is_empty() {
            return 0.0;
        }
        let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[i] as f64 / 1000.0
    };
    let json = serde_json::json!({
        "label": label,
        "requests": sorted.len(),
        "errors": errors,
        "seconds": elapsed.as_secs_f64(),
        "rps": sorted.len() as f64 / elapsed.as_secs_f64(),
        "p50_ms": pct(50.0),
        "p90_ms": pct(90.0),
        "p99_ms": pct(99.0),
        "max_ms": pct(100.0),
        "rss_peak_kib": rss,
        "steal_pct": steal_pct,
    });
    let mut json = json;
    if let Some(stages) = stages {
        json["stages"] = stages;
    }
    println!("{json}");
}
