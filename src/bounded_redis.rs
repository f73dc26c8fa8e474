//! Redis for checks that must not wait on it (the sign-in lockout, the rate limits): each
//! round trip is bounded in time, and after a failure Redis is left alone for a while; the
//! caller's own counts decide meanwhile, so a Redis outage never means no limit and never
//! makes a request wait.

use crate::redis_link::Redis;
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
    redis: Redis,
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
        let redis = Redis::new(url, connections, TIMEOUT)?;
        redis.connect_in_background();
        Ok(Self {
            redis,
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
        self.bounded(async {
            let mut conn = self.redis.get().await?;
            pipe.query_async::<T>(&mut conn).await
        })
        .await
    }

    /// Runs a script (loading it first where Redis does not have it: a restarted or newly
    /// promoted node), bounded as [`run`](Self::run).
    pub async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Option<T> {
        self.bounded(async {
            let mut conn = self.redis.get().await?;
            invocation.invoke_async::<T>(&mut conn).await
        })
        .await
    }

    async fn bounded<T>(&self, attempt: impl Future<Output = redis::RedisResult<T>>) -> Option<T> {
        {
            let resting = self.resting.lock().unwrap_or_else(|p| p.into_inner());
            if resting.is_some_and(|until| Instant::now() < until) {
                return None;
            }
        }
        // Connecting (to every node of a cluster) may take longer than one round trip may:
        // it is done in the background, and the caller decides alone meanwhile.
        if !self.redis.is_linked() {
            self.redis.connect_in_background();
            return None;
        }
        let outcome = tokio::time::timeout(TIMEOUT, attempt)
            .await
            .unwrap_or_else(|_| Err((redis::ErrorKind::Io, "timed out").into()));
        match outcome {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(error = %e, rest = ?BACKOFF, user = self.user,
                    "Redis unreachable: each instance counts on its own");
                metrics::counter!(self.failures).increment(1);
                self.redis.reset().await;
                *self.resting.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Instant::now() + BACKOFF);
                None
            }
        }
    }
}
