//! Sign-in, refresh-token rotation with theft detection, sign-out and password reset.

use crate::{
    db::jobs::Claimed,
    db::{self, users::User},
    domain::audit::{Action, NewAuditEntry},
    domain::jobs::{Job, ResetTarget},
    domain::{Email, Password, UserId},
    error::{Error, Result},
    realtime::Revoked,
    service::{JobDeps, State, audit},
};
use anyhow::Context;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::{net::IpAddr, time::Duration};
use uuid::Uuid;

/// How long a password reset link works.
pub const RESET_TTL: Duration = Duration::from_secs(30 * 60);

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

/// Signs in with email and password.
pub async fn login(
    state: &State,
    email: &Email,
    password: &str,
    client: Option<IpAddr>,
) -> Result<Session> {
    if let Some(ip) = client
        && let Some((wait, scope)) = state.lockout.locked(email.as_str(), ip).await
    {
        crate::metrics::rate_limited(scope.metric());
        let entry = NewAuditEntry::new(Action::SignInLockedOut, None)
            .from_ip(client)
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
    if !matches && let Some(ip) = client {
        state.lockout.failed(email.as_str(), ip).await;
    }
    match user {
        Some(user) if matches && !user.disabled => {
            if let Some(ip) = client {
                state.lockout.succeeded(email.as_str(), ip).await;
            }
            let mut conn = state.pool.get().await?;
            let ends = Utc::now() + state.session_max_age;
            let entry = NewAuditEntry::new(Action::SignIn, Some(user.id))
                .on_user(user.id)
                .from_ip(client);
            conn.transaction::<_, Error, _>(async |conn| {
                let session = start(state, conn, user, Uuid::new_v4(), ends).await?;
                db::audit::append(conn, &entry).await?;
                Ok(session)
            })
            .await
        }
        user => {
            let why = match &user {
                None => "no such account",
                Some(u) if matches && u.disabled => "account disabled",
                Some(_) => "wrong password",
            };
            let mut entry = NewAuditEntry::new(Action::SignInFailed, None)
                .from_ip(client)
                .with(json!({ "email": email.as_str(), "reason": why }));
            if let Some(u) = &user {
                entry = entry.on_user(u.id);
            }
            audit::record(state, entry).await;
            Err(bad_credentials())
        }
    }
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

enum Rotation {
    Rotated(Box<Session>),
    Rejected,
    /// Rejected, and the session family (of this user) revoked.
    Revoked(Uuid, Uuid),
}

/// XORs a 32-byte token with a pad derived from the token it succeeds: only a holder of that
/// token can unseal it (and each pad seals one token, once).
fn seal(predecessor: &str, raw: &[u8]) -> Vec<u8> {
    let pad = Sha256::new()
        .chain_update(b"epop refresh successor\0")
        .chain_update(predecessor.as_bytes())
        .finalize();
    raw.iter().zip(pad).map(|(a, b)| a ^ b).collect()
}

/// Rotates a refresh token. A token that was already rotated revokes its whole family,
/// unless it is presented again within `state.refresh_grace` of its rotation while its
/// successor is still unused: then it answers that same successor (two tabs refreshing the
/// same cookie at once), with a new access token.
pub async fn refresh(state: &State, token: &str, client: Option<IpAddr>) -> Result<Session> {
    if token.is_empty() {
        return Err(Error::Unauthenticated(
            "no refresh token: send it or its cookie".into(),
        ));
    }
    let hash = token_hash(token);
    let mut conn = state.pool.get().await?;
    // The transaction commits in every case: a rejection may have revoked a family.
    let outcome = conn
        .transaction::<_, Error, _>(async |conn| {
            let Some(t) = db::tokens::find_refresh_for_update(conn, &hash).await? else {
                return Ok(Rotation::Rejected);
            };
            if t.revoked_at.is_some() || t.expires_at <= Utc::now() {
                return Ok(Rotation::Rejected);
            }
            let user = match db::users::get(conn, UserId(t.user_id)).await? {
                Some(u) if !u.disabled => u,
                _ => {
                    db::tokens::revoke_family(conn, t.family_id).await?;
                    return Ok(Rotation::Revoked(t.user_id, t.family_id));
                }
            };
            if let Some(rotated_at) = t.rotated_at {
                if let Some(session) =
                    within_grace(state, conn, token, &t, rotated_at, &user).await?
                {
                    return Ok(Rotation::Rotated(Box::new(session)));
                }
                let n = db::tokens::revoke_family(conn, t.family_id).await?;
                let entry = NewAuditEntry::new(Action::RefreshTokenReused, None)
                    .on_user(UserId(t.user_id))
                    .from_ip(client)
                    .with(json!({ "session": t.family_id, "revoked_tokens": n }));
                db::audit::append(conn, &entry).await?;
                tracing::warn!(user = %t.user_id, family = %t.family_id, revoked = n,
                    "a rotated refresh token was presented again: session family revoked");
                return Ok(Rotation::Revoked(t.user_id, t.family_id));
            }
            let session = start(state, conn, user, t.family_id, t.session_expires_at).await?;
            let raw = URL_SAFE_NO_PAD
                .decode(&session.refresh_token)
                .context("a new refresh token is base64")?;
            db::tokens::mark_rotated(conn, t.id, &seal(token, &raw)).await?;
            Ok(Rotation::Rotated(Box::new(session)))
        })
        .await?;
    match outcome {
        Rotation::Rotated(s) => Ok(*s),
        Rotation::Rejected => Err(bad_refresh()),
        Rotation::Revoked(user, family) => {
            state.broker.revoke(user, Revoked::Only(family));
            Err(bad_refresh())
        }
    }
}

/// The session to answer when rotated token `t` (whose text is `token`) is presented again:
/// its successor, when this is within the grace window and the successor is still current.
async fn within_grace(
    state: &State,
    conn: &mut AsyncPgConnection,
    token: &str,
    t: &db::tokens::RefreshToken,
    rotated_at: DateTime<Utc>,
    user: &User,
) -> Result<Option<Session>> {
    let (Some(sealed), true) = (
        &t.successor_sealed,
        Utc::now() < rotated_at + state.refresh_grace,
    ) else {
        return Ok(None);
    };
    let successor = URL_SAFE_NO_PAD.encode(seal(token, sealed));
    let Some(next) = db::tokens::find_refresh_for_update(conn, &token_hash(&successor)).await?
    else {
        return Ok(None);
    };
    if next.rotated_at.is_some() || next.revoked_at.is_some() || next.expires_at <= Utc::now() {
        return Ok(None);
    }
    let (access_token, access_expires_at) = state.jwt.issue(user.id, user.role, t.family_id)?;
    Ok(Some(Session {
        access_token,
        access_expires_at,
        refresh_token: successor,
        refresh_expires_at: next.expires_at,
        user: user.clone(),
    }))
}

/// Revokes the session family of `token`; unknown tokens are ignored.
pub async fn logout(state: &State, token: &str) -> Result<()> {
    if token.is_empty() {
        return Ok(());
    }
    let mut conn = state.pool.get().await?;
    let hash = token_hash(token);
    let revoked = conn
        .transaction::<_, Error, _>(async |conn| {
            let Some(t) = db::tokens::find_refresh_for_update(conn, &hash).await? else {
                return Ok(None);
            };
            db::tokens::revoke_family(conn, t.family_id).await?;
            Ok(Some((t.user_id, t.family_id)))
        })
        .await?;
    if let Some((user, family)) = revoked {
        state.broker.revoke(user, Revoked::Only(family));
    }
    Ok(())
}

/// At most one reset email per address in this period.
pub const RESET_EVERY: Duration = Duration::from_secs(60);

/// Queues a reset email for an active account with this address: at most one per address
/// per [`RESET_EVERY`] (however often it is asked). The job looks the account up when it
/// runs, so a request does the same work whether the address exists or not, and says
/// nothing about it.
pub async fn request_reset(state: &State, email: &Email, client: Option<IpAddr>) -> Result<()> {
    let entry = NewAuditEntry::new(Action::PasswordResetRequested, None)
        .from_ip(client)
        .with(json!({ "email": email.as_str() }));
    audit::record(state, entry).await;
    let job = Job::PasswordResetEmail(ResetTarget::Email {
        email: email.as_str().to_owned(),
    });
    let mut conn = state.pool.get().await?;
    if db::jobs::enqueue_throttled(&mut conn, &job, RESET_EVERY).await? {
        state.wake_jobs.notify_one();
    }
    Ok(())
}

/// Sets a new password with a reset token, and revokes every session of the user.
pub async fn confirm_reset(
    state: &State,
    token: &str,
    password: &Password,
    client: Option<IpAddr>,
) -> Result<()> {
    let token = token_hash(token);
    let invalid = || Error::invalid("token", "is invalid, expired or already used");
    // The token is checked before any hashing: a wrong one costs one query.
    {
        let mut conn = state.pool.get().await?;
        if !db::tokens::reset_is_open(&mut conn, &token).await? {
            return Err(invalid());
        }
    }
    let hash = state.hasher.hash(password).await?;
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        let user = db::tokens::consume_reset(conn, &token)
            .await?
            .ok_or_else(invalid)?;
        let changes = db::users::UserChanges {
            password_hash: Some(hash),
            ..Default::default()
        };
        if !db::users::update(conn, user, changes).await? {
            return Err(invalid());
        }
        db::tokens::revoke_user(conn, user, None).await?;
        let entry = NewAuditEntry::new(Action::PasswordReset, Some(user))
            .on_user(user)
            .from_ip(client);
        db::audit::append(conn, &entry).await?;
        Ok(user)
    })
    .await
    .map(|user| state.broker.revoke(user.0, Revoked::All))
}

