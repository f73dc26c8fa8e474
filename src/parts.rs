//! The parts of a server built from its configuration beyond the database: the file
//! storage with its rules, and the AI assistant with its provider and limits.

use crate::{auth::jwt::JwtKeys, config::Config, service};
use secrecy::ExposeSecret;
use std::net::SocketAddr;

/// The AI assistant: its provider when `EPOP_AI_BASE_URL` is set, and its limits (across
/// the instances, with Redis: counted where the broker's leases and the rate limits are).
pub async fn assistant(
    config: &Config,
    broker: &crate::realtime::Broker,
) -> anyhow::Result<service::ai::Assistant> {
    let a = &config.ai;
    let provider = a.ai_base_url.as_ref().map(|url| {
        crate::ai::Provider::new(
            url,
            a.ai_api_key.as_ref(),
            &a.ai_model,
            &a.ai_models,
            a.ai_idle_timeout,
        )
    });
    let mut limits = service::ai::Limits::new(a.ai_requests_per_minute, a.ai_max_concurrent);
    if let (Some(url), Some(leases)) = (&config.redis_url, broker.leases()) {
        let prefix = format!("{}:rate:", config.redis_channel);
        let counter = crate::ratelimit::shared::Counter::new(url.expose_secret(), &prefix).await?;
        limits = limits.shared_through(leases, counter);
    }
    Ok(service::ai::Assistant {
        provider,
        limits,
        max_prompt_chars: a.ai_max_prompt_chars.max(1_000),
        answer_timeout: a.ai_answer_timeout,
        context_messages: a.ai_context_messages.clamp(1, 200),
    })
}

/// The file settings: S3 when a bucket is configured, else `<data-dir>/files` served by this
/// server at `EPOP_FILES_URL` or its bound address.
pub fn files(
    config: &Config,
    bound: SocketAddr,
    jwt: &JwtKeys,
) -> anyhow::Result<service::files::Files> {
    let f = &config.files;
    let storage = match f.s3()? {
        Some(s3) => crate::storage::Storage::s3(&s3)?,
        None => {
            let base = f.files_url.clone().unwrap_or_else(|| {
                let ip = match bound.ip() {
                    ip if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
                    ip => ip,
                };
                format!("http://{}", SocketAddr::new(ip, bound.port()))
            });
            let dir = config.store.data_dir.join("files");
            crate::storage::Storage::local(&dir, &base, jwt.derive("file urls"), f.files_fsync)?
        }
    };
    let mut policy = crate::domain::files::TypePolicy {
        allowed: f.files_allowed_types.clone(),
        ..Default::default()
    };
    if let Some(inert) = &f.files_inert_types {
        policy.inert = inert.clone();
    }
    Ok(service::files::Files {
        storage,
        max_bytes: f.files_max_bytes,
        policy,
        pending_ttl: f.files_pending_ttl,
        upload_ttl: f.files_upload_url_ttl,
        download_ttl: f.files_download_url_ttl,
        quota: service::files::Quota {
            pending: f.files_max_pending,
            pending_bytes: f.files_max_pending_bytes,
            stored_bytes: f.files_quota_bytes,
        },
    })
}

/// The limits on failed sign-ins: counted in this process, and in Redis too when configured
/// (shared by every instance).
pub async fn lockout(config: &Config) -> anyhow::Result<crate::auth::lockout::Lockout> {
    use crate::auth::lockout::{Limits, Lockout};
    let limits = Limits {
        account_address: config.login_lockout,
        address: config.login_address_failures,
        account: config.login_account_failures,
        ipv6_prefix: config.ipv6_prefix,
    };
    Ok(match &config.redis_url {
        Some(url) => {
            let prefix = format!("{}:lockout:", config.redis_channel);
            Lockout::redis(limits, url.expose_secret(), &prefix).await?
        }
        None => Lockout::local(limits),
    })
}

/// Where the AI SDK route records answers in progress: in Redis when configured (rejoinable
/// on every instance), else in this process.
pub async fn answers(config: &Config) -> anyhow::Result<crate::rest::ui_chat::answers::Answers> {
    use crate::rest::ui_chat::answers::Answers;
    Ok(match &config.redis_url {
        Some(url) => {
            let prefix = format!("{}:ui-chat:", config.redis_channel);
            Answers::redis(url.expose_secret(), &prefix, config.ai.ai_answer_timeout).await?
        }
        None => Answers::default(),
    })
}

/// The single sign-on providers of `config`; browsers come back to EPOP_OIDC_REDIRECT_URL, or
/// the public URL's `/auth/callback`.
pub fn oidc(config: &Config) -> anyhow::Result<crate::auth::oidc::Providers> {
    let redirect = match &config.oidc.oidc_redirect_url {
        Some(url) => url.clone(),
        None => format!("{}/auth/callback", config.public_url.trim_end_matches('/')),
    };
    crate::auth::oidc::Providers::new(config.oidc.providers()?, &redirect)
}

/// The passkeys' relying party: EPOP_WEBAUTHN_RP_ID (or the public URL's host) for pages at
/// EPOP_WEBAUTHN_ORIGINS (or the public URL's origin).
pub fn passkeys(config: &Config) -> anyhow::Result<crate::auth::passkeys::RelyingParty> {
    let public = url::Url::parse(&config.public_url)?;
    let rp_id = match &config.passkeys.webauthn_rp_id {
        Some(id) => id.clone(),
        None => public.host_str().unwrap_or("localhost").to_owned(),
    };
    let origins = if config.passkeys.webauthn_origins.is_empty() {
        vec![public.origin().ascii_serialization()]
    } else {
        config.passkeys.webauthn_origins.clone()
    };
    crate::auth::passkeys::RelyingParty::new(&rp_id, origins)
}

/// The push services, with the VAPID key configured, or else the one every instance of the
/// database shares (generated by the first to start).
pub async fn pushers(
    config: &Config,
    pool: &crate::db::Pool,
) -> anyhow::Result<crate::push::Pushers> {
    use crate::push::VapidKey;
    let args = &config.push;
    let key = match &args.vapid_private_key {
        Some(k) => VapidKey::from_base64(secrecy::ExposeSecret::expose_secret(k))?,
        None => {
            let mut conn = pool.get().await?;
            let stored = crate::db::keys::secret(&mut conn, "vapid", &VapidKey::generate()).await?;
            VapidKey::from_bytes(&stored)?
        }
    };
    let subject = args
        .vapid_subject
        .clone()
        .unwrap_or_else(|| config.public_url.clone());
    crate::push::Pushers::new(args, key, subject)
}
