//! Queries on `users`, `roles` and `user_divisions`.

use crate::domain::ai::ASSISTANT_ID;
pub use crate::domain::users::{Filter, Order, User};
use crate::{
    db::schema::{roles, user_divisions, users},
    domain::{DisplayName, DivisionId, Email, Role, UserId},
    error::{Error, Result, on_unique},
};
use chrono::{DateTime, Utc};
use diesel::{dsl::now, pg::Pg, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::collections::HashMap;
use uuid::Uuid;

#[derive(Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(Pg))]
struct Row {
    id: Uuid,
    email: String,
    display_name: String,
    password_hash: String,
    disabled_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

type Joined = (Row, String);

fn to_user((row, role): Joined, divisions: Vec<DivisionId>) -> Result<User> {
    Ok(User {
        id: UserId(row.id),
        email: row.email,
        display_name: row.display_name,
        role: Role::from_name(&role)
            .ok_or_else(|| Error::internal(format!("unknown role {role}")))?,
        division_ids: divisions,
        disabled: row.disabled_at.is_some(),
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

async fn with_divisions(conn: &mut AsyncPgConnection, rows: Vec<Joined>) -> Result<Vec<User>> {
    let ids: Vec<Uuid> = rows.iter().map(|(r, _)| r.id).collect();
    let mut divisions = division_ids_of(conn, &ids).await?;
    rows.into_iter()
        .map(|j| {
            let d = divisions.remove(&j.0.id).unwrap_or_default();
            to_user(j, d)
        })
        .collect()
}

async fn division_ids_of(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<DivisionId>>> {
    let pairs: Vec<(Uuid, i32)> = user_divisions::table
        .filter(user_divisions::user_id.eq_any(ids))
        .order((user_divisions::user_id, user_divisions::division_id))
        .select((user_divisions::user_id, user_divisions::division_id))
        .load(conn)
        .await?;
    let mut map: HashMap<Uuid, Vec<DivisionId>> = HashMap::new();
    for (u, d) in pairs {
        map.entry(u).or_default().push(DivisionId(d));
    }
    Ok(map)
}

/// The id of `role` in the `roles` table.
async fn role_id(conn: &mut AsyncPgConnection, role: Role) -> Result<i32> {
    roles::table
        .filter(roles::name.eq(role.as_str()))
        .select(roles::id)
        .first(conn)
        .await
        .map_err(Into::into)
}

/// The user (not deleted) with this id.
pub async fn get(conn: &mut AsyncPgConnection, id: UserId) -> Result<Option<User>> {
    let row: Option<Joined> = users::table
        .inner_join(roles::table)
        .filter(users::id.eq(id.0))
        .filter(users::deleted_at.is_null())
        .select((Row::as_select(), roles::name))
        .first(conn)
        .await
        .optional()?;
    match row {
        Some(j) => Ok(with_divisions(conn, vec![j]).await?.pop()),
        None => Ok(None),
    }
}

/// The user (not deleted) with this email, and their password hash.
pub async fn find_by_email(
    conn: &mut AsyncPgConnection,
    email: &Email,
) -> Result<Option<(User, String)>> {
    let row: Option<Joined> = users::table
        .inner_join(roles::table)
        .filter(users::email.eq(email.as_str()))
        .filter(users::deleted_at.is_null())
        .select((Row::as_select(), roles::name))
        .first(conn)
        .await
        .optional()?;
    match row {
        Some(j) => {
            let hash = j.0.password_hash.clone();
            let user = with_divisions(conn, vec![j]).await?.pop();
            Ok(user.map(|u| (u, hash)))
        }
        None => Ok(None),
    }
}

/// The password hash of an active user.
pub async fn password_hash(conn: &mut AsyncPgConnection, id: UserId) -> Result<Option<String>> {
    users::table
        .filter(users::id.eq(id.0))
        .filter(users::deleted_at.is_null())
        .filter(users::disabled_at.is_null())
        .select(users::password_hash)
        .first(conn)
        .await
        .optional()
        .map_err(Into::into)
}

/// A user to create.
#[derive(Debug)]
pub struct NewUser<'a> {
    /// The email address.
    pub email: &'a Email,
    /// The display name.
    pub display_name: &'a DisplayName,
    /// The argon2 hash of the password.
    pub password_hash: &'a str,
    /// The role.
    pub role: Role,
}

/// Inserts a user; a taken email is ALREADY_EXISTS.
pub async fn insert(conn: &mut AsyncPgConnection, new: NewUser<'_>) -> Result<UserId> {
    let role = role_id(conn, new.role).await?;
    diesel::insert_into(users::table)
        .values((
            users::email.eq(new.email.as_str()),
            users::display_name.eq(new.display_name.as_str()),
            users::password_hash.eq(new.password_hash),
            users::role_id.eq(role),
        ))
        .returning(users::id)
        .get_result(conn)
        .await
        .map(UserId)
        .map_err(|e| on_unique(e, "users_email_key", "email is already in use"))
}

/// Changes to a user; `None` leaves a column as it is.
#[derive(Debug, Default)]
pub struct UserChanges {
    /// A new email address.
    pub email: Option<Email>,
    /// A new display name.
    pub display_name: Option<DisplayName>,
    /// A new password hash.
    pub password_hash: Option<String>,
    /// A new role.
    pub role: Option<Role>,
    /// Disable (true) or enable (false).
    pub disabled: Option<bool>,
}

/// Applies `changes` to a user that is not deleted; false when there is no such user.
pub async fn update(
    conn: &mut AsyncPgConnection,
    id: UserId,
    changes: UserChanges,
) -> Result<bool> {
    let role = match changes.role {
        Some(r) => Some(role_id(conn, r).await?),
        None => None,
    };
    // The assistant's system account is not managed through the API.
    let target = users::table
        .filter(users::id.eq(id.0))
        .filter(users::id.ne(ASSISTANT_ID))
        .filter(users::deleted_at.is_null());
    let disabled_at: Option<Option<DateTime<Utc>>> = changes.disabled.map(|d| d.then(Utc::now));
    let n = diesel::update(target)
        .set((
            users::updated_at.eq(now),
            changes.email.as_ref().map(|e| users::email.eq(e.as_str())),
            changes
                .display_name
                .as_ref()
                .map(|n| users::display_name.eq(n.as_str())),
            changes.password_hash.map(|h| users::password_hash.eq(h)),
            role.map(|r| users::role_id.eq(r)),
            disabled_at.map(|d| users::disabled_at.eq(d)),
        ))
        .execute(conn)
        .await
        .map_err(|e| on_unique(e, "users_email_key", "email is already in use"))?;
    Ok(n == 1)
}

/// Replaces a user's divisions; an unknown division is INVALID_ARGUMENT on `division_ids`.
pub async fn set_divisions(
    conn: &mut AsyncPgConnection,
    id: UserId,
    divisions: &[DivisionId],
) -> Result<()> {
    diesel::delete(user_divisions::table.filter(user_divisions::user_id.eq(id.0)))
        .execute(conn)
        .await?;
    let rows: Vec<_> = divisions
        .iter()
        .map(|d| {
            (
                user_divisions::user_id.eq(id.0),
                user_divisions::division_id.eq(d.0),
            )
        })
        .collect();
    diesel::insert_into(user_divisions::table)
        .values(rows)
        .on_conflict_do_nothing()
        .execute(conn)
        .await
        .map_err(|e| match e {
            diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::ForeignKeyViolation,
                _,
            ) => Error::invalid("division_ids", "names a division that does not exist"),
            e => e.into(),
        })?;
    Ok(())
}

/// Deletes a user: anonymised, disabled, out of every division; their content stays.
pub async fn soft_delete(conn: &mut AsyncPgConnection, id: UserId) -> Result<bool> {
    let n = diesel::update(
        users::table
            .filter(users::id.eq(id.0))
            .filter(users::id.ne(ASSISTANT_ID))
            .filter(users::deleted_at.is_null()),
    )
    .set((
        users::deleted_at.eq(now),
        users::disabled_at.eq(now),
        users::updated_at.eq(now),
        users::email.eq(format!("deleted-{}@deleted.invalid", id.0)),
        users::display_name.eq("Deleted user"),
        // Not a valid PHC string: no password can ever match.
        users::password_hash.eq("!deleted"),
    ))
    .execute(conn)
    .await?;
    diesel::delete(user_divisions::table.filter(user_divisions::user_id.eq(id.0)))
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// Those of `ids` who are users neither disabled nor deleted (one query).
pub async fn active_among(
    conn: &mut AsyncPgConnection,
    ids: &[UserId],
) -> Result<std::collections::HashSet<UserId>> {
    let raw: Vec<Uuid> = ids.iter().map(|u| u.0).collect();
    let found: Vec<Uuid> = users::table
        .filter(users::id.eq_any(raw))
        .filter(users::deleted_at.is_null())
        .filter(users::disabled_at.is_null())
        .select(users::id)
        .load(conn)
        .await?;
    Ok(found.into_iter().map(UserId).collect())
}

/// True when `id` is an admin who is neither disabled nor deleted: what the token claimed,
/// checked again now.
pub async fn is_active_admin(conn: &mut AsyncPgConnection, id: UserId) -> Result<bool> {
    diesel::select(diesel::dsl::exists(
        users::table
            .inner_join(roles::table)
            .filter(users::id.eq(id.0))
            .filter(roles::name.eq(Role::Admin.as_str()))
            .filter(users::deleted_at.is_null())
            .filter(users::disabled_at.is_null()),
    ))
    .get_result(conn)
    .await
    .map_err(Into::into)
}

/// How many active admins exist.
pub async fn count_active_admins(conn: &mut AsyncPgConnection) -> Result<i64> {
    users::table
        .inner_join(roles::table)
        .filter(roles::name.eq(Role::Admin.as_str()))
        .filter(users::deleted_at.is_null())
        .filter(users::disabled_at.is_null())
        .count()
        .get_result(conn)
        .await
        .map_err(Into::into)
}

/// Escapes `%`, `_` and `\` for a LIKE pattern that matches `text` anywhere.
pub fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// Up to `limit` users matching `filter`, after the key `after` (sort value, id).
pub async fn list(
    conn: &mut AsyncPgConnection,
    filter: &Filter,
    after: Option<(String, Uuid)>,
    limit: i64,
) -> Result<Vec<User>> {
    // Lists are of people: the assistant's system account is left out.
    let mut q = users::table
        .inner_join(roles::table)
        .filter(users::deleted_at.is_null())
        .filter(users::id.ne(ASSISTANT_ID))
        .select((Row::as_select(), roles::name))
        .into_boxed();
    if filter.active_only {
        q = q.filter(users::disabled_at.is_null());
    }
    if let Some(text) = &filter.query {
        let p = contains_pattern(text.as_str());
        q = q.filter(
            users::email
                .ilike(p.clone())
                .or(users::display_name.ilike(p)),
        );
    }
    if let Some(role) = filter.role {
        q = q.filter(roles::name.eq(role.as_str()));
    }
    if let Some(d) = filter.division {
        q = q.filter(
            users::id.eq_any(
                user_divisions::table
                    .filter(user_divisions::division_id.eq(d.0))
                    .select(user_divisions::user_id),
            ),
        );
    }
    q = match (filter.order, after) {
        (Order::Email, Some((k, id))) => q.filter(
            users::email
                .gt(k.clone())
                .or(users::email.eq(k).and(users::id.gt(id))),
        ),
        (Order::DisplayName, Some((k, id))) => q.filter(
            users::display_name
                .gt(k.clone())
                .or(users::display_name.eq(k).and(users::id.gt(id))),
        ),
        (_, None) => q,
    };
    q = match filter.order {
        Order::Email => q.order((users::email, users::id)),
        Order::DisplayName => q.order((users::display_name, users::id)),
    };
    let rows: Vec<Joined> = q.limit(limit).load(conn).await?;
    with_divisions(conn, rows).await
}