/// The job that emails a reset link: makes a single-use token valid until 30 minutes after
/// the request, and sends it. A stale job (past that) or a gone account sends nothing.
pub async fn send_reset_email(
    deps: &JobDeps,
    job: &Claimed,
    target: ResetTarget,
) -> anyhow::Result<()> {
    let expires_at = job.created_at + RESET_TTL;
    if expires_at <= Utc::now() {
        tracing::info!(
            job = job.id,
            "password reset request expired before it was sent"
        );
        return Ok(());
    }
    let mut conn = deps.pool.get().await?;
    let user = match target {
        ResetTarget::Email { email } => {
            let email = Email::parse("email", &email).map_err(|e| anyhow::anyhow!("{e}"))?;
            db::users::find_by_email(&mut conn, &email)
                .await?
                .map(|(u, _)| u)
        }
        ResetTarget::User { user_id } => db::users::get(&mut conn, UserId(user_id)).await?,
    };
    let Some(user) = user else {
        return Ok(());
    };
    if user.disabled {
        return Ok(());
    }
    let token = new_token();
    db::tokens::insert_reset(&mut conn, user.id, &token_hash(&token), expires_at).await?;
    drop(conn);
    let link = format!(
        "{}/reset-password?token={token}",
        deps.public_url.trim_end_matches('/')
    );
    let body = format!(
        "Hello {},\n\nSomeone asked to reset the password of your EPOP account.\n\
         To choose a new password, open this link within 30 minutes:\n\n{link}\n\n\
         or enter this reset code in the app:\n\n{token}\n\n\
         If it was not you, ignore this email: your password stays as it is.\n",
        user.display_name
    );
    deps.mailer
        .send(job.id, &user.email, "Reset your EPOP password", body)
        .await
}
