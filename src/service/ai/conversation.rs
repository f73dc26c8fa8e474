//! The assistant inside a conversation: the question goes out as the asker's message, the
//! answer streams to every member as ephemeral deltas and is then stored as a message from
//! the assistant's account (so a client that missed the deltas gets it on resume). One
//! answer at a time per conversation, through a claim on the conversation's row that lapses
//! by itself if an instance dies mid-answer.

use super::{Context, answer_error, context_turn, limits::Slot, record_usage};
use crate::{
    ai::{Piece, Provider},
    auth::Caller,
    db,
    domain::{
        RichText,
        ai::{AssistantDelta, ChatRole, Counted, Turn, Usage},
        conversations::ConversationId,
    },
    error::{Error, Result},
    realtime::{Published, Recipients},
    service::State,
};
use chrono::Utc;
use futures::StreamExt;
use uuid::Uuid;

/// How long past the answer time a claim outlives a dead instance.
const CLAIM_SLACK: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

const INSTRUCTIONS: &str = "You are the assistant of a team chat. Answer the last question \
asked in the conversation, briefly and in plain text.";

/// Asks the assistant in a conversation: answers the reply id (for the deltas) and the id
/// of the question's message; the answer is written in the background.
pub async fn ask(
    state: &State,
    caller: &Caller,
    id: ConversationId,
    question: Turn,
) -> Result<(Uuid, Uuid)> {
    let ai = &state.ai;
    let provider = ai.provider()?.clone();
    let model = provider
        .model("")
        .ok_or_else(|| Error::FailedPrecondition("the default model is not configured".into()))?;
    // NOT_FOUND for non-members, before anything else is said.
    crate::service::conversations::get(state, caller, id).await?;
    let content = RichText::from_plain(&question.content)
        .ok_or_else(|| Error::invalid("question", "must hold some text"))?;
    let slot = ai.limits.admit_shared(caller.user_id.0).await?;
    let until = Utc::now() + ai.answer_timeout + CLAIM_SLACK;
    let mut conn = state.pool.get().await?;
    if !db::ai::claim_assistant(&mut conn, id.0, until).await? {
        return Err(Error::FailedPrecondition(
            "the assistant is already answering in this conversation; wait for it".into(),
        ));
    }
    drop(conn);
    let asked =
        crate::service::conversations::send(state, caller, id, content, vec![], None, None).await;
    let question_message = match asked {
        Ok((m, _)) => m,
        Err(e) => {
            release(state, id).await;
            return Err(e);
        }
    };
    let reply_id = Uuid::new_v4();
    let budget = ai.max_prompt_chars.saturating_sub(INSTRUCTIONS.len());
    // The question is the newest message, so the context holds it.
    let prompt = match context_turn(state, caller, Context::Conversation(id), budget).await {
        Ok(context) => {
            let mut p = vec![Turn {
                role: ChatRole::System,
                content: INSTRUCTIONS.into(),
            }];
            p.extend(context);
            p.push(question);
            p
        }
        Err(e) => {
            release(state, id).await;
            return Err(e);
        }
    };
    let recipients = match members(state, id).await {
        Ok(r) => r,
        Err(e) => {
            release(state, id).await;
            return Err(e);
        }
    };
    let answer = Answer {
        recipients: tokio::sync::Mutex::new((recipients, tokio::time::Instant::now())),
        streamed: Default::default(),
        counted: Default::default(),
        state: state.clone(),
        conversation: id,
        asked_by: caller.user_id.0,
        reply_id,
        _slot: slot,
    };
    tokio::spawn(answer.run(provider, model, prompt));
    Ok((reply_id, question_message.id))
}

async fn members(state: &State, id: ConversationId) -> Result<Recipients> {
    let mut conn = state.pool.get().await?;
    Ok(db::events::recipients(&mut conn, id.0).await?.into())
}

/// Gives the conversation's claim back (best effort: it lapses anyway).
async fn release(state: &State, id: ConversationId) {
    let released = async {
        let mut conn = state.pool.get().await?;
        db::ai::release_assistant(&mut conn, id.0).await
    }
    .await;
    if let Err(e) = released {
        tracing::warn!(error = %e, "the assistant's claim was not released; it lapses");
    }
}

