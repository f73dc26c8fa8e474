//! Group commit of message sends: every send of a batch written in the caller's one
//! transaction, in three round trips whatever the batch's size (BEGIN with the conversations
//! locked in id order, their members and the batch's idempotency keys; every write, one
//! statement per table; COMMIT). Positions are taken per conversation for the whole batch
//! under its row lock, so sequences stay gap-free and commit order equals sequence order.

use crate::{
    db::{
        events::{Event, EventBody},
        messages::{Message, MessageRow},
        prepared::{bind, prepared},
        schema::{conversation_members, conversations, messages},
        sends::Sent,
    },
    domain::{RichText, UserId, jobs::Job},
    error::{Error, Result},
};
use chrono::{DateTime, Utc};
use diesel::{
    IntoSql,
    dsl::now,
    prelude::*,
    sql_types::{Array, BigInt, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// One send waiting for its batch; validated already (content, key), not yet authorized.
#[derive(Debug, Clone)]
pub struct Queued {
    /// The conversation.
    pub conversation: Uuid,
    /// Who sends it.
    pub sender: UserId,
    /// Its content.
    pub content: RichText,
    /// The sender's idempotency key, if any.
    pub key: Option<String>,
    /// When the conversation's digest job (if this send queues it) is due.
    pub digest_at: DateTime<Utc>,
}

/// What became of one send of a batch.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Written.
    Sent(Box<Sent>),
    /// The sender is no member (or the conversation does not exist): nothing written.
    NotMember,
    /// The sender used the key before (in an earlier batch or earlier in this one): that
    /// message, which may belong to another conversation.
    Existing(Message),
}

/// Writes `batch` in the caller's transaction; one outcome per send, in order. A database
/// error fails the whole batch (the caller retries its sends one by one); a reused key
/// that slipped past the check (a send outside batches) is `AlreadyExists`.
pub async fn send_all(conn: &AsyncPgConnection, batch: &[Queued]) -> Result<Vec<Outcome>> {
    let mut ids: Vec<Uuid> = batch.iter().map(|q| q.conversation).collect();
    ids.sort_unstable();
    ids.dedup();
    let (senders, keys): (Vec<Uuid>, Vec<&str>) = batch
        .iter()
        .filter_map(|q| Some((q.sender.0, q.key.as_deref()?)))
        .unzip();
    let (locked, members, used) = {
        let mut c = conn;
        // Sent together, executed in order: the locks first (in id order, so that two
        // batches never wait on each other crosswise), then reads that see what they guard.
        let lock = conversations::table
            .filter(conversations::id.eq_any(&ids))
            .order(conversations::id)
            .select((
                conversations::id,
                conversations::last_seq,
                conversations::last_event_seq,
                now.into_sql::<Timestamptz>(),
                conversations::is_group,
            ))
            .for_update()
            .load::<(Uuid, i64, i64, DateTime<Utc>, bool)>(&mut c);
        let mut c2 = c;
        let members = conversation_members::table
            .filter(conversation_members::conversation_id.eq_any(&ids))
            .select((
                conversation_members::conversation_id,
                conversation_members::user_id,
            ))
            .load::<(Uuid, Uuid)>(&mut c2);
        let mut c3 = c;
        let used = messages::table
            .filter(messages::sender_id.eq_any(&senders))
            .filter(messages::idempotency_key.eq_any(&keys))
            .select((MessageRow::as_select(), messages::idempotency_key))
            .load::<(MessageRow, Option<String>)>(&mut c3);
        futures::try_join!(lock, members, used)?
    };
    // Direct conversations notify their other member of each message.
    let direct: HashSet<Uuid> = locked
        .iter()
        .filter(|(.., group)| !group)
        .map(|(id, ..)| *id)
        .collect();
    let mut positions: HashMap<Uuid, (i64, i64, DateTime<Utc>)> = locked
        .into_iter()
        .map(|(id, seq, event_seq, at, _)| (id, (seq, event_seq, at)))
        .collect();
    let mut recipients: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for (conversation, user) in members {
        recipients.entry(conversation).or_default().push(user);
    }
    let is_member = |c: Uuid, u: Uuid| recipients.get(&c).is_some_and(|m| m.contains(&u));
    let mut keyed: HashMap<(Uuid, String), Message> = used
        .into_iter()
        .filter_map(|(row, key)| Some(((row.sender_id, key?), Message::from(row))))
        .collect();

    let mut outcomes = Vec::with_capacity(batch.len());
    let mut written: Vec<Written<'_>> = Vec::new();
    for q in batch {
        let key = q.key.as_ref().map(|k| (q.sender.0, k.clone()));
        if let Some(m) = key.as_ref().and_then(|k| keyed.get(k)) {
            outcomes.push(Outcome::Existing(m.clone()));
            continue;
        }
        let Some(pos) = positions
            .get_mut(&q.conversation)
            .filter(|_| is_member(q.conversation, q.sender.0))
        else {
            outcomes.push(Outcome::NotMember);
            continue;
        };
        pos.0 += 1;
        pos.1 += 1;
        let message = Message {
            id: Uuid::new_v4(),
            conversation_id: q.conversation,
            seq: pos.0,
            sender_id: q.sender.0,
            content: q.content.doc.clone(),
            body_text: q.content.text.clone(),
            edited_at: None,
            deleted_at: None,
            created_at: pos.2,
            thread_root_id: None,
            in_conversation: true,
        };
        if let Some(k) = key {
            keyed.insert(k, message.clone());
        }
        let event = Event {
            conversation_id: q.conversation,
            seq: pos.1,
            body: EventBody::MessageCreated {
                message: message.clone(),
                attachments: Vec::new(),
            },
            created_at: pos.2,
        };
        let body = serde_json::to_value(&event.body)
            .map_err(|e| Error::internal(format!("event body: {e}")))?;
        written.push((q, message.clone(), pos.1, body));
        outcomes.push(Outcome::Sent(Box::new(Sent {
            message,
            event,
            recipients: recipients.get(&q.conversation).cloned().unwrap_or_default(),
            notify: direct.contains(&q.conversation),
        })));
    }
    if !written.is_empty() {
        write(conn, written, &positions, &direct).await?;
    }
    Ok(outcomes)
}

/// `f` of every send of `written`: a column of the batch.
fn each<'a, T>(written: &'a [Written<'_>], f: impl Fn(&'a Written<'_>) -> T) -> Vec<T> {
    written.iter().map(f).collect()
}

/// A send to write: its request, message, event position and event body.
type Written<'a> = (&'a Queued, Message, i64, serde_json::Value);

