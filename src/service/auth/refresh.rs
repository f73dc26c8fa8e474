//! Refresh-token rotation with theft detection, and sign-out.

use super::{Session, bad_refresh, start, token_hash};
use crate::{
    db::{self, users::User},
    domain::UserId,
    domain::audit::{Action, NewAuditEntry},
    error::{Error, Result},
    realtime::Revoked,
    service::State,
};
use anyhow::Context;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use uuid::Uuid;

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
            db::sessions::touch(conn, t.family_id, client).await?;
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
