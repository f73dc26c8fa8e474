//! Queries on `push_devices` (where a user's pushes go) and `push_deliveries` (which device
//! was handed which notification, so a retried push skips it).

use crate::{
    db::schema::{push_deliveries, push_devices},
    error::Result,
};
use chrono::{DateTime, Utc};
use diesel::{dsl::now, prelude::*, upsert::excluded};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::collections::HashSet;
use uuid::Uuid;

pub use crate::domain::notifications::Device;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = push_devices, check_for_backend(diesel::pg::Pg))]
struct Row {
    id: Uuid,
    user_id: Uuid,
    platform: String,
    address: String,
    p256dh: Option<String>,
    auth: Option<String>,
    name: String,
    created_at: DateTime<Utc>,
    last_sent_at: Option<DateTime<Utc>>,
}

impl From<Row> for Device {
    fn from(r: Row) -> Self {
        Device {
            id: r.id,
            user_id: r.user_id,
            platform: r.platform,
            address: r.address,
            p256dh: r.p256dh,
            auth: r.auth,
            name: r.name,
            created_at: r.created_at,
            last_sent_at: r.last_sent_at,
        }
    }
}

/// A device to register.
#[derive(Debug, Clone, Copy)]
pub struct NewDevice<'a> {
    /// `web`, `fcm` or `apns`.
    pub platform: &'a str,
    /// Its address.
    pub address: &'a str,
    /// Web Push keys.
    pub keys: Option<(&'a str, &'a str)>,
    /// Its name.
    pub name: &'a str,
}

/// Registers a device of `user`; one registered before (by this user or, on a shared
/// browser, another) is updated and becomes this user's.
pub async fn register(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    d: NewDevice<'_>,
) -> Result<Device> {
    Ok(diesel::insert_into(push_devices::table)
        .values((
            push_devices::user_id.eq(user),
            push_devices::platform.eq(d.platform),
            push_devices::address.eq(d.address),
            push_devices::p256dh.eq(d.keys.map(|k| k.0)),
            push_devices::auth.eq(d.keys.map(|k| k.1)),
            push_devices::name.eq(d.name),
        ))
        .on_conflict((push_devices::platform, push_devices::address))
        .do_update()
        .set((
            push_devices::user_id.eq(excluded(push_devices::user_id)),
            push_devices::p256dh.eq(excluded(push_devices::p256dh)),
            push_devices::auth.eq(excluded(push_devices::auth)),
            push_devices::name.eq(excluded(push_devices::name)),
        ))
        .returning(Row::as_returning())
        .get_result::<Row>(conn)
        .await?
        .into())
}

/// Removes a device of `user`; false when they have none with that id.
pub async fn unregister(conn: &mut AsyncPgConnection, user: Uuid, id: Uuid) -> Result<bool> {
    let n = diesel::delete(
        push_devices::table
            .filter(push_devices::id.eq(id))
            .filter(push_devices::user_id.eq(user)),
    )
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// Removes a device its push service no longer knows.
pub async fn remove(conn: &mut AsyncPgConnection, id: Uuid) -> Result<()> {
    diesel::delete(push_devices::table.find(id))
        .execute(conn)
        .await?;
    Ok(())
}

/// `user`'s devices, oldest first.
pub async fn of_user(conn: &mut AsyncPgConnection, user: Uuid) -> Result<Vec<Device>> {
    let rows: Vec<Row> = push_devices::table
        .filter(push_devices::user_id.eq(user))
        .order((push_devices::created_at, push_devices::id))
        .select(Row::as_select())
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(Device::from).collect())
}

/// Which of `users` have a device.
pub async fn with_devices(conn: &mut AsyncPgConnection, users: &[Uuid]) -> Result<HashSet<Uuid>> {
    let found: Vec<Uuid> = push_devices::table
        .filter(push_devices::user_id.eq_any(users))
        .select(push_devices::user_id)
        .distinct()
        .load(conn)
        .await?;
    Ok(found.into_iter().collect())
}

/// The devices `notification` was handed to.
pub async fn delivered(conn: &mut AsyncPgConnection, notification: Uuid) -> Result<HashSet<Uuid>> {
    let found: Vec<Uuid> = push_deliveries::table
        .filter(push_deliveries::notification_id.eq(notification))
        .select(push_deliveries::device_id)
        .load(conn)
        .await?;
    Ok(found.into_iter().collect())
}

/// Records that `device` was handed `notification`.
pub async fn record(conn: &mut AsyncPgConnection, notification: Uuid, device: Uuid) -> Result<()> {
    diesel::insert_into(push_deliveries::table)
        .values((
            push_deliveries::notification_id.eq(notification),
            push_deliveries::device_id.eq(device),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    diesel::update(push_devices::table.find(device))
        .set(push_devices::last_sent_at.eq(now))
        .execute(conn)
        .await?;
    Ok(())
}

/// Locks `user`'s row until the caller's transaction ends (their registrations queue).
pub async fn lock_owner(conn: &mut AsyncPgConnection, user: Uuid) -> Result<()> {
    use crate::db::schema::users;
    users::table
        .find(user)
        .select(users::id)
        .for_update()
        .get_result::<Uuid>(conn)
        .await
        .optional()?;
    Ok(())
}
