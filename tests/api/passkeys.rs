//! Passkeys in a real browser: headless Chromium with virtual authenticators (the DevTools
//! protocol's WebAuthn domain, through playwright-core; tests/browser/passkeys.cjs) answers
//! the server's ceremonies with its own `navigator.credentials`: registering two passkeys,
//! signing in with one alone, using one as the second step after a password, and removing
//! one so that it signs in no more.

use crate::{
    helpers::*,
    two_factor::{audit_actions, challenge_of, password_step, security},
};
use epop::pb;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tonic::Code;

/// The browser with two pages, each with its own virtual authenticator.
struct Browser {
    _child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    out: Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Browser {
    async fn start(url: &str) -> Self {
        let modules = std::env::var("EPOP_BROWSER_NODE_PATH").unwrap_or_else(|_| {
            format!(
                "{}/.cache/epop/browser/node_modules",
                std::env::var("HOME").unwrap()
            )
        });
        let mut child = tokio::process::Command::new("node")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/browser/passkeys.cjs"
            ))
            .arg(url)
            .env("NODE_PATH", modules)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node is installed");
        let stdin = child.stdin.take().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = out.next_line().await.unwrap().expect("the driver starts");
        assert!(ready.contains("ready"), "{ready}");
        Self {
            _child: child,
            stdin,
            out,
        }
    }

    /// The browser's answer (`credential.toJSON()`) on `page` to `options`, or its error.
    async fn ceremony(&mut self, page: usize, op: &str, options: &str) -> Result<String, String> {
        let cmd = serde_json::json!({ "page": page, "op": op, "options": options });
        self.stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .unwrap();
        let line = tokio::time::timeout(std::time::Duration::from_secs(20), self.out.next_line())
            .await
            .expect("the browser answers")
            .unwrap()
            .unwrap();
        let reply: serde_json::Value = serde_json::from_str(&line).unwrap();
        match reply["ok"].as_str() {
            Some(json) => Ok(json.to_owned()),
            None => Err(reply["error"].to_string()),
        }
    }
}

async fn register(
    app: &TestApp,
    browser: &mut Browser,
    token: &str,
    page: usize,
    name: &str,
) -> pb::Passkey {
    let options = security(app)
        .await
        .begin_passkey_registration(authed(pb::BeginPasskeyRegistrationRequest {}, token))
        .await
        .expect("registration starts")
        .into_inner()
        .options_json;
    let credential = browser
        .ceremony(page, "create", &options)
        .await
        .expect("the authenticator makes a passkey");
    let finish = |password: &str| {
        let request = pb::FinishPasskeyRegistrationRequest {
            name: name.into(),
            credential_json: credential.clone(),
            password: password.into(),
        };
        async move {
            security(app)
                .await
                .finish_passkey_registration(authed(request, token))
                .await
        }
    };
    // A stolen access token alone cannot add a passkey: the password is asked.
    let refused = finish("not-the-password").await.unwrap_err();
    assert_eq!(violations(&refused), ["password"]);
    finish("user-password-1")
        .await
        .expect("the passkey is registered")
        .into_inner()
}

/// The browser's answer on `page` to a new passkey sign-in.
async fn assertion(app: &TestApp, browser: &mut Browser, page: usize) -> String {
    let options = app
        .auth()
        .await
        .start_passkey_sign_in(pb::StartPasskeySignInRequest {})
        .await
        .unwrap()
        .into_inner()
        .options_json;
    browser
        .ceremony(page, "get", &options)
        .await
        .expect("the authenticator signs")
}

