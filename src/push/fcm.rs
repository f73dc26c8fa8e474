//! FCM HTTP v1: an OAuth 2.0 access token from the service account (a JWT signed RS256 with
//! its key, exchanged at its `token_uri`, kept until shortly before it expires), then one
//! `messages:send` per device, with the collapse key, priority and TTL on Android and APNs.

use super::{Outcome, Push, by_status, retry_after};
use crate::domain::notifications::Urgency;
use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use std::{
    path::Path,
    time::{Duration, Instant},
};
use tokio::sync::Mutex;

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// The fields of a service-account file that FCM needs.
#[derive(Deserialize)]
struct ServiceAccount {
    project_id: String,
    client_email: String,
    private_key: String,
    token_uri: String,
}

pub(super) struct Fcm {
    http: reqwest::Client,
    key: EncodingKey,
    account: ServiceAccount,
    send_url: String,
    token: Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for Fcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fcm")
            .field("project_id", &self.account.project_id)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

#[derive(Deserialize)]
struct Token {
    access_token: String,
    expires_in: u64,
}

impl Fcm {
    pub(super) fn new(http: reqwest::Client, path: &Path, endpoint: &str) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read EPOP_FCM_CREDENTIALS {}", path.display()))?;
        let account: ServiceAccount =
            serde_json::from_str(&text).context("EPOP_FCM_CREDENTIALS is not a service account")?;
        let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .context("the service account's private_key is not an RSA key")?;
        let send_url = format!(
            "{}/v1/projects/{}/messages:send",
            endpoint.trim_end_matches('/'),
            account.project_id
        );
        Ok(Self {
            http,
            key,
            account,
            send_url,
            token: Mutex::new(None),
        })
    }

    /// An access token, fetched again a minute before the last one expires.
    async fn access_token(&self) -> anyhow::Result<String> {
        let mut held = self.token.lock().await;
        if let Some((token, until)) = &*held
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let now = chrono::Utc::now().timestamp();
        let assertion = jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            &Assertion {
                iss: &self.account.client_email,
                scope: SCOPE,
                aud: &self.account.token_uri,
                iat: now,
                exp: now + 3600,
            },
            &self.key,
        )?;
        let answer = self
            .http
            .post(&self.account.token_uri)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await?
            .error_for_status()
            .context("the OAuth token endpoint refused the service account")?;
        let token: Token = answer.json().await?;
        let until = Instant::now() + Duration::from_secs(token.expires_in.saturating_sub(60));
        *held = Some((token.access_token.clone(), until));
        Ok(token.access_token)
    }

    pub(super) async fn send(&self, token: &str, push: &Push) -> anyhow::Result<Outcome> {
        let p = &push.payload;
        let mut data = serde_json::Map::new();
        if let serde_json::Value::Object(fields) = serde_json::to_value(p)? {
            for (k, v) in fields {
                // FCM data values are strings.
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                data.insert(k, v.into());
            }
        }
        let high = push.urgency == Urgency::High;
        let message = serde_json::json!({
            "message": {
                "token": token,
                "notification": { "title": p.title, "body": p.body },
                "data": data,
                "android": {
                    "collapse_key": push.topic,
                    "priority": if high { "HIGH" } else { "NORMAL" },
                    "ttl": format!("{}s", push.ttl.as_secs()),
                },
                "apns": {
                    "headers": {
                        "apns-collapse-id": push.topic,
                        "apns-priority": if high { "10" } else { "5" },
                    }
                },
            }
        });
        let answer = self
            .http
            .post(&self.send_url)
            .bearer_auth(self.access_token().await?)
            .json(&message)
            .send()
            .await?;
        let status = answer.status();
        if let Some(o) = by_status(status, retry_after(answer.headers())) {
            return Ok(o);
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            // The token was revoked early: fetch another next time.
            *self.token.lock().await = None;
            return Ok(Outcome::Retry(None));
        }
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        let codes: Vec<&str> = body["error"]["details"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["errorCode"].as_str())
            .collect();
        let gone = status == reqwest::StatusCode::NOT_FOUND
            || codes
                .iter()
                .any(|c| matches!(*c, "UNREGISTERED" | "SENDER_ID_MISMATCH"));
        Ok(if gone {
            Outcome::Gone
        } else {
            Outcome::Refused(format!("FCM answered {status} {codes:?}"))
        })
    }
}
