//! Mentions (issue 36): of users, `@all` and `@here`; "mentions of me" with its unread count;
//! an edit announces only the newly mentioned; the sidebar's badges in one call.

use crate::{
    events::{client, group, next, open, redis_url, send},
    helpers::*,
};
use epop::pb::{self, event::Kind};
use serde_json::{Value, json};

/// A message mentioning each of `ids` (user ids, `all` or `here`) after `text`.
fn mention(c: &str, text: &str, ids: &[&str]) -> pb::SendMessageRequest {
    let mut nodes = vec![json!({"type":"text","text": text})];
    for id in ids {
        nodes.push(json!({"type":"mention","attrs":{"id": id, "label": id}}));
    }
    let doc = json!({"type":"doc","content":[{"type":"paragraph","content": nodes}]});
    pb::SendMessageRequest {
        content: Some(epop::grpc::convert::json_to_struct(&doc)),
        ..send(c, "x")
    }
}

async fn mentions_of(app: &TestApp, token: &str) -> (Vec<String>, i64) {
    let r = client(app)
        .await
        .list_mentions(authed(pb::ListMentionsRequest::default(), token))
        .await
        .unwrap()
        .into_inner();
    (
        r.messages.into_iter().map(|m| m.text).collect(),
        r.unread_count,
    )
}

