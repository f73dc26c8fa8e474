//! The job that turns a conversation's new events into notifications: a direct message
//! notifies the other member, a reply the thread's followers, a mention those it names (a
//! mention wins over the other two for one message). Who already read the message is not
//! notified. A send queues the job in its transaction (at most one pending per
//! conversation), and the job reads every event after the conversation's mark, under a lock,
//! so each event is turned once however many instances run jobs.

use super::{publish, record};
use crate::{
    db::{self, events::EventBody, messages::Message},
    domain::{
        jobs::Job,
        notifications::{Kind, NewNotification, snippet},
    },
    error::Error,
    service::JobDeps,
};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// Events turned per run; a conversation with more queues its job again.
const BATCH: i64 = 500;

/// The job: notifications for `conversation`'s events since its mark.
pub async fn notify_conversation(deps: &JobDeps, conversation: Uuid) -> anyhow::Result<()> {
    let mut conn = deps.pool.get().await?;
    let delay = deps.notify;
    let stored = conn
        .transaction::<_, Error, _>(async |conn| {
            let Some(mark) = db::notifications::lock_mark(conn, conversation).await? else {
                return Ok(Vec::new());
            };
            let events = db::notable::events_after(conn, conversation, mark, BATCH).await?;
            let Some(last) = events.last().map(|e| e.seq) else {
                return Ok(Vec::new());
            };
            let new = notable(conn, conversation, &events).await?;
            let stored = record(conn, new, delay).await?;
            db::notifications::set_mark(conn, conversation, last).await?;
            if events.len() as i64 == BATCH {
                let again = [Job::NotifyConversation {
                    conversation_id: conversation,
                }];
                db::jobs::enqueue_once(conn, &again, chrono::Utc::now()).await?;
            }
            Ok(stored)
        })
        .await?;
    publish(&deps.broker, stored);
    Ok(())
}

/// The notifications `events` cause.
async fn notable(
    conn: &mut AsyncPgConnection,
    conversation: Uuid,
    events: &[db::events::Event],
) -> Result<Vec<NewNotification>, Error> {
    let Some((group, title)) = db::notable::conversation(conn, conversation).await? else {
        return Ok(Vec::new());
    };
    let read = db::notable::read_positions(conn, conversation).await?;
    // Per message, whom it notifies and how (a mention replaces a message or reply kind).
    let mut messages: HashMap<Uuid, Message> = HashMap::new();
    // (message, user, kind, the thread position a reply is unread after).
    let mut whom: Vec<(Uuid, Uuid, Kind, Option<i64>)> = Vec::new();
    for e in events {
        match &e.body {
            EventBody::MessageCreated { message, .. } if message.deleted_at.is_none() => {
                if !group {
                    for user in read.keys().filter(|u| **u != message.sender_id) {
                        whom.push((message.id, *user, Kind::DirectMessage, None));
                    }
                }
                if let Some(root) = message.thread_root_id {
                    for (user, thread_read) in db::notable::followers(conn, root).await? {
                        if user != message.sender_id {
                            whom.push((message.id, user, Kind::ThreadReply, Some(thread_read)));
                        }
                    }
                }
                messages.insert(message.id, message.clone());
            }
            EventBody::Mentioned {
                message_id,
                user_ids,
            } => {
                if !messages.contains_key(message_id) {
                    match db::messages::get(conn, conversation, *message_id).await {
                        Ok(m) if m.deleted_at.is_none() => {
                            messages.insert(m.id, m);
                        }
                        _ => continue,
                    }
                }
                for user in user_ids {
                    whom.push((*message_id, *user, Kind::Mention, None));
                }
            }
            _ => {}
        }
    }
    // Deleted since their events were written: they notify nobody.
    let ids: Vec<Uuid> = messages.keys().copied().collect();
    let live = db::notable::live_messages(conn, &ids).await?;
    messages.retain(|id, _| live.contains(id));
    let mentioned: HashSet<(Uuid, Uuid)> = whom
        .iter()
        .filter(|(_, _, k, _)| *k == Kind::Mention)
        .map(|(m, u, ..)| (*m, *u))
        .collect();
    let senders: Vec<Uuid> = messages.values().map(|m| m.sender_id).collect();
    let names = db::notable::names(conn, &senders).await?;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (message_id, user, kind, thread_read) in whom {
        let Some(m) = messages.get(&message_id) else {
            continue;
        };
        let superseded = kind != Kind::Mention && mentioned.contains(&(message_id, user));
        // Members only (a mention of someone who left, a follower who left), and not read
        // (a reply: in its thread, which may not show in the conversation).
        let unread = read
            .get(&user)
            .is_some_and(|r| thread_read.unwrap_or(*r) < m.seq);
        if superseded || !unread || !seen.insert((message_id, user)) {
            continue;
        }
        let sender = names.get(&m.sender_id).cloned().unwrap_or_default();
        let title = match (&title, group) {
            (Some(t), true) if !t.is_empty() => t.clone(),
            _ => sender.clone(),
        };
        out.push(NewNotification {
            user_id: user,
            kind,
            topic: conversation,
            conversation_id: Some(conversation),
            message: Some((m.id, m.seq)),
            project_id: None,
            task_id: None,
            actor_id: Some(m.sender_id),
            title,
            body: format!("{sender}: {}", snippet(&m.body_text)),
        });
    }
    Ok(out)
}
