//! Reactions, pins, saved messages and edit history (issue 36): over gRPC and REST, live on
//! the event stream across two instances, invisible to outsiders, gone with a deleted message
//! (and never replayed by a resume after the delete).

use crate::{
    events::{client, group, next, open, redis_url, send},
    helpers::*,
};
use epop::pb::{self, event::Kind};
use serde_json::{Value, json};
use std::time::Duration;
use tonic::{Code, Streaming};

fn reaction(c: &str, m: &str, emoji: &str) -> pb::AddReactionRequest {
    pb::AddReactionRequest {
        conversation_id: c.into(),
        message_id: m.into(),
        emoji: emoji.into(),
    }
}

/// The (emoji, count, reacted) of a message.
fn counts(m: &pb::Message) -> Vec<(String, i64, bool)> {
    m.reactions
        .iter()
        .map(|r| (r.emoji.clone(), r.count, r.reacted))
        .collect()
}

fn thumbs(count: i64, reacted: bool) -> Vec<(String, i64, bool)> {
    vec![("👍".to_owned(), count, reacted)]
}

/// The next reaction event.
async fn reaction_event(stream: &mut Streaming<pb::Event>) -> pb::ReactionChanged {
    match next(stream).await.kind {
        Some(Kind::ReactionChanged(r)) => r,
        other => panic!("expected a reaction, got {other:?}"),
    }
}

/// Nothing but heartbeats and presence for `wait`.
async fn quiet(stream: &mut Streaming<pb::Event>, wait: Duration) {
    if let Ok(e) = tokio::time::timeout(wait, next(stream)).await {
        panic!("expected nothing, got {e:?}");
    }
}

