//! A user's own sign-in security (a TOTP second factor and its recovery codes; their
//! sessions, seen and ended) and an admin's view of it (a user's sessions, resetting their
//! second factor, the sign-in policy). Ending a session revokes its refresh tokens and ends
//! its streams on every instance (through the broker's revocations).

use crate::{
    auth::{
        Caller,
        totp::{self, Enrollment},
    },
    db,
    domain::UserId,
    domain::audit::{Action, NewAuditEntry},
    domain::security::{ClientInfo, Proof, SecondFactorPolicy, SessionInfo},
    error::{Error, Result},
    realtime::Revoked,
    service::{State, admin::Admin},
};
use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::json;
use uuid::Uuid;

/// What protects a user's sign-in.
#[derive(Debug, Clone)]
pub struct Overview {
    /// Whether a TOTP authenticator is on.
    pub totp_enabled: bool,
    /// Unused recovery codes.
    pub recovery_codes_left: i64,
    /// Whether the policy requires a second factor of them.
    pub required: bool,
    /// Linked single sign-on identities: (provider, email, linked at).
    pub identities: Vec<(String, String, DateTime<Utc>)>,
}

/// The caller's sign-in security.
pub async fn overview(state: &State, caller: &Caller) -> Result<Overview> {
    let mut conn = state.pool.get().await?;
    let user = caller.user_id;
    Ok(Overview {
        totp_enabled: db::second_factor::totp_enabled(&mut conn, user).await?,
        recovery_codes_left: db::second_factor::recovery_codes_left(&mut conn, user).await?,
        required: db::second_factor::policy(&mut conn)
            .await?
            .requires(caller.role),
        identities: db::identities::of_user(&mut conn, user).await?,
    })
}

/// Starts adding an authenticator: a new secret, replacing one not yet confirmed.
pub async fn begin_totp(state: &State, caller: &Caller) -> Result<Enrollment> {
    let mut conn = state.pool.get().await?;
    let user = db::users::get(&mut conn, caller.user_id)
        .await?
        .ok_or_else(|| Error::NotFound("user"))?;
    let secret = totp::new_secret();
    if !db::second_factor::put_pending(&mut conn, caller.user_id, &secret).await? {
        return Err(Error::FailedPrecondition(
            "a second factor is already on: turn it off first".into(),
        ));
    }
    totp::enrollment(&secret, &user.email)
}

/// The sign-in limits of `caller` from `client`: refused while locked out. Answers the
/// caller's email, which failures are counted under.
async fn limited(state: &State, caller: &Caller, client: &ClientInfo) -> Result<String> {
    let email = {
        let mut conn = state.pool.get().await?;
        db::users::get(&mut conn, caller.user_id)
            .await?
            .ok_or(Error::NotFound("user"))?
            .email
    };
    state.lockout.check(&email, client.ip).await?;
    Ok(email)
}

/// Checks the caller's `password` again before a change that adds a way in (a second factor,
/// a passkey): a stolen access token alone must not make itself permanent or lock the owner
/// out. A wrong one counts toward the sign-in limits. Answers the caller's email.
pub(crate) async fn reauthenticate(
    state: &State,
    caller: &Caller,
    password: &str,
    client: &ClientInfo,
) -> Result<String> {
    let email = limited(state, caller, client).await?;
    let hash = {
        let mut conn = state.pool.get().await?;
        db::users::password_hash(&mut conn, caller.user_id).await?
    };
    if !state.hasher.verify(password, hash).await? {
        if let Some(ip) = client.ip {
            state.lockout.failed(&email, ip).await;
        }
        return Err(Error::invalid("password", "is not the current password"));
    }
    Ok(email)
}

