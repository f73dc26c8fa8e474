//! Wire forms of conversations, messages and the items of an event stream.

use super::timestamp;
use crate::{
    domain::conversations::{Conversation, Event, EventBody, Message},
    domain::files::File,
    domain::reactions::{Marks, Reaction, Version},
    pb,
    realtime::{BoardChange, session::Item},
    service::conversations::Summary,
};
use uuid::Uuid;

pub fn message(m: Message, attachments: Vec<File>) -> pb::Message {
    pb::Message {
        id: m.id.to_string(),
        conversation_id: m.conversation_id.to_string(),
        seq: m.seq,
        sender_id: m.sender_id.to_string(),
        content: m
            .deleted_at
            .is_none()
            .then(|| super::json_to_struct(&m.content)),
        text: m.body_text,
        attachment_ids: attachments.iter().map(|f| f.id.to_string()).collect(),
        attachments: attachments
            .into_iter()
            .map(super::files::file_info)
            .collect(),
        deleted: m.deleted_at.is_some(),
        from_assistant: m.sender_id == crate::domain::ai::ASSISTANT_ID,
        create_time: Some(timestamp(m.created_at)),
        edit_time: m.edited_at.map(timestamp),
        reactions: vec![],
        pinned: false,
        thread_root_id: m.thread_root_id.map(|r| r.to_string()).unwrap_or_default(),
        in_conversation: m.in_conversation,
        thread: None,
    }
}

/// A message with what its viewer sees added to it.
pub fn marked(mut m: pb::Message, marks: Marks) -> pb::Message {
    m.reactions = marks
        .reactions
        .into_iter()
        .map(|r| pb::ReactionCount {
            emoji: r.emoji,
            count: r.count,
            reacted: r.reacted,
        })
        .collect();
    m.pinned = marks.pinned;
    m.thread = marks.thread.map(|t| pb::ThreadSummary {
        reply_count: t.reply_count,
        last_reply_time: t.last_reply_at.map(timestamp),
        participant_ids: t.participants.iter().map(Uuid::to_string).collect(),
        following: t.following,
        unread_count: t.unread,
    });
    m
}

/// One member's reaction.
pub fn reaction(r: Reaction) -> pb::Reaction {
    pb::Reaction {
        emoji: r.emoji,
        user_id: r.user_id.to_string(),
        create_time: Some(timestamp(r.created_at)),
    }
}

/// An earlier version of a message.
pub fn version(v: Version) -> pb::MessageVersion {
    pb::MessageVersion {
        version: v.version,
        content: Some(super::json_to_struct(&v.content)),
        text: v.body_text,
        author_id: v.author_id.to_string(),
        write_time: Some(timestamp(v.written_at)),
    }
}

pub fn conversation(s: Summary) -> pb::Conversation {
    let c: Conversation = s.conversation;
    pb::Conversation {
        id: c.id.to_string(),
        kind: if c.is_group {
            pb::ConversationKind::Group
        } else {
            pb::ConversationKind::Direct
        }
        .into(),
        title: c.title.unwrap_or_default(),
        member_ids: c.member_ids.iter().map(|u| u.0.to_string()).collect(),
        last_message: s.last_message.map(|(m, a)| message(m, a)),
        unread_count: c.unread_count,
        last_read_seq: c.last_read_seq,
        create_time: Some(timestamp(c.created_at)),
        last_activity_time: Some(timestamp(c.last_activity_at)),
    }
}

