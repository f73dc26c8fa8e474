//! The server: built from a [`Config`], bound to its listener (port 0 allowed), run until
//! stopped. One port serves native gRPC (h2c), gRPC-Web, and plain HTTP probes.

use crate::{
    auth::{jwt::JwtKeys, password::Hasher},
    config::Config,
    db::{self, embedded::EmbeddedPostgres},
    domain::jobs::Job,
    grpc,
    jobs::{Handler, Worker},
    mail::Mailer,
    service::{
        self, State,
        conversations::{ReadQueue, SendQueue},
    },
};
use anyhow::Context;
use axum::{Router, extract::Request, response::Response};
use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};
use tokio::{net::TcpListener, sync::Notify};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
    trace::TraceLayer,
};

/// A built server, bound and ready to run.
pub struct App {
    listener: TcpListener,
    router: Router,
    state: State,
    worker: Worker,
    health: tonic_health::server::HealthReporter,
    ready: Arc<AtomicBool>,
    embedded: Option<EmbeddedPostgres>,
    stop: CancellationToken,
    grace: Duration,
    halt: CancellationToken,
    delay: Duration,
    limits: crate::serve::Limits,
    tls: Option<crate::tls::Tls>,
    /// The generated password of the bootstrap admin, when this start created one.
    pub generated_admin_password: Option<String>,
}

