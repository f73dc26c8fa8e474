//! Business rules, authorization and transactions, one module per area. Services take and
//! return domain types; prost types never reach this layer.

pub mod accounts;
pub mod admin;
pub mod ai;
pub mod audit;
pub mod auth;
pub mod conversations;
pub mod digests;
pub mod files;
pub mod notifications;
pub mod passkeys;
pub mod projects;
pub mod security;
pub mod tasks;
pub mod users;

use crate::{auth::jwt::JwtKeys, auth::password::Hasher, db::Pool};
use std::{sync::Arc, time::Duration};
use tokio::sync::Notify;

/// What every service needs: the database, keys, the hasher and the job worker's bell.
#[derive(Debug, Clone)]
pub struct State {
    /// The database pool.
    pub pool: Pool,
    /// Access-token keys.
    pub jwt: Arc<JwtKeys>,
    /// The live state of sessions and users, behind every authenticated call.
    pub grants: Arc<crate::auth::grants::Grants>,
    /// The password hasher.
    pub hasher: Hasher,
    /// Lifetime of refresh tokens.
    pub refresh_ttl: Duration,
    /// How long a session lasts however often it is refreshed.
    pub session_max_age: Duration,
    /// How long a rotated refresh token still answers its successor (concurrent refreshes).
    pub refresh_grace: Duration,
    /// How long before a task's due day its reminder is sent.
    pub reminder_lead: Duration,
    /// How long unread messages wait for an email digest.
    pub digest_delay: Duration,
    /// Signs and checks stream cursors.
    pub cursor_key: Arc<crate::realtime::cursor::CursorKey>,
    /// Fans committed events out to open streams.
    pub broker: crate::realtime::Broker,
    /// Rung after a transaction that enqueued a job commits.
    pub wake_jobs: Arc<Notify>,
    /// Where files go and their rules.
    pub files: Arc<files::Files>,
    /// The AI assistant.
    pub ai: Arc<ai::Assistant>,
    /// Open event streams per user, and the signal that ends them at shutdown.
    pub streams: crate::realtime::session::StreamLimits,
    /// Message sends, committed in batches (none: each send commits alone).
    pub sends: Option<crate::service::conversations::SendQueue>,
    /// Read positions, committed in batches (none: each MarkRead commits alone).
    pub reads: Option<crate::service::conversations::ReadQueue>,
    /// Failed sign-ins per account and client address.
    pub lockout: Arc<crate::auth::lockout::Lockout>,
    /// The single sign-on providers.
    pub oidc: Arc<crate::auth::oidc::Providers>,
    /// The WebAuthn relying party of passkeys.
    pub passkeys: Arc<crate::auth::passkeys::RelyingParty>,
    /// The push services.
    pub push: Arc<crate::push::Pushers>,
    /// When notifications are pushed and emailed.
    pub notify: notifications::Timing,
}

impl State {
    /// What the authentication layer (and the REST edge, before reading a body) checks
    /// callers with.
    pub fn gate(&self) -> crate::auth::layer::Gate {
        crate::auth::layer::Gate {
            keys: self.jwt.clone(),
            grants: self.grants.clone(),
        }
    }
}

/// What the services' job handlers need.
#[derive(Debug, Clone)]
pub struct JobDeps {
    /// The database.
    pub pool: Pool,
    /// Where email goes.
    pub mailer: Arc<crate::mail::Mailer>,
    /// The web app's base URL, for links.
    pub public_url: String,
    /// Rung when a handler enqueued more jobs.
    pub wake: Arc<Notify>,
    /// Who has a stream open (digests skip them).
    pub broker: crate::realtime::Broker,
    /// Where file objects are deleted.
    pub storage: crate::storage::Storage,
    /// The push services.
    pub push: Arc<crate::push::Pushers>,
    /// When notifications are pushed and emailed.
    pub notify: notifications::Timing,
}
