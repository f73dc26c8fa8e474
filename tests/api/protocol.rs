//! One port, several protocols: gRPC-Web over HTTP/1.1, reflection, health, HTTP probes.

use crate::helpers::*;
use epop::pb;
use prost::Message;
use std::time::Duration;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

pub fn grpc_web_frame(msg: &impl Message) -> Vec<u8> {
    let body = msg.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// Splits a gRPC-Web body into its data frames and its trailer block.
fn grpc_web_frames(mut body: &[u8]) -> (Vec<Vec<u8>>, String) {
    let (mut data, mut trailers) = (vec![], String::new());
    while body.len() >= 5 {
        let flag = body[0];
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        let payload = body[5..5 + len].to_vec();
        if flag & 0x80 != 0 {
            trailers = String::from_utf8(payload).unwrap();
        } else {
            data.push(payload);
        }
        body = &body[5 + len..];
    }
    (data, trailers)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_raw_grpc_web_request_over_http1_gets_a_grpc_web_reply() {
    let app = TestApp::spawn().await;
    let http = reqwest::Client::builder().http1_only().build().unwrap();
    let login = pb::LoginRequest {
        email: ADMIN_EMAIL.into(),
        password: ADMIN_PASSWORD.into(),
        return_refresh_token: false,
    };
    let reply = http
        .post(format!("{}/epop.v1.AuthService/Login", app.url()))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(grpc_web_frame(&login))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.version(), reqwest::Version::HTTP_11);
    assert_eq!(reply.status(), 200);
    assert!(
        reply.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/grpc-web")
    );
    assert!(reply.headers().get_all("set-cookie").iter().count() >= 1);
    let (data, trailers) = grpc_web_frames(&reply.bytes().await.unwrap());
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    let login = pb::LoginResponse::decode(data[0].as_slice()).unwrap();
    assert_eq!(login.user.unwrap().email, ADMIN_EMAIL);

    // The signed-in browser calls an authenticated RPC the same way.
    let me = http
        .post(format!("{}/epop.v1.UserService/GetMe", app.url()))
        .header("content-type", "application/grpc-web+proto")
        .header("authorization", format!("Bearer {}", login.access_token))
        .body(grpc_web_frame(&pb::GetMeRequest {}))
        .send()
        .await
        .unwrap();
    let (data, _) = grpc_web_frames(&me.bytes().await.unwrap());
    assert_eq!(
        pb::User::decode(data[0].as_slice()).unwrap().email,
        ADMIN_EMAIL
    );

    // Without a token: a trailers-only UNAUTHENTICATED reply, still gRPC-Web.
    let anon = http
        .post(format!("{}/epop.v1.UserService/GetMe", app.url()))
        .header("content-type", "application/grpc-web+proto")
        .body(grpc_web_frame(&pb::GetMeRequest {}))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 200);
    let status = anon
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned());
    let (_, trailers) = grpc_web_frames(&anon.bytes().await.unwrap());
    assert!(status.as_deref() == Some("16") || trailers.contains("grpc-status:16"));
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_web_preflight_allows_only_configured_origins() {
    let app =
        TestApp::spawn_with(|c| c.cors_origins = vec!["https://app.example.com".into()]).await;
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        http.request(
            reqwest::Method::OPTIONS,
            format!("{}/epop.v1.AuthService/Login", app.url()),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,x-grpc-web")
        .send()
    };
    let ok = preflight("https://app.example.com").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(ok.headers()["access-control-allow-credentials"], "true");
    let evil = preflight("https://evil.example.com").await.unwrap();
    assert!(evil.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn reflection_v1_and_v1alpha_list_every_service() {
    use tonic_reflection::pb::{v1, v1alpha};
    let app = TestApp::spawn().await;
    let expected = epop::grpc::SERVICE_NAMES;

    let mut client = v1::server_reflection_client::ServerReflectionClient::new(app.channel().await);
    let req = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let reply = stream.message().await.unwrap().unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        reply.message_response
    else {
        panic!("not a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for s in expected.iter().chain(&["grpc.health.v1.Health"]) {
        assert!(names.iter().any(|n| n == s), "{s} missing from {names:?}");
    }

    let mut alpha =
        v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel().await);
    let req = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "epop.v1.AuthService".into(),
            ),
        ),
    };
    let mut stream = alpha
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let reply = stream.message().await.unwrap().unwrap();
    let Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        reply.message_response
    else {
        panic!("not a file descriptor");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn health_is_serving_only_while_the_database_is_up() {
    let app = TestApp::spawn().await;
    let mut health = HealthClient::new(app.channel().await);
    let check = async |health: &mut HealthClient<_>, service: &str| {
        health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status()
    };
    let mut status = ServingStatus::Unknown;
    for _ in 0..50 {
        status = check(&mut health, "").await;
        if status == ServingStatus::Serving {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, ServingStatus::Serving);
    assert_eq!(
        check(&mut health, "epop.v1.AuthService").await,
        ServingStatus::Serving
    );
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{}/readyz", app.url()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // The database goes away.
    admin_sql(&format!("DROP DATABASE {} WITH (FORCE)", app.db_name)).await;
    for _ in 0..100 {
        status = check(&mut health, "").await;
        if status == ServingStatus::NotServing {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, ServingStatus::NotServing);
    assert_eq!(
        http.get(format!("{}/readyz", app.url()))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(
        http.get(format!("{}/healthz", app.url()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_on_the_same_port_gets_probes_and_404s() {
    let app = TestApp::spawn().await;
    let http = reqwest::Client::builder().http1_only().build().unwrap();
    let ok = http
        .get(format!("{}/healthz", app.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.headers().contains_key("x-request-id"));
    assert_eq!(ok.headers()["x-content-type-options"], "nosniff");
    assert_eq!(ok.headers()["x-frame-options"], "DENY");
    // Plain HTTP here and nothing said about a proxy in front: no HSTS.
    assert!(!ok.headers().contains_key("strict-transport-security"));
    let missing = http
        .get(format!("{}/nope", app.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn hsts_is_sent_when_configured_for_a_proxy_that_ends_tls() {
    let app = TestApp::spawn_with(|c| c.hsts = true).await;
    let r = reqwest::get(format!("{}/healthz", app.url()))
        .await
        .unwrap();
    assert_eq!(
        r.headers()["strict-transport-security"],
        "max-age=63072000; includeSubDomains"
    );
}
