//! Queries on `messages`: sending with a gap-free per-conversation sequence, paging by
//! sequence, edits, tombstones and full-text search.

pub use crate::domain::conversations::{Message, Window};
use crate::{
    db::schema::messages,
    domain::{RichText, UserId},
    error::{Error, Result},
};
use chrono::{DateTime, Utc};
use diesel::{dsl::now, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::collections::HashMap;
use uuid::Uuid;

/// A row of `messages`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = messages, check_for_backend(diesel::pg::Pg))]
pub(crate) struct MessageRow {
    /// The id.
    pub id: Uuid,
    /// The conversation.
    pub conversation_id: Uuid,
    /// The position in the conversation, from 1, without gaps.
    pub seq: i64,
    /// The sender.
    pub sender_id: Uuid,
    /// The rich-text document (`{}` once deleted).
    pub content: serde_json::Value,
    /// The plain text.
    pub body_text: String,
    /// When it was last edited.
    pub edited_at: Option<DateTime<Utc>>,
    /// When it was deleted (a tombstone).
    pub deleted_at: Option<DateTime<Utc>>,
    /// When it was sent.
    pub created_at: DateTime<Utc>,
    /// For a reply: its thread's root.
    pub thread_root_id: Option<Uuid>,
    /// Shown in the conversation.
    pub in_conversation: bool,
}

impl From<MessageRow> for Message {
    fn from(r: MessageRow) -> Self {
        Self {
            id: r.id,
            conversation_id: r.conversation_id,
            seq: r.seq,
            sender_id: r.sender_id,
            content: r.content,
            body_text: r.body_text,
            edited_at: r.edited_at,
            deleted_at: r.deleted_at,
            created_at: r.created_at,
            thread_root_id: r.thread_root_id,
            in_conversation: r.in_conversation,
        }
    }
}

/// The message `sender` sent with `key`, if any.
pub async fn by_idempotency_key(
    conn: &mut AsyncPgConnection,
    sender: UserId,
    key: &str,
) -> Result<Option<Message>> {
    messages::table
        .filter(messages::sender_id.eq(sender.0))
        .filter(messages::idempotency_key.eq(key))
        .select(MessageRow::as_select())
        .first(conn)
        .await
        .optional()
        .map(|row| row.map(Message::from))
        .map_err(Into::into)
}

/// One message of a conversation.
pub async fn get(conn: &mut AsyncPgConnection, conversation: Uuid, id: Uuid) -> Result<Message> {
    messages::table
        .filter(messages::id.eq(id))
        .filter(messages::conversation_id.eq(conversation))
        .select(MessageRow::as_select())
        .first::<MessageRow>(conn)
        .await
        .optional()?
        .map(Message::from)
        .ok_or(Error::NotFound("message"))
}

/// One message of a conversation, locked for the transaction.
pub async fn get_for_update(
    conn: &mut AsyncPgConnection,
    conversation: Uuid,
    id: Uuid,
) -> Result<Message> {
    messages::table
        .filter(messages::id.eq(id))
        .filter(messages::conversation_id.eq(conversation))
        .select(MessageRow::as_select())
        .for_update()
        .first::<MessageRow>(conn)
        .await
        .optional()?
        .map(Message::from)
        .ok_or(Error::NotFound("message"))
}

/// The newest message of each of `conversations` (that has one).
pub async fn last_of(
    conn: &mut AsyncPgConnection,
    conversations: &[Uuid],
) -> Result<HashMap<Uuid, Message>> {
    let rows: Vec<MessageRow> = messages::table
        .filter(messages::conversation_id.eq_any(conversations))
        .filter(messages::in_conversation)
        .distinct_on(messages::conversation_id)
        .order((messages::conversation_id, messages::seq.desc()))
        .select(MessageRow::as_select())
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|m| (m.conversation_id, Message::from(m)))
        .collect())
}

