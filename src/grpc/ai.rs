//! `epop.v1.AiService`: streamed answers, saved chats, and the assistant in conversations.

use crate::{
    auth::Caller,
    domain::{
        PageSize, PageToken,
        ai::{MAX_TURNS, Turn},
        conversations::ConversationId,
        parse_uuid,
        projects::ProjectId,
    },
    error::{Error, Result},
    grpc::convert::ai as convert,
    pb::{self, ai_service_server::AiService, chat_request::Context as PbContext},
    service::{
        self, State,
        ai::{ChatInput, Context},
    },
};
use futures::StreamExt;
use tonic::{Request, Response, Status};

/// The AiService adapter.
#[derive(Debug, Clone)]
pub struct AiApi {
    state: State,
}

impl AiApi {
    /// An adapter over `state`.
    pub fn new(state: State) -> Self {
        Self { state }
    }
}

fn chat_input(r: pb::ChatRequest) -> Result<ChatInput> {
    if r.messages.is_empty() || r.messages.len() > MAX_TURNS {
        return Err(Error::invalid(
            "messages",
            format!("must hold 1 to {MAX_TURNS} messages"),
        ));
    }
    let turns = r
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let role = convert::role_from_pb(&format!("messages[{i}].role"), m.role)?;
            Turn::parse(&format!("messages[{i}].content"), role, &m.content)
        })
        .collect::<Result<Vec<_>>>()?;
    let chat_id = match r.chat_id.as_str() {
        "" => None,
        raw => Some(parse_uuid("chat_id", raw)?),
    };
    let context = match &r.context {
        None => None,
        Some(PbContext::ConversationId(c)) => Some(Context::Conversation(ConversationId::parse(
            "conversation_id",
            c,
        )?)),
        Some(PbContext::ProjectId(p)) => Some(Context::Project(ProjectId::parse("project_id", p)?)),
    };
    Ok(ChatInput {
        turns,
        model: r.model,
        chat_id,
        start_if_missing: r.start_if_missing,
        context,
    })
}

#[tonic::async_trait]
impl AiService for AiApi {
    async fn chat(
        &self,
        request: Request<pb::ChatRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<pb::ChatChunk>>, Status> {
        let caller = Caller::of(&request)?;
        let input = chat_input(request.into_inner())?;
        let answer = service::ai::chat(&self.state, &caller, input).await?;
        let chunks = answer.map(|r| r.map(convert::chunk).map_err(Status::from));
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn list_chats(
        &self,
        request: Request<pb::ListChatsRequest>,
    ) -> Result<Response<pb::ListChatsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let size = PageSize::parse(r.page_size, 20, 100)?;
        let token = PageToken::parse(&r.page_token)?;
        let page = service::ai::list_chats(&self.state, &caller, size, token).await?;
        Ok(Response::new(pb::ListChatsResponse {
            chats: page.items.into_iter().map(convert::chat).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_chat(
        &self,
        request: Request<pb::GetChatRequest>,
    ) -> Result<Response<pb::AiChat>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let id = parse_uuid("id", &r.id)?;
        let size = PageSize::parse(r.page_size, 100, 500)?;
        let token = PageToken::parse(&r.page_token)?;
        let (chat, next) = service::ai::get_chat(&self.state, &caller, id, size, token).await?;
        Ok(Response::new(pb::AiChat {
            next_page_token: next,
            ..convert::chat(chat)
        }))
    }

    async fn ask_assistant(
        &self,
        request: Request<pb::AskAssistantRequest>,
    ) -> Result<Response<pb::AskAssistantResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let id = ConversationId::parse("conversation_id", &r.conversation_id)?;
        let question = Turn::question("question", &r.question)?;
        let (reply, message) = service::ai::ask(&self.state, &caller, id, question).await?;
        Ok(Response::new(pb::AskAssistantResponse {
            reply_id: reply.to_string(),
            question_message_id: message.to_string(),
        }))
    }
}