/// The batch's writes, sent together: each touched conversation's new positions, the
/// messages and their events (one statement each), the senders' read positions and the
/// conversations' digest jobs.
async fn write(
    c: &AsyncPgConnection,
    written: Vec<Written<'_>>,
    positions: &HashMap<Uuid, (i64, i64, DateTime<Utc>)>,
    direct: &HashSet<Uuid>,
) -> Result<()> {
    let touched: HashSet<Uuid> = written.iter().map(|(q, ..)| q.conversation).collect();
    let mut reads: HashMap<(Uuid, Uuid), i64> = HashMap::new();
    for (q, m, ..) in &written {
        reads.insert((q.conversation, q.sender.0), m.seq);
    }
    // One statement per table, whatever the batch holds: fixed statements over arrays, so
    // that each connection prepares them once (a statement per row, or one whose text
    // depends on the batch's size, would cost PostgreSQL more than the rest of the batch).
    let (ids, seqs, event_seqs): (Vec<Uuid>, Vec<i64>, Vec<i64>) = touched
        .iter()
        .map(|id| (*id, positions[id].0, positions[id].1))
        .collect();
    let at = <[_]>::first(&written).map_or_else(Utc::now, |(_, m, ..)| m.created_at);
    let mut c0 = c;
    let update_positions = prepared(
        "UPDATE conversations c SET last_seq = v.seq, last_event_seq = v.event_seq, last_message_at = $4 \
         FROM unnest($1::uuid[], $2::int8[], $3::int8[]) AS v(id, seq, event_seq) WHERE c.id = v.id",
        (
            bind::<Array<SqlUuid>, _>(ids),
            bind::<Array<BigInt>, _>(seqs),
            bind::<Array<BigInt>, _>(event_seqs),
            bind::<Timestamptz, _>(at),
        ),
    );
    let update_positions = update_positions.execute(&mut c0);
    let mut c1 = c;
    let insert_messages = prepared(
        "INSERT INTO messages (id, conversation_id, seq, sender_id, content, body_text, idempotency_key, created_at) \
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int8[], $4::uuid[], $5::jsonb[], $6::text[], $7::text[], $8::timestamptz[])",
        (
            bind::<Array<SqlUuid>, _>(each(&written, |(_, m, ..)| m.id)),
            bind::<Array<SqlUuid>, _>(each(&written, |(_, m, ..)| m.conversation_id)),
            bind::<Array<BigInt>, _>(each(&written, |(_, m, ..)| m.seq)),
            bind::<Array<SqlUuid>, _>(each(&written, |(_, m, ..)| m.sender_id)),
            bind::<Array<Jsonb>, _>(each(&written, |(_, m, ..)| &m.content)),
            bind::<Array<Text>, _>(each(&written, |(_, m, ..)| m.body_text.as_str())),
            bind::<Array<Nullable<Text>>, _>(each(&written, |(q, ..)| q.key.as_deref())),
            bind::<Array<Timestamptz>, _>(each(&written, |(_, m, ..)| m.created_at)),
        ),
    );
    let insert_messages = insert_messages.execute(&mut c1);
    let mut c2 = c;
    let insert_events = prepared(
        "INSERT INTO conversation_events (conversation_id, seq, body, message_id, created_at) \
         SELECT * FROM unnest($1::uuid[], $2::int8[], $3::jsonb[], $4::uuid[], $5::timestamptz[])",
        (
            bind::<Array<SqlUuid>, _>(each(&written, |(_, m, ..)| m.conversation_id)),
            bind::<Array<BigInt>, _>(each(&written, |(_, _, seq, _)| *seq)),
            bind::<Array<Jsonb>, _>(each(&written, |(.., body)| body)),
            bind::<Array<SqlUuid>, _>(each(&written, |(_, m, ..)| m.id)),
            bind::<Array<Timestamptz>, _>(each(&written, |(_, m, ..)| m.created_at)),
        ),
    );
    let insert_events = insert_events.execute(&mut c2);
    let (read_conversations, (read_users, read_seqs)): (Vec<Uuid>, (Vec<Uuid>, Vec<i64>)) =
        reads.iter().map(|(&(c, u), &seq)| (c, (u, seq))).unzip();
    let mut c3 = c;
    let update_reads = prepared(
        "UPDATE conversation_members m SET last_read_seq = v.seq \
         FROM unnest($1::uuid[], $2::uuid[], $3::int8[]) AS v(conversation_id, user_id, seq) \
         WHERE m.conversation_id = v.conversation_id AND m.user_id = v.user_id",
        (
            bind::<Array<SqlUuid>, _>(read_conversations),
            bind::<Array<SqlUuid>, _>(read_users),
            bind::<Array<BigInt>, _>(read_seqs),
        ),
    );
    let update_reads = update_reads.execute(&mut c3);
    let digest_at = written.iter().map(|(q, ..)| q.digest_at).min();
    let jobs: Vec<Job> = touched
        .iter()
        .map(|&conversation_id| Job::ConversationDigest { conversation_id })
        .collect();
    let digests = crate::db::jobs::enqueue_once(c, &jobs, digest_at.unwrap_or_else(Utc::now));
    let notify: Vec<Job> = touched
        .iter()
        .filter(|id| direct.contains(id))
        .map(|&conversation_id| Job::NotifyConversation { conversation_id })
        .collect();
    let notify = async {
        match notify.is_empty() {
            true => Ok(0),
            false => crate::db::jobs::enqueue_once(c, &notify, Utc::now()).await,
        }
    };
    let inserted = async {
        insert_messages.await.map_err(|e| {
            crate::error::on_unique(
                e,
                "messages_idempotency_key",
                "idempotency_key was used for another message",
            )
        })
    };
    futures::try_join!(
        async { update_positions.await.map_err(Error::from) },
        inserted,
        async { insert_events.await.map_err(Error::from) },
        async { update_reads.await.map_err(Error::from) },
        digests,
        notify,
    )?;
    Ok(())
}
