//! Redis for checks that must not wait on it (the sign-in lockout, the rate limits): each
//! round trip is bounded in time, and after a failure Redis is left alone for a while; the
//! caller's own counts decide meanwhile, so a Redis outage never means no limit and never
//! makes a request wait.

use bb8_redis::RedisConnectionManager;
use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// The most time one round trip may take before the caller decides without Redis.
pub const TIMEOUT: Duration = Duration::from_millis(250);
/// After a failure, how long Redis is left alone.
pub const BACKOFF: Duration = Duration::from_secs(5);

/// A Redis whose round trips are bounded, and rested after a failure.
pub struct BoundedRedis {
    pool: bb8::Pool<RedisConnectionManager>,
    prefix: String,
    /// Until when Redis is left alone after a failure.
    resting: Mutex<Option<Instant>>,
    /// Who uses it, for the log.
    user: &'static str,
    /// The counter of its failures.
    failures: &'static str,
}

impl std::fmt::Debug for BoundedRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedRedis")
            .field("prefix", &self.prefix)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl BoundedRedis {
    /// The Redis at `url` (up to `connections` of them), for keys under `prefix`; `user`
    /// names who uses it in the log, `failures` the counter of its failures.
    pub async fn connect(
        url: &str,
        prefix: &str,
        connections: u32,
        (user, failures): (&'static str, &'static str),
    ) -> anyhow::Result<Self> {
        let pool = bb8::Pool::builder()
            .max_size(connections)
            .connection_timeout(TIMEOUT)
            .build(RedisConnectionManager::new(url)?)
            .await?;
        Ok(Self {
            pool,
            prefix: prefix.to_owned(),
            resting: Mutex::new(None),
            user,
            failures,
        })
    }

    /// The full key of `suffix`.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// Runs `pipe` within [`TIMEOUT`], unless Redis is resting after a failure; None when it
    /// cannot answer now (a failure rests it for [`BACKOFF`]).
    pub async fn run<T: redis::FromRedisValue>(&self, pipe: redis::Pipeline) -> Option<T> {
        {
            let resting = self.resting.lock().unwrap_or_else(|p| p.into_inner());
            if resting.is_some_and(|until| Instant::now() < until) {
                return None;
            }
        }
        let attempt = async {
            let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
            pipe.query_async::<T>(&mut *conn)
                .await
                .map_err(|e| e.to_string())
        };
        let outcome = tokio::time::timeout(TIMEOUT, attempt)
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
        match outcome {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(error = %e, rest = ?BACKOFF, user = self.user,
                    "Redis unreachable: each instance counts on its own");
                metrics::counter!(self.failures).increment(1);
                *self.resting.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Instant::now() + BACKOFF);
                None
            }
        }
    }
}