/// Replaces the content of a message that is not deleted, written by `editor`.
pub async fn edit(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    content: &RichText,
    editor: Uuid,
) -> Result<Message> {
    diesel::update(messages::table.find(id))
        .set((
            messages::content.eq(&content.doc),
            messages::body_text.eq(&content.text),
            messages::edited_at.eq(now),
            messages::edited_by.eq(editor),
        ))
        .returning(MessageRow::as_returning())
        .get_result(conn)
        .await
        .map(Message::from)
        .map_err(Into::into)
}

/// Turns a message into a tombstone: its position stays, its content goes.
pub async fn tombstone(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Message> {
    diesel::update(messages::table.find(id))
        .set((
            messages::content.eq(serde_json::json!({})),
            messages::body_text.eq(""),
            messages::deleted_at.eq(now),
        ))
        .returning(MessageRow::as_returning())
        .get_result(conn)
        .await
        .map(Message::from)
        .map_err(Into::into)
}

/// Up to `limit` messages of a window, ascending by sequence.
pub async fn page(
    conn: &mut AsyncPgConnection,
    conversation: Uuid,
    window: Window,
    limit: i64,
) -> Result<Vec<Message>> {
    let base = || {
        messages::table
            .filter(messages::conversation_id.eq(conversation))
            .filter(messages::in_conversation)
            .select(MessageRow::as_select())
            .into_boxed()
    };
    let mut rows: Vec<MessageRow> = match window {
        Window::Latest => {
            base()
                .order(messages::seq.desc())
                .limit(limit)
                .load(conn)
                .await?
        }
        Window::Before(s) => {
            base()
                .filter(messages::seq.lt(s))
                .order(messages::seq.desc())
                .limit(limit)
                .load(conn)
                .await?
        }
        Window::After(s) => {
            base()
                .filter(messages::seq.gt(s))
                .order(messages::seq.asc())
                .limit(limit)
                .load(conn)
                .await?
        }
        Window::Around(s) => {
            let mut older: Vec<MessageRow> = base()
                .filter(messages::seq.lt(s))
                .order(messages::seq.desc())
                .limit(limit / 2)
                .load(conn)
                .await?;
            let newer: Vec<MessageRow> = base()
                .filter(messages::seq.ge(s))
                .order(messages::seq.asc())
                .limit(limit - limit / 2)
                .load(conn)
                .await?;
            older.extend(newer);
            older
        }
    };
    rows.sort_by_key(|m| m.seq);
    Ok(rows.into_iter().map(Message::from).collect())
}

/// Messages of `user`'s conversations (or one of them) matching a web-search query, best
/// first, `offset` rows in.
pub async fn search(
    conn: &mut AsyncPgConnection,
    user: UserId,
    query: &str,
    conversation: Option<Uuid>,
    offset: i64,
    limit: i64,
) -> Result<Vec<Message>> {
    diesel::sql_query(
        "SELECT m.id, m.conversation_id, m.seq, m.sender_id, m.content, m.body_text, m.edited_at, \
                m.deleted_at, m.created_at, m.thread_root_id, m.in_conversation \
         FROM messages m JOIN conversation_members cm \
           ON cm.conversation_id = m.conversation_id AND cm.user_id = $1 \
         WHERE m.deleted_at IS NULL \
           AND to_tsvector('simple', m.body_text) @@ websearch_to_tsquery('simple', $2) \
           AND ($3::uuid IS NULL OR m.conversation_id = $3) \
         ORDER BY ts_rank(to_tsvector('simple', m.body_text), websearch_to_tsquery('simple', $2)) DESC, \
                  m.created_at DESC, m.id \
         OFFSET $4 LIMIT $5",
    )
    .bind::<diesel::sql_types::Uuid, _>(user.0)
    .bind::<diesel::sql_types::Text, _>(query)
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Uuid>, _>(conversation)
    .bind::<diesel::sql_types::BigInt, _>(offset)
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .load::<MessageRow>(conn)
    .await
    .map(|rows| rows.into_iter().map(Message::from).collect())
    .map_err(Into::into)
}
