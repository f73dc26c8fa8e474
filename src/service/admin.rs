//! User, role and division management. Every function checks that the caller is an admin.

use crate::{
    auth::Caller,
    db::{self, divisions::Division, users::User},
    domain::{
        DisplayName, DivisionId, DivisionName, Email, Page, PageSize, PageToken, Password, Role,
        UserId,
    },
    error::{Error, Result},
    service::{State, accounts},
};
use diesel_async::AsyncConnection;
use uuid::Uuid;

/// Lists users that are not deleted, by email.
pub async fn list_users(
    state: &State,
    caller: &Caller,
    filter: db::users::Filter,
    size: PageSize,
    token: PageToken<(String, Uuid)>,
) -> Result<Page<User>> {
    caller.require_admin()?;
    let mut conn = state.pool.get().await?;
    let rows = db::users::list(&mut conn, &filter, token.0, size.0 + 1).await?;
    Ok(Page::from_rows(rows, size, |u| (u.email.clone(), u.id.0)))
}

/// Creates a user.
pub async fn create_user(
    state: &State,
    caller: &Caller,
    new: accounts::NewAccount,
) -> Result<User> {
    caller.require_admin()?;
    accounts::create(&state.pool, &state.hasher, new).await
}

/// One user that is not deleted.
pub async fn get_user(state: &State, caller: &Caller, id: UserId) -> Result<User> {
    caller.require_admin()?;
    let mut conn = state.pool.get().await?;
    db::users::get(&mut conn, id)
        .await?
        .ok_or(Error::NotFound("user"))
}

/// Validated changes to a user; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct UserUpdate {
    /// A new email.
    pub email: Option<Email>,
    /// A new display name.
    pub display_name: Option<DisplayName>,
    /// A new password.
    pub password: Option<Password>,
    /// A new role.
    pub role: Option<Role>,
    /// The complete new set of divisions.
    pub divisions: Option<Vec<DivisionId>>,
    /// Disable or enable.
    pub disabled: Option<bool>,
}

/// Applies `update` in one transaction. Disabling or a new password revokes every session.
/// Admins cannot demote or disable themselves (so one admin always remains).
pub async fn update_user(
    state: &State,
    caller: &Caller,
    id: UserId,
    update: UserUpdate,
) -> Result<User> {
    caller.require_admin()?;
    if id == caller.user_id {
        if update.role.is_some_and(|r| r != Role::Admin) {
            return Err(Error::FailedPrecondition(
                "admins cannot remove their own ADMIN role".into(),
            ));
        }
        if update.disabled == Some(true) {
            return Err(Error::FailedPrecondition(
                "admins cannot disable themselves".into(),
            ));
        }
    }
    let password_hash = match &update.password {
        Some(p) => Some(state.hasher.hash(p).await?),
        None => None,
    };
    let revoke = update.disabled == Some(true) || password_hash.is_some();
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        let changes = db::users::UserChanges {
            email: update.email,
            display_name: update.display_name,
            password_hash,
            role: update.role,
            disabled: update.disabled,
        };
        if !db::users::update(conn, id, changes).await? {
            return Err(Error::NotFound("user"));
        }
        if let Some(divisions) = &update.divisions {
            db::users::set_divisions(conn, id, divisions).await?;
        }
        if revoke {
            db::tokens::revoke_user(conn, id, None).await?;
        }
        db::users::get(conn, id)
            .await?
            .ok_or(Error::NotFound("user"))
    })
    .await
}

/// Deletes a user and revokes their sessions. Admins cannot delete themselves.
pub async fn delete_user(state: &State, caller: &Caller, id: UserId) -> Result<()> {
    caller.require_admin()?;
    if id == caller.user_id {
        return Err(Error::FailedPrecondition(
            "admins cannot delete themselves".into(),
        ));
    }
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        if !db::users::soft_delete(conn, id).await? {
            return Err(Error::NotFound("user"));
        }
        db::tokens::revoke_user(conn, id, None).await?;
        Ok(())
    })
    .await
}

/// Every division.
pub async fn list_divisions(state: &State, caller: &Caller) -> Result<Vec<Division>> {
    caller.require_admin()?;
    let mut conn = state.pool.get().await?;
    db::divisions::list(&mut conn).await
}

/// Creates a division.
pub async fn create_division(
    state: &State,
    caller: &Caller,
    name: DivisionName,
) -> Result<Division> {
    caller.require_admin()?;
    let mut conn = state.pool.get().await?;
    let id = db::divisions::insert(&mut conn, &name).await?;
    db::divisions::get(&mut conn, id).await
}

/// Renames a division.
pub async fn rename_division(
    state: &State,
    caller: &Caller,
    id: DivisionId,
    name: DivisionName,
) -> Result<Division> {
    caller.require_admin()?;
    let mut conn = state.pool.get().await?;
    db::divisions::rename(&mut conn, id, &name).await?;
    db::divisions::get(&mut conn, id).await
}

/// Deletes a division and its memberships.
pub async fn delete_division(state: &State, caller: &Caller, id: DivisionId) -> Result<()> {
    caller.require_admin()?;
    let mut conn = state.pool.get().await?;
    db::divisions::delete(&mut conn, id).await
}

/// Adds (`add`) or removes a user's membership of a division.
pub async fn set_division_member(
    state: &State,
    caller: &Caller,
    id: DivisionId,
    user: UserId,
    add: bool,
) -> Result<Division> {
    caller.require_admin()?;
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        db::divisions::get(conn, id).await?;
        if db::users::get(conn, user).await?.is_none() {
            return Err(Error::NotFound("user"));
        }
        if add {
            db::divisions::add_member(conn, id, user).await?;
        } else {
            db::divisions::remove_member(conn, id, user).await?;
        }
        db::divisions::get(conn, id).await
    })
    .await
}
