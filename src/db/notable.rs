//! What turning a conversation's events into notifications reads: the events after a
//! position, the conversation's kind and title, its members' read positions, a thread's
//! followers, and people's names.

use crate::{
    db::{
        events::Event,
        schema::{conversation_events, conversation_members, conversations, thread_follows, users},
    },
    error::{Error, Result},
};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::collections::HashMap;
use uuid::Uuid;

/// Up to `limit` events of `conversation` after `seq`, in order.
pub async fn events_after(
    conn: &mut AsyncPgConnection,
    conversation: Uuid,
    seq: i64,
    limit: i64,
) -> Result<Vec<Event>> {
    let rows: Vec<(i64, serde_json::Value, DateTime<Utc>)> = conversation_events::table
        .filter(conversation_events::conversation_id.eq(conversation))
        .filter(conversation_events::seq.gt(seq))
        .order(conversation_events::seq)
        .limit(limit)
        .select((
            conversation_events::seq,
            conversation_events::body,
            conversation_events::created_at,
        ))
        .load(conn)
        .await?;
    rows.into_iter()
        .map(|(seq, body, created_at)| {
            Ok(Event {
                conversation_id: conversation,
                seq,
                body: serde_json::from_value(body)
                    .map_err(|e| Error::internal(format!("event body: {e}")))?,
                created_at,
            })
        })
        .collect()
}

/// Whether `conversation` is a group, and its title.
pub async fn conversation(
    conn: &mut AsyncPgConnection,
    conversation: Uuid,
) -> Result<Option<(bool, Option<String>)>> {
    Ok(conversations::table
        .find(conversation)
        .select((conversations::is_group, conversations::title))
        .first(conn)
        .await
        .optional()?)
}

/// Each member of `conversation` with the position they read up to.
pub async fn read_positions(
    conn: &mut AsyncPgConnection,
    conversation: Uuid,
) -> Result<HashMap<Uuid, i64>> {
    let rows: Vec<(Uuid, i64)> = conversation_members::table
        .filter(conversation_members::conversation_id.eq(conversation))
        .select((
            conversation_members::user_id,
            conversation_members::last_read_seq,
        ))
        .load(conn)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Who follows the thread of `root`, with the position they read it up to.
pub async fn followers(conn: &mut AsyncPgConnection, root: Uuid) -> Result<Vec<(Uuid, i64)>> {
    Ok(thread_follows::table
        .filter(thread_follows::root_id.eq(root))
        .select((thread_follows::user_id, thread_follows::last_read_seq))
        .load(conn)
        .await?)
}

/// The display names of `people`.
pub async fn names(conn: &mut AsyncPgConnection, people: &[Uuid]) -> Result<HashMap<Uuid, String>> {
    let rows: Vec<(Uuid, String)> = users::table
        .filter(users::id.eq_any(people))
        .select((users::id, users::display_name))
        .load(conn)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Which of `ids` are messages not deleted, locked against a delete until the caller's
/// transaction ends (a delete that comes first is seen; one that comes after purges what
/// this transaction wrote).
pub async fn live_messages(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> Result<std::collections::HashSet<Uuid>> {
    use crate::db::schema::messages;
    let live: Vec<Uuid> = messages::table
        .filter(messages::id.eq_any(ids))
        .filter(messages::deleted_at.is_null())
        .select(messages::id)
        .for_share()
        .load(conn)
        .await?;
    Ok(live.into_iter().collect())
}
