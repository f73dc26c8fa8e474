//! Single sign-on against a real OpenID Provider run by the suite (the npm package
//! oidc-provider, OpenID Certified; tests/oidc/provider.mjs): the browser's redirects are
//! walked as a browser would (cookies kept, no JavaScript needed), and the sign-in ends with
//! the same refresh cookie and access token as a password sign-in. Wrong nonces, replayed
//! states, unverified emails and expired ID tokens are refused.

use crate::{helpers::*, two_factor::audit_actions};
use epop::pb;
use std::{
    collections::BTreeMap,
    io::BufRead,
    process::{Child, Command, Stdio},
};
use tonic::Code;

/// Where the provider sends browsers back (the app's page; never fetched here).
const REDIRECT: &str = "http://127.0.0.1:9/auth/callback";

/// The OpenID Provider, stopped on drop.
struct Provider {
    child: Child,
    issuer: String,
    /// Its output, kept open (a closed pipe would stop it at its next line).
    _out: std::io::BufReader<std::process::ChildStdout>,
}

impl Provider {
    fn start() -> Self {
        let modules = std::env::var("EPOP_OIDC_MODULES")
            .expect("EPOP_OIDC_MODULES: run the tests with scripts/test, which installs it");
        let mut child = Command::new("node")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/oidc/provider.mjs"
            ))
            .env("EPOP_OIDC_MODULES", modules)
            .env("EPOP_OIDC_REDIRECT", REDIRECT)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs");
        let mut line = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        let port = line
            .trim()
            .strip_prefix("listening ")
            .expect("the provider listens");
        Self {
            child,
            issuer: format!("http://127.0.0.1:{port}"),
            _out: out,
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An app with three providers at `issuer`: `acme` (creates accounts, maps the
/// `epop-admins` group to ADMIN), `strict` (refuses new users) and `expiring` (ID tokens
/// that arrive expired).
async fn app_with(issuer: &str) -> TestApp {
    let provider = |id: &str, client: &str, new_users: &str| {
        serde_json::json!({
            "id": id, "name": format!("{id} SSO"), "issuer": issuer,
            "client_id": client, "client_secret": "epop-secret",
            "scopes": ["email", "profile", "groups"], "new_users": new_users,
            "groups_claim": "groups", "group_roles": { "epop-admins": "ADMIN" },
        })
    };
    let providers = serde_json::json!([
        provider("acme", "epop", "create"),
        provider("strict", "epop", "refuse"),
        provider("expiring", "epop-expiring", "create"),
    ]);
    TestApp::spawn_with(|c| {
        c.oidc.oidc_providers = Some(providers.to_string());
        c.oidc.oidc_redirect_url = Some(REDIRECT.into());
    })
    .await
}

async fn start(
    app: &TestApp,
    provider: &str,
) -> Result<pb::StartOidcSignInResponse, tonic::Status> {
    app.auth()
        .await
        .start_oidc_sign_in(pb::StartOidcSignInRequest {
            provider: provider.into(),
        })
        .await
        .map(|r| r.into_inner())
}

/// Follows the provider's redirects from `url` as `login` would in a browser: the `code` and
/// `state` it sends back to the redirect URI.
async fn authorize(url: &str, login: &str) -> (String, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut at = url::Url::parse(&format!("{url}&login_hint={login}")).unwrap();
    let mut cookies = BTreeMap::new();
    for _ in 0..10 {
        let jar: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let reply = http
            .get(at.clone())
            .header("cookie", jar.join("; "))
            .send()
            .await
            .unwrap();
        for c in reply.headers().get_all("set-cookie") {
            let pair = c.to_str().unwrap().split(';').next().unwrap();
            if let Some((k, v)) = pair.split_once('=') {
                cookies.insert(k.trim().to_owned(), v.trim().to_owned());
            }
        }
        let location = reply
            .headers()
            .get("location")
            .unwrap_or_else(|| panic!("a redirect from {at}: {}", reply.status()))
            .to_str()
            .unwrap()
            .to_owned();
        at = at.join(&location).unwrap();
        if at.as_str().starts_with(REDIRECT) {
            let q: BTreeMap<_, _> = at.query_pairs().into_owned().collect();
            assert!(!q.contains_key("error"), "the provider refused: {q:?}");
            return (q["code"].clone(), q["state"].clone());
        }
    }
    panic!("too many redirects");
}

/// Finishes a sign-in over REST, as the app's callback page does, with the browser's binder
/// cookie: (status, body, set-cookie).
async fn finish(
    app: &TestApp,
    code: &str,
    state: &str,
    binder: &str,
) -> (u16, serde_json::Value, String) {
    let reply = reqwest::Client::new()
        .post(format!("{}/api/auth/oidc/finish", app.url()))
        .header("user-agent", "EPOP-Web/1.0")
        .header("cookie", format!("epop_oidc={binder}"))
        .json(&serde_json::json!({ "code": code, "state": state }))
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    let cookie = reply
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, reply.json().await.unwrap(), cookie)
}

async fn sign_in(app: &TestApp, provider: &str, login: &str) -> (u16, serde_json::Value, String) {
    let started = start(app, provider).await.expect("the sign-in starts");
    let (code, state) = authorize(&started.authorization_url, login).await;
    assert_eq!(state, started.state);
    finish(app, &code, &state, &started.binder).await
}

#[tokio::test(flavor = "multi_thread")]
async fn single_sign_on_links_by_verified_email_creates_accounts_and_maps_groups_to_roles() {
    let idp = Provider::start();
    let app = app_with(&idp.issuer).await;
    let listed = app
        .auth()
        .await
        .list_sign_in_providers(pb::ListSignInProvidersRequest {})
        .await
        .unwrap()
        .into_inner()
        .providers;
    let ids: Vec<_> = listed.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["acme", "strict", "expiring"]);
    let started = start(&app, "acme").await.unwrap();
    for part in [
        "code_challenge_method=S256",
        "nonce=",
        "state=",
        "scope=openid",
    ] {
        assert!(started.authorization_url.contains(part), "{part}");
    }

    // Alice has an account (a password one): the provider's verified email links it.
    let alice = app
        .create_user("alice@example.com", "user-password-1", pb::Role::User)
        .await;
    let (status, body, cookie) = sign_in(&app, "acme", "alice").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        cookie.starts_with("epop_refresh=") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let token = body["accessToken"].as_str().unwrap();
    let me = app.get_me(token).await.expect("the access token works");
    assert_eq!(me.id, alice.id);
    let sessions = crate::two_factor::security(&app)
        .await
        .list_sessions(authed(pb::ListSessionsRequest {}, token))
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(sessions[0].method, "oidc:acme");
    assert_eq!(sessions[0].user_agent, "EPOP-Web/1.0");
    let overview = crate::two_factor::security(&app)
        .await
        .get_security(authed(pb::GetSecurityRequest {}, token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(overview.identities[0].provider, "acme");
    // The refresh cookie works as a password sign-in's does.
    let refreshed = reqwest::Client::new()
        .post(format!("{}/api/auth/refresh", app.url()))
        .header("cookie", cookie.split(';').next().unwrap())
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);

    // Nobody here is "newbie": a provider that refuses new users refuses; one that creates
    // them creates the account; the admin group gives the ADMIN role.
    let (status, body, _) = sign_in(&app, "strict", "newbie").await;
    assert_eq!((status, body["code"].as_i64()), (403, Some(7)), "{body}");
    let (status, body, _) = sign_in(&app, "acme", "newbie").await;
    assert_eq!(status, 200, "{body}");
    let newbie = app
        .get_me(body["accessToken"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(
        (newbie.email.as_str(), newbie.display_name.as_str()),
        ("newbie@example.com", "New Bie")
    );
    assert_eq!(newbie.role, pb::Role::User as i32);
    let (_, body, _) = sign_in(&app, "acme", "boss").await;
    let boss = app
        .get_me(body["accessToken"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(boss.role, pb::Role::Admin as i32);

    let root = app.admin_token().await;
    let actions = audit_actions(&app, &root).await;
    assert!(
        actions.iter().filter(|a| *a == "sso_linked").count() >= 3,
        "{actions:?}"
    );
    assert!(actions.iter().any(|a| a == "sso_refused"), "{actions:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn single_sign_on_refuses_a_wrong_nonce_a_replayed_state_an_unverified_email_and_an_expired_id_token()
 {
    let idp = Provider::start();
    let app = app_with(&idp.issuer).await;
    let victim = app
        .create_user("victim@example.com", "user-password-1", pb::Role::User)
        .await;
    app.create_user("alice@example.com", "user-password-1", pb::Role::User)
        .await;

    // A nonce other than the one EPOP sent: the ID token carries it, EPOP refuses it.
    let started = start(&app, "acme").await.unwrap();
    let mut url = url::Url::parse(&started.authorization_url).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "nonce" {
                "forged-nonce".into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let (code, state) = authorize(url.as_str(), "alice").await;
    let (status, body, cookie) = finish(&app, &code, &state, &started.binder).await;
    assert_eq!((status, body["code"].as_i64()), (401, Some(16)), "{body}");
    assert!(cookie.is_empty());

    // A callback link finished by someone else's browser (login CSRF: an attacker's own
    // sign-in, sent to a victim) is refused, and so is one without the binder.
    let started = start(&app, "acme").await.unwrap();
    let (code, state) = authorize(&started.authorization_url, "alice").await;
    let victims = start(&app, "acme").await.unwrap();
    let (status, body, _) = finish(&app, &code, &state, &victims.binder).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("another browser"),
        "{body}"
    );
    let started = start(&app, "acme").await.unwrap();
    let (code, state) = authorize(&started.authorization_url, "alice").await;
    assert_eq!(finish(&app, &code, &state, "").await.0, 401);

    // A state works once, even with a good code.
    let started = start(&app, "acme").await.unwrap();
    let (code, state) = authorize(&started.authorization_url, "alice").await;
    assert_eq!(finish(&app, &code, &state, &started.binder).await.0, 200);
    let (status, body, _) = finish(&app, &code, &state, &started.binder).await;
    assert_eq!(status, 401);
    assert!(
        body["message"].as_str().unwrap().contains("already used"),
        "{body}"
    );

    // An email the provider has not verified links nothing, even to an existing account.
    let (status, body, _) = sign_in(&app, "acme", "sneaky").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("not verified"),
        "{body}"
    );
    let links = db_count(
        &app.db_name,
        &format!(
            "SELECT count(*) AS n FROM user_identities WHERE user_id = '{}'",
            victim.id
        ),
    )
    .await;
    assert_eq!(links, 0);

    // An ID token that expired before it arrived.
    let (status, body, _) = sign_in(&app, "expiring", "alice").await;
    assert_eq!(status, 401, "{body}");

    let unknown = start(&app, "nope").await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn single_sign_on_asks_for_the_accounts_second_factor_and_a_role_change_ends_old_sessions() {
    let idp = Provider::start();
    let app = app_with(&idp.issuer).await;

    // Alice turned TOTP on: a verified email at the provider is not enough to get in.
    app.create_user("alice@example.com", "user-password-1", pb::Role::User)
        .await;
    let alice = app.login("alice@example.com", "user-password-1").await;
    let (uri, _) = crate::two_factor::enrol(&app, &alice.access_token).await;
    let (status, body, cookie) = sign_in(&app, "acme", "alice").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["accessToken"].as_str().unwrap_or_default().is_empty(),
        "{body}"
    );
    assert!(
        !cookie.contains("epop_refresh="),
        "no session before the code"
    );
    let challenge = body["secondFactor"]["challenge"]
        .as_str()
        .unwrap()
        .to_owned();
    // Nothing is linked before the second factor passes.
    let linked = "SELECT count(*) AS n FROM user_identities i JOIN users u ON u.id = i.user_id \
                  WHERE u.email = 'alice@example.com'";
    assert_eq!(db_count(&app.db_name, linked).await, 0);
    let code = crate::two_factor::pyotp_code(&uri, 1);
    let done = crate::two_factor::second_step(&app, &challenge, &code, "")
        .await
        .expect("the code finishes the single sign-on");
    let sessions = crate::two_factor::security(&app)
        .await
        .list_sessions(authed(pb::ListSessionsRequest {}, &done.access_token))
        .await
        .unwrap()
        .into_inner()
        .sessions;
    let current = sessions.iter().find(|s| s.current).unwrap();
    assert_eq!(current.method, "oidc:acme+totp");
    assert_eq!(
        db_count(&app.db_name, linked).await,
        1,
        "linked once passed"
    );

    // Boss has a password session as a USER; the provider's group makes them ADMIN: the
    // old session (whose token says USER) ends at once, not when a cache expires.
    app.create_user("boss@example.com", "user-password-1", pb::Role::User)
        .await;
    let old = app.login("boss@example.com", "user-password-1").await;
    app.get_me(&old.access_token)
        .await
        .expect("the old session works");
    let (status, body, _) = sign_in(&app, "acme", "boss").await;
    assert_eq!(status, 200, "{body}");
    let boss = app
        .get_me(body["accessToken"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(boss.role, pb::Role::Admin as i32);
    let ended = app.get_me(&old.access_token).await.unwrap_err();
    assert_eq!(ended.code(), Code::Unauthenticated);
}
