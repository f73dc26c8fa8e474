//! OpenID Connect relying party (the `openidconnect` crate): discovery (cached an hour), the
//! authorization URL with `state`, `nonce` and a PKCE challenge, and the code exchange whose
//! ID token is checked (signature against the provider's keys, issuer, audience, expiry,
//! nonce). HTTP goes through reqwest without following redirects.

use crate::{
    config::oidc::Provider,
    error::{Error, Result},
};
use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
    core::{CoreClient, CoreProviderMetadata, CoreResponseType},
};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How long discovered provider metadata (endpoints, keys) is used before it is fetched again.
const METADATA_TTL: Duration = Duration::from_secs(3600);

/// A configured provider and its discovered metadata.
#[derive(Debug)]
pub struct Entry {
    /// Its settings.
    pub config: Provider,
    metadata: Mutex<Option<(CoreProviderMetadata, Instant)>>,
}

/// The configured providers.
#[derive(Debug)]
pub struct Providers {
    entries: Vec<Entry>,
    redirect: Option<RedirectUrl>,
    http: reqwest::Client,
}

/// A sign-in's secrets the callback must present.
#[derive(Debug, Clone)]
pub struct Started {
    /// The URL to send the browser to.
    pub url: String,
    /// The `state` it carries.
    pub state: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier of its challenge.
    pub pkce_verifier: String,
}

/// Who the provider vouched for, from a verified ID token.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The provider's stable id of the user (`sub`).
    pub subject: String,
    /// Their email, when given.
    pub email: Option<String>,
    /// Whether the provider verified that email.
    pub email_verified: bool,
    /// Their name, when given.
    pub name: Option<String>,
    /// The values of the configured groups claim.
    pub groups: Vec<String>,
}

fn refused(why: impl std::fmt::Display) -> Error {
    tracing::info!(%why, "single sign-on refused");
    Error::Unauthenticated("the identity provider's answer could not be verified".into())
}

impl Providers {
    /// `configs`, sending browsers back to `redirect` (none: no provider may be used).
    pub fn new(configs: Vec<Provider>, redirect: &str) -> anyhow::Result<Self> {
        let redirect = if configs.is_empty() {
            None
        } else {
            Some(RedirectUrl::new(redirect.to_owned())?)
        };
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        let entries = configs
            .into_iter()
            .map(|config| Entry {
                config,
                metadata: Mutex::new(None),
            })
            .collect();
        Ok(Self {
            entries,
            redirect,
            http,
        })
    }

    /// The providers, in configuration order.
    pub fn list(&self) -> impl Iterator<Item = &Provider> {
        self.entries.iter().map(|e| &e.config)
    }

    /// The provider `id`, or NOT_FOUND.
    pub fn get(&self, id: &str) -> Result<&Entry> {
        self.entries
            .iter()
            .find(|e| e.config.id == id)
            .ok_or(Error::NotFound("sign-in provider"))
    }

    async fn client(
        &self,
        entry: &Entry,
    ) -> Result<(
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        Provider,
    )> {
        let metadata = {
            let mut cached = entry.metadata.lock().await;
            match &*cached {
                Some((m, at)) if at.elapsed() < METADATA_TTL => m.clone(),
                _ => {
                    let issuer = IssuerUrl::new(entry.config.issuer.clone())
                        .map_err(|e| Error::Internal(e.into()))?;
                    let m = CoreProviderMetadata::discover_async(issuer, &Http(&self.http))
                        .await
                        .map_err(|e| {
                            tracing::warn!(provider = %entry.config.id, error = %e,
                                "OpenID Connect discovery failed");
                            Error::Unavailable("the identity provider cannot be reached".into())
                        })?;
                    *cached = Some((m.clone(), Instant::now()));
                    m
                }
            }
        };
        let redirect = self
            .redirect
            .clone()
            .ok_or(Error::NotFound("sign-in provider"))?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(entry.config.client_id.clone()),
            Some(ClientSecret::new(entry.config.client_secret.clone())),
        )
        .set_redirect_uri(redirect);
        Ok((client, entry.config.clone()))
    }

    /// A new sign-in at `entry`: the authorization URL and what its callback must match.
    pub async fn start(&self, entry: &Entry) -> Result<Started> {
        let (client, config) = self.client(entry).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in &config.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok(Started {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges `code` (with the PKCE verifier) at `entry` and verifies the ID token, which
    /// must carry `nonce`.
    pub async fn finish(
        &self,
        entry: &Entry,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<Identity> {
        let (client, config) = self.client(entry).await?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(refused)?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&Http(&self.http))
            .await
            .map_err(refused)?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| refused("no ID token in the token response"))?;
        let claims = id_token
            .claims(&client.id_token_verifier(), &Nonce::new(nonce.to_owned()))
            .map_err(refused)?;
        let groups = match &config.groups_claim {
            Some(claim) => groups(&id_token.to_string(), claim),
            None => Vec::new(),
        };
        Ok(Identity {
            subject: claims.subject().to_string(),
            email: claims.email().map(|e| e.to_string()),
            email_verified: claims.email_verified().unwrap_or(false),
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.to_string()),
            groups,
        })
    }
}

/// The HTTP client of the OpenID Connect calls: reqwest, with no redirects followed.
struct Http<'a>(&'a reqwest::Client);

impl<'c> openidconnect::AsyncHttpClient<'c> for Http<'_> {
    type Error = reqwest::Error;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = std::result::Result<openidconnect::HttpResponse, reqwest::Error>,
                > + Send
                + 'c,
        >,
    >;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let response = self.0.execute(reqwest::Request::try_from(request)?).await?;
            let mut reply = http::Response::builder().status(response.status());
            if let Some(headers) = reply.headers_mut() {
                headers.extend(response.headers().clone());
            }
            let body = response.bytes().await?.to_vec();
            Ok(reply.body(body).unwrap_or_default())
        })
    }
}

/// The string values of `claim` in a verified JWT's payload (a list or one string).
fn groups(jwt: &str, claim: &str) -> Vec<String> {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let payload = jwt
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p).ok());
    match payload.as_ref().and_then(|p| p.get(claim)) {
        Some(serde_json::Value::Array(values)) => values
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}
