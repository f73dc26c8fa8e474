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
use tokio::sync::Semaphore;

/// Hashes and verifies passwords, at most one per core at a time.
#[derive(Debug, Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
}

impl Default for Hasher {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            permits: Arc::new(Semaphore::new(cores)),
        }
    }
}

impl Hasher {
    /// The PHC string of a new password.
    pub async fn hash(&self, password: &Password) -> Result<String> {
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
    pub async fn verify(&self, password: &str, hash: Option<String>) -> Result<bool> {
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

    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
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
}
