//! Web Push: the payload encrypted for the browser's keys (RFC 8291, aes128gcm, by
//! `web-push-native`), signed for the push service with the server's VAPID key (RFC 8292),
//! with `TTL`, `Urgency` and `Topic` (RFC 8030).

use super::{Outcome, Push, by_status, retry_after};
use crate::domain::notifications::Device;
use anyhow::Context;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use web_push_native::{
    Auth, WebPushBuilder,
    jwt_simple::{
        algorithms::{ECDSAP256KeyPairLike, ECDSAP256PublicKeyLike, ES256KeyPair},
        claims::Claims,
    },
    p256,
};

/// How long a VAPID token is valid (RFC 8292 allows at most 24 hours).
const VAPID_VALIDITY_HOURS: u64 = 12;

/// The server's VAPID key pair (P-256).
pub struct VapidKey(ES256KeyPair);

impl std::fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKey").finish_non_exhaustive()
    }
}

impl VapidKey {
    /// A fresh key pair's private scalar (32 bytes), to store.
    pub fn generate() -> Vec<u8> {
        ES256KeyPair::generate().to_bytes()
    }

    /// The key pair of a private scalar (raw 32 bytes).
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        ES256KeyPair::from_bytes(bytes)
            .map(Self)
            .map_err(|e| anyhow::anyhow!("not a P-256 private key: {e}"))
    }

    /// The key pair of a private scalar written in base64url (EPOP_VAPID_PRIVATE_KEY).
    pub fn from_base64(text: &str) -> anyhow::Result<Self> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim().trim_end_matches('='))
            .context("EPOP_VAPID_PRIVATE_KEY is not base64url")?;
        Self::from_bytes(&bytes)
    }

    /// The public key: an uncompressed point, base64url.
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.public_key().public_key().to_bytes_uncompressed())
    }
}

/// Sends Web Push messages.
#[derive(Debug)]
pub(super) struct WebPush {
    http: reqwest::Client,
    key: VapidKey,
    subject: String,
    insecure: bool,
}

impl WebPush {
    pub(super) fn new(
        http: reqwest::Client,
        key: VapidKey,
        subject: String,
        insecure: bool,
    ) -> Self {
        Self {
            http,
            key,
            subject,
            insecure,
        }
    }

    pub(super) fn public_key(&self) -> String {
        self.key.public_key()
    }

    /// The `Authorization` header: a VAPID token for the endpoint's origin (scheme, host and
    /// port: the `web-push-native` signer leaves a non-default port out), and the key.
    fn authorization(&self, endpoint: &url::Url) -> anyhow::Result<String> {
        let claims = Claims::create(web_push_native::jwt_simple::prelude::Duration::from_hours(
            VAPID_VALIDITY_HOURS,
        ))
        .with_audience(endpoint.origin().ascii_serialization())
        .with_subject(&self.subject);
        let token = self
            .key
            .0
            .sign(claims)
            .map_err(|e| anyhow::anyhow!("cannot sign the VAPID token: {e}"))?;
        Ok(format!("vapid t={token}, k={}", self.public_key()))
    }

    pub(super) async fn send(&self, device: &Device, push: &Push) -> anyhow::Result<Outcome> {
        let key = |v: &Option<String>| {
            v.as_deref()
                .and_then(|k| URL_SAFE_NO_PAD.decode(k.trim_end_matches('=')).ok())
        };
        let (Some(p256dh), Some(auth)) = (key(&device.p256dh), key(&device.auth)) else {
            return Ok(Outcome::Gone);
        };
        let (Ok(public), 16) = (p256::PublicKey::from_sec1_bytes(&p256dh), auth.len()) else {
            return Ok(Outcome::Gone);
        };
        // An endpoint that does not parse, or (registered under other settings) points
        // inward, is no device.
        let (Ok(endpoint), Ok(uri)) = (
            url::Url::parse(&device.address),
            device.address.parse::<http::Uri>(),
        ) else {
            return Ok(Outcome::Gone);
        };
        let allowed = endpoint.scheme() == "https" && super::public::host_allowed(endpoint.host());
        if !self.insecure && !allowed {
            return Ok(Outcome::Gone);
        }
        let body = serde_json::to_vec(&push.payload)?;
        let request = WebPushBuilder::new(uri, public, Auth::clone_from_slice(&auth))
            .with_valid_duration(push.ttl)
            .build(body)
            .map_err(|e| anyhow::anyhow!("cannot encrypt the push: {e}"))?;
        let (parts, body) = request.into_parts();
        let answer = self
            .http
            .post(endpoint.clone())
            .headers(parts.headers)
            .header("Urgency", push.urgency.as_str())
            .header("Topic", &push.topic)
            .header(
                reqwest::header::AUTHORIZATION,
                self.authorization(&endpoint)?,
            )
            .body(body)
            .send()
            .await?;
        let status = answer.status();
        Ok(
            by_status(status, retry_after(answer.headers())).unwrap_or(match status.as_u16() {
                404 | 410 => Outcome::Gone,
                _ => Outcome::Refused(format!("push service answered {status}")),
            }),
        )
    }
}
