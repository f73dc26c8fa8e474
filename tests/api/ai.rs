//! The AI assistant against a fake OpenAI-compatible provider (tests/api/fake_ai.rs):
//! streaming as the provider sends, history, context access, error codes, cancellation,
//! limits, usage, and answers inside a conversation seen live on two instances.

use crate::{
    events::{client, group, next, open, redis_url, send},
    fake_ai::FakeAi,
    helpers::*,
    tasks::{new_task, project},
};
use epop::pb::{self, ai_service_client::AiServiceClient, event::Kind};
use std::time::{Duration, Instant};
use tonic::{Code, Streaming, transport::Channel};

async fn ai(app: &TestApp) -> AiServiceClient<Channel> {
    AiServiceClient::new(app.channel().await)
}

fn ask(question: &str) -> pb::ChatRequest {
    pb::ChatRequest {
        messages: vec![pb::ChatMessage {
            role: pb::ChatRole::User.into(),
            content: question.into(),
        }],
        ..Default::default()
    }
}

async fn with_fake(tweak: impl FnOnce(&mut epop::config::Config)) -> (FakeAi, TestApp) {
    let fake = FakeAi::start().await;
    let app = TestApp::spawn_with(|c| {
        fake.configure(c);
        tweak(c);
    })
    .await;
    (fake, app)
}

/// Reads a chat stream to its end: the chunks, or the status it ended with.
async fn read_all(mut s: Streaming<pb::ChatChunk>) -> (Vec<pb::ChatChunk>, Option<tonic::Status>) {
    let mut chunks = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.message()).await {
            Err(_) => panic!("the answer stalled"),
            Ok(Ok(Some(c))) => chunks.push(c),
            Ok(Ok(None)) => return (chunks, None),
            Ok(Err(e)) => return (chunks, Some(e)),
        }
    }
}

