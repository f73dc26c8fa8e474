//! TOTP second factors, checked with a generator nobody here wrote (Python's `pyotp`, which
//! reads the `otpauth://` URI as authenticator apps do): enrolment, two-step sign-in with no
//! token before the code, single-use codes and recovery codes, the sign-in limits, the admin
//! policy and reset, audited.

use crate::helpers::*;
use epop::pb::{self, security_service_client::SecurityServiceClient};
use tonic::{Code, transport::Channel};

/// The code `pyotp` derives from `uri` for the time step `steps_ahead` from now.
pub(crate) fn pyotp_code(uri: &str, steps_ahead: i64) -> String {
    let python = std::env::var("EPOP_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import pyotp, sys, time; t = pyotp.parse_uri(sys.argv[1]); \
             print(t.at(time.time() + 30 * int(sys.argv[2])))",
            uri,
            &steps_ahead.to_string(),
        ])
        .output()
        .expect("python runs (scripts/test installs pyotp)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

pub(crate) async fn security(app: &TestApp) -> SecurityServiceClient<Channel> {
    SecurityServiceClient::new(app.channel().await)
}

/// Signs in with a password only: the reply (with or without a challenge).
pub(crate) async fn password_step(app: &TestApp, email: &str) -> pb::LoginResponse {
    app.auth()
        .await
        .login(pb::LoginRequest {
            email: email.into(),
            password: "user-password-1".into(),
            return_refresh_token: true,
        })
        .await
        .expect("the password is right")
        .into_inner()
}

pub(crate) async fn second_step(
    app: &TestApp,
    challenge: &str,
    code: &str,
    recovery: &str,
) -> Result<pb::LoginResponse, tonic::Status> {
    app.auth()
        .await
        .verify_second_factor(pb::VerifySecondFactorRequest {
            challenge: challenge.into(),
            code: code.into(),
            recovery_code: recovery.into(),
            return_refresh_token: true,
            passkey_json: String::new(),
        })
        .await
        .map(|r| r.into_inner())
}

/// Turns TOTP on for the holder of `token` (password `user-password-1`): (otpauth URI,
/// recovery codes).
pub(crate) async fn enrol(app: &TestApp, token: &str) -> (String, Vec<String>) {
    let e = security(app)
        .await
        .begin_totp_enrollment(authed(pb::BeginTotpEnrollmentRequest {}, token))
        .await
        .expect("enrolment starts")
        .into_inner();
    assert!(
        e.qr_svg.starts_with("<?xml") || e.qr_svg.contains("<svg"),
        "a QR code as SVG"
    );
    assert!(e.otpauth_uri.contains(&e.secret));
    let wrong = security(app)
        .await
        .confirm_totp(authed(
            pb::ConfirmTotpRequest {
                code: "12345".into(),
                password: "user-password-1".into(),
            },
            token,
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&wrong), ["code"]);
    // A stolen access token alone cannot turn it on: the password is asked.
    let no_password = security(app)
        .await
        .confirm_totp(authed(
            pb::ConfirmTotpRequest {
                code: pyotp_code(&e.otpauth_uri, 0),
                password: "not-the-password".into(),
            },
            token,
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&no_password), ["password"]);
    let codes = security(app)
        .await
        .confirm_totp(authed(
            pb::ConfirmTotpRequest {
                code: pyotp_code(&e.otpauth_uri, 0),
                password: "user-password-1".into(),
            },
            token,
        ))
        .await
        .expect("the first code confirms")
        .into_inner()
        .codes;
    (e.otpauth_uri, codes)
}

pub(crate) fn challenge_of(r: &pb::LoginResponse) -> String {
    assert!(
        r.access_token.is_empty() && r.refresh_token.is_empty(),
        "no token before the code"
    );
    r.second_factor
        .as_ref()
        .expect("a second factor is asked")
        .challenge
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_turns_on_totp_and_then_signs_in_in_two_steps_each_code_working_once() {
    let app = TestApp::spawn().await;
    let (_, token) = user(&app, "tina").await;
    let (uri, codes) = enrol(&app, &token).await;
    assert_eq!(codes.len(), 10);
    assert!(
        uri.starts_with("otpauth://totp/EPOP:tina%40example.com?"),
        "{uri}"
    );
    let overview = security(&app)
        .await
        .get_security(authed(pb::GetSecurityRequest {}, &token))
        .await
        .unwrap()
        .into_inner();
    assert!(overview.totp_enabled);
    assert_eq!(overview.recovery_codes_left, 10);

    // The password alone gives a challenge, no tokens and no cookie.
    let mut auth = app.auth().await;
    let reply = auth
        .login(pb::LoginRequest {
            email: "tina@example.com".into(),
            password: "user-password-1".into(),
            return_refresh_token: false,
        })
        .await
        .unwrap();
    assert!(reply.metadata().get("set-cookie").is_none());
    let first = challenge_of(reply.get_ref());
    let methods = &reply.get_ref().second_factor.as_ref().unwrap().methods;
    assert_eq!(methods, &["totp", "recovery_code"]);

    // A wrong code is refused; the right one (of the next step, as a clock a little ahead)
    // signs in.
    let wrong = second_step(&app, &first, "000000", "").await.unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    let code = pyotp_code(&uri, 1);
    let session = second_step(&app, &first, &code, "")
        .await
        .expect("the code signs in");
    assert!(!session.access_token.is_empty() && !session.refresh_token.is_empty());
    app.get_me(&session.access_token)
        .await
        .expect("the session works");
    // The challenge is used up, and the code too (replayed on a new challenge).
    let again = second_step(&app, &first, &pyotp_code(&uri, 1), "")
        .await
        .unwrap_err();
    assert!(again.message().contains("sign in again"), "{again:?}");
    let second = challenge_of(&password_step(&app, "tina@example.com").await);
    let replay = second_step(&app, &second, &code, "").await.unwrap_err();
    assert_eq!(replay.code(), Code::Unauthenticated, "a code works once");

    // A recovery code works once, in any case and with or without dashes.
    let recovery = codes[3].to_lowercase().replace('-', "");
    second_step(&app, &second, "", &recovery)
        .await
        .expect("a recovery code signs in");
    let third = challenge_of(&password_step(&app, "tina@example.com").await);
    let used = second_step(&app, &third, "", &codes[3]).await.unwrap_err();
    assert_eq!(used.code(), Code::Unauthenticated);
    let both = second_step(&app, &third, "123456", &codes[4])
        .await
        .unwrap_err();
    assert_eq!(violations(&both), ["recovery_code"]);

    // Turned off with a recovery code, sign-in is one step again.
    security(&app)
        .await
        .disable_totp(authed(
            pb::DisableTotpRequest {
                code: String::new(),
                recovery_code: codes[5].clone(),
            },
            &token,
        ))
        .await
        .expect("disabled with a recovery code");
    let plain = password_step(&app, "tina@example.com").await;
    assert!(plain.second_factor.is_none() && !plain.access_token.is_empty());

    let admin = app.admin_token().await;
    let actions = audit_actions(&app, &admin).await;
    for a in [
        "second_factor_enabled",
        "second_factor_disabled",
        "sign_in_failed",
        "sign_in",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
}

/// The actions of the audit log, newest first.
pub(crate) async fn audit_actions(app: &TestApp, admin: &str) -> Vec<String> {
    app.admin()
        .await
        .list_audit_log(authed(
            pb::ListAuditLogRequest {
                page_size: 500,
                ..Default::default()
            },
            admin,
        ))
        .await
        .expect("the audit log")
        .into_inner()
        .entries
        .into_iter()
        .map(|e| e.action)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_codes_void_the_challenge_after_five_and_count_toward_the_sign_in_limits() {
    let app = TestApp::spawn_with(|c| c.login_lockout = "10/15m".parse().unwrap()).await;
    let (_, token) = user(&app, "walt").await;
    let (uri, _) = enrol(&app, &token).await;
    let wrong = |n: u32| format!("{:06}", (n * 7919) % 1_000_000);
    let first = challenge_of(&password_step(&app, "walt@example.com").await);
    for n in 0..5 {
        let e = second_step(&app, &first, &wrong(n), "").await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
    }
    let void = second_step(&app, &first, &pyotp_code(&uri, 1), "")
        .await
        .unwrap_err();
    assert!(void.message().contains("sign in again"), "{void:?}");

    // Five more wrong codes make ten failures of this account from this address: even the
    // right password is refused now.
    let second = challenge_of(&password_step(&app, "walt@example.com").await);
    for n in 5..10 {
        second_step(&app, &second, &wrong(n), "").await.unwrap_err();
    }
    let locked = app
        .auth()
        .await
        .login(pb::LoginRequest {
            email: "walt@example.com".into(),
            password: "user-password-1".into(),
            return_refresh_token: false,
        })
        .await
        .unwrap_err();
    assert_eq!(locked.code(), Code::ResourceExhausted, "{locked:?}");
}

async fn set_policy(
    app: &TestApp,
    token: &str,
    policy: &str,
) -> Result<pb::SignInPolicy, tonic::Status> {
    app.admin()
        .await
        .update_sign_in_policy(authed(
            pb::SignInPolicy {
                require_second_factor: policy.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_for_admins_makes_them_enrol_before_any_token_and_an_admin_can_reset_it() {
    let app = TestApp::spawn().await;
    let root = app.admin_token().await;
    let (_, user_token) = user(&app, "ursula").await;
    let ada = app
        .create_user("ada@example.com", "user-password-1", pb::Role::Admin)
        .await;
    let denied = set_policy(&app, &user_token, "admins").await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let bad = set_policy(&app, &root, "some").await.unwrap_err();
    assert_eq!(violations(&bad), ["require_second_factor"]);
    let p = set_policy(&app, &root, "admins").await.unwrap();
    assert_eq!(p.require_second_factor, "admins");

    // A user signs in with their password alone; an admin must enrol first.
    assert!(
        !password_step(&app, "ursula@example.com")
            .await
            .access_token
            .is_empty()
    );
    let reply = password_step(&app, "ada@example.com").await;
    let challenge = challenge_of(&reply);
    let sf = reply.second_factor.unwrap();
    assert_eq!(sf.methods, ["totp_enrollment"]);
    let uri = sf.enrollment.expect("an authenticator to add").otpauth_uri;
    let no_recovery = second_step(&app, &challenge, "", "AAAABBBBCCCCDDDD")
        .await
        .unwrap_err();
    assert_eq!(no_recovery.code(), Code::Unauthenticated);
    let done = second_step(&app, &challenge, &pyotp_code(&uri, 0), "")
        .await
        .expect("the first code enrols and signs in");
    assert_eq!(done.recovery_codes.len(), 10, "recovery codes, shown once");
    let ada_token = done.access_token;
    let refused = security(&app)
        .await
        .disable_totp(authed(
            pb::DisableTotpRequest {
                code: String::new(),
                recovery_code: done.recovery_codes[0].clone(),
            },
            &ada_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    // Enrolled, the next sign-in asks for a code.
    let next = password_step(&app, "ada@example.com").await;
    assert_eq!(
        next.second_factor.unwrap().methods,
        ["totp", "recovery_code"]
    );

    // A lost phone: an admin resets it, and the next sign-in enrols again.
    app.admin()
        .await
        .reset_second_factor(authed(
            pb::ResetSecondFactorRequest {
                user_id: ada.id.clone(),
            },
            &root,
        ))
        .await
        .expect("the reset");
    let own = app
        .admin()
        .await
        .reset_second_factor(authed(
            pb::ResetSecondFactorRequest {
                user_id: ada.id.clone(),
            },
            &ada_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        own.code(),
        Code::FailedPrecondition,
        "not one's own: {own:?}"
    );
    let after = password_step(&app, "ada@example.com").await;
    assert_eq!(after.second_factor.unwrap().methods, ["totp_enrollment"]);
    let actions = audit_actions(&app, &root).await;
    for a in [
        "sign_in_policy_changed",
        "second_factor_reset",
        "second_factor_enabled",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }

    // Everyone: the user too.
    set_policy(&app, &root, "everyone").await.unwrap();
    let u = password_step(&app, "ursula@example.com").await;
    assert_eq!(u.second_factor.unwrap().methods, ["totp_enrollment"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn guessing_codes_with_a_stolen_session_is_bounded_by_the_sign_in_limits() {
    let app = TestApp::spawn_with(|c| c.login_lockout = "4/15m".parse().unwrap()).await;
    let (_, token) = user(&app, "gus").await;
    // Enrolling tries a wrong password once: the first of four failures.
    let (uri, _) = enrol(&app, &token).await;
    let regenerate = |code: String| {
        let app = &app;
        let token = token.clone();
        async move {
            security(app)
                .await
                .regenerate_recovery_codes(authed(
                    pb::RegenerateRecoveryCodesRequest { code },
                    &token,
                ))
                .await
        }
    };
    for n in 0..3 {
        let e = regenerate(format!("{:06}", 111_111 * (n + 1)))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    }
    let locked = regenerate(pyotp_code(&uri, 1)).await.unwrap_err();
    assert_eq!(locked.code(), Code::ResourceExhausted, "{locked:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_change_voids_the_second_steps_started_with_the_old_one() {
    let app = TestApp::spawn().await;
    let (_, token) = user(&app, "paula").await;
    let (uri, _) = enrol(&app, &token).await;
    let pending = challenge_of(&password_step(&app, "paula@example.com").await);
    app.users()
        .await
        .change_password(authed(
            pb::ChangePasswordRequest {
                current_password: "user-password-1".into(),
                new_password: "user-password-2".into(),
            },
            &token,
        ))
        .await
        .expect("the password changes");
    let void = second_step(&app, &pending, &pyotp_code(&uri, 1), "")
        .await
        .unwrap_err();
    assert!(void.message().contains("sign in again"), "{void:?}");
}
