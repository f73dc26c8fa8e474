//! Password hashing with argon2id (the crate's defaults, which are OWASP's), on blocking
//! threads behind a semaphore so logins never stall the async runtime.

use crate::{
    domain::Password,
    error::{Error, Result},
};
use argon2::{
    Argon2,
    password_hash::{PasswordHasher as _, PasswordVerifier as _, phc::PasswordHash},
};
use secrecy::{ExposeSecret, SecretString};
use std::sync::{Arc, OnceLock};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many hashing jobs may wait per core before more are refused.
pub const QUEUE_PER_CORE: usize = 8;

/// Hashes and verifies passwords, at most one per core at a time, with a bounded queue: a
/// flood of sign-ins is refused (RESOURCE_EXHAUSTED) instead of queueing without end.
#[derive(Debug, Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    queue: Arc<Semaphore>,
}

impl Default for Hasher {
    /// One hash at a time per core but one: a flood of sign-ins leaves a core for every
    /// other call.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let parallel = cores.saturating_sub(1).max(1);
        Self::new(parallel, cores * QUEUE_PER_CORE)
    }
}

impl Hasher {
    /// A hasher running `parallel` hashes at once, with at most `queue` waiting or running.
    pub fn new(parallel: usize, queue: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(parallel)),
            queue: Arc::new(Semaphore::new(queue.max(parallel))),
        }
    }

    /// A place in the queue, taken at once or refused (RESOURCE_EXHAUSTED): take it before
    /// any other work of a request that will hash, so a refused request costs nothing.
    pub fn reserve(&self) -> Result<Slot> {
        let place = self.queue.clone().try_acquire_owned().map_err(|_| {
            Error::ResourceExhausted("too many password checks at once, retry shortly".into())
        })?;
        Ok(Slot {
            permits: self.permits.clone(),
            _place: place,
        })
    }

    /// The PHC string of a new password.
    pub async fn hash(&self, password: &Password) -> Result<String> {
        self.reserve()?.hash(password).await
    }

    /// See [`Slot::verify`].
    pub async fn verify(&self, password: &str, hash: Option<String>) -> Result<bool> {
        self.reserve()?.verify(password, hash).await
    }
}

/// A reserved place in the hasher's queue, for one hash or check.
#[derive(Debug)]
pub struct Slot {
    permits: Arc<Semaphore>,
    _place: OwnedSemaphorePermit,
}

impl Slot {
    /// The PHC string of a new password.
    pub async fn hash(self, password: &Password) -> Result<String> {
        let secret = password.secret().clone();
        self.run(move || {
            Argon2::default()
                .hash_password(secret.expose_secret().as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| Error::internal(format!("password hashing failed: {e}")))
        })
        .await?
    }

    /// True when `password` matches `hash`. With no hash (unknown account), a dummy hash is
    /// checked, so unknown emails cost as much time as wrong passwords.
    pub async fn verify(self, password: &str, hash: Option<String>) -> Result<bool> {
        let password = SecretString::from(password.to_owned());
        self.run(move || {
            let known = hash.is_some();
            let hash = hash.unwrap_or_else(|| dummy_hash().to_owned());
            let ok = PasswordHash::new(&hash).is_ok_and(|parsed| {
                Argon2::default()
                    .verify_password(password.expose_secret().as_bytes(), &parsed)
                    .is_ok()
            });
            known && ok
        })
        .await
    }

    async fn run<T: Send + 'static>(self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::internal("password hasher closed"))?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Error::internal(format!("password task failed: {e}")))
    }
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        Argon2::default()
            .hash_password(b"not a real password, only to spend the same time")
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_no_other() {
        let h = Hasher::default();
        let hash = h
            .hash(&Password::parse("p", "correct horse").unwrap())
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(h.verify("correct horse", Some(hash.clone())).await.unwrap());
        assert!(!h.verify("wrong horse!", Some(hash)).await.unwrap());
        assert!(!h.verify("correct horse", None).await.unwrap());
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once() {
        let h = Hasher::new(1, 2);
        let (a, b, c) = tokio::join!(
            h.verify("x", None),
            h.verify("x", None),
            h.verify("x", None)
        );
        assert!(a.is_ok() && b.is_ok());
        assert!(matches!(c, Err(Error::ResourceExhausted(_))));
    }
}
