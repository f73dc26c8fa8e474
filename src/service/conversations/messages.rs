//! Messages: sending (idempotent, with a gap-free per-conversation sequence taken inside
//! the sending transaction; acknowledged after commit), editing and deleting (the sender or
//! a system admin; a delete leaves a tombstone), pages and search (read positions: `reads`).

use super::{member, publish, record};
use crate::{
    auth::Caller,
    db::{
        self,
        events::EventBody,
        messages::{Message, Window},
    },
    domain::conversations::{ConversationId, IdempotencyKey, MessageId},
    domain::threads::Reply,
    domain::{PageSize, RichText, Role, files::File, jobs::Job},
    error::{Error, Result},
    realtime::Published,
    service::State,
};
use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use std::collections::HashMap;
use uuid::Uuid;

/// The files of each message.
pub async fn attachments(state: &State, messages: &[Message]) -> Result<HashMap<Uuid, Vec<File>>> {
    let mut conn = state.pool.get().await?;
    let ids: Vec<Uuid> = messages.iter().map(|m| m.id).collect();
    db::files::of_messages(&mut conn, &ids).await
}

/// A page of messages, ascending by sequence; the token pages further in the same direction.
pub async fn messages(
    state: &State,
    caller: &Caller,
    id: ConversationId,
    window: Window,
    size: PageSize,
) -> Result<(Vec<Message>, Option<Window>)> {
    let id = id.0;
    let mut conn = state.pool.get().await?;
    member(&mut conn, caller, id).await?;
    let rows = db::messages::page(&mut conn, id, window, size.0).await?;
    let full = rows.len() as i64 == size.0;
    let next = match window {
        Window::After(_) if full => rows.last().map(|m| Window::After(m.seq)),
        Window::Latest | Window::Before(_) | Window::Around(_) if full => rows
            .first()
            .filter(|m| m.seq > 1)
            .map(|m| Window::Before(m.seq)),
        _ => None,
    };
    Ok((rows, next))
}

/// Sends a message (idempotent by `key`) with the caller's uploads `attachments` (sealed).
pub async fn send(
    state: &State,
    caller: &Caller,
    id: ConversationId,
    content: RichText,
    attachments: Vec<Uuid>,
    key: Option<IdempotencyKey>,
    reply: Option<Reply>,
) -> Result<(Message, Vec<File>)> {
    let id = id.0;
    let key = key.map(|k| k.as_str().to_owned());
    // Replies, mentions and sends with files take the direct path.
    if attachments.is_empty()
        && reply.is_none()
        && !content.mentions_anyone()
        && let Some(queue) = &state.sends
    {
        return send_batched(state, queue, caller, id, content, key).await;
    }
    let mut conn = state.pool.get().await?;
    // A retry returns the first message (the caller's own, so sent while a member).
    let replay = async |conn: &mut AsyncPgConnection, key: &str| -> Result<Option<_>> {
        match db::messages::by_idempotency_key(conn, caller.user_id, key).await? {
            Some(m) => replayed(conn, id, m).await.map(Some),
            None => Ok(None),
        }
    };
    if let Some(k) = &key
        && let Some(m) = replay(&mut conn, k).await?
    {
        return Ok(m);
    }
    let files = if attachments.is_empty() {
        Vec::new()
    } else {
        // Not a member: NOT_FOUND first. Sealing (copy, hash) does not hold the connection.
        member(&mut conn, caller, id).await?;
        drop(conn);
        let files = crate::service::files::seal_uploads(state, caller, &attachments).await?;
        conn = state.pool.get().await?;
        files
    };
    let digest_at = Utc::now() + state.digest_delay;
    let targets = match content.mentions_anyone() {
        true => super::mentions::targets(state, &mut conn, id, &content).await?,
        false => Vec::new(),
    };
    let sent = conn
        .transaction::<_, Error, _>(async |conn| {
            // Members only, before anything about the content is answered.
            member(conn, caller, id).await?;
            let root = match reply {
                Some(r) => Some(super::threads::root_of(conn, caller, id, r).await?),
                None => None,
            };
            let mentioned = content.mentions();
            members_only(conn, id, &mentioned).await?;
            let thread = reply.map(|r| (r.root, r.also_in_conversation));
            let new = db::sends::NewMessage {
                conversation: id,
                sender: caller.user_id,
                content: &content,
                key: key.as_deref(),
                attachments: &files,
                digest_at,
                system: false,
                thread,
            };
            // Not a member: the same answer as for a conversation that does not exist.
            let sent = db::sends::send(conn, new)
                .await?
                .ok_or(Error::NotFound("conversation"))?;
            let user = caller.user_id.0;
            if let Some(root) = &root {
                let seq = sent.message.seq;
                super::threads::replied(conn, root, user, seq).await?;
            }
            let mention = super::mentions::announce(conn, &sent.message, &targets).await?;
            Ok((sent, mention))
        })
        .await
        .map(|(sent, mention)| {
            // The digests are due later: the job worker's poll finds them. Notifications are
            // due now.
            if sent.notify || mention.is_some() {
                state.wake_jobs.notify_one();
            }
            let created = Published::Durable {
                event: sent.event.clone(),
                recipients: sent.recipients.into(),
            };
            publish(state, std::iter::once(created).chain(mention));
            let files = match sent.event.body {
                EventBody::MessageCreated { attachments, .. } => attachments,
                _ => Vec::new(),
            };
            (sent.message, files)
        });
    crate::service::files::settle(&state.files.storage, &files, &sent).await;
    match (sent, &key) {
        // A concurrent retry with the same key won the race: answer with its message.
        (Err(Error::AlreadyExists(_)), Some(k)) => replay(&mut conn, k)
            .await?
            .ok_or(Error::NotFound("message")),
        (result, _) => result,
    }
}