/// Checks `proof` against the authenticator of `user` (locked), which must be confirmed or
/// not as `confirmed` says: a code not used before, or an unused recovery code. Uses it up.
/// A wrong one counts toward the sign-in limits of `email` from `client`, as a wrong
/// password does: guessing codes with a stolen access token is bounded like guessing them
/// at sign-in.
async fn prove(
    state: &State,
    conn: &mut AsyncPgConnection,
    (user, email): (UserId, &str),
    proof: &Proof,
    confirmed: bool,
    client: &ClientInfo,
) -> Result<()> {
    let t = db::second_factor::totp_for_update(conn, user).await?;
    // Guesses sent at once are answered one at a time (the row is locked), each after the
    // limits counted the one before.
    state.lockout.check(email, client.ip).await?;
    let t = t
        .filter(|t| t.confirmed_at.is_some() == confirmed)
        .ok_or_else(|| {
            Error::FailedPrecondition(if confirmed {
                "no second factor is on".into()
            } else {
                "start the enrolment first".into()
            })
        })?;
    if crate::service::auth::passes(conn, user, &t, proof, !confirmed).await? {
        return Ok(());
    }
    if let Some(ip) = client.ip {
        state.lockout.failed(email, ip).await;
    }
    let field = match proof {
        Proof::Code(_) => "code",
        Proof::Recovery(_) => "recovery_code",
        Proof::Passkey(_) => "passkey_json",
    };
    Err(Error::invalid(field, "is wrong or was already used"))
}

/// Turns the new authenticator on with its first code and the password: the recovery codes.
pub async fn confirm_totp(
    state: &State,
    caller: &Caller,
    code: Proof,
    password: &str,
    client: &ClientInfo,
) -> Result<Vec<String>> {
    let user = caller.user_id;
    let email = reauthenticate(state, caller, password, client).await?;
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        prove(state, conn, (user, &email), &code, false, client).await?;
        let (codes, hashes) = totp::recovery_codes();
        db::second_factor::replace_recovery_codes(conn, user, &hashes).await?;
        let entry = NewAuditEntry::new(Action::SecondFactorEnabled, Some(user))
            .on_user(user)
            .from_ip(client.ip)
            .with(json!({ "method": "totp" }));
        db::audit::append(conn, &entry).await?;
        Ok(codes)
    })
    .await
}

/// Turns the second factor off with a code or a recovery code, unless the policy requires it.
pub async fn disable_totp(
    state: &State,
    caller: &Caller,
    proof: Proof,
    client: &ClientInfo,
) -> Result<()> {
    let user = caller.user_id;
    let email = limited(state, caller, client).await?;
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        if db::second_factor::policy(conn).await?.requires(caller.role) {
            return Err(Error::FailedPrecondition(
                "the sign-in policy requires a second factor of you".into(),
            ));
        }
        prove(state, conn, (user, &email), &proof, true, client).await?;
        db::second_factor::remove(conn, user).await?;
        db::second_factor::drop_challenges(conn, user).await?;
        let entry = NewAuditEntry::new(Action::SecondFactorDisabled, Some(user))
            .on_user(user)
            .from_ip(client.ip);
        db::audit::append(conn, &entry).await
    })
    .await
}

/// Replaces the recovery codes, given a current code.
pub async fn regenerate_codes(
    state: &State,
    caller: &Caller,
    code: Proof,
    client: &ClientInfo,
) -> Result<Vec<String>> {
    let user = caller.user_id;
    let email = limited(state, caller, client).await?;
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        prove(state, conn, (user, &email), &code, true, client).await?;
        let (codes, hashes) = totp::recovery_codes();
        db::second_factor::replace_recovery_codes(conn, user, &hashes).await?;
        let entry = NewAuditEntry::new(Action::RecoveryCodesRegenerated, Some(user))
            .on_user(user)
            .from_ip(client.ip);
        db::audit::append(conn, &entry).await?;
        Ok(codes)
    })
    .await
}

/// The open sessions of `user`.
pub async fn sessions(state: &State, user: UserId) -> Result<Vec<SessionInfo>> {
    let mut conn = state.pool.get().await?;
    db::sessions::list_open(&mut conn, user).await
}

