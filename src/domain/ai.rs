//! The AI assistant's records: chat turns and roles, saved chats, token usage, the
//! assistant's system account, and the live pieces of an answer in a conversation.

use crate::error::{Error, Result};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The assistant's system account: the sender of its answers in conversations.
pub const ASSISTANT_ID: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_a1a1);

/// The longest text of one turn, in characters.
pub const MAX_TURN_CHARS: usize = 32_000;
/// The longest question asked in a conversation, in characters.
pub const MAX_QUESTION_CHARS: usize = 4_000;
/// The most turns one request sends.
pub const MAX_TURNS: usize = 50;
/// The most turns a saved chat holds (then the caller starts a new one).
pub const MAX_CHAT_TURNS: i64 = 500;
/// The most characters a saved chat holds, all turns together (an answer may pass it once).
pub const MAX_CHAT_CHARS: i64 = 1_000_000;
/// The newest turns of a saved chat read for a prompt (which keeps what fits of them).
pub const PROMPT_TURNS: i64 = 100;

/// Who wrote a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatRole {
    /// Instructions.
    System,
    /// The person asking.
    User,
    /// The assistant.
    Assistant,
}

impl ChatRole {
    /// The stored (and provider) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }

    /// The role stored as `raw`.
    pub fn from_stored(raw: &str) -> Self {
        match raw {
            "system" => Self::System,
            "assistant" => Self::Assistant,
            _ => Self::User,
        }
    }
}

/// One turn of a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// Who wrote it.
    pub role: ChatRole,
    /// The text.
    pub content: String,
}

impl Turn {
    /// A turn from request field `field`: 1 to [`MAX_TURN_CHARS`] characters, no NUL.
    pub fn parse(field: &str, role: ChatRole, content: &str) -> Result<Self> {
        let n = content.chars().count();
        if content.trim().is_empty() || n > MAX_TURN_CHARS {
            return Err(Error::invalid(
                field,
                format!("must have 1 to {MAX_TURN_CHARS} characters"),
            ));
        }
        if content.contains('\0') {
            return Err(Error::invalid(field, "must not contain NUL characters"));
        }
        Ok(Self {
            role,
            content: content.to_owned(),
        })
    }

    /// A question asked in a conversation, from request field `field`.
    pub fn question(field: &str, content: &str) -> Result<Self> {
        if content.chars().count() > MAX_QUESTION_CHARS {
            return Err(Error::invalid(
                field,
                format!("must have at most {MAX_QUESTION_CHARS} characters"),
            ));
        }
        Self::parse(field, ChatRole::User, content)
    }
}

/// What the provider counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: i64,
    /// Answer tokens.
    pub completion_tokens: i64,
}

/// A saved turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedTurn {
    /// Who wrote it.
    pub role: ChatRole,
    /// The text.
    pub content: String,
    /// For answers: the model.
    pub model: Option<String>,
    /// For answers: why it ended.
    pub finish_reason: Option<String>,
    /// For answers: the tokens used.
    pub usage: Option<Usage>,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A saved private chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chat {
    /// The id.
    pub id: Uuid,
    /// The start of the first question.
    pub title: String,
    /// The model of the latest answer.
    pub model: String,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Its turns, oldest first (when loaded).
    pub turns: Vec<SavedTurn>,
}

/// A user's usage on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyUsage {
    /// The user.
    pub user_id: Uuid,
    /// The day (UTC).
    pub day: NaiveDate,
    /// Answers requested.
    pub requests: i64,
    /// Tokens counted (as the provider reported them).
    pub usage: Usage,
    /// Answers that did not finish (cancelled, failed, timed out).
    pub cut_off: i64,
    /// Answer tokens of those, estimated from their text where the provider gave no count.
    pub estimated_completion_tokens: i64,
}

/// What an answer used, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Counted {
    /// It finished: the provider's count (zero when it gave none).
    #[default]
    Finished,
    /// It did not finish, after streaming this many characters: its tokens are estimated.
    CutOff {
        /// The characters streamed before it stopped.
        chars: usize,
    },
}

impl Counted {
    /// The tokens of `chars` characters of answer, estimated (about four characters a token,
    /// rounded up).
    pub fn estimated_tokens(self) -> i64 {
        match self {
            Counted::Finished => 0,
            Counted::CutOff { chars } => i64::try_from(chars.div_ceil(4)).unwrap_or(i64::MAX),
        }
    }
}

/// A piece of the assistant's answer in a conversation (ephemeral; the final answer is a
/// message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssistantDelta {
    /// The conversation.
    pub conversation_id: Uuid,
    /// Identifies the answer.
    pub reply_id: Uuid,
    /// Who asked.
    pub asked_by: Uuid,
    /// The text to append.
    pub delta: String,
    /// The last piece.
    pub done: bool,
    /// On the last piece: the stored message.
    pub message_id: Option<Uuid>,
    /// On the last piece of a failed answer: why.
    pub error: Option<String>,
}

/// The title of a chat: the first line of its first question, at most 80 characters.
pub fn title_of(question: &str) -> String {
    let line = question
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    let mut t: String = line.trim().chars().take(80).collect();
    if line.trim().chars().count() > 80 {
        t.push('…');
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_are_bounded_and_titles_short() {
        assert!(Turn::parse("t", ChatRole::User, "hi").is_ok());
        assert!(Turn::parse("t", ChatRole::User, "  ").is_err());
        assert!(Turn::parse("t", ChatRole::User, "a\0b").is_err());
        assert!(Turn::question("q", &"x".repeat(MAX_QUESTION_CHARS + 1)).is_err());
        assert_eq!(title_of("\n  What is up?\nmore"), "What is up?");
        assert_eq!(title_of(&"y".repeat(100)).chars().count(), 81);
        assert_eq!(
            ASSISTANT_ID.to_string(),
            "00000000-0000-4000-8000-00000000a1a1"
        );
    }
}
