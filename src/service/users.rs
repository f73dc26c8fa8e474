//! The signed-in user's profile and the directory of active users.

use crate::domain::audit::{Action, NewAuditEntry};
use crate::{
    auth::Caller,
    db::{self, users::User},
    domain::{DisplayName, DivisionId, Page, PageSize, PageToken, Password, SearchText, UserId},
    error::{Error, Result},
    service::State,
};
use diesel_async::AsyncConnection;
use uuid::Uuid;

/// The signed-in user; NOT_FOUND once deleted.
pub async fn me(state: &State, caller: &Caller) -> Result<User> {
    let mut conn = state.pool.get().await?;
    db::users::get(&mut conn, caller.user_id)
        .await?
        .ok_or(Error::NotFound("user"))
}

/// Changes the signed-in user's display name.
pub async fn update_me(
    state: &State,
    caller: &Caller,
    display_name: Option<DisplayName>,
) -> Result<User> {
    let mut conn = state.pool.get().await?;
    let changes = db::users::UserChanges {
        display_name,
        ..Default::default()
    };
    if !db::users::update(&mut conn, caller.user_id, changes).await? {
        return Err(Error::NotFound("user"));
    }
    db::users::get(&mut conn, caller.user_id)
        .await?
        .ok_or(Error::NotFound("user"))
}

/// Changes the password after checking the current one; other sessions are revoked.
pub async fn change_password(
    state: &State,
    caller: &Caller,
    current: &str,
    new: &Password,
) -> Result<()> {
    // No connection is held while hashing (see `auth::login`).
    let hash = {
        let mut conn = state.pool.get().await?;
        db::users::password_hash(&mut conn, caller.user_id)
            .await?
            .ok_or(Error::NotFound("user"))?
    };
    if !state.hasher.verify(current, Some(hash)).await? {
        return Err(Error::invalid(
            "current_password",
            "is not the current password",
        ));
    }
    let new_hash = state.hasher.hash(new).await?;
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        let changes = db::users::UserChanges {
            password_hash: Some(new_hash),
            ..Default::default()
        };
        db::users::update(conn, caller.user_id, changes).await?;
        db::tokens::revoke_user(conn, caller.user_id, Some(caller.session)).await?;
        db::second_factor::drop_challenges(conn, caller.user_id).await?;
        let entry = NewAuditEntry::new(Action::PasswordChanged, Some(caller.user_id))
            .on_user(caller.user_id);
        db::audit::append(conn, &entry).await?;
        Ok(())
    })
    .await?;
    let others = crate::realtime::Revoked::AllBut(caller.session);
    state.broker.revoke(caller.user_id.0, others);
    Ok(())
}

/// A page of the directory: active users by display name.
pub async fn directory(
    state: &State,
    query: Option<SearchText>,
    division: Option<DivisionId>,
    size: PageSize,
    token: PageToken<(String, Uuid)>,
) -> Result<Page<User>> {
    let filter = db::users::Filter {
        query,
        role: None,
        division,
        active_only: true,
        order: db::users::Order::DisplayName,
    };
    let mut conn = state.pool.get().await?;
    let rows = db::users::list(&mut conn, &filter, token.0, size.0 + 1).await?;
    Ok(Page::from_rows(rows, size, |u| {
        (u.display_name.clone(), u.id.0)
    }))
}

/// One active user of the directory; disabled and deleted users are NOT_FOUND.
pub async fn get_active(state: &State, id: UserId) -> Result<User> {
    let mut conn = state.pool.get().await?;
    match db::users::get(&mut conn, id).await? {
        Some(u) if !u.disabled => Ok(u),
        _ => Err(Error::NotFound("user")),
    }
}
