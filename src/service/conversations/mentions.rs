//! Mentions: whom a message names (users by id, checked as members; `@all`, every member;
//! `@here`, the members with an open stream on any instance), recorded with the message and
//! announced by a `mentioned` event; an edit announces only those it newly mentions.
//! "Mentions of me" and the sidebar's unread badges.

use super::record;
use crate::{
    auth::Caller,
    db::{self, messages::Message},
    domain::{Page, PageSize, PageToken, RichText},
    error::Result,
    realtime::Published,
    service::State,
};
use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use std::collections::BTreeSet;
use uuid::Uuid;

/// Whom `content` in conversation `id` mentions: its users, every member for `@all`, those
/// online for `@here` (found before the send's transaction: no lock is held meanwhile). The
/// sender is taken out where it is known.
pub(super) async fn targets(
    state: &State,
    conn: &mut AsyncPgConnection,
    id: Uuid,
    content: &RichText,
) -> Result<Vec<Uuid>> {
    let mut users: BTreeSet<Uuid> = content.mentions().iter().map(|u| u.0).collect();
    let (all, here) = content.mentions_everyone();
    if all || here {
        let members = db::events::recipients(conn, id).await?;
        if all {
            users.extend(members);
        } else {
            users.extend(state.broker.online_among(members).await);
        }
    }
    Ok(users.into_iter().collect())
}

/// Records that `message` mentions `users` (its sender aside); the event announcing those
/// newly mentioned. Newly mentioned in a reply, they follow its thread with that reply
/// unread (those who follow it already keep their position).
pub(super) async fn announce(
    conn: &mut AsyncPgConnection,
    message: &Message,
    users: &[Uuid],
) -> Result<Option<Published>> {
    let id = message.conversation_id;
    let users: Vec<Uuid> = users
        .iter()
        .copied()
        .filter(|u| *u != message.sender_id)
        .collect();
    let new = db::mentions::record(conn, id, message.id, &users).await?;
    if new.is_empty() {
        return Ok(None);
    }
    if let Some(root) = message.thread_root_id {
        let follows: Vec<(Uuid, i64)> = new.iter().map(|u| (*u, message.seq - 1)).collect();
        db::threads::follow_many(conn, id, root, &follows).await?;
    }
    let job = [crate::domain::jobs::Job::NotifyConversation {
        conversation_id: id,
    }];
    db::jobs::enqueue_once(conn, &job, chrono::Utc::now()).await?;
    let body = db::events::EventBody::Mentioned {
        message_id: message.id,
        user_ids: new,
    };
    record(conn, id, body, &[]).await.map(Some)
}

/// A page of the messages that mention the caller, newest first, and how many are unread.
pub async fn mentions(
    state: &State,
    caller: &Caller,
    size: PageSize,
    token: PageToken<(DateTime<Utc>, Uuid)>,
) -> Result<(Page<Message>, i64)> {
    let user = caller.user_id.0;
    let mut conn = state.pool.get().await?;
    let rows = db::mentions::of_user(&mut conn, user, token.0, size.0 + 1).await?;
    let unread = db::mentions::unread(&mut conn, user).await?.values().sum();
    let page = Page::from_rows(rows, size, |(m, at)| (*at, m.id));
    let page = Page {
        items: page.items.into_iter().map(|(m, _)| m).collect(),
        next_page_token: page.next_page_token,
    };
    Ok((page, unread))
}

/// One conversation's badges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Badges {
    /// The conversation.
    pub conversation_id: Uuid,
    /// Unread messages it shows.
    pub messages: i64,
    /// Unread mentions of the caller.
    pub mentions: i64,
    /// Followed threads with unread replies.
    pub threads: i64,
}

/// The caller's badges, per conversation.
pub async fn badges(state: &State, caller: &Caller) -> Result<Vec<Badges>> {
    let user = caller.user_id.0;
    let mut conn = state.pool.get().await?;
    let mentions = db::mentions::unread(&mut conn, user).await?;
    let rows = db::mentions::badges(&mut conn, user).await?;
    Ok(rows
        .into_iter()
        .map(|(conversation_id, messages, threads)| Badges {
            conversation_id,
            messages,
            mentions: mentions.get(&conversation_id).copied().unwrap_or(0),
            threads,
        })
        .collect())
}
