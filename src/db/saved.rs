//! Queries on `saved_messages` (each user's private list) and `message_versions` (what edits
//! replaced).

use crate::{
    db::messages::MessageRow,
    db::schema::{conversation_members, message_versions, messages, saved_messages},
    domain::reactions::{Saved, Version},
    error::Result,
};
use chrono::{DateTime, Utc};
use diesel::{prelude::*, sql_types::Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// Saves `message` for `user`; answers when it was saved (the first time).
pub async fn save(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    message: Uuid,
) -> Result<DateTime<Utc>> {
    diesel::insert_into(saved_messages::table)
        .values((
            saved_messages::user_id.eq(user),
            saved_messages::message_id.eq(message),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    saved_messages::table
        .find((user, message))
        .select(saved_messages::created_at)
        .get_result(conn)
        .await
        .map_err(Into::into)
}

/// Takes `message` off `user`'s list.
pub async fn unsave(conn: &mut AsyncPgConnection, user: Uuid, message: Uuid) -> Result<()> {
    diesel::delete(saved_messages::table.find((user, message)))
        .execute(conn)
        .await?;
    Ok(())
}

/// Up to `limit` of `user`'s saved messages, most recently saved first, after `after`; only
/// of conversations they are a member of.
pub async fn list(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<Saved>> {
    let mut q = saved_messages::table
        .inner_join(messages::table)
        .inner_join(
            conversation_members::table.on(conversation_members::conversation_id
                .eq(messages::conversation_id)
                .and(conversation_members::user_id.eq(saved_messages::user_id))),
        )
        .filter(saved_messages::user_id.eq(user))
        .into_boxed();
    if let Some((at, id)) = after {
        q = q.filter(
            saved_messages::created_at
                .lt(at)
                .or(saved_messages::created_at
                    .eq(at)
                    .and(saved_messages::message_id.gt(id))),
        );
    }
    let rows: Vec<(MessageRow, DateTime<Utc>)> = q
        .order((
            saved_messages::created_at.desc(),
            saved_messages::message_id,
        ))
        .limit(limit)
        .select((MessageRow::as_select(), saved_messages::created_at))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(m, saved_at)| Saved {
            message: m.into(),
            saved_at,
        })
        .collect())
}

/// Keeps the current version of `message` as its newest earlier version: it is being edited.
pub async fn keep_current(conn: &mut AsyncPgConnection, message: Uuid) -> Result<()> {
    diesel::sql_query(
        "INSERT INTO message_versions (message_id, version, content, body_text, author_id, written_at) \
         SELECT m.id, COALESCE((SELECT max(version) FROM message_versions WHERE message_id = m.id), 0) + 1, \
                m.content, m.body_text, COALESCE(m.edited_by, m.sender_id), COALESCE(m.edited_at, m.created_at) \
         FROM messages m WHERE m.id = $1",
    )
    .bind::<SqlUuid, _>(message)
    .execute(conn)
    .await?;
    Ok(())
}

/// The earlier versions of `message`, oldest first.
pub async fn versions(conn: &mut AsyncPgConnection, message: Uuid) -> Result<Vec<Version>> {
    let rows: Vec<(i32, serde_json::Value, String, Uuid, DateTime<Utc>)> = message_versions::table
        .filter(message_versions::message_id.eq(message))
        .order(message_versions::version)
        .select((
            message_versions::version,
            message_versions::content,
            message_versions::body_text,
            message_versions::author_id,
            message_versions::written_at,
        ))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(
            |(version, content, body_text, author_id, written_at)| Version {
                version,
                content,
                body_text,
                author_id,
                written_at,
            },
        )
        .collect())
}
