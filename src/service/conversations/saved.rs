//! Each user's private list of saved messages, and the earlier versions of edited messages.
//! Both go with a deleted message; a saved message of a conversation the user left is not
//! listed.

use super::{member, reactions::live_message};
use crate::{
    auth::Caller,
    db,
    domain::conversations::{ConversationId, MessageId},
    domain::reactions::{Saved, Version},
    domain::{Page, PageSize, PageToken},
    error::{Error, Result},
    service::State,
};
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use uuid::Uuid;

/// Saves a message of a conversation the caller is a member of (saving it again changes
/// nothing).
pub async fn save(
    state: &State,
    caller: &Caller,
    id: ConversationId,
    message: MessageId,
) -> Result<Saved> {
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        let m = live_message(conn, caller, id.0, message.0).await?;
        let saved_at = db::saved::save(conn, caller.user_id.0, m.id).await?;
        Ok(Saved {
            message: m,
            saved_at,
        })
    })
    .await
}

/// Takes a message off the caller's list (one not on it is fine).
pub async fn unsave(state: &State, caller: &Caller, message: MessageId) -> Result<()> {
    let mut conn = state.pool.get().await?;
    db::saved::unsave(&mut conn, caller.user_id.0, message.0).await
}

/// A page of the caller's saved messages, most recently saved first.
pub async fn saved(
    state: &State,
    caller: &Caller,
    size: PageSize,
    token: PageToken<(DateTime<Utc>, Uuid)>,
) -> Result<Page<Saved>> {
    let mut conn = state.pool.get().await?;
    let rows = db::saved::list(&mut conn, caller.user_id.0, token.0, size.0 + 1).await?;
    Ok(Page::from_rows(rows, size, |s| (s.saved_at, s.message.id)))
}

/// The earlier versions of a message of a conversation the caller is a member of.
pub async fn versions(
    state: &State,
    caller: &Caller,
    id: ConversationId,
    message: MessageId,
) -> Result<Vec<Version>> {
    let mut conn = state.pool.get().await?;
    member(&mut conn, caller, id.0).await?;
    db::messages::get(&mut conn, id.0, message.0).await?;
    db::saved::versions(&mut conn, message.0).await
}
