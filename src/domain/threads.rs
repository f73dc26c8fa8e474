//! Threads: replies to a root message, who follows them, and what each follower has read.

use crate::domain::conversations::Message;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The most threads "my threads" considers (the most recently followed are kept).
pub const MAX_FOLLOWED: i64 = 1000;

/// Where a new message goes when it is a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The thread's root.
    pub root: Uuid,
    /// Shown in the conversation too.
    pub also_in_conversation: bool,
}

/// A root's thread as one member sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadSummary {
    /// Replies not deleted.
    pub reply_count: i64,
    /// When the newest of them was sent.
    pub last_reply_at: Option<DateTime<Utc>>,
    /// Who replied.
    pub participants: Vec<Uuid>,
    /// Whether the member follows it.
    pub following: bool,
    /// Replies of others the member has not read (when following).
    pub unread: i64,
}

/// A thread a user follows.
#[derive(Debug, Clone)]
pub struct Followed {
    /// Its root.
    pub root: Message,
    /// As the user sees it.
    pub summary: ThreadSummary,
}
