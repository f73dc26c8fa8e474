//! What an event stream sends its client, and what each item costs to hold.

use crate::{
    db::{self, events::Event},
    realtime::BoardChange,
};
use chrono::{DateTime, Utc};
use std::time::Duration;
use uuid::Uuid;

/// What a stream sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A durable event, with the cursor to resume after it.
    Event {
        /// The event.
        event: Box<Event>,
        /// The cursor after it.
        cursor: String,
        /// When it reached this instance live (not read from the log): timed to the stream.
        received: Option<std::time::Instant>,
    },
    /// Someone is typing.
    Typing {
        /// The conversation.
        conversation_id: Uuid,
        /// Who.
        user_id: Uuid,
        /// Until when.
        expires_at: DateTime<Utc>,
    },
    /// Someone went online or offline.
    Presence {
        /// Who.
        user_id: Uuid,
        /// Online when true.
        online: bool,
    },
    /// Who of the user's contacts is online (once, when the stream opens).
    PresenceSnapshot(Vec<Uuid>),
    /// A project board changed.
    Board(BoardChange),
    /// The user's inbox changed.
    Inbox(crate::domain::notifications::Change),
    /// A piece of the assistant's answer (boxed: the largest variant, and every stream's
    /// buffer allocates its first 32 slots at the size of the largest).
    Assistant(Box<crate::domain::ai::AssistantDelta>),
    /// Reload state, wait `retry_after`, and open a fresh stream from `cursor`: the last item.
    Resync {
        /// Why.
        reason: String,
        /// Where to resume after reloading.
        cursor: String,
        /// How long to wait before reconnecting (random, to spread reconnections).
        retry_after: Duration,
    },
    /// Keep-alive.
    Heartbeat,
    /// The stream's grant ended (token expired, session or user revoked): the last item.
    End {
        /// Why, and what to do.
        reason: String,
    },
    /// The server is shutting down: the last item; the client resumes elsewhere.
    Unavailable {
        /// Why, and what to do.
        reason: String,
    },
}

impl Item {
    /// What the item costs to hold, roughly: its cursor and its message text.
    pub(super) fn weight(&self) -> usize {
        match self {
            Item::Event { event, cursor, .. } => {
                let text = match &event.body {
                    db::events::EventBody::MessageCreated { message, .. }
                    | db::events::EventBody::MessageUpdated { message, .. } => {
                        message.body_text.len()
                    }
                    _ => 0,
                };
                256 + cursor.len() + text
            }
            Item::PresenceSnapshot(users) => 64 + users.len() * 16,
            _ => 256,
        }
    }
}
