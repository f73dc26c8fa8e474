//! Access tokens: HS256 JWTs with a short lifetime. The key comes from configuration or is
//! generated once and kept in the data directory with mode 0600.

use crate::{
    auth::Caller,
    domain::{Role, UserId},
};
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
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
    /// HMAC key from which keys for other purposes are derived (never the secret itself).
    derive: [u8; 32],
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
                if s.len() < MIN_KEY_BYTES {
                    bail!("EPOP_JWT_SECRET must be at least {MIN_KEY_BYTES} bytes");
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
        let derive = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .expect("HMAC takes keys of any length")
            .chain_update(b"epop derived keys")
            .finalize()
            .into_bytes()
            .into();
        Self {
            derive,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    /// A 32-byte key for `purpose`, derived from the signing secret: every instance that
    /// verifies the same tokens derives the same keys.
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
            expires_at: DateTime::from_timestamp(data.claims.exp, 0)?,
        })
    }
}

/// The fewest key bytes accepted, configured or from a file.
pub const MIN_KEY_BYTES: usize = 32;

/// The key kept in `path`, created there when absent. The file is written under a temporary
/// name, fsynced, and linked into place (which fails if another process got there first),
/// then the directory is fsynced: it is either whole or absent, and concurrent first starts
/// all read the one key that was linked first. Whatever the file holds must be a base64 key
/// of at least [`MIN_KEY_BYTES`] bytes, or the server refuses to start.
fn load_or_create_key_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_key_file(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_key_file(path),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn parse_key_file(path: &Path, text: &str) -> anyhow::Result<Vec<u8>> {
    use base64::{Engine, engine::general_purpose::STANDARD};
    let fix = "delete it to generate a new key (every access token signed with the old one \
               stops working) or set EPOP_JWT_SECRET";
    let key = STANDARD
        .decode(text.trim())
        .map_err(|_| anyhow::anyhow!("{} is not a base64 key: {fix}", path.display()))?;
    if key.len() < MIN_KEY_BYTES {
        bail!(
            "{} holds a {}-byte key, at least {MIN_KEY_BYTES} are required: {fix}",
            path.display(),
            key.len()
        );
    }
    Ok(key)
}

fn create_key_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    use base64::{Engine, engine::general_purpose::STANDARD};
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key: [u8; 64] = rand::random();
    let tmp = dir.join(format!(
        ".{KEY_FILE}.{}.{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        writeln!(f, "{}", STANDARD.encode(key))?;
        f.sync_all()?;
        // A hard link, unlike a rename, never replaces a key another start linked first.
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("cannot sync {}", dir.display()))?;
            tracing::info!(path = %path.display(), "generated a new JWT signing key");
            Ok(key.to_vec())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            parse_key_file(path, &text)
        }
        Err(e) => Err(e).with_context(|| format!("cannot write {}", path.display())),
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

    #[test]
    fn an_empty_short_or_garbled_key_file_is_refused_with_what_to_do() {
        for (content, says) in [
            ("", "0-byte key"),
            ("\n", "0-byte key"),
            ("c2hvcnQ=\n", "5-byte key"),
            ("not base64 at all!\n", "not a base64 key"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(KEY_FILE);
            std::fs::write(&path, content).unwrap();
            let err = load_or_create_key_file(&path).unwrap_err().to_string();
            assert!(err.contains(says), "{content:?}: {err}");
            assert!(err.contains("EPOP_JWT_SECRET"), "{content:?}: {err}");
        }
    }

    #[test]
    fn concurrent_first_starts_agree_on_one_key_and_leave_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let keys: Vec<Vec<u8>> = std::thread::scope(|s| {
            let all: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load_or_create_key_file(&path).unwrap()))
                .collect();
            all.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| k == &keys[0] && k.len() == 64));
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only {KEY_FILE} remains");
    }
}
