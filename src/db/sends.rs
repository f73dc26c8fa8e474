//! The writes of a message send, built to hold the conversation's row lock briefly: one
//! update takes the next message and event positions (and the lock), then the message, its
//! event, the sender's read position, the recipients and the conversation's digest job (and
//! its notification job, for a direct message or a reply) go to
//! PostgreSQL as one pipelined batch (one round trip), all in the caller's transaction.

use crate::{
    db::{
        events::{Event, EventBody},
        messages::Message,
        schema::{conversation_events, conversation_members, conversations, messages},
    },
    domain::{
        RichText, UserId,
        files::{File, FileState},
        jobs::Job,
    },
    error::{Error, Result},
};
use chrono::{DateTime, Utc};
use diesel::{IntoSql, dsl::now, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// What a send wrote.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The message.
    pub message: Message,
    /// Its event in the conversation's log.
    pub event: Event,
    /// The members at commit time.
    pub recipients: Vec<Uuid>,
    /// A notification job was queued for it (wake the worker after commit).
    pub notify: bool,
}

/// A message to write.
#[derive(Debug, Clone, Copy)]
pub struct NewMessage<'a> {
    /// The conversation.
    pub conversation: Uuid,
    /// Who sends it.
    pub sender: UserId,
    /// Its content.
    pub content: &'a RichText,
    /// The sender's idempotency key, if any.
    pub key: Option<&'a str>,
    /// The sender's pending uploads to attach (checked and sealed), in order.
    pub attachments: &'a [crate::db::files::Sealed],
    /// When the conversation's digest job (if this send queues it) is due.
    pub digest_at: DateTime<Utc>,
    /// Sent by the system (the assistant), which is no member.
    pub system: bool,
    /// A reply: its thread's root (checked), and whether it shows in the conversation too.
    pub thread: Option<(Uuid, bool)>,
}

/// Appends a message and its event under the conversation's row lock, so commit order
/// equals sequence order with no gaps (`None`, writing nothing, unless the sender is a
/// member); moves the sender's read position to it; queues the conversation's digest job
/// unless one is pending: one row per period, however many members.
pub async fn send(conn: &mut AsyncPgConnection, new: NewMessage<'_>) -> Result<Option<Sent>> {
    let NewMessage {
        conversation,
        sender,
        content,
        key,
        attachments,
        digest_at,
        system,
        thread,
    } = new;
    let is_member = diesel::dsl::exists(
        conversation_members::table
            .filter(conversation_members::conversation_id.eq(conversation))
            .filter(conversation_members::user_id.eq(sender.0)),
    );
    let positions: Option<(i64, i64, Option<DateTime<Utc>>, bool)> = diesel::update(
        conversations::table
            .find(conversation)
            .filter(is_member.or(system.into_sql::<diesel::sql_types::Bool>())),
    )
    .set((
        conversations::last_seq.eq(conversations::last_seq + 1),
        conversations::last_event_seq.eq(conversations::last_event_seq + 1),
        conversations::last_message_at.eq(now),
    ))
    .returning((
        conversations::last_seq,
        conversations::last_event_seq,
        conversations::last_message_at,
        conversations::is_group,
    ))
    .get_result(conn)
    .await
    .optional()?;
    let Some((seq, event_seq, at, group)) = positions else {
        return Ok(None);
    };
    // now() is the transaction's start: the same moment the columns' defaults would take.
    let created_at = at.ok_or_else(|| Error::internal("last_message_at was not set"))?;
    let message = Message {
        id: Uuid::new_v4(),
        conversation_id: conversation,
        seq,
        sender_id: sender.0,
        content: content.doc.clone(),
        body_text: content.text.clone(),
        edited_at: None,
        deleted_at: None,
        created_at,
        thread_root_id: thread.map(|(root, _)| root),
        in_conversation: thread.is_none_or(|(_, shown)| shown),
    };
    let attached: Vec<File> = attachments
        .iter()
        .map(|s| File {
            message_id: Some(message.id),
            state: FileState::Attached,
            ..s.file.clone()
        })
        .collect();
    let body = EventBody::MessageCreated {
        message: message.clone(),
        attachments: attached,
    };
    let json =
        serde_json::to_value(&body).map_err(|e| Error::internal(format!("event body: {e}")))?;

    // Sent together, executed in order; the first failure (a reused idempotency key) is the
    // one reported, and it rolls the transaction back.
    let mut c: &AsyncPgConnection = conn;
    let insert_message = diesel::insert_into(messages::table)
        .values((
            messages::id.eq(message.id),
            messages::conversation_id.eq(conversation),
            messages::seq.eq(seq),
            messages::sender_id.eq(sender.0),
            messages::content.eq(&content.doc),
            messages::body_text.eq(&content.text),
            messages::idempotency_key.eq(key),
            messages::created_at.eq(created_at),
            messages::thread_root_id.eq(message.thread_root_id),
            messages::in_conversation.eq(message.in_conversation),
        ))
        .execute(&mut c);
    let insert_event = diesel::insert_into(conversation_events::table)
        .values((
            conversation_events::conversation_id.eq(conversation),
            conversation_events::seq.eq(event_seq),
            conversation_events::body.eq(json),
            conversation_events::message_id.eq(message.id),
            conversation_events::created_at.eq(created_at),
        ))
        .execute(&mut c);
    let members =
        conversation_members::table.filter(conversation_members::conversation_id.eq(conversation));
    // The sender has read what they wrote.
    let read = diesel::update(members.filter(conversation_members::user_id.eq(sender.0)))
        .set(conversation_members::last_read_seq.eq(seq))
        .execute(&mut c);
    let recipients = members
        .select(conversation_members::user_id)
        .load::<Uuid>(&mut c);
    let digest_job = [Job::ConversationDigest {
        conversation_id: conversation,
    }];
    let digest = crate::db::jobs::enqueue_once(c, &digest_job, digest_at);
    // A direct message, or a reply (to the thread's followers), notifies.
    let notify = !system && (!group || thread.is_some());
    let notify_job = [Job::NotifyConversation {
        conversation_id: conversation,
    }];
    let notify_queued = async {
        match notify {
            true => crate::db::jobs::enqueue_once(c, &notify_job, Utc::now()).await,
            false => Ok(0),
        }
    };
    let inserted = async {
        insert_message.await.map_err(|e| {
            crate::error::on_unique(
                e,
                "messages_idempotency_key",
                "idempotency_key was used for another message",
            )
        })
    };
    let (_, _, _, recipients, _, _) = futures::try_join!(
        inserted,
        async { insert_event.await.map_err(Error::from) },
        async { read.await.map_err(Error::from) },
        async { recipients.await.map_err(Error::from) },
        digest,
        notify_queued,
    )?;
    // Fails (rolling back) when an upload expired or was attached since it was checked.
    crate::db::files::attach(conn, message.id, sender, attachments).await?;
    let event = Event {
        conversation_id: conversation,
        seq: event_seq,
        body,
        created_at,
    };
    Ok(Some(Sent {
        message,
        event,
        recipients,
        notify,
    }))
}
