//! Access tokens: HS256 JWTs with a short lifetime, each naming the key that signed it
//! (`kid`). A key ring holds the key that signs and the keys that still verify: the one
//! configured key, or the keys every instance of one database shares (`keyring.rs`).

use crate::{
    auth::Caller,
    domain::{Role, UserId},
};
use anyhow::Context;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode,
};
use quick_cache::sync::Cache;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::{sync::RwLock, time::Duration};
use uuid::Uuid;

const ISSUER: &str = "epop";

/// How many verified tokens are remembered (about 400 bytes each).
const VERIFIED_TOKENS: usize = 16_384;

/// The claims of an access token.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    /// The user's role name.
    pub role: String,
    /// The session (refresh-token family).
    pub sid: Uuid,
    /// The issuer, always `epop`.
    pub iss: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
}

/// A key of the ring.
pub struct Key {
    /// Its id, carried in the header of the tokens it signs.
    pub kid: String,
    /// The HMAC secret.
    pub secret: Vec<u8>,
    /// Until when it verifies tokens (None: for as long as it is in the ring).
    pub verify_until: Option<DateTime<Utc>>,
}

struct Ring {
    signing: (String, EncodingKey),
    verifying: Vec<(String, DecodingKey, Option<DateTime<Utc>>)>,
}

impl Ring {
    /// `keys[0]` signs; all verify.
    fn new(keys: Vec<Key>) -> anyhow::Result<Self> {
        let first = keys.first().context("a key ring needs a key")?;
        Ok(Self {
            signing: (first.kid.clone(), EncodingKey::from_secret(&first.secret)),
            verifying: keys
                .iter()
                .map(|k| {
                    (
                        k.kid.clone(),
                        DecodingKey::from_secret(&k.secret),
                        k.verify_until,
                    )
                })
                .collect(),
        })
    }
}

/// What checking a token found.
pub enum Verified {
    /// A valid token of this caller.
    Caller(Caller),
    /// Signed with a key this ring does not hold (perhaps one created since it was loaded).
    UnknownKey,
    /// Anything else: bad signature, expired, malformed, a retired key past its time.
    Invalid,
}

/// Signs and verifies access tokens.
pub struct JwtKeys {
    /// HMAC key from which keys for other purposes are derived (never a signing key).
    derive: [u8; 32],
    ring: RwLock<Ring>,
    /// Tokens verified lately, each with when its verification lapses (the token's expiry,
    /// or its key's retirement if sooner) and the key that verified it: a token seen again
    /// skips the signature check. When the ring changes (while its lock is held for writing),
    /// the tokens of keys it no longer holds as they were are forgotten.
    verified: Cache<String, (Caller, DateTime<Utc>, String)>,
    validation: Validation,
    ttl: Duration,
    /// Where the ring is reloaded from, when it comes from the database.
    pub(super) source: Option<super::keyring::Source>,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// The fewest key bytes accepted.
pub const MIN_KEY_BYTES: usize = 32;

/// The root of derived keys for a deployment whose signing secret is `secret`.
pub fn derive_root(secret: &[u8]) -> [u8; 32] {
    <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .expect("HMAC takes keys of any length")
        .chain_update(b"epop derived keys")
        .finalize()
        .into_bytes()
        .into()
}

impl JwtKeys {
    /// One configured secret: it signs and verifies, and is never rotated.
    pub fn from_secret(secret: &[u8], ttl: Duration) -> Self {
        let digest = Sha256::digest(secret);
        let kid: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        let kid = format!("cfg-{kid}");
        let key = Key {
            kid,
            secret: secret.to_vec(),
            verify_until: None,
        };
        Self::new(vec![key], derive_root(secret), ttl, None).expect("one key")
    }