impl App {
    /// Opens (or starts) the database, migrates it, creates the bootstrap admin when there
    /// is no admin, and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let data_dir = &config.store.data_dir;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
        let (url, embedded) = db::resolve(config.store.database_url.as_ref(), data_dir).await?;
        let built = Self::build_on(config, &url).await;
        match (built, embedded) {
            (Ok(mut app), embedded) => {
                app.embedded = embedded;
                Ok(app)
            }
            (Err(e), Some(pg)) => {
                if pg.started_here() {
                    let _ = pg.stop().await;
                }
                Err(e)
            }
            (Err(e), None) => Err(e),
        }
    }

    async fn build_on(config: Config, url: &str) -> anyhow::Result<Self> {
        let data_dir = &config.store.data_dir;
        // The recorder from the start, so nothing before the first scrape is lost.
        crate::metrics::handle();
        db::migrate(url).await?;
        let pool = db::connect(url, config.store.db_pool_size).await?;
        let jwt = Arc::new(
            JwtKeys::open(
                config.jwt_secret.as_ref(),
                data_dir,
                &pool,
                config.access_token_ttl,
                config.jwt_keys_reload,
            )
            .await?,
        );
        let hasher = Hasher::default();
        let generated_admin_password = service::accounts::ensure_admin(
            &pool,
            &hasher,
            &config.admin_email,
            config.admin_password.as_ref(),
        )
        .await?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::Tls::load(cert, key)?),
            _ => None,
        };
        // Bound early: the local file URLs name the bound address.
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let wake_jobs = Arc::new(Notify::new());
        // `stop`: shutdown requested (not ready, streams end); `halt`: after the shutdown
        // delay, the accept loop, the broker and the workers stop.
        let stop = CancellationToken::new();
        let halt = CancellationToken::new();
        jwt.spawn_reloads(halt.clone());
        let broker = match &config.redis_url {
            Some(url) => crate::realtime::Broker::redis(
                secrecy::ExposeSecret::expose_secret(url),
                &config.redis_channel,
                config.presence_ttl,
                halt.clone(),
            )
            .await
            .context("cannot connect to Redis (REDIS_URL)")?,
            None => crate::realtime::Broker::default(),
        };
        let cursor_key = Arc::new(crate::realtime::cursor::CursorKey::new(
            &jwt.derive("stream cursors"),
        ));
        let files = Arc::new(crate::parts::files(&config, listener.local_addr()?, &jwt)?);
        let sends = match config.send_batch_max {
            0 | 1 => None,
            max => Some(SendQueue::start(url, broker.clone(), max).await?),
        };
        let reads = match config.read_batch_max {
            0 | 1 => None,
            max => Some(ReadQueue::start(url, broker.clone(), max).await?),
        };
        let state = State {
            ai: Arc::new(crate::parts::assistant(&config.ai)),
            lockout: Arc::new(crate::parts::lockout(&config).await?),
            streams: crate::realtime::session::StreamLimits {
                max_per_user: config.max_streams_per_user.max(1),
                closing: stop.clone(),
            },
            files: files.clone(),
            cursor_key,
            pool: pool.clone(),
            jwt,
            hasher,
            refresh_ttl: config.refresh_token_ttl,
            refresh_grace: config.refresh_reuse_grace,
            session_max_age: config.session_max_age,
            reminder_lead: config.reminder_lead,
            digest_delay: config.digest_delay,
            sends,
            reads,
            broker,
            wake_jobs: wake_jobs.clone(),
        };
        let deps = service::JobDeps {
            pool: pool.clone(),
            mailer: Arc::new(Mailer::new(
                &config.mail_from,
                config.smtp_url.as_ref(),
                data_dir.join("mail"),
            )?),
            public_url: config.public_url.clone(),
            wake: wake_jobs.clone(),
            broker: state.broker.clone(),
            storage: files.storage.clone(),
        };
        let worker = Worker::new(pool, wake_jobs, job_handlers(deps));
        let (health, health_service) = tonic_health::server::health_reporter();
        let ready = Arc::new(AtomicBool::new(false));
        // Registered before the first call can arrive, so health never answers "unknown".
        crate::probes::report_health(&health, &ready, db::ping(&state.pool).await).await;
        let limits = Arc::new(crate::ratelimit::RateLimits::new(
            config.auth_rate_limit,
            config.write_rate_limit,
            config.trusted_proxies.clone(),
        ));
        limits.spawn_cleanup(halt.clone());
        let grpc_router = grpc::router(
            &state,
            limits,
            health_service,
            &config.cors_origins,
            config.max_message_bytes,
            config.rpc_timeout,
        )?;
        let rest = crate::rest::Rest::new(
            crate::pb::FILE_DESCRIPTOR_SET,
            grpc_router.clone(),
            &config.cors_origins,
        )?;
        let router = top_router(
            grpc_router,
            rest,
            ready.clone(),
            &files,
            &config.cors_origins,
            state.pool.clone(),
            config.hsts || tls.is_some(),
        )?;
        Ok(Self {
            listener,
            router,
            state,
            worker,
            health,
            ready,
            embedded: None,
            stop,
            halt,
            delay: config.shutdown_delay,
            grace: config.shutdown_grace,
            limits: crate::serve::Limits {
                header_read_timeout: config.header_read_timeout,
                keepalive_interval: config.http2_keepalive,
                keepalive_timeout: config.http2_keepalive,
                max_connections: config.max_connections.max(1),
                http2_max_streams: config.http2_max_streams.max(1),
                idle_timeout: config.idle_timeout,
            },
            tls,
            generated_admin_password,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// A token that stops the server when cancelled.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Serves until the stop token is cancelled: then stops accepting, lets in-flight calls
    /// finish (within the grace period), stops the job worker, and stops the embedded
    /// database if this server started it.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let (stop, halt, delay) = (self.stop.clone(), self.halt.clone(), self.delay);
        let worker = tokio::spawn(self.worker.clone().run(halt.child_token()));
        let health = tokio::spawn(crate::probes::watch_health(
            self.state.pool.clone(),
            self.health.clone(),
            self.ready.clone(),
            stop.child_token(),
        ));
        tokio::spawn({
            let (stop, halt) = (stop.clone(), halt.clone());
            async move {
                stop.cancelled().await;
                if !delay.is_zero() {
                    tracing::info!(
                        ?delay,
                        "draining: not ready, streams closed, still accepting"
                    );
                    tokio::time::sleep(delay).await;
                }
                halt.cancel();
            }
        });
        if let Some(tls) = &self.tls {
            tls.reload_on_sighup(halt.clone())?;
        }
        let scheme = if self.tls.is_some() {
            "TLS"
        } else {
            "plaintext"
        };
        tracing::info!(addr = %self.local_addr(), scheme, "EPOP is listening (gRPC, gRPC-Web, HTTP)");
        crate::serve::serve(
            self.listener,
            self.router,
            self.limits,
            halt.clone(),
            self.grace,
            self.tls,
        )
        .await;
        stop.cancel();
        halt.cancel();
        let _ = worker.await;
        let _ = health.await;
        drop(self.state);
        if let Some(pg) = self.embedded {
            pg.stop().await?;
        }
        tracing::info!("EPOP stopped");
        Ok(())
    }
}

