//! Queries on `oidc_states` (single sign-ons under way) and `user_identities` (accounts'
//! identities at single sign-on providers).

use crate::{
    db::schema::{oidc_states, user_identities},
    domain::UserId,
    error::Result,
};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::time::Duration;

/// What a sign-in's callback must match.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = oidc_states, check_for_backend(diesel::pg::Pg))]
pub struct Pending {
    /// The provider's id.
    pub provider: String,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier.
    pub pkce_verifier: String,
    /// The SHA-256 of the starting client's binder.
    pub binder_hash: Vec<u8>,
}

/// Stores a sign-in under way; removes those older than `ttl`.
pub async fn insert_state(
    conn: &mut AsyncPgConnection,
    state: &str,
    pending: &Pending,
    ttl: Duration,
) -> Result<()> {
    let stale = Utc::now() - ttl;
    diesel::delete(oidc_states::table.filter(oidc_states::created_at.lt(stale)))
        .execute(conn)
        .await?;
    diesel::insert_into(oidc_states::table)
        .values((
            oidc_states::state.eq(state),
            oidc_states::provider.eq(&pending.provider),
            oidc_states::nonce.eq(&pending.nonce),
            oidc_states::pkce_verifier.eq(&pending.pkce_verifier),
            oidc_states::binder_hash.eq(&pending.binder_hash),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Takes (removes) the sign-in under way with this state, when younger than `ttl`: each state
/// works once.
pub async fn take_state(
    conn: &mut AsyncPgConnection,
    state: &str,
    ttl: Duration,
) -> Result<Option<Pending>> {
    let fresh = Utc::now() - ttl;
    diesel::delete(
        oidc_states::table
            .filter(oidc_states::state.eq(state))
            .filter(oidc_states::created_at.ge(fresh)),
    )
    .returning(Pending::as_returning())
    .get_result(conn)
    .await
    .optional()
    .map_err(Into::into)
}

/// The account linked to `subject` at `provider`.
pub async fn linked_user(
    conn: &mut AsyncPgConnection,
    provider: &str,
    subject: &str,
) -> Result<Option<UserId>> {
    user_identities::table
        .find((provider, subject))
        .select(user_identities::user_id)
        .first(conn)
        .await
        .optional()
        .map(|u| u.map(UserId))
        .map_err(Into::into)
}

/// Links `subject` at `provider` to `user`.
pub async fn link(
    conn: &mut AsyncPgConnection,
    provider: &str,
    subject: &str,
    user: UserId,
    email: &str,
) -> Result<()> {
    diesel::insert_into(user_identities::table)
        .values((
            user_identities::provider.eq(provider),
            user_identities::subject.eq(subject),
            user_identities::user_id.eq(user.0),
            user_identities::email.eq(email),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

/// The identities linked to `user`: (provider, email, linked at).
pub async fn of_user(
    conn: &mut AsyncPgConnection,
    user: UserId,
) -> Result<Vec<(String, String, DateTime<Utc>)>> {
    user_identities::table
        .filter(user_identities::user_id.eq(user.0))
        .order(user_identities::linked_at)
        .select((
            user_identities::provider,
            user_identities::email,
            user_identities::linked_at,
        ))
        .load(conn)
        .await
        .map_err(Into::into)
}
