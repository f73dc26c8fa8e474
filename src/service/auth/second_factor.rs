//! The second step of a password sign-in: a short-lived, single-use challenge (no token is
//! issued before it is passed) answered with a TOTP code or a recovery code; or, when the
//! policy requires a second factor the account lacks, the enrolment of one.

use super::{Session, new_token, open_session, token_hash};
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
    /// The options of a passkey step, when the user has passkeys.
    pub passkey_options: Option<String>,
}

/// The challenge `user` must pass after the first step (`first_factor`: `password` or
/// `oidc:<provider>`): a code when they have an authenticator, the enrolment of one when the
/// policy requires it; None when neither. `pending` is a single sign-on's identity, linked
/// only once the challenge is passed.
pub(super) async fn challenge(
    state: &State,
    user: &User,
    first_factor: &str,
    pending: Option<&serde_json::Value>,
) -> Result<Option<Challenge>> {
    let mut conn = state.pool.get().await?;
    let totp_on = db::second_factor::totp_enabled(&mut conn, user.id).await?;
    let passkeys = db::passkeys::any(&mut conn, user.id).await?;
    let mut passkey_options = None;
    let (purpose, methods, enrollment) = if totp_on || passkeys {
        let mut methods = Vec::new();
        if totp_on {
            methods.extend(["totp", "recovery_code"]);
        }
        if passkeys {
            methods.push("passkey");
            let bound = Some(user.id);
            let started =
                crate::service::passkeys::start_in(state, &mut conn, "second_factor", bound);
            passkey_options = Some(started.await?);
        }
        ("second_factor", methods, None)
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
    let kind = db::second_factor::ChallengeKind {
        purpose,
        first_factor,
        pending,
    };
    let hash = token_hash(&token);
    conn.transaction::<_, Error, _>(async |conn| {
        db::second_factor::insert_challenge(conn, &hash, user.id, kind, expires_at).await
    })
    .await?;
    Ok(Some(Challenge {
        token,
        expires_at,
        methods,
        passkey_options,
        enrollment,
    }))
}

/// Whether `proof` passes `t`, the authenticator of `user` (locked): a code of a time step
/// not used before, or (not while enrolling) an unused recovery code. Uses it up. A passkey is
/// not this check's to pass.
pub(crate) async fn passes(
    conn: &mut diesel_async::AsyncPgConnection,
    user: UserId,
    t: &db::second_factor::Totp,
    proof: &Proof,
    enrolling: bool,
) -> Result<bool> {
    Ok(match proof {
        Proof::Code(code) => match totp::accept(&t.secret, code, t.last_step)? {
            Some(step) => {
                db::second_factor::accept_step(conn, user, step).await?;
                true
            }
            None => false,
        },
        Proof::Recovery(code) => {
            let hash = totp::recovery_hash(code);
            !enrolling && db::second_factor::use_recovery_code(conn, user, &hash).await?
        }
        Proof::Passkey(_) => false,
    })
}

enum Outcome {
    /// The session, recovery codes, and whether a linked single sign-on changed the role.
    Passed(Box<Session>, Vec<String>, bool),
    Wrong(String, UserId),
    Void,
}

fn void() -> Error {
    Error::Unauthenticated(
        "the sign-in expired, was finished or had too many wrong codes: sign in again".into(),
    )
}

/// Finishes a sign-in with its challenge and a code (or recovery code): a session, and the
/// recovery codes when this confirmed a new authenticator. A wrong code counts toward the
/// sign-in limits of the account and address, and toward the challenge's five. Guesses at
/// one challenge are answered one at a time (its row is locked), each after the limits have
/// counted the one before.
pub async fn verify_second_factor(
    state: &State,
    challenge: &str,
    proof: Proof,
    client: &ClientInfo,
) -> Result<(Session, Vec<String>)> {
    let hash = token_hash(challenge);
    let mut conn = state.pool.get().await?;
    // The transaction commits a wrong code's count too.
    let outcome = conn
        .transaction::<_, Error, _>(async |conn| {
            let Some(c) =
                db::second_factor::open_challenge_for_update(conn, &hash, MAX_ATTEMPTS).await?
            else {
                return Ok(Outcome::Void);
            };
            let user = db::users::get(conn, UserId(c.user_id)).await?;
            let Some(user) = user.filter(|u| !u.disabled) else {
                return Ok(Outcome::Void);
            };
            // Nothing written yet: a refusal leaves the challenge as it was.
            state.lockout.check(&user.email, client.ip).await?;
            let enrolling = c.purpose == "enroll";
            let totp = db::second_factor::totp_for_update(conn, user.id).await?;
            let totp = totp.filter(|t| enrolling == t.confirmed_at.is_none());
            let passed = match (&proof, totp) {
                (Proof::Passkey(json), _) if !enrolling => {
                    let kind = "second_factor";
                    let verified =
                        crate::service::passkeys::verify(state, conn, kind, Some(user.id), json);
                    match verified.await {
                        Ok(_) => true,
                        Err(Error::Unauthenticated(_)) => false,
                        Err(e) => return Err(e),
                    }
                }
                (_, Some(t)) => passes(conn, user.id, &t, &proof, enrolling).await?,
                (_, None) => false,
            };
            if !passed {
                db::second_factor::count_attempt(conn, &hash).await?;
                if let Some(ip) = client.ip {
                    state.lockout.failed(&user.email, ip).await;
                }
                return Ok(Outcome::Wrong(user.email, user.id));
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
            if let Some(ip) = client.ip {
                state.lockout.succeeded(&user.email, ip).await;
            }
            let mut role_changed = false;
            let mut user = user;
            if let Some(pending) = &c.pending {
                // The single sign-on's identity is linked (and its role applied) only now.
                let (linked, changed) =
                    super::oidc::link_pending(state, conn, pending, client).await?;
                if linked.id != user.id {
                    return Err(Error::Unauthenticated("sign in again".into()));
                }
                (user, role_changed) = (linked, changed);
            }
            let method = format!("{}+{}", c.first_factor, proof.kind());
            let session = open_session(state, conn, user, client, &method).await?;
            Ok(Outcome::Passed(Box::new(session), codes, role_changed))
        })
        .await?;
    drop(conn);
    match outcome {
        Outcome::Passed(session, codes, role_changed) => {
            if role_changed {
                // The user's other sessions were revoked with the role; the new one is not.
                let revoked = crate::realtime::Revoked::All;
                state.broker.revoke(session.user.id.0, revoked);
            }
            Ok((*session, codes))
        }
        Outcome::Wrong(email, user) => {
            let entry = NewAuditEntry::new(Action::SignInFailed, None)
                .on_user(user)
                .from_ip(client.ip)
                .with(json!({ "email": email, "reason": "wrong second factor" }));
            audit::record(state, entry).await;
            Err(Error::Unauthenticated("wrong code".into()))
        }
        Outcome::Void => Err(void()),
    }
}
