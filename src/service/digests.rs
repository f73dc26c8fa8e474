//! E-mail digests of unread messages for members without an open stream: a send queues at
//! most one pending digest per member (in the send's transaction), which runs
//! `digest_delay` later and tells the member about what they have not read and were not told
//! about yet. A busy conversation therefore sends each member at most one email per period.

use crate::{
    db::{self, jobs::Job},
    domain::UserId,
    error::{Error, Result},
    jobs::{self, Worker},
    service::State,
};
use anyhow::Context;
use chrono::Utc;
use diesel_async::AsyncPgConnection;
use std::collections::BTreeMap;
use uuid::Uuid;

/// The most messages one digest lists.
const MAX_LISTED: i64 = 50;

/// Queues a digest for each member (unless one is pending already).
pub async fn queue(
    conn: &mut AsyncPgConnection,
    state: &State,
    members: impl Iterator<Item = &Uuid>,
) -> Result<()> {
    let run_at = Utc::now() + state.digest_delay;
    for user in members {
        let payload = serde_json::json!({ "user_id": user });
        db::jobs::enqueue_once(
            conn,
            jobs::MESSAGE_DIGEST,
            &format!("digest:{user}"),
            payload,
            run_at,
        )
        .await?;
    }
    Ok(())
}

/// The digest job: nothing when the member has a stream open (on any instance) or has read
/// everything.
pub async fn send_digest(worker: &Worker, job: &Job) -> anyhow::Result<()> {
    let user: Uuid =
        serde_json::from_value(job.payload["user_id"].clone()).context("bad digest payload")?;
    if worker.broker.is_online(user).await {
        return Ok(());
    }
    let mut conn = worker.pool.get().await?;
    let Some(account) = db::users::get(&mut conn, UserId(user)).await? else {
        return Ok(());
    };
    let unread = db::digests::unread(&mut conn, UserId(user), MAX_LISTED).await?;
    if unread.is_empty() || account.disabled {
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
    let mut body = format!(
        "Hello {},\n\nYou have unread messages in EPOP:\n",
        account.display_name
    );
    for ((title, _), messages) in &by_conversation {
        body.push_str(&format!("\n{title}\n"));
        for m in messages {
            let snippet: String = m.text.chars().take(140).collect();
            body.push_str(&format!("  {}: {}\n", m.sender, snippet.replace('\n', " ")));
        }
    }
    body.push_str(&format!(
        "\nOpen EPOP to reply: {}\n",
        worker.public_url.trim_end_matches('/')
    ));
    let subject = format!(
        "{} unread message{} in EPOP",
        unread.len(),
        if unread.len() == 1 { "" } else { "s" }
    );
    worker
        .mailer
        .send(job.id, &account.email, &subject, body)
        .await?;
    // Told: the next digest only lists what comes after.
    let mut conn = worker.pool.get().await?;
    for ((_, conversation), messages) in by_conversation {
        let last = messages.iter().map(|m| m.seq).max().unwrap_or(0);
        db::digests::mark_notified(&mut conn, UserId(user), conversation, last)
            .await
            .map_err(|e: Error| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}
