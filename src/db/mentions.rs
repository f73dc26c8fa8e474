//! Queries on `message_mentions`: whom a message mentions, "mentions of me", and which of
//! them are unread (after the member's read position in the conversation, or in the thread
//! for a reply shown only there).

use crate::{
    db::messages::MessageRow,
    db::schema::{conversation_members, message_mentions, messages},
    domain::conversations::Message,
    error::Result,
};
use chrono::{DateTime, Utc};
use diesel::{
    QueryableByName,
    prelude::*,
    sql_types::{BigInt, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::collections::HashMap;
use uuid::Uuid;

/// Records that `message` mentions `users`; answers those it did not mention before.
pub async fn record(
    conn: &mut AsyncPgConnection,
    conversation: Uuid,
    message: Uuid,
    users: &[Uuid],
) -> Result<Vec<Uuid>> {
    if users.is_empty() {
        return Ok(vec![]);
    }
    let rows: Vec<_> = users
        .iter()
        .map(|u| {
            (
                message_mentions::message_id.eq(message),
                message_mentions::user_id.eq(*u),
                message_mentions::conversation_id.eq(conversation),
            )
        })
        .collect();
    diesel::insert_into(message_mentions::table)
        .values(rows)
        .on_conflict_do_nothing()
        .returning(message_mentions::user_id)
        .get_results(conn)
        .await
        .map_err(Into::into)
}

/// Up to `limit` messages that mention `user`, newest first, after `after`; only messages
/// not deleted, of conversations they are a member of.
pub async fn of_user(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<(Message, DateTime<Utc>)>> {
    let mut q = message_mentions::table
        .inner_join(messages::table)
        .inner_join(
            conversation_members::table.on(conversation_members::conversation_id
                .eq(message_mentions::conversation_id)
                .and(conversation_members::user_id.eq(message_mentions::user_id))),
        )
        .filter(message_mentions::user_id.eq(user))
        .filter(messages::deleted_at.is_null())
        .into_boxed();
    if let Some((at, id)) = after {
        q = q.filter(
            message_mentions::created_at
                .lt(at)
                .or(message_mentions::created_at
                    .eq(at)
                    .and(message_mentions::message_id.gt(id))),
        );
    }
    let rows: Vec<(MessageRow, DateTime<Utc>)> = q
        .order((
            message_mentions::created_at.desc(),
            message_mentions::message_id,
        ))
        .limit(limit)
        .select((MessageRow::as_select(), message_mentions::created_at))
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|(m, at)| (m.into(), at)).collect())
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = SqlUuid)]
    conversation_id: Uuid,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// How many of `user`'s mentions are unread, per conversation (those with any).
pub async fn unread(conn: &mut AsyncPgConnection, user: Uuid) -> Result<HashMap<Uuid, i64>> {
    let rows: Vec<Count> = diesel::sql_query(
        "SELECT mm.conversation_id, count(*) AS n FROM message_mentions mm \
         JOIN messages m ON m.id = mm.message_id AND m.deleted_at IS NULL \
         JOIN conversation_members cm ON cm.conversation_id = mm.conversation_id AND cm.user_id = mm.user_id \
         LEFT JOIN thread_follows tf ON tf.root_id = m.thread_root_id AND tf.user_id = mm.user_id \
         WHERE mm.user_id = $1 AND CASE WHEN m.in_conversation THEN m.seq > cm.last_read_seq \
                                        ELSE m.seq > COALESCE(tf.last_read_seq, 0) END \
         GROUP BY mm.conversation_id",
    )
    .bind::<SqlUuid, _>(user)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|c| (c.conversation_id, c.n)).collect())
}

#[derive(QueryableByName)]
struct Badge {
    #[diesel(sql_type = SqlUuid)]
    conversation_id: Uuid,
    #[diesel(sql_type = BigInt)]
    messages: i64,
    #[diesel(sql_type = BigInt)]
    threads: i64,
}

/// Per conversation of `user`'s: unread messages (what the conversation shows) and followed
/// threads with unread replies.
pub async fn badges(conn: &mut AsyncPgConnection, user: Uuid) -> Result<Vec<(Uuid, i64, i64)>> {
    let rows: Vec<Badge> = diesel::sql_query(
        "SELECT cm.conversation_id, \
           (SELECT count(*) FROM messages m WHERE m.conversation_id = cm.conversation_id \
              AND m.seq > cm.last_read_seq AND m.sender_id <> $1 AND m.deleted_at IS NULL \
              AND m.in_conversation) AS messages, \
           (SELECT count(*) FROM thread_follows tf WHERE tf.conversation_id = cm.conversation_id \
              AND tf.user_id = $1 AND EXISTS (SELECT 1 FROM messages r WHERE r.thread_root_id = tf.root_id \
                AND r.seq > tf.last_read_seq AND r.sender_id <> $1 AND r.deleted_at IS NULL)) AS threads \
         FROM conversation_members cm WHERE cm.user_id = $1 ORDER BY cm.conversation_id",
    )
    .bind::<SqlUuid, _>(user)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|b| (b.conversation_id, b.messages, b.threads))
        .collect())
}
