//! Direct and group conversations and their messages.
//!
//! Only members see or touch a conversation (others get NOT_FOUND). Any member of a group
//! may rename it and add people; members may leave; removing someone else takes a system
//! admin. Messages get a gap-free per-conversation sequence number inside the sending
//! transaction; a send is acknowledged after commit; a retried send with the same
//! idempotency key returns the first message.

use crate::{
    auth::Caller,
    db::events::EventBody,
    db::{
        self,
        conversations::Conversation,
        messages::{Message, Window},
    },
    domain::{Page, PageSize, PageToken, RichText, Role, UserId},
    error::{Error, Result},
    realtime::Published,
    service::State,
};
use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use std::collections::HashMap;
use uuid::Uuid;

/// A conversation with its newest message, as the list shows it.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The conversation.
    pub conversation: Conversation,
    /// Its newest message.
    pub last_message: Option<(Message, Vec<Uuid>)>,
}

/// What a new conversation is.
#[derive(Debug, Clone)]
pub enum NewConversation {
    /// Between the caller and one other person.
    Direct(UserId),
    /// A titled group of the caller and others.
    Group {
        /// The title.
        title: String,
        /// The others.
        members: Vec<UserId>,
    },
}

/// Appends an event to the conversation's log in the caller's transaction; returns what to
/// publish once it commits. `also` are recipients beyond the current members (who left).
async fn record(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    body: EventBody,
    also: &[Uuid],
) -> Result<Published> {
    let event = db::events::append(conn, id, body).await?;
    let mut recipients = db::events::recipients(conn, id).await?;
    recipients.extend_from_slice(also);
    Ok(Published::Durable {
        event,
        recipients: recipients.into(),
    })
}

/// Publishes committed events to open streams (best effort: the log is the truth).
fn publish(state: &State, items: impl IntoIterator<Item = Published>) {
    for item in items {
        state.broker.publish(item);
    }
}

/// Creates members of a new conversation, with the event that adds them.
async fn start(conn: &mut AsyncPgConnection, id: Uuid, members: &[UserId]) -> Result<Published> {
    let added: Vec<Uuid> = members.iter().map(|u| u.0).collect();
    let event = db::events::append(
        conn,
        id,
        EventBody::Membership {
            added: added.clone(),
            removed: vec![],
        },
    )
    .await?;
    db::conversations::add_members(conn, id, members, event.seq).await?;
    Ok(Published::Durable {
        event,
        recipients: added.into(),
    })
}

/// NOT_FOUND unless the caller is a member; otherwise whether it is a group.
async fn member(conn: &mut AsyncPgConnection, caller: &Caller, id: Uuid) -> Result<bool> {
    db::conversations::membership(conn, id, caller.user_id)
        .await?
        .ok_or(Error::NotFound("conversation"))
}

fn require_group(is_group: bool) -> Result<()> {
    if is_group {
        Ok(())
    } else {
        Err(Error::FailedPrecondition(
            "direct conversations cannot change members or title".into(),
        ))
    }
}

/// INVALID_ARGUMENT on `field` unless every user is active.
async fn require_active(conn: &mut AsyncPgConnection, field: &str, users: &[UserId]) -> Result<()> {
    let active = db::users::active_among(conn, users).await?;
    match users.iter().find(|u| !active.contains(u)) {
        Some(u) => Err(Error::invalid(
            field,
            format!("{} is not an active user", u.0),
        )),
        None => Ok(()),
    }
}

/// Each conversation with its newest message (two queries for the whole page).
async fn summaries(conn: &mut AsyncPgConnection, list: Vec<Conversation>) -> Result<Vec<Summary>> {
    let ids: Vec<Uuid> = list.iter().map(|c| c.id).collect();
    let mut last = db::messages::last_of(conn, &ids).await?;
    let message_ids: Vec<Uuid> = last.values().map(|m| m.id).collect();
    let mut attachments = db::messages::attachment_ids(conn, &message_ids).await?;
    Ok(list
        .into_iter()
        .map(|c| {
            let last_message = last.remove(&c.id).map(|m| {
                let ids = attachments.remove(&m.id).unwrap_or_default();
                (m, ids)
            });
            Summary {
                conversation: c,
                last_message,
            }
        })
        .collect())
}

async fn summary(conn: &mut AsyncPgConnection, c: Conversation) -> Result<Summary> {
    summaries(conn, vec![c])
        .await?
        .pop()
        .ok_or_else(|| Error::internal("a summary went missing"))
}