/// An answer being written.
struct Answer {
    state: State,
    conversation: ConversationId,
    asked_by: Uuid,
    reply_id: Uuid,
    /// The members, and when they were read: re-read as the answer goes on, so that a
    /// member who left stops receiving it (and one who joined starts).
    recipients: tokio::sync::Mutex<(Recipients, tokio::time::Instant)>,
    /// The characters streamed so far (for the usage of an answer that does not finish).
    streamed: std::sync::atomic::AtomicUsize,
    /// Its usage was recorded (the provider finished).
    counted: std::sync::atomic::AtomicBool,
    _slot: Slot,
}

/// How long the members read for an answer are used before they are read again.
const MEMBERS_FOR: std::time::Duration = std::time::Duration::from_millis(250);

impl Answer {
    fn delta(&self, delta: String, done: bool) -> AssistantDelta {
        AssistantDelta {
            conversation_id: self.conversation.0,
            reply_id: self.reply_id,
            asked_by: self.asked_by,
            delta,
            done,
            message_id: None,
            error: None,
        }
    }

    /// Publishes `delta` to the members of now (read again when older than
    /// [`MEMBERS_FOR`]; if that fails, the last ones read).
    async fn publish(&self, delta: AssistantDelta) {
        let recipients = {
            let mut known = self.recipients.lock().await;
            if known.1.elapsed() >= MEMBERS_FOR {
                match members(&self.state, self.conversation).await {
                    Ok(now) => *known = (now, tokio::time::Instant::now()),
                    Err(e) => tracing::warn!(error = %e, "the members were not read again"),
                }
            }
            known.0.clone()
        };
        self.state
            .broker
            .publish(Published::Assistant { delta, recipients });
    }

    async fn run(self, provider: Provider, model: String, prompt: Vec<Turn>) {
        let outcome = self.write(&provider, model, prompt).await;
        let mut last = self.delta(String::new(), true);
        match outcome {
            Ok(message) => last.message_id = Some(message),
            Err(e) => {
                tracing::warn!(error = %e, "the assistant's answer failed");
                if !self.counted.load(std::sync::atomic::Ordering::Relaxed) {
                    let chars = self.streamed.load(std::sync::atomic::Ordering::Relaxed);
                    let counted = Counted::CutOff { chars };
                    record_usage(&self.state, self.asked_by, Usage::default(), counted).await;
                }
                last.error = Some(match e {
                    Error::Internal(_) => "the assistant is misconfigured".into(),
                    e => e.to_string(),
                });
            }
        }
        self.publish(last).await;
        release(&self.state, self.conversation).await;
    }

    /// Streams the answer to the members and stores it; the stored message's id.
    async fn write(&self, provider: &Provider, model: String, prompt: Vec<Turn>) -> Result<Uuid> {
        let timeout = self.state.ai.answer_timeout;
        let mut upstream = provider.stream(model, prompt);
        let end = tokio::time::Instant::now() + timeout;
        let mut text = String::new();
        let usage = loop {
            let piece = tokio::time::timeout_at(end, upstream.next())
                .await
                .map_err(|_| super::too_long(timeout))?;
            match piece {
                None => return Err(Error::Unavailable("the answer broke off".into())),
                Some(Err(e)) => return Err(answer_error(e)),
                Some(Ok(Piece::Delta(d))) => {
                    text.push_str(&d);
                    self.streamed
                        .fetch_add(d.chars().count(), std::sync::atomic::Ordering::Relaxed);
                    self.publish(self.delta(d, false)).await;
                }
                Some(Ok(Piece::Finish { usage, .. })) => break usage,
            }
        };
        let usage = usage.unwrap_or_default();
        record_usage(&self.state, self.asked_by, usage, Counted::Finished).await;
        self.counted
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let content = RichText::from_plain(&text)
            .ok_or_else(|| Error::Unavailable("the assistant gave an empty answer".into()))?;
        let key = format!("assistant:{}", self.reply_id);
        let m = crate::service::conversations::send_as_assistant(
            &self.state,
            self.conversation,
            &content,
            &key,
        )
        .await?;
        Ok(m.id)
    }
}
