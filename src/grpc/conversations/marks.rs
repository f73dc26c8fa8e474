//! The ConversationService calls on what members add to messages: reactions, pins, saved
//! messages and earlier versions; and how messages are answered with them.

use super::ConversationApi;
use crate::{
    auth::Caller,
    domain::conversations::{ConversationId, Message, MessageId},
    domain::reactions::Emoji,
    domain::{PageSize, PageToken},
    error::Result,
    grpc::convert,
    pb,
    service::{self},
};
use tonic::{Request, Response, Status};

/// The message and emoji a reaction call names.
pub struct Target {
    id: ConversationId,
    message: MessageId,
    emoji: Emoji,
}

impl Target {
    /// Checks the request's fields.
    pub fn parse(conversation_id: &str, message_id: &str, emoji: &str) -> Result<Self> {
        let (id, message) = ids(conversation_id, message_id)?;
        Ok(Self {
            id,
            message,
            emoji: Emoji::parse("emoji", emoji)?,
        })
    }
}

/// The conversation and message a call names.
pub fn ids(conversation_id: &str, message_id: &str) -> Result<(ConversationId, MessageId)> {
    Ok((
        ConversationId::parse("conversation_id", conversation_id)?,
        MessageId::parse("message_id", message_id)?,
    ))
}

impl ConversationApi {
    /// The wire form of messages as `caller` sees them: with their files, reactions and pins.
    pub(super) async fn reply_messages(
        &self,
        caller: &Caller,
        rows: Vec<Message>,
    ) -> Result<Vec<pb::Message>> {
        let mut attachments = service::conversations::attachments(&self.state, &rows).await?;
        let mut marks = service::conversations::marks(&self.state, caller, &rows).await?;
        Ok(rows
            .into_iter()
            .map(|m| {
                let a = attachments.remove(&m.id).unwrap_or_default();
                let k = marks.remove(&m.id).unwrap_or_default();
                convert::marked(convert::message(m, a), k)
            })
            .collect())
    }

    async fn one(&self, caller: &Caller, m: Message) -> Result<Response<pb::Message>, Status> {
        Ok(Response::new(
            self.reply_messages(caller, vec![m]).await?.remove(0),
        ))
    }

    pub(super) async fn react<T>(
        &self,
        request: Request<T>,
        t: Target,
        add: bool,
    ) -> Result<Response<pb::Message>, Status> {
        let caller = Caller::of(&request)?;
        let m = service::conversations::react(&self.state, &caller, t.id, t.message, t.emoji, add)
            .await?;
        self.one(&caller, m).await
    }

