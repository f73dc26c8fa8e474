//! Queries on `passkeys` (WebAuthn credentials, several per user) and `webauthn_ceremonies`
//! (registrations and sign-ins under way, by their challenge; each is taken once).

use crate::{
    db::schema::{passkeys, webauthn_ceremonies},
    domain::{UserId, security::PasskeyInfo},
    error::{Result, on_unique},
};
use chrono::{DateTime, Utc};
use diesel::{dsl::now, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// Stores a verified passkey of `user`; a credential already registered is ALREADY_EXISTS.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    user: UserId,
    id: &[u8],
    name: &str,
    (static_state, dynamic_state): (&[u8], &[u8]),
) -> Result<PasskeyInfo> {
    let created_at: DateTime<Utc> = diesel::insert_into(passkeys::table)
        .values((
            passkeys::id.eq(id),
            passkeys::user_id.eq(user.0),
            passkeys::name.eq(name),
            passkeys::static_state.eq(static_state),
            passkeys::dynamic_state.eq(dynamic_state),
        ))
        .returning(passkeys::created_at)
        .get_result(conn)
        .await
        .map_err(|e| on_unique(e, "passkeys_pkey", "this passkey is already registered"))?;
    Ok(PasskeyInfo {
        id: id.to_vec(),
        name: name.to_owned(),
        created_at,
        last_used_at: None,
    })
}

/// A passkey's listed columns: id, name, created, last used.
type Listed = (Vec<u8>, String, DateTime<Utc>, Option<DateTime<Utc>>);

/// The passkeys of `user`, oldest first.
pub async fn list(conn: &mut AsyncPgConnection, user: UserId) -> Result<Vec<PasskeyInfo>> {
    let rows: Vec<Listed> = passkeys::table
        .filter(passkeys::user_id.eq(user.0))
        .order((passkeys::created_at, passkeys::id))
        .select((
            passkeys::id,
            passkeys::name,
            passkeys::created_at,
            passkeys::last_used_at,
        ))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, created_at, last_used_at)| PasskeyInfo {
            id,
            name,
            created_at,
            last_used_at,
        })
        .collect())
}

/// Whether `user` has a passkey.
pub async fn any(conn: &mut AsyncPgConnection, user: UserId) -> Result<bool> {
    diesel::select(diesel::dsl::exists(
        passkeys::table.filter(passkeys::user_id.eq(user.0)),
    ))
    .get_result(conn)
    .await
    .map_err(Into::into)
}

/// The passkey `id`: (its user, static state, dynamic state), locked for the transaction.
pub async fn stored_for_update(
    conn: &mut AsyncPgConnection,
    id: &[u8],
) -> Result<Option<(Uuid, Vec<u8>, Vec<u8>)>> {
    passkeys::table
        .find(id)
        .select((
            passkeys::user_id,
            passkeys::static_state,
            passkeys::dynamic_state,
        ))
        .for_update()
        .first(conn)
        .await
        .optional()
        .map_err(Into::into)
}

/// Records a use of passkey `id`, with its new dynamic state.
pub async fn used(conn: &mut AsyncPgConnection, id: &[u8], dynamic_state: &[u8]) -> Result<()> {
    diesel::update(passkeys::table.find(id))
        .set((
            passkeys::dynamic_state.eq(dynamic_state),
            passkeys::last_used_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes passkey `id` of `user`; false when they have none such.
pub async fn delete(conn: &mut AsyncPgConnection, user: UserId, id: &[u8]) -> Result<bool> {
    let n = diesel::delete(
        passkeys::table
            .filter(passkeys::id.eq(id))
            .filter(passkeys::user_id.eq(user.0)),
    )
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// Removes every passkey of `user`; answers how many.
pub async fn remove_all(conn: &mut AsyncPgConnection, user: UserId) -> Result<usize> {
    diesel::delete(passkeys::table.filter(passkeys::user_id.eq(user.0)))
        .execute(conn)
        .await
        .map_err(Into::into)
}

/// Keeps a ceremony under way (`kind`: `register`, `sign_in` or `second_factor`), for `user`
/// when it is theirs; removes expired ones.
pub async fn insert_ceremony(
    conn: &mut AsyncPgConnection,
    challenge: &[u8],
    kind: &str,
    user: Option<UserId>,
    state: &[u8],
    expires_at: DateTime<Utc>,
) -> Result<()> {
    diesel::delete(webauthn_ceremonies::table.filter(webauthn_ceremonies::expires_at.lt(now)))
        .execute(conn)
        .await?;
    diesel::insert_into(webauthn_ceremonies::table)
        .values((
            webauthn_ceremonies::challenge.eq(challenge),
            webauthn_ceremonies::kind.eq(kind),
            webauthn_ceremonies::user_id.eq(user.map(|u| u.0)),
            webauthn_ceremonies::state.eq(state),
            webauthn_ceremonies::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Takes (removes) the unexpired ceremony of `kind` with this challenge: (its user, state).
pub async fn take_ceremony(
    conn: &mut AsyncPgConnection,
    challenge: &[u8],
    kind: &str,
) -> Result<Option<(Option<Uuid>, Vec<u8>)>> {
    diesel::delete(
        webauthn_ceremonies::table
            .filter(webauthn_ceremonies::challenge.eq(challenge))
            .filter(webauthn_ceremonies::kind.eq(kind))
            .filter(webauthn_ceremonies::expires_at.gt(now)),
    )
    .returning((webauthn_ceremonies::user_id, webauthn_ceremonies::state))
    .get_result(conn)
    .await
    .optional()
    .map_err(Into::into)
}