/// A send without files: through the send queue, committed with the sends waiting then.
async fn send_batched(
    state: &State,
    queue: &super::SendQueue,
    caller: &Caller,
    id: Uuid,
    content: RichText,
    key: Option<String>,
) -> Result<(Message, Vec<File>)> {
    let queued = db::send_batch::Queued {
        conversation: id,
        sender: caller.user_id,
        content,
        key: key.clone(),
        digest_at: Utc::now() + state.digest_delay,
    };
    let outcome = match queue.send(queued).await {
        Ok(outcome) => outcome,
        // A send outside batches (one with files) took the key meanwhile.
        Err(Error::AlreadyExists(_)) if key.is_some() => {
            let mut conn = state.pool.get().await?;
            let k = key.as_deref().unwrap_or_default();
            return match db::messages::by_idempotency_key(&mut conn, caller.user_id, k).await? {
                Some(m) => replayed(&mut conn, id, m).await,
                None => Err(Error::NotFound("message")),
            };
        }
        Err(e) => return Err(e),
    };
    match outcome {
        db::send_batch::Outcome::Sent(sent) => {
            if sent.notify {
                state.wake_jobs.notify_one();
            }
            Ok((sent.message, Vec::new()))
        }
        // Not a member: the same answer as for a conversation that does not exist.
        db::send_batch::Outcome::NotMember => Err(Error::NotFound("conversation")),
        db::send_batch::Outcome::Existing(m) => {
            let mut conn = state.pool.get().await?;
            replayed(&mut conn, id, m).await
        }
    }
}

/// The answer to a retried send: the first message with its files, when it went to the
/// same conversation.
async fn replayed(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    m: Message,
) -> Result<(Message, Vec<File>)> {
    if m.conversation_id != id {
        return Err(Error::invalid(
            "idempotency_key",
            "was used for a message in another conversation",
        ));
    }
    let mut files = db::files::of_messages(conn, &[m.id]).await?;
    let a = files.remove(&m.id).unwrap_or_default();
    Ok((m, a))
}

/// Sends `content` as the AI assistant (no member), idempotent by `key`.
pub async fn send_as_assistant(
    state: &State,
    id: ConversationId,
    content: &RichText,
    key: &str,
) -> Result<Message> {
    let assistant = crate::domain::UserId(crate::domain::ai::ASSISTANT_ID);
    let mut conn = state.pool.get().await?;
    let digest_at = Utc::now() + state.digest_delay;
    let sent = conn
        .transaction::<_, Error, _>(async |conn| {
            let new = db::sends::NewMessage {
                conversation: id.0,
                sender: assistant,
                content,
                key: Some(key),
                attachments: &[],
                digest_at,
                system: true,
                thread: None,
            };
            db::sends::send(conn, new)
                .await?
                .ok_or(Error::NotFound("conversation"))
        })
        .await;
    match sent {
        Ok(sent) => {
            publish(
                state,
                [Published::Durable {
                    event: sent.event,
                    recipients: sent.recipients.into(),
                }],
            );
            Ok(sent.message)
        }
        Err(Error::AlreadyExists(_)) => db::messages::by_idempotency_key(&mut conn, assistant, key)
            .await?
            .ok_or(Error::NotFound("message")),
        Err(e) => Err(e),
    }
}

