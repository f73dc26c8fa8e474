//! Queries on `refresh_tokens` and `password_reset_tokens`. Tokens are stored only as
//! SHA-256 hashes.

use crate::{
    db::schema::{password_reset_tokens, refresh_tokens, roles, users},
    domain::{Role, UserId},
    error::Result,
};
use chrono::{DateTime, Utc};
use diesel::{dsl::now, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// A stored refresh token.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = refresh_tokens, check_for_backend(diesel::pg::Pg))]
pub struct RefreshToken {
    /// The token's row id.
    pub id: Uuid,
    /// Its user.
    pub user_id: Uuid,
    /// The session family it belongs to.
    pub family_id: Uuid,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// When it was exchanged for a newer one.
    pub rotated_at: Option<DateTime<Utc>>,
    /// When its family was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// The token its rotation issued, sealed with a pad only this token's holder can derive.
    pub successor_sealed: Option<Vec<u8>>,
    /// When its session ends, however often it is refreshed.
    pub session_expires_at: DateTime<Utc>,
}

/// Stores a refresh token of `family`, a session that ends at `session_expires_at`.
pub async fn insert_refresh(
    conn: &mut AsyncPgConnection,
    user: UserId,
    family: Uuid,
    hash: &[u8],
    expires_at: DateTime<Utc>,
    session_expires_at: DateTime<Utc>,
) -> Result<()> {
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::user_id.eq(user.0),
            refresh_tokens::family_id.eq(family),
            refresh_tokens::token_hash.eq(hash),
            refresh_tokens::expires_at.eq(expires_at),
            refresh_tokens::session_expires_at.eq(session_expires_at),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The refresh token with this hash, locked for the rest of the transaction.
pub async fn find_refresh_for_update(
    conn: &mut AsyncPgConnection,
    hash: &[u8],
) -> Result<Option<RefreshToken>> {
    refresh_tokens::table
        .filter(refresh_tokens::token_hash.eq(hash))
        .select(RefreshToken::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
        .map_err(Into::into)
}

/// Marks a token as exchanged for the successor `sealed` seals.
pub async fn mark_rotated(conn: &mut AsyncPgConnection, id: Uuid, sealed: &[u8]) -> Result<()> {
    diesel::update(refresh_tokens::table.find(id))
        .set((
            refresh_tokens::rotated_at.eq(now),
            refresh_tokens::successor_sealed.eq(sealed),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Revokes every token of a session family.
pub async fn revoke_family(conn: &mut AsyncPgConnection, family: Uuid) -> Result<usize> {
    diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::family_id.eq(family))
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(now))
    .execute(conn)
    .await
    .map_err(Into::into)
}

/// The role of `user` while their session `family` is open (none of its tokens revoked) and
/// they are neither disabled nor deleted; None otherwise (also for a family that is not
/// theirs, or unknown). One query: what every authenticated call checks (cached).
pub async fn live_grant(
    conn: &mut AsyncPgConnection,
    user: UserId,
    family: Uuid,
) -> Result<Option<Role>> {
    let theirs = diesel::dsl::exists(
        refresh_tokens::table
            .filter(refresh_tokens::family_id.eq(family))
            .filter(refresh_tokens::user_id.eq(user.0)),
    );
    let revoked = diesel::dsl::exists(
        refresh_tokens::table
            .filter(refresh_tokens::family_id.eq(family))
            .filter(refresh_tokens::revoked_at.is_not_null()),
    );
    let role: Option<String> = users::table
        .inner_join(roles::table)
        .filter(users::id.eq(user.0))
        .filter(users::disabled_at.is_null())
        .filter(users::deleted_at.is_null())
        .filter(theirs)
        .filter(diesel::dsl::not(revoked))
        .select(roles::name)
        .first(conn)
        .await
        .optional()?;
    Ok(role.as_deref().and_then(Role::from_name))
}

/// Revokes every session of a user, optionally sparing one family (the caller's own); answers
/// how many sessions it ended.
pub async fn revoke_user(
    conn: &mut AsyncPgConnection,
    user: UserId,
    except_family: Option<Uuid>,
) -> Result<usize> {
    let mut q = diesel::update(refresh_tokens::table)
        .filter(refresh_tokens::user_id.eq(user.0))
        .filter(refresh_tokens::revoked_at.is_null())
        .into_boxed();
    if let Some(f) = except_family {
        q = q.filter(refresh_tokens::family_id.ne(f));
    }
    let mut families: Vec<Uuid> = q
        .set(refresh_tokens::revoked_at.eq(now))
        .returning(refresh_tokens::family_id)
        .get_results(conn)
        .await?;
    families.sort_unstable();
    families.dedup();
    Ok(families.len())
}

/// Stores a password reset token.
pub async fn insert_reset(
    conn: &mut AsyncPgConnection,
    user: UserId,
    hash: &[u8],
    expires_at: DateTime<Utc>,
) -> Result<()> {
    diesel::insert_into(password_reset_tokens::table)
        .values((
            password_reset_tokens::user_id.eq(user.0),
            password_reset_tokens::token_hash.eq(hash),
            password_reset_tokens::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// True when a reset token with this hash is unused and unexpired.
pub async fn reset_is_open(conn: &mut AsyncPgConnection, hash: &[u8]) -> Result<bool> {
    diesel::select(diesel::dsl::exists(
        password_reset_tokens::table
            .filter(password_reset_tokens::token_hash.eq(hash))
            .filter(password_reset_tokens::used_at.is_null())
            .filter(password_reset_tokens::expires_at.gt(now)),
    ))
    .get_result(conn)
    .await
    .map_err(Into::into)
}

/// Consumes an unused, unexpired reset token: marks it used and returns its user. Every
/// other open reset token of that user is consumed too.
pub async fn consume_reset(conn: &mut AsyncPgConnection, hash: &[u8]) -> Result<Option<UserId>> {
    let user: Option<Uuid> = diesel::update(
        password_reset_tokens::table
            .filter(password_reset_tokens::token_hash.eq(hash))
            .filter(password_reset_tokens::used_at.is_null())
            .filter(password_reset_tokens::expires_at.gt(now)),
    )
    .set(password_reset_tokens::used_at.eq(now))
    .returning(password_reset_tokens::user_id)
    .get_result(conn)
    .await
    .optional()?;
    if let Some(u) = user {
        diesel::update(
            password_reset_tokens::table
                .filter(password_reset_tokens::user_id.eq(u))
                .filter(password_reset_tokens::used_at.is_null()),
        )
        .set(password_reset_tokens::used_at.eq(now))
        .execute(conn)
        .await?;
    }
    Ok(user.map(UserId))
}
