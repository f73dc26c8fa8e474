//! Concurrency limits shared by every instance through Redis (a user's open event streams,
//! their AI answers in progress): each open one holds a lease, a member of a sorted set per
//! user and kind whose score is when it lapses on Redis' clock. A lease is granted only
//! while fewer than the limit are live (one Lua script: atomic), renewed while held, and
//! given back when done; the leases of an instance that died lapse within [`TTL`]. While
//! Redis is unreachable ([`BoundedRedis`]) the instance's own count decides alone (it always
//! applies too); a lease granted meanwhile is held all the same, and counted in Redis from
//! its next renewal. A lease given back is removed after each renewal round too, until Redis
//! takes the removal (so neither a renewal racing it nor a resting Redis keeps it alive).

use crate::bounded_redis::BoundedRedis;
use futures::StreamExt;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a lease lives unless renewed.
pub const TTL: Duration = Duration::from_secs(30);

/// KEYS[1]: the user's set of one kind. ARGV: the limit, the ttl (ms), the lease. Drops the
/// lapsed leases; grants this one (1) when fewer than the limit are live, else 0.
const TAKE: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
";

/// KEYS[1]: a set. ARGV: the ttl (ms), then the leases to renew (added back if they lapsed).
const RENEW: &str = r"
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return 0
";

/// The leases of this instance, in the Redis they are counted in.
pub struct Leases {
    redis: BoundedRedis,
    scripts: [redis::Script; 2],
    /// The leases held here, by set.
    held: Mutex<HashMap<String, Vec<Uuid>>>,
    /// Leases given back whose removal Redis has not confirmed yet.
    released: Mutex<Vec<(String, Uuid)>>,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases").finish_non_exhaustive()
    }
}

/// A granted lease, given back when dropped.
#[derive(Debug)]
pub struct Lease {
    leases: Arc<Leases>,
    key: String,
    id: Uuid,
}

impl Leases {
    /// Leases counted in the Redis at `url` under keys starting with `prefix`, renewed until
    /// `stop`.
    pub async fn new(
        url: &str,
        prefix: &str,
        stop: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        let names = ("concurrency limits", "epop_lease_redis_failures_total");
        let script = crate::redis_link::script_at_redis_time;
        let leases = Arc::new(Self {
            redis: BoundedRedis::connect(url, prefix, 4, names).await?,
            scripts: [script(TAKE), script(RENEW)],
            held: Mutex::default(),
            released: Mutex::default(),
        });
        tokio::spawn(leases.clone().renew_forever(stop));
        Ok(leases)
    }

    /// The set of `user`'s leases of `kind` (tagged by user: one slot per user in a Redis
    /// Cluster, spread over its masters).
    fn key(&self, kind: &str, user: Uuid) -> String {
        self.redis.key(&format!("{kind}:{{{user}}}"))
    }

    /// Takes one of `user`'s at most `limit` leases of `kind`: Err when `limit` are live
    /// across the instances. While Redis cannot answer, the lease is granted (the caller's
    /// own count decides) and counted in Redis from its next renewal.
    pub async fn take(self: &Arc<Self>, kind: &str, user: Uuid, limit: usize) -> Result<Lease, ()> {
        let key = self.key(kind, user);
        let id = Uuid::new_v4();
        let mut invocation = self.scripts[0].key(&key);
        invocation.arg(limit).arg(ttl_ms()).arg(id.to_string());
        if self.redis.invoke::<u8>(&invocation).await == Some(0) {
            return Err(());
        }
        lock(&self.held).entry(key.clone()).or_default().push(id);
        Ok(Lease {
            leases: self.clone(),
            key,
            id,
        })
    }

    /// Removes the leases given back, keeping those Redis did not take the removal of.
    async fn remove_released(&self) {
        let released = std::mem::take(&mut *lock(&self.released));
        for (key, id) in released {
            let mut pipe = redis::pipe();
            pipe.cmd("ZREM").arg(&key).arg(id.to_string()).ignore();
            if self.redis.run::<()>(pipe).await.is_none() {
                lock(&self.released).push((key, id));
            }
        }
    }

    /// Renews every lease held here, every third of [`TTL`], until `stop`.
    async fn renew_forever(self: Arc<Self>, stop: CancellationToken) {
        let mut every = tokio::time::interval(TTL / 3);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            let held: Vec<(String, Vec<Uuid>)> = lock(&self.held)
                .iter()
                .map(|(k, ids)| (k.clone(), ids.clone()))
                .collect();
            futures::stream::iter(held)
                .for_each_concurrent(32, |(key, ids)| {
                    let this = &self;
                    async move {
                        let mut invocation = this.scripts[1].key(&key);
                        invocation.arg(ttl_ms());
                        for id in &ids {
                            invocation.arg(id.to_string());
                        }
                        let _: Option<u8> = this.redis.invoke(&invocation).await;
                    }
                })
                .await;
            // After the round: a lease given back during it may have been renewed.
            self.remove_released().await;
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        {
            let mut held = lock(&self.leases.held);
            if let Some(ids) = held.get_mut(&self.key) {
                ids.retain(|id| *id != self.id);
                if ids.is_empty() {
                    held.remove(&self.key);
                }
            }
        }
        // (Past this many, a removal waiting for Redis is dropped: the lease lapses by
        // itself within the TTL anyway.)
        let mut released = lock(&self.leases.released);
        if released.len() < 10_000 {
            released.push((self.key.clone(), self.id));
        }
        drop(released);
        let leases = self.leases.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { leases.remove_released().await });
        }
    }
}

fn ttl_ms() -> u64 {
    TTL.as_millis() as u64
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
