//! User, role and division management. Every function takes an [`Admin`]: the proof, made
//! once per call by [`authorize`], that the caller is an active admin.

use crate::domain::audit::{Action, NewAuditEntry};
use crate::{
    auth::Caller,
    db::{self, divisions::Division, users::User},
    domain::{
        DisplayName, DivisionId, DivisionName, Email, Page, PageSize, PageToken, Password, Role,
        UserId,
    },
    error::{Error, Result},
    realtime::Revoked,
    service::{State, accounts},
};
use diesel_async::AsyncConnection;
use serde_json::json;
use uuid::Uuid;

/// A caller checked to be an active admin; only [`authorize`] makes one.
#[derive(Debug, Clone, Copy)]
pub struct Admin(Caller);

impl Admin {
    /// The admin's user id.
    pub fn user_id(&self) -> UserId {
        self.0.user_id
    }
}

/// The caller as an [`Admin`], or PERMISSION_DENIED: by their token, and still now in the
/// database (a disabled, deleted or demoted admin loses the rights at once, not when the
/// token expires). Adapters call it before they parse anything, so non-admins learn nothing
/// about what a valid request would be.
pub async fn authorize(state: &State, caller: &Caller) -> Result<Admin> {
    caller.require_admin()?;
    let mut conn = state.pool.get().await?;
    if db::users::is_active_admin(&mut conn, caller.user_id).await? {
        Ok(Admin(*caller))
    } else {
        Err(Error::PermissionDenied("this needs the ADMIN role".into()))
    }
}

/// Lists users that are not deleted, by email.
pub async fn list_users(
    state: &State,
    _admin: &Admin,
    filter: db::users::Filter,
    size: PageSize,
    token: PageToken<(String, Uuid)>,
) -> Result<Page<User>> {
    let mut conn = state.pool.get().await?;
    let rows = db::users::list(&mut conn, &filter, token.0, size.0 + 1).await?;
    Ok(Page::from_rows(rows, size, |u| (u.email.clone(), u.id.0)))
}

/// Creates a user.
pub async fn create_user(state: &State, admin: &Admin, new: accounts::NewAccount) -> Result<User> {
    accounts::create(&state.pool, &state.hasher, new, Some(admin.user_id())).await
}

