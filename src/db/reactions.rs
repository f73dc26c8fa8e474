//! Queries on `message_reactions` and `message_pins`: what members add to a message, and
//! what a member sees of it.

use crate::{
    db::messages::MessageRow,
    db::schema::{message_pins, message_reactions, messages},
    domain::reactions::{Marks, Pin, Reaction, ReactionCount},
    error::Result,
};
use chrono::{DateTime, Utc};
use diesel::{
    QueryableByName,
    prelude::*,
    sql_types::{Array, BigInt, Bool, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::collections::HashMap;
use uuid::Uuid;

/// Adds `user`'s reaction; false when it was there already.
pub async fn add(
    conn: &mut AsyncPgConnection,
    message: Uuid,
    emoji: &str,
    user: Uuid,
) -> Result<bool> {
    let n = diesel::insert_into(message_reactions::table)
        .values((
            message_reactions::message_id.eq(message),
            message_reactions::emoji.eq(emoji),
            message_reactions::user_id.eq(user),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// Removes `user`'s reaction; false when it was not there.
pub async fn remove(
    conn: &mut AsyncPgConnection,
    message: Uuid,
    emoji: &str,
    user: Uuid,
) -> Result<bool> {
    let n = diesel::delete(message_reactions::table.find((message, emoji, user)))
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// How many reacted to `message` with `emoji`, and how many distinct emoji it has.
pub async fn counts(
    conn: &mut AsyncPgConnection,
    message: Uuid,
    emoji: &str,
) -> Result<(i64, i64)> {
    let rows: Vec<(String, i64)> = message_reactions::table
        .filter(message_reactions::message_id.eq(message))
        .group_by(message_reactions::emoji)
        .select((message_reactions::emoji, diesel::dsl::count_star()))
        .load(conn)
        .await?;
    let this = rows.iter().find(|(e, _)| e == emoji).map_or(0, |(_, n)| *n);
    Ok((this, rows.len() as i64))
}

#[derive(QueryableByName)]
struct MarkRow {
    #[diesel(sql_type = SqlUuid)]
    message_id: Uuid,
    #[diesel(sql_type = Text)]
    emoji: String,
    #[diesel(sql_type = BigInt)]
    count: i64,
    #[diesel(sql_type = Bool)]
    reacted: bool,
}

/// What `viewer` sees added to each of `ids`: reactions by first use, and pins.
pub async fn marks(
    conn: &mut AsyncPgConnection,
    viewer: Uuid,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Marks>> {
    let mut out: HashMap<Uuid, Marks> = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let rows: Vec<MarkRow> = diesel::sql_query(
        "SELECT message_id, emoji, count(*) AS count, bool_or(user_id = $2) AS reacted \
         FROM message_reactions WHERE message_id = ANY($1) \
         GROUP BY message_id, emoji ORDER BY message_id, min(created_at), emoji",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .bind::<SqlUuid, _>(viewer)
    .load(conn)
    .await?;
    for r in rows {
        out.entry(r.message_id)
            .or_default()
            .reactions
            .push(ReactionCount {
                emoji: r.emoji,
                count: r.count,
                reacted: r.reacted,
            });
    }
    let pinned: Vec<Uuid> = message_pins::table
        .filter(message_pins::message_id.eq_any(ids))
        .select(message_pins::message_id)
        .load(conn)
        .await?;
    for id in pinned {
        out.entry(id).or_default().pinned = true;
    }
    Ok(out)
}

/// Up to `limit` reactions to `message` (with `emoji` only, when given), oldest first,
/// after the position `after`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    message: Uuid,
    emoji: Option<&str>,
    after: Option<(DateTime<Utc>, Uuid, String)>,
    limit: i64,
) -> Result<Vec<Reaction>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        emoji: String,
        #[diesel(sql_type = SqlUuid)]
        user_id: Uuid,
        #[diesel(sql_type = Timestamptz)]
        created_at: DateTime<Utc>,
    }
    let (at, user, after_emoji) = match after {
        Some((at, user, emoji)) => (Some(at), Some(user), Some(emoji)),
        None => (None, None, None),
    };
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT emoji, user_id, created_at FROM message_reactions \
         WHERE message_id = $1 AND ($2::text IS NULL OR emoji = $2) \
           AND ($3::timestamptz IS NULL OR (created_at, user_id, emoji) > ($3, $4, $5)) \
         ORDER BY created_at, user_id, emoji LIMIT $6",
    )
    .bind::<SqlUuid, _>(message)
    .bind::<diesel::sql_types::Nullable<Text>, _>(emoji)
    .bind::<diesel::sql_types::Nullable<Timestamptz>, _>(at)
    .bind::<diesel::sql_types::Nullable<SqlUuid>, _>(user)
    .bind::<diesel::sql_types::Nullable<Text>, _>(after_emoji)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Reaction {
            emoji: r.emoji,
            user_id: r.user_id,
            created_at: r.created_at,
        })
        .collect())
}

/// Pins `message` in `conversation`; false when it was pinned already.
pub async fn pin(
    conn: &mut AsyncPgConnection,
    conversation: Uuid,
    message: Uuid,
    user: Uuid,
) -> Result<bool> {
    let n = diesel::insert_into(message_pins::table)
        .values((
            message_pins::message_id.eq(message),
            message_pins::conversation_id.eq(conversation),
            message_pins::pinned_by.eq(user),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// Unpins `message`; false when it was not pinned.
pub async fn unpin(conn: &mut AsyncPgConnection, message: Uuid) -> Result<bool> {
    let n = diesel::delete(message_pins::table.find(message))
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// How many messages of `conversation` are pinned.
pub async fn pin_count(conn: &mut AsyncPgConnection, conversation: Uuid) -> Result<i64> {
    message_pins::table
        .filter(message_pins::conversation_id.eq(conversation))
        .count()
        .get_result(conn)
        .await
        .map_err(Into::into)
}

/// The pins of `conversation`, most recent first.
pub async fn pins(conn: &mut AsyncPgConnection, conversation: Uuid) -> Result<Vec<Pin>> {
    let rows: Vec<(MessageRow, Uuid, DateTime<Utc>)> = message_pins::table
        .inner_join(messages::table)
        .filter(message_pins::conversation_id.eq(conversation))
        .order((message_pins::created_at.desc(), message_pins::message_id))
        .select((
            MessageRow::as_select(),
            message_pins::pinned_by,
            message_pins::created_at,
        ))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(m, pinned_by, created_at)| Pin {
            message: m.into(),
            pinned_by,
            created_at,
        })
        .collect())
}

/// Removes what members added to `message` (reactions, its pin, saves, earlier versions,
/// its mentions):
/// it was deleted.
pub async fn purge(conn: &mut AsyncPgConnection, message: Uuid) -> Result<()> {
    use crate::db::schema::{message_mentions, message_versions, saved_messages};
    diesel::delete(message_mentions::table.filter(message_mentions::message_id.eq(message)))
        .execute(conn)
        .await?;
    diesel::delete(message_reactions::table.filter(message_reactions::message_id.eq(message)))
        .execute(conn)
        .await?;
    diesel::delete(message_pins::table.find(message))
        .execute(conn)
        .await?;
    diesel::delete(saved_messages::table.filter(saved_messages::message_id.eq(message)))
        .execute(conn)
        .await?;
    diesel::delete(message_versions::table.filter(message_versions::message_id.eq(message)))
        .execute(conn)
        .await?;
    crate::db::notifications::purge_message(conn, message).await
}
