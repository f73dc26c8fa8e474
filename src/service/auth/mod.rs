//! Sign-in: a password, then a second factor when the account has one (or the policy wants
//! one enrolled), or single sign-on; the sessions it opens; refresh-token rotation with theft
//! detection, sign-out and password reset.

use crate::{
    db::{self, users::User},
    domain::audit::{Action, NewAuditEntry},
    domain::security::ClientInfo,
    domain::{Email, Password},
    error::{Error, Result},
    service::{State, audit},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A signed-in session: tokens and the user.
#[derive(Debug, Clone)]
pub struct Session {
    /// The access token (JWT).
    pub access_token: String,
    /// When the access token expires.
    pub access_expires_at: DateTime<Utc>,
    /// The refresh token (shown once; stored only as a hash).
    pub refresh_token: String,
    /// When the refresh token expires.
    pub refresh_expires_at: DateTime<Utc>,
    /// The user.
    pub user: User,
}

/// A random token of 256 bits, URL-safe.
pub fn new_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// The SHA-256 of a token: what the database keeps.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn bad_credentials() -> Error {
    Error::Unauthenticated("wrong email or password".into())
}

fn bad_refresh() -> Error {
    Error::Unauthenticated("invalid or expired refresh token, sign in again".into())
}

/// What a sign-in with a right password gives.
#[derive(Debug)]
pub enum SignIn {
    /// A session.
    Session(Box<Session>),
    /// No session yet: a second factor is needed.
    SecondFactor(second_factor::Challenge),
}

/// Signs in with email and password: a session, or the challenge of a second factor.
pub async fn login(
    state: &State,
    email: &Email,
    password: &str,
    client: &ClientInfo,
) -> Result<SignIn> {
    let ip = client.ip;
    if let Some(ip) = ip
        && let Some((wait, scope)) = state.lockout.locked(email.as_str(), ip).await
    {
        crate::metrics::rate_limited(scope.metric());
        let entry = NewAuditEntry::new(Action::SignInLockedOut, None)
            .from_ip(ip.into())
            .with(json!({ "email": email.as_str(), "limit": scope.metric() }));
        audit::record(state, entry).await;
        return Err(Error::RetryLater(
            format!("{}: try again later", scope.reason()),
            wait,
        ));
    }
    if password.chars().count() > Password::MAX_CHARS {
        return Err(bad_credentials());
    }
    // A flood of sign-ins is refused before it touches the database, and no connection is
    // held while the hash is checked: it must not take the pool from every other request.
    let slot = state.hasher.reserve()?;
    let (user, hash) = {
        let mut conn = state.pool.get().await?;
        match db::users::find_by_email(&mut conn, email).await? {
            Some((u, h)) => (Some(u), Some(h)),
            None => (None, None),
        }
    };
    let matches = slot.verify(password, hash).await?;
    if !matches && let Some(ip) = ip {
        state.lockout.failed(email.as_str(), ip).await;
    }
    match user {
        Some(user) if matches && !user.disabled => {
            if let Some(challenge) =
                second_factor::challenge(state, &user, "password", None).await?
            {
                return Ok(SignIn::SecondFactor(challenge));
            }
            if let Some(ip) = ip {
                state.lockout.succeeded(email.as_str(), ip).await;
            }
            let mut conn = state.pool.get().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                open_session(state, conn, user, client, "password").await
            })
            .await
            .map(|s| SignIn::Session(Box::new(s)))
        }
        user => {
            let why = match &user {
                None => "no such account",
                Some(u) if matches && u.disabled => "account disabled",
                Some(_) => "wrong password",
            };
            let mut entry = NewAuditEntry::new(Action::SignInFailed, None)
                .from_ip(ip)
                .with(json!({ "email": email.as_str(), "reason": why }));
            if let Some(u) = &user {
                entry = entry.on_user(u.id);
            }
            audit::record(state, entry).await;
            Err(bad_credentials())
        }
    }
}

/// Opens a new session of `user` (signed in by `method`), audited, inside the caller's
/// transaction.
pub(crate) async fn open_session(
    state: &State,
    conn: &mut AsyncPgConnection,
    user: User,
    client: &ClientInfo,
    method: &str,
) -> Result<Session> {
    let family = Uuid::new_v4();
    let ends = Utc::now() + state.session_max_age;
    db::sessions::insert(conn, family, user.id, ends, client, method).await?;
    let entry = NewAuditEntry::new(Action::SignIn, Some(user.id))
        .on_user(user.id)
        .from_ip(client.ip)
        .with(json!({ "method": method, "session": family }));
    db::audit::append(conn, &entry).await?;
    start(state, conn, user, family, ends).await
}

/// Issues tokens for `user` in session `family`, which ends at `session_ends` (no refresh
/// token outlives it).
async fn start(
    state: &State,
    conn: &mut AsyncPgConnection,
    user: User,
    family: Uuid,
    session_ends: DateTime<Utc>,
) -> Result<Session> {
    let refresh_token = new_token();
    let refresh_expires_at = (Utc::now() + state.refresh_ttl).min(session_ends);
    db::tokens::insert_refresh(
        conn,
        user.id,
        family,
        &token_hash(&refresh_token),
        refresh_expires_at,
        session_ends,
    )
    .await?;
    let (access_token, access_expires_at) = state.jwt.issue(user.id, user.role, family)?;
    Ok(Session {
        access_token,
        access_expires_at,
        refresh_token,
        refresh_expires_at,
        user,
    })
}

mod oidc;
mod refresh;
mod reset;
mod second_factor;

pub use oidc::{finish_oidc, providers, start_oidc};
pub use refresh::{logout, refresh};
pub use reset::{RESET_EVERY, RESET_TTL, confirm_reset, request_reset, send_reset_email};
pub(crate) use second_factor::passes;
pub use second_factor::{Challenge, verify_second_factor};
