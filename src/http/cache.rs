//! The response cache (moka), the gzip encoding of its hits, and HTTP caching (`Cache-Control`,
//! `ETag`, 304).
//!
//! An entry is keyed by the operation text and name, the variables and the caller's identity as
//! far as answers depend on it (`Viewer::cache_identity`: partner, scopes, sharing). An entry
//! remembers the write generations, taken before execution, of the kinds of record the execution
//! read (recorded by the loaders, whatever the document's shape) and is dropped once a write
//! moved any of them (`invalidate`). Writes by other writers (another replica, the CLI, psql or
//! sqlite3) come from the feed of data changes ([`crate::storage::changes`]), read every
//! half `response_cache_recheck_ms` by [`ResponseCache::watch`]; answers are served from the
//! cache only while its latest reading started less than `response_cache_recheck_ms` ago, so
//! such a write shows within that, and at once while the feed cannot be read (nothing cached is
//! used then).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue};
use moka::future::Cache;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::domain::Viewer;
use crate::storage::changes::{ChangeFeed, Changed};
use crate::storage::reading::LatestReading;
use crate::storage::{EntityKind, Store};

/// Everything an answer may depend on besides the data ([`Viewer::cache_identity`]), as a short
/// stable string.
pub fn fingerprint(viewer: &Viewer) -> String {
    hex(&Sha256::digest(viewer.cache_identity().as_bytes())[..16])
}

