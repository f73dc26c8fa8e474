//! `epop.v1.ConversationService`: conversations, messages, typing and the event stream.

use crate::realtime::session::Item;
use crate::{
    auth::Caller,
    domain::conversations::{ConversationId, ConversationTitle, MessageId},
    domain::{PageSize, PageToken, RichText, SearchText, UserId},
    error::{Error, Result},
    grpc::convert::{self, Mask},
    pb::{self, conversation_service_server::ConversationService},
    service::{self, State, conversations::NewConversation},
};
use prost_types::Struct;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

/// The ConversationService adapter.
#[derive(Debug, Clone)]
pub struct ConversationApi {
    state: State,
}

impl ConversationApi {
    /// An adapter over `state`.
    pub fn new(state: State) -> Self {
        Self { state }
    }
}

fn content(field: &str, s: Option<&Struct>) -> Result<RichText> {
    let s = s.ok_or_else(|| Error::invalid(field, "is required"))?;
    RichText::parse(field, convert::struct_to_json(s))
}

/// The most user ids one request may name.
pub const MAX_USER_IDS: usize = 500;
/// The most files one message may carry.
pub const MAX_ATTACHMENTS: usize = 20;

fn users(field: &str, raw: &[String]) -> Result<Vec<UserId>> {
    if raw.len() > MAX_USER_IDS {
        return Err(Error::invalid(
            field,
            format!("may name at most {MAX_USER_IDS} users"),
        ));
    }
    raw.iter().map(|u| UserId::parse(field, u)).collect()
}

mod marks;
mod messages;

#[tonic::async_trait]
impl ConversationService for ConversationApi {
    async fn send_typing(
        &self,
        request: Request<pb::SendTypingRequest>,
    ) -> Result<Response<pb::SendTypingResponse>, Status> {
        let caller = Caller::of(&request)?;
        let id = ConversationId::parse("conversation_id", &request.get_ref().conversation_id)?;
        service::conversations::typing(&self.state, &caller, id).await?;
        Ok(Response::new(pb::SendTypingResponse {}))
    }

