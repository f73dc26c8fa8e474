//! Read positions: MarkRead moves the caller's position (in a batch with others' when
//! batching is on), tells the other members by a read receipt, and reads the notifications
//! the messages up to it caused, on every device.

use super::{member, publish, record};
use crate::{
    auth::Caller,
    db::{self, events::EventBody},
    domain::conversations::ConversationId,
    error::{Error, Result},
    service::{State, notifications},
};
use diesel_async::AsyncConnection;

/// Moves the caller's read position; returns their unread count after it.
pub async fn mark_read(
    state: &State,
    caller: &Caller,
    id: ConversationId,
    seq: i64,
) -> Result<i64> {
    let id = id.0;
    if seq < 0 {
        return Err(Error::invalid("seq", "must not be negative"));
    }
    if let Some(queue) = &state.reads {
        let mark = db::read_batch::Mark {
            conversation: id,
            user: caller.user_id,
            seq,
        };
        return match queue.send(mark).await? {
            db::read_batch::Marked::Read { unread, .. } => {
                let mut conn = state.pool.get().await?;
                let user = caller.user_id.0;
                notifications::read_conversation(&mut conn, &state.broker, user, id, seq).await?;
                Ok(unread)
            }
            // Not a member: the same answer as for a conversation that does not exist.
            db::read_batch::Marked::NotMember => Err(Error::NotFound("conversation")),
        };
    }
    let mut conn = state.pool.get().await?;
    member(&mut conn, caller, id).await?;
    let (unread, event) = conn
        .transaction::<_, Error, _>(async |conn| {
            db::conversations::lock(conn, id).await?;
            let before = db::conversations::get(conn, id, caller.user_id)
                .await?
                .ok_or(Error::NotFound("conversation"))?;
            let after = db::conversations::mark_read(conn, id, caller.user_id, seq).await?;
            let event = if after > before.last_read_seq {
                let body = EventBody::ReadReceipt {
                    user_id: caller.user_id.0,
                    seq: after,
                };
                Some(record(conn, id, body, &[]).await?)
            } else {
                None
            };
            let c = db::conversations::get(conn, id, caller.user_id)
                .await?
                .ok_or(Error::NotFound("conversation"))?;
            Ok((c.unread_count, event))
        })
        .await?;
    publish(state, event);
    let user = caller.user_id.0;
    notifications::read_conversation(&mut conn, &state.broker, user, id, seq).await?;
    Ok(unread)
}