/// The caller's conversations, newest activity first.
pub async fn list(
    state: &State,
    caller: &Caller,
    size: PageSize,
    token: PageToken<(DateTime<Utc>, Uuid)>,
) -> Result<Page<Summary>> {
    let mut conn = state.pool.get().await?;
    let rows = db::conversations::list(&mut conn, caller.user_id, token.0, size.0 + 1).await?;
    let out = summaries(&mut conn, rows).await?;
    Ok(Page::from_rows(out, size, |s| {
        (s.conversation.last_activity_at, s.conversation.id)
    }))
}

/// Creates a conversation; a direct one that exists already is returned as it is.
pub async fn create(state: &State, caller: &Caller, new: NewConversation) -> Result<Summary> {
    let mut conn = state.pool.get().await?;
    let (summary, event) = conn
        .transaction::<_, Error, _>(async |conn| {
            let mut event = None;
            let id = match new {
                NewConversation::Direct(other) => {
                    if other == caller.user_id {
                        return Err(Error::invalid(
                            "member_ids",
                            "a direct conversation needs another person",
                        ));
                    }
                    require_active(conn, "member_ids", &[other]).await?;
                    let (a, b) = if caller.user_id < other {
                        (caller.user_id, other)
                    } else {
                        (other, caller.user_id)
                    };
                    let key = format!("{}:{}", a.0, b.0);
                    match db::conversations::insert(conn, false, None, Some(&key)).await? {
                        Some(id) => {
                            event = Some(start(conn, id, &[a, b]).await?);
                            id
                        }
                        None => db::conversations::find_direct(conn, &key)
                            .await?
                            .ok_or_else(|| Error::internal("direct conversation vanished"))?,
                    }
                }
                NewConversation::Group { title, mut members } => {
                    require_active(conn, "member_ids", &members).await?;
                    members.push(caller.user_id);
                    members.sort();
                    members.dedup();
                    let id = db::conversations::insert(conn, true, Some(&title), None)
                        .await?
                        .ok_or_else(|| Error::internal("group insert conflicted"))?;
                    event = Some(start(conn, id, &members).await?);
                    id
                }
            };
            let c = db::conversations::get(conn, id, caller.user_id)
                .await?
                .ok_or(Error::NotFound("conversation"))?;
            Ok((summary(conn, c).await?, event))
        })
        .await?;
    publish(state, event);
    Ok(summary)
}

/// One conversation.
pub async fn get(state: &State, caller: &Caller, id: Uuid) -> Result<Summary> {
    let mut conn = state.pool.get().await?;
    member(&mut conn, caller, id).await?;
    seen_by(&mut conn, caller, id).await
}

/// The conversation as `caller` sees it, in the caller's connection or transaction (whose
/// membership the caller checked).
async fn seen_by(conn: &mut AsyncPgConnection, caller: &Caller, id: Uuid) -> Result<Summary> {
    let c = db::conversations::get(conn, id, caller.user_id)
        .await?
        .ok_or(Error::NotFound("conversation"))?;
    summary(conn, c).await
}

/// Renames a group; answers it as renamed (one transaction, one connection).
pub async fn rename(state: &State, caller: &Caller, id: Uuid, title: String) -> Result<Summary> {
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        require_group(member(conn, caller, id).await?)?;
        db::conversations::rename(conn, id, &title).await?;
        seen_by(conn, caller, id).await
    })
    .await
}

/// Adds people to a group; answers it with them (one transaction, one connection).
pub async fn add_members(
    state: &State,
    caller: &Caller,
    id: Uuid,
    users: Vec<UserId>,
) -> Result<Summary> {
    if users.is_empty() {
        return Err(Error::invalid("user_ids", "is required"));
    }
    let mut conn = state.pool.get().await?;
    let (summary, event) = conn
        .transaction::<_, Error, _>(async |conn| {
            require_group(member(conn, caller, id).await?)?;
            require_active(conn, "user_ids", &users).await?;
            let existing = db::conversations::existing_members(conn, id, &users).await?;
            let mut new: Vec<UserId> = users
                .iter()
                .copied()
                .filter(|u| !existing.contains(&u.0))
                .collect();
            new.sort();
            new.dedup();
            let mut event = None;
            if !new.is_empty() {
                let added = new.iter().map(|u| u.0).collect();
                let body = EventBody::Membership {
                    added,
                    removed: vec![],
                };
                let mut published = record(conn, id, body, &[]).await?;
                if let Published::Durable {
                    event: e,
                    recipients,
                } = &mut published
                {
                    db::conversations::add_members(conn, id, &new, e.seq).await?;
                    recipients.extend(new.iter().map(|u| u.0));
                }
                event = Some(published);
            }
            Ok((seen_by(conn, caller, id).await?, event))
        })
        .await?;
    publish(state, event);
    Ok(summary)
}

