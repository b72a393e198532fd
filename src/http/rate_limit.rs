//! Stage 0: per-caller rate limits, one token bucket per caller. A caller is its OAuth2 client
//! (`rate_limit.clients`), else its partner (`rate_limit.partners`), both falling back to
//! `rate_limit.default`; anonymous callers share one `rate_limit.anonymous` bucket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::config::{Bucket, RateLimitConfig, Tokens};
use crate::domain::Viewer;
use crate::error::{Error, Result};

#[derive(Clone)]
pub struct RateLimiter {
    config: Arc<RateLimitConfig>,
    buckets: Arc<Mutex<HashMap<String, Tokens>>>,
}

impl RateLimiter {
    pub fn new(config: &RateLimitConfig) -> Self {
        RateLimiter {
            config: Arc::new(config.clone()),
            buckets: Arc::default(),
        }
    }

    fn bucket_for(&self, viewer: &Viewer) -> (String, Bucket) {
        let c = &self.config;
        if let Some(client) = &viewer.client_id {
            if let Some(b) = c.clients.get(client) {
                return (format!("client:{client}"), *b);
            }
        }
        if let Some(partner) = &viewer.partner {
            let b = c.partners.get(partner).copied().unwrap_or(c.default);
            return (format!("partner:{partner}"), b);
        }
        match &viewer.client_id {
            Some(client) => (format!("client:{client}"), c.default),
            None => ("anonymous".into(), c.anonymous),
        }
    }

    /// Takes one token from the caller's bucket, or says how long to wait.
    pub fn check(&self, viewer: &Viewer) -> Result<()> {
        if !self.config.enabled {
            return Ok(());
        }
        let (key, bucket) = self.bucket_for(viewer);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        buckets
            .entry(key)
            .or_insert_with(|| Tokens::full(bucket))
            .take(bucket)
            .map_err(|retry_after_secs| Error::RateLimited { retry_after_secs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partners_have_their_own_buckets() {
        let mut config = RateLimitConfig::default();
        config.partners.insert(
            "caravan".into(),
            Bucket {
                per_second: 0.5,
                burst: 2,
            },
        );
        let limiter = RateLimiter::new(&config);
        let caravan = Viewer {
            partner: Some("caravan".into()),
            ..Viewer::default()
        };
        assert!(limiter.check(&caravan).is_ok());
        assert!(limiter.check(&caravan).is_ok());
        let Err(Error::RateLimited { retry_after_secs }) = limiter.check(&caravan) else {
            panic!("third request passed")
        };
        assert_eq!(retry_after_secs, 2);
        // Another partner and anonymous callers are not affected.
        let anvita = Viewer {
            partner: Some("anvita".into()),
            ..Viewer::default()
        };
        assert!(limiter.check(&anvita).is_ok());
        assert!(limiter.check(&Viewer::anonymous()).is_ok());
    }
}
