//! Per-user AI limits: requests per minute (a `governor` rate limiter keyed by user) and
//! answers streaming at once (a count released when the answer's slot drops), on this
//! instance; with Redis also across the instances (the shared GCRA of `ratelimit::shared`
//! and a lease per answer, `ratelimit::leases`), which decide first while Redis answers.

use crate::{
    error::{Error, Result},
    ratelimit::{
        Rate,
        leases::{Lease, Leases},
        shared::{Counter, Shared},
    },
};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};
use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, Mutex},
};
use uuid::Uuid;

/// The limits.
#[derive(Debug)]
pub struct Limits {
    per_minute: DefaultKeyedRateLimiter<Uuid>,
    rate: Rate,
    concurrent: usize,
    open: Arc<Mutex<HashMap<Uuid, usize>>>,
    shared: Option<(Arc<Leases>, Counter)>,
}

/// An answer's place among its user's concurrent answers, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    user: Uuid,
    open: Arc<Mutex<HashMap<Uuid, usize>>>,
    _lease: Option<Lease>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.user);
            }
        }
    }
}

impl Limits {
    /// `per_minute` requests per minute and `concurrent` answers at once per user.
    pub fn new(per_minute: u32, concurrent: usize) -> Self {
        let quota =
            Quota::per_minute(NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN));
        Self {
            per_minute: RateLimiter::keyed(quota),
            rate: Rate {
                count: per_minute.max(1),
                period: std::time::Duration::from_secs(60),
            },
            concurrent: concurrent.max(1),
            open: Arc::default(),
            shared: None,
        }
    }

    /// These limits, counted across the instances too: answers in `leases`, requests in
    /// `counter`.
    pub fn shared_through(mut self, leases: Arc<Leases>, counter: Counter) -> Self {
        self.shared = Some((leases, counter));
        self
    }

    fn too_many_at_once(&self) -> Error {
        Error::ResourceExhausted(format!(
            "at most {} AI answers at once per user; wait for one to finish",
            self.concurrent
        ))
    }

    fn too_often(wait: std::time::Duration) -> Error {
        Error::ResourceExhausted(format!(
            "too many AI requests this minute; retry in {} s",
            wait.as_secs() + 1
        ))
    }

    /// Admits one answer for `user` across the instances (with Redis, while it answers),
    /// then on this one: RESOURCE_EXHAUSTED when they asked too often this minute or have
    /// too many answers streaming.
    pub async fn admit_shared(&self, user: Uuid) -> Result<Slot> {
        let mut lease = None;
        if let Some((leases, counter)) = &self.shared {
            let taken = leases.take("ai", user, self.concurrent).await;
            lease = Some(taken.map_err(|()| self.too_many_at_once())?);
            if let Some(limit) = Shared::of(self.rate)
                && let Some(wait) = counter.take(limit, &format!("ai:{user}")).await
                && !wait.is_zero()
            {
                return Err(Self::too_often(wait));
            }
        }
        let mut slot = self.admit(user)?;
        slot._lease = lease;
        Ok(slot)
    }

    /// Admits one answer for `user` on this instance: RESOURCE_EXHAUSTED when they asked
    /// too often this minute or have too many answers streaming.
    fn admit(&self, user: Uuid) -> Result<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(user).or_default();
        if *n >= self.concurrent {
            return Err(self.too_many_at_once());
        }
        if let Err(until) = self.per_minute.check_key(&user) {
            return Err(Self::too_often(
                until.wait_time_from(self.per_minute.clock().now()),
            ));
        }
        *n += 1;
        drop(open);
        if self.per_minute.len() > 10_000 {
            self.per_minute.retain_recent();
        }
        Ok(Slot {
            user,
            open: self.open.clone(),
            _lease: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_trip_and_recover() {
        let l = Limits::new(3, 2);
        let u = Uuid::new_v4();
        let a = l.admit(u).unwrap();
        let _b = l.admit(u).unwrap();
        assert!(l.admit(u).is_err(), "a third at once");
        drop(a);
        let _c = l.admit(u).unwrap();
        assert!(l.admit(Uuid::new_v4()).is_ok(), "others are not affected");
        drop(_c);
        let e = l.admit(u).unwrap_err().to_string();
        assert!(e.contains("this minute"), "{e}");
    }
}
