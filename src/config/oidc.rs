//! The settings of sign-in beyond passwords: single sign-on with OpenID Connect (the
//! providers: issuer, client, what to do with new users, group-to-role mapping; where they
//! send the browser back) and passkeys (the WebAuthn relying party).

use clap::Args;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Settings of single sign-on.
#[derive(Debug, Clone, Args)]
pub struct OidcArgs {
    /// OpenID Connect providers, a JSON array of objects: `id`, `name`, `issuer`,
    /// `client_id`, `client_secret` (required); `scopes` (default `["email", "profile"]`),
    /// `new_users` (`create` or `refuse`, default `refuse`), `default_role` (`USER`),
    /// `default_division` (a division id), `groups_claim` and `group_roles` (claim value →
    /// `ADMIN` or `USER`). See docs/sign-in.md.
    #[arg(long, env = "EPOP_OIDC_PROVIDERS", hide_env_values = true)]
    pub oidc_providers: Option<String>,

    /// Where providers send the browser back (registered with each provider): the app's page
    /// that passes `code` and `state` to FinishOidcSignIn. Unset: EPOP_PUBLIC_URL +
    /// `/auth/callback`.
    #[arg(long, env = "EPOP_OIDC_REDIRECT_URL")]
    pub oidc_redirect_url: Option<String>,
}

/// Settings of passkeys (WebAuthn).
#[derive(Debug, Clone, Args)]
pub struct PasskeyArgs {
    /// The WebAuthn relying party id: the domain passkeys belong to (the web app's host or a
    /// parent domain of it). Unset: the host of EPOP_PUBLIC_URL.
    #[arg(long, env = "EPOP_WEBAUTHN_RP_ID")]
    pub webauthn_rp_id: Option<String>,

    /// The origins of the pages that use passkeys, comma-separated (e.g.
    /// `https://app.example.com`). Unset: the origin of EPOP_PUBLIC_URL.
    #[arg(long, env = "EPOP_WEBAUTHN_ORIGINS", value_delimiter = ',')]
    pub webauthn_origins: Vec<String>,
}

/// What to do with someone the provider vouches for who has no account here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NewUsers {
    /// Refuse the sign-in (an admin creates the account first; it links by verified email).
    #[default]
    Refuse,
    /// Create the account with the default role and division.
    Create,
}

/// One provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// Its id in URLs and requests.
    pub id: String,
    /// Its name on a sign-in button.
    pub name: String,
    /// The issuer URL (discovery is at `/.well-known/openid-configuration` under it).
    pub issuer: String,
    /// The client id registered with it.
    pub client_id: String,
    /// The client secret.
    pub client_secret: String,
    /// Scopes beyond `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// New users: created or refused.
    #[serde(default)]
    pub new_users: NewUsers,
    /// The role of created users: `USER` or `ADMIN`.
    #[serde(default = "default_role")]
    pub default_role: String,
    /// The division created users join.
    #[serde(default)]
    pub default_division: Option<i32>,
    /// The ID-token claim that lists the user's groups.
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// Group → role: the highest role of the user's groups applies at each sign-in.
    #[serde(default)]
    pub group_roles: BTreeMap<String, String>,
}

fn default_scopes() -> Vec<String> {
    vec!["email".into(), "profile".into()]
}

fn default_role() -> String {
    "USER".into()
}

impl OidcArgs {
    /// The providers, checked: unique ids and known roles.
    pub fn providers(&self) -> anyhow::Result<Vec<Provider>> {
        let Some(json) = self
            .oidc_providers
            .as_deref()
            .filter(|j| !j.trim().is_empty())
        else {
            return Ok(Vec::new());
        };
        let providers: Vec<Provider> = serde_json::from_str(json)
            .map_err(|e| anyhow::anyhow!("EPOP_OIDC_PROVIDERS is not a valid list: {e}"))?;
        let mut ids = std::collections::HashSet::new();
        for p in &providers {
            anyhow::ensure!(
                !p.id.is_empty() && ids.insert(p.id.as_str()),
                "EPOP_OIDC_PROVIDERS: provider ids must be unique and not empty ({:?})",
                p.id
            );
            let roles = std::iter::once(&p.default_role).chain(p.group_roles.values());
            for role in roles {
                anyhow::ensure!(
                    crate::domain::Role::from_name(role).is_some(),
                    "EPOP_OIDC_PROVIDERS: provider {:?}: unknown role {role:?} (ADMIN or USER)",
                    p.id
                );
            }
        }
        Ok(providers)
    }
}