/// The wire form of a stream item.
pub fn event(item: Item) -> pb::Event {
    use pb::event::Kind as K;
    let (cursor, kind) = match item {
        Item::Event { event, cursor, .. } => (cursor, durable(*event)),
        Item::Typing {
            conversation_id,
            user_id,
            expires_at,
        } => (
            String::new(),
            K::Typing(pb::Typing {
                conversation_id: conversation_id.to_string(),
                user_id: user_id.to_string(),
                expire_time: Some(timestamp(expires_at)),
            }),
        ),
        Item::Presence { user_id, online } => (
            String::new(),
            K::Presence(pb::Presence {
                user_id: user_id.to_string(),
                online,
            }),
        ),
        Item::PresenceSnapshot(online) => (
            String::new(),
            K::PresenceSnapshot(pb::PresenceSnapshot {
                online_user_ids: online.iter().map(Uuid::to_string).collect(),
            }),
        ),
        Item::Board(change) => (String::new(), board(change)),
        Item::Inbox(c) => (String::new(), super::notifications::change(c)),
        Item::Assistant(d) => (
            String::new(),
            K::AssistantDelta(pb::AssistantDelta {
                conversation_id: d.conversation_id.to_string(),
                reply_id: d.reply_id.to_string(),
                asked_by: d.asked_by.to_string(),
                delta: d.delta,
                done: d.done,
                message_id: d.message_id.map(|m| m.to_string()).unwrap_or_default(),
                error: d.error.unwrap_or_default(),
            }),
        ),
        // `End` and `Unavailable` are answered as error statuses by the stream itself; never
        // reach here.
        Item::Resync {
            reason,
            cursor,
            retry_after,
        } => (
            String::new(),
            K::Resync(pb::Resync {
                reason,
                cursor,
                retry_after: prost_types::Duration::try_from(retry_after).ok(),
            }),
        ),
        Item::End { reason } | Item::Unavailable { reason } => (
            String::new(),
            K::Resync(pb::Resync {
                reason,
                ..Default::default()
            }),
        ),
        Item::Heartbeat => (
            String::new(),
            K::Heartbeat(pb::Heartbeat {
                time: Some(timestamp(chrono::Utc::now())),
            }),
        ),
    };
    pb::Event {
        cursor,
        kind: Some(kind),
    }
}

/// The wire form of a durable event of a conversation's log.
fn durable(event: Event) -> pb::event::Kind {
    use pb::event::Kind as K;
    let conversation_id = event.conversation_id.to_string();
    match event.body {
        EventBody::MessageCreated {
            message: m,
            attachments,
        } => K::MessageCreated(message(m, attachments)),
        EventBody::MessageUpdated {
            message: m,
            attachments,
        } => K::MessageUpdated(message(m, attachments)),
        EventBody::MessageDeleted { message: m } => K::MessageDeleted(message(m, vec![])),
        EventBody::Membership { added, removed } => K::MembershipChanged(pb::MembershipChanged {
            conversation: Some(pb::Conversation {
                id: conversation_id,
                ..Default::default()
            }),
            added_user_ids: added.iter().map(Uuid::to_string).collect(),
            removed_user_ids: removed.iter().map(Uuid::to_string).collect(),
        }),
        EventBody::ReadReceipt { user_id, seq } => K::ReadReceipt(pb::ReadReceipt {
            conversation_id,
            user_id: user_id.to_string(),
            seq,
        }),
        EventBody::Reaction {
            message_id,
            emoji,
            user_id,
            added,
            count,
        } => K::ReactionChanged(pb::ReactionChanged {
            conversation_id,
            message_id: message_id.to_string(),
            emoji,
            user_id: user_id.to_string(),
            added,
            count,
        }),
        EventBody::Pin {
            message_id,
            user_id,
            pinned,
        } => K::PinChanged(pb::PinChanged {
            conversation_id,
            message_id: message_id.to_string(),
            pinned,
            user_id: user_id.to_string(),
        }),
        EventBody::Mentioned {
            message_id,
            user_ids,
        } => K::Mentioned(pb::Mentioned {
            conversation_id,
            message_id: message_id.to_string(),
            user_ids: user_ids.iter().map(Uuid::to_string).collect(),
        }),
        // Sessions never send these (they skip them); a heartbeat if one ever got here.
        EventBody::Redacted => K::Heartbeat(pb::Heartbeat {
            time: Some(timestamp(chrono::Utc::now())),
        }),
    }
}

/// The wire form of a change to a project's board.
fn board(change: BoardChange) -> pb::event::Kind {
    use pb::event::Kind as K;
    match change {
        BoardChange::Task(t) => K::TaskChanged(super::task(*t)),
        BoardChange::TaskDeleted {
            project_id,
            task_id,
        } => K::TaskDeleted(pb::TaskDeleted {
            project_id: project_id.to_string(),
            task_id: task_id.to_string(),
        }),
        BoardChange::Project(p) => K::ProjectChanged(super::project(*p)),
        BoardChange::ProjectDeleted { project_id } => K::ProjectDeleted(pb::ProjectDeleted {
            project_id: project_id.to_string(),
        }),
    }
}