/// One user that is not deleted.
pub async fn get_user(state: &State, _admin: &Admin, id: UserId) -> Result<User> {
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

/// Applies `update` in one transaction. Disabling, a new password or a new role revokes
/// every session (and ends the user's streams).
/// Admins cannot demote or disable themselves (so one admin always remains).
pub async fn update_user(
    state: &State,
    admin: &Admin,
    id: UserId,
    update: UserUpdate,
) -> Result<User> {
    if id == admin.user_id() {
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
    let mut conn = state.pool.get().await?;
    let (user, revoke) = conn
        .transaction::<_, Error, _>(async |conn| {
            let before = db::users::get(conn, id)
                .await?
                .ok_or(Error::NotFound("user"))?;
            let revoke = update.disabled == Some(true)
                || password_hash.is_some()
                || update.role.is_some_and(|r| r != before.role);
            for entry in update_entries(admin, &before, &update, password_hash.is_some()) {
                db::audit::append(conn, &entry).await?;
            }
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
                db::second_factor::drop_challenges(conn, id).await?;
            }
            let user = db::users::get(conn, id)
                .await?
                .ok_or(Error::NotFound("user"))?;
            Ok((user, revoke))
        })
        .await?;
    if revoke {
        state.broker.revoke(id.0, Revoked::All);
    }
    Ok(user)
}

/// The audit entries of `update` to `before`: the fields changed, and a role or status
/// change each on its own.
fn update_entries(
    admin: &Admin,
    before: &User,
    update: &UserUpdate,
    password: bool,
) -> Vec<NewAuditEntry> {
    let entry = |action| NewAuditEntry::new(action, Some(admin.user_id())).on_user(before.id);
    let mut fields = vec![];
    for (set, name) in [
        (update.email.is_some(), "email"),
        (update.display_name.is_some(), "display_name"),
        (password, "password"),
        (update.role.is_some(), "role"),
        (update.divisions.is_some(), "division_ids"),
        (update.disabled.is_some(), "disabled"),
    ] {
        if set {
            fields.push(name);
        }
    }
    let mut entries = vec![entry(Action::UserUpdated).with(json!({ "fields": fields }))];
    if let Some(role) = update.role.filter(|r| *r != before.role) {
        entries.push(
            entry(Action::RoleChanged)
                .with(json!({ "from": before.role.as_str(), "to": role.as_str() })),
        );
    }
    match update.disabled {
        Some(true) if !before.disabled => entries.push(entry(Action::UserDisabled)),
        Some(false) if before.disabled => entries.push(entry(Action::UserEnabled)),
        _ => {}
    }
    entries
}

/// Deletes a user: revokes their sessions (ending their streams) and takes them out of every
/// conversation. Admins cannot delete themselves.
pub async fn delete_user(state: &State, admin: &Admin, id: UserId) -> Result<()> {
    if id == admin.user_id() {
        return Err(Error::FailedPrecondition(
            "admins cannot delete themselves".into(),
        ));
    }
    let mut conn = state.pool.get().await?;
    let left = conn
        .transaction::<_, Error, _>(async |conn| {
            if !db::users::soft_delete(conn, id).await? {
                return Err(Error::NotFound("user"));
            }
            db::tokens::revoke_user(conn, id, None).await?;
            db::second_factor::drop_challenges(conn, id).await?;
            let entry = NewAuditEntry::new(Action::UserDeleted, Some(admin.user_id())).on_user(id);
            db::audit::append(conn, &entry).await?;
            // Their messages stay (authored by "Deleted user"); their memberships go.
            crate::service::conversations::remove_everywhere(conn, id).await
        })
        .await?;
    state.broker.revoke(id.0, Revoked::All);
    for event in left {
        state.broker.publish(event);
    }
    Ok(())
}

/// Every division.
pub async fn list_divisions(state: &State, _admin: &Admin) -> Result<Vec<Division>> {
    let mut conn = state.pool.get().await?;
    db::divisions::list(&mut conn).await
}

/// An admin's change to division `id`, for the audit log.
fn division_entry(admin: &Admin, action: Action, id: DivisionId) -> NewAuditEntry {
    NewAuditEntry::new(action, Some(admin.user_id())).on(format!("division:{}", id.0))
}

/// Creates a division.
pub async fn create_division(state: &State, admin: &Admin, name: DivisionName) -> Result<Division> {
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        let id = db::divisions::insert(conn, &name).await?;
        let entry = division_entry(admin, Action::DivisionCreated, id);
        db::audit::append(conn, &entry.with(json!({ "name": name.as_str() }))).await?;
        db::divisions::get(conn, id).await
    })
    .await
}

/// Renames a division.
pub async fn rename_division(
    state: &State,
    admin: &Admin,
    id: DivisionId,
    name: DivisionName,
) -> Result<Division> {
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        db::divisions::rename(conn, id, &name).await?;
        let entry = division_entry(admin, Action::DivisionRenamed, id);
        db::audit::append(conn, &entry.with(json!({ "name": name.as_str() }))).await?;
        db::divisions::get(conn, id).await
    })
    .await
}

/// Deletes a division and its memberships.
pub async fn delete_division(state: &State, admin: &Admin, id: DivisionId) -> Result<()> {
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        db::divisions::delete(conn, id).await?;
        db::audit::append(conn, &division_entry(admin, Action::DivisionDeleted, id)).await
    })
    .await
}

/// Adds (`add`) or removes a user's membership of a division.
pub async fn set_division_member(
    state: &State,
    admin: &Admin,
    id: DivisionId,
    user: UserId,
    add: bool,
) -> Result<Division> {
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        db::divisions::get(conn, id).await?;
        if db::users::get(conn, user).await?.is_none() {
            return Err(Error::NotFound("user"));
        }
        let action = if add {
            db::divisions::add_member(conn, id, user).await?;
            Action::DivisionMemberAdded
        } else {
            db::divisions::remove_member(conn, id, user).await?;
            Action::DivisionMemberRemoved
        };
        let entry = division_entry(admin, action, id).with(json!({ "user_id": user.0 }));
        db::audit::append(conn, &entry).await?;
        db::divisions::get(conn, id).await
    })
    .await
}