async fn rest(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = reqwest::Client::new()
        .request(method, format!("{}{path}", app.url()))
        .bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn members_react_live_across_instances_idempotently_within_a_cap_and_outsiders_see_nothing() {
    let (a, b) = two_instances(&redis_url()).await;
    let (_, ann) = user(&a, "ann").await;
    let (bob_id, bob) = user(&a, "bob").await;
    let (_, eve) = user(&a, "eve").await;
    let g = group(&a, &ann, &[&bob_id]).await;
    let mut bob_stream = open(&b, &bob, "").await;
    let mut eve_stream = open(&b, &eve, "").await;
    let mut ca = client(&a).await;
    let mut cb = client(&b).await;
    let m = ca.send_message(authed(send(&g, "hi"), &ann)).await.unwrap();
    let m = m.into_inner().id;
    assert!(matches!(
        next(&mut bob_stream).await.kind,
        Some(Kind::MessageCreated(_))
    ));

    // Bob's browser listens over SSE on the other instance too.
    let mut sse = reqwest::Client::new()
        .get(format!("{}/api/events", b.url()))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(sse.headers()["content-type"], "text/event-stream");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Added twice: one reaction, one event.
    for _ in 0..2 {
        let r = ca
            .add_reaction(authed(reaction(&g, &m, "👍"), &ann))
            .await
            .unwrap();
        assert_eq!(counts(r.get_ref()), thumbs(1, true));
    }
    let e = reaction_event(&mut bob_stream).await;
    assert_eq!((e.emoji.as_str(), e.added, e.count), ("👍", true, 1));
    assert_eq!(e.message_id, m);
    let mut text = String::new();
    while !text.contains("reactionChanged") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), sse.chunk())
            .await
            .expect("the reaction over SSE within 5 s")
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(text.contains("👍"), "{text}");
    drop(sse);
    // A short code is its emoji; Bob sees both reactions and his own.
    let r = cb
        .add_reaction(authed(reaction(&g, &m, ":thumbsup:"), &bob))
        .await
        .unwrap();
    assert_eq!(counts(r.get_ref()), thumbs(2, true));
    assert_eq!(reaction_event(&mut bob_stream).await.count, 2);
    let page = cb
        .list_messages(authed(
            pb::ListMessagesRequest {
                conversation_id: g.clone(),
                ..Default::default()
            },
            &bob,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(counts(&page.messages[0]), thumbs(2, true));

    // Who reacted, paged.
    let list = |token: &str, page_token: String| {
        let mut c = cb.clone();
        let (g, m, token) = (g.clone(), m.clone(), token.to_owned());
        async move {
            c.list_reactions(authed(
                pb::ListReactionsRequest {
                    conversation_id: g,
                    message_id: m,
                    page_size: 1,
                    page_token,
                    ..Default::default()
                },
                &token,
            ))
            .await
        }
    };
    let first = list(&bob, String::new()).await.unwrap().into_inner();
    assert_eq!(first.reactions.len(), 1);
    let second = list(&bob, first.next_page_token)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.reactions.len(), 1);
    assert_eq!(second.reactions[0].user_id, bob_id);
    assert_eq!(second.next_page_token, "");

    // Bad emoji name their field; outsiders get NOT_FOUND and no events.
    let bad = ca
        .add_reaction(authed(reaction(&g, &m, "hello"), &ann))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(violations(&bad), ["emoji"]);
    let outsider = ca
        .add_reaction(authed(reaction(&g, &m, "👍"), &eve))
        .await
        .unwrap_err();
    assert_eq!(outsider.code(), Code::NotFound);
    assert_eq!(
        list(&eve, String::new()).await.unwrap_err().code(),
        Code::NotFound
    );

    // At most 20 distinct reactions; an existing one can still be added.
    for e in emojis::iter().filter(|e| e.as_str() != "👍").take(19) {
        ca.add_reaction(authed(reaction(&g, &m, e.as_str()), &ann))
            .await
            .unwrap();
        reaction_event(&mut bob_stream).await;
    }
    let over = ca
        .add_reaction(authed(reaction(&g, &m, "🚀"), &ann))
        .await
        .unwrap_err();
    assert_eq!(over.code(), Code::FailedPrecondition, "{over:?}");
    let (_, carl) = user(&a, "carl").await;
    let carl_id = my_id(&a, &carl).await;
    ca.add_conversation_members(authed(
        pb::AddConversationMembersRequest {
            conversation_id: g.clone(),
            user_ids: vec![carl_id],
        },
        &ann,
    ))
    .await
    .unwrap();
    assert!(matches!(
        next(&mut bob_stream).await.kind,
        Some(Kind::MembershipChanged(_))
    ));
    ca.add_reaction(authed(reaction(&g, &m, "👍"), &carl))
        .await
        .unwrap();
    assert_eq!(reaction_event(&mut bob_stream).await.count, 3);

    // Removed over REST (the emoji in the path), twice: one event.
    let path = format!(
        "/api/conversations/{g}/messages/{m}/reactions/{}",
        urlencoding("👍")
    );
    for _ in 0..2 {
        let (status, body) = rest(&a, reqwest::Method::DELETE, &path, &ann, None).await;
        assert_eq!(status, 200, "{body}");
    }
    let e = reaction_event(&mut bob_stream).await;
    assert_eq!((e.added, e.count), (false, 2));

    // Bob leaves: he hears nothing more of it; Eve never heard anything.
    cb.leave_conversation(authed(
        pb::LeaveConversationRequest {
            conversation_id: g.clone(),
        },
        &bob,
    ))
    .await
    .unwrap();
    assert!(matches!(
        next(&mut bob_stream).await.kind,
        Some(Kind::MembershipChanged(_))
    ));
    ca.add_reaction(authed(reaction(&g, &m, "👍"), &ann))
        .await
        .unwrap();
    quiet(&mut bob_stream, Duration::from_millis(500)).await;
    quiet(&mut eve_stream, Duration::from_millis(100)).await;
    let gone = cb
        .add_reaction(authed(reaction(&g, &m, "👍"), &bob))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

fn urlencoding(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn pins_saves_and_versions_survive_edits_and_go_with_a_deleted_message() {
    let (app, other_instance) = two_instances(&redis_url()).await;
    let (ann_id, ann) = user(&app, "ann").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let (_, eve) = user(&app, "eve").await;
    let g = group(&app, &ann, &[&bob_id]).await;
    let mut c = client(&app).await;
    let m = c
        .send_message(authed(send(&g, "first"), &ann))
        .await
        .unwrap()
        .into_inner()
        .id;
    let other = c
        .send_message(authed(send(&g, "other"), &ann))
        .await
        .unwrap()
        .into_inner()
        .id;
    let mut ann_stream = open(&other_instance, &ann, "").await;
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;

    // Bob pins over REST; Ann hears it; the pin list says who.
    let pin_path = format!("/api/conversations/{g}/messages/{m}/pin");
    let (status, body) = rest(&app, post.clone(), &pin_path, &bob, Some(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pinned"], true);
    match next(&mut ann_stream).await.kind {
        Some(Kind::PinChanged(p)) => assert!(p.pinned && p.user_id == bob_id && p.message_id == m),
        other => panic!("expected a pin, got {other:?}"),
    }
    // Bob saves it (and another) over REST; the list is his alone.
    for id in [&m, &other] {
        let save = json!({ "conversationId": g, "messageId": id });
        let (status, body) =
            rest(&app, post.clone(), "/api/saved-messages", &bob, Some(save)).await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, saved) = rest(&app, get.clone(), "/api/saved-messages", &bob, None).await;
    assert_eq!(saved["saved"].as_array().unwrap().len(), 2);
    let (_, anns) = rest(&app, get.clone(), "/api/saved-messages", &ann, None).await;
    assert_eq!(anns["saved"].as_array().map_or(0, Vec::len), 0);

    // Two edits: two earlier versions, the pin and the save see the newest text.
    for t in ["second", "third"] {
        let edit = pb::UpdateMessageRequest {
            conversation_id: g.clone(),
            message_id: m.clone(),
            content: send(&g, t).content,
        };
        c.update_message(authed(edit, &ann)).await.unwrap();
    }
    let versions_path = format!("/api/conversations/{g}/messages/{m}/versions");
    let (status, v) = rest(&app, get.clone(), &versions_path, &bob, None).await;
    assert_eq!(status, 200, "{v}");
    let v = v["versions"].as_array().unwrap().clone();
    let texts: Vec<&str> = v.iter().map(|x| x["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["first", "second"]);
    assert_eq!(v[0]["version"], 1);
    assert!(v.iter().all(|x| x["authorId"] == ann_id.as_str()));
    let pins_path = format!("/api/conversations/{g}/pins");
    let (_, pins) = rest(&app, get.clone(), &pins_path, &bob, None).await;
    assert_eq!(pins["pins"][0]["message"]["text"], "third");
    assert_eq!(pins["pins"][0]["pinnedBy"], bob_id.as_str());

    // Outsiders learn nothing.
    for path in [&versions_path, &pins_path] {
        let (status, _) = rest(&app, get.clone(), path, &eve, None).await;
        assert_eq!(status, 404, "{path}");
    }
    let save = json!({ "conversationId": g, "messageId": m });
    let (status, _) = rest(&app, post.clone(), "/api/saved-messages", &eve, Some(save)).await;
    assert_eq!(status, 404);
    let (status, _) = rest(&app, post.clone(), &pin_path, &eve, Some(json!({}))).await;
    assert_eq!(status, 404);

    // Deleted: no pin, no save, no versions, no reactions; no new ones either.
    c.add_reaction(authed(reaction(&g, &m, "👍"), &bob))
        .await
        .unwrap();
    c.delete_message(authed(
        pb::DeleteMessageRequest {
            conversation_id: g.clone(),
            message_id: m.clone(),
        },
        &ann,
    ))
    .await
    .unwrap();
    let (_, pins) = rest(&app, get.clone(), &pins_path, &bob, None).await;
    assert_eq!(pins["pins"].as_array().map_or(0, Vec::len), 0);
    let (_, v) = rest(&app, get.clone(), &versions_path, &bob, None).await;
    assert_eq!(v["versions"].as_array().map_or(0, Vec::len), 0);
    let (_, saved) = rest(&app, get.clone(), "/api/saved-messages", &bob, None).await;
    let saved = saved["saved"].as_array().unwrap().clone();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0]["message"]["id"], other.as_str());
    let again = c
        .add_reaction(authed(reaction(&g, &m, "👍"), &bob))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    let reactions_path = format!("/api/conversations/{g}/messages/{m}/reactions");
    let (_, r) = rest(&app, get.clone(), &reactions_path, &bob, None).await;
    assert_eq!(r["reactions"].as_array().map_or(0, Vec::len), 0);

    // Bob leaves: his saved message of that conversation is no longer listed.
    c.leave_conversation(authed(
        pb::LeaveConversationRequest {
            conversation_id: g.clone(),
        },
        &bob,
    ))
    .await
    .unwrap();
    let (_, saved) = rest(&app, get, "/api/saved-messages", &bob, None).await;
    assert_eq!(saved["saved"].as_array().map_or(0, Vec::len), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resume_from_before_a_delete_replays_no_reaction_pin_or_earlier_version() {
    let app = TestApp::spawn().await;
    let (_, ann) = user(&app, "ann").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let g = group(&app, &ann, &[&bob_id]).await;
    let mut c = client(&app).await;
    let mut bob_stream = open(&app, &bob, "").await;
    let m = c
        .send_message(authed(send(&g, "secret one"), &ann))
        .await
        .unwrap()
        .into_inner()
        .id;
    let created = next(&mut bob_stream).await;
    assert!(matches!(created.kind, Some(Kind::MessageCreated(_))));
    drop(bob_stream);

    // While Bob is away: reactions, a pin, an edit, then the delete, then a later message.
    c.add_reaction(authed(reaction(&g, &m, "👍"), &ann))
        .await
        .unwrap();
    c.add_reaction(authed(reaction(&g, &m, "🎉"), &bob))
        .await
        .unwrap();
    c.pin_message(authed(
        pb::PinMessageRequest {
            conversation_id: g.clone(),
            message_id: m.clone(),
        },
        &bob,
    ))
    .await
    .unwrap();
    // A reply in its thread, deleted too.
    let reply = pb::SendMessageRequest {
        thread_root_id: m.clone(),
        ..send(&g, "secret reply")
    };
    let reply = c
        .send_message(authed(reply, &bob))
        .await
        .unwrap()
        .into_inner()
        .id;
    c.delete_message(authed(
        pb::DeleteMessageRequest {
            conversation_id: g.clone(),
            message_id: reply,
        },
        &bob,
    ))
    .await
    .unwrap();
    let edit = pb::UpdateMessageRequest {
        conversation_id: g.clone(),
        message_id: m.clone(),
        content: send(&g, "secret two").content,
    };
    c.update_message(authed(edit, &ann)).await.unwrap();
    c.delete_message(authed(
        pb::DeleteMessageRequest {
            conversation_id: g.clone(),
            message_id: m.clone(),
        },
        &ann,
    ))
    .await
    .unwrap();
    c.send_message(authed(send(&g, "after"), &ann))
        .await
        .unwrap();

    let mut resumed = open(&app, &bob, &created.cursor).await;
    let mut kinds = vec![];
    loop {
        let e = next(&mut resumed).await;
        let debug = format!("{e:?}");
        assert!(
            !debug.contains("secret"),
            "a replay carried deleted text: {debug}"
        );
        match e.kind {
            Some(Kind::MessageCreated(m)) if m.text == "after" => break,
            Some(Kind::MessageCreated(m)) => {
                assert!(m.deleted && !m.thread_root_id.is_empty(), "{m:?}");
                kinds.push("reply");
            }
            Some(Kind::ReactionChanged(_)) => panic!("a deleted message's reaction replayed"),
            Some(Kind::PinChanged(_)) => panic!("a deleted message's pin replayed"),
            Some(Kind::MessageUpdated(u)) => {
                assert!(u.deleted, "an earlier version replayed: {u:?}");
                kinds.push("updated");
            }
            Some(Kind::MessageDeleted(_)) => kinds.push("deleted"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(kinds, ["reply", "deleted", "updated", "deleted"]);
}