/// The message, locked, when the caller is a member of its conversation (NOT_FOUND
/// otherwise) and sent it or is a system admin.
async fn own_message(
    conn: &mut AsyncPgConnection,
    caller: &Caller,
    id: Uuid,
    message: Uuid,
) -> Result<Message> {
    member(conn, caller, id).await?;
    let m = db::messages::get_for_update(conn, id, message).await?;
    if m.sender_id != caller.user_id.0 && caller.role != Role::Admin {
        return Err(Error::PermissionDenied(
            "only the sender (or an admin) changes a message".into(),
        ));
    }
    Ok(m)
}

/// Edits a message (its sender, or a system admin).
pub async fn edit(
    state: &State,
    caller: &Caller,
    id: ConversationId,
    message: MessageId,
    content: RichText,
) -> Result<Message> {
    let (id, message) = (id.0, message.0);
    let mut conn = state.pool.get().await?;
    let targets = match content.mentions_anyone() {
        true => super::mentions::targets(state, &mut conn, id, &content).await?,
        false => Vec::new(),
    };
    conn.transaction::<_, Error, _>(async |conn| {
        let m = own_message(conn, caller, id, message).await?;
        if m.deleted_at.is_some() {
            return Err(Error::FailedPrecondition("the message was deleted".into()));
        }
        members_only(conn, id, &content.mentions()).await?;
        db::saved::keep_current(conn, message).await?;
        let m = db::messages::edit(conn, message, &content, caller.user_id.0).await?;
        // Notifications show what the message says now.
        let text = crate::domain::notifications::snippet(&m.body_text);
        db::notifications::rewrite(conn, m.id, &text).await?;
        let attachments = db::files::of_messages(conn, &[m.id])
            .await?
            .remove(&m.id)
            .unwrap_or_default();
        let event = record(
            conn,
            id,
            EventBody::MessageUpdated {
                message: m.clone(),
                attachments,
            },
            &[],
        )
        .await?;
        // Only those the edit newly mentions are announced.
        let mention = super::mentions::announce(conn, &m, &targets).await?;
        Ok((m, event, mention))
    })
    .await
    .map(|(m, event, mention)| {
        publish(state, std::iter::once(event).chain(mention));
        m
    })
}

/// INVALID_ARGUMENT `content` unless every user `mentioned` is a member of conversation `id`.
async fn members_only(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    mentioned: &[crate::domain::UserId],
) -> Result<()> {
    if mentioned.is_empty() {
        return Ok(());
    }
    let found = db::conversations::existing_members(conn, id, mentioned).await?;
    if found.len() < mentioned.len() {
        return Err(Error::invalid(
            "content",
            "mentions someone who is not a member of this conversation",
        ));
    }
    Ok(())
}

/// Deletes a message (its sender, or a system admin), leaving a tombstone.
pub async fn delete(
    state: &State,
    caller: &Caller,
    id: ConversationId,
    message: MessageId,
) -> Result<Message> {
    let (id, message) = (id.0, message.0);
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        let m = own_message(conn, caller, id, message).await?;
        if m.deleted_at.is_some() {
            return Ok((m, None));
        }
        let m = db::messages::tombstone(conn, message).await?;
        // Its reactions, pin, saves and earlier versions go with it.
        db::reactions::purge(conn, message).await?;
        // Its files disappear with it; a job deletes their objects.
        if db::files::release_message(conn, message).await? > 0 {
            let job = Job::DeleteMessageFiles {
                message_id: message,
            };
            db::jobs::enqueue(conn, &job, None).await?;
        }
        let event = record(
            conn,
            id,
            EventBody::MessageDeleted { message: m.clone() },
            &[],
        )
        .await?;
        Ok((m, Some(event)))
    })
    .await
    .map(|(m, event)| {
        state.wake_jobs.notify_one();
        publish(state, event);
        m
    })
}
