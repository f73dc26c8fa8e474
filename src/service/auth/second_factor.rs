//! The second step of a password sign-in: a short-lived, single-use challenge (no token is
//! issued before it is passed) answered with a TOTP code or a recovery code; or, when the
//! policy requires a second factor the account lacks, the enrolment of one.

use super::{Session, new_token, open, token_hash};
use crate::{
    auth::totp::{self, Enrollment},
    db::{self, users::User},
    domain::UserId,
    domain::audit::{Action, NewAuditEntry},
    domain::security::{ClientInfo, Proof},
    error::{Error, Result},
    service::{State, audit},
};
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use serde_json::json;
use std::time::Duration;

/// How long a challenge may be answered.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(5 * 60);

/// Wrong codes that void a challenge.
const MAX_ATTEMPTS: i32 = 5;

/// What a sign-in still needs.
#[derive(Debug, Clone)]
pub struct Challenge {
    /// The single-use challenge (shown once; stored as a hash).
    pub token: String,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// What answers it: `totp` and `recovery_code`, or `totp_enrollment`.
    pub methods: Vec<&'static str>,
    /// The authenticator to add, when enrolment is required.
    pub enrollment: Option<Enrollment>,
}

/// The challenge `user` must pass after their password: a code when they have an
/// authenticator, the enrolment of one when the policy requires it; None when neither.
pub(super) async fn challenge(state: &State, user: &User) -> Result<Option<Challenge>> {
    let mut conn = state.pool.get().await?;
    let (purpose, methods, enrollment) =
        if db::second_factor::totp_enabled(&mut conn, user.id).await? {
            ("second_factor", vec!["totp", "recovery_code"], None)
        } else if db::second_factor::policy(&mut conn)
            .await?
            .requires(user.role)
        {
            let secret = totp::new_secret();
            db::second_factor::put_pending(&mut conn, user.id, &secret).await?;
            let e = totp::enrollment(&secret, user.email.as_str())?;
            ("enroll", vec!["totp_enrollment"], Some(e))
        } else {
            return Ok(None);
        };
    let token = new_token();
    let expires_at = Utc::now() + CHALLENGE_TTL;
    db::second_factor::insert_challenge(
        &mut conn,
        &token_hash(&token),
        user.id,
        purpose,
        expires_at,
    )
    .await?;
    Ok(Some(Challenge {
        token,
        expires_at,
        methods,
        enrollment,
    }))
}

enum Outcome {
    Passed(Box<Session>, Vec<String>),
    Wrong,
    Void,
}

fn void() -> Error {
    Error::Unauthenticated(
        "the sign-in expired, was finished or had too many wrong codes: sign in again".into(),
    )
}

/// Finishes a sign-in with its challenge and a code (or recovery code): a session, and the
/// recovery codes when this confirmed a new authenticator. A wrong code counts toward the
/// sign-in limits of the account and address, and toward the challenge's five.
pub async fn verify_second_factor(
    state: &State,
    challenge: &str,
    proof: Proof,
    client: &ClientInfo,
) -> Result<(Session, Vec<String>)> {
    let hash = token_hash(challenge);
    let user = {
        let mut conn = state.pool.get().await?;
        match db::second_factor::open_challenge_for_update(&mut conn, &hash, MAX_ATTEMPTS).await? {
            Some(c) => db::users::get(&mut conn, UserId(c.user_id)).await?,
            None => None,
        }
    };
    let Some(user) = user.filter(|u| !u.disabled) else {
        return Err(void());
    };
    let email = user.email.clone();
    if let Some(ip) = client.ip
        && let Some((wait, scope)) = state.lockout.locked(email.as_str(), ip).await
    {
        crate::metrics::rate_limited(scope.metric());
        return Err(Error::RetryLater(
            format!("{}: try again later", scope.reason()),
            wait,
        ));
    }
    let mut conn = state.pool.get().await?;
    // The transaction commits a wrong code's count too.
    let outcome = conn
        .transaction::<_, Error, _>(async |conn| {
            let Some(c) =
                db::second_factor::open_challenge_for_update(conn, &hash, MAX_ATTEMPTS).await?
            else {
                return Ok(Outcome::Void);
            };
            let Some(t) = db::second_factor::totp_for_update(conn, user.id).await? else {
                return Ok(Outcome::Void);
            };
            let enrolling = c.purpose == "enroll";
            if enrolling != t.confirmed_at.is_none() {
                return Ok(Outcome::Void);
            }
            let passed = match &proof {
                Proof::Code(code) => match totp::accept(&t.secret, code, t.last_step)? {
                    Some(step) => {
                        db::second_factor::accept_step(conn, user.id, step).await?;
                        true
                    }
                    None => false,
                },
                Proof::Recovery(code) => {
                    !enrolling
                        && db::second_factor::use_recovery_code(
                            conn,
                            user.id,
                            &totp::recovery_hash(code),
                        )
                        .await?
                }
            };
            if !passed {
                db::second_factor::count_attempt(conn, &hash).await?;
                return Ok(Outcome::Wrong);
            }
            db::second_factor::use_challenge(conn, &hash).await?;
            let mut codes = Vec::new();
            if enrolling {
                let hashes;
                (codes, hashes) = totp::recovery_codes();
                db::second_factor::replace_recovery_codes(conn, user.id, &hashes).await?;
                let entry = NewAuditEntry::new(Action::SecondFactorEnabled, Some(user.id))
                    .on_user(user.id)
                    .from_ip(client.ip)
                    .with(json!({ "method": "totp", "at_sign_in": true }));
                db::audit::append(conn, &entry).await?;
            }
            let session = open(state, conn, user.clone(), client, proof.method()).await?;
            Ok(Outcome::Passed(Box::new(session), codes))
        })
        .await?;
    match outcome {
        Outcome::Passed(session, codes) => {
            if let Some(ip) = client.ip {
                state.lockout.succeeded(email.as_str(), ip).await;
            }
            Ok((*session, codes))
        }
        Outcome::Wrong => {
            wrong_code(state, &email, user.id, client).await;
            Err(Error::Unauthenticated("wrong code".into()))
        }
        Outcome::Void => Err(void()),
    }
}

/// Counts a wrong second factor toward the sign-in limits, audited.
async fn wrong_code(state: &State, email: &str, user: UserId, client: &ClientInfo) {
    if let Some(ip) = client.ip {
        state.lockout.failed(email, ip).await;
    }
    let entry = NewAuditEntry::new(Action::SignInFailed, None)
        .on_user(user)
        .from_ip(client.ip)
        .with(json!({ "email": email, "reason": "wrong second factor" }));
    audit::record(state, entry).await;
}
