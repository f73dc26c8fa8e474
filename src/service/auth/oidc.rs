//! Single sign-on with OpenID Connect: starting a sign-in (its state, nonce and PKCE
//! verifier kept in the database, so any instance can finish it, once), and finishing it:
//! the verified identity signs in the account linked to it, or the account with its verified
//! email (then linked), or a new account when the provider's settings allow; the group claim
//! may set the role. The session is the same as a password sign-in's.

use super::{SignIn, open_session};
use crate::{
    auth::oidc::{Identity, Started},
    config::oidc::{NewUsers, Provider},
    db::{self, identities::Pending},
    domain::audit::{Action, NewAuditEntry},
    domain::security::ClientInfo,
    domain::{DisplayName, DivisionId, Email, Password, Role, UserId},
    error::{Error, Result},
    service::{State, audit},
};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::json;
use std::time::Duration;

/// How long a started sign-in may be finished.
const STATE_TTL: Duration = Duration::from_secs(10 * 60);

/// The configured providers: (id, name).
pub fn providers(state: &State) -> Vec<(String, String)> {
    state
        .oidc
        .list()
        .map(|p| (p.id.clone(), p.name.clone()))
        .collect()
}

/// A started sign-in: where to send the browser, and the binder its client must present.
#[derive(Debug, Clone)]
pub struct OidcStart {
    /// The provider's authorization URL.
    pub url: String,
    /// The state in it.
    pub state: String,
    /// The binder (a cookie for browsers).
    pub binder: String,
}

/// Starts a sign-in at `provider`: the URL to send the browser to.
pub async fn start_oidc(state: &State, provider: &str) -> Result<OidcStart> {
    let entry = state.oidc.get(provider)?;
    let started: Started = state.oidc.start(entry).await?;
    let binder = super::new_token();
    let pending = Pending {
        provider: provider.to_owned(),
        nonce: started.nonce.clone(),
        pkce_verifier: started.pkce_verifier.clone(),
        binder_hash: super::token_hash(&binder),
    };
    let mut conn = state.pool.get().await?;
    db::identities::insert_state(&mut conn, &started.state, &pending, STATE_TTL).await?;
    Ok(OidcStart {
        url: started.url,
        state: started.state,
        binder,
    })
}

async fn refuse(
    state: &State,
    client: &ClientInfo,
    provider: &str,
    why: &str,
    err: Error,
) -> Error {
    let entry = NewAuditEntry::new(Action::SsoRefused, None)
        .from_ip(client.ip)
        .with(json!({ "provider": provider, "reason": why }));
    audit::record(state, entry).await;
    err
}

/// Finishes a sign-in with the provider's `state` and `code`, by the client holding `binder`:
/// a session, or the account's second factor to pass first.
pub async fn finish_oidc(
    state: &State,
    st: &str,
    code: &str,
    binder: &str,
    client: &ClientInfo,
) -> Result<SignIn> {
    let pending = {
        let mut conn = state.pool.get().await?;
        db::identities::take_state(&mut conn, st, STATE_TTL).await?
    };
    let Some(pending) = pending else {
        let err =
            Error::Unauthenticated("this sign-in expired or was already used: start again".into());
        return Err(refuse(state, client, "", "unknown or used state", err).await);
    };
    let provider = pending.provider.as_str();
    if super::token_hash(binder) != pending.binder_hash {
        let err = Error::Unauthenticated(
            "this sign-in was started by another browser or app: start again".into(),
        );
        return Err(refuse(state, client, provider, "binder missing or wrong", err).await);
    }
    let entry = state.oidc.get(provider)?;
    let identity = match state
        .oidc
        .finish(entry, code, &pending.pkce_verifier, &pending.nonce)
        .await
    {
        Ok(i) => i,
        Err(e @ Error::Unauthenticated(_)) => {
            return Err(refuse(state, client, provider, "ID token or code rejected", e).await);
        }
        Err(e) => return Err(e),
    };
    let config = entry.config.clone();
    let method = format!("oidc:{}", config.id);
    // An account that has a second factor (or that the policy covers) passes it first:
    // nothing is linked, and no role changed, for someone who has not.
    if let Some(user) = existing(state, &config, &identity).await? {
        let pending = stored_identity(&config.id, &identity);
        let ch = super::second_factor::challenge(state, &user, &method, Some(&pending));
        if let Some(challenge) = ch.await? {
            return Ok(SignIn::SecondFactor(challenge));
        }
    }
    // A created account's password is random and unknown (a reset email can set one); it is
    // hashed, only when an account will be created, before any connection is held.
    let placeholder = if creates(state, &config, &identity).await? {
        let random = Password::parse("password", &super::new_token())?;
        Some(state.hasher.hash(&random).await?)
    } else {
        None
    };
    let mut conn = state.pool.get().await?;
    let outcome = conn
        .transaction::<_, Error, _>(async |conn| {
            account(conn, &config, &identity, placeholder.as_deref(), client).await
        })
        .await;
    drop(conn);
    let (user, role_changed) = match outcome {
        Ok(Some(found)) => found,
        Ok(None) => {
            let err = Error::PermissionDenied(
                "no account here matches this sign-in: ask an admin to create one".into(),
            );
            return Err(refuse(
                state,
                client,
                provider,
                "no account and new users refused",
                err,
            )
            .await);
        }
        Err(e @ Error::PermissionDenied(_)) => {
            let why = "email not verified or account disabled";
            return Err(refuse(state, client, provider, why, e).await);
        }
        Err(e) => return Err(e),
    };
    if role_changed {
        // The role changed: the user's other sessions were revoked with it.
        state
            .broker
            .revoke(user.id.0, crate::realtime::Revoked::All);
    }
    // A new account the policy covers enrols before any token.
    if let Some(challenge) = super::second_factor::challenge(state, &user, &method, None).await? {
        return Ok(SignIn::SecondFactor(challenge));
    }
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        open_session(state, conn, user, client, &method).await
    })
    .await
    .map(|s| SignIn::Session(Box::new(s)))
}

