//! Per-user AI limits on this instance: requests per minute (a `governor` rate limiter keyed
//! by user) and answers streaming at once (a count released when the answer's slot drops).

use crate::error::{Error, Result};
use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};
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
    concurrent: usize,
    open: Arc<Mutex<HashMap<Uuid, usize>>>,
}

/// An answer's place among its user's concurrent answers, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    user: Uuid,
    open: Arc<Mutex<HashMap<Uuid, usize>>>,
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
            concurrent: concurrent.max(1),
            open: Arc::default(),
        }
    }

    /// Admits one answer for `user`: RESOURCE_EXHAUSTED when they asked too often this
    /// minute or have too many answers streaming.
    pub fn admit(&self, user: Uuid) -> Result<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(user).or_default();
        if *n >= self.concurrent {
            return Err(Error::ResourceExhausted(format!(
                "at most {} AI answers at once per user; wait for one to finish",
                self.concurrent
            )));
        }
        if let Err(until) = self.per_minute.check_key(&user) {
            let wait = until.wait_time_from(DefaultClock::default().now());
            return Err(Error::ResourceExhausted(format!(
                "too many AI requests this minute; retry in {} s",
                wait.as_secs() + 1
            )));
        }
        *n += 1;
        drop(open);
        if self.per_minute.len() > 10_000 {
            self.per_minute.retain_recent();
        }
        Ok(Slot {
            user,
            open: self.open.clone(),
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
