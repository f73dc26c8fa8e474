//! TOTP second factors (RFC 6238 with `totp-rs`: SHA-1, 6 digits, 30-second steps, one step
//! of clock skew either way), their `otpauth://` URIs and QR codes, and recovery codes.

use crate::{
    domain::security::RECOVERY_CODE_LEN,
    error::{Error, Result},
};
use anyhow::Context;
use sha2::{Digest, Sha256};
use totp_rs::{Builder, Secret, Totp};

/// The issuer authenticator apps show beside the account.
const ISSUER: &str = "EPOP";

/// How many recovery codes a user gets.
pub const RECOVERY_CODES: usize = 10;

/// A new random secret of 160 bits (RFC 4226's recommendation).
pub fn new_secret() -> Vec<u8> {
    rand::random::<[u8; 20]>().to_vec()
}

fn totp(secret: &[u8], account: &str) -> Result<Totp> {
    Builder::new()
        .with_secret(secret.to_vec())
        .with_account_name(account)
        .with_issuer(Some(ISSUER))
        .build()
        .context("a TOTP of a stored secret")
        .map_err(Error::Internal)
}

/// What a user adds to their authenticator app.
#[derive(Debug, Clone)]
pub struct Enrollment {
    /// The secret in base32.
    pub secret: String,
    /// The `otpauth://totp/EPOP:<account>?secret=...&issuer=EPOP` URI.
    pub uri: String,
    /// The URI as a QR code (SVG).
    pub qr_svg: String,
}

/// The enrolment of `secret` for `account` (the user's email).
pub fn enrollment(secret: &[u8], account: &str) -> Result<Enrollment> {
    let t = totp(secret, account)?;
    let uri = t
        .to_url()
        .context("an otpauth URI")
        .map_err(Error::Internal)?;
    let qr = qrcode::QrCode::new(uri.as_bytes())
        .context("a QR code of the otpauth URI")
        .map_err(Error::Internal)?;
    let qr_svg = qr
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .build();
    Ok(Enrollment {
        secret: Secret::from(secret.to_vec()).to_base32(),
        uri,
        qr_svg,
    })
}

/// The time step whose code `code` is, now (allowing one step of skew), when it is later than
/// `after` (a step already used): a code works once.
pub fn accept(secret: &[u8], code: &str, after: i64) -> Result<Option<i64>> {
    let t = totp(secret, "")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| Error::Internal(e.into()))?
        .as_secs();
    let origin = now / t.step();
    // Each step of the window is checked on its own, so an older step that matches does not
    // hide a newer one and a step already used is refused.
    let steps = origin.saturating_sub(1)..=origin + 1;
    Ok(steps
        .filter_map(|s| i64::try_from(s).ok().filter(|s| *s > after))
        .find(|&s| {
            t.check(code, s as u64 * t.step())
                .is_some_and(|m| m as i64 == s)
        }))
}

/// New recovery codes: [`RECOVERY_CODES`] of 16 base32 characters (80 bits), shown as
/// `XXXX-XXXX-XXXX-XXXX`, with the hashes to store.
pub fn recovery_codes() -> (Vec<String>, Vec<Vec<u8>>) {
    (0..RECOVERY_CODES)
        .map(|_| {
            let raw = Secret::from(rand::random::<[u8; 10]>().to_vec()).to_base32();
            let code: String = raw.chars().take(RECOVERY_CODE_LEN).collect();
            let shown = code
                .as_bytes()
                .chunks(4)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("-");
            (shown, recovery_hash(&code))
        })
        .unzip()
}

/// What is stored of a (normalised) recovery code.
pub fn recovery_hash(code: &str) -> Vec<u8> {
    Sha256::new()
        .chain_update(b"epop recovery code\0")
        .chain_update(code.as_bytes())
        .finalize()
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_accepted_once_and_the_uri_carries_the_secret() {
        let secret = new_secret();
        let t = totp(&secret, "ada@example.com").unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let code = t.generate(now).to_string();
        let step = accept(&secret, &code, 0).unwrap().expect("a current code");
        assert_eq!(accept(&secret, &code, step).unwrap(), None);
        let e = enrollment(&secret, "ada@example.com").unwrap();
        assert!(
            e.uri.starts_with("otpauth://totp/EPOP:ada%40example.com?"),
            "{}",
            e.uri
        );
        assert!(e.uri.contains(&format!("secret={}", e.secret)), "{}", e.uri);
        assert!(e.qr_svg.contains("<svg"));
    }

    #[test]
    fn recovery_codes_are_ten_distinct_and_stored_hashed() {
        let (codes, hashes) = recovery_codes();
        assert_eq!((codes.len(), hashes.len()), (10, 10));
        let normal: String = codes[0].chars().filter(|c| *c != '-').collect();
        assert_eq!(normal.len(), RECOVERY_CODE_LEN);
        assert_eq!(recovery_hash(&normal), hashes[0]);
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 10);
    }
}