async fn badges(app: &TestApp, token: &str) -> (i64, i64, i64) {
    let r = reqwest::Client::new()
        .get(format!("{}/api/unread", app.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v = r.json::<Value>().await.unwrap();
    let b = &v["conversations"][0];
    // proto3 JSON: an int64 is a string, and zero is left out.
    let n = |k: &str| b[k].as_str().map_or(0, |s| s.parse().unwrap());
    (n("unreadMessages"), n("unreadMentions"), n("unreadThreads"))
}

/// The next `mentioned` event's user ids, sorted.
async fn mentioned(stream: &mut tonic::Streaming<pb::Event>) -> Vec<String> {
    loop {
        if let Some(Kind::Mentioned(m)) = next(stream).await.kind {
            let mut ids = m.user_ids;
            ids.sort();
            return ids;
        }
    }
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn mentions_of_users_all_and_here_are_listed_counted_and_announced_once() {
    // Carl's stream is on the other instance: presence there makes him "here".
    let (app, other_instance) = two_instances(&redis_url()).await;
    let (_, ann) = user(&app, "ann").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let (carl_id, carl) = user(&app, "carl").await;
    let (dave_id, dave) = user(&app, "dave").await;
    let g = group(&app, &ann, &[&bob_id, &carl_id, &dave_id]).await;
    // Carl has a stream open (he is "here"); Bob and Dave do not.
    let mut carl_stream = open(&other_instance, &carl, "").await;
    // Its presence claim reaches Redis as the stream opens (a spawned write).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut c = client(&app).await;

    c.send_message(authed(mention(&g, "hi ", &[&bob_id]), &ann))
        .await
        .unwrap();
    assert_eq!(
        mentioned(&mut carl_stream).await,
        std::slice::from_ref(&bob_id)
    );
    c.send_message(authed(mention(&g, "here ", &["here"]), &ann))
        .await
        .unwrap();
    assert_eq!(
        mentioned(&mut carl_stream).await,
        std::slice::from_ref(&carl_id)
    );
    c.send_message(authed(mention(&g, "all ", &["all"]), &ann))
        .await
        .unwrap();
    let everyone = sorted(vec![bob_id.clone(), carl_id.clone(), dave_id.clone()]);
    assert_eq!(mentioned(&mut carl_stream).await, everyone);

    assert_eq!(
        mentions_of(&app, &bob).await,
        (vec!["all @all".into(), "hi @".to_owned() + &bob_id], 2)
    );
    assert_eq!(mentions_of(&app, &carl).await.1, 2);
    assert_eq!(
        mentions_of(&app, &dave).await.1,
        1,
        "not here, so only @all"
    );
    assert_eq!(mentions_of(&app, &ann).await.1, 0, "never the sender");

    // The badges in one call, over REST; reading clears the mentions with the messages.
    assert_eq!(badges(&app, &bob).await, (3, 2, 0));
    let last = c
        .list_messages(authed(
            pb::ListMessagesRequest {
                conversation_id: g.clone(),
                ..Default::default()
            },
            &bob,
        ))
        .await
        .unwrap()
        .into_inner()
        .messages
        .last()
        .unwrap()
        .seq;
    c.mark_read(authed(
        pb::MarkReadRequest {
            conversation_id: g.clone(),
            seq: last,
        },
        &bob,
    ))
    .await
    .unwrap();
    assert_eq!(badges(&app, &bob).await, (0, 0, 0));
    assert_eq!(
        mentions_of(&app, &bob).await.0.len(),
        2,
        "read, still listed"
    );

    // An edit announces only whom it newly mentions.
    let m = c
        .send_message(authed(send(&g, "plain"), &ann))
        .await
        .unwrap()
        .into_inner()
        .id;
    let edit = |ids: &[&str]| pb::UpdateMessageRequest {
        conversation_id: g.clone(),
        message_id: m.clone(),
        content: mention(&g, "now ", ids).content,
    };
    c.update_message(authed(edit(&[&bob_id, &dave_id]), &ann))
        .await
        .unwrap();
    assert_eq!(
        mentioned(&mut carl_stream).await,
        sorted(vec![bob_id.clone(), dave_id.clone()])
    );
    c.update_message(authed(edit(&[&bob_id, &dave_id, &carl_id]), &ann))
        .await
        .unwrap();
    assert_eq!(
        mentioned(&mut carl_stream).await,
        std::slice::from_ref(&carl_id)
    );
    assert_eq!(mentions_of(&app, &carl).await.1, 3);

    // A deleted message mentions no one any more.
    c.delete_message(authed(
        pb::DeleteMessageRequest {
            conversation_id: g.clone(),
            message_id: m,
        },
        &ann,
    ))
    .await
    .unwrap();
    assert_eq!(mentions_of(&app, &carl).await.1, 2);

    // Mentioned in a thread's reply: Dave follows it, and the badge counts the thread.
    let root = c
        .send_message(authed(send(&g, "root"), &ann))
        .await
        .unwrap()
        .into_inner();
    let reply = pb::SendMessageRequest {
        thread_root_id: root.id.clone(),
        ..mention(&g, "see ", &[&dave_id])
    };
    let reply = c
        .send_message(authed(reply, &bob))
        .await
        .unwrap()
        .into_inner();
    let (_, mentions, threads) = badges(&app, &dave).await;
    assert_eq!(
        (mentions, threads),
        (2, 1),
        "@all and the reply; the thread"
    );
    // An edit that adds Carl to the reply makes him follow the thread too.
    assert_eq!(badges(&app, &carl).await.2, 0);
    let edit = pb::UpdateMessageRequest {
        conversation_id: g.clone(),
        message_id: reply.id.clone(),
        content: mention(&g, "see ", &[&dave_id, &carl_id]).content,
    };
    c.update_message(authed(edit, &bob)).await.unwrap();
    assert_eq!(badges(&app, &carl).await.2, 1, "Carl follows the thread");

    // Outsiders cannot be mentioned; the mentions list is the caller's own.
    let (eve_id, eve) = user(&app, "eve").await;
    let refused = c
        .send_message(authed(mention(&g, "x ", &[&eve_id]), &ann))
        .await
        .unwrap_err();
    assert_eq!(violations(&refused), ["content"]);
    // An outsider learns nothing from a mention: whoever it names, NOT_FOUND.
    for who in [&bob_id, &eve_id] {
        let probe = c
            .send_message(authed(mention(&g, "x ", &[who]), &eve))
            .await
            .unwrap_err();
        assert_eq!(probe.code(), tonic::Code::NotFound, "{who}");
    }
    assert_eq!(mentions_of(&app, &eve).await, (vec![], 0));
}
