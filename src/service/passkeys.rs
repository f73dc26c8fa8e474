//! Passkeys: registering several per user (named, removable), signing in with one alone
//! (passwordless: a passkey is possession and user verification in one), and as the second
//! step of a password or single sign-on. Ceremonies are kept in the database by their
//! challenge, so any instance finishes what another started, and each is used once.

use crate::{
    auth::{
        Caller,
        passkeys::{Started, Stored},
    },
    db,
    domain::UserId,
    domain::audit::{Action, NewAuditEntry},
    domain::security::{ClientInfo, PasskeyInfo, PasskeyName},
    error::{Error, Result},
    service::{
        State,
        auth::{Session, open_session},
    },
};
use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::json;

fn expiry(t: std::time::SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(t)
}

fn expired() -> Error {
    Error::Unauthenticated("this passkey ceremony expired or was already used: start again".into())
}

/// Starts registering a passkey for the caller: the options for `navigator.credentials.create`.
pub async fn begin_registration(state: &State, caller: &Caller) -> Result<String> {
    let mut conn = state.pool.get().await?;
    let user = db::users::get(&mut conn, caller.user_id)
        .await?
        .ok_or(Error::NotFound("user"))?;
    let existing = db::passkeys::list(&mut conn, caller.user_id)
        .await?
        .into_iter()
        .map(|p| p.id)
        .collect();
    let started =
        state
            .passkeys
            .start_registration(user.id.0, &user.email, &user.display_name, existing)?;
    keep(&mut conn, started, "register", Some(caller.user_id)).await
}

/// Keeps a started ceremony of `kind` (for `user`, when bound) until it is answered: the
/// options to send the browser.
async fn keep(
    conn: &mut AsyncPgConnection,
    started: Started,
    kind: &str,
    user: Option<UserId>,
) -> Result<String> {
    let expires_at = expiry(started.expires_at);
    db::passkeys::insert_ceremony(
        conn,
        &started.challenge,
        kind,
        user,
        &started.state,
        expires_at,
    )
    .await?;
    Ok(started.options)
}

/// Verifies and stores the caller's new passkey, named `name`, given their password.
pub async fn finish_registration(
    state: &State,
    caller: &Caller,
    (name, credential): (&PasskeyName, &str),
    password: &str,
    client: &ClientInfo,
) -> Result<PasskeyInfo> {
    let challenge = crate::auth::passkeys::RelyingParty::registration_challenge(credential)?;
    crate::service::security::reauthenticate(state, caller, password, client).await?;
    let mut conn = state.pool.get().await?;
    // Used up first: a failed answer cannot be tried again.
    let Some((Some(user), ceremony)) =
        db::passkeys::take_ceremony(&mut conn, &challenge, "register").await?
    else {
        return Err(expired());
    };
    if user != caller.user_id.0 {
        return Err(expired());
    }
    conn.transaction::<_, Error, _>(async |conn| {
        let new = state.passkeys.finish_registration(&ceremony, credential)?;
        let states = (new.static_state.as_slice(), new.dynamic_state.as_slice());
        let info =
            db::passkeys::insert(conn, caller.user_id, &new.id, name.as_str(), states).await?;
        let entry = NewAuditEntry::new(Action::PasskeyAdded, Some(caller.user_id))
            .on_user(caller.user_id)
            .with(json!({ "name": name.as_str() }));
        db::audit::append(conn, &entry).await?;
        Ok(info)
    })
    .await
}

/// The caller's passkeys.
pub async fn list(state: &State, caller: &Caller) -> Result<Vec<PasskeyInfo>> {
    let mut conn = state.pool.get().await?;
    db::passkeys::list(&mut conn, caller.user_id).await
}

/// Removes one of the caller's passkeys, given their password (NOT_FOUND when it is not
/// theirs); not the last second factor the policy requires of them.
pub async fn delete(
    state: &State,
    caller: &Caller,
    id: &[u8],
    password: &str,
    client: &ClientInfo,
) -> Result<()> {
    crate::service::security::reauthenticate(state, caller, password, client).await?;
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        if !db::passkeys::delete(conn, caller.user_id, id).await? {
            return Err(Error::NotFound("passkey"));
        }
        let left = db::passkeys::any(conn, caller.user_id).await?
            || db::second_factor::totp_enabled(conn, caller.user_id).await?;
        if !left && db::second_factor::policy(conn).await?.requires(caller.role) {
            return Err(Error::FailedPrecondition(
                "the sign-in policy requires a second factor of you: add another first".into(),
            ));
        }
        let entry = NewAuditEntry::new(Action::PasskeyRemoved, Some(caller.user_id))
            .on_user(caller.user_id);
        db::audit::append(conn, &entry).await
    })
    .await
}

