//! Threads (issue 36): replies to a root, the conversation view's summaries, the thread view,
//! following (by replying, being mentioned, or choosing to), per-thread unread counts that do
//! not inflate the conversation's, "my threads", live on the stream across two instances with
//! their root id, and invisible to outsiders.

use crate::{
    events::{client, group, next, open, redis_url, send},
    helpers::*,
};
use epop::pb::{self, event::Kind};
use serde_json::json;
use std::time::Duration;
use tonic::Code;

fn reply(c: &str, root: &str, t: &str, shown: bool) -> pb::SendMessageRequest {
    pb::SendMessageRequest {
        thread_root_id: root.into(),
        also_send_to_conversation: shown,
        ..send(c, t)
    }
}

fn mentioning(c: &str, root: &str, who: &str) -> pb::SendMessageRequest {
    let doc = json!({"type":"doc","content":[{"type":"paragraph","content":[
        {"type":"text","text":"look "},
        {"type":"mention","attrs":{"id": who, "label": "you"}}]}]});
    pb::SendMessageRequest {
        content: Some(epop::grpc::convert::json_to_struct(&doc)),
        ..reply(c, root, "x", false)
    }
}

fn root_ids(c: &str, root: &str) -> (String, String) {
    (c.to_owned(), root.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn replies_form_threads_with_their_own_unread_counts_live_across_instances() {
    let (a, b) = two_instances(&redis_url()).await;
    let (_, ann) = user(&a, "ann").await;
    let (bob_id, bob) = user(&a, "bob").await;
    let (carl_id, carl) = user(&a, "carl").await;
    let (dave_id, dave) = user(&a, "dave").await;
    let (_, eve) = user(&a, "eve").await;
    let g = group(&a, &ann, &[&bob_id, &carl_id, &dave_id]).await;
    let mut carl_stream = open(&b, &carl, "").await;
    let mut eve_stream = open(&b, &eve, "").await;
    let mut ca = client(&a).await;
    let mut cb = client(&b).await;
    let (reader_a, reader_b) = (ca.clone(), cb.clone());
    let root = ca
        .send_message(authed(send(&g, "root"), &ann))
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(
        next(&mut carl_stream).await.kind,
        Some(Kind::MessageCreated(_))
    ));

    // Bob replies in the thread only, on the other instance: it travels with its root id.
    let r1 = cb
        .send_message(authed(reply(&g, &root.id, "one", false), &bob))
        .await
        .unwrap();
    let r1 = r1.into_inner();
    assert_eq!(
        (r1.thread_root_id.as_str(), r1.in_conversation),
        (root.id.as_str(), false)
    );
    match next(&mut carl_stream).await.kind {
        Some(Kind::MessageCreated(m)) => {
            assert_eq!(
                (m.thread_root_id.as_str(), m.in_conversation),
                (root.id.as_str(), false)
            )
        }
        other => panic!("expected the reply, got {other:?}"),
    }

    // The conversation view: the root with its thread; the reply is not in it, nor in Carl's
    // unread count (he does not follow the thread).
    let listed = |token: &str| {
        let (mut c, g, token) = (reader_a.clone(), g.clone(), token.to_owned());
        async move {
            c.list_messages(authed(
                pb::ListMessagesRequest {
                    conversation_id: g,
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner()
            .messages
        }
    };
    let anns = listed(&ann).await;
    assert_eq!(anns.len(), 1);
    let t = anns[0].thread.clone().expect("the root carries its thread");
    assert_eq!((t.reply_count, t.following, t.unread_count), (1, true, 1));
    assert_eq!(t.participant_ids, std::slice::from_ref(&bob_id));
    let unread_of = |token: &str| {
        let (mut c, g, token) = (reader_a.clone(), g.clone(), token.to_owned());
        async move {
            c.get_conversation(authed(pb::GetConversationRequest { id: g }, &token))
                .await
                .unwrap()
                .into_inner()
                .unread_count
        }
    };
    assert_eq!(
        unread_of(&carl).await,
        1,
        "the root only, not the thread's reply"
    );

    // Carl replies to the conversation too: it is listed, counts as unread there, he follows.
    let r2 = ca
        .send_message(authed(reply(&g, &root.id, "two", true), &carl))
        .await
        .unwrap();
    let r2 = r2.into_inner();
    assert!(r2.in_conversation);
    assert_eq!(listed(&ann).await.len(), 2);
    assert_eq!(unread_of(&dave).await, 2);

    // The thread view, paged, oldest first.
    let page = |token: String| {
        let (mut c, g, root) = (reader_b.clone(), g.clone(), root.id.clone());
        let ann = ann.clone();
        async move {
            c.list_thread_replies(authed(
                pb::ListThreadRepliesRequest {
                    conversation_id: g,
                    root_id: root,
                    page_size: 1,
                    page_token: token,
                },
                &ann,
            ))
            .await
            .unwrap()
            .into_inner()
        }
    };
    let p1 = page(String::new()).await;
    let p2 = page(p1.next_page_token.clone()).await;
    assert_eq!(p1.messages[0].text, "one");
    assert_eq!(p2.messages[0].text, "two");

    // My threads: Ann (the root's sender) has two unread replies, Carl none (he replied
    // last), Dave follows nothing yet.
    let mine = |token: &str| {
        let (mut c, token) = (reader_b.clone(), token.to_owned());
        async move {
            c.list_threads(authed(pb::ListThreadsRequest::default(), &token))
                .await
                .unwrap()
                .into_inner()
                .roots
        }
    };
    let anns = mine(&ann).await;
    assert_eq!(anns.len(), 1);
    assert_eq!(anns[0].thread.as_ref().unwrap().unread_count, 2);
    assert_eq!(
        mine(&carl).await[0].thread.as_ref().unwrap().unread_count,
        0
    );
    assert!(mine(&dave).await.is_empty());
    let read = ca
        .mark_thread_read(authed(
            pb::MarkThreadReadRequest {
                conversation_id: g.clone(),
                root_id: root.id.clone(),
                seq: r2.seq,
            },
            &ann,
        ))
        .await
        .unwrap();
    assert_eq!(read.into_inner().unread_count, 0);

    // Mentioned in a reply: Dave follows, unread first in his list.
    ca.send_message(authed(mentioning(&g, &root.id, &dave_id), &bob))
        .await
        .unwrap();
    let other = ca
        .send_message(authed(send(&g, "another root"), &ann))
        .await
        .unwrap();
    let other = other.into_inner();
    let (gg, oo) = root_ids(&g, &other.id);
    ca.follow_thread(authed(
        pb::FollowThreadRequest {
            conversation_id: gg.clone(),
            root_id: oo.clone(),
        },
        &dave,
    ))
    .await
    .unwrap();
    let daves = mine(&dave).await;
    assert_eq!(daves.len(), 2);
    assert_eq!(daves[0].id, root.id, "the thread with unread replies first");
    assert_eq!(daves[0].thread.as_ref().unwrap().unread_count, 1);
    ca.unfollow_thread(authed(
        pb::UnfollowThreadRequest {
            conversation_id: gg,
            root_id: oo,
        },
        &dave,
    ))
    .await
    .unwrap();
    assert_eq!(mine(&dave).await.len(), 1);

    // Refusals: a reply to a reply, to no message; outsiders learn nothing.
    let nested = ca
        .send_message(authed(reply(&g, &r1.id, "x", false), &ann))
        .await
        .unwrap_err();
    assert_eq!(nested.code(), Code::InvalidArgument);
    assert_eq!(violations(&nested), ["thread_root_id"]);
    let unknown = uuid::Uuid::new_v4().to_string();
    let none = ca
        .send_message(authed(reply(&g, &unknown, "x", false), &ann))
        .await
        .unwrap_err();
    assert_eq!(violations(&none), ["thread_root_id"]);
    let outsider = ca
        .send_message(authed(reply(&g, &root.id, "x", false), &eve))
        .await
        .unwrap_err();
    assert_eq!(outsider.code(), Code::NotFound);
    let outsider = cb
        .list_thread_replies(authed(
            pb::ListThreadRepliesRequest {
                conversation_id: g.clone(),
                root_id: root.id.clone(),
                ..Default::default()
            },
            &eve,
        ))
        .await
        .unwrap_err();
    assert_eq!(outsider.code(), Code::NotFound);
    if let Ok(e) = tokio::time::timeout(Duration::from_millis(300), next(&mut eve_stream)).await {
        panic!("an outsider heard {e:?}");
    }

    // Over REST: a reply, and the thread view.
    let r = reqwest::Client::new()
        .post(format!("{}/api/conversations/{g}/messages", a.url()))
        .bearer_auth(&carl)
        .json(&json!({
            "content": {"type":"doc","content":[{"type":"paragraph","content":[{"type":"text","text":"rest"}]}]},
            "threadRootId": root.id,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = reqwest::Client::new()
        .get(format!(
            "{}/api/conversations/{g}/messages/{}/replies",
            b.url(),
            root.id
        ))
        .bearer_auth(&carl)
        .send()
        .await
        .unwrap();
    let replies: serde_json::Value = r.json().await.unwrap();
    let texts: Vec<&str> = replies["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["one", "two", "look @you", "rest"]);

    // The root deleted: its replies stay, the root is a tombstone that keeps its thread, and
    // no new reply is taken.
    ca.delete_message(authed(
        pb::DeleteMessageRequest {
            conversation_id: g.clone(),
            message_id: root.id.clone(),
        },
        &ann,
    ))
    .await
    .unwrap();
    let after = listed(&ann).await;
    let tomb = after.iter().find(|m| m.id == root.id).unwrap();
    assert!(tomb.deleted);
    assert_eq!(tomb.thread.as_ref().unwrap().reply_count, 4);
    let late = ca
        .send_message(authed(reply(&g, &root.id, "late", false), &bob))
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
}
