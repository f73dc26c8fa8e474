//! The ConversationService calls that list and send messages, replies to threads included,
//! and the thread calls.

use super::{ConversationApi, MAX_ATTACHMENTS, content};
use crate::{
    auth::Caller,
    domain::conversations::{ConversationId, IdempotencyKey, MessageId, Window},
    domain::threads::Reply,
    domain::{PageSize, PageToken, parse_uuid},
    error::{Error, Result},
    grpc::convert,
    pb, service,
};
use tonic::{Request, Response, Status};

impl ConversationApi {
    pub(super) async fn list_messages_of(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let id = ConversationId::parse("conversation_id", &r.conversation_id)?;
        let size = PageSize::parse(r.page_size, 50, 200)?;
        let window = match (
            PageToken::<i64>::parse(&r.page_token)?.0,
            r.before_seq,
            r.after_seq,
            r.around_seq,
        ) {
            // -t - 1, written so that no forged token overflows.
            (Some(t), ..) if t < 0 => Window::After(!t),
            (Some(t), ..) => Window::Before(t),
            (None, 0, 0, 0) => Window::Latest,
            (None, b, 0, 0) if b > 0 => Window::Before(b),
            (None, 0, a, 0) if a > 0 => Window::After(a),
            (None, 0, 0, x) if x > 0 => Window::Around(x),
            _ => {
                return Err(Error::invalid(
                    "before_seq",
                    "set at most one of before_seq, after_seq, around_seq, each positive",
                )
                .into());
            }
        };
        let (rows, next) =
            service::conversations::messages(&self.state, &caller, id, window, size).await?;
        // The token is the next window: a positive seq pages older, a negative one newer.
        let next_page_token = match next {
            Some(Window::Before(s)) => PageToken::<i64>::encode(&s),
            Some(Window::After(s)) => PageToken::<i64>::encode(&!s),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListMessagesResponse {
            messages: self.reply_messages(&caller, rows).await?,
            next_page_token,
        }))
    }

    pub(super) async fn send_message_of(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::Message>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let id = ConversationId::parse("conversation_id", &r.conversation_id)?;
        let body = content("content", r.content.as_ref())?;
        if r.attachment_ids.len() > MAX_ATTACHMENTS {
            return Err(Error::invalid(
                "attachment_ids",
                format!("may name at most {MAX_ATTACHMENTS} files"),
            )
            .into());
        }
        let attachments = r
            .attachment_ids
            .iter()
            .map(|a| parse_uuid("attachment_ids", a))
            .collect::<Result<Vec<_>>>()?;
        let key = IdempotencyKey::parse("idempotency_key", &r.idempotency_key)?;
        let reply = match r.thread_root_id.as_str() {
            "" if r.also_send_to_conversation => {
                return Err(Error::invalid(
                    "also_send_to_conversation",
                    "is only for replies (with thread_root_id)",
                )
                .into());
            }
            "" => None,
            root => Some(Reply {
                root: parse_uuid("thread_root_id", root)?,
                also_in_conversation: r.also_send_to_conversation,
            }),
        };
        let (m, attachments) =
            service::conversations::send(&self.state, &caller, id, body, attachments, key, reply)
                .await?;
        Ok(Response::new(convert::message(m, attachments)))
    }

    pub(super) async fn list_replies(
        &self,
        request: Request<pb::ListThreadRepliesRequest>,
    ) -> Result<Response<pb::ListThreadRepliesResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.get_ref();
        let (id, root) = root_ids(&r.conversation_id, &r.root_id)?;
        let size = PageSize::parse(r.page_size, 50, 200)?;
        let token = PageToken::parse(&r.page_token)?;
        let page =
            service::conversations::replies(&self.state, &caller, id, root, size, token).await?;
        Ok(Response::new(pb::ListThreadRepliesResponse {
            messages: self.reply_messages(&caller, page.items).await?,
            next_page_token: page.next_page_token,
        }))
    }

    pub(super) async fn follow<T>(
        &self,
        request: Request<T>,
        (id, root): (ConversationId, MessageId),
        follow: bool,
    ) -> Result<Response<pb::FollowThreadResponse>, Status> {
        let caller = Caller::of(&request)?;
        service::conversations::follow(&self.state, &caller, id, root, follow).await?;
        Ok(Response::new(pb::FollowThreadResponse {}))
    }

    pub(super) async fn mark_thread_read_of(
        &self,
        request: Request<pb::MarkThreadReadRequest>,
    ) -> Result<Response<pb::MarkReadResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.get_ref();
        let (id, root) = root_ids(&r.conversation_id, &r.root_id)?;
        let unread_count =
            service::conversations::mark_thread_read(&self.state, &caller, id, root, r.seq).await?;
        Ok(Response::new(pb::MarkReadResponse { unread_count }))
    }

    pub(super) async fn list_threads_of(
        &self,
        request: Request<pb::ListThreadsRequest>,
    ) -> Result<Response<pb::ListThreadsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.get_ref();
        let size = PageSize::parse(r.page_size, 20, 100)?;
        let token = PageToken::parse(&r.page_token)?;
        let page = service::conversations::mine(&self.state, &caller, size, token).await?;
        let roots = page.items.into_iter().map(|f| f.root).collect();
        Ok(Response::new(pb::ListThreadsResponse {
            roots: self.reply_messages(&caller, roots).await?,
            next_page_token: page.next_page_token,
        }))
    }
}

pub(super) fn root_ids(
    conversation_id: &str,
    root_id: &str,
) -> Result<(ConversationId, MessageId)> {
    Ok((
        ConversationId::parse("conversation_id", conversation_id)?,
        MessageId::parse("root_id", root_id)?,
    ))
}
