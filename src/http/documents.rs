//! Parsed documents, kept by their text: a client sends the same few documents again and again
//! (a dashboard's, a field app's), and parsing one and walking it for the checks of
//! [`limits::check`] cost more than the rest of a small request. What is kept depends on the
//! text, the operation name and the configured limits only, never on the caller or the data:
//! each request still has its own checks against its viewer (introspection, GET for queries
//! only) and its own execution. Documents that fail a check are not kept, so a refused document
//! is parsed (after its tokens are counted) every time it is sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use moka::future::Cache;

use super::limits::{self, Checked};
use crate::config::Config;
use crate::error::Result;

/// The parsed tree of a document takes several times its text; each entry is weighed at this
/// many bytes per byte of text.
const TREE_BYTES_PER_TEXT_BYTE: u32 = 16;

/// A document's text and the operation name sent with it.
type Key = (String, Option<String>);

/// Held once, in the shared [`crate::app::AppState`].
pub struct Documents {
    cache: Option<Cache<Key, Arc<Checked>>>,
    misses: AtomicU64,
}

impl Documents {
    pub fn new(config: &Config) -> Self {
        let cache = (config.document_cache_bytes > 0).then(|| {
            Cache::builder()
                .max_capacity(config.document_cache_bytes)
                .weigher(|(text, _): &Key, _: &Arc<Checked>| {
                    u32::try_from(text.len())
                        .unwrap_or(u32::MAX)
                        .saturating_mul(TREE_BYTES_PER_TEXT_BYTE)
                })
                .build()
        });
        Documents {
            cache,
            misses: AtomicU64::new(0),
        }
    }

    /// `text` parsed and checked, from the cache when it was seen before with this operation
    /// name.
    pub async fn check(
        &self,
        config: &Config,
        text: &str,
        operation_name: Option<&str>,
    ) -> Result<Arc<Checked>> {
        let Some(cache) = &self.cache else {
            return self.parse(config, text, operation_name);
        };
        let key = (text.to_owned(), operation_name.map(str::to_owned));
        if let Some(hit) = cache.get(&key).await {
            return Ok(hit);
        }
        let checked = self.parse(config, text, operation_name)?;
        cache.insert(key, checked.clone()).await;
        Ok(checked)
    }

    fn parse(
        &self,
        config: &Config,
        text: &str,
        operation_name: Option<&str>,
    ) -> Result<Arc<Checked>> {
        self.misses.fetch_add(1, Ordering::Relaxed);
        limits::check(config, text, operation_name).map(Arc::new)
    }

    /// Documents checked since the start rather than taken from the cache, refused ones
    /// included.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}
