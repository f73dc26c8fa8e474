//! Queries on `signing_keys` (the access-token keys every instance of one database shares)
//! and `server_secrets` (the roots of derived keys).

use crate::domain::audit::{Action, NewAuditEntry};
use crate::{
    db::schema::{server_secrets, signing_keys},
    error::Result,
};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

/// A signing key.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = signing_keys, check_for_backend(diesel::pg::Pg))]
pub struct SigningKey {
    /// Its id (the tokens' `kid`).
    pub kid: String,
    /// The HMAC secret.
    pub secret: Vec<u8>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When a newer key replaced it (None: it signs now).
    pub retired_at: Option<DateTime<Utc>>,
}

/// Whether any signing key exists.
pub async fn any(conn: &mut AsyncPgConnection) -> Result<bool> {
    let n: i64 = signing_keys::table.count().get_result(conn).await?;
    Ok(n > 0)
}

/// The key that signs, then the keys retired after `retired_after`, newest first.
pub async fn usable(
    conn: &mut AsyncPgConnection,
    retired_after: DateTime<Utc>,
) -> Result<Vec<SigningKey>> {
    Ok(signing_keys::table
        .filter(
            signing_keys::retired_at
                .is_null()
                .or(signing_keys::retired_at.gt(retired_after)),
        )
        .order((
            signing_keys::retired_at.is_not_null(),
            signing_keys::created_at.desc(),
        ))
        .select(SigningKey::as_select())
        .load(conn)
        .await?)
}

/// Every key, newest first.
pub async fn all(conn: &mut AsyncPgConnection) -> Result<Vec<SigningKey>> {
    Ok(signing_keys::table
        .order(signing_keys::created_at.desc())
        .select(SigningKey::as_select())
        .load(conn)
        .await?)
}

/// Stores the first key, unless a key that signs exists already (instances starting at once:
/// one key wins, and all load it).
pub async fn create_first(conn: &mut AsyncPgConnection, kid: &str, secret: &[u8]) -> Result<()> {
    diesel::insert_into(signing_keys::table)
        .values((signing_keys::kid.eq(kid), signing_keys::secret.eq(secret)))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

/// Retires the key that signs and stores `kid` as the one that signs from now on, in one
/// transaction; answers the retired key's id.
pub async fn rotate(
    conn: &mut AsyncPgConnection,
    kid: &str,
    secret: &[u8],
) -> Result<Option<String>> {
    conn.transaction::<_, crate::error::Error, _>(async |conn| {
        let retired: Option<String> = diesel::update(signing_keys::table)
            .filter(signing_keys::retired_at.is_null())
            .set(signing_keys::retired_at.eq(diesel::dsl::now))
            .returning(signing_keys::kid)
            .get_result(conn)
            .await
            .optional()?;
        diesel::insert_into(signing_keys::table)
            .values((signing_keys::kid.eq(kid), signing_keys::secret.eq(secret)))
            .execute(conn)
            .await?;
        let entry = NewAuditEntry::new(Action::SigningKeyRotated, None)
            .on(format!("signing-key:{kid}"))
            .with(serde_json::json!({ "retired": retired }));
        crate::db::audit::append(conn, &entry).await?;
        Ok(retired)
    })
    .await
}

/// The secret named `name`, stored as `fresh` when there is none yet.
pub async fn secret(conn: &mut AsyncPgConnection, name: &str, fresh: &[u8]) -> Result<Vec<u8>> {
    diesel::insert_into(server_secrets::table)
        .values((
            server_secrets::name.eq(name),
            server_secrets::secret.eq(fresh),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(server_secrets::table
        .find(name)
        .select(server_secrets::secret)
        .get_result(conn)
        .await?)
}
