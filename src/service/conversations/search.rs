//! Full-text search over the messages of the caller's conversations.

use super::member;
use crate::{
    auth::Caller,
    db::{self, messages::Message},
    domain::conversations::ConversationId,
    domain::{Page, PageSize, PageToken},
    error::{Error, Result},
    service::State,
};

/// How deep search pages go (an offset; a forged token cannot overflow it).
pub const MAX_SEARCH_DEPTH: i64 = 10_000;

/// Full-text search over the caller's conversations (or one of them).
pub async fn search(
    state: &State,
    caller: &Caller,
    query: &str,
    conversation: Option<ConversationId>,
    size: PageSize,
    token: PageToken<i64>,
) -> Result<Page<Message>> {
    let conversation = conversation.map(|c| c.0);
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