/// Whether what this caller sees is what anyone sees: then shared caches may keep it.
pub fn is_public(viewer: &Viewer) -> bool {
    viewer.cache_identity() == Viewer::anonymous().cache_identity()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sorts object keys so that `{a,b}` and `{b,a}` make the same key.
fn canonical(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for k in keys {
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(k) {
                    canonical(v, out);
                }
                out.push(',');
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for v in items {
                canonical(v, out);
                out.push(',');
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

pub fn key(
    query: &str,
    operation_name: Option<&str>,
    variables: &serde_json::Value,
    fingerprint: &str,
) -> String {
    let mut vars = String::new();
    canonical(variables, &mut vars);
    let mut h = Sha256::new();
    for part in [
        query,
        operation_name.unwrap_or("\u{0}"),
        vars.as_str(),
        fingerprint,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex(&h.finalize())
}

/// The write generations an answer was computed at.
pub type Snapshot = Vec<(EntityKind, u64)>;

struct Entry {
    hit: Hit,
    snapshot: Snapshot,
}

/// A cached answer, serialized once when it was stored.
#[derive(Clone)]
pub struct Hit {
    /// The answer as sent, and its ETag: a hit is answered without serializing or hashing again.
    pub bytes: bytes::Bytes,
    pub etag: HeaderValue,
    /// The operation's name, as the audit log records it.
    pub operation: Option<String>,
    /// The partners whose records the answer holds, for the audit log of later hits.
    pub owners: BTreeSet<String>,
    /// The answer gzip-encoded, made once for all the hits that accept it.
    pub gzipped: Gzipped,
}

/// Answers smaller than this are sent as they are: gzip would save a few bytes at most.
const GZIP_FROM_BYTES: usize = 1024;

/// A cached answer's gzip encoding and its ETag, made at the first hit whose client accepts gzip
/// and kept with the entry, so a hit never compresses. Mobile clients always accept it, and a
/// page of the dashboard shrinks about tenfold (19 KB to 1.8 KB).
#[derive(Clone, Default)]
pub struct Gzipped(Arc<OnceLock<Option<(bytes::Bytes, HeaderValue)>>>);

impl Gzipped {
    /// `answer` (whose ETag is `etag`) gzip-encoded, with an ETag of its own (RFC 9110 8.8.3: a
    /// strong validator differs between encodings); `None` when the answer is too small to
    /// gain from it.
    pub fn of(&self, answer: &[u8], etag: &HeaderValue) -> Option<(bytes::Bytes, HeaderValue)> {
        self.0
            .get_or_init(|| {
                if answer.len() < GZIP_FROM_BYTES {
                    return None;
                }
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder.write_all(answer).ok()?;
                let gzipped = encoder.finish().ok()?;
                if gzipped.len() >= answer.len() {
                    return None;
                }
                let tag = etag.to_str().ok()?.trim_end_matches('"');
                let tag = HeaderValue::from_str(&format!("{tag}-gzip\"")).ok()?;
                Some((bytes::Bytes::from(gzipped), tag))
            })
            .clone()
    }
}

#[derive(Clone)]
pub struct ResponseCache {
    cache: Option<Cache<String, Arc<Entry>>>,
    store: Store,
    /// `None` when other writers' writes are not followed: the cache is off,
    /// `response_cache_recheck_ms = 0`, or the database is in memory (no other writer).
    feed: Option<Arc<LatestReading<()>>>,
}

impl ResponseCache {
    pub fn new(config: &Config, store: Store) -> Self {
        let cache = (config.response_cache_entries > 0).then(|| {
            Cache::builder()
                .max_capacity(config.response_cache_entries)
                .time_to_live(Duration::from_secs(config.response_cache_ttl_secs.max(1)))
                .build()
        });
        // An in-memory database has no other writer (and a connection of the feed's own would
        // open another, empty one).
        let feed = (cache.is_some() && config.response_cache_recheck_ms > 0 && !store.in_memory())
            .then(|| {
                Arc::new(LatestReading::new(Duration::from_millis(
                    config.response_cache_recheck_ms,
                )))
            });
        ResponseCache { cache, store, feed }
    }

    /// Reads the feed of data changes once, then every half `response_cache_recheck_ms` on a
    /// task, on a connection of its own, and drops the answers holding the kinds it names, until
    /// this cache is dropped; abort the task to stop sooner. `None` when other writers' writes
    /// are not followed. Nothing cached is used until a reading succeeds.
    pub async fn watch(&self) -> Option<tokio::task::JoinHandle<()>> {
        let reading: Weak<LatestReading<()>> = Arc::downgrade(self.feed.as_ref()?);
        let every = self.feed.as_ref()?.recheck() / 2;
        let store = self.store.clone();
        let mut feed = read_feed(&store, &reading, ChangeFeed::new(store.clone())).await?;
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                match read_feed(&store, &reading, feed).await {
                    Some(f) => feed = f,
                    None => return,
                }
            }
        }))
    }

    /// Whether a reading of the feed that started at `since` or later has been applied: every
    /// write committed before `since` has then reached this cache. `false` when the feed is
    /// off.
    pub fn feed_read_since(&self, since: Instant) -> bool {
        self.feed.as_ref().is_some_and(|f| f.read_since(since))
    }

    /// The generation of every kind. Take before executing, so that a write during execution
    /// makes the answer stale; keep what the execution read with [`only`].
    pub fn snapshot(&self) -> Snapshot {
        let log = self.store.write_log();
        EntityKind::ALL
            .iter()
            .map(|k| (*k, log.generation(*k)))
            .collect()
    }

    fn fresh(&self, snapshot: &Snapshot) -> bool {
        let log = self.store.write_log();
        snapshot.iter().all(|(k, g)| log.generation(*k) == *g)
    }

    /// A fresh answer and the partners whose records it holds.
    pub async fn get(&self, key: &str) -> Option<Hit> {
        let cache = self.cache.as_ref()?;
        // Only while what others wrote is known up to a recent reading of the feed.
        if let Some(feed) = &self.feed {
            feed.relied_on(Instant::now())?;
        }
        let entry = cache.get(key).await?;
        if self.fresh(&entry.snapshot) {
            Some(entry.hit.clone())
        } else {
            cache.invalidate(key).await;
            None
        }
    }

    pub async fn put(
        &self,
        key: String,
        bytes: bytes::Bytes,
        operation: Option<String>,
        owners: BTreeSet<String>,
        snapshot: Snapshot,
    ) {
        if let Some(cache) = &self.cache {
            if self.fresh(&snapshot) {
                let entry = Entry {
                    hit: Hit {
                        etag: etag(&bytes),
                        bytes,
                        operation,
                        owners,
                        gzipped: Gzipped::default(),
                    },
                    snapshot,
                };
                cache.insert(key, Arc::new(entry)).await;
            }
        }
    }

    /// Drops every answer that holds records of these kinds (call after writing them).
    pub fn invalidate(&self, kinds: impl IntoIterator<Item = EntityKind>) {
        self.store.write_log().written(kinds);
    }
}

/// Reads `feed` once on the blocking pool, drops what it names and records the reading; the feed
/// back, or `None` once the cache is gone.
async fn read_feed(
    store: &Store,
    reading: &Weak<LatestReading<()>>,
    mut feed: ChangeFeed,
) -> Option<ChangeFeed> {
    let reading = reading.upgrade()?;
    let started = Instant::now();
    let (feed, changed) = tokio::task::spawn_blocking(move || {
        let changed = feed.poll();
        (feed, changed)
    })
    .await
    .ok()?;
    match changed {
        Ok(Changed::Kinds(kinds)) => store.write_log().written(kinds),
        Ok(Changed::Everything) => store.write_log().written(EntityKind::ALL),
        Err(e) => {
            tracing::debug!(error = ?e, "could not read the data changes");
            return Some(feed);
        }
    }
    reading.record(started, ());
    Some(feed)
}

/// `snapshot`'s generations of the kinds in `read`.
pub fn only(snapshot: Snapshot, read: &BTreeSet<EntityKind>) -> Snapshot {
    snapshot
        .into_iter()
        .filter(|(k, _)| read.contains(k))
        .collect()
}

/// A strong validator for a response body.
pub fn etag(body: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(body);
    HeaderValue::from_str(&format!("\"{}\"", hex(&digest[..16])))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// Whether `If-None-Match` names this ETag (weak comparison, as RFC 9110 asks for GET).
pub fn not_modified(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let Ok(ours) = etag.to_str() else {
        return false;
    };
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.trim_start_matches("W/") == ours)
}

/// `Cache-Control` for a successful GET: public data is cacheable by anyone; anything that
/// depends on who asks is `private`.
pub fn cache_control(viewer: &Viewer, max_age_secs: u64) -> HeaderValue {
    let scope = if is_public(viewer) {
        "public"
    } else {
        "private"
    };
    HeaderValue::from_str(&format!("{scope}, max-age={max_age_secs}"))
        .unwrap_or_else(|_| HeaderValue::from_static("no-store"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn viewer(partner: Option<&str>, shared: &[&str], scopes: &[&str]) -> Viewer {
        Viewer {
            partner: partner.map(str::to_owned),
            shared_by: shared.iter().map(|s| s.to_string()).collect(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            client_id: None,
        }
    }

    #[test]
    fn fingerprints_follow_visibility_scopes_and_partner() {
        let a = viewer(Some("caravan"), &[], &["read"]);
        let b = viewer(Some("anvita"), &[], &["read"]);
        assert_ne!(fingerprint(&a), fingerprint(&b));
        let shared = viewer(Some("caravan"), &["anvita"], &["read"]);
        assert_ne!(fingerprint(&a), fingerprint(&shared));
        let more = viewer(Some("caravan"), &[], &["read", "read:sensitive"]);
        assert_ne!(fingerprint(&a), fingerprint(&more));
        // Without `read` both see public rows only, but `viewer` names their partner.
        let research_a = viewer(Some("anvita"), &[], &["research"]);
        let research_b = viewer(Some("department"), &[], &["research"]);
        assert_ne!(fingerprint(&research_a), fingerprint(&research_b));
        let mut same = a.clone();
        same.client_id = Some("another-app".into());
        assert_eq!(fingerprint(&a), fingerprint(&same));
        assert_eq!(
            fingerprint(&Viewer::anonymous()),
            fingerprint(&Viewer::anonymous())
        );
        assert!(is_public(&Viewer::anonymous()) && !is_public(&a));
        // A partner's token without scopes still names its partner in `viewer`.
        assert!(!is_public(&viewer(Some("caravan"), &[], &[])));
    }

    #[test]
    fn keys_ignore_variable_order_but_not_values() {
        let k = |v: serde_json::Value| key("{ a }", None, &v, "f");
        assert_eq!(
            k(serde_json::json!({"a":1,"b":{"c":2,"d":3}})),
            k(serde_json::json!({"b":{"d":3,"c":2},"a":1}))
        );
        assert_ne!(k(serde_json::json!({"a":1})), k(serde_json::json!({"a":2})));
        assert_ne!(
            key("{ a }", None, &serde_json::json!({}), "f"),
            key("{ a }", None, &serde_json::json!({}), "g")
        );
    }

    #[test]
    fn gzipped_answers_decode_to_the_answer_under_their_own_etag() {
        use std::io::Read as _;
        let answer = format!("{{\"data\":[{}]}}", "{\"a\":1},".repeat(300));
        let tag = etag(answer.as_bytes());
        let gzipped = Gzipped::default();
        let (body, gz_tag) = gzipped.of(answer.as_bytes(), &tag).unwrap();
        assert!(body.len() < answer.len() / 4, "{}", body.len());
        let mut decoded = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut decoded)
            .unwrap();
        assert_eq!(decoded, answer);
        assert_ne!(gz_tag, tag);
        assert!(gz_tag.to_str().unwrap().ends_with("-gzip\""));
        // Made once: a second hit gets the same bytes.
        let (again, _) = gzipped.of(answer.as_bytes(), &tag).unwrap();
        assert_eq!(again.as_ptr(), body.as_ptr());
        // Small answers are sent as they are.
        let small = b"{\"data\":{\"__typename\":\"Query\"}}";
        assert!(Gzipped::default().of(small, &etag(small)).is_none());
    }

    #[test]
    fn if_none_match_matches_weak_and_lists() {
        let tag = etag(b"body");
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", W/{}", tag.to_str().unwrap())).unwrap(),
        );
        assert!(not_modified(&h, &tag));
        assert!(!not_modified(&h, &etag(b"other")));
    }
}
