//! The rate limits shared by every instance through Redis: GCRA (the generic cell rate
//! algorithm governor uses too) in one Lua script, so a check is one atomic round trip and
//! the limits hold for a client however a load balancer spreads its calls. While Redis is
//! unreachable (a failure rests it for a few seconds), each instance's own limiter decides.

use super::Rate;
use bb8_redis::RedisConnectionManager;
use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// How long a check may wait for Redis before the instance's own limits decide.
const TIMEOUT: Duration = Duration::from_millis(250);
/// How long Redis is left alone after a failure.
const BACKOFF: Duration = Duration::from_secs(5);

/// GCRA: KEYS[1] holds the theoretical arrival time (ms). ARGV: the emission interval (ms)
/// and the burst. Answers 0 when the call may go, else the milliseconds to wait. Redis's own
/// clock is used, so instances' clocks need not agree.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then return allow_at - now end
redis.call('SET', KEYS[1], new_tat, 'PX', math.max(1, math.ceil(new_tat - now)))
return 0
";

/// One limit (a rate) on keys of one kind, counted in Redis.
#[derive(Debug, Clone, Copy)]
pub struct Shared {
    interval_ms: u64,
    burst: u32,
}

impl Shared {
    /// The limit of `rate`; None for `off`.
    pub fn of(rate: Rate) -> Option<Self> {
        let burst = rate.count;
        let interval_ms = u64::try_from((rate.period / burst.max(1)).as_millis()).ok()?;
        (burst > 0).then_some(Self {
            interval_ms: interval_ms.max(1),
            burst,
        })
    }
}

/// The Redis the shared limits are counted in.
pub struct Counter {
    pool: bb8::Pool<RedisConnectionManager>,
    prefix: String,
    script: redis::Script,
    resting: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Counter {
    /// Counts in the Redis at `url`, under keys starting with `prefix`.
    pub async fn new(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let pool = bb8::Pool::builder()
            .max_size(8)
            .connection_timeout(TIMEOUT)
            .build(RedisConnectionManager::new(url)?)
            .await?;
        Ok(Self {
            pool,
            prefix: prefix.to_owned(),
            script: redis::Script::new(SCRIPT),
            resting: Mutex::new(None),
        })
    }

    /// Takes one call of `key` under `limit`: Some(wait) when refused, Some(zero) when it may
    /// go; None when Redis cannot answer now (the instance's own limits decide).
    pub async fn take(&self, limit: Shared, key: &str) -> Option<Duration> {
        {
            let resting = self.resting.lock().unwrap_or_else(|p| p.into_inner());
            if resting.is_some_and(|until| Instant::now() < until) {
                return None;
            }
        }
        let key = format!("{}{key}", self.prefix);
        let attempt = async {
            let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
            self.script
                .key(&key)
                .arg(limit.interval_ms)
                .arg(limit.burst)
                .invoke_async::<u64>(&mut *conn)
                .await
                .map_err(|e| e.to_string())
        };
        let outcome = tokio::time::timeout(TIMEOUT, attempt)
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
        match outcome {
            Ok(wait) => Some(Duration::from_millis(wait)),
            Err(e) => {
                tracing::warn!(error = %e, rest = ?BACKOFF,
                    "rate limits: Redis unreachable, each instance limits on its own");
                metrics::counter!("epop_rate_limit_redis_failures_total").increment(1);
                *self.resting.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Instant::now() + BACKOFF);
                None
            }
        }
    }
}
