//! E-mail digests of unread messages for members without an open stream. A send queues, in
//! its transaction (`db::sends`), the conversation's digest job unless one is pending; it runs
//! `digest_delay` later and queues a digest for each member (unless one is pending), which
//! tells the member about what they have not read and were not told about yet. A busy
//! conversation therefore sends each member at most one email per period, and a send writes
//! one job row at most, however many members the conversation has.

use crate::{
    db::{self, jobs::Claimed},
    domain::{UserId, jobs::Job, notifications::Kind},
    error::Error,
    jobs::RetryAfter,
    service::JobDeps,
};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The most messages one digest lists.
const MAX_LISTED: i64 = 50;

/// The conversation's digest job: queues its members' digests, due now (each unless one is
/// pending).
pub async fn queue_members(deps: &JobDeps, conversation: Uuid) -> anyhow::Result<()> {
    let mut conn = deps.pool.get().await?;
    let members = db::events::recipients(&mut conn, conversation)
        .await
        .map_err(|e: Error| anyhow::anyhow!("{e}"))?;
    let digests: Vec<Job> = members
        .into_iter()
        .map(|user_id| Job::MessageDigest { user_id })
        .collect();
    db::jobs::enqueue_once(&conn, &digests, chrono::Utc::now())
        .await
        .map_err(|e: Error| anyhow::anyhow!("{e}"))?;
    deps.wake.notify_one();
    Ok(())
}

/// The member's digest job: nothing when the member has a stream open (on any instance) or
/// has read everything; in their quiet hours, it waits for their end. It tells the unread
/// messages (none of muted conversations) and the unread notifications the member wants by
/// email.
pub async fn send_digest(deps: &JobDeps, job: &Claimed, user: Uuid) -> anyhow::Result<()> {
    if deps.broker.is_online(user).await {
        return Ok(());
    }
    let mut conn = deps.pool.get().await?;
    let Some(account) = db::users::get(&mut conn, UserId(user)).await? else {
        return Ok(());
    };
    let settings = db::preferences::settings_of(&mut conn, &[user])
        .await?
        .remove(&user);
    if let Some(wait) = settings
        .as_ref()
        .and_then(|s| s.quiet_for(chrono::Utc::now()))
    {
        return Err(RetryAfter(wait).into());
    }
    let kinds: Vec<&str> = Kind::ALL
        .into_iter()
        .filter(|k| {
            settings
                .as_ref()
                .map_or_else(|| k.default_channels(), |s| s.channels(*k))
                .email
        })
        .map(Kind::as_str)
        .collect();
    let unread = db::digests::unread(&mut conn, UserId(user), MAX_LISTED).await?;
    let told = db::digests::notifications(&mut conn, UserId(user), &kinds, MAX_LISTED).await?;
    if (unread.is_empty() && told.is_empty()) || account.disabled {
        return Ok(());
    }
    drop(conn);
    let mut by_conversation: BTreeMap<(String, Uuid), Vec<&db::digests::Unread>> = BTreeMap::new();
    for u in &unread {
        by_conversation
            .entry((u.title.clone(), u.conversation_id))
            .or_default()
            .push(u);
    }
    let mut body = format!("Hello {},\n", account.display_name);
    if !unread.is_empty() {
        body.push_str("\nYou have unread messages in EPOP:\n");
    }
    for ((title, _), messages) in &by_conversation {
        body.push_str(&format!("\n{title}\n"));
        for m in messages {
            let snippet: String = m.text.chars().take(140).collect();
            body.push_str(&format!("  {}: {}\n", m.sender, snippet.replace('\n', " ")));
        }
    }
    if !told.is_empty() {
        body.push_str("\nNotifications for you:\n");
        for n in &told {
            body.push_str(&format!("  {}: {}\n", n.title, n.body.replace('\n', " ")));
        }
    }
    body.push_str(&format!(
        "\nOpen EPOP to reply: {}\n",
        deps.public_url.trim_end_matches('/')
    ));
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let subject = match unread.len() {
        0 => format!("{} notification{} in EPOP", told.len(), plural(told.len())),
        n => format!("{n} unread message{} in EPOP", plural(n)),
    };
    deps.mailer
        .send(job.id, &account.email, &subject, body)
        .await?;
    // Told: the next digest only lists what comes after.
    let mut conn = deps.pool.get().await?;
    if let Some(last) = told.iter().map(|n| n.created_at).max() {
        db::digests::told(&mut conn, UserId(user), last)
            .await
            .map_err(|e: Error| anyhow::anyhow!("{e}"))?;
    }
    for ((_, conversation), messages) in by_conversation {
        let last = messages.iter().map(|m| m.seq).max().unwrap_or(0);
        db::digests::mark_notified(&mut conn, UserId(user), conversation, last)
            .await
            .map_err(|e: Error| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}