/// Ends sessions of `user`: `session` (NOT_FOUND unless theirs), or all but `keep`; by
/// `actor`, audited. Answers how many ended.
async fn end(
    state: &State,
    actor: UserId,
    user: UserId,
    session: Option<Uuid>,
    keep: Option<Uuid>,
) -> Result<usize> {
    let mut conn = state.pool.get().await?;
    let ended = conn
        .transaction::<_, Error, _>(async |conn| {
            let n = match session {
                Some(id) => {
                    if !db::sessions::belongs_to(conn, id, user).await? {
                        return Err(Error::NotFound("session"));
                    }
                    usize::from(db::tokens::revoke_family(conn, id).await? > 0)
                }
                None => db::tokens::revoke_user(conn, user, keep).await?,
            };
            let entry = NewAuditEntry::new(Action::SessionEnded, Some(actor))
                .on_user(user)
                .with(json!({ "session": session, "kept": keep, "ended": n }));
            db::audit::append(conn, &entry).await?;
            Ok(n)
        })
        .await?;
    let revoked = match (session, keep) {
        (Some(id), _) => Revoked::Only(id),
        (None, Some(kept)) => Revoked::AllBut(kept),
        (None, None) => Revoked::All,
    };
    state.broker.revoke(user.0, revoked);
    Ok(ended)
}

/// Ends one of the caller's sessions.
pub async fn end_own(state: &State, caller: &Caller, session: Uuid) -> Result<usize> {
    end(state, caller.user_id, caller.user_id, Some(session), None).await
}

/// Ends every session of the caller but the current one.
pub async fn end_others(state: &State, caller: &Caller) -> Result<usize> {
    let keep = Some(caller.session);
    end(state, caller.user_id, caller.user_id, None, keep).await
}

/// An admin ends one session of `user`, or all of them.
pub async fn end_for(
    state: &State,
    admin: &Admin,
    user: UserId,
    session: Option<Uuid>,
) -> Result<usize> {
    end(state, admin.user_id(), user, session, None).await
}

/// An admin lists the sessions of `user` (NOT_FOUND for no such user).
pub async fn sessions_of(state: &State, _admin: &Admin, user: UserId) -> Result<Vec<SessionInfo>> {
    let mut conn = state.pool.get().await?;
    if db::users::get(&mut conn, user).await?.is_none() {
        return Err(Error::NotFound("user"));
    }
    db::sessions::list_open(&mut conn, user).await
}

/// An admin removes the second factor of `user` (another admin's job for their own: a
/// policy that requires one must not be undone without it).
pub async fn reset_second_factor(state: &State, admin: &Admin, user: UserId) -> Result<()> {
    if user == admin.user_id() {
        return Err(Error::FailedPrecondition(
            "another admin must reset your own second factor".into(),
        ));
    }
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        if db::users::get(conn, user).await?.is_none() {
            return Err(Error::NotFound("user"));
        }
        let had = db::second_factor::remove(conn, user).await?;
        let passkeys = db::passkeys::remove_all(conn, user).await?;
        db::second_factor::drop_challenges(conn, user).await?;
        let entry = NewAuditEntry::new(Action::SecondFactorReset, Some(admin.user_id()))
            .on_user(user)
            .with(json!({ "had_totp": had, "passkeys_removed": passkeys }));
        db::audit::append(conn, &entry).await
    })
    .await
}

/// The sign-in policy.
pub async fn policy(state: &State, _admin: &Admin) -> Result<SecondFactorPolicy> {
    let mut conn = state.pool.get().await?;
    db::second_factor::policy(&mut conn).await
}

/// Sets the sign-in policy.
pub async fn set_policy(
    state: &State,
    admin: &Admin,
    policy: SecondFactorPolicy,
) -> Result<SecondFactorPolicy> {
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        let before = db::second_factor::policy(conn).await?;
        db::second_factor::set_policy(conn, policy).await?;
        let entry = NewAuditEntry::new(Action::SignInPolicyChanged, Some(admin.user_id()))
            .with(json!({ "from": before.as_str(), "to": policy.as_str() }));
        db::audit::append(conn, &entry).await
    })
    .await?;
    Ok(policy)
}
