//! The push job: a while after a notification (`EPOP_PUSH_DELAY`), pushes what a user has
//! not read of one topic (a conversation or project) to each of their devices, as one push
//! (several notifications of the topic collapse into it). Nothing is pushed to a user who
//! read it meanwhile, has a stream open, muted the topic, or is in their quiet hours (the
//! inbox keeps it). Devices a service no longer knows are removed; a busy or failing service
//! is retried (after its `Retry-After`), and a device handed the push is not handed it again.

use crate::{
    db::{self, push::Device},
    domain::notifications::{Notification, PushPayload},
    jobs::RetryAfter,
    push::{Outcome, Push},
    service::JobDeps,
};
use chrono::Utc;
use diesel_async::AsyncConnection;
use std::time::Duration;
use uuid::Uuid;

/// Why nothing was pushed.
fn suppressed(reason: &'static str, n: usize) {
    metrics::counter!("epop_push_suppressed_total", "reason" => reason).increment(n as u64);
}

/// The job: push `user`'s unpushed notifications of `topic`.
pub async fn push(deps: &JobDeps, user: Uuid, topic: Uuid) -> anyhow::Result<()> {
    let online = deps.broker.is_online(user).await;
    let mut conn = deps.pool.get().await?;
    // Under the notifications' row locks: a second run of the job waits, then finds them
    // dealt with.
    let retry = conn
        .transaction::<_, anyhow::Error, _>(async |conn| {
            let pending = db::notifications::unpushed(conn, user, topic).await?;
            if pending.is_empty() {
                return Ok(None);
            }
            let ids: Vec<Uuid> = pending.iter().map(|(n, _)| n.id).collect();
            let unread: Vec<&Notification> = pending
                .iter()
                .filter(|(_, read)| !read)
                .map(|(n, _)| n)
                .collect();
            suppressed("read", pending.len() - unread.len());
            let Some(newest) = unread.last() else {
                db::notifications::set_pushed(conn, &ids).await?;
                return Ok(None);
            };
            let settings = db::preferences::settings_of(conn, &[user]).await?;
            let quiet = settings.get(&user).is_some_and(|s| s.is_quiet(Utc::now()));
            let muted = db::preferences::is_muted(conn, user, topic).await?;
            // Removed from the conversation or project meanwhile: told nothing more of it.
            let member = db::preferences::belongs(conn, user, topic).await?;
            let reason = match (online, muted, quiet, member) {
                (.., false) => Some("not_member"),
                (true, ..) => Some("online"),
                (_, true, ..) => Some("muted"),
                (_, _, true, _) => Some("quiet_hours"),
                _ => None,
            };
            if let Some(reason) = reason {
                suppressed(reason, unread.len());
                db::notifications::set_pushed(conn, &ids).await?;
                return Ok(None);
            }
            let previews = settings.get(&user).is_none_or(|s| s.previews);
            let push = message(newest, unread.len(), previews);
            metrics::counter!("epop_push_collapsed_total").increment((unread.len() - 1) as u64);
            let devices = db::push::of_user(conn, user).await?;
            let done = db::push::delivered(conn, newest.id).await?;
            let mut retry: Option<Duration> = None;
            let mut failed = false;
            // All devices at once: the job takes one send's time (at most 10 s), not one
            // per device.
            let waiting: Vec<&Device> = devices.iter().filter(|d| !done.contains(&d.id)).collect();
            let outcomes =
                futures::future::join_all(waiting.iter().map(|d| deps.push.send(d, &push))).await;
            for (device, outcome) in waiting.into_iter().zip(outcomes) {
                match outcome {
                    Outcome::Sent => {
                        db::push::record(conn, newest.id, device.id).await?;
                        counted(device, "sent");
                    }
                    Outcome::Gone => {
                        db::push::remove(conn, device.id).await?;
                        counted(device, "removed");
                    }
                    Outcome::Retry(after) => {
                        counted(device, "retried");
                        failed = true;
                        retry = match (retry, after) {
                            (Some(a), Some(b)) => Some(a.max(b)),
                            (a, b) => a.or(b),
                        };
                    }
                    Outcome::Refused(reason) => {
                        counted(device, "failed");
                        tracing::warn!(device = %device.id, %reason, "a push was refused");
                    }
                }
            }
            if failed {
                // Committed as it is: the devices handed the push are recorded, the
                // notifications stay unpushed for the retry.
                return Ok(Some(retry.unwrap_or(Duration::from_secs(5))));
            }
            db::notifications::set_pushed(conn, &ids).await?;
            Ok(None)
        })
        .await?;
    match retry {
        Some(after) => Err(anyhow::Error::new(RetryAfter(after))),
        None => Ok(()),
    }
}

fn counted(device: &Device, result: &'static str) {
    metrics::counter!("epop_push_total", "platform" => device.platform.clone(), "result" => result)
        .increment(1);
}

/// The push for `count` notifications of a topic, told by the newest: its text only with
/// previews.
fn message(newest: &Notification, count: usize, previews: bool) -> Push {
    let (urgency, ttl) = newest.kind.delivery();
    let body = match (previews, count) {
        (true, 1) => newest.body.clone(),
        (true, n) => format!("{} (+{} more)", newest.body, n - 1),
        (false, 1) => "New notification".to_owned(),
        (false, n) => format!("{n} new notifications"),
    };
    Push {
        payload: PushPayload {
            notification_id: newest.id,
            kind: newest.kind.as_str().to_owned(),
            title: newest.title.clone(),
            body,
            count,
            conversation_id: newest.conversation_id,
            project_id: newest.project_id,
        },
        urgency,
        ttl,
        topic: newest.topic.simple().to_string(),
    }
}
