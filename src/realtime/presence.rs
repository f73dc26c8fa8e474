//! Presence across instances, in Redis: each user's key is a hash of instance id → the moment
//! (Redis' own clock) until which that instance claims to hold a stream of the user. An
//! instance claims when its first local stream of the user opens, refreshes its claims while
//! they stay open, and releases after the grace period when the last one has closed. A user is
//! online while any claim is live, so a crashed instance's claims lapse by themselves.

use bb8_redis::RedisConnectionManager;
use redis::Script;
use std::time::Duration;
use uuid::Uuid;

/// How long a claim lives unless refreshed.
pub const CLAIM_TTL: Duration = Duration::from_secs(30);
/// How often an instance refreshes its claims.
pub const REFRESH: Duration = Duration::from_secs(10);
/// How many users one refresh call carries.
const BATCH: usize = 256;

/// Claims `KEYS` for instance `ARGV[1]` for `ARGV[2]` ms, dropping lapsed claims; answers how
/// many other instances held a live claim on `KEYS[1]`.
const CLAIM: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local others = 0
for k = 1, #KEYS do
  local all = redis.call('HGETALL', KEYS[k])
  for i = 1, #all, 2 do
    if all[i] ~= ARGV[1] then
      if tonumber(all[i + 1]) > now then
        if k == 1 then others = others + 1 end
      else
        redis.call('HDEL', KEYS[k], all[i])
      end
    end
  end
  redis.call('HSET', KEYS[k], ARGV[1], now + ttl)
  redis.call('PEXPIRE', KEYS[k], ttl)
end
return others
";

/// Drops the claim of instance `ARGV[1]` (when not empty) on `KEYS[1]`; answers how many live
/// claims remain.
const RELEASE: &str = r"
if ARGV[1] ~= '' then redis.call('HDEL', KEYS[1], ARGV[1]) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) > now then live = live + 1 end
end
return live
";

/// Answers the 1-based positions of the `KEYS` that hold a live claim.
const ONLINE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
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

/// This instance's view of presence in Redis.
#[derive(Clone)]
pub struct Presence {
    pool: bb8::Pool<RedisConnectionManager>,
    prefix: String,
    instance: String,
    claim: std::sync::Arc<Script>,
    release: std::sync::Arc<Script>,
    online: std::sync::Arc<Script>,
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
    /// Presence under keys `<channel>:online:<user>`, as a fresh instance.
    pub fn new(pool: bb8::Pool<RedisConnectionManager>, channel: &str) -> Self {
        Self {
            pool,
            prefix: format!("{channel}:online:"),
            instance: Uuid::new_v4().to_string(),
            claim: std::sync::Arc::new(Script::new(CLAIM)),
            release: std::sync::Arc::new(Script::new(RELEASE)),
            online: std::sync::Arc::new(Script::new(ONLINE)),
        }
    }

    fn key(&self, user: Uuid) -> String {
        format!("{}{user}", self.prefix)
    }

    async fn conn(&self) -> anyhow::Result<bb8::PooledConnection<'_, RedisConnectionManager>> {
        self.pool.get().await.map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Claims `users` for this instance; answers how many other instances had a live claim on
    /// the first one (0: the user just came online).
    pub async fn claim(&self, users: &[Uuid]) -> anyhow::Result<i64> {
        let mut invocation = self.claim.prepare_invoke();
        for u in users {
            invocation.key(self.key(*u));
        }
        invocation
            .arg(&self.instance)
            .arg(CLAIM_TTL.as_millis() as u64);
        Ok(invocation.invoke_async(&mut *self.conn().await?).await?)
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
        let mut invocation = self.release.key(self.key(user));
        invocation.arg(release);
        Ok(invocation.invoke_async(&mut *self.conn().await?).await?)
    }

    /// Those of `users` with a live claim (in batches).
    pub async fn online_among(&self, users: &[Uuid]) -> anyhow::Result<Vec<Uuid>> {
        let mut online = Vec::new();
        for batch in users.chunks(BATCH) {
            let mut invocation = self.online.prepare_invoke();
            for u in batch {
                invocation.key(self.key(*u));
            }
            let positions: Vec<usize> = invocation.invoke_async(&mut *self.conn().await?).await?;
            online.extend(
                positions
                    .into_iter()
                    .filter_map(|p| batch.get(p.wrapping_sub(1))),
            );
        }
        Ok(online)
    }

    /// Refreshes the claims on `users` (those with a stream open here), in batches.
    pub async fn refresh(&self, users: &[Uuid]) -> anyhow::Result<()> {
        for batch in users.chunks(BATCH) {
            self.claim(batch).await?;
        }
        Ok(())
    }
}
