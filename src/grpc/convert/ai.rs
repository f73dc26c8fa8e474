//! Wire forms of the AI assistant's chats, turns, chunks and usage.

use super::timestamp;
use crate::{
    domain::ai::{Chat, ChatRole, DailyUsage, SavedTurn, Usage},
    error::{Error, Result},
    pb,
    service::ai::ChatChunk,
};

/// A role from request field `field`.
pub fn role_from_pb(field: &str, raw: i32) -> Result<ChatRole> {
    match pb::ChatRole::try_from(raw) {
        Ok(pb::ChatRole::System) => Ok(ChatRole::System),
        Ok(pb::ChatRole::User) => Ok(ChatRole::User),
        Ok(pb::ChatRole::Assistant) => Ok(ChatRole::Assistant),
        _ => Err(Error::invalid(field, "must be SYSTEM, USER or ASSISTANT")),
    }
}

fn role_to_pb(r: ChatRole) -> pb::ChatRole {
    match r {
        ChatRole::System => pb::ChatRole::System,
        ChatRole::User => pb::ChatRole::User,
        ChatRole::Assistant => pb::ChatRole::Assistant,
    }
}

fn usage(u: Usage) -> pb::TokenUsage {
    pb::TokenUsage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
    }
}

/// The wire form of a piece of an answer.
pub fn chunk(c: ChatChunk) -> pb::ChatChunk {
    let (finish_reason, u) = c.finish.unwrap_or_default();
    pb::ChatChunk {
        delta: c.delta,
        finish_reason,
        chat_id: c.chat_id.to_string(),
        model: c.model,
        usage: u.map(usage),
    }
}

fn turn(t: SavedTurn) -> pb::AiChatTurn {
    pb::AiChatTurn {
        role: role_to_pb(t.role).into(),
        content: t.content,
        model: t.model.unwrap_or_default(),
        finish_reason: t.finish_reason.unwrap_or_default(),
        usage: t.usage.map(usage),
        create_time: Some(timestamp(t.created_at)),
    }
}

/// The wire form of a chat (with its turns when loaded).
pub fn chat(c: Chat) -> pb::AiChat {
    pb::AiChat {
        id: c.id.to_string(),
        title: c.title,
        model: c.model,
        create_time: Some(timestamp(c.created_at)),
        update_time: Some(timestamp(c.updated_at)),
        turns: c.turns.into_iter().map(turn).collect(),
        next_page_token: String::new(),
    }
}

/// The wire form of a usage row.
pub fn daily_usage(u: DailyUsage) -> pb::AiUsage {
    pb::AiUsage {
        user_id: u.user_id.to_string(),
        day: u.day.to_string(),
        requests: u.requests,
        prompt_tokens: u.usage.prompt_tokens,
        completion_tokens: u.usage.completion_tokens,
        cut_off: u.cut_off,
        estimated_completion_tokens: u.estimated_completion_tokens,
    }
}