async fn chat(
    app: &TestApp,
    token: &str,
    r: pb::ChatRequest,
) -> Result<Streaming<pb::ChatChunk>, tonic::Status> {
    ai(app)
        .await
        .chat(authed(r, token))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_arrive_as_the_provider_sends_them_and_the_chat_is_saved() {
    let (fake, app) = with_fake(|_| {}).await;
    let (_, ann) = user(&app, "ann").await;
    let (_, bob) = user(&app, "bob").await;

    // Five tokens, 200 ms apart: the first arrives long before the last is sent.
    let started = Instant::now();
    let mut s = chat(&app, &ann, ask("tokens=5 every=200 hello"))
        .await
        .unwrap();
    let first = s.message().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert_eq!(first.delta, "t1 ");
    assert!(
        first_at < Duration::from_millis(700),
        "first token after {first_at:?}"
    );
    let (rest, end) = read_all(s).await;
    assert!(end.is_none(), "{end:?}");
    assert!(started.elapsed() >= Duration::from_millis(1000));
    let text: String = std::iter::once(&first)
        .chain(&rest)
        .map(|c| c.delta.as_str())
        .collect();
    assert_eq!(text, "t1 t2 t3 t4 t5 ");
    let last = rest.last().unwrap();
    assert_eq!(last.finish_reason, "stop");
    assert_eq!(last.usage.unwrap().completion_tokens, 5);
    assert_eq!(last.model, "fake-model");
    assert_eq!(fake.seen.keys.lock().unwrap()[0], "Bearer fake-key");

    // Saved: listed, readable, continued with its history; nobody else sees it.
    let mut c = ai(&app).await;
    let chats = c
        .list_chats(authed(pb::ListChatsRequest::default(), &ann))
        .await
        .unwrap()
        .into_inner()
        .chats;
    assert_eq!(chats.len(), 1);
    assert_eq!(chats[0].title, "tokens=5 every=200 hello");
    assert_eq!(chats[0].id, first.chat_id);
    let saved = c
        .get_chat(authed(
            pb::GetChatRequest {
                id: first.chat_id.clone(),
                ..Default::default()
            },
            &ann,
        ))
        .await
        .unwrap()
        .into_inner();
    let turns: Vec<_> = saved
        .turns
        .iter()
        .map(|t| (t.role(), t.content.as_str()))
        .collect();
    assert_eq!(
        turns,
        [
            (pb::ChatRole::User, "tokens=5 every=200 hello"),
            (pb::ChatRole::Assistant, "t1 t2 t3 t4 t5 ")
        ]
    );
    let more = pb::ChatRequest {
        chat_id: first.chat_id.clone(),
        ..ask("tokens=2 and then?")
    };
    let (chunks, end) = read_all(chat(&app, &ann, more).await.unwrap()).await;
    assert!(end.is_none());
    assert_eq!(chunks[0].chat_id, first.chat_id);
    let sent = fake.last_messages();
    assert_eq!(sent.len(), 3, "the saved turns come first: {sent:?}");
    assert_eq!(sent[1], ("assistant".into(), "t1 t2 t3 t4 t5 ".into()));
    for id in [first.chat_id.clone(), uuid::Uuid::new_v4().to_string()] {
        let e = c
            .get_chat(authed(
                pb::GetChatRequest {
                    id: id.clone(),
                    ..Default::default()
                },
                &bob,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        let e = chat(
            &app,
            &bob,
            pb::ChatRequest {
                chat_id: id,
                ..ask("mine now")
            },
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_delivers_each_token_as_it_comes() {
    let (_fake, app) = with_fake(|_| {}).await;
    let (_, ann) = user(&app, "ann").await;
    let started = Instant::now();
    let mut r = reqwest::Client::new()
        .post(format!("{}/api/ai/chat", app.url()))
        .bearer_auth(&ann)
        .json(&serde_json::json!({"messages": [{"role": "CHAT_ROLE_USER", "content": "tokens=4 every=250"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let first = r.chunk().await.unwrap().unwrap();
    let first_at = started.elapsed();
    let first = String::from_utf8_lossy(&first).to_string();
    assert!(first.contains(r#""delta":"t1 ""#), "{first}");
    assert!(
        first_at < Duration::from_millis(800),
        "first event after {first_at:?}"
    );
    let mut all = first;
    while let Some(c) = r.chunk().await.unwrap() {
        all.push_str(&String::from_utf8_lossy(&c));
    }
    assert!(started.elapsed() >= Duration::from_millis(1000));
    for t in ["t2 ", "t3 ", "t4 "] {
        assert!(all.contains(&format!(r#""delta":"{t}""#)), "{all}");
    }
    assert!(all.contains(r#""finishReason":"stop""#), "{all}");

    // NDJSON: one chunk per line.
    let lines = reqwest::Client::new()
        .post(format!("{}/api/ai/chat", app.url()))
        .bearer_auth(&ann)
        .header("accept", "application/x-ndjson")
        .json(&serde_json::json!({"messages": [{"role": "CHAT_ROLE_USER", "content": "tokens=3"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let deltas: Vec<String> = lines
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| v["delta"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(deltas, ["t1 ", "t2 ", "t3 ", ""], "{lines}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_goes_away_stops_the_provider_request() {
    let (fake, app) = with_fake(|_| {}).await;
    let (_, ann) = user(&app, "ann").await;
    let mut s = chat(&app, &ann, ask("hang")).await.unwrap();
    assert_eq!(s.message().await.unwrap().unwrap().delta, "t1 ");
    assert_eq!(fake.dropped(), 0);
    drop(s);
    for _ in 0..50 {
        if fake.dropped() == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the provider's request outlived its client");
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_failures_keep_their_meaning_before_and_during_the_stream() {
    let (_fake, app) = with_fake(|c| c.ai.ai_idle_timeout = Duration::from_millis(600)).await;
    let (_, ann) = user(&app, "ann").await;
    for (q, code) in [
        ("status=429", Code::ResourceExhausted),
        ("status=503", Code::Unavailable),
        ("status=401", Code::Internal),
    ] {
        let e = match chat(&app, &ann, ask(q)).await {
            Err(e) => e,
            Ok(s) => read_all(s).await.1.expect("an error"),
        };
        assert_eq!(e.code(), code, "{q}: {e:?}");
        if code == Code::Internal {
            assert!(
                !e.message().contains("401"),
                "no provider detail leaks: {e:?}"
            );
        }
    }
    // Mid-stream: the tokens so far, then the status.
    let (chunks, end) = read_all(chat(&app, &ann, ask("break")).await.unwrap()).await;
    assert_eq!(chunks.len(), 2);
    assert_eq!(end.unwrap().code(), Code::Unavailable);
    let (chunks, end) = read_all(chat(&app, &ann, ask("hang")).await.unwrap()).await;
    assert_eq!(chunks.len(), 1);
    assert_eq!(end.unwrap().code(), Code::DeadlineExceeded);
}

#[tokio::test(flavor = "multi_thread")]
async fn context_is_added_only_from_what_the_caller_may_read_newest_first() {
    let (fake, app) = with_fake(|c| c.ai.ai_max_prompt_chars = 1_200).await;
    let (_, ann) = user(&app, "ann").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let (_, carol) = user(&app, "carol").await;
    let g = group(&app, &ann, &[&bob_id]).await;
    let mut c = client(&app).await;
    for i in 0..30 {
        let text = format!("message number {i:02} {}", "x".repeat(60));
        c.send_message(authed(send(&g, &text), &bob)).await.unwrap();
    }
    let p = project(&app, &ann, &[]).await;
    epop::pb::task_service_client::TaskServiceClient::new(app.channel().await)
        .create_task(authed(new_task(&p, "Write the launch plan"), &ann))
        .await
        .unwrap();

    let in_conversation = pb::ChatRequest {
        context: Some(pb::chat_request::Context::ConversationId(g.clone())),
        ..ask("tokens=1 summarise")
    };
    read_all(chat(&app, &ann, in_conversation.clone()).await.unwrap()).await;
    let sent = fake.last_messages();
    let context = &sent[0];
    assert_eq!(context.0, "system");
    assert!(
        context.1.contains("bob: message number 29"),
        "the newest is kept: {context:?}"
    );
    assert!(
        !context.1.contains("message number 00"),
        "the oldest is trimmed: {context:?}"
    );
    let total: usize = sent.iter().map(|(_, t)| t.chars().count()).sum();
    assert!(total <= 1_200, "{total} characters");

    let on_project = pb::ChatRequest {
        context: Some(pb::chat_request::Context::ProjectId(p.clone())),
        ..ask("tokens=1 what is open?")
    };
    read_all(chat(&app, &ann, on_project.clone()).await.unwrap()).await;
    assert!(fake.last_messages()[0].1.contains("Write the launch plan"));

    let before = fake.seen.requests.lock().unwrap().len();
    for r in [in_conversation, on_project] {
        let e = chat(&app, &carol, r).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
    }
    assert_eq!(
        fake.seen.requests.lock().unwrap().len(),
        before,
        "nothing reached the provider"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_provider_the_rpcs_say_how_to_configure_one() {
    let app = TestApp::spawn().await;
    let (_, ann) = user(&app, "ann").await;
    let (_, bob) = user(&app, "bob").await;
    let e = chat(&app, &ann, ask("hello")).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("EPOP_AI_BASE_URL"), "{}", e.message());
    let g = group(&app, &ann, &[&my_id(&app, &bob).await]).await;
    let e = ai(&app)
        .await
        .ask_assistant(authed(
            pb::AskAssistantRequest {
                conversation_id: g,
                question: "hello".into(),
            },
            &ann,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_trip_with_a_clear_error_and_recover() {
    let (_fake, app) = with_fake(|c| {
        c.ai.ai_max_concurrent = 1;
        c.ai.ai_requests_per_minute = 4;
    })
    .await;
    let (_, ann) = user(&app, "ann").await;
    let mut open = chat(&app, &ann, ask("hang")).await.unwrap();
    open.message().await.unwrap().unwrap();
    let e = chat(&app, &ann, ask("tokens=1")).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(e.message().contains("at once"), "{}", e.message());
    drop(open);
    // The slot comes back once the server sees the client gone.
    let mut again = None;
    for _ in 0..50 {
        match chat(&app, &ann, ask("tokens=1")).await {
            Ok(s) => {
                again = Some(s);
                break;
            }
            Err(e) => assert_eq!(e.code(), Code::ResourceExhausted),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    read_all(again.expect("a slot again")).await;
    // Four requests a minute: the next ones are refused.
    let mut refused = None;
    for _ in 0..4 {
        match chat(&app, &ann, ask("tokens=1")).await {
            Ok(s) => {
                read_all(s).await;
            }
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("the rate limit trips");
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(e.message().contains("this minute"), "{}", e.message());
    // Prompts over the limit are refused naming the field.
    let long = "y".repeat(32_001);
    let e = chat(&app, &ann, ask(&long)).await.unwrap_err();
    assert_eq!(violations(&e), vec!["messages[0].content"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_is_counted_per_user_and_day_for_admins() {
    let (_fake, app) = with_fake(|_| {}).await;
    let (ann_id, ann) = user(&app, "ann").await;
    for q in ["tokens=3", "tokens=4"] {
        read_all(chat(&app, &ann, ask(q)).await.unwrap()).await;
    }
    let admin = app.admin_token().await;
    let mut a = app.admin().await;
    let rows = a
        .list_ai_usage(authed(
            pb::ListAiUsageRequest {
                user_id: ann_id.clone(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .usage;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].requests, rows[0].completion_tokens), (2, 7));
    assert_eq!(rows[0].day, chrono::Utc::now().date_naive().to_string());
    assert!(rows[0].prompt_tokens > 0);
    let e = a
        .list_ai_usage(authed(pb::ListAiUsageRequest::default(), &ann))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_assistant_answers_in_a_conversation_live_for_members_on_two_instances() {
    let fake = FakeAi::start().await;
    let (a, b) = two_instances_with(&redis_url(), |c| fake.configure(c)).await;
    let (_, ann) = user(&a, "ann").await;
    let (bob_id, bob) = user(&a, "bob").await;
    let g = group(&a, &ann, &[&bob_id]).await;
    // Bob's stream on the other instance; Ann's cursor from before the question.
    let mut bob_events = open(&b, &bob, "").await;
    let mut mine = open(&a, &ann, "").await;
    client(&a)
        .await
        .send_message(authed(send(&g, "before"), &ann))
        .await
        .unwrap();
    let before = next(&mut mine).await.cursor;
    drop(mine);
    assert!(matches!(
        next(&mut bob_events).await.kind,
        Some(Kind::MessageCreated(_))
    ));

    let asked = ai(&a)
        .await
        .ask_assistant(authed(
            pb::AskAssistantRequest {
                conversation_id: g.clone(),
                question: "tokens=4 every=100 what now?".into(),
            },
            &ann,
        ))
        .await
        .unwrap()
        .into_inner();
    // One answer at a time.
    let busy = ai(&a)
        .await
        .ask_assistant(authed(
            pb::AskAssistantRequest {
                conversation_id: g.clone(),
                question: "and also?".into(),
            },
            &bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(busy.code(), Code::FailedPrecondition);

    let mut deltas = String::new();
    let mut question_seen = false;
    let stored = loop {
        let e = next(&mut bob_events).await;
        match e.kind {
            Some(Kind::MessageCreated(m)) if m.from_assistant => break m,
            Some(Kind::MessageCreated(m)) => {
                assert_eq!(m.id, asked.question_message_id);
                question_seen = true;
            }
            Some(Kind::AssistantDelta(d)) => {
                assert_eq!(d.reply_id, asked.reply_id);
                assert!(question_seen, "the question comes first");
                if d.done {
                    assert!(d.error.is_empty(), "{}", d.error);
                    assert!(!d.message_id.is_empty());
                } else {
                    deltas.push_str(&d.delta);
                }
            }
            _ => {}
        }
    };
    assert_eq!(deltas, "t1 t2 t3 t4 ");
    assert_eq!(stored.text.trim(), "t1 t2 t3 t4");
    assert_eq!(stored.sender_id, "00000000-0000-4000-8000-00000000a1a1");

    // The question and recent messages went to the provider.
    let sent = fake.last_messages();
    assert!(sent.iter().any(|(_, t)| t.contains("what now?")));

    // A member who reconnects after the answer gets the stored message once.
    let mut resumed = open(&b, &ann, &before).await;
    let mut answers = 0;
    loop {
        let e = tokio::time::timeout(Duration::from_secs(2), next(&mut resumed)).await;
        let Ok(e) = e else { break };
        if let Some(Kind::MessageCreated(m)) = e.kind
            && m.from_assistant
        {
            answers += 1;
        }
    }
    assert_eq!(answers, 1);
    // And the conversation is free for the next question.
    ai(&b)
        .await
        .ask_assistant(authed(
            pb::AskAssistantRequest {
                conversation_id: g,
                question: "tokens=1 next".into(),
            },
            &bob,
        ))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_the_ai_limits_hold_across_three_instances() {
    let fake = FakeAi::start().await;
    let apps = instances(&redis_url(), 3, |c| {
        fake.configure(c);
        c.ai.ai_max_concurrent = 2;
        c.ai.ai_requests_per_minute = 4;
    })
    .await;
    let (_, ann) = user(&apps[0], "ann").await;
    // Two answers at once, on two instances: a third is refused on the third instance,
    // which alone has none.
    let mut first = chat(&apps[0], &ann, ask("hang")).await.unwrap();
    first.message().await.unwrap().unwrap();
    let mut second = chat(&apps[1], &ann, ask("hang")).await.unwrap();
    second.message().await.unwrap().unwrap();
    let e = chat(&apps[2], &ann, ask("tokens=1")).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(e.message().contains("at once"), "{}", e.message());
    drop((first, second));
    // Four requests a minute across them all: two were made; of four more, two are refused
    // (each instance alone has seen at most two).
    let mut refused = 0;
    for i in 0..4 {
        let mut again = None;
        // A slot comes back once its instance sees the client gone.
        for _ in 0..50 {
            match chat(&apps[i % 3], &ann, ask("tokens=1")).await {
                Ok(s) => {
                    again = Some(s);
                    break;
                }
                Err(e) if e.message().contains("at once") => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                    refused += 1;
                    break;
                }
            }
        }
        if let Some(s) = again {
            read_all(s).await;
        }
    }
    assert_eq!(refused, 2, "four requests a minute across the instances");
}
