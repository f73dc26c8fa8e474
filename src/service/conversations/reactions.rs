//! Reactions and pins: any member adds or removes them on a message that is not deleted;
//! every change is an event of the conversation's log (live, resumable, and blanked in the
//! log once its message is deleted).

use super::{member, publish, record};
use crate::{
    auth::Caller,
    db::{self, events::EventBody, messages::Message},
    domain::conversations::{ConversationId, MessageId},
    domain::reactions::{Emoji, MAX_DISTINCT_REACTIONS, MAX_PINS, Marks, Pin, Reaction},
    domain::{Page, PageSize, PageToken},
    error::{Error, Result},
    service::State,
};
use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use std::collections::HashMap;
use uuid::Uuid;

/// The message, locked, when the caller is a member (NOT_FOUND otherwise) and it is not
/// deleted (FAILED_PRECONDITION).
pub(super) async fn live_message(
    conn: &mut AsyncPgConnection,
    caller: &Caller,
    id: Uuid,
    message: Uuid,
) -> Result<Message> {
    member(conn, caller, id).await?;
    let m = db::messages::get_for_update(conn, id, message).await?;
    if m.deleted_at.is_some() {
        return Err(Error::FailedPrecondition("the message was deleted".into()));
    }
    Ok(m)
}

/// Adds (`add`) or removes the caller's reaction `emoji`; the same change twice changes
/// nothing the second time.
pub async fn react(
    state: &State,
    caller: &Caller,
    id: ConversationId,
    message: MessageId,
    emoji: Emoji,
    add: bool,
) -> Result<Message> {
    let (id, message, emoji) = (id.0, message.0, emoji.as_str());
    let user = caller.user_id.0;
    let mut conn = state.pool.get().await?;
    let (m, event) = conn
        .transaction::<_, Error, _>(async |conn| {
            let m = live_message(conn, caller, id, message).await?;
            let changed = if add {
                let (this, distinct) = db::reactions::counts(conn, message, emoji).await?;
                if this == 0 && distinct >= MAX_DISTINCT_REACTIONS {
                    return Err(Error::FailedPrecondition(format!(
                        "a message holds at most {MAX_DISTINCT_REACTIONS} distinct reactions"
                    )));
                }
                db::reactions::add(conn, message, emoji, user).await?
            } else {
                db::reactions::remove(conn, message, emoji, user).await?
            };
            if !changed {
                return Ok((m, None));
            }
            let (count, _) = db::reactions::counts(conn, message, emoji).await?;
            let body = EventBody::Reaction {
                message_id: message,
                emoji: emoji.to_owned(),
                user_id: user,
                added: add,
                count,
            };
            Ok((m, Some(record(conn, id, body, &[]).await?)))
        })
        .await?;
    publish(state, event);
    Ok(m)
}

/// A page of who reacted to a message (with `emoji`, or any), oldest first.
pub async fn reactions(
    state: &State,
    caller: &Caller,
    id: ConversationId,
    message: MessageId,
    emoji: Option<Emoji>,
    size: PageSize,
    token: PageToken<(DateTime<Utc>, Uuid, String)>,
) -> Result<Page<Reaction>> {
    let mut conn = state.pool.get().await?;
    member(&mut conn, caller, id.0).await?;
    db::messages::get(&mut conn, id.0, message.0).await?;
    let emoji = emoji.as_ref().map(Emoji::as_str);
    let rows = db::reactions::list(&mut conn, message.0, emoji, token.0, size.0 + 1).await?;
    Ok(Page::from_rows(rows, size, |r| {
        (r.created_at, r.user_id, r.emoji.clone())
    }))
}

/// Pins (`pinned`) or unpins a message; the same change twice changes nothing the second
/// time.
pub async fn pin(
    state: &State,
    caller: &Caller,
    id: ConversationId,
    message: MessageId,
    pinned: bool,
) -> Result<Message> {
    let (id, message) = (id.0, message.0);
    let mut conn = state.pool.get().await?;
    let (m, event) = conn
        .transaction::<_, Error, _>(async |conn| {
            let m = live_message(conn, caller, id, message).await?;
            let changed = if pinned {
                // Under the conversation's lock, so that two pins cannot pass the cap at once.
                db::conversations::lock(conn, id).await?;
                if db::reactions::pin_count(conn, id).await? >= MAX_PINS {
                    return Err(Error::FailedPrecondition(format!(
                        "a conversation holds at most {MAX_PINS} pins: unpin one first"
                    )));
                }
                db::reactions::pin(conn, id, message, caller.user_id.0).await?
            } else {
                db::reactions::unpin(conn, message).await?
            };
            if !changed {
                return Ok((m, None));
            }
            let body = EventBody::Pin {
                message_id: message,
                user_id: caller.user_id.0,
                pinned,
            };
            Ok((m, Some(record(conn, id, body, &[]).await?)))
        })
        .await?;
    publish(state, event);
    Ok(m)
}

/// The pins of a conversation, most recent first.
pub async fn pins(state: &State, caller: &Caller, id: ConversationId) -> Result<Vec<Pin>> {
    let mut conn = state.pool.get().await?;
    member(&mut conn, caller, id.0).await?;
    db::reactions::pins(&mut conn, id.0).await
}

/// What the caller sees added to each of `messages`.
pub async fn marks(
    state: &State,
    caller: &Caller,
    messages: &[Message],
) -> Result<HashMap<Uuid, Marks>> {
    let ids: Vec<Uuid> = messages.iter().map(|m| m.id).collect();
    let roots: Vec<Uuid> = messages
        .iter()
        .filter(|m| m.thread_root_id.is_none())
        .map(|m| m.id)
        .collect();
    let mut conn = state.pool.get().await?;
    let mut marks = db::reactions::marks(&mut conn, caller.user_id.0, &ids).await?;
    for (root, summary) in db::threads::summaries(&mut conn, caller.user_id.0, &roots).await? {
        marks.entry(root).or_default().thread = Some(summary);
    }
    Ok(marks)
}
