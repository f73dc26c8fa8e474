//! The rate limits shared by every instance through Redis: GCRA (the generic cell rate
//! algorithm governor uses too) in one Lua script, so a check is one atomic round trip and
//! the limits hold for a client however a load balancer spreads its calls. While Redis is
//! unreachable ([`BoundedRedis`]), each instance's own limiter decides.

use super::Rate;
use crate::bounded_redis::BoundedRedis;
use std::time::Duration;

/// GCRA: KEYS[1] holds the theoretical arrival time (ms). ARGV: the emission interval (ms)
/// and the burst. Answers 0 when the call may go, else the milliseconds to wait. Redis's own
/// clock is used (`now`), so instances' clocks need not agree.
const SCRIPT: &str = r"
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
#[derive(Debug)]
pub struct Counter {
    redis: BoundedRedis,
    script: redis::Script,
}

impl Counter {
    /// Counts in the Redis at `url`, under keys starting with `prefix`.
    pub async fn new(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let names = ("rate limits", "epop_rate_limit_redis_failures_total");
        Ok(Self {
            redis: BoundedRedis::connect(url, prefix, 8, names).await?,
            script: crate::redis_link::script_at_redis_time(SCRIPT),
        })
    }

    /// Takes one call of `key` under `limit`: Some(wait) when refused, Some(zero) when it may
    /// go; None when Redis cannot answer now (the instance's own limits decide).
    pub async fn take(&self, limit: Shared, key: &str) -> Option<Duration> {
        let mut invocation = self.script.key(self.redis.key(key));
        invocation.arg(limit.interval_ms).arg(limit.burst);
        let wait: u64 = self.redis.invoke(&invocation).await?;
        Some(Duration::from_millis(wait))
    }
}
