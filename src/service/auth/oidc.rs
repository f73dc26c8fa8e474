//! Single sign-on with OpenID Connect: starting a sign-in (its state, nonce and PKCE
//! verifier kept in the database, so any instance can finish it, once), and finishing it:
//! the verified identity signs in the account linked to it, or the account with its verified
//! email (then linked), or a new account when the provider's settings allow; the group claim
//! may set the role. The session is the same as a password sign-in's.

use super::{Session, open};
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

/// Starts a sign-in at `provider`: the URL to send the browser to.
pub async fn start_oidc(state: &State, provider: &str) -> Result<Started> {
    let entry = state.oidc.get(provider)?;
    let started = state.oidc.start(entry).await?;
    let pending = Pending {
        provider: provider.to_owned(),
        nonce: started.nonce.clone(),
        pkce_verifier: started.pkce_verifier.clone(),
    };
    let mut conn = state.pool.get().await?;
    db::identities::insert_state(&mut conn, &started.state, &pending, STATE_TTL).await?;
    Ok(started)
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

/// Finishes a sign-in with the provider's `state` and `code`.
pub async fn finish_oidc(
    state: &State,
    st: &str,
    code: &str,
    client: &ClientInfo,
) -> Result<Session> {
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
    // A created account's password is random and unknown (a reset email can set one); it is
    // hashed before any connection is taken.
    let placeholder = state
        .hasher
        .hash(&Password::parse("password", &super::new_token())?)
        .await?;
    let mut conn = state.pool.get().await?;
    let outcome = conn
        .transaction::<_, Error, _>(async |conn| {
            let Some(user) = account(conn, &config, &identity, &placeholder, client).await? else {
                return Ok(None);
            };
            let method = format!("oidc:{}", config.id);
            open(state, conn, user, client, &method).await.map(Some)
        })
        .await;
    match outcome {
        Ok(Some(session)) => Ok(session),
        Ok(None) => {
            let err = Error::PermissionDenied(
                "no account here matches this sign-in: ask an admin to create one".into(),
            );
            Err(refuse(
                state,
                client,
                provider,
                "no account and new users refused",
                err,
            )
            .await)
        }
        Err(e @ Error::PermissionDenied(_)) => Err(refuse(
            state,
            client,
            provider,
            "email not verified or account disabled",
            e,
        )
        .await),
        Err(e) => Err(e),
    }
}

/// The account `identity` signs in to: linked before, or with its verified email (then
/// linked), or created when `config` allows; None when none may be used.
async fn account(
    conn: &mut AsyncPgConnection,
    config: &Provider,
    identity: &Identity,
    placeholder: &str,
    client: &ClientInfo,
) -> Result<Option<db::users::User>> {
    let mapped = mapped_role(config, &identity.groups);
    if let Some(id) = db::identities::linked_user(conn, &config.id, &identity.subject).await? {
        let user = db::users::get(conn, id).await?.filter(|u| !u.disabled);
        let user =
            user.ok_or_else(|| Error::PermissionDenied("this account is disabled".into()))?;
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
        None if config.new_users == NewUsers::Create => (
            create(conn, config, identity, &email, placeholder).await?,
            "created",
        ),
        None => return Ok(None),
    };
    db::identities::link(conn, &config.id, &identity.subject, user.id, email.as_str()).await?;
    let entry = NewAuditEntry::new(Action::SsoLinked, Some(user.id))
        .on_user(user.id)
        .from_ip(client.ip)
        .with(json!({ "provider": config.id, "subject": identity.subject, "account": how }));
    db::audit::append(conn, &entry).await?;
    apply_role(conn, user, mapped).await.map(Some)
}

/// The role the user's groups give: the highest mapped one; None when nothing maps.
fn mapped_role(config: &Provider, groups: &[String]) -> Option<Role> {
    let roles = groups
        .iter()
        .filter_map(|g| config.group_roles.get(g))
        .filter_map(|r| Role::from_name(r));
    roles.max_by_key(|r| *r == Role::Admin)
}

/// `user` with the role their groups map to, when one does and differs (audited).
async fn apply_role(
    conn: &mut AsyncPgConnection,
    mut user: db::users::User,
    mapped: Option<Role>,
) -> Result<db::users::User> {
    let Some(role) = mapped.filter(|r| *r != user.role) else {
        return Ok(user);
    };
    let changes = db::users::UserChanges {
        role: Some(role),
        ..Default::default()
    };
    db::users::update(conn, user.id, changes).await?;
    let entry = NewAuditEntry::new(Action::RoleChanged, None)
        .on_user(user.id)
        .with(json!({ "from": user.role.as_str(), "to": role.as_str(), "by": "sso group claim" }));
    db::audit::append(conn, &entry).await?;
    user.role = role;
    Ok(user)
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
