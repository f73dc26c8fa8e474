//! Failed sign-ins, counted three ways, each in a window that begins with its first failure
//! and refusing sign-ins (before any password is checked) until that window ends:
//!
//! - per account and client address (`EPOP_LOGIN_LOCKOUT`): the owner elsewhere is not
//!   locked out, and a success clears it;
//! - per client address, whatever the account (`EPOP_LOGIN_ADDRESS_FAILURES`): one address
//!   guessing many accounts;
//! - per account, whatever the address (`EPOP_LOGIN_ACCOUNT_FAILURES`): many addresses
//!   guessing one account.
//!
//! Only failures count, so an office behind one address signing in at 9:00 is not refused.
//! Addresses are grouped (IPv6 per prefix, see `ratelimit::address_group`). Each instance
//! counts on its own; with Redis the counts shared by every instance count too (keys that
//! expire by themselves), and while Redis cannot be reached (each attempt bounded in time,
//! then left alone for a few seconds) the instance's own counts still hold.

use crate::bounded_redis::BoundedRedis;
use crate::ratelimit::{Rate, address_group};
use sha2::{Digest, Sha256};
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// What a count is kept for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One account from one address.
    AccountAddress,
    /// One address, any account.
    Address,
    /// One account, any address.
    Account,
}

impl Scope {
    const ALL: [Scope; 3] = [Scope::AccountAddress, Scope::Address, Scope::Account];

    /// What a refused caller is told.
    pub fn reason(self) -> &'static str {
        match self {
            Scope::AccountAddress => "too many failed sign-ins to this account from this address",
            Scope::Address => "too many failed sign-ins from this address",
            Scope::Account => "too many failed sign-ins to this account",
        }
    }

    /// Its name in metrics.
    pub fn metric(self) -> &'static str {
        match self {
            Scope::AccountAddress => "lockout",
            Scope::Address => "login_address_failures",
            Scope::Account => "login_account_failures",
        }
    }
}

/// The three limits (each `off` when its count is 0).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Per account and address.
    pub account_address: Rate,
    /// Per address.
    pub address: Rate,
    /// Per account.
    pub account: Rate,
    /// The IPv6 prefix length that makes one address.
    pub ipv6_prefix: u8,
}

impl Limits {
    fn rate(&self, scope: Scope) -> Rate {
        match scope {
            Scope::AccountAddress => self.account_address,
            Scope::Address => self.address,
            Scope::Account => self.account,
        }
    }
}

/// The failed sign-ins, by account and address.
pub struct Lockout {
    limits: Limits,
    local: Mutex<HashMap<[u8; 32], (u32, Instant)>>,
    redis: Option<BoundedRedis>,
}

impl std::fmt::Debug for Lockout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lockout")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The key of a scope's count: a hash, so Redis holds no email or address.
fn key(scope: Scope, email: &str, group: IpAddr) -> [u8; 32] {
    let email = email.to_lowercase();
    let group = group.to_string();
    let (tag, parts): (&[u8], [&str; 2]) = match scope {
        Scope::AccountAddress => (b"aa", [&email, &group]),
        Scope::Address => (b"a", ["", &group]),
        Scope::Account => (b"c", [&email, ""]),
    };
    Sha256::new()
        .chain_update(tag)
        .chain_update(b"|")
        .chain_update(parts[0].as_bytes())
        .chain_update(b"|")
        .chain_update(parts[1].as_bytes())
        .finalize()
        .into()
}

impl Lockout {
    /// Counts in this process only.
    pub fn local(limits: Limits) -> Self {
        Self {
            limits,
            local: Mutex::new(HashMap::new()),
            redis: None,
        }
    }

    /// Counts in this process and in the Redis at `url`, under keys starting with `prefix`.
    pub async fn redis(limits: Limits, url: &str, prefix: &str) -> anyhow::Result<Self> {
        let names = ("lockout", "epop_lockout_redis_failures_total");
        Ok(Self {
            redis: Some(BoundedRedis::connect(url, prefix, 4, names).await?),
            ..Self::local(limits)
        })
    }

