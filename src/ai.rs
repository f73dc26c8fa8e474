//! The AI provider: any OpenAI-compatible chat-completions endpoint, streamed with
//! `async-openai`. Answers come as pieces (text deltas, then one finish with the usage);
//! failures keep their meaning (rate limited, timed out, unavailable, misconfigured), also
//! mid-stream. Dropping a stream drops the upstream request.

use crate::domain::ai::{ChatRole, Turn, Usage};
use async_openai::{
    Client,
    config::OpenAIConfig,
    error::OpenAIError,
    types::chat::{
        ChatCompletionRequestAssistantMessage, ChatCompletionRequestMessage,
        ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
        ChatCompletionStreamOptions, CreateChatCompletionRequestArgs, FinishReason,
    },
};
use futures::{StreamExt, stream::BoxStream};
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

/// A piece of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Text to append.
    Delta(String),
    /// The answer ended.
    Finish {
        /// Why (`stop`, `length`, ...).
        reason: String,
        /// The tokens counted, when the provider says.
        usage: Option<Usage>,
    },
}

/// Why an answer failed. What callers are told (`Display`) is generic: the detail (an
/// upstream message, a URL with the provider's address or key) is only for the log, through
/// [`AiError::detail`].
#[derive(Debug, thiserror::Error)]
pub enum AiError {
    /// The provider is rate limiting (HTTP 429).
    #[error("the AI provider is rate limiting requests; retry shortly")]
    RateLimited,
    /// The provider took too long.
    #[error("the AI provider did not answer in time")]
    Timeout,
    /// The provider failed or the connection broke (5xx, network).
    #[error("the AI provider is unavailable; retry shortly")]
    Unavailable(String),
    /// The server's own configuration is wrong (401/403 from the provider, unknown model).
    #[error("the AI provider refused the server's request")]
    Misconfigured(String),
}

impl AiError {
    /// What went wrong, for the log (never for callers), with anything that looks like a
    /// secret in a URL's query or user info taken out.
    pub fn detail(&self) -> String {
        match self {
            Self::Unavailable(d) | Self::Misconfigured(d) => redact(d),
            other => other.to_string(),
        }
    }
}

