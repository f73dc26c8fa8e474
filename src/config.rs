//! Typed settings, from command-line flags and environment variables (flags win). Every
//! setting has an embedded default, so `epop` runs with nothing configured.

mod files;
pub mod oidc;
mod push;

pub use files::FilesArgs;
pub use push::PushArgs;

use clap::{Args, ValueEnum};
use secrecy::SecretString;
use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Settings shared by every subcommand that touches the database.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// PostgreSQL URL. When unset, a private cluster under the data directory is used.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<SecretString>,

    /// PostgreSQL URL of the schema's owner, to apply migrations with; the server then serves
    /// as `DATABASE_URL`'s role and grants it reading and writing rows, nothing more. When
    /// unset, `DATABASE_URL`'s role does both. (The embedded cluster has both roles.)
    #[arg(long, env = "EPOP_MIGRATION_DATABASE_URL", hide_env_values = true)]
    pub migration_database_url: Option<SecretString>,

    /// Directory for the embedded database, the JWT key and outgoing email files.
    #[arg(long, env = "EPOP_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Maximum number of pooled database connections.
    #[arg(long, env = "EPOP_DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: u32,
}

/// Settings of `epop serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on for gRPC, gRPC-Web and HTTP (port 0 picks a free port).
    #[arg(long, env = "EPOP_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Serve `/metrics` on this address instead of the public one (e.g. `127.0.0.1:9090`, or
    /// a private network's address), so that only the monitoring network can scrape it.
    #[arg(long, env = "EPOP_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    #[command(flatten)]
    pub store: StoreArgs,

    /// Redis URL for real-time fan-out between instances; unset means in-process only. A
    /// secret (it may hold a password): never printed.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<SecretString>,

    /// The Redis pub/sub channel the instances of one deployment share.
    #[arg(long, env = "EPOP_REDIS_CHANNEL", default_value = "epop:events")]
    pub redis_channel: String,

    /// With Redis: how long an instance's claim that a user is online lasts unless renewed
    /// (every third of it); the users of a crashed instance go offline within about this.
    #[arg(long, env = "EPOP_PRESENCE_TTL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub presence_ttl: Duration,

    /// HMAC key for access tokens. When unset, the keys are kept in the database, shared by
    /// every instance on it, and rotated with `epop keys rotate`.
    #[arg(long, env = "EPOP_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<SecretString>,

    /// Sign-in, token refresh and password reset calls per client address, successes too
    /// (`COUNT/PERIOD`, or `off`): a loose bound on floods; failed sign-ins have their own
    /// hard limits below.
    #[arg(long, env = "EPOP_AUTH_RATE_LIMIT", default_value = "300/1m")]
    pub auth_rate_limit: crate::ratelimit::Rate,

    /// Message sends, typing notices and upload presigns per user (`COUNT/PERIOD`, or `off`).
    #[arg(long, env = "EPOP_WRITE_RATE_LIMIT", default_value = "240/1m")]
    pub write_rate_limit: crate::ratelimit::Rate,

    /// Open event streams per user on one server; more are refused (RESOURCE_EXHAUSTED).
    #[arg(long, env = "EPOP_MAX_STREAMS_PER_USER", default_value_t = 10)]
    pub max_streams_per_user: usize,

    /// A PEM certificate chain (leaf first): with `--tls-key`, the listener speaks only TLS
    /// (ALPN h2 and http/1.1); SIGHUP reads both files again.
    #[arg(long, env = "EPOP_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of `--tls-cert`.
    #[arg(long, env = "EPOP_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Send Strict-Transport-Security even without TLS here (behind a proxy that ends TLS);
    /// always sent when the listener speaks TLS.
    #[arg(long, env = "EPOP_HSTS", default_value_t = false)]
    pub hsts: bool,

    /// After SIGTERM, how long the server keeps accepting (not ready, streams closed) so
    /// that load balancers stop sending it clients, before it stops accepting and drains.
    #[arg(long, env = "EPOP_SHUTDOWN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub shutdown_delay: Duration,

    /// Wrong passwords per account and client address before signing in to that account from
    /// that address is refused for the rest of the period (`COUNT/PERIOD`, or `off`).
    #[arg(long, env = "EPOP_LOGIN_LOCKOUT", default_value = "5/15m")]
    pub login_lockout: crate::ratelimit::Rate,

    /// Failed sign-ins per client address, whatever the account, before sign-ins from that
    /// address are refused for the rest of the period (`COUNT/PERIOD`, or `off`).
    #[arg(long, env = "EPOP_LOGIN_ADDRESS_FAILURES", default_value = "30/15m")]
    pub login_address_failures: crate::ratelimit::Rate,

    /// Failed sign-ins per account, from any address, before signing in to that account is
    /// refused for the rest of the period (`COUNT/PERIOD`, or `off`).
    #[arg(long, env = "EPOP_LOGIN_ACCOUNT_FAILURES", default_value = "20/15m")]
    pub login_account_failures: crate::ratelimit::Rate,

    /// The length of the IPv6 prefix that counts as one client address in the limits above
    /// (64: a subscriber's usual allocation).
    #[arg(long, env = "EPOP_IPV6_PREFIX", default_value_t = 64, value_parser = clap::value_parser!(u8).range(1..=128))]
    pub ipv6_prefix: u8,

    /// Proxies (IP addresses, comma-separated) whose `X-Forwarded-For` names the client.
    #[arg(long, env = "EPOP_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,

    /// How often the signing keys are reloaded from the database (a rotation reaches every
    /// instance within this; a token naming a new key reloads at once).
    #[arg(long, env = "EPOP_JWT_KEYS_RELOAD", default_value = "30s", value_parser = humantime::parse_duration)]
    pub jwt_keys_reload: Duration,

    /// The most message sends committed in one transaction (group commit: sends waiting at
    /// the same moment share it; nothing waits for a batch to fill); 1 turns it off (each
    /// send its own transaction, concurrently).
    #[arg(long, env = "EPOP_SEND_BATCH_MAX", default_value_t = 256)]
    pub send_batch_max: usize,

    /// The most read positions (MarkRead) committed in one transaction, as for sends; 1
    /// turns it off (each MarkRead its own transaction).
    #[arg(long, env = "EPOP_READ_BATCH_MAX", default_value_t = 256)]
    pub read_batch_max: usize,

    /// How long an instance trusts what it read of a session and its user (open, active,
    /// role) while Redis carries every instance's revocations to it; each revocation is
    /// applied at once anyway.
    #[arg(long, env = "EPOP_SESSION_CACHE_TTL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub session_cache_ttl: Duration,

    /// The same, while revocations of other instances cannot reach it (no `REDIS_URL`, or
    /// the Redis subscription lost): how long a revocation on another instance may take to
    /// be refused here.
    #[arg(long, env = "EPOP_SESSION_CACHE_FALLBACK_TTL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub session_cache_fallback_ttl: Duration,

    /// Lifetime of access tokens (e.g. `15m`).
    #[arg(long, env = "EPOP_ACCESS_TOKEN_TTL", default_value = "15m", value_parser = humantime::parse_duration)]
    pub access_token_ttl: Duration,

    /// Lifetime of refresh tokens (e.g. `30d`).
    #[arg(long, env = "EPOP_REFRESH_TOKEN_TTL", default_value = "30d", value_parser = humantime::parse_duration)]
    pub refresh_token_ttl: Duration,

    /// How long a session lasts however often it is refreshed: then the user signs in again.
    #[arg(long, env = "EPOP_SESSION_MAX_AGE", default_value = "90d", value_parser = humantime::parse_duration)]
    pub session_max_age: Duration,

    /// How long a rotated refresh token, presented again, answers the token that replaced it
    /// instead of revoking the session as stolen (two tabs refreshing at once).
    #[arg(long, env = "EPOP_REFRESH_REUSE_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub refresh_reuse_grace: Duration,

    /// Log format.
    #[arg(long, env = "EPOP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// An OpenTelemetry collector (OTLP over gRPC, e.g. `http://127.0.0.1:4317`) to export
    /// every request's span to; unset exports nothing. `OTEL_*` variables tune the exporter.
    #[arg(long, env = "EPOP_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Email of the admin created on first start when no admin exists.
    #[arg(long, env = "EPOP_ADMIN_EMAIL", default_value = "admin@epop.local")]
    pub admin_email: String,

    /// Password of that admin; when unset, a random one is generated and printed once.
    #[arg(long, env = "EPOP_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<SecretString>,

    /// How long before a task's due day (00:00 UTC) the assignee gets a reminder email.
    #[arg(long, env = "EPOP_REMINDER_LEAD", default_value = "24h", value_parser = humantime::parse_duration)]
    pub reminder_lead: Duration,

    /// How long unread messages wait before a member without an open stream gets an email
    /// digest of them (at most one per member per this period).
    #[arg(long, env = "EPOP_DIGEST_DELAY", default_value = "2m", value_parser = humantime::parse_duration)]
    pub digest_delay: Duration,

    /// Public base URL of the web app, used in links sent by email.
    #[arg(long, env = "EPOP_PUBLIC_URL", default_value = "http://localhost:8080")]
    pub public_url: String,

    /// SMTP server URL (e.g. `smtps://user:pass@smtp.example.com`); unset writes `.eml`
    /// files under `<data-dir>/mail` instead.
    #[arg(long, env = "EPOP_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<SecretString>,

    /// The From address of outgoing email.
    #[arg(
        long,
        env = "EPOP_MAIL_FROM",
        default_value = "EPOP <no-reply@epop.local>"
    )]
    pub mail_from: String,

    /// Browser origins allowed to call gRPC-Web and the REST edge with credentials
    /// (comma-separated); empty allows same-origin only.
    #[arg(long, env = "EPOP_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// How long a client may take to send an HTTP/1 request's headers (slow clients that
    /// hold connections open are dropped).
    #[arg(long, env = "EPOP_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// How often an idle HTTP/2 connection is pinged; an unanswered ping (within the same
    /// time again) closes it.
    #[arg(long, env = "EPOP_HTTP2_KEEPALIVE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub http2_keepalive: Duration,

    /// How long a connection may stay open with no call in flight (an open event stream is
    /// one); then it is closed gracefully (HTTP/2 GOAWAY), and clients reconnect when next
    /// needed.
    #[arg(long, env = "EPOP_IDLE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// The most calls in flight on one HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS);
    /// clients queue further ones.
    #[arg(long, env = "EPOP_HTTP2_MAX_STREAMS", default_value_t = 200)]
    pub http2_max_streams: u32,

    /// The longest a unary call may take (a shorter `grpc-timeout` from the client wins);
    /// then DEADLINE_EXCEEDED.
    #[arg(long, env = "EPOP_RPC_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub rpc_timeout: Duration,

    /// The most connections open at once; past it, new connections wait to be accepted.
    #[arg(long, env = "EPOP_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// How long a client may take to send a request's body (after its headers); then the
    /// request is refused (HTTP/1: the connection is closed).
    #[arg(long, env = "EPOP_BODY_READ_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub body_read_timeout: Duration,

    /// The same for an upload to the local file URLs (large bodies streamed to disk).
    #[arg(long, env = "EPOP_UPLOAD_READ_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub upload_read_timeout: Duration,

    /// The most bytes buffered for requests in flight, all callers together (an eighth more
    /// for public calls such as sign-in); a request that does not fit waits for room within
    /// its body's deadline, then is refused with UNAVAILABLE (503).
    #[arg(long, env = "EPOP_REQUEST_BUFFER_BYTES", default_value_t = 256 << 20)]
    pub request_buffer_bytes: usize,

    /// The largest gRPC message the server sends or accepts, in bytes.
    #[arg(long, env = "EPOP_MAX_MESSAGE_BYTES", default_value_t = 16 << 20)]
    pub max_message_bytes: usize,

    /// How long in-flight calls may take to finish after a shutdown signal.
    #[arg(long, env = "EPOP_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    #[command(flatten)]
    pub files: FilesArgs,

    #[command(flatten)]
    pub ai: AiArgs,

    #[command(flatten)]
    pub push: PushArgs,

    #[command(flatten)]
    pub oidc: oidc::OidcArgs,

    #[command(flatten)]
    pub passkeys: oidc::PasskeyArgs,
}