    async fn stream_events(
        &self,
        request: Request<pb::StreamEventsRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<pb::Event>>, Status> {
        let caller = Caller::of(&request)?;
        let resume = match request.get_ref().resume_cursor.as_str() {
            "" => None,
            c => Some(c),
        };
        let events = service::conversations::stream(&self.state, &caller, resume).await?;
        let stream = events.map(|item| match item {
            // The grant ended: the client reconnects with a fresh token and its last cursor.
            Item::End { reason } => Err(Status::unauthenticated(reason)),
            // The server is shutting down: the client resumes on another instance.
            Item::Unavailable { reason } => Err(Status::unavailable(reason)),
            item => Ok(convert::event(item)),
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn open_events_session(
        &self,
        request: Request<pb::OpenEventsSessionRequest>,
    ) -> Result<Response<pb::OpenEventsSessionResponse>, Status> {
        let caller = Caller::of(&request)?;
        // The cookie carries the very token the caller authenticated with.
        let token = crate::auth::layer::bearer_in(request.metadata().as_ref(), false)
            .ok_or_else(|| Status::unauthenticated("missing bearer token"))?;
        let left = (caller.expires_at - chrono::Utc::now())
            .to_std()
            .unwrap_or_default();
        let mut response = Response::new(pb::OpenEventsSessionResponse {
            expire_time: Some(convert::timestamp(caller.expires_at)),
        });
        let cookie = crate::auth::cookie::set_events(&token, left);
        let value = tonic::metadata::MetadataValue::try_from(cookie)
            .map_err(|_| Status::internal("cookie value"))?;
        response.metadata_mut().insert("set-cookie", value);
        Ok(response)
    }

    async fn list_conversations(
        &self,
        request: Request<pb::ListConversationsRequest>,
    ) -> Result<Response<pb::ListConversationsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let size = PageSize::parse(r.page_size, 50, 200)?;
        let page = service::conversations::list(
            &self.state,
            &caller,
            size,
            PageToken::parse(&r.page_token)?,
        )
        .await?;
        Ok(Response::new(pb::ListConversationsResponse {
            conversations: page.items.into_iter().map(convert::conversation).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn create_conversation(
        &self,
        request: Request<pb::CreateConversationRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let members = users("member_ids", &r.member_ids)?;
        let new = match pb::ConversationKind::try_from(r.kind) {
            Ok(pb::ConversationKind::Direct) => match members.as_slice() {
                [other] => NewConversation::Direct(*other),
                _ => {
                    return Err(Error::invalid(
                        "member_ids",
                        "a direct conversation has exactly one other member",
                    )
                    .into());
                }
            },
            Ok(pb::ConversationKind::Group) => NewConversation::Group {
                title: ConversationTitle::parse("title", &r.title)?,
                members,
            },
            _ => {
                return Err(Error::invalid(
                    "kind",
                    "must be CONVERSATION_KIND_DIRECT or CONVERSATION_KIND_GROUP",
                )
                .into());
            }
        };
        Ok(Response::new(convert::conversation(
            service::conversations::create(&self.state, &caller, new).await?,
        )))
    }

    async fn get_conversation(
        &self,
        request: Request<pb::GetConversationRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let caller = Caller::of(&request)?;
        let id = ConversationId::parse("id", &request.get_ref().id)?;
        Ok(Response::new(convert::conversation(
            service::conversations::get(&self.state, &caller, id).await?,
        )))
    }

    async fn update_conversation(
        &self,
        request: Request<pb::UpdateConversationRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let id = ConversationId::parse("id", &r.id)?;
        let mask = Mask::parse(r.update_mask.as_ref(), &["title"])?;
        if !mask.wants("title", r.title.is_some()) {
            return Err(Error::invalid("update_mask", "names nothing to change").into());
        }
        let t = ConversationTitle::parse("title", r.title.as_deref().unwrap_or_default())?;
        Ok(Response::new(convert::conversation(
            service::conversations::rename(&self.state, &caller, id, t).await?,
        )))
    }

    async fn add_conversation_members(
        &self,
        request: Request<pb::AddConversationMembersRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let id = ConversationId::parse("conversation_id", &r.conversation_id)?;
        let u = users("user_ids", &r.user_ids)?;
        Ok(Response::new(convert::conversation(
            service::conversations::add_members(&self.state, &caller, id, u).await?,
        )))
    }

    async fn remove_conversation_member(
        &self,
        request: Request<pb::RemoveConversationMemberRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let id = ConversationId::parse("conversation_id", &r.conversation_id)?;
        let user = UserId::parse("user_id", &r.user_id)?;
        let after = service::conversations::remove_member(&self.state, &caller, id, user).await?;
        // Removing oneself (leaving) answers the id only: the caller sees the group no more.
        Ok(Response::new(
            after
                .map(convert::conversation)
                .unwrap_or_else(|| pb::Conversation {
                    id: id.to_string(),
                    ..Default::default()
                }),
        ))
    }

    async fn leave_conversation(
        &self,
        request: Request<pb::LeaveConversationRequest>,
    ) -> Result<Response<pb::LeaveConversationResponse>, Status> {
        let caller = Caller::of(&request)?;
        let id = ConversationId::parse("conversation_id", &request.get_ref().conversation_id)?;
        service::conversations::remove_member(&self.state, &caller, id, caller.user_id).await?;
        Ok(Response::new(pb::LeaveConversationResponse {}))
    }

    async fn list_messages(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        self.list_messages_of(request).await
    }

    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::Message>, Status> {
        self.send_message_of(request).await
    }

    async fn update_message(
        &self,
        request: Request<pb::UpdateMessageRequest>,
    ) -> Result<Response<pb::Message>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let id = ConversationId::parse("conversation_id", &r.conversation_id)?;
        let msg = MessageId::parse("message_id", &r.message_id)?;
        let body = content("content", r.content.as_ref())?;
        let m = service::conversations::edit(&self.state, &caller, id, msg, body).await?;
        Ok(Response::new(
            self.reply_messages(&caller, vec![m]).await?.remove(0),
        ))
    }

    async fn delete_message(
        &self,
        request: Request<pb::DeleteMessageRequest>,
    ) -> Result<Response<pb::Message>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let id = ConversationId::parse("conversation_id", &r.conversation_id)?;
        let msg = MessageId::parse("message_id", &r.message_id)?;
        let m = service::conversations::delete(&self.state, &caller, id, msg).await?;
        Ok(Response::new(
            self.reply_messages(&caller, vec![m]).await?.remove(0),
        ))
    }

    async fn mark_read(
        &self,
        request: Request<pb::MarkReadRequest>,
    ) -> Result<Response<pb::MarkReadResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let id = ConversationId::parse("conversation_id", &r.conversation_id)?;
        let unread_count =
            service::conversations::mark_read(&self.state, &caller, id, r.seq).await?;
        Ok(Response::new(pb::MarkReadResponse { unread_count }))
    }

    async fn search_messages(
        &self,
        request: Request<pb::SearchMessagesRequest>,
    ) -> Result<Response<pb::SearchMessagesResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let query = SearchText::parse("query", &r.query)?
            .ok_or_else(|| Error::invalid("query", "is required"))?;
        let conversation = match r.conversation_id.as_str() {
            "" => None,
            c => Some(ConversationId::parse("conversation_id", c)?),
        };
        let size = PageSize::parse(r.page_size, 20, 100)?;
        let page = service::conversations::search(
            &self.state,
            &caller,
            query.as_str(),
            conversation,
            size,
            PageToken::parse(&r.page_token)?,
        )
        .await?;
        Ok(Response::new(pb::SearchMessagesResponse {
            messages: self.reply_messages(&caller, page.items).await?,
            next_page_token: page.next_page_token,
        }))
    }

    async fn add_reaction(
        &self,
        request: Request<pb::AddReactionRequest>,
    ) -> Result<Response<pb::Message>, Status> {
        let r = request.get_ref();
        let target = marks::Target::parse(&r.conversation_id, &r.message_id, &r.emoji)?;
        self.react(request, target, true).await
    }

    async fn remove_reaction(
        &self,
        request: Request<pb::RemoveReactionRequest>,
    ) -> Result<Response<pb::Message>, Status> {
        let r = request.get_ref();
        let target = marks::Target::parse(&r.conversation_id, &r.message_id, &r.emoji)?;
        self.react(request, target, false).await
    }

    async fn list_reactions(
        &self,
        request: Request<pb::ListReactionsRequest>,
    ) -> Result<Response<pb::ListReactionsResponse>, Status> {
        self.list_reactions_of(request).await
    }

    async fn pin_message(
        &self,
        request: Request<pb::PinMessageRequest>,
    ) -> Result<Response<pb::Message>, Status> {
        let r = request.get_ref();
        let (id, msg) = marks::ids(&r.conversation_id, &r.message_id)?;
        self.pin(request, id, msg, true).await
    }

    async fn unpin_message(
        &self,
        request: Request<pb::UnpinMessageRequest>,
    ) -> Result<Response<pb::Message>, Status> {
        let r = request.get_ref();
        let (id, msg) = marks::ids(&r.conversation_id, &r.message_id)?;
        self.pin(request, id, msg, false).await
    }

    async fn list_pins(
        &self,
        request: Request<pb::ListPinsRequest>,
    ) -> Result<Response<pb::ListPinsResponse>, Status> {
        self.list_pins_of(request).await
    }

    async fn save_message(
        &self,
        request: Request<pb::SaveMessageRequest>,
    ) -> Result<Response<pb::SavedMessage>, Status> {
        self.save(request).await
    }

    async fn unsave_message(
        &self,
        request: Request<pb::UnsaveMessageRequest>,
    ) -> Result<Response<pb::UnsaveMessageResponse>, Status> {
        self.unsave(request).await
    }

    async fn list_saved_messages(
        &self,
        request: Request<pb::ListSavedMessagesRequest>,
    ) -> Result<Response<pb::ListSavedMessagesResponse>, Status> {
        self.list_saved(request).await
    }

    async fn list_message_versions(
        &self,
        request: Request<pb::ListMessageVersionsRequest>,
    ) -> Result<Response<pb::ListMessageVersionsResponse>, Status> {
        self.list_versions(request).await
    }

    async fn list_thread_replies(
        &self,
        request: Request<pb::ListThreadRepliesRequest>,
    ) -> Result<Response<pb::ListThreadRepliesResponse>, Status> {
        self.list_replies(request).await
    }

    async fn follow_thread(
        &self,
        request: Request<pb::FollowThreadRequest>,
    ) -> Result<Response<pb::FollowThreadResponse>, Status> {
        let r = request.get_ref();
        let ids = messages::root_ids(&r.conversation_id, &r.root_id)?;
        self.follow(request, ids, true).await
    }

    async fn unfollow_thread(
        &self,
        request: Request<pb::UnfollowThreadRequest>,
    ) -> Result<Response<pb::FollowThreadResponse>, Status> {
        let r = request.get_ref();
        let ids = messages::root_ids(&r.conversation_id, &r.root_id)?;
        self.follow(request, ids, false).await
    }

    async fn mark_thread_read(
        &self,
        request: Request<pb::MarkThreadReadRequest>,
    ) -> Result<Response<pb::MarkReadResponse>, Status> {
        self.mark_thread_read_of(request).await
    }

    async fn list_threads(
        &self,
        request: Request<pb::ListThreadsRequest>,
    ) -> Result<Response<pb::ListThreadsResponse>, Status> {
        self.list_threads_of(request).await
    }

    async fn list_mentions(
        &self,
        request: Request<pb::ListMentionsRequest>,
    ) -> Result<Response<pb::ListMentionsResponse>, Status> {
        self.list_mentions_of(request).await
    }

    async fn get_unread_counts(
        &self,
        request: Request<pb::GetUnreadCountsRequest>,
    ) -> Result<Response<pb::GetUnreadCountsResponse>, Status> {
        self.unread_counts(request).await
    }
}
