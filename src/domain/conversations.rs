//! Conversations and their messages as the services and adapters see them, the paging
//! window of messages, and the durable events of a conversation's log (their serde form is
//! what the log stores and what instances exchange).

use crate::{
    domain::{ProjectName, UserId, files::File},
    error::{Error, Result},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The id of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConversationId(pub Uuid);

impl std::fmt::Display for ConversationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ConversationId {
    /// Parses a conversation id from request field `field`.
    pub fn parse(field: &str, raw: &str) -> Result<Self> {
        super::parse_uuid(field, raw).map(Self)
    }
}

/// The id of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageId(pub Uuid);

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl MessageId {
    /// Parses a message id from request field `field`.
    pub fn parse(field: &str, raw: &str) -> Result<Self> {
        super::parse_uuid(field, raw).map(Self)
    }
}

/// A group's title: 1 to 200 characters, trimmed, no control characters (the rule of
/// project names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationTitle(String);

impl ConversationTitle {
    /// Checks a title from request field `field`.
    pub fn parse(field: &str, raw: &str) -> Result<Self> {
        ProjectName::parse(field, raw).map(|t| Self(t.as_str().to_owned()))
    }

    /// The title.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A client-chosen key that makes a send idempotent: at most 100 printable characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Checks an optional key (empty means none) from request field `field`.
    pub fn parse(field: &str, raw: &str) -> Result<Option<Self>> {
        match raw {
            "" => Ok(None),
            k if k.len() > 100 || k.chars().any(char::is_control) => Err(Error::invalid(
                field,
                "must be at most 100 printable characters",
            )),
            k => Ok(Some(Self(k.to_owned()))),
        }
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A conversation as one member sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    /// The id.
    pub id: Uuid,
    /// True for groups.
    pub is_group: bool,
    /// The title of a group.
    pub title: Option<String>,
    /// The members.
    pub member_ids: Vec<UserId>,
    /// The sequence number of the newest message.
    pub last_seq: i64,
    /// The viewer's read position.
    pub last_read_seq: i64,
    /// Messages from others after the viewer's read position, not deleted.
    pub unread_count: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Time of the newest message, or the creation time.
    pub last_activity_at: DateTime<Utc>,
}

/// A message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The id.
    pub id: Uuid,
    /// The conversation.
    pub conversation_id: Uuid,
    /// The position in the conversation, from 1, without gaps.
    pub seq: i64,
    /// The sender.
    pub sender_id: Uuid,
    /// The rich-text document (`{}` once deleted).
    pub content: serde_json::Value,
    /// The plain text.
    pub body_text: String,
    /// When it was last edited.
    pub edited_at: Option<DateTime<Utc>>,
    /// When it was deleted (a tombstone).
    pub deleted_at: Option<DateTime<Utc>>,
    /// When it was sent.
    pub created_at: DateTime<Utc>,
    /// For a reply: the root of its thread.
    #[serde(default)]
    pub thread_root_id: Option<Uuid>,
    /// Shown in the conversation (every message but a reply sent to its thread only).
    #[serde(default = "shown")]
    pub in_conversation: bool,
}

fn shown() -> bool {
    true
}

/// Which part of a conversation to page through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The newest messages.
    Latest,
    /// Messages before this sequence number (older ones).
    Before(i64),
    /// Messages after this sequence number (newer ones).
    After(i64),
    /// Messages around this sequence number (half before, half from it on).
    Around(i64),
}

/// What happened in a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    /// A message was sent.
    MessageCreated {
        /// The message.
        message: Message,
        /// Its files.
        #[serde(default)]
        attachments: Vec<File>,
    },
    /// A message was edited.
    MessageUpdated {
        /// The message after the edit.
        message: Message,
        /// Its files.
        #[serde(default)]
        attachments: Vec<File>,
    },
    /// A message was deleted (a tombstone).
    MessageDeleted {
        /// The tombstone.
        message: Message,
    },
    /// Members were added or removed.
    Membership {
        /// Who joined.
        added: Vec<Uuid>,
        /// Who left or was removed.
        removed: Vec<Uuid>,
    },
    /// A member read up to a position.
    ReadReceipt {
        /// The reader.
        user_id: Uuid,
        /// The message sequence number read up to.
        seq: i64,
    },
    /// A member added or removed a reaction.
    Reaction {
        /// The message.
        message_id: Uuid,
        /// The emoji.
        emoji: String,
        /// Who.
        user_id: Uuid,
        /// Added, or removed.
        added: bool,
        /// How many have this reaction now.
        count: i64,
    },
    /// A member pinned or unpinned a message.
    Pin {
        /// The message.
        message_id: Uuid,
        /// Who.
        user_id: Uuid,
        /// Pinned, or unpinned.
        pinned: bool,
    },
    /// A message mentions these users (at its send, or newly by an edit).
    Mentioned {
        /// The message.
        message_id: Uuid,
        /// Who it mentions (newly).
        user_ids: Vec<Uuid>,
    },
    /// An event about a message deleted since (a reaction, a pin, a mention): streams skip
    /// it.
    Redacted,
}

/// An event of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The conversation.
    pub conversation_id: Uuid,
    /// Its position in the conversation's event log, from 1, without gaps.
    pub seq: i64,
    /// What happened.
    pub body: EventBody,
    /// When.
    pub created_at: DateTime<Utc>,
}
