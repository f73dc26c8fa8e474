//! Threads: a reply names a root of the same conversation (not itself a reply, not
//! deleted); repliers, the root's sender and those mentioned in a reply follow the thread,
//! anyone may follow or stop; followers have a read position and unread count per thread.

use super::member;
use crate::{
    auth::Caller,
    db::{self, messages::Message},
    domain::conversations::{ConversationId, MessageId},
    domain::threads::{Followed, MAX_FOLLOWED, Reply},
    domain::{Page, PageSize, PageToken},
    error::{Error, Result},
    service::State,
};
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

/// The root a reply names, locked: a message of conversation `id` (the caller a member) that
/// is neither deleted nor a reply.
pub(super) async fn root_of(
    conn: &mut AsyncPgConnection,
    caller: &Caller,
    id: Uuid,
    reply: Reply,
) -> Result<Message> {
    member(conn, caller, id).await?;
    let root = match db::messages::get_for_update(conn, id, reply.root).await {
        Err(Error::NotFound(_)) => {
            return Err(Error::invalid(
                "thread_root_id",
                "is not a message of this conversation",
            ));
        }
        other => other?,
    };
    if root.thread_root_id.is_some() {
        return Err(Error::invalid(
            "thread_root_id",
            "is a reply: reply to the root of its thread",
        ));
    }
    if root.deleted_at.is_some() {
        return Err(Error::FailedPrecondition(
            "the thread's root was deleted".into(),
        ));
    }
    Ok(root)
}

/// After a reply at `seq` by `sender` to `root`: the sender follows the thread having read
/// it, the root's sender with every reply unread (who follows already keeps their
/// position). Those the reply mentions follow it when the mentions are announced.
pub(super) async fn replied(
    conn: &mut AsyncPgConnection,
    root: &Message,
    sender: Uuid,
    seq: i64,
) -> Result<()> {
    let id = root.conversation_id;
    db::threads::follow(conn, id, root.id, sender, seq, true).await?;
    if root.sender_id == sender || root.sender_id == crate::domain::ai::ASSISTANT_ID {
        return Ok(());
    }
    db::threads::follow_many(conn, id, root.id, &[(root.sender_id, 0)]).await
}

/// The caller starts (`follow`, with what is there read) or stops following a thread of a
/// conversation they are in.
pub async fn follow(
    state: &State,
    caller: &Caller,
    id: ConversationId,
    root: MessageId,
    follow: bool,
) -> Result<()> {
    let mut conn = state.pool.get().await?;
    member(&mut conn, caller, id.0).await?;
    let m = db::messages::get(&mut conn, id.0, root.0).await?;
    if m.thread_root_id.is_some() {
        return Err(Error::invalid(
            "message_id",
            "is a reply, not a thread's root",
        ));
    }
    let user = caller.user_id.0;
    if follow {
        let read_to = db::threads::last_reply_seq(&mut conn, root.0).await?;
        db::threads::follow(&mut conn, id.0, root.0, user, read_to, false).await
    } else {
        db::threads::unfollow(&mut conn, root.0, user).await
    }
}

/// Moves the caller's read position in a thread they follow; answers their unread count in it.
pub async fn mark_thread_read(
    state: &State,
    caller: &Caller,
    id: ConversationId,
    root: MessageId,
    seq: i64,
) -> Result<i64> {
    if seq < 0 {
        return Err(Error::invalid("seq", "must not be negative"));
    }
    let mut conn = state.pool.get().await?;
    member(&mut conn, caller, id.0).await?;
    db::messages::get(&mut conn, id.0, root.0).await?;
    if !db::threads::mark_read(&mut conn, root.0, caller.user_id.0, seq).await? {
        return Err(Error::FailedPrecondition(
            "the caller does not follow this thread: follow it first".into(),
        ));
    }
    let summaries = db::threads::summaries(&mut conn, caller.user_id.0, &[root.0]).await?;
    Ok(summaries.get(&root.0).map_or(0, |s| s.unread))
}

/// A page of a thread's replies, oldest first.
pub async fn replies(
    state: &State,
    caller: &Caller,
    id: ConversationId,
    root: MessageId,
    size: PageSize,
    token: PageToken<i64>,
) -> Result<Page<Message>> {
    let mut conn = state.pool.get().await?;
    member(&mut conn, caller, id.0).await?;
    db::messages::get(&mut conn, id.0, root.0).await?;
    let after = token.0.unwrap_or(0);
    let rows = db::threads::replies(&mut conn, root.0, after, size.0 + 1).await?;
    Ok(Page::from_rows(rows, size, |m| m.seq))
}

/// A page of the threads the caller follows: those with unread replies first, then by
/// newest reply. The token is the position in that order.
pub async fn mine(
    state: &State,
    caller: &Caller,
    size: PageSize,
    token: PageToken<i64>,
) -> Result<Page<Followed>> {
    let mut conn = state.pool.get().await?;
    let mut all = db::threads::followed(&mut conn, caller.user_id.0, MAX_FOLLOWED).await?;
    all.sort_by(|a, b| {
        let activity = |f: &Followed| f.summary.last_reply_at.unwrap_or(f.root.created_at);
        (b.summary.unread > 0)
            .cmp(&(a.summary.unread > 0))
            .then(activity(b).cmp(&activity(a)))
            .then(a.root.id.cmp(&b.root.id))
    });
    let skip = token.0.unwrap_or(0).max(0) as usize;
    let rows: Vec<(i64, Followed)> = all
        .into_iter()
        .enumerate()
        .skip(skip)
        .take(size.0 as usize + 1)
        .map(|(i, f)| (i as i64 + 1, f))
        .collect();
    let page = Page::from_rows(rows, size, |(i, _)| *i);
    Ok(Page {
        items: page.items.into_iter().map(|(_, f)| f).collect(),
        next_page_token: page.next_page_token,
    })
}
