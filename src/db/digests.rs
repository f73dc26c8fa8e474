//! Queries of the e-mail digests of unread messages.

use crate::{db::schema::conversation_members, domain::UserId, error::Result};
use chrono::{DateTime, Utc};
use diesel::{
    QueryableByName,
    prelude::*,
    sql_types::{BigInt, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// An unread message the member was not told about yet.
#[derive(Debug, Clone, QueryableByName)]
pub struct Unread {
    /// The conversation.
    #[diesel(sql_type = SqlUuid)]
    pub conversation_id: Uuid,
    /// The conversation's title (groups) or the sender's name (direct).
    #[diesel(sql_type = Text)]
    pub title: String,
    /// The message's position.
    #[diesel(sql_type = BigInt)]
    pub seq: i64,
    /// Who sent it.
    #[diesel(sql_type = Text)]
    pub sender: String,
    /// Its text.
    #[diesel(sql_type = Text)]
    pub text: String,
    /// When.
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
}

/// Up to `limit` messages from others, not deleted, after both the read position and the
/// last digest of `user`, oldest first; none of a conversation they muted.
pub async fn unread(conn: &mut AsyncPgConnection, user: UserId, limit: i64) -> Result<Vec<Unread>> {
    diesel::sql_query(
        "SELECT m.conversation_id, COALESCE(c.title, s.display_name) AS title, m.seq, \
                s.display_name AS sender, m.body_text AS text, m.created_at \
         FROM conversation_members cm \
         JOIN conversations c ON c.id = cm.conversation_id \
         JOIN messages m ON m.conversation_id = cm.conversation_id \
          AND m.seq > GREATEST(cm.last_read_seq, cm.notified_seq) \
         JOIN users s ON s.id = m.sender_id \
         WHERE cm.user_id = $1 AND m.sender_id <> $1 AND m.deleted_at IS NULL \
           AND NOT EXISTS (SELECT 1 FROM notification_mutes nm WHERE nm.user_id = $1 \
             AND nm.target_id = c.id AND (nm.until IS NULL OR nm.until > now())) \
         ORDER BY m.created_at, m.conversation_id, m.seq LIMIT $2",
    )
    .bind::<SqlUuid, _>(user.0)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
    .map_err(Into::into)
}

/// Records that `user` was told about messages up to `seq` of a conversation.
pub async fn mark_notified(
    conn: &mut AsyncPgConnection,
    user: UserId,
    conversation: Uuid,
    seq: i64,
) -> Result<()> {
    diesel::update(
        conversation_members::table
            .filter(conversation_members::conversation_id.eq(conversation))
            .filter(conversation_members::user_id.eq(user.0))
            .filter(conversation_members::notified_seq.lt(seq)),
    )
    .set(conversation_members::notified_seq.eq(seq))
    .execute(conn)
    .await?;
    Ok(())
}

/// A notification to tell by email.
#[derive(Debug, Clone, QueryableByName)]
pub struct Told {
    /// Its title.
    #[diesel(sql_type = Text)]
    pub title: String,
    /// Its text.
    #[diesel(sql_type = Text)]
    pub body: String,
    /// When.
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
}

/// Up to `limit` unread notifications of `user` of `kinds`, newer than the last email told,
/// none of a conversation or project they muted, oldest first.
pub async fn notifications(
    conn: &mut AsyncPgConnection,
    user: UserId,
    kinds: &[&str],
    limit: i64,
) -> Result<Vec<Told>> {
    use diesel::sql_types::Array;
    diesel::sql_query(
        "SELECT n.title, n.body, n.created_at FROM notifications n \
         LEFT JOIN notification_emails e ON e.user_id = n.user_id \
         WHERE n.user_id = $1 AND n.read_at IS NULL AND n.kind = ANY($2) \
           AND n.created_at > COALESCE(e.told_up_to, '-infinity') \
           AND NOT EXISTS (SELECT 1 FROM notification_mutes nm WHERE nm.user_id = $1 \
             AND nm.target_id = n.topic AND (nm.until IS NULL OR nm.until > now())) \
         ORDER BY n.created_at LIMIT $3",
    )
    .bind::<SqlUuid, _>(user.0)
    .bind::<Array<Text>, _>(kinds)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
    .map_err(Into::into)
}

/// Records that `user`'s notifications up to `at` were told by email.
pub async fn told(conn: &mut AsyncPgConnection, user: UserId, at: DateTime<Utc>) -> Result<()> {
    use crate::db::schema::notification_emails;
    diesel::insert_into(notification_emails::table)
        .values((
            notification_emails::user_id.eq(user.0),
            notification_emails::told_up_to.eq(at),
        ))
        .on_conflict(notification_emails::user_id)
        .do_update()
        .set(notification_emails::told_up_to.eq(at))
        .execute(conn)
        .await?;
    Ok(())
}
