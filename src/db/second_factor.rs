//! Queries on `user_totp`, `recovery_codes`, `sign_in_challenges` and `sign_in_policy`: the
//! second factor of sign-in. Recovery codes and challenges are stored only as SHA-256 hashes.

use crate::{
    db::schema::{recovery_codes, sign_in_challenges, sign_in_policy, user_totp},
    domain::{UserId, security::SecondFactorPolicy},
    error::Result,
};
use chrono::{DateTime, Utc};
use diesel::{dsl::now, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// A user's TOTP authenticator.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = user_totp, check_for_backend(diesel::pg::Pg))]
pub struct Totp {
    /// The shared secret.
    pub secret: Vec<u8>,
    /// When it was turned on; None while being added.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// The last time step whose code was accepted.
    pub last_step: i64,
}

/// The authenticator of `user`, locked for the rest of the transaction.
pub async fn totp_for_update(conn: &mut AsyncPgConnection, user: UserId) -> Result<Option<Totp>> {
    user_totp::table
        .find(user.0)
        .select(Totp::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
        .map_err(Into::into)
}

/// Whether `user` has a confirmed authenticator.
pub async fn totp_enabled(conn: &mut AsyncPgConnection, user: UserId) -> Result<bool> {
    diesel::select(diesel::dsl::exists(
        user_totp::table
            .find(user.0)
            .filter(user_totp::confirmed_at.is_not_null()),
    ))
    .get_result(conn)
    .await
    .map_err(Into::into)
}

/// Stores a new, unconfirmed secret for `user`, unless one is confirmed (then false).
pub async fn put_pending(
    conn: &mut AsyncPgConnection,
    user: UserId,
    secret: &[u8],
) -> Result<bool> {
    use diesel::sql_types::{Bytea, Uuid};
    // One statement, so a confirmation in between cannot be overwritten.
    let n = diesel::sql_query(
        "INSERT INTO user_totp (user_id, secret) VALUES ($1, $2) \
         ON CONFLICT (user_id) DO UPDATE SET secret = EXCLUDED.secret, last_step = 0, \
         created_at = now() WHERE user_totp.confirmed_at IS NULL",
    )
    .bind::<Uuid, _>(user.0)
    .bind::<Bytea, _>(secret)
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// Records that the code of time step `step` was accepted (and confirms the authenticator).
pub async fn accept_step(conn: &mut AsyncPgConnection, user: UserId, step: i64) -> Result<()> {
    diesel::update(user_totp::table.find(user.0))
        .set((
            user_totp::last_step.eq(step),
            user_totp::confirmed_at.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
            >("coalesce(confirmed_at, now())")),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes the authenticator and recovery codes of `user`; answers whether there was one.
pub async fn remove(conn: &mut AsyncPgConnection, user: UserId) -> Result<bool> {
    diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user.0)))
        .execute(conn)
        .await?;
    let n = diesel::delete(user_totp::table.find(user.0))
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// Replaces the recovery codes of `user` with these hashes.
pub async fn replace_recovery_codes(
    conn: &mut AsyncPgConnection,
    user: UserId,
    hashes: &[Vec<u8>],
) -> Result<()> {
    diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user.0)))
        .execute(conn)
        .await?;
    let rows: Vec<_> = hashes
        .iter()
        .map(|h| {
            (
                recovery_codes::user_id.eq(user.0),
                recovery_codes::code_hash.eq(h),
            )
        })
        .collect();
    diesel::insert_into(recovery_codes::table)
        .values(rows)
        .execute(conn)
        .await?;
    Ok(())
}

/// Uses the unused recovery code of `user` with this hash; false when there is none.
pub async fn use_recovery_code(
    conn: &mut AsyncPgConnection,
    user: UserId,
    hash: &[u8],
) -> Result<bool> {
    let n = diesel::update(
        recovery_codes::table
            .filter(recovery_codes::user_id.eq(user.0))
            .filter(recovery_codes::code_hash.eq(hash))
            .filter(recovery_codes::used_at.is_null()),
    )
    .set(recovery_codes::used_at.eq(now))
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// How many recovery codes of `user` are unused.
pub async fn recovery_codes_left(conn: &mut AsyncPgConnection, user: UserId) -> Result<i64> {
    recovery_codes::table
        .filter(recovery_codes::user_id.eq(user.0))
        .filter(recovery_codes::used_at.is_null())
        .count()
        .get_result(conn)
        .await
        .map_err(Into::into)
}

/// An open sign-in challenge.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sign_in_challenges, check_for_backend(diesel::pg::Pg))]
pub struct Challenge {
    /// Whose sign-in it is.
    pub user_id: uuid::Uuid,
    /// `second_factor` or `enroll`.
    pub purpose: String,
    /// How the first step was passed: `password` or `oidc:<provider>`.
    pub first_factor: String,
    /// A single sign-on's identity to link once the second step passes.
    pub pending: Option<serde_json::Value>,
    /// Wrong codes so far.
    pub attempts: i32,
}

/// The most open challenges of one user: more would let guesses in flight at once slip past
/// the sign-in limits, which count each when it is answered.
const MAX_OPEN: i64 = 3;

/// What a new challenge is for: its purpose (`second_factor` or `enroll`), how the first step
/// was passed, and a single sign-on's identity to link once it is passed.
#[derive(Debug, Clone, Copy)]
pub struct ChallengeKind<'a> {
    /// `second_factor` or `enroll`.
    pub purpose: &'a str,
    /// `password` or `oidc:<provider>`.
    pub first_factor: &'a str,
    /// The identity to link afterwards.
    pub pending: Option<&'a serde_json::Value>,
}

