//! A user's notification preferences (channels per kind, previews, time zone, quiet hours),
//! the admin's default for users who have not chosen, and mutes of conversations and
//! projects the user belongs to.

use crate::{
    auth::Caller,
    db,
    domain::{
        Role,
        notifications::{ChannelMap, Settings},
    },
    error::{Error, Result},
    service::State,
};
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use uuid::Uuid;

/// The caller's settings in force.
pub async fn get(state: &State, caller: &Caller) -> Result<Settings> {
    let mut conn = state.pool.get().await?;
    let user = caller.user_id.0;
    db::preferences::settings_of(&mut conn, &[user])
        .await?
        .remove(&user)
        .ok_or_else(|| Error::internal("no settings in force"))
}

/// Replaces the caller's settings: `changes` over the channels in force, and the rest.
pub async fn update(state: &State, caller: &Caller, changes: Settings) -> Result<Settings> {
    let mut conn = state.pool.get().await?;
    let user = caller.user_id.0;
    let mut current = db::preferences::settings_of(&mut conn, &[user])
        .await?
        .remove(&user)
        .ok_or_else(|| Error::internal("no settings in force"))?;
    current.channels.extend(changes.channels);
    let new = Settings {
        channels: current.channels,
        is_default: false,
        ..changes
    };
    db::preferences::set(&mut conn, user, &new).await?;
    Ok(new)
}

/// The admin's default (admins only).
pub async fn defaults(state: &State, caller: &Caller) -> Result<(ChannelMap, bool)> {
    admin_only(caller)?;
    let mut conn = state.pool.get().await?;
    db::preferences::defaults(&mut conn).await
}

/// Replaces the admin's default (admins only): `changes` over the channels in force.
pub async fn set_defaults(
    state: &State,
    caller: &Caller,
    changes: ChannelMap,
    previews: bool,
) -> Result<(ChannelMap, bool)> {
    admin_only(caller)?;
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        let (mut channels, _) = db::preferences::defaults(conn).await?;
        channels.extend(changes);
        db::preferences::set_defaults(conn, &channels, previews).await?;
        let entry = crate::domain::audit::NewAuditEntry::new(
            crate::domain::audit::Action::NotificationDefaultsChanged,
            Some(caller.user_id),
        )
        .on("notification-defaults".to_owned())
        .with(serde_json::json!({ "channels": channels, "previews": previews }));
        db::audit::append(conn, &entry).await?;
        Ok((channels, previews))
    })
    .await
}

fn admin_only(caller: &Caller) -> Result<()> {
    match caller.role {
        Role::Admin => Ok(()),
        _ => Err(Error::PermissionDenied("admins only".into())),
    }
}

/// Mutes a conversation or project of the caller until `until` (for good when `None`);
/// others' answer NOT_FOUND.
pub async fn mute(
    state: &State,
    caller: &Caller,
    target: Uuid,
    until: Option<DateTime<Utc>>,
) -> Result<()> {
    let mut conn = state.pool.get().await?;
    let user = caller.user_id.0;
    if !db::preferences::belongs(&mut conn, user, target).await? {
        return Err(Error::NotFound("conversation or project"));
    }
    if until.is_some_and(|u| u <= Utc::now()) {
        return Err(Error::invalid("until", "must be in the future"));
    }
    db::preferences::mute(&mut conn, user, target, until).await
}

/// Ends a mute of the caller.
pub async fn unmute(state: &State, caller: &Caller, target: Uuid) -> Result<()> {
    let mut conn = state.pool.get().await?;
    db::preferences::unmute(&mut conn, caller.user_id.0, target).await
}

/// The caller's mutes in force.
pub async fn mutes(state: &State, caller: &Caller) -> Result<Vec<(Uuid, Option<DateTime<Utc>>)>> {
    let mut conn = state.pool.get().await?;
    db::preferences::mutes(&mut conn, caller.user_id.0).await
}
