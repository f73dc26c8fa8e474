//! The AI assistant's rules: a configured provider (FAILED_PRECONDITION saying how to set
//! one up otherwise), per-user limits (requests per minute, answers at once), the prompt
//! budget (context trimmed newest first), the time an answer may take, usage accounting,
//! and the context a caller may add (a conversation or project they can read).

mod chat;
mod conversation;
mod limits;

pub use chat::{ChatChunk, ChatInput, chat, get_chat, list_chats};
pub use conversation::ask;
pub use limits::Limits;

use crate::{
    ai::{AiError, Provider},
    auth::Caller,
    db,
    domain::{
        PageSize,
        ai::{ChatRole, Counted, DailyUsage, Turn, Usage},
        conversations::{ConversationId, Window},
        projects::ProjectId,
        tasks::{Filter, Sort, SortKey, TaskStatus},
    },
    error::{Error, Result},
    service::{State, admin::Admin},
};
use chrono::NaiveDate;
use std::time::Duration;
use uuid::Uuid;

/// The assistant's provider and limits.
#[derive(Debug)]
pub struct Assistant {
    /// The provider, when configured.
    pub provider: Option<Provider>,
    /// Per-user limits.
    pub limits: Limits,
    /// The most characters a prompt may have (context is trimmed to fit).
    pub max_prompt_chars: usize,
    /// The longest an answer may take.
    pub answer_timeout: Duration,
    /// How many recent messages of a conversation go into its context.
    pub context_messages: i64,
}

/// What callers are told when no provider is configured.
const NOT_CONFIGURED: &str = "no AI provider is configured: set EPOP_AI_BASE_URL to an \
OpenAI-compatible endpoint (e.g. http://localhost:11434/v1 for Ollama), EPOP_AI_MODEL to \
its model and, if it needs one, EPOP_AI_API_KEY";

impl Assistant {
    fn provider(&self) -> Result<&Provider> {
        self.provider
            .as_ref()
            .ok_or_else(|| Error::FailedPrecondition(NOT_CONFIGURED.into()))
    }
}

/// The error a failed answer gives its caller: generic, with the request id (in every
/// answer's `x-request-id`) to find the detail, which goes to the log.
pub fn answer_error(e: AiError) -> Error {
    tracing::warn!(error = %e.detail(), "the AI provider failed");
    match e {
        AiError::RateLimited => Error::ResourceExhausted(e.to_string()),
        AiError::Timeout => Error::DeadlineExceeded(e.to_string()),
        AiError::Unavailable(_) => Error::Unavailable(e.to_string()),
        AiError::Misconfigured(_) => {
            // The server's own configuration: logged, and never blamed on the caller.
            Error::Internal(anyhow::anyhow!("check EPOP_AI_*: {}", e.detail()))
        }
    }
}

/// The error of an answer past its time.
fn too_long(limit: Duration) -> Error {
    Error::DeadlineExceeded(format!("the answer took longer than {} s", limit.as_secs()))
}

/// Context a caller may add to a private chat.
#[derive(Debug, Clone, Copy)]
pub enum Context {
    /// A conversation's recent messages.
    Conversation(ConversationId),
    /// A project's open tasks.
    Project(ProjectId),
}

/// The context as a system turn, after the same access check as a read (NOT_FOUND
/// otherwise); newest lines first within `budget` characters.
async fn context_turn(
    state: &State,
    caller: &Caller,
    context: Context,
    budget: usize,
) -> Result<Option<Turn>> {
    let (intro, lines) = match context {
        Context::Conversation(id) => {
            let size = PageSize(state.ai.context_messages);
            let (messages, _) =
                crate::service::conversations::messages(state, caller, id, Window::Latest, size)
                    .await?;
            let mut conn = state.pool.get().await?;
            let mut lines = Vec::new();
            for m in messages.iter().rev().filter(|m| m.deleted_at.is_none()) {
                let who =
                    match db::users::get(&mut conn, crate::domain::UserId(m.sender_id)).await? {
                        Some(u) => u.display_name,
                        None => "someone".into(),
                    };
                lines.push(format!("{who}: {}", m.body_text));
            }
            ("Recent messages of the conversation, newest first:", lines)
        }
        Context::Project(id) => {
            let filter = Filter {
                statuses: vec![
                    TaskStatus::Todo,
                    TaskStatus::InProgress,
                    TaskStatus::InReview,
                ],
                ..Default::default()
            };
            let sort = Sort {
                key: SortKey::CreateTime,
                desc: true,
            };
            let page = crate::service::tasks::list(
                state,
                caller,
                id,
                filter,
                sort,
                PageSize(200),
                crate::domain::PageToken(None),
            )
            .await?;
            let lines = page
                .items
                .into_iter()
                .map(|t| {
                    let due = t.due_date.map(|d| format!(", due {d}")).unwrap_or_default();
                    format!("- {} ({:?}{due}): {}", t.title, t.status, t.description)
                })
                .collect();
            ("Open tasks of the project, newest first:", lines)
        }
    };
    let mut text = String::from(intro);
    let mut used = text.chars().count();
    for line in lines {
        let n = line.chars().count() + 1;
        if used + n > budget {
            break;
        }
        used += n;
        text.push('\n');
        text.push_str(&line);
    }
    Ok(Some(Turn {
        role: ChatRole::System,
        content: text,
    }))
}

/// Keeps the newest turns that fit in `budget` characters (the last one always: it is the
/// question, and a question alone over the budget is refused).
fn fit(turns: Vec<Turn>, budget: usize) -> Result<Vec<Turn>> {
    let mut kept = Vec::new();
    let mut used = 0;
    for t in turns.into_iter().rev() {
        let n = t.content.chars().count();
        if used + n > budget {
            if kept.is_empty() {
                return Err(Error::invalid(
                    "messages",
                    format!("the question is longer than the prompt limit of {budget} characters"),
                ));
            }
            break;
        }
        used += n;
        kept.push(t);
    }
    kept.reverse();
    Ok(kept)
}

/// Records an answer's usage (best effort: a failure is logged, the answer stands): a
/// finished one's as the provider counted it, one that did not finish as cut off with its
/// tokens estimated.
async fn record_usage(state: &State, user: Uuid, usage: Usage, counted: Counted) {
    let tokens = |n: i64| u64::try_from(n).unwrap_or(0);
    metrics::counter!("epop_ai_tokens_total", "kind" => "prompt")
        .increment(tokens(usage.prompt_tokens));
    metrics::counter!("epop_ai_tokens_total", "kind" => "completion")
        .increment(tokens(usage.completion_tokens));
    if let Counted::CutOff { .. } = counted {
        metrics::counter!("epop_ai_answers_cut_off_total").increment(1);
        metrics::counter!("epop_ai_tokens_total", "kind" => "completion_estimated")
            .increment(tokens(counted.estimated_tokens()));
    }
    let result = async {
        let mut conn = state.pool.get().await?;
        db::ai::add_usage(&mut conn, user, usage, counted).await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "AI usage not recorded");
    }
}

/// Usage per user and day between two days (admins).
pub async fn usage(
    state: &State,
    _admin: &Admin,
    user: Option<Uuid>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<DailyUsage>> {
    if from > to {
        return Err(Error::invalid("from_day", "must not be after to_day"));
    }
    let mut conn = state.pool.get().await?;
    db::ai::usage(&mut conn, user, from, to, 1000).await
}
