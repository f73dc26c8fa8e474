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
    /// or its key's retirement if sooner): a token seen again skips the signature check.
    /// Emptied whenever the ring changes, while the ring's lock is held for writing.
    verified: Cache<String, (Caller, DateTime<Utc>)>,
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

    /// Replaces the ring's keys (the first signs).
    pub(super) fn replace(&self, keys: Vec<Key>) -> anyhow::Result<()> {
        let ring = Ring::new(keys)?;
        let mut held = self.ring.write().expect("the key ring lock");
        *held = ring;
        self.verified.clear();
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
        if let Some((caller, until)) = self.verified.get(token)
            && now < until
        {
            return Verified::Caller(caller);
        }
        let Ok(header) = decode_header(token) else {
            return Verified::Invalid;
        };
        let ring = self.ring.read().expect("the key ring lock");
        let usable = |until: &Option<DateTime<Utc>>| until.is_none_or(|u| now < u);
        let candidates: Vec<(&DecodingKey, &Option<DateTime<Utc>>)> = match &header.kid {
            Some(kid) => match ring.verifying.iter().find(|(k, _, _)| k == kid) {
                Some((_, key, until)) if usable(until) => vec![(key, until)],
                Some(_) => return Verified::Invalid,
                None => return Verified::UnknownKey,
            },
            // Tokens issued before keys had ids: any key that still verifies.
            None => ring
                .verifying
                .iter()
                .filter(|(_, _, until)| usable(until))
                .map(|(_, key, until)| (key, until))
                .collect(),
        };
        for (key, key_until) in candidates {
            if let Ok(data) = decode::<Claims>(token, key, &self.validation) {
                let Some(c) = caller(data.claims) else {
                    return Verified::Invalid;
                };
                // Under the ring's read lock: a replacement cannot clear the cache between.
                let until = key_until.map_or(c.expires_at, |k| k.min(c.expires_at));
                self.verified.insert(token.to_owned(), (c, until));
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

fn caller(claims: Claims) -> Option<Caller> {
    Some(Caller {
        user_id: UserId(claims.sub),
        role: Role::from_name(&claims.role)?,
        session: claims.sid,
        expires_at: DateTime::from_timestamp(claims.exp, 0)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_only_with_its_own_key() {
        let keys = JwtKeys::from_secret(&[7; 32], Duration::from_secs(60));
        let (t, _) = keys
            .issue(UserId(Uuid::nil()), Role::Admin, Uuid::nil())
            .unwrap();
        assert_eq!(keys.verify(&t).unwrap().role, Role::Admin);
        let other = JwtKeys::from_secret(&[8; 32], Duration::from_secs(60));
        assert!(other.verify(&t).is_none());
    }

    #[test]
    fn a_token_names_its_key_and_an_unknown_key_is_told_apart() {
        let keys = JwtKeys::from_secret(&[7; 32], Duration::from_secs(60));
        let (t, _) = keys
            .issue(UserId(Uuid::nil()), Role::User, Uuid::nil())
            .unwrap();
        let kid = decode_header(&t).unwrap().kid.unwrap();
        assert_eq!(kid, keys.signing_kid());
        let other = JwtKeys::from_secret(&[8; 32], Duration::from_secs(60));
        assert!(matches!(other.check(&t), Verified::UnknownKey));
        assert!(matches!(other.check("not.a.token"), Verified::Invalid));
    }

    #[test]
    fn a_retired_key_verifies_until_its_time_then_not() {
        let key = |kid: &str, secret: u8, until: Option<DateTime<Utc>>| Key {
            kid: kid.into(),
            secret: vec![secret; 32],
            verify_until: until,
        };
        let ttl = Duration::from_secs(60);
        let old = JwtKeys::new(vec![key("old", 1, None)], [0; 32], ttl, None).unwrap();
        let (t, _) = old
            .issue(UserId(Uuid::nil()), Role::User, Uuid::nil())
            .unwrap();
        let later = Utc::now() + chrono::Duration::seconds(30);
        let ring = JwtKeys::new(
            vec![key("new", 2, None), key("old", 1, Some(later))],
            [0; 32],
            ttl,
            None,
        )
        .unwrap();
        assert!(ring.verify(&t).is_some());
        assert_eq!(ring.verified.len(), 1);
        assert_eq!(ring.signing_kid(), "new");
        let past = Utc::now() - chrono::Duration::seconds(1);
        ring.replace(vec![key("new", 2, None), key("old", 1, Some(past))])
            .unwrap();
        assert_eq!(
            ring.verified.len(),
            0,
            "a new ring forgets what the old one verified"
        );
        assert!(matches!(ring.check(&t), Verified::Invalid));
    }

    #[test]
    fn a_verified_token_is_remembered_only_until_its_key_retires() {
        let soon = Utc::now() + chrono::Duration::milliseconds(600);
        let key = Key {
            kid: "k".into(),
            secret: vec![3; 32],
            verify_until: Some(soon),
        };
        let keys = JwtKeys::new(vec![key], [0; 32], Duration::from_secs(60), None).unwrap();
        let (t, _) = keys
            .issue(UserId(Uuid::nil()), Role::User, Uuid::nil())
            .unwrap();
        assert!(keys.verify(&t).is_some());
        assert_eq!(keys.verified.len(), 1, "remembered");
        assert!(keys.verify(&t).is_some(), "a second check, from the cache");
        let mut forged = t.clone();
        forged.push('x');
        assert!(
            keys.verify(&forged).is_none(),
            "only the very token is remembered"
        );
        assert_eq!(
            keys.verified.len(),
            1,
            "a token that fails is not remembered"
        );
        std::thread::sleep(Duration::from_millis(700));
        assert!(matches!(keys.check(&t), Verified::Invalid));
    }
}
