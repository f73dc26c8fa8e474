//! What members add to messages: reactions, pins, saved messages, and the earlier versions
//! an edit leaves.

use crate::{
    domain::conversations::Message,
    error::{Error, Result},
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The most distinct reactions one message holds.
pub const MAX_DISTINCT_REACTIONS: i64 = 20;
/// The most pinned messages one conversation holds.
pub const MAX_PINS: i64 = 50;

/// A reaction's emoji: a Unicode emoji (skin tones included) or a GitHub short code
/// (`:thumbsup:` or `thumbsup`), always kept as the emoji itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emoji(&'static str);

impl Emoji {
    /// Checks request field `field`.
    pub fn parse(field: &str, raw: &str) -> Result<Self> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(Error::invalid(field, "is required"));
        }
        let code = s.strip_prefix(':').and_then(|c| c.strip_suffix(':'));
        emojis::get(s)
            .or_else(|| emojis::get_by_shortcode(code.unwrap_or(s)))
            .map(|e| Self(e.as_str()))
            .ok_or_else(|| {
                Error::invalid(
                    field,
                    "must be a Unicode emoji or a short code such as :thumbsup:",
                )
            })
    }

    /// The emoji.
    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

/// One emoji's reactions to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionCount {
    /// The emoji.
    pub emoji: String,
    /// How many reacted with it.
    pub count: i64,
    /// Whether the caller did.
    pub reacted: bool,
}

/// One member's reaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaction {
    /// The emoji.
    pub emoji: String,
    /// Who.
    pub user_id: Uuid,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// What a member sees added to a message: its reactions and whether it is pinned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    /// The reactions, by first use.
    pub reactions: Vec<ReactionCount>,
    /// Pinned in its conversation.
    pub pinned: bool,
    /// For a root with replies or followed: its thread.
    pub thread: Option<crate::domain::threads::ThreadSummary>,
}

/// A pinned message.
#[derive(Debug, Clone)]
pub struct Pin {
    /// The message.
    pub message: Message,
    /// Who pinned it.
    pub pinned_by: Uuid,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A message a user saved.
#[derive(Debug, Clone)]
pub struct Saved {
    /// The message.
    pub message: Message,
    /// When it was saved.
    pub saved_at: DateTime<Utc>,
}

/// An earlier version of a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    /// 1 for the message as sent, then one more per edit.
    pub version: i32,
    /// Its rich-text document.
    pub content: serde_json::Value,
    /// Its plain text.
    pub body_text: String,
    /// Who wrote it.
    pub author_id: Uuid,
    /// When.
    pub written_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_accepts_emoji_and_short_codes_as_the_emoji() {
        assert_eq!(Emoji::parse("emoji", "👍").unwrap().as_str(), "👍");
        assert_eq!(Emoji::parse("emoji", ":thumbsup:").unwrap().as_str(), "👍");
        assert_eq!(Emoji::parse("emoji", "rocket").unwrap().as_str(), "🚀");
        assert_eq!(Emoji::parse("emoji", "👍🏽").unwrap().as_str(), "👍🏽");
        for bad in ["", "hello", ":nope:", "👍👍", "a👍", "<script>"] {
            assert!(Emoji::parse("emoji", bad).is_err(), "{bad:?}");
        }
    }
}