/// Settings of the AI assistant.
#[derive(Debug, Clone, Args)]
pub struct AiArgs {
    /// An OpenAI-compatible API base (e.g. `http://localhost:11434/v1` for Ollama,
    /// `https://api.openai.com/v1`); unset: the AI RPCs answer FAILED_PRECONDITION.
    #[arg(long, env = "EPOP_AI_BASE_URL")]
    pub ai_base_url: Option<String>,

    /// The provider's API key, if it needs one; never printed.
    #[arg(long, env = "EPOP_AI_API_KEY", hide_env_values = true)]
    pub ai_api_key: Option<SecretString>,

    /// The default model.
    #[arg(long, env = "EPOP_AI_MODEL", default_value = "llama3.2")]
    pub ai_model: String,

    /// Other models clients may ask for (comma-separated).
    #[arg(long, env = "EPOP_AI_MODELS", value_delimiter = ',')]
    pub ai_models: Vec<String>,

    /// AI requests per user per minute (per instance).
    #[arg(long, env = "EPOP_AI_REQUESTS_PER_MINUTE", default_value_t = 20)]
    pub ai_requests_per_minute: u32,

    /// AI answers streaming at once per user (per instance).
    #[arg(long, env = "EPOP_AI_MAX_CONCURRENT", default_value_t = 2)]
    pub ai_max_concurrent: usize,

