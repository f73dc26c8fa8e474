//! Presence across instances, in Redis: each user's key is a hash of instance id → the moment
//! (Redis' own clock) until which that instance claims to hold a stream of the user, and one
//! sorted set ranks users by when their newest claim lapses. An instance claims when its
//! first local stream of the user opens, renews its claims while they stay open, and
//! releases after the grace period when the last one has closed. A user is online while any
//! claim is live; the claims of a crashed instance lapse, and whichever instance sweeps first
//! announces those users offline.

use crate::redis_link::{Conn, Redis};
use redis::Script;
use std::{sync::Arc, time::Duration};
use uuid::Uuid;

/// How many users one call carries.
const BATCH: usize = 256;

/// `KEYS[1]`: the sorted set; `KEYS[2..]`: user hashes; `ARGV[1]`: instance; `ARGV[2]`: ttl in
/// ms; `ARGV[3..]`: the users' ids. Claims each user for the instance, dropping lapsed
/// claims; answers per user 1 when nobody had a live claim before (the user came online).
const CLAIM: &str = r"
local ttl = tonumber(ARGV[2])
local came = {}
for k = 2, #KEYS do
  local live = 0
  local all = redis.call('HGETALL', KEYS[k])
  for i = 1, #all, 2 do
    if tonumber(all[i + 1]) > now then
      live = live + 1
    elseif all[i] ~= ARGV[1] then
      redis.call('HDEL', KEYS[k], all[i])
    end
  end
  redis.call('HSET', KEYS[k], ARGV[1], now + ttl)
  redis.call('PEXPIRE', KEYS[k], ttl)
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[k + 1])
  came[k - 1] = live == 0 and 1 or 0
end
return came
";

/// `KEYS[1]`: a user hash; `KEYS[2]`: the sorted set; `ARGV[1]`: an instance (or empty);
/// `ARGV[2]`: the user's id. Drops the instance's claim; answers how many live claims remain
/// (0: offline, and the user leaves the sorted set).
const RELEASE: &str = r"
if ARGV[1] ~= '' then redis.call('HDEL', KEYS[1], ARGV[1]) end
local live = 0
local vals = redis.call('HVALS', KEYS[1])
for i = 1, #vals do
  if tonumber(vals[i]) > now then live = live + 1 end
end
if live == 0 and ARGV[1] ~= '' then redis.call('ZREM', KEYS[2], ARGV[2]) end
return live
";

/// `KEYS`: user hashes. Answers the 1-based positions of those with a live claim.
const ONLINE: &str = r"
local out = {}
for k = 1, #KEYS do
  local vals = redis.call('HVALS', KEYS[k])
  for i = 1, #vals do
    if tonumber(vals[i]) > now then
      table.insert(out, k)
      break
    end
  end
end
return out
";

/// `KEYS[1]`: the sorted set; `ARGV[1]`: the prefix of user hashes. Takes out up to 256 users
/// whose every claim has lapsed (a crashed instance's) and answers their ids.
const SWEEP: &str = r"
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 256)
for i = 1, #gone do
  redis.call('ZREM', KEYS[1], gone[i])
  redis.call('DEL', ARGV[1] .. gone[i])
end
return gone
";

/// This instance's view of presence in Redis.
#[derive(Clone)]
pub struct Presence {
    redis: Redis,
    prefix: String,
    ranking: String,
    instance: String,
    ttl: Duration,
    scripts: Arc<[Script; 4]>,
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presence")
            .field("prefix", &self.prefix)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl Presence {
    /// Presence under keys `{<channel>:online}:<user>` and `{<channel>:online}`, as a fresh
    /// instance whose claims last `ttl` unless renewed. The keys share one hash tag: the
    /// scripts touch the ranking and many users' keys at once, which a Redis Cluster allows
    /// in one slot only.
    pub fn new(redis: Redis, channel: &str, ttl: Duration) -> Self {
        let script = crate::redis_link::script_at_redis_time;
        Self {
            redis,
            prefix: format!("{{{channel}:online}}:"),
            ranking: format!("{{{channel}:online}}"),
            instance: Uuid::new_v4().to_string(),
            ttl,
            scripts: Arc::new([
                script(CLAIM),
                script(RELEASE),
                script(ONLINE),
                script(SWEEP),
            ]),
        }
    }

    /// How often claims must be renewed.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    fn key(&self, user: Uuid) -> String {
        format!("{}{user}", self.prefix)
    }

    /// Runs a script; after a failure the next call connects afresh.
    async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> anyhow::Result<T> {
        let result = async {
            let mut conn: Conn = self.redis.get().await?;
            invocation.invoke_async(&mut conn).await
        }
        .await;
        if result.is_err() {
            self.redis.reset().await;
        }
        Ok(result?)
    }

    /// Claims (or renews) `users` for this instance; answers those who had no live claim
    /// before, i.e. who just came online.
    pub async fn claim(&self, users: &[Uuid]) -> anyhow::Result<Vec<Uuid>> {
        let mut came = Vec::new();
        for batch in users.chunks(BATCH) {
            let mut invocation = self.scripts[0].prepare_invoke();
            invocation.key(&self.ranking);
            invocation
                .arg(&self.instance)
                .arg(self.ttl.as_millis() as u64);
            for u in batch {
                invocation.key(self.key(*u)).arg(u.to_string());
            }
            let flags: Vec<u8> = self.invoke(&invocation).await?;
            came.extend(
                batch
                    .iter()
                    .zip(flags)
                    .filter(|(_, f)| *f == 1)
                    .map(|(u, _)| *u),
            );
        }
        Ok(came)
    }

    /// Releases this instance's claim on `user`; answers how many live claims remain
    /// (0: the user is now offline).
    pub async fn release(&self, user: Uuid) -> anyhow::Result<i64> {
        self.count(user, &self.instance).await
    }

    /// True while any instance holds a live claim on `user`.
    pub async fn is_online(&self, user: Uuid) -> anyhow::Result<bool> {
        Ok(self.count(user, "").await? > 0)
    }

    async fn count(&self, user: Uuid, release: &str) -> anyhow::Result<i64> {
        let mut invocation = self.scripts[1].key(self.key(user));
        invocation
            .key(&self.ranking)
            .arg(release)
            .arg(user.to_string());
        self.invoke(&invocation).await
    }

    /// Those of `users` with a live claim.
    pub async fn online_among(&self, users: &[Uuid]) -> anyhow::Result<Vec<Uuid>> {
        let mut online = Vec::new();
        for batch in users.chunks(BATCH) {
            let mut invocation = self.scripts[2].prepare_invoke();
            for u in batch {
                invocation.key(self.key(*u));
            }
            let positions: Vec<usize> = self.invoke(&invocation).await?;
            online.extend(
                positions
                    .into_iter()
                    .filter_map(|p| batch.get(p.wrapping_sub(1))),
            );
        }
        Ok(online)
    }

    /// Takes out the users whose every claim has lapsed (their instance died); answers them,
    /// now offline. Each such user is answered to one instance only.
    pub async fn sweep(&self) -> anyhow::Result<Vec<Uuid>> {
        let mut invocation = self.scripts[3].key(&self.ranking);
        invocation.arg(&self.prefix);
        let gone: Vec<String> = self.invoke(&invocation).await?;
        Ok(gone.iter().filter_map(|u| u.parse().ok()).collect())
    }
}
