//! Access tokens: HS256 JWTs with a short lifetime. The key comes from configuration or is
//! generated once and kept in the data directory with mode 0600.

use crate::{
    auth::Caller,
    domain::{Role, UserId},
};
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::{io::Write, os::unix::fs::OpenOptionsExt, path::Path, time::Duration};
use uuid::Uuid;

const ISSUER: &str = "epop";
/// The file under the data directory that keeps the generated key.
pub const KEY_FILE: &str = "jwt.key";

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

/// Signs and verifies access tokens.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl JwtKeys {
    /// Keys from `secret`, or from `<data_dir>/jwt.key`, generating it on first use.
    pub fn load(
        secret: Option<&SecretString>,
        data_dir: &Path,
        ttl: Duration,
    ) -> anyhow::Result<Self> {
        let bytes = match secret {
            Some(s) => {
                let s = s.expose_secret().as_bytes().to_vec();
                if s.len() < 32 {
                    bail!("EPOP_JWT_SECRET must be at least 32 bytes");
                }
                s
            }
            None => load_or_create_key_file(&data_dir.join(KEY_FILE))?,
        };
        Ok(Self::from_secret(&bytes, ttl))
    }

    /// Keys from raw secret bytes.
    pub fn from_secret(secret: &[u8], ttl: Duration) -> Self {
        // HS256 only: tokens signed with any other algorithm, or `none`, are rejected.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
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
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .context("cannot sign an access token")?;
        Ok((token, exp))
    }

    /// Verifies a token's signature, algorithm, issuer and expiry.
    pub fn verify(&self, token: &str) -> Option<Caller> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
        let role = Role::from_name(&data.claims.role)?;
        Some(Caller {
            user_id: UserId(data.claims.sub),
            role,
            session: data.claims.sid,
        })
    }
}

fn load_or_create_key_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    use base64::{Engine, engine::general_purpose::STANDARD};
    match std::fs::read_to_string(path) {
        Ok(text) => STANDARD
            .decode(text.trim())
            .with_context(|| format!("{} is not a base64 key", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let key: [u8; 64] = rand::random();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            writeln!(f, "{}", STANDARD.encode(key))?;
            tracing::info!(path = %path.display(), "generated a new JWT signing key");
            Ok(key.to_vec())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
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
    fn the_key_file_is_created_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_key_file(&dir.path().join(KEY_FILE)).unwrap();
        let b = load_or_create_key_file(&dir.path().join(KEY_FILE)).unwrap();
        assert_eq!(a, b);
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