/// Removes someone from a group: themselves, or anyone when the caller is a system admin.
/// Answers the group as the caller now sees it (none when they left), from the same
/// transaction.
pub async fn remove_member(
    state: &State,
    caller: &Caller,
    id: Uuid,
    user: UserId,
) -> Result<Option<Summary>> {
    let mut conn = state.pool.get().await?;
    let (summary, event) = conn
        .transaction::<_, Error, _>(async |conn| {
            require_group(member(conn, caller, id).await?)?;
            if user != caller.user_id && caller.role != Role::Admin {
                return Err(Error::PermissionDenied(
                    "only admins remove other members; you may leave".into(),
                ));
            }
            if !db::conversations::remove_member(conn, id, user).await? {
                return Err(Error::NotFound("member"));
            }
            let body = EventBody::Membership {
                added: vec![],
                removed: vec![user.0],
            };
            let event = record(conn, id, body, &[user.0]).await?;
            let summary = if user == caller.user_id {
                None
            } else {
                Some(seen_by(conn, caller, id).await?)
            };
            Ok((summary, event))
        })
        .await?;
    publish(state, [event]);
    Ok(summary)
}

/// Takes `user` out of every conversation (a deleted account) in the caller's transaction,
/// with the membership events; returns what to publish once it commits.
pub(crate) async fn remove_everywhere(
    conn: &mut AsyncPgConnection,
    user: UserId,
) -> Result<Vec<Published>> {
    let mut events = vec![];
    for id in db::events::positions(conn, user).await?.into_keys() {
        db::conversations::remove_member(conn, id, user).await?;
        let body = EventBody::Membership {
            added: vec![],
            removed: vec![user.0],
        };
        events.push(record(conn, id, body, &[user.0]).await?);
    }
    Ok(events)
}

/// Attachment ids of each message.
pub async fn attachments(state: &State, messages: &[Message]) -> Result<HashMap<Uuid, Vec<Uuid>>> {
    let mut conn = state.pool.get().await?;
    let ids: Vec<Uuid> = messages.iter().map(|m| m.id).collect();
    db::messages::attachment_ids(&mut conn, &ids).await
}

/// A page of messages, ascending by sequence; the token pages further in the same direction.
pub async fn messages(
    state: &State,
    caller: &Caller,
    id: Uuid,
    window: Window,
    size: PageSize,
) -> Result<(Vec<Message>, Option<Window>)> {
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

/// Sends a message (idempotent by `key`); returns it with its attachment ids.
pub async fn send(
    state: &State,
    caller: &Caller,
    id: Uuid,
    content: RichText,
    attachments: Vec<Uuid>,
    key: Option<String>,
) -> Result<(Message, Vec<Uuid>)> {
    let mut conn = state.pool.get().await?;
    // A retry returns the first message (the caller's own, so sent while a member).
    let replay = async |conn: &mut AsyncPgConnection, key: &str| -> Result<Option<_>> {
        match db::messages::by_idempotency_key(conn, caller.user_id, key).await? {
            Some(m) if m.conversation_id == id => {
                let mut ids = db::messages::attachment_ids(conn, &[m.id]).await?;
                let a = ids.remove(&m.id).unwrap_or_default();
                Ok(Some((m, a)))
            }
            Some(_) => Err(Error::invalid(
                "idempotency_key",
                "was used for a message in another conversation",
            )),
            None => Ok(None),
        }
    };
    if let Some(k) = &key
        && let Some(m) = replay(&mut conn, k).await?
    {
        return Ok(m);
    }
    let digest_at = Utc::now() + state.digest_delay;
    let sent = conn
        .transaction::<_, Error, _>(async |conn| {
            let sent = db::sends::send(
                conn,
                id,
                caller.user_id,
                &content,
                key.as_deref(),
                &attachments,
                crate::jobs::CONVERSATION_DIGEST,
                digest_at,
            )
            .await?;
            // Not a member: the same answer as for a conversation that does not exist.
            sent.ok_or(Error::NotFound("conversation"))
        })
        .await
        .map(|sent| {
            // The digests are due later: the job worker's poll finds them, no need to wake it.
            publish(
                state,
                [Published::Durable {
                    event: sent.event,
                    recipients: sent.recipients.into(),
                }],
            );
            (sent.message, attachments)
        });
    match (sent, &key) {
        // A concurrent retry with the same key won the race: answer with its message.
        (Err(Error::AlreadyExists(_)), Some(k)) => replay(&mut conn, k)
            .await?
            .ok_or(Error::NotFound("message")),
        (result, _) => result,
    }
}

/// The message, locked, when the caller sent it or is a system admin.
async fn own_message(
    conn: &mut AsyncPgConnection,
    caller: &Caller,
    id: Uuid,
    message: Uuid,
) -> Result<Message> {
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
    id: Uuid,
    message: Uuid,
    content: RichText,
) -> Result<Message> {
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        member(conn, caller, id).await?;
        let m = own_message(conn, caller, id, message).await?;
        if m.deleted_at.is_some() {
            return Err(Error::FailedPrecondition("the message was deleted".into()));
        }
        let m = db::messages::edit(conn, message, &content).await?;
        let attachment_ids = db::messages::attachment_ids(conn, &[m.id])
            .await?
            .remove(&m.id)
            .unwrap_or_default();
        let event = record(
            conn,
            id,
            EventBody::MessageUpdated {
                message: m.clone(),
                attachment_ids,
            },
            &[],
        )
        .await?;
        Ok((m, event))
    })
    .await
    .map(|(m, event)| {
        publish(state, [event]);
        m
    })
}

