//! Push services: hands one push to one device over Web Push (RFC 8030, encrypted per RFC
//! 8291, VAPID per RFC 8292), FCM HTTP v1 or APNs, and tells what became of it: sent, the
//! device is gone (remove it), try again (when the service said), or refused.

mod apns;
mod fcm;
pub mod public;
mod web;

use crate::{
    config::PushArgs,
    domain::notifications::{Device, PushPayload, Urgency},
};
use anyhow::Context;
use std::time::Duration;

pub use web::VapidKey;

/// One push: what it carries and how the service should treat it.
#[derive(Debug, Clone)]
pub struct Push {
    /// What the device receives.
    pub payload: PushPayload,
    /// How urgently.
    pub urgency: Urgency,
    /// How long the service may hold it for an offline device.
    pub ttl: Duration,
    /// Pushes of one topic replace each other on the service (Web Push `Topic`, FCM
    /// `collapse_key`, APNs `apns-collapse-id`): 32 characters.
    pub topic: String,
}

/// What became of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The service accepted it.
    Sent,
    /// The service no longer knows the device (404/410, `UNREGISTERED`, `BadDeviceToken`):
    /// remove it.
    Gone,
    /// Try again later (429, 5xx, no answer), after this long when the service said.
    Retry(Option<Duration>),
    /// The service refused it for good (the reason goes to the log).
    Refused(String),
}

/// The push services this server is configured for.
#[derive(Debug)]
pub struct Pushers {
    /// Web Push endpoints may be plain `http` or on private addresses.
    pub allow_insecure: bool,
    web: web::WebPush,
    fcm: Option<fcm::Fcm>,
    apns: Option<apns::Apns>,
}

impl Pushers {
    /// The services of `args`, Web Push signing with `vapid` as `subject`.
    pub fn new(args: &PushArgs, vapid: VapidKey, subject: String) -> anyhow::Result<Self> {
        // The configured services (FCM's token and send URLs) are the operator's.
        let http = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .build()
            .context("cannot build the push HTTP client")?;
        // Web Push endpoints are users': public addresses only, no redirects.
        let mut users = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        if !args.push_allow_insecure {
            users = users.dns_resolver(std::sync::Arc::new(public::PublicOnly));
        }
        let users = users
            .build()
            .context("cannot build the Web Push HTTP client")?;
        let fcm = match &args.fcm_credentials {
            Some(path) => Some(fcm::Fcm::new(http.clone(), path, &args.fcm_endpoint)?),
            None => None,
        };
        let apns = match &args.apns_key {
            Some(path) => Some(apns::Apns::new(path, args)?),
            None => None,
        };
        Ok(Self {
            allow_insecure: args.push_allow_insecure,
            web: web::WebPush::new(users, vapid, subject, args.push_allow_insecure),
            fcm,
            apns,
        })
    }

    /// The VAPID public key clients subscribe with (base64url, uncompressed point).
    pub fn vapid_public_key(&self) -> String {
        self.web.public_key()
    }

    /// Whether FCM and APNs are configured.
    pub fn enabled(&self) -> (bool, bool) {
        (self.fcm.is_some(), self.apns.is_some())
    }

    /// Hands `push` to `device`'s service.
    pub async fn send(&self, device: &Device, push: &Push) -> Outcome {
        let outcome = match device.platform.as_str() {
            "web" => self.web.send(device, push).await,
            "fcm" => match &self.fcm {
                Some(f) => f.send(&device.address, push).await,
                None => Ok(Outcome::Refused("FCM is not configured".into())),
            },
            "apns" => match &self.apns {
                Some(a) => a.send(&device.address, push).await,
                None => Ok(Outcome::Refused("APNs is not configured".into())),
            },
            other => Ok(Outcome::Refused(format!("unknown platform {other}"))),
        };
        outcome.unwrap_or_else(|e| {
            tracing::warn!(device = %device.id, error = %format!("{e:#}"), "push failed");
            Outcome::Retry(None)
        })
    }
}

/// The outcome of a push service's answer by status, for the statuses every service shares.
fn by_status(status: reqwest::StatusCode, retry_after: Option<Duration>) -> Option<Outcome> {
    if status.is_success() {
        Some(Outcome::Sent)
    } else if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Some(Outcome::Retry(retry_after))
    } else {
        None
    }
}

/// The longest one push may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// A `Retry-After` header in seconds (the HTTP-date form is read as "no hint"), between a
/// second and an hour whatever it says: a push service (or whoever answers for an endpoint)
/// cannot park a job for years.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.clamp(1, 3600)))
}