    /// The most characters a prompt may have; context is trimmed (newest kept) to fit.
    #[arg(long, env = "EPOP_AI_MAX_PROMPT_CHARS", default_value_t = 24_000)]
    pub ai_max_prompt_chars: usize,

    /// The longest an answer may take in all.
    #[arg(long, env = "EPOP_AI_ANSWER_TIMEOUT", default_value = "120s", value_parser = humantime::parse_duration)]
    pub ai_answer_timeout: Duration,

    /// The longest the provider may stay silent (before its first piece, or between two).
    #[arg(long, env = "EPOP_AI_IDLE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub ai_idle_timeout: Duration,

    /// How many recent messages of a conversation go into the prompt as context.
    #[arg(long, env = "EPOP_AI_CONTEXT_MESSAGES", default_value_t = 50)]
    pub ai_context_messages: i64,
}

impl FilesArgs {
    /// The S3 settings, when a bucket is configured.
    pub fn s3(&self) -> anyhow::Result<Option<crate::storage::S3Settings>> {
        let Some(bucket) = &self.s3_bucket else {
            return Ok(None);
        };
        let (Some(id), Some(secret)) = (&self.s3_access_key_id, &self.s3_secret_access_key) else {
            anyhow::bail!(
                "EPOP_S3_BUCKET is set: set EPOP_S3_ACCESS_KEY_ID and EPOP_S3_SECRET_ACCESS_KEY too"
            );
        };
        Ok(Some(crate::storage::S3Settings {
            bucket: bucket.clone(),
            endpoint: self.s3_endpoint.clone(),
            public_endpoint: self.s3_public_endpoint.clone(),
            region: self.s3_region.clone(),
            access_key_id: id.clone(),
            secret_access_key: secret.clone(),
            path_style: self.s3_path_style,
            ca_file: self.s3_ca_file.clone(),
        }))
    }
}

/// The complete configuration of a server.
pub type Config = ServeArgs;

impl ServeArgs {
    /// A configuration with every default, for `data_dir` and an optional database URL:
    /// what tests and embedders start from.
    pub fn with_defaults(data_dir: PathBuf, database_url: Option<String>) -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            serve: ServeArgs,
        }
        // Parsing no arguments cannot fail: every field has a default or is optional. The
        // environment is read too, as it is for the real binary.
        let mut cfg = Wrapper::parse_from(["epop"]).serve;
        cfg.store.data_dir = data_dir;
        cfg.store.database_url = database_url.map(SecretString::from);
        cfg
    }
}
