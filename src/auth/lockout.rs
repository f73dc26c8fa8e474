//! Sign-in lockout per account and client address: after `count` wrong passwords for one
//! account from one address within `period`, signing in to that account from that address is
//! refused until the period that began with the first failure ends; a success clears the
//! count. Keyed by address as well as account, so nobody can lock a victim out from the
//! victim's own address, and it always ends by itself. With Redis the counts are shared by
//! every instance (keys that expire by themselves; a Redis failure lets sign-ins through);
//! without it, each instance counts alone.

use crate::ratelimit::Rate;
use bb8_redis::{RedisConnectionManager, bb8};
use sha2::{Digest, Sha256};
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

enum Store {
    Local(Mutex<HashMap<[u8; 32], (u32, Instant)>>),
    Redis {
        pool: bb8::Pool<RedisConnectionManager>,
        prefix: String,
    },
}

/// The failed sign-ins of accounts per client address.
pub struct Lockout {
    rate: Rate,
    store: Store,
}

impl std::fmt::Debug for Lockout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lockout")
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

/// The key of an account and address: a hash, so Redis holds no email addresses.
fn key(email: &str, ip: IpAddr) -> [u8; 32] {
    Sha256::new()
        .chain_update(email.to_lowercase().as_bytes())
        .chain_update(b"|")
        .chain_update(ip.to_string().as_bytes())
        .finalize()
        .into()
}

impl Lockout {
    /// Counts in this process.
    pub fn local(rate: Rate) -> Self {
        Self {
            rate,
            store: Store::Local(Mutex::new(HashMap::new())),
        }
    }

    /// Counts in the Redis at `url`, under keys starting with `prefix`.
    pub async fn redis(rate: Rate, url: &str, prefix: &str) -> anyhow::Result<Self> {
        let pool = bb8::Pool::builder()
            .max_size(4)
            .connection_timeout(Duration::from_secs(2))
            .build(RedisConnectionManager::new(url)?)
            .await?;
        Ok(Self {
            rate,
            store: Store::Redis {
                pool,
                prefix: prefix.to_owned(),
            },
        })
    }

    fn redis_key(prefix: &str, k: &[u8; 32]) -> String {
        let hex: String = k[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("{prefix}{hex}")
    }

    /// How much longer signing in to `email` from `ip` is refused, if it is.
    pub async fn locked(&self, email: &str, ip: IpAddr) -> Option<Duration> {
        if self.rate.count == 0 {
            return None;
        }
        let k = key(email, ip);
        match &self.store {
            Store::Local(map) => {
                let map = map.lock().expect("the lockout lock");
                let (count, since) = map.get(&k)?;
                let left = self.rate.period.checked_sub(since.elapsed())?;
                (*count >= self.rate.count).then_some(left)
            }
            Store::Redis { pool, prefix } => {
                let mut conn = pool.get().await.ok()?;
                let key = Self::redis_key(prefix, &k);
                let (count, ttl): (Option<u32>, i64) = redis::pipe()
                    .get(&key)
                    .pttl(&key)
                    .query_async(&mut *conn)
                    .await
                    .inspect_err(|e| tracing::warn!(error = %e, "lockout: Redis read failed"))
                    .ok()?;
                let left = Duration::from_millis(u64::try_from(ttl).ok()?);
                (count? >= self.rate.count).then_some(left)
            }
        }
    }

    /// Records a wrong password for `email` from `ip`.
    pub async fn failed(&self, email: &str, ip: IpAddr) {
        if self.rate.count == 0 {
            return;
        }
        let k = key(email, ip);
        match &self.store {
            Store::Local(map) => {
                let mut map = map.lock().expect("the lockout lock");
                let period = self.rate.period;
                if map.len() >= 100_000 {
                    map.retain(|_, (_, since)| since.elapsed() < period);
                }
                let entry = map.entry(k).or_insert((0, Instant::now()));
                if entry.1.elapsed() >= period {
                    *entry = (0, Instant::now());
                }
                entry.0 += 1;
            }
            Store::Redis { pool, prefix } => {
                let key = Self::redis_key(prefix, &k);
                let ms = u64::try_from(self.rate.period.as_millis()).unwrap_or(u64::MAX);
                let recorded = async {
                    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
                    // The period starts with the first failure: set its expiry only then.
                    redis::pipe()
                        .incr(&key, 1)
                        .cmd("PEXPIRE")
                        .arg(&key)
                        .arg(ms)
                        .arg("NX")
                        .query_async::<()>(&mut *conn)
                        .await
                        .map_err(|e| e.to_string())
                };
                if let Err(e) = recorded.await {
                    tracing::warn!(error = %e, "lockout: Redis write failed");
                }
            }
        }
    }

    /// Clears the count of `email` from `ip` after a successful sign-in.
    pub async fn succeeded(&self, email: &str, ip: IpAddr) {
        let k = key(email, ip);
        match &self.store {
            Store::Local(map) => {
                map.lock().expect("the lockout lock").remove(&k);
            }
            Store::Redis { pool, prefix } => {
                if let Ok(mut conn) = pool.get().await {
                    let _: Result<(), _> = redis::cmd("DEL")
                        .arg(Self::redis_key(prefix, &k))
                        .query_async(&mut *conn)
                        .await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failures_lock_one_account_from_one_address_until_the_period_ends() {
        let lockout = Lockout::local("2/300ms".parse().unwrap());
        let (a, b): (IpAddr, IpAddr) = ("1.1.1.1".parse().unwrap(), "2.2.2.2".parse().unwrap());
        lockout.failed("Ann@example.com", a).await;
        assert!(lockout.locked("ann@example.com", a).await.is_none());
        lockout.failed("ann@example.com", a).await;
        assert!(lockout.locked("ann@example.com", a).await.is_some());
        assert!(
            lockout.locked("ann@example.com", b).await.is_none(),
            "another address"
        );
        assert!(
            lockout.locked("bob@example.com", a).await.is_none(),
            "another account"
        );
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(
            lockout.locked("ann@example.com", a).await.is_none(),
            "it ends"
        );
        lockout.failed("ann@example.com", a).await;
        lockout.succeeded("ann@example.com", a).await;
        lockout.failed("ann@example.com", a).await;
        assert!(
            lockout.locked("ann@example.com", a).await.is_none(),
            "a success clears"
        );
    }
}
