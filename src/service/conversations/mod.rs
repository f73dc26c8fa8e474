//! Direct and group conversations: creating, listing, renaming, membership; their messages
//! (`messages`) and the caller's event stream and typing (`stream`).
//!
//! Only members see or touch a conversation (others get NOT_FOUND). Any member of a group
//! may rename it and add people; members may leave; removing someone else takes a system
//! admin.

mod batch;
mod mentions;
mod messages;
mod reactions;
mod reads;
mod saved;
mod search;
mod stream;
mod threads;

pub use batch::{ReadQueue, SendQueue};
pub use mentions::{Badges, badges, mentions};
pub use messages::{attachments, delete, edit, messages, send, send_as_assistant};
pub use reactions::{marks, pin, pins, react, reactions};
pub use reads::mark_read;
pub use saved::{save, saved, unsave, versions};
pub use search::{MAX_SEARCH_DEPTH, search};
pub use stream::{TYPING_TTL, stream, typing};
pub use threads::{follow, mark_thread_read, mine, replies};

use crate::{
    auth::Caller,
    db::events::EventBody,
    db::{self, conversations::Conversation, messages::Message},
    domain::conversations::{ConversationId, ConversationTitle},
    domain::{Page, PageSize, PageToken, Role, UserId},
    error::{Error, Result},
    realtime::Published,
    service::{State, notifications},
};
use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use uuid::Uuid;

/// A conversation with its newest message, as the list shows it.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The conversation.
    pub conversation: Conversation,
    /// Its newest message.
    pub last_message: Option<(Message, Vec<crate::domain::files::File>)>,
}

/// What a new conversation is.
#[derive(Debug, Clone)]
pub enum NewConversation {
    /// Between the caller and one other person.
    Direct(UserId),
    /// A titled group of the caller and others.
    Group {
        /// The title.
        title: ConversationTitle,
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
    let mut attachments = db::files::of_messages(conn, &message_ids).await?;
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
    let (summary, event, told) = conn
        .transaction::<_, Error, _>(async |conn| {
            let mut event = None;
            let mut told = Vec::new();
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
                    let id = db::conversations::insert(conn, true, Some(title.as_str()), None)
                        .await?
                        .ok_or_else(|| Error::internal("group insert conflicted"))?;
                    event = Some(start(conn, id, &members).await?);
                    let added: Vec<Uuid> = members.iter().map(|u| u.0).collect();
                    let to = notifications::AddedTo::Conversation(id, title.as_str());
                    told = notifications::added(conn, state.notify, to, caller.user_id.0, &added)
                        .await?;
                    id
                }
            };
            let c = db::conversations::get(conn, id, caller.user_id)
                .await?
                .ok_or(Error::NotFound("conversation"))?;
            Ok((summary(conn, c).await?, event, told))
        })
        .await?;
    publish(state, event);
    notifications::publish(&state.broker, told);
    Ok(summary)
}

/// One conversation.
pub async fn get(state: &State, caller: &Caller, id: ConversationId) -> Result<Summary> {
    let id = id.0;
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
pub async fn rename(
    state: &State,
    caller: &Caller,
    id: ConversationId,
    title: ConversationTitle,
) -> Result<Summary> {
    let id = id.0;
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        require_group(member(conn, caller, id).await?)?;
        db::conversations::rename(conn, id, title.as_str()).await?;
        seen_by(conn, caller, id).await
    })
    .await
}

/// Adds people to a group; answers it with them (one transaction, one connection).
pub async fn add_members(
    state: &State,
    caller: &Caller,
    id: ConversationId,
    users: Vec<UserId>,
) -> Result<Summary> {
    let id = id.0;
    if users.is_empty() {
        return Err(Error::invalid("user_ids", "is required"));
    }
    let mut conn = state.pool.get().await?;
    let (summary, event, told) = conn
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
            let seen = seen_by(conn, caller, id).await?;
            let added: Vec<Uuid> = new.iter().map(|u| u.0).collect();
            let title = seen.conversation.title.clone().unwrap_or_default();
            let to = notifications::AddedTo::Conversation(id, &title);
            let told =
                notifications::added(conn, state.notify, to, caller.user_id.0, &added).await?;
            Ok((seen, event, told))
        })
        .await?;
    publish(state, event);
    notifications::publish(&state.broker, told);
    Ok(summary)
}

/// Removes someone from a group: themselves, or anyone when the caller is a system admin.
/// Answers the group as the caller now sees it (none when they left), from the same
/// transaction.
pub async fn remove_member(
    state: &State,
    caller: &Caller,
    id: ConversationId,
    user: UserId,
) -> Result<Option<Summary>> {
    let id = id.0;
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
