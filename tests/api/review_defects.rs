//! Defects of the second review on input and the assistant: values out of the database's
//! range are 400s naming their field (never 500s), a provider's failure before its first
//! token is the call's status (REST too), its address and key never reach a caller, and NUL
//! characters in its output are taken out.

use crate::{fake_ai::FakeAi, helpers::*, tasks::project};
use base64::Engine;
use epop::pb;
use serde_json::{Value, json};

/// The status and body of a REST call with `token`.
async fn rest(
    app: &TestApp,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rq = reqwest::Client::new()
        .request(method, format!("{}{path}", app.url()))
        .bearer_auth(token);
    if let Some(b) = body {
        rq = rq.json(&b);
    }
    let r = rq.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The fields a `google.rpc.Status` JSON names as violated.
fn fields(body: &Value) -> Vec<String> {
    body["details"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|d| d["fieldViolations"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v["field"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn dates_and_page_tokens_out_of_range_are_400s_naming_their_field() {
    let fake = FakeAi::start().await;
    let app = TestApp::spawn_with(|c| fake.configure(c)).await;
    let (_, ann) = user(&app, "ann").await;
    let p = project(&app, &ann, &[]).await;
    let get = reqwest::Method::GET;
    for date in ["-5000-01-01", "0000-06-01", "+10000-01-01"] {
        let task = json!({ "projectId": p, "title": "t", "dueDate": date });
        let (status, body) =
            rest(&app, &ann, reqwest::Method::POST, "/api/tasks", Some(task)).await;
        assert_eq!(
            (status, fields(&body)),
            (400, vec!["due_date".to_owned()]),
            "{date}: {body}"
        );
        let list = format!("/api/tasks?projectId={p}&dueBefore={date}");
        let (status, body) = rest(&app, &ann, get.clone(), &list, None).await;
        assert_eq!(
            (status, fields(&body)),
            (400, vec!["due_before".to_owned()]),
            "{date}: {body}"
        );
    }
    // Hand-made page tokens holding a time of year -200000 (and 20000).
    for year in ["-200000", "+020000"] {
        let key = json!([format!("{year}-01-01T00:00:00Z"), uuid::Uuid::nil()]);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.to_string());
        for path in ["/api/conversations", "/api/ai/chats"] {
            let (status, body) = rest(
                &app,
                &ann,
                get.clone(),
                &format!("{path}?pageToken={token}"),
                None,
            )
            .await;
            assert_eq!(
                (status, fields(&body)),
                (400, vec!["page_token".to_owned()]),
                "{path} {year}: {body}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_failure_before_the_first_token_is_the_calls_status_over_rest() {
    let fake = FakeAi::start().await;
    let app = TestApp::spawn_with(|c| fake.configure(c)).await;
    let (_, ann) = user(&app, "ann").await;
    for (question, status) in [("status=503", 503), ("status=429", 429)] {
        let r = reqwest::Client::new()
            .post(format!("{}/api/ai/chat", app.url()))
            .bearer_auth(&ann)
            .header("accept", "text/event-stream")
            .json(&json!({ "messages": [{ "role": "CHAT_ROLE_USER", "content": question }] }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{question}");
    }
    // A good answer still streams (200, then its tokens).
    let r = reqwest::Client::new()
        .post(format!("{}/api/ai/chat", app.url()))
        .bearer_auth(&ann)
        .header("accept", "text/event-stream")
        .json(&json!({ "messages": [{ "role": "CHAT_ROLE_USER", "content": "tokens=3" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("t3"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_providers_address_and_key_never_reach_a_caller() {
    // A provider that cannot be reached, named with its key in the URL.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let base = format!("http://127.0.0.1:{port}/v1?api-key=very-secret-key");
    let app = TestApp::spawn_with(|c| {
        c.ai.ai_base_url = Some(base.clone());
        c.ai.ai_model = "fake-model".into();
    })
    .await;
    let (_, ann) = user(&app, "ann").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let leaks = |text: &str| {
        [
            "127.0.0.1",
            &port.to_string(),
            "very-secret-key",
            "api-key",
            "error sending",
        ]
        .into_iter()
        .filter(|s| text.contains(s))
        .map(str::to_owned)
        .collect::<Vec<_>>()
    };
    let mut ai = pb::ai_service_client::AiServiceClient::new(app.channel().await);
    let asked = ai
        .chat(authed(
            pb::ChatRequest {
                messages: vec![pb::ChatMessage {
                    role: pb::ChatRole::User.into(),
                    content: "hello".into(),
                }],
                ..Default::default()
            },
            &ann,
        ))
        .await;
    // The call's status, or the stream's when the call itself was answered.
    let e = match asked {
        Err(e) => e,
        Ok(r) => {
            let mut s = r.into_inner();
            loop {
                match s.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("an answer from an unreachable provider"),
                    Err(e) => break e,
                }
            }
        }
    };
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(leaks(e.message()).is_empty(), "{e:?}");
    // In a conversation, what every member receives.
    let g = crate::events::group(&app, &ann, &[&bob_id]).await;
    let mut stream = crate::events::open(&app, &bob, "").await;
    ai.ask_assistant(authed(
        pb::AskAssistantRequest {
            conversation_id: g.clone(),
            question: "hello".into(),
        },
        &ann,
    ))
    .await
    .unwrap();
    let error = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let e = crate::events::next(&mut stream).await;
            if let Some(pb::event::Kind::AssistantDelta(d)) = e.kind
                && d.done
            {
                return d.error;
            }
        }
    })
    .await
    .expect("the answer ends");
    assert!(!error.is_empty());
    assert!(leaks(&error).is_empty(), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn nul_characters_from_the_provider_are_taken_out() {
    let fake = FakeAi::start().await;
    let app = TestApp::spawn_with(|c| fake.configure(c)).await;
    let (_, ann) = user(&app, "ann").await;
    let mut ai = pb::ai_service_client::AiServiceClient::new(app.channel().await);
    let mut stream = ai
        .chat(authed(
            pb::ChatRequest {
                messages: vec![pb::ChatMessage {
                    role: pb::ChatRole::User.into(),
                    content: "nul tokens=3".into(),
                }],
                ..Default::default()
            },
            &ann,
        ))
        .await
        .expect("the answer is not refused")
        .into_inner();
    let (mut text, mut chat_id) = (String::new(), String::new());
    while let Some(c) = stream.message().await.expect("the answer completes") {
        text.push_str(&c.delta);
        chat_id = c.chat_id;
    }
    assert_eq!(text, "t1x t2x t3x ");
    let chat = ai
        .get_chat(authed(
            pb::GetChatRequest {
                id: chat_id,
                ..Default::default()
            },
            &ann,
        ))
        .await
        .expect("the saved chat reads back")
        .into_inner();
    let answer = &chat.turns.last().unwrap().content;
    assert_eq!(answer, "t1x t2x t3x ");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_who_leaves_stops_receiving_the_assistants_answer() {
    use crate::events::{ann_and_bob_in_a_group, client, next, open};
    use epop::pb::event::Kind;
    use std::time::{Duration, Instant};
    let fake = FakeAi::start().await;
    let app = TestApp::spawn_with(|c| fake.configure(c)).await;
    let (ann, bob, g) = ann_and_bob_in_a_group(&app).await;
    let mut bobs = open(&app, &bob, "").await;
    let mut anns = open(&app, &ann, "").await;
    let mut ai = pb::ai_service_client::AiServiceClient::new(app.channel().await);
    ai.ask_assistant(authed(
        pb::AskAssistantRequest {
            conversation_id: g.clone(),
            question: "tokens=30 every=100".into(),
        },
        &ann,
    ))
    .await
    .unwrap();
    // Bob gets the answer's first pieces, then leaves.
    loop {
        if let Some(Kind::AssistantDelta(_)) = next(&mut bobs).await.kind {
            break;
        }
    }
    client(&app)
        .await
        .leave_conversation(authed(
            pb::LeaveConversationRequest {
                conversation_id: g.clone(),
            },
            &bob,
        ))
        .await
        .unwrap();
    let left = Instant::now();
    // Ann reads the answer to its end (3 s); Bob's stream, meanwhile, gets no piece of it
    // later than the members' re-read (250 ms) after he left.
    let bob_reads = tokio::spawn(async move {
        let mut last_piece = None;
        while let Ok(Ok(Some(e))) =
            tokio::time::timeout(Duration::from_secs(5), bobs.message()).await
        {
            if let Some(Kind::AssistantDelta(_)) = e.kind {
                last_piece = Some(left.elapsed());
            }
        }
        last_piece
    });
    loop {
        if let Some(Kind::AssistantDelta(d)) = next(&mut anns).await.kind
            && d.done
        {
            assert!(d.error.is_empty(), "{}", d.error);
            break;
        }
    }
    let last = bob_reads.await.unwrap();
    assert!(
        last.is_none_or(|t| t < Duration::from_millis(600)),
        "Bob still got the answer {last:?} after he left"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_cut_off_by_their_client_are_counted_with_estimated_tokens() {
    use std::time::Duration;
    let fake = FakeAi::start().await;
    let app = TestApp::spawn_with(|c| fake.configure(c)).await;
    let (ann_id, ann) = user(&app, "ann").await;
    let mut ai = pb::ai_service_client::AiServiceClient::new(app.channel().await);
    // Three answers of 40 tokens, each dropped by its client after 35.
    for _ in 0..3 {
        let mut s = ai
            .chat(authed(
                pb::ChatRequest {
                    messages: vec![pb::ChatMessage {
                        role: pb::ChatRole::User.into(),
                        content: "tokens=40 every=10".into(),
                    }],
                    ..Default::default()
                },
                &ann,
            ))
            .await
            .unwrap()
            .into_inner();
        for _ in 0..35 {
            s.message().await.unwrap().unwrap();
        }
    }
    let admin = app.admin_token().await;
    let usage = async || {
        app.admin()
            .await
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
            .usage
    };
    // Recorded when each stream is dropped: wait for the third.
    let mut rows = usage().await;
    for _ in 0..50 {
        if rows.first().is_some_and(|r| r.cut_off == 3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        rows = usage().await;
    }
    let r = &rows[0];
    assert_eq!(
        (r.requests, r.cut_off, r.completion_tokens),
        (3, 3, 0),
        "{r:?}"
    );
    // 35 pieces of "tN " (3-4 characters) each, about a token each.
    assert!(
        (3 * 25..=3 * 40).contains(&r.estimated_completion_tokens),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reservations_and_stored_bytes_are_bounded_per_user() {
    use crate::files::{files, upload};
    let app = TestApp::spawn_with(|c| {
        c.files.files_max_pending = 3;
        c.files.files_max_pending_bytes = 1000;
        c.files.files_quota_bytes = 1500;
        c.write_rate_limit = "off".parse().unwrap();
    })
    .await;
    let (_, ann) = user(&app, "ann").await;
    let (_, bob) = user(&app, "bob").await;
    let reserve = |token: &str, size: i64| {
        let token = token.to_owned();
        let app = &app;
        async move {
            files(app)
                .await
                .presign_upload(authed(
                    pb::PresignUploadRequest {
                        file_name: "f.bin".into(),
                        content_type: "application/octet-stream".into(),
                        size,
                        checksum_sha256: String::new(),
                    },
                    &token,
                ))
                .await
        }
    };
    // Three pending reservations, then a fourth is refused, naming the limit.
    for _ in 0..3 {
        reserve(&ann, 10).await.expect("within the limits");
    }
    let e = reserve(&ann, 10).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    assert!(e.message().contains("pending uploads"), "{e:?}");
    // Another user has limits of their own; bytes pending are bounded too.
    reserve(&bob, 900)
        .await
        .expect("900 of 1,000 pending bytes");
    let e = reserve(&bob, 200).await.unwrap_err();
    assert!(e.message().contains("exceed 1000 bytes"), "{e:?}");
    // Stored bytes: attached files count against the quota (1,500 here).
    let (_, carol) = user(&app, "carol").await;
    let data = vec![7u8; 800];
    let id = upload(&app, &carol, "a.bin", &data).await;
    let (dave_id, _) = user(&app, "dave").await;
    let g = crate::events::group(&app, &carol, &[&dave_id]).await;
    let mut send = crate::events::send(&g, "a file");
    send.attachment_ids = vec![id];
    crate::events::client(&app)
        .await
        .send_message(authed(send, &carol))
        .await
        .unwrap();
    let e = reserve(&carol, 800).await.unwrap_err();
    assert!(e.message().contains("storage quota of 1500 bytes"), "{e:?}");
    reserve(&carol, 600).await.expect("within the quota");
    // Over REST: 429.
    let r = reqwest::Client::new()
        .get(format!(
            "{}/api/files/presign-upload?fileName=x.bin&contentType=application/octet-stream&size=500",
            app.url()
        ))
        .bearer_auth(&carol)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saved_chat_stores_each_turn_once_stays_bounded_and_reads_back_in_pages() {
    let fake = FakeAi::start().await;
    let app = TestApp::spawn_with(|c| {
        fake.configure(c);
        c.ai.ai_requests_per_minute = 1000;
    })
    .await;
    let (_, ann) = user(&app, "ann").await;
    let mut ai = pb::ai_service_client::AiServiceClient::new(app.channel().await);
    // Each call sends the whole conversation so far (as chat front ends do), 50 turns of
    // 32,000 characters at most; the history is the saved chat's.
    let long = "x".repeat(32_000);
    let history = |question: &str| {
        let mut m: Vec<pb::ChatMessage> = (0..49)
            .map(|i| pb::ChatMessage {
                role: if i % 2 == 0 {
                    pb::ChatRole::User
                } else {
                    pb::ChatRole::Assistant
                }
                .into(),
                content: long.clone(),
            })
            .collect();
        m.push(pb::ChatMessage {
            role: pb::ChatRole::User.into(),
            content: question.into(),
        });
        m
    };
    let mut chat_id = String::new();
    for i in 0..12 {
        let mut s = ai
            .chat(authed(
                pb::ChatRequest {
                    messages: if i == 0 {
                        vec![pb::ChatMessage {
                            role: pb::ChatRole::User.into(),
                            content: "tokens=2 first".into(),
                        }]
                    } else {
                        history(&format!("tokens=2 question {i}"))
                    },
                    chat_id: chat_id.clone(),
                    ..Default::default()
                },
                &ann,
            ))
            .await
            .unwrap()
            .into_inner();
        while let Some(c) = s.message().await.unwrap() {
            chat_id = c.chat_id;
        }
    }
    // 12 questions and 12 answers, stored once each, read back 10 at a time.
    let (mut turns, mut token, mut pages) = (vec![], String::new(), 0);
    loop {
        let page = ai
            .get_chat(authed(
                pb::GetChatRequest {
                    id: chat_id.clone(),
                    page_size: 10,
                    page_token: token,
                },
                &ann,
            ))
            .await
            .expect("GetChat works however long the chat")
            .into_inner();
        pages += 1;
        turns.extend(page.turns);
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!((turns.len(), pages), (24, 3));
    assert_eq!(turns[22].content, "tokens=2 question 11");
    assert!(
        turns.iter().all(|t| t.content.len() < 1000),
        "no history stored again"
    );
    // A chat near its bound (500 turns) takes no more: start a new one.
    db_sql(
        &app.db_name,
        &format!(
            "INSERT INTO ai_chat_turns (chat_id, role, content) \
             SELECT '{chat_id}', 'user', 'filler' FROM generate_series(1, 475)"
        ),
    )
    .await;
    let full = ai
        .chat(authed(
            pb::ChatRequest {
                messages: history("tokens=2 one more"),
                chat_id: chat_id.clone(),
                ..Default::default()
            },
            &ann,
        ))
        .await
        .unwrap_err();
    assert_eq!(full.code(), tonic::Code::FailedPrecondition, "{full:?}");
    assert!(full.message().contains("start a new one"), "{full:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mention_must_name_a_member_on_send_and_on_edit() {
    use crate::events::{ann_and_bob_in_a_group, client};
    let app = TestApp::spawn().await;
    let (ann, bob, g) = ann_and_bob_in_a_group(&app).await;
    let bob_id = my_id(&app, &bob).await;
    let (carol_id, _) = user(&app, "carol").await;
    let mention = |who: &str| -> pb::SendMessageRequest {
        let doc = json!({"type":"doc","content":[{"type":"paragraph","content":[
            {"type":"text","text":"hi "},
            {"type":"mention","attrs":{"id": who, "label": "someone"}}]}]});
        pb::SendMessageRequest {
            content: Some(epop::grpc::convert::json_to_struct(&doc)),
            ..crate::events::send(&g, "x")
        }
    };
    let mut c = client(&app).await;
    let sent = c
        .send_message(authed(mention(&bob_id), &ann))
        .await
        .expect("a member may be mentioned")
        .into_inner();
    let e = c
        .send_message(authed(mention(&carol_id), &ann))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert_eq!(violations(&e), ["content"]);
    // Editing a message to mention an outsider is refused the same way.
    let edit = pb::UpdateMessageRequest {
        conversation_id: g.clone(),
        message_id: sent.id.clone(),
        content: mention(&carol_id).content,
    };
    let e = c.update_message(authed(edit, &ann)).await.unwrap_err();
    assert_eq!(violations(&e), ["content"]);
    let outsiders = db_count(
        &app.db_name,
        &format!("SELECT count(*) AS n FROM messages WHERE content::text LIKE '%{carol_id}%'"),
    )
    .await;
    assert_eq!(outsiders, 0);
}
