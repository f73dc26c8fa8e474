//! The settings of push notifications: the VAPID key of Web Push, FCM HTTP v1 and APNs
//! (each enabled by its settings; endpoints configurable, e.g. for test doubles), and the
//! delay before a push that lets a user who is looking read it first.

use clap::Args;
use secrecy::SecretString;
use std::{path::PathBuf, time::Duration};

/// Settings of push notifications.
#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    /// How long a notification waits before it is pushed; a user who read it meanwhile, or
    /// has a stream open, is not pushed. Also the window in which one conversation's
    /// notifications collapse into one push.
    #[arg(long, env = "EPOP_PUSH_DELAY", default_value = "5s", value_parser = humantime::parse_duration)]
    pub push_delay: Duration,

    /// The VAPID private key (a P-256 scalar, base64url); unset: one is generated on first
    /// start and kept in the database, shared by every instance.
    #[arg(long, env = "EPOP_VAPID_PRIVATE_KEY", hide_env_values = true)]
    pub vapid_private_key: Option<SecretString>,

    /// The contact push services may reach the operator at (`mailto:` or `https:`); unset:
    /// EPOP_PUBLIC_URL.
    #[arg(long, env = "EPOP_VAPID_SUBJECT")]
    pub vapid_subject: Option<String>,

    /// Accept Web Push endpoints over plain `http` or on loopback and private addresses (a
    /// local push service, tests). Off, an endpoint must be `https` on a public host, so a
    /// user cannot make the server post to internal services.
    #[arg(long, env = "EPOP_PUSH_ALLOW_INSECURE", default_value_t = false)]
    pub push_allow_insecure: bool,

    /// A Firebase service-account JSON file: enables FCM HTTP v1.
    #[arg(long, env = "EPOP_FCM_CREDENTIALS")]
    pub fcm_credentials: Option<PathBuf>,

    /// The FCM API's base URL.
    #[arg(
        long,
        env = "EPOP_FCM_ENDPOINT",
        default_value = "https://fcm.googleapis.com"
    )]
    pub fcm_endpoint: String,

    /// An APNs signing key (`AuthKey_XXXX.p8`): enables APNs, with the key id, team id and
    /// topic below.
    #[arg(long, env = "EPOP_APNS_KEY")]
    pub apns_key: Option<PathBuf>,

    /// The APNs key's id.
    #[arg(long, env = "EPOP_APNS_KEY_ID", default_value = "")]
    pub apns_key_id: String,

    /// The Apple developer team id.
    #[arg(long, env = "EPOP_APNS_TEAM_ID", default_value = "")]
    pub apns_team_id: String,

    /// The app's bundle id (`apns-topic`).
    #[arg(long, env = "EPOP_APNS_TOPIC", default_value = "")]
    pub apns_topic: String,

    /// The APNs base URL (the sandbox is `https://api.sandbox.push.apple.com`).
    #[arg(
        long,
        env = "EPOP_APNS_ENDPOINT",
        default_value = "https://api.push.apple.com"
    )]
    pub apns_endpoint: String,
}
