//! Mobile push (issue 37) against fakes of FCM HTTP v1 and APNs that check what the real
//! services check: FCM's OAuth token exchange (a service-account JWT signed RS256) and the
//! bearer token on `messages:send`, the message's shape; APNs over HTTP/2 only, its ES256
//! provider token (`kid`, `iss`) and headers. They answer the documented errors
//! (`UNREGISTERED`, `BadDeviceToken`): those devices are removed; the suppression rules hold.

use crate::{
    events::{client, open, send},
    helpers::*,
    notifications::{direct, inbox_client},
    push::push_jobs_done,
};
use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, Version},
    routing::post,
};
use epop::pb;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/push/keys");
const KEY_ID: &str = "KEY1234567";
const TEAM_ID: &str = "TEAM123456";
const TOPIC: &str = "com.example.epop";
const CLIENT_EMAIL: &str = "epop@example-project.iam.gserviceaccount.com";

#[derive(Default)]
struct Seen {
    tokens_issued: usize,
    fcm: Vec<Value>,
    apns: Vec<(String, HashMap<String, String>, Value)>,
    refused: Vec<String>,
}

type Shared = Arc<Mutex<(Seen, String)>>;

fn key(name: &str) -> Vec<u8> {
    std::fs::read(format!("{KEYS}/{name}")).unwrap()
}

async fn token(State(s): State<Shared>, body: String) -> (StatusCode, Json<Value>) {
    let f: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let token_uri = s.lock().unwrap().1.clone();
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[token_uri]);
    v.set_issuer(&[CLIENT_EMAIL]);
    let decoded = jsonwebtoken::decode::<Value>(
        f.get("assertion").map(String::as_str).unwrap_or_default(),
        &DecodingKey::from_rsa_pem(&key("fcm-service-account.pub.pem")).unwrap(),
        &v,
    );
    let ok = f.get("grant_type").map(String::as_str)
        == Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        && decoded.as_ref().is_ok_and(|d| {
            d.claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
        });
    let mut seen = s.lock().unwrap();
    if !ok {
        seen.0.refused.push(format!("token: {decoded:?}"));
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        );
    }
    seen.0.tokens_issued += 1;
    let n = seen.0.tokens_issued;
    (
        StatusCode::OK,
        Json(
            json!({"access_token": format!("fake-access-{n}"), "expires_in": 3600, "token_type": "Bearer"}),
        ),
    )
}

async fn fcm_send(
    State(s): State<Shared>,
    Path(project): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut seen = s.lock().unwrap();
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let valid = project == "example-project"
        && bearer.starts_with("Bearer fake-access-")
        && body["message"]["notification"]["title"].is_string()
        && body["message"]["android"]["collapse_key"].is_string();
    if !valid {
        seen.0.refused.push(format!("fcm: {bearer} {body}"));
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"code": 401}})),
        );
    }
    if body["message"]["token"] == "gone-token" {
        return (
            StatusCode::NOT_FOUND,
            Json(
                json!({"error": {"code": 404, "status": "NOT_FOUND", "message": "Requested entity was not found.",
                "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]}}),
            ),
        );
    }
    seen.0.fcm.push(body);
    (
        StatusCode::OK,
        Json(json!({"name": "projects/example-project/messages/1"})),
    )
}

async fn apns_send(
    State(s): State<Shared>,
    Path(device): Path<String>,
    version: Version,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut seen = s.lock().unwrap();
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let jwt = h("authorization")
        .strip_prefix("bearer ")
        .unwrap_or_default()
        .to_owned();
    let header = jsonwebtoken::decode_header(&jwt).ok();
    let mut v = Validation::new(Algorithm::ES256);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.set_issuer(&[TEAM_ID]);
    let signed = jsonwebtoken::decode::<Value>(
        &jwt,
        &DecodingKey::from_ec_pem(&key("apns-AuthKey.pub.pem")).unwrap(),
        &v,
    );
    let valid = version == Version::HTTP_2
        && header.is_some_and(|h| h.kid.as_deref() == Some(KEY_ID))
        && signed.as_ref().is_ok_and(|d| d.claims["iat"].is_i64())
        && h("apns-topic") == TOPIC
        && h("apns-push-type") == "alert"
        && !h("apns-priority").is_empty()
        && !h("apns-collapse-id").is_empty()
        && body["aps"]["alert"]["body"].is_string();
    if !valid {
        seen.0
            .refused
            .push(format!("apns: {version:?} {signed:?} {headers:?}"));
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"reason": "InvalidProviderToken"})),
        );
    }
    if device == "bad0" {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"reason": "BadDeviceToken"})),
        );
    }
    let kept: HashMap<String, String> = ["apns-priority", "apns-collapse-id", "apns-expiration"]
        .iter()
        .map(|k| (k.to_string(), h(k)))
        .collect();
    seen.0.apns.push((device, kept, body));
    (StatusCode::OK, Json(json!({})))
}

