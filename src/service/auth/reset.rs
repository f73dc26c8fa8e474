//! Password reset: the request (a throttled job), the emailed single-use token, and the new
//! password that ends every session.

use super::{new_token, token_hash};
use crate::{
    db,
    db::jobs::Claimed,
    domain::audit::{Action, NewAuditEntry},
    domain::jobs::{Job, ResetTarget},
    domain::{Email, Password, UserId},
    error::{Error, Result},
    realtime::Revoked,
    service::{JobDeps, State, audit},
};
use chrono::Utc;
use diesel_async::AsyncConnection;
use serde_json::json;
use std::{net::IpAddr, time::Duration};

/// How long a password reset link works.
pub const RESET_TTL: Duration = Duration::from_secs(30 * 60);

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
        db::second_factor::drop_challenges(conn, user).await?;
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