    pub(super) async fn list_reactions_of(
        &self,
        request: Request<pb::ListReactionsRequest>,
    ) -> Result<Response<pb::ListReactionsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let (id, message) = ids(&r.conversation_id, &r.message_id)?;
        let emoji = match r.emoji.as_str() {
            "" => None,
            e => Some(Emoji::parse("emoji", e)?),
        };
        let size = PageSize::parse(r.page_size, 50, 200)?;
        let token = PageToken::parse(&r.page_token)?;
        let page = service::conversations::reactions(
            &self.state,
            &caller,
            id,
            message,
            emoji,
            size,
            token,
        )
        .await?;
        Ok(Response::new(pb::ListReactionsResponse {
            reactions: page.items.into_iter().map(convert::reaction).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    pub(super) async fn pin<T>(
        &self,
        request: Request<T>,
        id: ConversationId,
        message: MessageId,
        pinned: bool,
    ) -> Result<Response<pb::Message>, Status> {
        let caller = Caller::of(&request)?;
        let m = service::conversations::pin(&self.state, &caller, id, message, pinned).await?;
        self.one(&caller, m).await
    }

    pub(super) async fn list_pins_of(
        &self,
        request: Request<pb::ListPinsRequest>,
    ) -> Result<Response<pb::ListPinsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let id = ConversationId::parse("conversation_id", &request.get_ref().conversation_id)?;
        let pins = service::conversations::pins(&self.state, &caller, id).await?;
        let (meta, messages): (Vec<_>, Vec<_>) = pins
            .into_iter()
            .map(|p| ((p.pinned_by, p.created_at), p.message))
            .unzip();
        let messages = self.reply_messages(&caller, messages).await?;
        Ok(Response::new(pb::ListPinsResponse {
            pins: messages
                .into_iter()
                .zip(meta)
                .map(|(m, (by, at))| pb::Pin {
                    message: Some(m),
                    pinned_by: by.to_string(),
                    pin_time: Some(convert::timestamp(at)),
                })
                .collect(),
        }))
    }

    pub(super) async fn save(
        &self,
        request: Request<pb::SaveMessageRequest>,
    ) -> Result<Response<pb::SavedMessage>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.get_ref();
        let (id, message) = ids(&r.conversation_id, &r.message_id)?;
        let s = service::conversations::save(&self.state, &caller, id, message).await?;
        let m = self
            .reply_messages(&caller, vec![s.message])
            .await?
            .remove(0);
        Ok(Response::new(pb::SavedMessage {
            message: Some(m),
            save_time: Some(convert::timestamp(s.saved_at)),
        }))
    }

    pub(super) async fn unsave(
        &self,
        request: Request<pb::UnsaveMessageRequest>,
    ) -> Result<Response<pb::UnsaveMessageResponse>, Status> {
        let caller = Caller::of(&request)?;
        let message = MessageId::parse("message_id", &request.get_ref().message_id)?;
        service::conversations::unsave(&self.state, &caller, message).await?;
        Ok(Response::new(pb::UnsaveMessageResponse {}))
    }

    pub(super) async fn list_saved(
        &self,
        request: Request<pb::ListSavedMessagesRequest>,
    ) -> Result<Response<pb::ListSavedMessagesResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.get_ref();
        let size = PageSize::parse(r.page_size, 50, 200)?;
        let token = PageToken::parse(&r.page_token)?;
        let page = service::conversations::saved(&self.state, &caller, size, token).await?;
        let (times, messages): (Vec<_>, Vec<_>) = page
            .items
            .into_iter()
            .map(|s| (s.saved_at, s.message))
            .unzip();
        let messages = self.reply_messages(&caller, messages).await?;
        Ok(Response::new(pb::ListSavedMessagesResponse {
            saved: messages
                .into_iter()
                .zip(times)
                .map(|(m, at)| pb::SavedMessage {
                    message: Some(m),
                    save_time: Some(convert::timestamp(at)),
                })
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }

    pub(super) async fn list_versions(
        &self,
        request: Request<pb::ListMessageVersionsRequest>,
    ) -> Result<Response<pb::ListMessageVersionsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.get_ref();
        let (id, message) = ids(&r.conversation_id, &r.message_id)?;
        let versions = service::conversations::versions(&self.state, &caller, id, message).await?;
        Ok(Response::new(pb::ListMessageVersionsResponse {
            versions: versions.into_iter().map(convert::version).collect(),
        }))
    }

    pub(super) async fn list_mentions_of(
        &self,
        request: Request<pb::ListMentionsRequest>,
    ) -> Result<Response<pb::ListMentionsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.get_ref();
        let size = PageSize::parse(r.page_size, 50, 200)?;
        let token = PageToken::parse(&r.page_token)?;
        let (page, unread_count) =
            service::conversations::mentions(&self.state, &caller, size, token).await?;
        Ok(Response::new(pb::ListMentionsResponse {
            messages: self.reply_messages(&caller, page.items).await?,
            unread_count,
            next_page_token: page.next_page_token,
        }))
    }

    pub(super) async fn unread_counts(
        &self,
        request: Request<pb::GetUnreadCountsRequest>,
    ) -> Result<Response<pb::GetUnreadCountsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let badges = service::conversations::badges(&self.state, &caller).await?;
        Ok(Response::new(pb::GetUnreadCountsResponse {
            conversations: badges
                .into_iter()
                .map(|b| pb::UnreadCounts {
                    conversation_id: b.conversation_id.to_string(),
                    unread_messages: b.messages,
                    unread_mentions: b.mentions,
                    unread_threads: b.threads,
                })
                .collect(),
        }))
    }
}