    /// The scopes that count, with their keys.
    fn keys(&self, email: &str, ip: IpAddr) -> Vec<(Scope, Rate, [u8; 32])> {
        let group = address_group(ip, self.limits.ipv6_prefix);
        Scope::ALL
            .into_iter()
            .map(|s| (s, self.limits.rate(s)))
            .filter(|(_, rate)| rate.count > 0)
            .map(|(s, rate)| (s, rate, key(s, email, group)))
            .collect()
    }

    /// How much longer signing in to `email` from `ip` is refused, and why, if it is.
    pub async fn locked(&self, email: &str, ip: IpAddr) -> Option<(Duration, Scope)> {
        let keys = self.keys(email, ip);
        let mut found: Option<(Duration, Scope)> = None;
        let mut refuse = |left: Duration, scope: Scope| {
            if found.is_none_or(|(l, _)| left > l) {
                found = Some((left, scope));
            }
        };
        {
            let map = self.local.lock().unwrap_or_else(|p| p.into_inner());
            for (scope, rate, k) in &keys {
                if let Some((count, since)) = map.get(k)
                    && *count >= rate.count
                    && let Some(left) = rate.period.checked_sub(since.elapsed())
                {
                    refuse(left, *scope);
                }
            }
        }
        if let Some(shared) = self.shared_counts(&keys).await {
            for ((scope, rate, _), (count, ttl)) in keys.iter().zip(shared) {
                if count.is_some_and(|c| c >= rate.count)
                    && let Ok(ms) = u64::try_from(ttl)
                {
                    refuse(Duration::from_millis(ms), *scope);
                }
            }
        }
        found
    }

    /// Refuses (RESOURCE_EXHAUSTED, saying when to retry) while signing in to `email` from
    /// `ip` is locked out; a call with no known address passes.
    pub async fn check(&self, email: &str, ip: Option<IpAddr>) -> crate::error::Result<()> {
        let Some(ip) = ip else { return Ok(()) };
        match self.locked(email, ip).await {
            Some((wait, scope)) => {
                crate::metrics::rate_limited(scope.metric());
                Err(crate::error::Error::RetryLater(
                    format!("{}: try again later", scope.reason()),
                    wait,
                ))
            }
            None => Ok(()),
        }
    }

    /// Records a wrong password for `email` from `ip`.
    pub async fn failed(&self, email: &str, ip: IpAddr) {
        let keys = self.keys(email, ip);
        {
            let mut map = self.local.lock().unwrap_or_else(|p| p.into_inner());
            let longest = Scope::ALL
                .map(|scope| self.limits.rate(scope).period)
                .into_iter()
                .max()
                .unwrap_or_default();
            if map.len() >= 100_000 {
                map.retain(|_, (_, since)| since.elapsed() < longest);
            }
            for (_, rate, k) in &keys {
                let entry = map.entry(*k).or_insert((0, Instant::now()));
                if entry.1.elapsed() >= rate.period {
                    *entry = (0, Instant::now());
                }
                entry.0 += 1;
            }
        }
        let Some(redis) = &self.redis else { return };
        let mut pipe = redis::pipe();
        for (_, rate, k) in &keys {
            let key = redis_key(redis, k);
            let ms = u64::try_from(rate.period.as_millis()).unwrap_or(u64::MAX);
            // The window starts with the first failure: its expiry is set only then.
            pipe.incr(&key, 1).ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(ms).arg("NX").ignore();
        }
        redis.run::<()>(pipe).await;
    }