/// The handler of every kind of job: where the services' job functions are registered (the
/// worker knows none of them).
fn job_handlers(deps: service::JobDeps) -> Handler {
    use service::{auth, digests, files, tasks};
    Arc::new(move |job, claimed| {
        let deps = deps.clone();
        Box::pin(async move {
            match job {
                Job::PasswordResetEmail(target) => {
                    auth::send_reset_email(&deps, &claimed, target).await
                }
                Job::TaskReminder {
                    task_id,
                    assignee_id,
                    due_date,
                } => tasks::send_reminder(&deps, &claimed, task_id, assignee_id, due_date).await,
                Job::ConversationDigest { conversation_id } => {
                    digests::queue_members(&deps, conversation_id).await
                }
                Job::MessageDigest { user_id } => {
                    digests::send_digest(&deps, &claimed, user_id).await
                }
                Job::ExpireUpload { file_id } => files::expire_upload(&deps, file_id).await,
                Job::DeleteMessageFiles { message_id } => {
                    files::delete_message_files(&deps, message_id).await
                }
            }
        })
    })
}

/// Routes gRPC and gRPC-Web (and their CORS preflights) to the gRPC router; everything else
/// to the plain HTTP routes (with the local file URLs) and the REST edge.
fn top_router(
    grpc: Router,
    rest: crate::rest::Rest,
    ready: Arc<AtomicBool>,
    files: &service::files::Files,
    cors_origins: &[String],
    pool: db::Pool,
    hsts: bool,
) -> anyhow::Result<Router> {
    let mut http = Router::new();
    if let Some(routes) = files.storage.routes() {
        // Browsers on the allowed origins upload and download with fetch.
        http = http.merge(routes.layer(crate::cors::layer(
            crate::cors::origins(cors_origins)?,
            vec![http::Method::GET, http::Method::PUT],
            &["content-type"],
            &["content-disposition", "content-length"],
        )));
    }
    let http = http
        .merge(crate::probes::routes(ready, pool))
        // REST under /api/, and JSON 404s for everything else.
        .merge(rest.router());
    let dispatch = move |req: Request| {
        let target = if is_grpc(&req) {
            grpc.clone()
        } else {
            http.clone()
        };
        async move {
            match target.oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            }
        }
    };
    let security = [
        // Every answer is private to its caller (tokens, messages): no cache keeps one.
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ];
    // HSTS only where browsers reach this server over TLS (here, or through a proxy that
    // ends it): on plain HTTP it is ignored at best.
    let hsts = hsts.then_some((
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
    ));
    let mut router =
        Router::new().fallback(|req: Request| async move { dispatch(req).await as Response });
    for (name, value) in security.into_iter().chain(hsts) {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            http::HeaderName::from_static(name),
            http::HeaderValue::from_static(value),
        ));
    }
    Ok(router
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(crate::telemetry::request_span))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid)))
}

fn is_grpc(req: &Request) -> bool {
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let preflight = req.method() == http::Method::OPTIONS
        && req
            .headers()
            .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
        && !crate::rest::is_rest_path(req.uri().path());
    content_type.starts_with("application/grpc") || preflight
}