/// Deletes a message (its sender, or a system admin), leaving a tombstone.
pub async fn delete(state: &State, caller: &Caller, id: Uuid, message: Uuid) -> Result<Message> {
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        member(conn, caller, id).await?;
        let m = own_message(conn, caller, id, message).await?;
        if m.deleted_at.is_some() {
            return Ok((m, None));
        }
        let m = db::messages::tombstone(conn, message).await?;
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
        publish(state, event);
        m
    })
}

/// Moves the caller's read position; returns their unread count after it.
pub async fn mark_read(state: &State, caller: &Caller, id: Uuid, seq: i64) -> Result<i64> {
    if seq < 0 {
        return Err(Error::invalid("seq", "must not be negative"));
    }
    let mut conn = state.pool.get().await?;
    member(&mut conn, caller, id).await?;
    let (unread, event) = conn
        .transaction::<_, Error, _>(async |conn| {
            let before = db::conversations::get(conn, id, caller.user_id)
                .await?
                .ok_or(Error::NotFound("conversation"))?;
            let after = db::conversations::mark_read(conn, id, caller.user_id, seq).await?;
            let event = if after > before.last_read_seq {
                let body = EventBody::ReadReceipt {
                    user_id: caller.user_id.0,
                    seq: after,
                };
                Some(record(conn, id, body, &[]).await?)
            } else {
                None
            };
            let c = db::conversations::get(conn, id, caller.user_id)
                .await?
                .ok_or(Error::NotFound("conversation"))?;
            Ok((c.unread_count, event))
        })
        .await?;
    publish(state, event);
    Ok(unread)
}

/// How deep search pages go (an offset; a forged token cannot overflow it).
pub const MAX_SEARCH_DEPTH: i64 = 10_000;

/// Full-text search over the caller's conversations (or one of them).
pub async fn search(
    state: &State,
    caller: &Caller,
    query: &str,
    conversation: Option<Uuid>,
    size: PageSize,
    token: PageToken<i64>,
) -> Result<Page<Message>> {
    let mut conn = state.pool.get().await?;
    if let Some(c) = conversation {
        member(&mut conn, caller, c).await?;
    }
    let offset = token.0.unwrap_or(0).max(0);
    if offset > MAX_SEARCH_DEPTH {
        return Err(Error::invalid(
            "page_token",
            format!("pages past {MAX_SEARCH_DEPTH} results; refine the query"),
        ));
    }
    let rows = db::messages::search(
        &mut conn,
        caller.user_id,
        query,
        conversation,
        offset,
        size.0 + 1,
    )
    .await?;
    let mut page = Page::from_rows(rows, size, |_| 0i64);
    if !page.next_page_token.is_empty() {
        page.next_page_token = PageToken::<i64>::encode(&(offset + size.0));
    }
    Ok(page)
}

/// How long a typing indicator lasts unless renewed.
pub const TYPING_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// Tells the other members that the caller is typing (ephemeral: broker only).
pub async fn typing(state: &State, caller: &Caller, id: Uuid) -> Result<()> {
    let mut conn = state.pool.get().await?;
    member(&mut conn, caller, id).await?;
    let recipients = db::events::recipients(&mut conn, id).await?;
    publish(
        state,
        [Published::Typing {
            conversation_id: id,
            user_id: caller.user_id.0,
            expires_at: Utc::now() + TYPING_TTL,
            recipients: recipients.into(),
        }],
    );
    Ok(())
}

/// Opens the caller's event stream, resuming after `resume` (a cursor this server signed
/// for the caller) when given.
pub async fn stream(
    state: &State,
    caller: &Caller,
    resume: Option<&str>,
) -> Result<crate::realtime::session::Events> {
    let resume = resume
        .map(|c| state.cursor_key.decode("resume_cursor", caller.user_id, c))
        .transpose()?;
    crate::realtime::session::open(
        state.pool.clone(),
        state.broker.clone(),
        state.cursor_key.clone(),
        caller,
        resume,
    )
    .await
}
