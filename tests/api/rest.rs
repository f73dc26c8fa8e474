//! The REST/JSON edge over plain HTTP: the seed's routes, binding, JSON mapping, errors,
//! the refresh cookie, and server streams as SSE and NDJSON.

use crate::helpers::*;
use epop::pb;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

pub(crate) async fn rest_login(app: &TestApp, http: &Client) -> (String, reqwest::Response) {
    let r = http
        .post(format!("{}/api/auth/login", app.url()))
        .json(&json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = r.headers().clone();
    let body: Value = r.json().await.unwrap();
    let mut fake = http::Response::new("");
    *fake.headers_mut() = token;
    (
        body["accessToken"].as_str().unwrap().to_owned(),
        reqwest::Response::from(fake),
    )
}

pub(crate) fn refresh_cookie(r: &reqwest::Response) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.contains("Path=/api/auth"))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_of_the_seed_is_served_with_its_verb() {
    let app = TestApp::spawn().await;
    let http = Client::new();
    let (token, _) = rest_login(&app, &http).await;
    let id = uuid::Uuid::new_v4();
    // (verb, path, body, the status the route must answer with this input)
    let cases: Vec<(Method, String, Value, u16)> = vec![
        (Method::POST, "/api/auth/refresh".into(), json!({}), 401),
        (Method::POST, "/api/auth/logout".into(), json!({}), 200),
        (
            Method::POST,
            "/api/auth/password-reset".into(),
            json!({ "email": "nobody@example.com" }),
            200,
        ),
        (
            Method::POST,
            "/api/auth/password-reset/confirm".into(),
            json!({ "token": "x", "newPassword": "long-enough-1" }),
            400,
        ),
        (Method::GET, "/api/projects".into(), json!(null), 200),
        (
            Method::POST,
            "/api/projects".into(),
            json!({ "name": "p" }),
            200,
        ),
        (Method::GET, format!("/api/projects/{id}"), json!(null), 404),
        (
            Method::PUT,
            format!("/api/projects/{id}"),
            json!({ "name": "p" }),
            404,
        ),
        (
            Method::DELETE,
            format!("/api/projects/{id}"),
            json!(null),
            404,
        ),
        (
            Method::GET,
            format!("/api/tasks?projectId={id}"),
            json!(null),
            404,
        ),
        (
            Method::POST,
            "/api/tasks".into(),
            json!({ "projectId": id, "title": "t" }),
            404,
        ),
        (
            Method::PUT,
            format!("/api/tasks/{id}"),
            json!({ "title": "t" }),
            404,
        ),
        (Method::GET, "/api/conversations".into(), json!(null), 200),
        (Method::POST, "/api/conversations".into(), json!({}), 400),
        (
            Method::GET,
            format!("/api/conversations/{id}/messages"),
            json!(null),
            404,
        ),
        (
            Method::POST,
            format!("/api/conversations/{id}/messages"),
            json!({ "content": { "type": "doc", "content": [{ "type": "paragraph", "content": [{ "type": "text", "text": "hi" }] }] } }),
            404,
        ),
        (
            Method::GET,
            "/api/files/presign-upload?fileName=a.txt".into(),
            json!(null),
            200,
        ),
        (
            Method::GET,
            format!("/api/files/presign-download?id={id}"),
            json!(null),
            404,
        ),
        (
            Method::POST,
            "/api/ai/chat".into(),
            json!({ "messages": [] }),
            400,
        ),
        (Method::GET, "/api/admin/users".into(), json!(null), 200),
        (
            Method::POST,
            "/api/admin/users".into(),
            json!({ "email": "n@example.com", "password": "long-enough-1" }),
            200,
        ),
        (
            Method::PUT,
            format!("/api/admin/users/{id}"),
            json!({ "displayName": "x" }),
            404,
        ),
        (
            Method::DELETE,
            format!("/api/admin/users/{id}"),
            json!(null),
            404,
        ),
    ];
    for (method, path, body, expected) in cases {
        let mut req = http
            .request(method.clone(), format!("{}{path}", app.url()))
            .bearer_auth(&token);
        if !body.is_null() {
            req = req.json(&body);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), expected, "{method} {path}");
        let body: Value = r.json().await.unwrap();
        if expected >= 400 {
            assert!(
                body["code"].is_i64() && body["message"].is_string(),
                "{method} {path}: {body}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn path_query_and_body_bind_with_proto_or_camel_case_names() {
    let app = TestApp::spawn().await;
    let http = Client::new();
    let (token, _) = rest_login(&app, &http).await;
    let url = |p: &str| format!("{}{p}", app.url());
    for i in 0..3 {
        let r = http
            .post(url("/api/admin/users"))
            .bearer_auth(&token)
            .json(&json!({ "email": format!("q{i}@example.com"), "display_name": format!("Q {i}"), "password": "long-enough-1", "role": "ROLE_USER" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Query: camelCase and proto names, enums by name and by number.
    let page: Value = http
        .get(url("/api/admin/users?pageSize=2&role=ROLE_USER"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["users"].as_array().unwrap().len(), 2);
    let next = page["nextPageToken"].as_str().unwrap();
    let rest: Value = http
        .get(url(&format!(
            "/api/admin/users?page_size=2&role=1&page_token={next}"
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rest["users"].as_array().unwrap().len(), 1);
    assert!(
        rest.get("nextPageToken").is_none(),
        "default values are left out"
    );

    // Path variable + body with a FieldMask in its JSON string form.
    let id = page["users"][0]["id"].as_str().unwrap().to_owned();
    let updated: Value = http
        .put(url(&format!("/api/admin/users/{id}")))
        .bearer_auth(&token)
        .json(&json!({ "updateMask": "displayName", "displayName": "Renamed", "email": "ignored@example.com" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(updated["displayName"], "Renamed");
    assert_ne!(updated["email"], "ignored@example.com");
    // The additional binding (PATCH) reaches the same RPC.
    let patched = http
        .patch(url(&format!("/api/admin/users/{id}")))
        .bearer_auth(&token)
        .json(&json!({ "displayName": "Patched" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        patched.json::<Value>().await.unwrap()["displayName"],
        "Patched"
    );

    // Canonical JSON out: RFC 3339 timestamps, enums by name, camelCase.
    assert!(updated["createTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(updated["role"], "ROLE_USER");
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_have_the_standard_status_and_a_google_rpc_status_body() {
    let app = TestApp::spawn().await;
    app.create_user("plain@example.com", "plain-password-1", pb::Role::User)
        .await;
    let http = Client::new();
    let (admin, _) = rest_login(&app, &http).await;
    let user = app
        .login("plain@example.com", "plain-password-1")
        .await
        .access_token;
    let url = |p: &str| format!("{}{p}", app.url());
    let send = async |req: reqwest::RequestBuilder| {
        let r = req.send().await.unwrap();
        let status = r.status();
        let allow = r
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, r.json::<Value>().await.unwrap(), allow)
    };

    let (s, b, _) = send(http.get(url("/api/users/me"))).await;
    assert_eq!(
        (s, b["code"].as_i64()),
        (StatusCode::UNAUTHORIZED, Some(16))
    );
    let (s, b, _) = send(http.get(url("/api/admin/users")).bearer_auth(&user)).await;
    assert_eq!((s, b["code"].as_i64()), (StatusCode::FORBIDDEN, Some(7)));
    let (s, _, _) = send(
        http.get(url(&format!("/api/admin/users/{}", uuid::Uuid::new_v4())))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b, _) = send(
        http.post(url("/api/admin/users"))
            .bearer_auth(&admin)
            .json(&json!({ "email": "plain@example.com", "password": "long-enough-1" })),
    )
    .await;
    assert_eq!((s, b["code"].as_i64()), (StatusCode::CONFLICT, Some(6)));
    let (s, b, _) = send(
        http.post(url("/api/admin/users"))
            .bearer_auth(&admin)
            .json(&json!({ "email": "bad", "password": "long-enough-1" })),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        b["details"][0]["@type"],
        "type.googleapis.com/google.rpc.BadRequest"
    );
    assert_eq!(b["details"][0]["fieldViolations"][0]["field"], "email");

    // Decoding errors name the field too: wrong type, unknown field, bad JSON, bad query.
    let (s, b, _) = send(
        http.post(url("/api/admin/users"))
            .bearer_auth(&admin)
            .json(&json!({ "email": 5 })),
    )
    .await;
    assert_eq!(
        (s, b["details"][0]["fieldViolations"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("email"))
    );
    let (s, b, _) = send(
        http.post(url("/api/admin/users"))
            .bearer_auth(&admin)
            .json(&json!({ "emial": "a@b.c" })),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(b["message"].as_str().unwrap().contains("emial"), "{b}");
    let (s, b, _) = send(
        http.post(url("/api/admin/users"))
            .bearer_auth(&admin)
            .body("{not json"),
    )
    .await;
    assert_eq!(
        (s, b["details"][0]["fieldViolations"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("body"))
    );
    let (s, b, _) = send(
        http.get(url("/api/admin/users?pageSize=many"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(
        (s, b["details"][0]["fieldViolations"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("pageSize"))
    );
    let (s, b, _) = send(
        http.get(url("/api/admin/users?role=ROLE_KING"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(
        (s, b["details"][0]["fieldViolations"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("role"))
    );
    let (s, b, _) = send(
        http.get(url("/api/admin/users?colour=red"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(
        (s, b["details"][0]["fieldViolations"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("colour"))
    );

    // NUL cannot be stored by PostgreSQL: a clear 400, not a 500.
    let (s, b, _) = send(http.get(url("/api/users?query=a%00b")).bearer_auth(&admin)).await;
    assert_eq!(
        (s, b["details"][0]["fieldViolations"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("query"))
    );
    let forged = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("[\"a\\u0000\",\"{}\"]", uuid::Uuid::nil()))
    };
    let (s, b, _) = send(
        http.get(url(&format!("/api/users?pageToken={forged}")))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(
        (s, b["details"][0]["fieldViolations"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("page_token"))
    );

    let (s, b, _) = send(http.get(url("/api/nothing-here")).bearer_auth(&admin)).await;
    assert_eq!((s, b["code"].as_i64()), (StatusCode::NOT_FOUND, Some(5)));
    let (s, _, allow) = send(http.delete(url("/api/users/me")).bearer_auth(&admin)).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(allow.as_deref(), Some("GET, PATCH"));
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_and_logout_use_the_http_only_cookie() {
    let app = TestApp::spawn().await;
    let http = Client::new();
    let (_, login) = rest_login(&app, &http).await;
    let cookie = refresh_cookie(&login);
    assert!(login.headers().get_all("set-cookie").iter().any(|v| {
        let v = v.to_str().unwrap();
        v.contains("HttpOnly")
            && v.contains("Secure")
            && v.contains("SameSite=Strict")
            && v.contains("Path=/api/auth")
    }));
    let url = |p: &str| format!("{}{p}", app.url());
    let refreshed = http
        .post(url("/api/auth/refresh"))
        .header("cookie", &cookie)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);
    let new_cookie = refresh_cookie(&refreshed);
    assert_ne!(new_cookie, cookie);
    let body: Value = refreshed.json().await.unwrap();
    assert!(body["accessToken"].is_string());
    assert!(
        body.get("refreshToken").is_none(),
        "the token stays in the cookie"
    );

    let out = http
        .post(url("/api/auth/logout"))
        .header("cookie", &new_cookie)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200);
    assert!(
        out.headers()
            .get_all("set-cookie")
            .iter()
            .all(|v| v.to_str().unwrap().contains("Max-Age=0"))
    );
    let after = http
        .post(url("/api/auth/refresh"))
        .header("cookie", &new_cookie)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_covers_every_route_with_resolvable_schemas() {
    let app = TestApp::spawn().await;
    let doc: Value = reqwest::get(format!("{}/api/openapi.json", app.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for (verb, path) in [
        ("post", "/api/auth/login"),
        ("post", "/api/auth/refresh"),
        ("post", "/api/auth/logout"),
        ("post", "/api/auth/password-reset"),
        ("post", "/api/auth/password-reset/confirm"),
        ("get", "/api/projects"),
        ("post", "/api/projects"),
        ("get", "/api/projects/{id}"),
        ("put", "/api/projects/{id}"),
        ("delete", "/api/projects/{id}"),
        ("get", "/api/tasks"),
        ("post", "/api/tasks"),
        ("put", "/api/tasks/{id}"),
        ("get", "/api/conversations"),
        ("post", "/api/conversations"),
        ("get", "/api/conversations/{conversation_id}/messages"),
        ("post", "/api/conversations/{conversation_id}/messages"),
        ("get", "/api/files/presign-upload"),
        ("get", "/api/files/presign-download"),
        ("post", "/api/ai/chat"),
        ("get", "/api/admin/users"),
        ("post", "/api/admin/users"),
        ("put", "/api/admin/users/{id}"),
        ("delete", "/api/admin/users/{id}"),
    ] {
        assert!(
            doc["paths"][path][verb].is_object(),
            "{verb} {path} missing"
        );
    }
    let tasks = &doc["paths"]["/api/tasks"]["get"];
    assert!(
        tasks["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "projectId" && p["in"] == "query")
    );
    assert_eq!(
        doc["paths"]["/api/auth/login"]["post"]["security"],
        json!([])
    );
    assert!(
        doc["paths"]["/api/ai/chat"]["post"]["responses"]["200"]["content"]["text/event-stream"]
            .is_object()
    );
    let login = &doc["components"]["schemas"]["epop.v1.LoginResponse"];
    assert!(login["description"].as_str().unwrap().contains("session"));
    // Every $ref points at a schema that exists.
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = r.split('"').next().unwrap();
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling $ref {name}"
        );
    }
}