/// Starts a passkey sign-in (`kind` `sign_in`, anyone's passkey): the options for
/// `navigator.credentials.get`.
pub async fn start(state: &State, kind: &str, user: Option<UserId>) -> Result<String> {
    let mut conn = state.pool.get().await?;
    start_in(state, &mut conn, kind, user).await
}

/// [`start`] on the caller's connection; `second_factor` binds the ceremony to `user`.
pub(crate) async fn start_in(
    state: &State,
    conn: &mut AsyncPgConnection,
    kind: &str,
    user: Option<UserId>,
) -> Result<String> {
    let started = state.passkeys.start_sign_in()?;
    keep(conn, started, kind, user).await
}

/// Takes (uses up) the ceremony of `kind` an assertion answers: (whom it is bound to, its
/// state).
async fn take(
    conn: &mut AsyncPgConnection,
    kind: &str,
    credential: &str,
) -> Result<(Option<uuid::Uuid>, Vec<u8>)> {
    let (challenge, _, _) = crate::auth::passkeys::RelyingParty::assertion(credential)?;
    db::passkeys::take_ceremony(conn, &challenge, kind)
        .await?
        .ok_or_else(expired)
}

/// Verifies an assertion of ceremony `kind` inside the caller's transaction (whose commit
/// uses the ceremony up, also when it fails): the passkey's user (which must be `expected`,
/// when given). The passkey's counter is updated.
pub(crate) async fn verify(
    state: &State,
    conn: &mut AsyncPgConnection,
    kind: &str,
    expected: Option<UserId>,
    credential: &str,
) -> Result<UserId> {
    let ceremony = take(conn, kind, credential).await?;
    check(state, conn, ceremony, expected, credential).await
}

/// Checks an assertion against its ceremony and the stored passkey it names.
async fn check(
    state: &State,
    conn: &mut AsyncPgConnection,
    (bound, ceremony): (Option<uuid::Uuid>, Vec<u8>),
    expected: Option<UserId>,
    credential: &str,
) -> Result<UserId> {
    let (_, id, handle) = crate::auth::passkeys::RelyingParty::assertion(credential)?;
    if bound.is_some() && bound != expected.map(|u| u.0) {
        return Err(expired());
    }
    let unknown = || Error::Unauthenticated("this passkey is not registered here".into());
    let (user, static_state, dynamic_state) = db::passkeys::stored_for_update(conn, &id)
        .await?
        .ok_or_else(unknown)?;
    if user != handle || expected.is_some_and(|e| e.0 != user) {
        return Err(unknown());
    }
    let stored = Stored {
        user,
        static_state,
        dynamic_state,
    };
    let dynamic = state
        .passkeys
        .finish_sign_in(&ceremony, credential, &stored)?;
    db::passkeys::used(conn, &id, &dynamic).await?;
    Ok(UserId(user))
}

/// Signs in with a passkey alone. The ceremony is used up first, so a failed answer cannot
/// be tried again.
pub async fn sign_in(state: &State, credential: &str, client: &ClientInfo) -> Result<Session> {
    let mut conn = state.pool.get().await?;
    let ceremony = take(&mut conn, "sign_in", credential).await?;
    let outcome = conn
        .transaction::<_, Error, _>(async |conn| {
            let id = check(state, conn, ceremony, None, credential).await?;
            let user = db::users::get(conn, id).await?.filter(|u| !u.disabled);
            let user = user.ok_or_else(|| {
                Error::Unauthenticated("this account is disabled or was deleted".into())
            })?;
            open_session(state, conn, user, client, "passkey").await
        })
        .await;
    drop(conn);
    if let Err(Error::Unauthenticated(why)) = &outcome {
        let entry = NewAuditEntry::new(Action::SignInFailed, None)
            .from_ip(client.ip)
            .with(json!({ "method": "passkey", "reason": why }));
        crate::service::audit::record(state, entry).await;
    }
    outcome
}
