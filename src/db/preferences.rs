//! Queries on notification preferences: `notification_settings` (a user's own),
//! `notification_defaults` (the admin's, for users without their own) and
//! `notification_mutes`.

use crate::{
    db::schema::{notification_defaults, notification_mutes, notification_settings},
    domain::notifications::{ChannelMap, QuietHours, Settings},
    error::{Error, Result},
};
use chrono::{DateTime, Utc};
use diesel::{dsl::now, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::collections::HashMap;
use uuid::Uuid;

fn channels(json: serde_json::Value) -> Result<ChannelMap> {
    serde_json::from_value(json).map_err(|e| Error::internal(format!("stored channels: {e}")))
}

fn json(map: &ChannelMap) -> Result<serde_json::Value> {
    serde_json::to_value(map).map_err(|e| Error::internal(format!("channels: {e}")))
}

/// The admin's default: chosen channels and previews (nothing chosen: none stored).
pub async fn defaults(conn: &mut AsyncPgConnection) -> Result<(ChannelMap, bool)> {
    let row: Option<(serde_json::Value, bool)> = notification_defaults::table
        .select((
            notification_defaults::channels,
            notification_defaults::previews,
        ))
        .first(conn)
        .await
        .optional()?;
    match row {
        Some((c, previews)) => Ok((channels(c)?, previews)),
        None => Ok((ChannelMap::new(), true)),
    }
}

/// Replaces the admin's default.
pub async fn set_defaults(
    conn: &mut AsyncPgConnection,
    map: &ChannelMap,
    previews: bool,
) -> Result<()> {
    let c = json(map)?;
    diesel::insert_into(notification_defaults::table)
        .values((
            notification_defaults::id.eq(true),
            notification_defaults::channels.eq(&c),
            notification_defaults::previews.eq(previews),
        ))
        .on_conflict(notification_defaults::id)
        .do_update()
        .set((
            notification_defaults::channels.eq(&c),
            notification_defaults::previews.eq(previews),
            notification_defaults::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

type SettingsRow = (
    Uuid,
    serde_json::Value,
    bool,
    String,
    Option<i16>,
    Option<i16>,
);

/// The settings in force for each of `users`: their own, or the admin's default.
pub async fn settings_of(
    conn: &mut AsyncPgConnection,
    users: &[Uuid],
) -> Result<HashMap<Uuid, Settings>> {
    let rows: Vec<SettingsRow> = notification_settings::table
        .filter(notification_settings::user_id.eq_any(users))
        .select((
            notification_settings::user_id,
            notification_settings::channels,
            notification_settings::previews,
            notification_settings::time_zone,
            notification_settings::dnd_start,
            notification_settings::dnd_end,
        ))
        .load(conn)
        .await?;
    let mut out = HashMap::new();
    for (user, c, previews, tz, start, end) in rows {
        let quiet_hours = match (start, end) {
            (Some(s), Some(e)) => Some(QuietHours {
                start: s.unsigned_abs(),
                end: e.unsigned_abs(),
            }),
            _ => None,
        };
        out.insert(
            user,
            Settings {
                channels: channels(c)?,
                previews,
                time_zone: tz.parse().unwrap_or(chrono_tz::UTC),
                quiet_hours,
                is_default: false,
            },
        );
    }
    if out.len() < users.len() {
        let (channels, previews) = defaults(conn).await?;
        for u in users {
            out.entry(*u).or_insert_with(|| Settings {
                channels: channels.clone(),
                previews,
                time_zone: chrono_tz::UTC,
                quiet_hours: None,
                is_default: true,
            });
        }
    }
    Ok(out)
}

/// Stores `user`'s own settings.
pub async fn set(conn: &mut AsyncPgConnection, user: Uuid, s: &Settings) -> Result<()> {
    let c = json(&s.channels)?;
    // Minutes of a day fit in an i16.
    let start = s.quiet_hours.map(|q| q.start as i16);
    let end = s.quiet_hours.map(|q| q.end as i16);
    let values = (
        notification_settings::channels.eq(&c),
        notification_settings::previews.eq(s.previews),
        notification_settings::time_zone.eq(s.time_zone.name()),
        notification_settings::dnd_start.eq(start),
        notification_settings::dnd_end.eq(end),
    );
    diesel::insert_into(notification_settings::table)
        .values((notification_settings::user_id.eq(user), values))
        .on_conflict(notification_settings::user_id)
        .do_update()
        .set((values, notification_settings::updated_at.eq(now)))
        .execute(conn)
        .await?;
    Ok(())
}

/// Mutes `target` for `user` until `until` (for good when `None`).
pub async fn mute(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    target: Uuid,
    until: Option<DateTime<Utc>>,
) -> Result<()> {
    diesel::insert_into(notification_mutes::table)
        .values((
            notification_mutes::user_id.eq(user),
            notification_mutes::target_id.eq(target),
            notification_mutes::until.eq(until),
        ))
        .on_conflict((notification_mutes::user_id, notification_mutes::target_id))
        .do_update()
        .set(notification_mutes::until.eq(until))
        .execute(conn)
        .await?;
    Ok(())
}

/// Ends a mute (none is fine).
pub async fn unmute(conn: &mut AsyncPgConnection, user: Uuid, target: Uuid) -> Result<()> {
    diesel::delete(notification_mutes::table.find((user, target)))
        .execute(conn)
        .await?;
    Ok(())
}

/// `user`'s mutes in force: target and end.
pub async fn mutes(
    conn: &mut AsyncPgConnection,
    user: Uuid,
) -> Result<Vec<(Uuid, Option<DateTime<Utc>>)>> {
    Ok(notification_mutes::table
        .filter(notification_mutes::user_id.eq(user))
        .filter(
            notification_mutes::until
                .is_null()
                .or(notification_mutes::until.gt(now)),
        )
        .order(notification_mutes::created_at)
        .select((notification_mutes::target_id, notification_mutes::until))
        .load(conn)
        .await?)
}

/// True when `user` has muted `target` now.
pub async fn is_muted(conn: &mut AsyncPgConnection, user: Uuid, target: Uuid) -> Result<bool> {
    let n: i64 = notification_mutes::table
        .filter(notification_mutes::user_id.eq(user))
        .filter(notification_mutes::target_id.eq(target))
        .filter(
            notification_mutes::until
                .is_null()
                .or(notification_mutes::until.gt(now)),
        )
        .count()
        .get_result(conn)
        .await?;
    Ok(n > 0)
}

/// True when `target` is a conversation or project `user` is a member of.
pub async fn belongs(conn: &mut AsyncPgConnection, user: Uuid, target: Uuid) -> Result<bool> {
    use crate::db::schema::{conversation_members, project_members};
    let conversation = diesel::dsl::exists(
        conversation_members::table
            .filter(conversation_members::conversation_id.eq(target))
            .filter(conversation_members::user_id.eq(user)),
    );
    let project = diesel::dsl::exists(
        project_members::table
            .filter(project_members::project_id.eq(target))
            .filter(project_members::user_id.eq(user)),
    );
    Ok(diesel::select(conversation.or(project))
        .get_result(conn)
        .await?)
}