/// `text` with the query strings and user info of the URLs in it replaced by `...`.
fn redact(text: &str) -> String {
    text.split(' ')
        .map(
            |word| match url::Url::parse(word.trim_matches(|c| c == '(' || c == ')')) {
                Ok(mut u) if u.has_host() => {
                    let _ = u.set_username("");
                    let _ = u.set_password(None);
                    if u.query().is_some() {
                        u.set_query(Some("..."));
                    }
                    u.to_string()
                }
                _ => word.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join(" ")
}

impl From<OpenAIError> for AiError {
    fn from(e: OpenAIError) -> Self {
        match e {
            OpenAIError::ApiError(r) => match r.status_code.as_u16() {
                429 => Self::RateLimited,
                408 | 504 => Self::Timeout,
                s if s >= 500 => Self::Unavailable(format!("HTTP {s}")),
                s => Self::Misconfigured(format!("HTTP {s}: {}", r.api_error.message)),
            },
            OpenAIError::Reqwest(e) if e.is_timeout() => Self::Timeout,
            OpenAIError::Reqwest(e) => Self::Unavailable(e.to_string()),
            OpenAIError::StreamError(e) => Self::Unavailable(e.to_string()),
            OpenAIError::JSONDeserialize(e, _) => {
                Self::Unavailable(format!("an unreadable chunk: {e}"))
            }
            other => Self::Misconfigured(other.to_string()),
        }
    }
}

/// A configured provider.
#[derive(Debug, Clone)]
pub struct Provider {
    client: Client<OpenAIConfig>,
    default_model: String,
    models: Vec<String>,
    idle: Duration,
}

impl Provider {
    /// The provider at `base_url` (e.g. `http://localhost:11434/v1`), answering with
    /// `default_model` or one of `models`; a stream with no piece for `idle` times out.
    pub fn new(
        base_url: &str,
        api_key: Option<&SecretString>,
        default_model: &str,
        models: &[String],
        idle: Duration,
    ) -> Self {
        let mut config = OpenAIConfig::new().with_api_base(base_url.trim_end_matches('/'));
        if let Some(key) = api_key {
            config = config.with_api_key(key.expose_secret());
        }
        Self {
            client: Client::with_config(config),
            default_model: default_model.to_owned(),
            models: models.to_vec(),
            idle,
        }
    }

    /// The model to use for `requested` (empty: the default); `None` when not allowed.
    pub fn model(&self, requested: &str) -> Option<String> {
        if requested.is_empty() || requested == self.default_model {
            Some(self.default_model.clone())
        } else {
            self.models.iter().find(|m| *m == requested).cloned()
        }
    }

    /// Streams the answer of `model` to `turns`. The request is made when the stream is
    /// first polled and dropped with it.
    pub fn stream(
        &self,
        model: String,
        turns: Vec<Turn>,
    ) -> BoxStream<'static, Result<Piece, AiError>> {
        let client = self.client.clone();
        let idle = self.idle;
        let messages: Vec<ChatCompletionRequestMessage> = turns
            .into_iter()
            .map(|t| match t.role {
                ChatRole::System => ChatCompletionRequestSystemMessage::from(t.content).into(),
                ChatRole::User => ChatCompletionRequestUserMessage::from(t.content).into(),
                ChatRole::Assistant => {
                    ChatCompletionRequestAssistantMessage::from(t.content.as_str()).into()
                }
            })
            .collect();
        let opened = async move {
            let request = CreateChatCompletionRequestArgs::default()
                .model(model)
                .messages(messages)
                .stream_options(ChatCompletionStreamOptions {
                    include_usage: Some(true),
                    ..Default::default()
                })
                .build()
                .map_err(AiError::from)?;
            let upstream = tokio::time::timeout(idle, client.chat().create_stream(request))
                .await
                .map_err(|_| AiError::Timeout)??;
            Ok::<_, AiError>(pieces(upstream, idle))
        };
        futures::stream::once(opened)
            .flat_map(|r| match r {
                Ok(s) => s,
                Err(e) => futures::stream::once(async { Err(e) }).boxed(),
            })
            .boxed()
    }
}

/// The pieces of an upstream stream: deltas, then one finish (with the usage, which comes
/// in a chunk of its own after the finish reason).
fn pieces(
    upstream: async_openai::types::chat::ChatCompletionResponseStream,
    idle: Duration,
) -> BoxStream<'static, Result<Piece, AiError>> {
    struct State {
        upstream: async_openai::types::chat::ChatCompletionResponseStream,
        reason: Option<String>,
        usage: Option<Usage>,
        done: bool,
    }
    let state = State {
        upstream,
        reason: None,
        usage: None,
        done: false,
    };
    futures::stream::unfold(state, move |mut s| async move {
        loop {
            if s.done {
                return None;
            }
            let next = match tokio::time::timeout(idle, s.upstream.next()).await {
                Err(_) => {
                    s.done = true;
                    return Some((Err(AiError::Timeout), s));
                }
                Ok(next) => next,
            };
            match next {
                None => {
                    s.done = true;
                    let Some(reason) = s.reason.take() else {
                        let cut = AiError::Unavailable("the answer broke off".into());
                        return Some((Err(cut), s));
                    };
                    let usage = s.usage;
                    return Some((Ok(Piece::Finish { reason, usage }), s));
                }
                Some(Err(e)) => {
                    s.done = true;
                    return Some((Err(e.into()), s));
                }
                Some(Ok(chunk)) => {
                    if let Some(u) = chunk.usage {
                        s.usage = Some(Usage {
                            prompt_tokens: u.prompt_tokens.into(),
                            completion_tokens: u.completion_tokens.into(),
                        });
                    }
                    let mut text = String::new();
                    for c in chunk.choices {
                        if let Some(t) = c.delta.content {
                            // NUL cannot be stored (nor is it text): taken out, as from
                            // anything a user sends.
                            text.extend(t.chars().filter(|c| *c != '\0'));
                        }
                        if let Some(r) = c.finish_reason {
                            s.reason = Some(reason_name(r).into());
                        }
                    }
                    if !text.is_empty() {
                        return Some((Ok(Piece::Delta(text)), s));
                    }
                }
            }
        }
    })
    .boxed()
}

fn reason_name(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::FunctionCall => "function_call",
    }
}