/// Signs in with the passkey of `page` alone.
async fn passwordless(
    app: &TestApp,
    browser: &mut Browser,
    page: usize,
) -> Result<pb::LoginResponse, tonic::Status> {
    let credential_json = assertion(app, browser, page).await;
    app.auth()
        .await
        .finish_passkey_sign_in(pb::FinishPasskeySignInRequest {
            credential_json,
            return_refresh_token: true,
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread")]
async fn passkeys_made_in_chromium_sign_in_alone_or_after_a_password_and_can_be_removed() {
    // The pages' origin: a blank page on another port of localhost (a secure context).
    let site = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://localhost:{}", site.local_addr().unwrap().port());
    let blank = axum::Router::new().route(
        "/",
        axum::routing::get(|| async { axum::response::Html("<!doctype html><title>EPOP</title>") }),
    );
    tokio::spawn(async move { axum::serve(site, blank).await });
    let allowed = vec![origin.clone()];
    let app = TestApp::spawn_with(|c| {
        c.passkeys.webauthn_rp_id = Some("localhost".into());
        c.passkeys.webauthn_origins = allowed.clone();
    })
    .await;
    let (_, token) = user(&app, "pia").await;
    let mut browser = Browser::start(&origin).await;

    // Two passkeys: the laptop's (page 0) and the phone's (page 1).
    let laptop = register(&app, &mut browser, &token, 0, "Laptop").await;
    let phone = register(&app, &mut browser, &token, 1, "Phone").await;
    let listed = security(&app)
        .await
        .list_passkeys(authed(pb::ListPasskeysRequest {}, &token))
        .await
        .unwrap()
        .into_inner()
        .passkeys;
    let names: Vec<_> = listed.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Laptop", "Phone"]);
    assert_ne!(laptop.id, phone.id);

    // The phone's passkey alone signs in; the same answer again does not.
    let assertion = assertion(&app, &mut browser, 1).await;
    let finish = |credential_json: String| {
        let app = &app;
        async move {
            app.auth()
                .await
                .finish_passkey_sign_in(pb::FinishPasskeySignInRequest {
                    credential_json,
                    return_refresh_token: true,
                })
                .await
        }
    };
    let signed = finish(assertion.clone())
        .await
        .expect("the passkey signs in")
        .into_inner();
    let me = app.get_me(&signed.access_token).await.unwrap();
    assert_eq!(me.email, "pia@example.com");
    let replay = finish(assertion).await.unwrap_err();
    assert_eq!(replay.code(), Code::Unauthenticated, "{replay:?}");
    let sessions = security(&app)
        .await
        .list_sessions(authed(pb::ListSessionsRequest {}, &signed.access_token))
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(
        sessions.iter().find(|s| s.current).unwrap().method,
        "passkey"
    );

    // With passkeys, a password sign-in asks for one as its second step.
    let reply = password_step(&app, "pia@example.com").await;
    let challenge = challenge_of(&reply);
    let step = reply.second_factor.unwrap();
    assert_eq!(step.methods, ["passkey"]);
    let assertion = browser
        .ceremony(0, "get", &step.passkey_options_json)
        .await
        .unwrap();
    let done = app
        .auth()
        .await
        .verify_second_factor(pb::VerifySecondFactorRequest {
            challenge,
            passkey_json: assertion,
            return_refresh_token: true,
            ..Default::default()
        })
        .await
        .expect("the laptop's passkey is the second step")
        .into_inner();
    app.get_me(&done.access_token).await.unwrap();

    // Someone else cannot remove it; its owner can, and then it signs in no more.
    let (_, eve) = user(&app, "eve").await;
    let delete = |id: String, token: String| {
        let app = &app;
        async move {
            security(app)
                .await
                .delete_passkey(authed(
                    pb::DeletePasskeyRequest {
                        passkey_id: id,
                        password: "user-password-1".into(),
                    },
                    &token,
                ))
                .await
        }
    };
    let hidden = delete(phone.id.clone(), eve).await.unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    delete(phone.id.clone(), token.clone())
        .await
        .expect("removed");
    let gone = passwordless(&app, &mut browser, 1).await.unwrap_err();
    assert_eq!(gone.code(), Code::Unauthenticated, "{gone:?}");
    passwordless(&app, &mut browser, 0)
        .await
        .expect("the laptop's still signs in");

    let root = app.admin_token().await;
    let actions = audit_actions(&app, &root).await;
    for a in ["passkey_added", "passkey_removed"] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
}