async fn register(app: &TestApp, token: &str, platform: pb::PushPlatform, address: &str) {
    inbox_client(app)
        .await
        .register_push_device(authed(
            pb::RegisterPushDeviceRequest {
                platform: platform.into(),
                address: address.into(),
                name: "phone".into(),
                ..Default::default()
            },
            token,
        ))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn fcm_and_apns_get_authenticated_well_formed_pushes_and_their_gone_devices_are_removed() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shared: Shared = Arc::new(Mutex::new((Seen::default(), format!("{base}/token"))));
    let routes = Router::new()
        .route("/token", post(token))
        .route("/v1/projects/{project}/messages:send", post(fcm_send))
        .route("/3/device/{device}", post(apns_send))
        .with_state(shared.clone());
    let server = tokio::spawn(async move { axum::serve(listener, routes).await });
    let dir = tempfile::tempdir().unwrap();
    let account = dir.path().join("service-account.json");
    let private = String::from_utf8(key("fcm-service-account.pem")).unwrap();
    let json = json!({"type": "service_account", "project_id": "example-project",
        "client_email": CLIENT_EMAIL, "private_key": private, "token_uri": format!("{base}/token")});
    std::fs::write(&account, json.to_string()).unwrap();
    let app = TestApp::spawn_with(|c| {
        c.push.push_delay = std::time::Duration::from_millis(300);
        c.push.fcm_credentials = Some(account.clone());
        c.push.fcm_endpoint = base.clone();
        c.push.apns_key = Some(format!("{KEYS}/apns-AuthKey.p8").into());
        c.push.apns_key_id = KEY_ID.into();
        c.push.apns_team_id = TEAM_ID.into();
        c.push.apns_topic = TOPIC.into();
        c.push.apns_endpoint = base.clone();
    })
    .await;
    let (_, ann) = user(&app, "ann").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let config = inbox_client(&app)
        .await
        .get_push_config(authed(pb::GetPushConfigRequest {}, &bob))
        .await
        .unwrap()
        .into_inner();
    assert!(config.fcm_enabled && config.apns_enabled);
    register(&app, &bob, pb::PushPlatform::Fcm, "good-token").await;
    register(&app, &bob, pb::PushPlatform::Fcm, "gone-token").await;
    register(&app, &bob, pb::PushPlatform::Apns, "aa11bb22").await;
    register(&app, &bob, pb::PushPlatform::Apns, "bad0").await;
    // A device token that is not hex is refused at the boundary.
    let bad = inbox_client(&app)
        .await
        .register_push_device(authed(
            pb::RegisterPushDeviceRequest {
                platform: pb::PushPlatform::Apns.into(),
                address: "not hex".into(),
                ..Default::default()
            },
            &bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&bad), vec!["address"]);
    // A Web Push endpoint must be https on a public host: the server does not post to
    // internal services for whoever registers one.
    let p256dh =
        "BO_pqIUWvsVwmlFPAX8aJv2HRmuemc5CXHRBbtzHKhHUMO5GSKyB9cOkmASIwa25xKczEhuJZtErTr_PpJM94AI";
    for endpoint in [
        "http://push.example.com/x",
        "https://127.0.0.1/x",
        "https://10.1.2.3/x",
        "https://[::1]/x",
        "https://localhost/x",
    ] {
        let refused = inbox_client(&app)
            .await
            .register_push_device(authed(
                pb::RegisterPushDeviceRequest {
                    platform: pb::PushPlatform::Web.into(),
                    address: endpoint.into(),
                    p256dh: p256dh.into(),
                    auth: "BTBZMqHH6r4Tts7J_aSIgg".into(),
                    ..Default::default()
                },
                &bob,
            ))
            .await
            .unwrap_err();
        assert_eq!(violations(&refused), vec!["address"], "{endpoint}");
    }

    let d = direct(&app, &ann, &bob_id).await;
    client(&app)
        .await
        .send_message(authed(send(&d, "hi"), &ann))
        .await
        .unwrap();
    push_jobs_done(&app, 1).await;
    {
        let seen = &shared.lock().unwrap().0;
        assert!(seen.refused.is_empty(), "{:?}", seen.refused);
        assert_eq!(seen.tokens_issued, 1);
        assert_eq!(seen.fcm.len(), 1);
        let m = &seen.fcm[0]["message"];
        assert_eq!(m["token"], "good-token");
        assert_eq!(m["notification"]["body"], "ann: hi");
        assert_eq!(m["android"]["priority"], "HIGH");
        assert_eq!(m["android"]["collapse_key"], d.replace('-', "").as_str());
        assert_eq!(m["data"]["kind"], "direct_message");
        assert_eq!(seen.apns.len(), 1);
        let (device, headers, body) = &seen.apns[0];
        assert_eq!(device, "aa11bb22");
        assert_eq!(headers["apns-priority"], "10");
        assert_eq!(headers["apns-collapse-id"], d.replace('-', ""));
        assert_eq!(body["aps"]["alert"]["body"], "ann: hi");
    }
    let left: Vec<i32> = inbox_client(&app)
        .await
        .list_push_devices(authed(pb::ListPushDevicesRequest {}, &bob))
        .await
        .unwrap()
        .into_inner()
        .devices
        .into_iter()
        .map(|d| d.platform)
        .collect();
    assert_eq!(
        left,
        vec![pb::PushPlatform::Fcm as i32, pb::PushPlatform::Apns as i32]
    );

    // Bob opens the app: nothing more is pushed to his phone, the token is reused.
    let _stream = open(&app, &bob, "").await;
    client(&app)
        .await
        .send_message(authed(send(&d, "are you there?"), &ann))
        .await
        .unwrap();
    push_jobs_done(&app, 2).await;
    let seen = &shared.lock().unwrap().0;
    assert_eq!((seen.fcm.len(), seen.apns.len()), (1, 1));
    server.abort();
}
