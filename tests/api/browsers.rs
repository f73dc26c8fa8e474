//! The REST edge as a browser on another origin uses it: CORS preflights and answers from the
//! allow-list, the event stream authenticated by its HttpOnly cookie (what `EventSource` can
//! send), standard 401 challenges, and a case-insensitive `Bearer` scheme.

use crate::{
    events::{ann_and_bob_in_a_group, client, send},
    helpers::*,
};
use epop::pb;
use reqwest::{Client, Method};
use std::time::Duration;

const ORIGIN: &str = "http://app.example.test:5173";

async fn spawn() -> TestApp {
    TestApp::spawn_with(|c| c.cors_origins = vec![ORIGIN.into()]).await
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::test(flavor = "multi_thread")]
async fn preflights_and_answers_carry_cors_for_listed_origins_only() {
    let app = spawn().await;
    let http = Client::new();
    let preflight = |origin: &str| {
        http.request(Method::OPTIONS, format!("{}/api/projects/x", app.url()))
            .header("origin", origin)
            .header("access-control-request-method", "PUT")
            .header(
                "access-control-request-headers",
                "authorization,content-type,last-event-id",
            )
            .send()
    };
    let ok = preflight(ORIGIN).await.unwrap();
    assert!(ok.status().is_success(), "{}", ok.status());
    assert_eq!(header(&ok, "access-control-allow-origin"), ORIGIN);
    assert_eq!(header(&ok, "access-control-allow-credentials"), "true");
    let methods = header(&ok, "access-control-allow-methods");
    for m in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        assert!(methods.contains(m), "{methods}");
    }
    let headers = header(&ok, "access-control-allow-headers").to_lowercase();
    for h in ["authorization", "content-type", "last-event-id"] {
        assert!(headers.contains(h), "{headers}");
    }
    assert!(header(&ok, "vary").to_lowercase().contains("origin"));

    let other = preflight("http://evil.example.test").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    assert!(
        other
            .headers()
            .get("access-control-allow-credentials")
            .is_none()
    );

    // An answer to a listed origin names it; to others, nothing.
    let token = app.admin_token().await;
    let me = |origin: &'static str| {
        http.get(format!("{}/api/users/me", app.url()))
            .bearer_auth(&token)
            .header("origin", origin)
            .send()
    };
    let r = me(ORIGIN).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), ORIGIN);
    assert!(header(&r, "vary").to_lowercase().contains("origin"));
    let r = me("http://evil.example.test").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_stream_takes_its_http_only_cookie_and_resumes_with_last_event_id() {
    let app = spawn().await;
    let (ann, bob, g) = ann_and_bob_in_a_group(&app).await;
    let http = Client::new();
    let r = http
        .post(format!("{}/api/events/session", app.url()))
        .bearer_auth(&bob)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let set = header(&r, "set-cookie");
    for part in [
        "epop_events=",
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/api/events",
        "Max-Age=",
    ] {
        assert!(set.contains(part), "{set}");
    }
    let cookie = set.split(';').next().unwrap().to_owned();
    // Only the cookie, as EventSource sends it.
    let events = |last: Option<String>| {
        let mut rq = http
            .get(format!("{}/api/events", app.url()))
            .header("cookie", &cookie)
            .header("accept", "text/event-stream");
        if let Some(id) = last {
            rq = rq.header("last-event-id", id);
        }
        rq.send()
    };
    let mut stream = events(None).await.unwrap();
    assert_eq!(stream.status(), 200);
    // Once the stream is up (its presence snapshot arrived), a message comes live.
    let read_until = async |r: &mut reqwest::Response, needle: &str| {
        let mut text = String::new();
        while !text.contains(needle) {
            let chunk = tokio::time::timeout(Duration::from_secs(5), r.chunk())
                .await
                .expect("an event within 5 s")
                .unwrap()
                .expect("the stream is open");
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        text
    };
    read_until(&mut stream, "presenceSnapshot").await;
    let mut c = client(&app).await;
    c.send_message(authed(send(&g, "live one"), &ann))
        .await
        .unwrap();
    let text = read_until(&mut stream, "live one").await;
    let id = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("an id line")
        .to_owned();
    drop(stream);
    c.send_message(authed(send(&g, "while away"), &ann))
        .await
        .unwrap();
    let mut resumed = events(Some(id)).await.unwrap();
    let text = read_until(&mut resumed, "while away").await;
    assert!(!text.contains("live one"), "only what was missed: {text}");

    // The cookie is for the event stream only.
    let other = http
        .get(format!("{}/api/users/me", app.url()))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_says_how_to_authenticate_and_the_scheme_is_case_insensitive() {
    let app = spawn().await;
    let http = Client::new();
    let url = format!("{}/api/users/me", app.url());
    let none = http.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(header(&none, "www-authenticate"), "Bearer realm=\"epop\"");
    let bad = http
        .get(&url)
        .header("authorization", "Bearer not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    assert_eq!(
        header(&bad, "www-authenticate"),
        "Bearer realm=\"epop\", error=\"invalid_token\""
    );
    let token = app.admin_token().await;
    for scheme in ["BEARER", "bearer", "Bearer", "bEaReR"] {
        let r = http
            .get(&url)
            .header("authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    let mut r = tonic::Request::new(pb::GetMeRequest {});
    r.metadata_mut()
        .insert("authorization", format!("BEARER {token}").parse().unwrap());
    app.users().await.get_me(r).await.expect("gRPC too");
}