/// Stores a challenge (by hash) for `user`, valid until `expires_at`; removes expired ones,
/// and the user's oldest beyond [`MAX_OPEN`]. Call it inside a transaction: the user's
/// challenges are counted under a lock on them, so concurrent sign-ins cannot exceed it.
pub async fn insert_challenge(
    conn: &mut AsyncPgConnection,
    hash: &[u8],
    user: UserId,
    kind: ChallengeKind<'_>,
    expires_at: DateTime<Utc>,
) -> Result<()> {
    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 7))")
        .bind::<diesel::sql_types::Uuid, _>(user.0)
        .execute(conn)
        .await?;
    diesel::delete(sign_in_challenges::table.filter(sign_in_challenges::expires_at.lt(now)))
        .execute(conn)
        .await?;
    let keep = sign_in_challenges::table
        .filter(sign_in_challenges::user_id.eq(user.0))
        .order(sign_in_challenges::created_at.desc())
        .limit(MAX_OPEN - 1)
        .select(sign_in_challenges::token_hash);
    let keep: Vec<Vec<u8>> = keep.load(conn).await?;
    diesel::delete(
        sign_in_challenges::table
            .filter(sign_in_challenges::user_id.eq(user.0))
            .filter(sign_in_challenges::token_hash.ne_all(keep)),
    )
    .execute(conn)
    .await?;
    diesel::insert_into(sign_in_challenges::table)
        .values((
            sign_in_challenges::token_hash.eq(hash),
            sign_in_challenges::user_id.eq(user.0),
            sign_in_challenges::purpose.eq(kind.purpose),
            sign_in_challenges::first_factor.eq(kind.first_factor),
            sign_in_challenges::pending.eq(kind.pending),
            sign_in_challenges::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The unused, unexpired challenge with this hash and fewer than `max_attempts` wrong codes,
/// locked for the rest of the transaction.
pub async fn open_challenge_for_update(
    conn: &mut AsyncPgConnection,
    hash: &[u8],
    max_attempts: i32,
) -> Result<Option<Challenge>> {
    sign_in_challenges::table
        .find(hash)
        .filter(sign_in_challenges::used_at.is_null())
        .filter(sign_in_challenges::expires_at.gt(now))
        .filter(sign_in_challenges::attempts.lt(max_attempts))
        .select(Challenge::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
        .map_err(Into::into)
}

/// Removes every challenge of `user` (their password or second factor changed).
pub async fn drop_challenges(conn: &mut AsyncPgConnection, user: UserId) -> Result<()> {
    diesel::delete(sign_in_challenges::table.filter(sign_in_challenges::user_id.eq(user.0)))
        .execute(conn)
        .await?;
    Ok(())
}

/// Counts a wrong code against the challenge with this hash.
pub async fn count_attempt(conn: &mut AsyncPgConnection, hash: &[u8]) -> Result<()> {
    diesel::update(sign_in_challenges::table.find(hash))
        .set(sign_in_challenges::attempts.eq(sign_in_challenges::attempts + 1))
        .execute(conn)
        .await?;
    Ok(())
}

/// Uses up the challenge with this hash.
pub async fn use_challenge(conn: &mut AsyncPgConnection, hash: &[u8]) -> Result<()> {
    diesel::update(sign_in_challenges::table.find(hash))
        .set(sign_in_challenges::used_at.eq(now))
        .execute(conn)
        .await?;
    Ok(())
}

/// The sign-in policy (none until an admin sets one).
pub async fn policy(conn: &mut AsyncPgConnection) -> Result<SecondFactorPolicy> {
    let name: Option<String> = sign_in_policy::table
        .select(sign_in_policy::require_second_factor)
        .first(conn)
        .await
        .optional()?;
    Ok(name
        .and_then(|n| SecondFactorPolicy::parse("", &n).ok())
        .unwrap_or_default())
}

/// Sets the sign-in policy.
pub async fn set_policy(conn: &mut AsyncPgConnection, policy: SecondFactorPolicy) -> Result<()> {
    diesel::insert_into(sign_in_policy::table)
        .values(sign_in_policy::require_second_factor.eq(policy.as_str()))
        .on_conflict(sign_in_policy::id)
        .do_update()
        .set((
            sign_in_policy::require_second_factor.eq(policy.as_str()),
            sign_in_policy::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}