    /// A ring of `keys` (the first signs) with derived keys from `derive`.
    pub(super) fn new(
        keys: Vec<Key>,
        derive: [u8; 32],
        ttl: Duration,
        source: Option<super::keyring::Source>,
    ) -> anyhow::Result<Self> {
        // HS256 only: tokens signed with any other algorithm, or `none`, are rejected.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        Ok(Self {
            derive,
            ring: RwLock::new(Ring::new(keys)?),
            verified: Cache::new(VERIFIED_TOKENS),
            validation,
            ttl,
            source,
        })
    }

    /// Replaces the ring's keys (the first signs), unless they are the ones it holds (a reload
    /// that found nothing new changes nothing). Remembered tokens stay verified when their
    /// key is still in the ring with the same retirement.
    pub(super) fn replace(&self, keys: Vec<Key>) -> anyhow::Result<()> {
        let ring = Ring::new(keys)?;
        let mut held = self.ring.write().expect("the key ring lock");
        let same = |a: &Ring, b: &Ring| {
            a.signing.0 == b.signing.0
                && a.verifying.len() == b.verifying.len()
                && a.verifying
                    .iter()
                    .zip(&b.verifying)
                    .all(|(x, y)| x.0 == y.0 && x.2 == y.2)
        };
        if same(&held, &ring) {
            return Ok(());
        }
        let kept: Vec<(String, Option<DateTime<Utc>>)> = ring
            .verifying
            .iter()
            .filter(|(kid, _, until)| {
                held.verifying
                    .iter()
                    .any(|(k, _, u)| k == kid && u == until)
            })
            .map(|(kid, _, until)| (kid.clone(), *until))
            .collect();
        *held = ring;
        self.verified
            .retain(|_, (_, _, kid)| kept.iter().any(|(k, _)| k == kid));
        Ok(())
    }

    /// The access tokens' lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The id of the key that signs now.
    pub fn signing_kid(&self) -> String {
        self.ring
            .read()
            .expect("the key ring lock")
            .signing
            .0
            .clone()
    }

    /// A 32-byte key for `purpose`, derived from the deployment's root secret: every instance
    /// that verifies the same tokens derives the same keys, whatever key signs now.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        <Hmac<Sha256> as Mac>::new_from_slice(&self.derive)
            .expect("HMAC takes keys of any length")
            .chain_update(purpose.as_bytes())
            .finalize()
            .into_bytes()
            .into()
    }

    /// Issues an access token; returns it with its expiry.
    pub fn issue(
        &self,
        user: UserId,
        role: Role,
        session: Uuid,
    ) -> anyhow::Result<(String, DateTime<Utc>)> {
        let now = Utc::now();
        let exp = now + self.ttl;
        let claims = Claims {
            sub: user.0,
            role: role.as_str().to_owned(),
            sid: session,
            iss: ISSUER.to_owned(),
            iat: now.timestamp(),
            exp: exp.timestamp(),
        };
        let ring = self.ring.read().expect("the key ring lock");
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(ring.signing.0.clone());
        let token =
            encode(&header, &claims, &ring.signing.1).context("cannot sign an access token")?;
        Ok((token, exp))
    }

    /// Checks a token's key, signature, algorithm, issuer and expiry (or finds it verified
    /// already, and neither expired nor past its key's retirement since).
    pub fn check(&self, token: &str) -> Verified {
        let now = Utc::now();
        if let Some((caller, until, _)) = self.verified.get(token)
            && now < until
        {
            return Verified::Caller(caller);
        }
        let Ok(header) = decode_header(token) else {
            return Verified::Invalid;
        };
        let ring = self.ring.read().expect("the key ring lock");
        let usable = |until: &Option<DateTime<Utc>>| until.is_none_or(|u| now < u);
        type Candidate<'a> = (&'a str, &'a DecodingKey, &'a Option<DateTime<Utc>>);
        let candidates: Vec<Candidate> = match &header.kid {
            Some(kid) => match ring.verifying.iter().find(|(k, _, _)| k == kid) {
                Some((kid, key, until)) if usable(until) => vec![(kid, key, until)],
                Some(_) => return Verified::Invalid,
                // Only a key id of the form this server makes may be one it has not loaded.
                None if is_key_id(kid) => return Verified::UnknownKey,
                None => return Verified::Invalid,
            },
            // Tokens issued before keys had ids: any key that still verifies.
            None => ring
                .verifying
                .iter()
                .filter(|(_, _, until)| usable(until))
                .map(|(kid, key, until)| (kid.as_str(), key, until))
                .collect(),
        };
        for (kid, key, key_until) in candidates {
            if let Ok(data) = decode::<Claims>(token, key, &self.validation) {
                let Some(c) = caller(data.claims) else {
                    return Verified::Invalid;
                };
                // Under the ring's read lock: a replacement cannot clear the cache between.
                let until = key_until.map_or(c.expires_at, |k| k.min(c.expires_at));
                self.verified
                    .insert(token.to_owned(), (c, until, kid.to_owned()));
                return Verified::Caller(c);
            }
        }
        Verified::Invalid
    }

    /// The caller of a valid token with a key this ring holds now.
    pub fn verify(&self, token: &str) -> Option<Caller> {
        match self.check(token) {
            Verified::Caller(c) => Some(c),
            _ => None,
        }
    }
}

/// True for the key ids the ring's keys have: 16 hex digits (database keys) or `cfg-` and
/// 12 (a configured secret).
fn is_key_id(kid: &str) -> bool {
    let hex = kid.strip_prefix("cfg-").unwrap_or(kid);
    matches!(hex.len(), 12 | 16) && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

fn caller(claims: Claims) -> Option<Caller> {
    Some(Caller {
        user_id: UserId(claims.sub),
        role: Role::from_name(&claims.role)?,
        session: claims.sid,
        expires_at: DateTime::from_timestamp(claims.exp, 0)?,
    })
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