    /// Clears the count of `email` from `ip` after a successful sign-in (the per-address and
    /// per-account counts stay: a success does not pardon guesses made elsewhere).
    pub async fn succeeded(&self, email: &str, ip: IpAddr) {
        let group = address_group(ip, self.limits.ipv6_prefix);
        let k = key(Scope::AccountAddress, email, group);
        self.local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&k);
        if let Some(redis) = &self.redis {
            let mut pipe = redis::pipe();
            pipe.cmd("DEL").arg(redis_key(redis, &k)).ignore();
            redis.run::<()>(pipe).await;
        }
    }

    /// The shared (count, milliseconds left) of each of `keys`, unless Redis is unreachable.
    async fn shared_counts(
        &self,
        keys: &[(Scope, Rate, [u8; 32])],
    ) -> Option<Vec<(Option<u32>, i64)>> {
        let redis = self.redis.as_ref()?;
        let mut pipe = redis::pipe();
        for (_, _, k) in keys {
            let key = redis_key(redis, k);
            pipe.get(&key).pttl(&key);
        }
        let flat: Vec<redis::Value> = redis.run(pipe).await?;
        flat.chunks(2)
            .map(|pair| {
                let count = redis::from_redis_value::<Option<u32>>(pair[0].clone()).ok()?;
                let ttl = redis::from_redis_value::<i64>(pair[1].clone()).ok()?;
                Some((count, ttl))
            })
            .collect::<Option<Vec<_>>>()
    }
}

/// The Redis key of count `k`. Every count carries one hash tag, so that the counts one
/// sign-in reads and writes together (one pipeline) are in one slot of a Redis Cluster.
fn redis_key(redis: &BoundedRedis, k: &[u8; 32]) -> String {
    let hex: String = k[..16].iter().map(|b| format!("{b:02x}")).collect();
    redis.key(&format!("{{lockout}}{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(account_address: &str, address: &str, account: &str) -> Limits {
        Limits {
            account_address: account_address.parse().unwrap(),
            address: address.parse().unwrap(),
            account: account.parse().unwrap(),
            ipv6_prefix: 64,
        }
    }

    #[tokio::test]
    async fn failures_lock_one_account_from_one_address_until_the_period_ends() {
        let lockout = Lockout::local(limits("2/300ms", "off", "off"));
        let (a, b): (IpAddr, IpAddr) = ("1.1.1.1".parse().unwrap(), "2.2.2.2".parse().unwrap());
        lockout.failed("Ann@example.com", a).await;
        assert!(lockout.locked("ann@example.com", a).await.is_none());
        lockout.failed("ann@example.com", a).await;
        let (_, scope) = lockout.locked("ann@example.com", a).await.unwrap();
        assert_eq!(scope, Scope::AccountAddress);
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

    #[tokio::test]
    async fn an_account_is_bounded_across_addresses_and_an_address_across_accounts() {
        let lockout = Lockout::local(limits("off", "3/1m", "3/1m"));
        for i in 1..=3 {
            let ip: IpAddr = format!("10.0.0.{i}").parse().unwrap();
            lockout.failed("ann@example.com", ip).await;
        }
        let elsewhere: IpAddr = "10.9.9.9".parse().unwrap();
        let (_, scope) = lockout.locked("ann@example.com", elsewhere).await.unwrap();
        assert_eq!(scope, Scope::Account);
        assert!(lockout.locked("bob@example.com", elsewhere).await.is_none());
        let one: IpAddr = "10.7.7.7".parse().unwrap();
        for who in ["a", "b", "c"] {
            lockout.failed(&format!("{who}@example.com"), one).await;
        }
        let (_, scope) = lockout.locked("zed@example.com", one).await.unwrap();
        assert_eq!(scope, Scope::Address);
    }

    #[tokio::test]
    async fn addresses_of_one_ipv6_prefix_count_as_one() {
        let lockout = Lockout::local(limits("2/1m", "off", "off"));
        lockout
            .failed("ann@example.com", "2001:db8:1:2::1".parse().unwrap())
            .await;
        lockout
            .failed("ann@example.com", "2001:db8:1:2:ffff::9".parse().unwrap())
            .await;
        let same: IpAddr = "2001:db8:1:2:abcd::5".parse().unwrap();
        assert!(lockout.locked("ann@example.com", same).await.is_some());
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(lockout.locked("ann@example.com", other).await.is_none());
    }
}
