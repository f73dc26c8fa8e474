//! The caller's event stream and typing indicators.

use super::{member, publish};
use crate::{
    auth::Caller, db, domain::conversations::ConversationId, error::Result, realtime::Published,
    service::State,
};
use chrono::Utc;

/// How long a typing indicator lasts unless renewed.
pub const TYPING_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// Tells the other members that the caller is typing (ephemeral: broker only).
pub async fn typing(state: &State, caller: &Caller, id: ConversationId) -> Result<()> {
    let id = id.0;
    let mut conn = state.pool.get().await?;
    member(&mut conn, caller, id).await?;
    let recipients = db::events::recipients(&mut conn, id).await?;
    publish(
        state,
        [Published::Typing {
            conversation_id: id,
            user_id: caller.user_id.0,
            expires_at: Utc::now() + TYPING_TTL,
            recipients: recipients.into(),
        }],
    );
    Ok(())
}

/// Opens the caller's event stream, resuming after `resume` (a cursor this server signed
/// for the caller) when given.
pub async fn stream(
    state: &State,
    caller: &Caller,
    resume: Option<&str>,
) -> Result<crate::realtime::session::Events> {
    let resume = resume
        .map(|c| state.cursor_key.decode("resume_cursor", caller.user_id, c))
        .transpose()?;
    crate::realtime::session::open(
        state.pool.clone(),
        state.broker.clone(),
        state.cursor_key.clone(),
        caller,
        resume,
        &state.streams,
    )
    .await
}
