//! Failed client authentications, limited per client id. Each client id claimed at `/oauth/*`
//! has a token bucket (`rate_limit.client_auth_failures`): an attempt takes a token before its
//! secret is checked and a success gives it back, so only failures use the bucket up. Once it is
//! empty, attempts with that client id are answered 429 at once, without a database read or a
//! secret check, until the bucket refills.
//!
//! Known and unknown client ids are treated alike, so the lockout tells nobody which ids exist.
//! A flood spread over many made-up ids is not slowed by this (each id has a fresh bucket); it
//! is bounded by the one secret check per core of [`super::clients::SecretChecks`]. The buckets
//! live in each replica's memory, at most [`TRACKED_IDS`] of them.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::config::{Bucket, RateLimitConfig, Tokens};

/// Client ids whose buckets are remembered; the least recently used are forgotten first.
pub const TRACKED_IDS: u64 = 10_000;

#[derive(Clone)]
pub struct ClientLockout {
    /// `None` when rate limits are off.
    bucket: Option<Bucket>,
    buckets: moka::future::Cache<String, Arc<Mutex<Tokens>>>,
}

/// An attempt allowed to go on: its token is used up unless given back with
/// [`ClientLockout::give_back`].
pub struct Attempt {
    tokens: Option<Arc<Mutex<Tokens>>>,
}

impl ClientLockout {
    pub fn new(config: &RateLimitConfig) -> Self {
        let bucket = config.client_auth_failures;
        // A bucket idle for as long as it takes to refill is as good as a new one.
        let refill_secs = f64::from(bucket.burst) / bucket.per_second.max(f64::MIN_POSITIVE);
        let idle = Duration::from_secs_f64(refill_secs.clamp(1.0, 86_400.0));
        ClientLockout {
            bucket: config.enabled.then_some(bucket),
            buckets: moka::future::Cache::builder()
                .max_capacity(TRACKED_IDS)
                .time_to_idle(idle)
                .build(),
        }
    }

    /// Takes a token from `client_id`'s bucket, or says how many seconds until one is back.
    pub async fn attempt(&self, client_id: &str) -> Result<Attempt, u64> {
        let Some(bucket) = self.bucket else {
            return Ok(Attempt { tokens: None });
        };
        let tokens = self
            .buckets
            .get_with_by_ref(client_id, async {
                Arc::new(Mutex::new(Tokens::full(bucket)))
            })
            .await;
        tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(bucket)?;
        Ok(Attempt {
            tokens: Some(tokens),
        })
    }

    /// The attempt authenticated its client, or failed on our side (the database, say): its
    /// token goes back.
    pub fn give_back(&self, attempt: Attempt) {
        if let (Some(bucket), Some(tokens)) = (self.bucket, attempt.tokens) {
            tokens
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .put_back(bucket);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lockout(per_second: f64, burst: u32) -> ClientLockout {
        ClientLockout::new(&RateLimitConfig {
            client_auth_failures: Bucket { per_second, burst },
            ..RateLimitConfig::default()
        })
    }

    #[tokio::test]
    async fn failures_use_the_bucket_up_and_successes_do_not() {
        let l = lockout(0.01, 3);
        for _ in 0..10 {
            let a = l.attempt("pc_good").await.unwrap();
            l.give_back(a);
        }
        for _ in 0..3 {
            l.attempt("pc_target").await.unwrap();
        }
        // One token back takes 100 s at 0.01 a second (less the moments since the bucket began).
        let wait = l.attempt("pc_target").await.err().unwrap();
        assert!((95..=100).contains(&wait), "{wait}");
        // Other ids keep their own buckets.
        assert!(l.attempt("pc_good").await.is_ok());
    }

    #[tokio::test]
    async fn a_bucket_refills() {
        let l = lockout(1_000.0, 1);
        l.attempt("pc_x").await.unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(l.attempt("pc_x").await.is_ok());
    }

    #[tokio::test]
    async fn nothing_is_limited_when_rate_limits_are_off() {
        let l = ClientLockout::new(&RateLimitConfig {
            enabled: false,
            client_auth_failures: Bucket {
                per_second: 0.01,
                burst: 1,
            },
            ..RateLimitConfig::default()
        });
        for _ in 0..5 {
            assert!(l.attempt("pc_x").await.is_ok());
        }
    }
}
