//! APNs over HTTP/2 with token-based authentication: a provider token (a JWT signed ES256
//! with the team's `.p8` key, `kid` the key id, `iss` the team), renewed every 50 minutes
//! (APNs refuses tokens older than an hour, and renewals more often than every 20 minutes),
//! then one request per device with the topic, priority, expiry and collapse id.

use super::{Outcome, Push, by_status, retry_after};
use crate::{config::PushArgs, domain::notifications::Urgency};
use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const TOKEN_LIFETIME: Duration = Duration::from_secs(50 * 60);

pub(super) struct Apns {
    http: reqwest::Client,
    key: EncodingKey,
    key_id: String,
    team_id: String,
    topic: String,
    endpoint: String,
    token: Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for Apns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Apns")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: i64,
}

impl Apns {
    pub(super) fn new(path: &std::path::Path, args: &PushArgs) -> anyhow::Result<Self> {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read EPOP_APNS_KEY {}", path.display()))?;
        let key = EncodingKey::from_ec_pem(&pem).context("EPOP_APNS_KEY is not a P-256 key")?;
        for (name, value) in [
            ("EPOP_APNS_KEY_ID", &args.apns_key_id),
            ("EPOP_APNS_TEAM_ID", &args.apns_team_id),
            ("EPOP_APNS_TOPIC", &args.apns_topic),
        ] {
            anyhow::ensure!(!value.is_empty(), "EPOP_APNS_KEY is set: set {name} too");
        }
        // APNs speaks HTTP/2 only.
        let http = reqwest::Client::builder()
            .http2_prior_knowledge()
            .timeout(Duration::from_secs(20))
            .build()?;
        Ok(Self {
            http,
            key,
            key_id: args.apns_key_id.clone(),
            team_id: args.apns_team_id.clone(),
            topic: args.apns_topic.clone(),
            endpoint: args.apns_endpoint.trim_end_matches('/').to_owned(),
            token: Mutex::new(None),
        })
    }

    async fn provider_token(&self, renew: bool) -> anyhow::Result<String> {
        let mut held = self.token.lock().await;
        if let Some((token, at)) = &*held
            && !renew
            && at.elapsed() < TOKEN_LIFETIME
        {
            return Ok(token.clone());
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let token = jsonwebtoken::encode(
            &header,
            &Claims {
                iss: &self.team_id,
                iat: chrono::Utc::now().timestamp(),
            },
            &self.key,
        )?;
        *held = Some((token.clone(), Instant::now()));
        Ok(token)
    }

    pub(super) async fn send(&self, device: &str, push: &Push) -> anyhow::Result<Outcome> {
        if device.is_empty() || !device.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Outcome::Gone);
        }
        let p = &push.payload;
        let mut body = serde_json::to_value(p)?;
        body["aps"] = serde_json::json!({
            "alert": { "title": p.title, "body": p.body },
            "thread-id": push.topic,
            "sound": "default",
        });
        let expires = chrono::Utc::now().timestamp() + push.ttl.as_secs() as i64;
        let high = push.urgency == Urgency::High;
        let mut renew = false;
        loop {
            let answer = self
                .http
                .post(format!("{}/3/device/{device}", self.endpoint))
                .header(
                    "authorization",
                    format!("bearer {}", self.provider_token(renew).await?),
                )
                .header("apns-topic", &self.topic)
                .header("apns-push-type", "alert")
                .header("apns-priority", if high { "10" } else { "5" })
                .header("apns-expiration", expires.to_string())
                .header("apns-collapse-id", &push.topic)
                .json(&body)
                .send()
                .await?;
            let status = answer.status();
            if let Some(o) = by_status(status, retry_after(answer.headers())) {
                return Ok(o);
            }
            let reason = answer
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v["reason"].as_str().map(str::to_owned))
                .unwrap_or_default();
            match reason.as_str() {
                "ExpiredProviderToken" if !renew => renew = true,
                "BadDeviceToken" | "Unregistered" | "DeviceTokenNotForTopic" => {
                    return Ok(Outcome::Gone);
                }
                _ if status == reqwest::StatusCode::GONE => return Ok(Outcome::Gone),
                _ => return Ok(Outcome::Refused(format!("APNs answered {status} {reason}"))),
            }
        }
    }
}
