//! Direct and group conversations and their messages.
//!
//! Only members see or touch a conversation (others get NOT_FOUND). Any member of a group
//! may rename it and add people; members may leave; removing someone else takes a system
//! admin. Messages get a gap-free per-conversation sequence number inside the sending
//! transaction; a send is acknowledged after commit; a retried send with the same
//! idempotency key returns the first message.

use crate::{
    auth::Caller,
    db::{
        self,
        conversations::Conversation,
        messages::{Message, Window},
    },
    domain::{Page, PageSize, PageToken, RichText, Role, UserId},
    error::{Error, Result},
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
    for u in users {
        match db::users::get(conn, *u).await? {
            Some(user) if !user.disabled => {}
            _ => {
                return Err(Error::invalid(
                    field,
                    format!("{} is not an active user", u.0),
                ));
            }
        }
    }
    Ok(())
}

async fn summary(conn: &mut AsyncPgConnection, c: Conversation) -> Result<Summary> {
    let last = db::messages::last(conn, c.id).await?;
    let last_message = match last {
        Some(m) => {
            let ids = db::messages::attachment_ids(conn, &[m.id])
                .await?
                .remove(&m.id)
                .unwrap_or_default();
            Some((m, ids))
        }
        None => None,
    };
    Ok(Summary {
        conversation: c,
        last_message,
    })
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
    let mut out = Vec::with_capacity(rows.len());
    for c in rows {
        out.push(summary(&mut conn, c).await?);
    }
    Ok(Page::from_rows(out, size, |s| {
        (s.conversation.last_activity_at, s.conversation.id)
    }))
}

/// Creates a conversation; a direct one that exists already is returned as it is.
pub async fn create(state: &State, caller: &Caller, new: NewConversation) -> Result<Summary> {
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
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
                match db::conversations::insert(conn, false, None, Some(&key), &[a, b]).await? {
                    Some(id) => id,
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
                db::conversations::insert(conn, true, Some(&title), None, &members)
                    .await?
                    .ok_or_else(|| Error::internal("group insert conflicted"))?
            }
        };
        let c = db::conversations::get(conn, id, caller.user_id)
            .await?
            .ok_or(Error::NotFound("conversation"))?;
        summary(conn, c).await
    })
    .await
}

/// One conversation.
pub async fn get(state: &State, caller: &Caller, id: Uuid) -> Result<Summary> {
    let mut conn = state.pool.get().await?;
    member(&mut conn, caller, id).await?;
    let c = db::conversations::get(&mut conn, id, caller.user_id)
        .await?
        .ok_or(Error::NotFound("conversation"))?;
    summary(&mut conn, c).await
}

/// Renames a group.
pub async fn rename(state: &State, caller: &Caller, id: Uuid, title: String) -> Result<Summary> {
    let mut conn = state.pool.get().await?;
    require_group(member(&mut conn, caller, id).await?)?;
    db::conversations::rename(&mut conn, id, &title).await?;
    get(state, caller, id).await
}

/// Adds people to a group.
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
    conn.transaction::<_, Error, _>(async |conn| {
        require_group(member(conn, caller, id).await?)?;
        require_active(conn, "user_ids", &users).await?;
        db::conversations::add_members(conn, id, &users).await
    })
    .await?;
    get(state, caller, id).await
}

/// Removes someone from a group: themselves, or anyone when the caller is a system admin.
pub async fn remove_member(state: &State, caller: &Caller, id: Uuid, user: UserId) -> Result<()> {
    let mut conn = state.pool.get().await?;
    require_group(member(&mut conn, caller, id).await?)?;
    if user != caller.user_id && caller.role != Role::Admin {
        return Err(Error::PermissionDenied(
            "only admins remove other members; you may leave".into(),
        ));
    }
    if !db::conversations::remove_member(&mut conn, id, user).await? {
        return Err(Error::NotFound("member"));
    }
    Ok(())
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

/// Sends a message (idempotent by `key`).
pub async fn send(
    state: &State,
    caller: &Caller,
    id: Uuid,
    content: RichText,
    attachments: Vec<Uuid>,
    key: Option<String>,
) -> Result<Message> {
    let mut conn = state.pool.get().await?;
    member(&mut conn, caller, id).await?;
    let replay = async |conn: &mut AsyncPgConnection, key: &str| -> Result<Option<Message>> {
        match db::messages::by_idempotency_key(conn, caller.user_id, key).await? {
            Some(m) if m.conversation_id == id => Ok(Some(m)),
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
    let sent = conn
        .transaction::<_, Error, _>(async |conn| {
            let m =
                db::messages::insert(conn, id, caller.user_id, &content, key.as_deref()).await?;
            db::messages::attach(conn, m.id, caller.user_id, &attachments).await?;
            Ok(m)
        })
        .await;
    match (sent, &key) {
        // A concurrent retry with the same key won the race: answer with its message.
        (Err(Error::AlreadyExists(_)), Some(k)) => replay(&mut conn, k)
            .await?
            .ok_or(Error::NotFound("message")),
        (result, _) => result,
    }
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
    member(&mut conn, caller, id).await?;
    conn.transaction::<_, Error, _>(async |conn| {
        let m = db::messages::get_for_update(conn, id, message).await?;
        if m.sender_id != caller.user_id.0 && caller.role != Role::Admin {
            return Err(Error::PermissionDenied(
                "only the sender edits a message".into(),
            ));
        }
        if m.deleted_at.is_some() {
            return Err(Error::FailedPrecondition("the message was deleted".into()));
        }
        db::messages::edit(conn, message, &content).await
    })
    .await
}

/// Deletes a message (its sender, or a system admin), leaving a tombstone.
pub async fn delete(state: &State, caller: &Caller, id: Uuid, message: Uuid) -> Result<Message> {
    let mut conn = state.pool.get().await?;
    member(&mut conn, caller, id).await?;
    conn.transaction::<_, Error, _>(async |conn| {
        let m = db::messages::get_for_update(conn, id, message).await?;
        if m.sender_id != caller.user_id.0 && caller.role != Role::Admin {
            return Err(Error::PermissionDenied(
                "only the sender deletes a message".into(),
            ));
        }
        if m.deleted_at.is_some() {
            return Ok(m);
        }
        db::messages::tombstone(conn, message).await
    })
    .await
}

/// Moves the caller's read position; returns their unread count after it.
pub async fn mark_read(state: &State, caller: &Caller, id: Uuid, seq: i64) -> Result<i64> {
    if seq < 0 {
        return Err(Error::invalid("seq", "must not be negative"));
    }
    let mut conn = state.pool.get().await?;
    member(&mut conn, caller, id).await?;
    db::conversations::mark_read(&mut conn, id, caller.user_id, seq).await?;
    let c = db::conversations::get(&mut conn, id, caller.user_id)
        .await?
        .ok_or(Error::NotFound("conversation"))?;
    Ok(c.unread_count)
}

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