/// The active account `identity` would sign in to, without changing anything: the one linked
/// to it, or the one with its verified email.
async fn existing(
    state: &State,
    config: &Provider,
    identity: &Identity,
) -> Result<Option<db::users::User>> {
    let mut conn = state.pool.get().await?;
    let user = match db::identities::linked_user(&mut conn, &config.id, &identity.subject).await? {
        Some(id) => db::users::get(&mut conn, id).await?,
        None => match (&identity.email, identity.email_verified) {
            (Some(e), true) => {
                let email = Email::parse("email", e)?;
                db::users::find_by_email(&mut conn, &email)
                    .await?
                    .map(|(u, _)| u)
            }
            _ => None,
        },
    };
    Ok(user.filter(|u| !u.disabled))
}

/// The stored form of a sign-in's identity, kept with its second-factor challenge.
fn stored_identity(provider: &str, identity: &Identity) -> serde_json::Value {
    json!({
        "version": 1,
        "provider": provider,
        "subject": identity.subject,
        "email": identity.email,
        "email_verified": identity.email_verified,
        "name": identity.name,
        "groups": identity.groups,
    })
}

/// Links the identity kept by [`stored_identity`] once its second factor passed, inside the caller's
/// transaction: the account (which must be the challenge's) and whether its role changed.
pub(super) async fn link_pending(
    state: &State,
    conn: &mut AsyncPgConnection,
    pending: &serde_json::Value,
    client: &ClientInfo,
) -> Result<(db::users::User, bool)> {
    let broken = || Error::Internal(anyhow::anyhow!("a pending sign-in's identity is malformed"));
    let text = |k: &str| pending.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let provider = text("provider").ok_or_else(broken)?;
    let identity = Identity {
        subject: text("subject").ok_or_else(broken)?,
        email: text("email"),
        email_verified: pending["email_verified"].as_bool().unwrap_or(false),
        name: text("name"),
        groups: pending["groups"]
            .as_array()
            .map(|g| {
                g.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let config = state.oidc.get(&provider)?.config.clone();
    account(conn, &config, &identity, None, client)
        .await?
        .ok_or_else(|| Error::Unauthenticated("sign in again".into()))
}

/// Whether `identity` will get a new account: nothing linked, a verified email nobody has,
/// and a provider that creates accounts.
async fn creates(state: &State, config: &Provider, identity: &Identity) -> Result<bool> {
    let email = match (&identity.email, identity.email_verified) {
        (Some(e), true) if config.new_users == NewUsers::Create => Email::parse("email", e)?,
        _ => return Ok(false),
    };
    let mut conn = state.pool.get().await?;
    Ok(
        db::identities::linked_user(&mut conn, &config.id, &identity.subject)
            .await?
            .is_none()
            && db::users::find_by_email(&mut conn, &email).await?.is_none(),
    )
}

/// The account `identity` signs in to: linked before, or with its verified email (then
/// linked), or created when `config` allows; None when none may be used.
async fn account(
    conn: &mut AsyncPgConnection,
    config: &Provider,
    identity: &Identity,
    placeholder: Option<&str>,
    client: &ClientInfo,
) -> Result<Option<(db::users::User, bool)>> {
    let mapped = mapped_role(config, &identity.groups);
    if let Some(id) = db::identities::linked_user(conn, &config.id, &identity.subject).await? {
        let user = db::users::get(conn, id).await?.filter(|u| !u.disabled);
        let user = user.ok_or_else(|| {
            Error::PermissionDenied("this account is disabled or was deleted".into())
        })?;
        return apply_role(conn, user, mapped).await.map(Some);
    }
    let email = match (&identity.email, identity.email_verified) {
        (Some(e), true) => Email::parse("email", e)?,
        _ => {
            return Err(Error::PermissionDenied(
                "the identity provider has not verified your email address".into(),
            ));
        }
    };
    let (user, how) = match db::users::find_by_email(conn, &email).await? {
        Some((u, _)) if u.disabled => {
            return Err(Error::PermissionDenied("this account is disabled".into()));
        }
        Some((u, _)) => (u, "existing"),
        None => match (config.new_users, placeholder) {
            (NewUsers::Create, Some(hash)) => (
                create(conn, config, identity, &email, hash).await?,
                "created",
            ),
            _ => return Ok(None),
        },
    };
    db::identities::link(conn, &config.id, &identity.subject, user.id, email.as_str()).await?;
    let entry = NewAuditEntry::new(Action::SsoLinked, Some(user.id))
        .on_user(user.id)
        .from_ip(client.ip)
        .with(json!({ "provider": config.id, "subject": identity.subject, "account": how }));
    db::audit::append(conn, &entry).await?;
    apply_role(conn, user, mapped).await.map(Some)
}

/// The role the provider's groups give when a groups claim is configured: the highest mapped
/// one, or the default role when none maps (the provider decides); None without a claim.
fn mapped_role(config: &Provider, groups: &[String]) -> Option<Role> {
    config.groups_claim.as_ref()?;
    let roles = groups
        .iter()
        .filter_map(|g| config.group_roles.get(g))
        .filter_map(|r| Role::from_name(r));
    let default = Role::from_name(&config.default_role).unwrap_or(Role::User);
    Some(roles.max_by_key(|r| *r == Role::Admin).unwrap_or(default))
}

/// `user` with the role their groups map to, when one does and differs (audited; their
/// sessions revoked, as an admin's role change does), and whether it changed. The last
/// active admin is not demoted.
async fn apply_role(
    conn: &mut AsyncPgConnection,
    mut user: db::users::User,
    mapped: Option<Role>,
) -> Result<(db::users::User, bool)> {
    let Some(role) = mapped.filter(|r| *r != user.role) else {
        return Ok((user, false));
    };
    if user.role == Role::Admin && db::users::count_active_admins(conn).await? <= 1 {
        tracing::warn!(user = %user.id.0, "single sign-on would demote the last admin: kept");
        return Ok((user, false));
    }
    let changes = db::users::UserChanges {
        role: Some(role),
        ..Default::default()
    };
    db::users::update(conn, user.id, changes).await?;
    db::tokens::revoke_user(conn, user.id, None).await?;
    let entry = NewAuditEntry::new(Action::RoleChanged, None)
        .on_user(user.id)
        .with(json!({ "from": user.role.as_str(), "to": role.as_str(), "by": "sso group claim" }));
    db::audit::append(conn, &entry).await?;
    user.role = role;
    Ok((user, true))
}

/// A new account for `identity`, with the provider's default role and division.
async fn create(
    conn: &mut AsyncPgConnection,
    config: &Provider,
    identity: &Identity,
    email: &Email,
    placeholder: &str,
) -> Result<db::users::User> {
    let name = identity
        .name
        .clone()
        .filter(|n| DisplayName::parse("name", n).is_ok())
        .unwrap_or_else(|| email.local_part().to_owned());
    let display_name = DisplayName::parse("name", &name)?;
    let role = Role::from_name(&config.default_role).unwrap_or(Role::User);
    let new = db::users::NewUser {
        email,
        display_name: &display_name,
        password_hash: placeholder,
        role,
    };
    let id: UserId = db::users::insert(conn, new).await?;
    if let Some(division) = config.default_division {
        db::users::set_divisions(conn, id, &[DivisionId(division)]).await?;
    }
    let entry = NewAuditEntry::new(Action::UserCreated, None)
        .on_user(id)
        .with(json!({ "by": "single sign-on", "provider": config.id }));
    db::audit::append(conn, &entry).await?;
    db::users::get(conn, id)
        .await?
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("a user just created is gone")))
}
