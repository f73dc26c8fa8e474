//! The durable event log of conversations (`conversation_events`): appended in the same
//! transaction as the change it records, with a gap-free per-conversation sequence, and read
//! back by streams that resume or fill a gap.

pub use crate::domain::conversations::{Event, EventBody};
use crate::{
    db::schema::{conversation_events, conversation_members, conversations},
    domain::UserId,
    error::{Error, Result},
};
use chrono::{DateTime, Utc};
use diesel::{
    QueryableByName,
    prelude::*,
    sql_types::{Array, BigInt, Jsonb, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::collections::HashMap;
use uuid::Uuid;

impl EventBody {
    /// The message this event is about, if any.
    pub fn message_id(&self) -> Option<Uuid> {
        match self {
            Self::MessageCreated { message, .. }
            | Self::MessageUpdated { message, .. }
            | Self::MessageDeleted { message } => Some(message.id),
            Self::Reaction { message_id, .. }
            | Self::Pin { message_id, .. }
            | Self::Mentioned { message_id, .. } => Some(*message_id),
            Self::Membership { .. } | Self::ReadReceipt { .. } | Self::Redacted => None,
        }
    }
}

/// Appends an event under the conversation's row lock; commit order equals event order.
/// An edit or a delete redacts the earlier events of its message, in the same transaction:
/// they carry the newest version from then on, so no replay serves a replaced or deleted
/// body; a delete also blanks its reactions' and pins' events (streams skip them).
pub async fn append(
    conn: &mut AsyncPgConnection,
    conversation: Uuid,
    body: EventBody,
) -> Result<Event> {
    let seq: i64 = diesel::update(conversations::table.find(conversation))
        .set(conversations::last_event_seq.eq(conversations::last_event_seq + 1))
        .returning(conversations::last_event_seq)
        .get_result(conn)
        .await?;
    let json =
        serde_json::to_value(&body).map_err(|e| Error::internal(format!("event body: {e}")))?;
    let created_at: DateTime<Utc> = diesel::insert_into(conversation_events::table)
        .values((
            conversation_events::conversation_id.eq(conversation),
            conversation_events::seq.eq(seq),
            conversation_events::body.eq(&json),
            conversation_events::message_id.eq(body.message_id()),
        ))
        .returning(conversation_events::created_at)
        .get_result(conn)
        .await?;
    if let (EventBody::MessageUpdated { .. } | EventBody::MessageDeleted { .. }, Some(id)) =
        (&body, body.message_id())
    {
        let deleted = matches!(body, EventBody::MessageDeleted { .. });
        redact_earlier(conn, conversation, id, seq, &json, deleted).await?;
    }
    Ok(Event {
        conversation_id: conversation,
        seq,
        body,
        created_at,
    })
}

/// Rewrites the events of `message` before `seq` to carry the message (and attachments) of
/// `newest`, the body of the event at `seq`; when it was `deleted`, its other events
/// (reactions, pins) become `redacted`.
async fn redact_earlier(
    conn: &mut AsyncPgConnection,
    conversation: Uuid,
    message: Uuid,
    seq: i64,
    newest: &serde_json::Value,
    deleted: bool,
) -> Result<()> {
    diesel::sql_query(
        "UPDATE conversation_events SET body = CASE \
           WHEN body ? 'message' THEN jsonb_set( \
             CASE WHEN body ? 'attachments' \
                  THEN jsonb_set(body, '{attachments}', COALESCE($1->'attachments', '[]')) \
                  ELSE body END, \
             '{message}', $1->'message') \
           WHEN $5 THEN '{\"kind\": \"redacted\"}'::jsonb \
           ELSE body END \
         WHERE conversation_id = $2 AND message_id = $3 AND seq < $4 \
           AND (body ? 'message' OR $5)",
    )
    .bind::<Jsonb, _>(newest)
    .bind::<SqlUuid, _>(conversation)
    .bind::<SqlUuid, _>(message)
    .bind::<BigInt, _>(seq)
    .bind::<diesel::sql_types::Bool, _>(deleted)
    .execute(conn)
    .await?;
    Ok(())
}

/// The user ids of a conversation's members.
pub async fn recipients(conn: &mut AsyncPgConnection, conversation: Uuid) -> Result<Vec<Uuid>> {
    conversation_members::table
        .filter(conversation_members::conversation_id.eq(conversation))
        .select(conversation_members::user_id)
        .load(conn)
        .await
        .map_err(Into::into)
}

/// The newest event position of each of the user's conversations: where a fresh stream
/// starts.
pub async fn positions(conn: &mut AsyncPgConnection, user: UserId) -> Result<HashMap<Uuid, i64>> {
    let rows: Vec<(Uuid, i64)> = conversations::table
        .inner_join(conversation_members::table)
        .filter(conversation_members::user_id.eq(user.0))
        .select((conversations::id, conversations::last_event_seq))
        .load(conn)
        .await?;
    Ok(rows.into_iter().collect())
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = SqlUuid)]
    conversation_id: Uuid,
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Jsonb)]
    body: serde_json::Value,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

/// Up to `limit` events of the user's conversations (or only `only`) after `positions`,
/// never before the event that added the user (a position that claims earlier, or none, is
/// read from there).
/// By conversation, then by sequence: never by commit time, which can disagree with the
/// sequence (a transaction that started first may take the row lock second).
pub async fn since(
    conn: &mut AsyncPgConnection,
    user: UserId,
    positions: &HashMap<Uuid, i64>,
    only: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Event>> {
    let (ids, seqs): (Vec<Uuid>, Vec<i64>) = positions.iter().map(|(c, s)| (*c, *s)).unzip();
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT e.conversation_id, e.seq, e.body, e.created_at \
         FROM conversation_events e \
         JOIN conversation_members m ON m.conversation_id = e.conversation_id AND m.user_id = $1 \
         LEFT JOIN unnest($2::uuid[], $3::bigint[]) AS p(c, s) ON p.c = e.conversation_id \
         WHERE e.seq > GREATEST(COALESCE(p.s, 0), m.joined_event_seq - 1) \
           AND ($4::uuid IS NULL OR e.conversation_id = $4) \
         ORDER BY e.conversation_id, e.seq LIMIT $5",
    )
    .bind::<SqlUuid, _>(user.0)
    .bind::<Array<SqlUuid>, _>(ids)
    .bind::<Array<BigInt>, _>(seqs)
    .bind::<diesel::sql_types::Nullable<SqlUuid>, _>(only)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(Event {
                conversation_id: r.conversation_id,
                seq: r.seq,
                body: serde_json::from_value(r.body)
                    .map_err(|e| Error::internal(format!("event body: {e}")))?,
                created_at: r.created_at,
            })
        })
        .collect()
}
