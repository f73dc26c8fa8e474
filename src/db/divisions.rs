//! Queries on `divisions` and their memberships.

pub use crate::domain::users::Division;
use crate::{
    db::schema::{divisions, user_divisions, users},
    domain::{DivisionId, DivisionName, UserId},
    error::{Error, Result, on_unique},
};
use chrono::{DateTime, Utc};
use diesel::{dsl::now, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

const NAME_TAKEN: &str = "a division with this name already exists";

/// Every division, by name, with member counts.
pub async fn list(conn: &mut AsyncPgConnection) -> Result<Vec<Division>> {
    let rows: Vec<(i32, String, DateTime<Utc>)> = divisions::table
        .order((divisions::name, divisions::id))
        .select((divisions::id, divisions::name, divisions::created_at))
        .load(conn)
        .await?;
    let counts: Vec<(i32, i64)> = user_divisions::table
        .inner_join(users::table)
        .filter(users::deleted_at.is_null())
        .filter(users::disabled_at.is_null())
        .group_by(user_divisions::division_id)
        .select((user_divisions::division_id, diesel::dsl::count_star()))
        .load(conn)
        .await?;
    let count_of = |id: i32| {
        counts
            .iter()
            .find(|(d, _)| *d == id)
            .map_or(0, |(_, n)| i32::try_from(*n).unwrap_or(i32::MAX))
    };
    Ok(rows
        .into_iter()
        .map(|(id, name, created_at)| Division {
            id: DivisionId(id),
            member_count: count_of(id),
            name,
            created_at,
        })
        .collect())
}

/// One division, or NOT_FOUND.
pub async fn get(conn: &mut AsyncPgConnection, id: DivisionId) -> Result<Division> {
    let (name, created_at): (String, DateTime<Utc>) = divisions::table
        .find(id.0)
        .select((divisions::name, divisions::created_at))
        .first(conn)
        .await
        .optional()?
        .ok_or(Error::NotFound("division"))?;
    let n: i64 = user_divisions::table
        .inner_join(users::table)
        .filter(user_divisions::division_id.eq(id.0))
        .filter(users::deleted_at.is_null())
        .filter(users::disabled_at.is_null())
        .count()
        .get_result(conn)
        .await?;
    Ok(Division {
        id,
        name,
        member_count: i32::try_from(n).unwrap_or(i32::MAX),
        created_at,
    })
}

/// Creates a division; a taken name is ALREADY_EXISTS.
pub async fn insert(conn: &mut AsyncPgConnection, name: &DivisionName) -> Result<DivisionId> {
    diesel::insert_into(divisions::table)
        .values(divisions::name.eq(name.as_str()))
        .returning(divisions::id)
        .get_result(conn)
        .await
        .map(DivisionId)
        .map_err(|e| on_unique(e, "divisions_name_key", NAME_TAKEN))
}

/// Renames a division; NOT_FOUND when missing, ALREADY_EXISTS when the name is taken.
pub async fn rename(
    conn: &mut AsyncPgConnection,
    id: DivisionId,
    name: &DivisionName,
) -> Result<()> {
    let n = diesel::update(divisions::table.find(id.0))
        .set((
            divisions::name.eq(name.as_str()),
            divisions::updated_at.eq(now),
        ))
        .execute(conn)
        .await
        .map_err(|e| on_unique(e, "divisions_name_key", NAME_TAKEN))?;
    if n == 0 {
        return Err(Error::NotFound("division"));
    }
    Ok(())
}

/// Deletes a division and its memberships; NOT_FOUND when missing.
pub async fn delete(conn: &mut AsyncPgConnection, id: DivisionId) -> Result<()> {
    let n = diesel::delete(divisions::table.find(id.0))
        .execute(conn)
        .await?;
    if n == 0 {
        return Err(Error::NotFound("division"));
    }
    Ok(())
}

/// Adds a user to a division (nothing happens when already a member).
pub async fn add_member(conn: &mut AsyncPgConnection, id: DivisionId, user: UserId) -> Result<()> {
    diesel::insert_into(user_divisions::table)
        .values((
            user_divisions::division_id.eq(id.0),
            user_divisions::user_id.eq(user.0),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes a user from a division (nothing happens when not a member).
pub async fn remove_member(
    conn: &mut AsyncPgConnection,
    id: DivisionId,
    user: UserId,
) -> Result<()> {
    diesel::delete(
        user_divisions::table
            .filter(user_divisions::division_id.eq(id.0))
            .filter(user_divisions::user_id.eq(user.0)),
    )
    .execute(conn)
    .await?;
    Ok(())
}
