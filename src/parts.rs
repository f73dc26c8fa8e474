//! The parts of a server built from its configuration beyond the database: the file
//! storage with its rules, and the AI assistant with its provider and limits.

use crate::{auth::jwt::JwtKeys, config::Config, service};
use secrecy::ExposeSecret;
use std::net::SocketAddr;

/// The AI assistant: its provider when `EPOP_AI_BASE_URL` is set, and its limits.
pub fn assistant(a: &crate::config::AiArgs) -> service::ai::Assistant {
    let provider = a.ai_base_url.as_ref().map(|url| {
        crate::ai::Provider::new(
            url,
            a.ai_api_key.as_ref(),
            &a.ai_model,
            &a.ai_models,
            a.ai_idle_timeout,
        )
    });
    service::ai::Assistant {
        provider,
        limits: service::ai::Limits::new(a.ai_requests_per_minute, a.ai_max_concurrent),
        max_prompt_chars: a.ai_max_prompt_chars.max(1_000),
        answer_timeout: a.ai_answer_timeout,
        context_messages: a.ai_context_messages.clamp(1, 200),
    }
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
