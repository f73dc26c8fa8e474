//! The signing keys every instance of one database shares (`signing_keys`): the first is
//! created on the first start (from `<data-dir>/jwt.key` when an earlier version left one),
//! each instance reloads them periodically and at once when a token names a key it has not
//! loaded, and `epop keys rotate` adds a new one. A configured `EPOP_JWT_SECRET` wins.

use super::{
    Caller,
    jwt::{JwtKeys, Key, MIN_KEY_BYTES, Verified, derive_root},
    key_file,
};
use crate::db::{self, Pool};
use anyhow::{Context, bail};
use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio_util::sync::CancellationToken;

/// The name of the derived keys' root in `server_secrets`.
const DERIVE_ROOT: &str = "derive";
/// A token naming an unknown key reloads the ring at most this often.
const RELOAD_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// Where a ring comes from when it is the database's.
pub struct Source {
    pool: Pool,
    every: Duration,
    last: tokio::sync::Mutex<Instant>,
}

/// A new random key id.
fn new_kid() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl JwtKeys {
    /// The configured secret, or else the database's keys (created when there are none),
    /// reloaded every `reload_every`.
    pub async fn open(
        secret: Option<&SecretString>,
        data_dir: &Path,
        pool: &Pool,
        ttl: Duration,
        reload_every: Duration,
    ) -> anyhow::Result<Self> {
        if let Some(s) = secret {
            let s = s.expose_secret().as_bytes();
            if s.len() < MIN_KEY_BYTES {
                bail!("EPOP_JWT_SECRET must be at least {MIN_KEY_BYTES} bytes");
            }
            return Ok(Self::from_secret(s, ttl));
        }
        let mut conn = pool.get().await.context("cannot load the signing keys")?;
        let (keys, derive) = {
            if !db::keys::any(&mut conn).await? {
                let path = data_dir.join(key_file::KEY_FILE);
                let imported = key_file::read(&path)?;
                if imported.is_some() {
                    tracing::info!(path = %path.display(), "imported the signing key of the data directory into the database");
                }
                let secret = imported.unwrap_or_else(|| rand::random::<[u8; 64]>().to_vec());
                db::keys::secret(&mut conn, DERIVE_ROOT, &derive_root(&secret)).await?;
                db::keys::create_first(&mut conn, &new_kid(), &secret).await?;
            }
            load(&mut conn, ttl, reload_every).await?
        };
        let source = Source {
            pool: pool.clone(),
            every: reload_every,
            // Loaded just now, but a token of a newer key may reload at once.
            last: tokio::sync::Mutex::new(
                Instant::now()
                    .checked_sub(RELOAD_AT_MOST_EVERY)
                    .unwrap_or_else(Instant::now),
            ),
        };
        Self::new(keys, derive, ttl, Some(source))
    }

    /// The caller of a valid token; a token naming a key not loaded yet (one another
    /// instance or `epop keys rotate` just created) reloads the keys first.
    pub async fn authenticate(&self, token: &str) -> Option<Caller> {
        match self.check(token) {
            Verified::Caller(c) => Some(c),
            Verified::Invalid => None,
            Verified::UnknownKey => {
                self.reload_now().await;
                self.verify(token)
            }
        }
    }

    /// Reloads from the database unless that happened less than a second ago.
    async fn reload_now(&self) {
        let Some(source) = &self.source else { return };
        let mut last = source.last.lock().await;
        if last.elapsed() < RELOAD_AT_MOST_EVERY {
            return;
        }
        *last = Instant::now();
        if let Err(e) = self.reload(source).await {
            tracing::warn!(error = %e, "cannot reload the signing keys");
        }
    }

    async fn reload(&self, source: &Source) -> anyhow::Result<()> {
        let mut conn = source.pool.get().await?;
        let (keys, _) = load(&mut conn, self.ttl(), source.every).await?;
        self.replace(keys)
    }

    /// Reloads the keys every period until `stop` (nothing for a configured key).
    pub fn spawn_reloads(self: &Arc<Self>, stop: CancellationToken) {
        let Some(every) = self.source.as_ref().map(|s| s.every) else {
            return;
        };
        let keys = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => keys.reload_now().await,
                }
            }
        });
    }
}

/// The keys that may verify now (the one that signs first), and the derived keys' root. A
/// retired key verifies for a token's lifetime plus one reload period (the time instances
/// may still sign with it) after its retirement.
async fn load(
    conn: &mut diesel_async::AsyncPgConnection,
    ttl: Duration,
    reload_every: Duration,
) -> anyhow::Result<(Vec<Key>, [u8; 32])> {
    let grace = chrono::Duration::from_std(ttl + reload_every)?;
    let rows = db::keys::usable(conn, Utc::now() - grace).await?;
    let keys = rows
        .into_iter()
        .map(|r| Key {
            kid: r.kid,
            secret: r.secret,
            verify_until: r.retired_at.map(|t| t + grace),
        })
        .collect();
    let root = db::keys::secret(conn, DERIVE_ROOT, &rand::random::<[u8; 32]>()).await?;
    let derive = root
        .try_into()
        .map_err(|_| anyhow::anyhow!("the stored derived-key root is not 32 bytes"))?;
    Ok((keys, derive))
}

/// `epop keys rotate`: a new key that each instance signs with from its next reload; the
/// one it replaces keeps verifying until the tokens it signed expire. Answers (new, retired).
pub async fn rotate(pool: &Pool) -> anyhow::Result<(String, Option<String>)> {
    let mut conn = pool.get().await?;
    let kid = new_kid();
    let retired = db::keys::rotate(&mut conn, &kid, &rand::random::<[u8; 64]>())
        .await
        .context("cannot rotate the signing key (another rotation at the same moment?)")?;
    tracing::info!(kid = %kid, retired = ?retired, "rotated the signing key");
    Ok((kid, retired))
}

/// `epop keys list`: every key, newest first.
pub async fn list(pool: &Pool) -> anyhow::Result<Vec<db::keys::SigningKey>> {
    let mut conn = pool.get().await?;
    Ok(db::keys::all(&mut conn).await?)
}
