//! ConversationService: direct and group conversations, messages with gap-free sequences,
//! idempotent sends, paging, edits and tombstones, read positions, search, membership.

use crate::helpers::*;
use epop::{
    grpc::convert::json_to_struct,
    pb::{self, conversation_service_client::ConversationServiceClient},
};
use serde_json::json;
use tonic::{Code, transport::Channel};

async fn client(app: &TestApp) -> ConversationServiceClient<Channel> {
    ConversationServiceClient::new(app.channel().await)
}

fn text(t: &str) -> Option<prost_types::Struct> {
    Some(json_to_struct(
        &json!({"type":"doc","content":[{"type":"paragraph","content":[{"type":"text","text":t}]}]}),
    ))
}

fn send(conversation: &str, t: &str, key: &str) -> pb::SendMessageRequest {
    pb::SendMessageRequest {
        conversation_id: conversation.into(),
        content: text(t),
        idempotency_key: key.into(),
        ..Default::default()
    }
}

async fn group(app: &TestApp, token: &str, title: &str, members: &[&str]) -> pb::Conversation {
    client(app)
        .await
        .create_conversation(authed(
            pb::CreateConversationRequest {
                kind: pb::ConversationKind::Group.into(),
                title: title.into(),
                member_ids: members.iter().map(|m| m.to_string()).collect(),
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_direct_conversation_exists_once_per_pair() {
    let app = TestApp::spawn().await;
    let (ann_id, ann) = user(&app, "ann").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let mut c = client(&app).await;
    let direct = |other: &str| pb::CreateConversationRequest {
        kind: pb::ConversationKind::Direct.into(),
        title: String::new(),
        member_ids: vec![other.into()],
    };
    let first = c
        .create_conversation(authed(direct(&bob_id), &ann))
        .await
        .unwrap()
        .into_inner();
    let again = c
        .create_conversation(authed(direct(&ann_id), &bob))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.id, again.id);
    assert_eq!(first.member_ids.len(), 2);
    assert_eq!(first.kind, pb::ConversationKind::Direct as i32);
    let alone = c
        .create_conversation(authed(direct(&ann_id), &ann))
        .await
        .unwrap_err();
    assert_eq!(violations(&alone), ["member_ids"]);
    let leave = c
        .leave_conversation(authed(
            pb::LeaveConversationRequest {
                conversation_id: first.id.clone(),
            },
            &ann,
        ))
        .await
        .unwrap_err();
    assert_eq!(leave.code(), Code::FailedPrecondition);
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_get_gap_free_sequences_and_page_in_every_direction() {
    let app = TestApp::spawn().await;
    let (_, ann) = user(&app, "ann").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let g = group(&app, &ann, "Team", &[&bob_id]).await;
    let mut c = client(&app).await;
    for i in 1..=7 {
        let m = c
            .send_message(authed(send(&g.id, &format!("message {i}"), ""), &ann))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(m.seq, i);
        assert_eq!(m.text, format!("message {i}"));
    }
    let list = |extra: pb::ListMessagesRequest| pb::ListMessagesRequest {
        conversation_id: g.id.clone(),
        page_size: 3,
        ..extra
    };
    let seqs = |r: &pb::ListMessagesResponse| r.messages.iter().map(|m| m.seq).collect::<Vec<_>>();
    let latest = c
        .list_messages(authed(list(Default::default()), &bob))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seqs(&latest), [5, 6, 7]);
    let older = c
        .list_messages(authed(
            list(pb::ListMessagesRequest {
                page_token: latest.next_page_token,
                ..Default::default()
            }),
            &bob,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seqs(&older), [2, 3, 4]);
    let after = c
        .list_messages(authed(
            list(pb::ListMessagesRequest {
                after_seq: 1,
                ..Default::default()
            }),
            &bob,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seqs(&after), [2, 3, 4]);
    let newer = c
        .list_messages(authed(
            list(pb::ListMessagesRequest {
                page_token: after.next_page_token,
                ..Default::default()
            }),
            &bob,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seqs(&newer), [5, 6, 7]);
    let around = c
        .list_messages(authed(
            list(pb::ListMessagesRequest {
                around_seq: 4,
                ..Default::default()
            }),
            &bob,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seqs(&around), [3, 4, 5]);
    let both = c
        .list_messages(authed(
            list(pb::ListMessagesRequest {
                after_seq: 1,
                before_seq: 5,
                ..Default::default()
            }),
            &bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(both.code(), Code::InvalidArgument);

    // Unread counts and read receipts.
    let listed = c
        .list_conversations(authed(pb::ListConversationsRequest::default(), &bob))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.conversations[0].unread_count, 7);
    assert_eq!(
        listed.conversations[0].last_message.as_ref().unwrap().seq,
        7
    );
    let read = c
        .mark_read(authed(
            pb::MarkReadRequest {
                conversation_id: g.id.clone(),
                seq: 5,
            },
            &bob,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.unread_count, 2);
    let back = c
        .mark_read(authed(
            pb::MarkReadRequest {
                conversation_id: g.id.clone(),
                seq: 1,
            },
            &bob,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(back.unread_count, 2, "read positions never move back");
    let mine = c
        .list_conversations(authed(pb::ListConversationsRequest::default(), &ann))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        mine.conversations[0].unread_count, 0,
        "own messages are read"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retried_and_concurrent_sends_never_duplicate_or_leave_gaps() {
    let app = TestApp::spawn().await;
    let (_, ann) = user(&app, "ann").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let g = group(&app, &ann, "Busy", &[&bob_id]).await;
    let mut c = client(&app).await;
    let first = c
        .send_message(authed(send(&g.id, "once", "key-1"), &ann))
        .await
        .unwrap()
        .into_inner();
    let retry = c
        .send_message(authed(send(&g.id, "once", "key-1"), &ann))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (first.id.as_str(), first.seq),
        (retry.id.as_str(), retry.seq)
    );

    // Four senders at once, with retries racing their own first attempt.
    let mut tasks = vec![];
    for (who, token) in [
        ("a", ann.clone()),
        ("b", bob.clone()),
        ("c", ann.clone()),
        ("d", bob.clone()),
    ] {
        let (ch, id) = (app.channel().await, g.id.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = ConversationServiceClient::new(ch);
            let mut seqs = vec![];
            for i in 0..10 {
                let key = format!("{who}-{i}");
                let mut retry = c.clone();
                let (r1, r2) = tokio::join!(
                    retry.send_message(authed(send(&id, &key, &key), &token)),
                    c.send_message(authed(send(&id, &key, &key), &token)),
                );
                let (m1, m2) = (r1.unwrap().into_inner(), r2.unwrap().into_inner());
                assert_eq!(m1.id, m2.id, "a retry returns the first message");
                seqs.push(m1.seq);
            }
            seqs
        }));
    }
    let mut all: Vec<i64> = vec![];
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    assert_eq!(
        all,
        (2..=41).collect::<Vec<_>>(),
        "40 messages, seq 2..=41, no gap, no duplicate"
    );
    let latest = c
        .list_messages(authed(
            pb::ListMessagesRequest {
                conversation_id: g.id.clone(),
                page_size: 200,
                ..Default::default()
            },
            &bob,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(latest.messages.len(), 41);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_sender_edits_and_deletes_and_a_deletion_leaves_a_tombstone() {
    let app = TestApp::spawn().await;
    let (_, ann) = user(&app, "ann").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let g = group(&app, &ann, "Edits", &[&bob_id]).await;
    let mut c = client(&app).await;
    let m = c
        .send_message(authed(send(&g.id, "draft", ""), &ann))
        .await
        .unwrap()
        .into_inner();
    let edit = |t: &str| pb::UpdateMessageRequest {
        conversation_id: g.id.clone(),
        message_id: m.id.clone(),
        content: text(t),
    };
    let by_bob = c
        .update_message(authed(edit("hijack"), &bob))
        .await
        .unwrap_err();
    assert_eq!(by_bob.code(), Code::PermissionDenied);
    let edited = c
        .update_message(authed(edit("final"), &ann))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((edited.text.as_str(), edited.seq), ("final", m.seq));
    assert!(edited.edit_time.is_some());
    let del = pb::DeleteMessageRequest {
        conversation_id: g.id.clone(),
        message_id: m.id.clone(),
    };
    assert_eq!(
        c.delete_message(authed(del.clone(), &bob))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let tomb = c
        .delete_message(authed(del, &ann))
        .await
        .unwrap()
        .into_inner();
    assert!(tomb.deleted && tomb.content.is_none() && tomb.text.is_empty());
    assert_eq!(tomb.seq, m.seq, "the position stays");
    let after = c
        .update_message(authed(edit("zombie"), &ann))
        .await
        .unwrap_err();
    assert_eq!(after.code(), Code::FailedPrecondition);
    let bad = c
        .send_message(authed(
            pb::SendMessageRequest {
                conversation_id: g.id.clone(),
                content: Some(json_to_struct(
                    &json!({"type":"doc","content":[{"type":"script","text":"x"}]}),
                )),
                ..Default::default()
            },
            &ann,
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&bad), ["content"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn outsiders_get_not_found_and_search_stays_within_my_conversations() {
    let app = TestApp::spawn().await;
    let (_, ann) = user(&app, "ann").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let (_, eve) = user(&app, "eve").await;
    let g = group(&app, &ann, "Private", &[&bob_id]).await;
    let mut c = client(&app).await;
    c.send_message(authed(
        send(&g.id, "the launch code is pineapple", ""),
        &ann,
    ))
    .await
    .unwrap();
    c.send_message(authed(send(&g.id, "lunch at noon", ""), &bob))
        .await
        .unwrap();
    for err in [
        c.get_conversation(authed(
            pb::GetConversationRequest { id: g.id.clone() },
            &eve,
        ))
        .await
        .map(|_| ())
        .unwrap_err(),
        c.list_messages(authed(
            pb::ListMessagesRequest {
                conversation_id: g.id.clone(),
                ..Default::default()
            },
            &eve,
        ))
        .await
        .map(|_| ())
        .unwrap_err(),
        c.send_message(authed(send(&g.id, "hi", ""), &eve))
            .await
            .map(|_| ())
            .unwrap_err(),
    ] {
        assert_eq!(err.code(), Code::NotFound);
    }
    let search = |q: &str| pb::SearchMessagesRequest {
        query: q.into(),
        ..Default::default()
    };
    let found = c
        .search_messages(authed(search("pineapple"), &bob))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.messages.len(), 1);
    assert_eq!(found.messages[0].text, "the launch code is pineapple");
    let nothing = c
        .search_messages(authed(search("pineapple"), &eve))
        .await
        .unwrap()
        .into_inner();
    assert!(nothing.messages.is_empty());

    // Membership: people are added, leave, and only admins remove others.
    let (cy_id, cy) = user(&app, "cy").await;
    let added = c
        .add_conversation_members(authed(
            pb::AddConversationMembersRequest {
                conversation_id: g.id.clone(),
                user_ids: vec![cy_id.clone()],
            },
            &bob,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(added.member_ids.len(), 3);
    let kick = c
        .remove_conversation_member(authed(
            pb::RemoveConversationMemberRequest {
                conversation_id: g.id.clone(),
                user_id: cy_id.clone(),
            },
            &bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(kick.code(), Code::PermissionDenied);
    c.leave_conversation(authed(
        pb::LeaveConversationRequest {
            conversation_id: g.id.clone(),
        },
        &cy,
    ))
    .await
    .unwrap();
    let gone = c
        .get_conversation(authed(pb::GetConversationRequest { id: g.id.clone() }, &cy))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_conversation_routes_work_over_rest() {
    use serde_json::Value;
    let app = TestApp::spawn().await;
    let (_, ann) = user(&app, "ann").await;
    let (bob_id, _) = user(&app, "bob").await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", app.url());
    let conv: Value = http
        .post(url("/api/conversations"))
        .bearer_auth(&ann)
        .json(&json!({ "kind": "CONVERSATION_KIND_GROUP", "title": "REST room", "memberIds": [bob_id] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = conv["id"].as_str().unwrap();
    let doc = json!({"type":"doc","content":[{"type":"paragraph","content":[{"type":"text","text":"hello over REST"}]}]});
    let sent: Value = http
        .post(url(&format!("/api/conversations/{id}/messages")))
        .bearer_auth(&ann)
        .json(&json!({ "content": doc, "idempotencyKey": "k1" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (sent["seq"].as_str(), sent["content"].clone()),
        (Some("1"), doc),
        "int64 as a string; the document round-trips"
    );
    let page: Value = http
        .get(url(&format!("/api/conversations/{id}/messages")))
        .bearer_auth(&ann)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["messages"][0]["text"], "hello over REST");
    let list: Value = http
        .get(url("/api/conversations"))
        .bearer_auth(&ann)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["conversations"][0]["id"], id);
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_of_ids_are_bounded_and_checked_in_one_go() {
    let app = TestApp::spawn().await;
    let (_, ann) = user(&app, "ann").await;
    let (bob_id, _) = user(&app, "bob").await;
    let mut c = client(&app).await;
    let many: Vec<String> = (0..501).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let err = c
        .create_conversation(authed(
            pb::CreateConversationRequest {
                kind: pb::ConversationKind::Group.into(),
                title: "Crowd".into(),
                member_ids: many.clone(),
            },
            &ann,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violations(&err), ["member_ids"]);
    // Within the bound, one unknown id among real ones is named.
    let ghost = uuid::Uuid::new_v4().to_string();
    let err = c
        .create_conversation(authed(
            pb::CreateConversationRequest {
                kind: pb::ConversationKind::Group.into(),
                title: "Crowd".into(),
                member_ids: vec![bob_id.clone(), ghost.clone()],
            },
            &ann,
        ))
        .await
        .unwrap_err();
    assert!(err.message().contains(&ghost), "{err:?}");
    let g = group(&app, &ann, "Room", &[&bob_id]).await;
    let err = c
        .add_conversation_members(authed(
            pb::AddConversationMembersRequest {
                conversation_id: g.id.clone(),
                user_ids: many,
            },
            &ann,
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["user_ids"]);
    let mut m = send(&g.id, "files", "");
    m.attachment_ids = (0..21).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let err = c.send_message(authed(m, &ann)).await.unwrap_err();
    assert_eq!(violations(&err), ["attachment_ids"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_page_tokens_at_the_integer_limits_are_refused_or_served_never_a_crash() {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let app = TestApp::spawn().await;
    let (_, ann) = user(&app, "ann").await;
    let g = group(&app, &ann, "Room", &[]).await;
    let mut c = client(&app).await;
    c.send_message(authed(send(&g.id, "findable words", ""), &ann))
        .await
        .unwrap();
    let token = |n: i64| URL_SAFE_NO_PAD.encode(n.to_string());
    for n in [i64::MIN, i64::MIN + 1, -1, i64::MAX] {
        let page = c
            .list_messages(authed(
                pb::ListMessagesRequest {
                    conversation_id: g.id.clone(),
                    page_token: token(n),
                    ..Default::default()
                },
                &ann,
            ))
            .await;
        assert!(
            page.as_ref()
                .map_or_else(|e| e.code() == Code::InvalidArgument, |_| true),
            "{n}: {page:?}"
        );
    }
    let search = |n: i64| pb::SearchMessagesRequest {
        query: "findable".into(),
        page_token: token(n),
        ..Default::default()
    };
    let err = c
        .search_messages(authed(search(i64::MAX), &ann))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["page_token"]);
    c.search_messages(authed(search(0), &ann))
        .await
        .expect("an honest token");
}

#[tokio::test(flavor = "multi_thread")]
async fn membership_changes_hold_one_connection_each_and_finish_promptly_on_a_pool_of_two() {
    let app = TestApp::spawn_with(|c| c.store.db_pool_size = 2).await;
    let (ann_id, ann) = user(&app, "ann").await;
    let mut others = vec![];
    for i in 0..4 {
        others.push(user(&app, &format!("member{i}")).await.0);
    }
    let started = std::time::Instant::now();
    let mut calls = vec![];
    for round in 0..6 {
        let g = group(&app, &ann, "Busy", &[]).await.id;
        let mut c = client(&app).await;
        let (ann, ann_id, others) = (ann.clone(), ann_id.clone(), others.clone());
        calls.push(tokio::spawn(async move {
            let mut c2 = c.clone();
            let renamed = c.update_conversation(authed(
                pb::UpdateConversationRequest {
                    id: g.clone(),
                    title: Some(format!("Round {round}")),
                    ..Default::default()
                },
                &ann,
            ));
            let added = c2.add_conversation_members(authed(
                pb::AddConversationMembersRequest {
                    conversation_id: g.clone(),
                    user_ids: others.clone(),
                },
                &ann,
            ));
            let (renamed, added) = tokio::join!(renamed, added);
            renamed.unwrap();
            assert!(added.unwrap().into_inner().member_ids.len() >= 5);
            // Ann removes herself: the change and its answer in one transaction.
            let left = c
                .remove_conversation_member(authed(
                    pb::RemoveConversationMemberRequest {
                        conversation_id: g.clone(),
                        user_id: ann_id,
                    },
                    &ann,
                ))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(left.id, g);
        }));
    }
    for call in calls {
        call.await.unwrap();
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?} (a request waiting on a second connection waits the pool's 5 s timeout)",
        started.elapsed()
    );
}
