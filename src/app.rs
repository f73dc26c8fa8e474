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
use axum::Router;
use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};
use tokio::{net::TcpListener, sync::Notify};
use tokio_util::sync::CancellationToken;

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
    /// `/metrics` on a listener of its own (`EPOP_METRICS_LISTEN`).
    metrics: Option<TcpListener>,
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
        let (urls, embedded) = db::resolve(&config.store).await?;
        let built = Self::build_on(config, &urls).await;
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

    async fn build_on(config: Config, urls: &db::roles::Urls) -> anyhow::Result<Self> {
        let data_dir = &config.store.data_dir;
        // The recorder from the start, so nothing before the first scrape is lost.
        crate::metrics::handle();
        db::migrate(urls).await?;
        let url = urls.serve.as_str();
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
        let metrics = match config.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (EPOP_METRICS_LISTEN)"))?,
            ),
            None => None,
        };
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
        let outage = db::outage::Outage::new(url)?;
        let sends = match config.send_batch_max {
            0 | 1 => None,
            max => Some(SendQueue::start(url, broker.clone(), outage.clone(), max).await?),
        };
        let reads = match config.read_batch_max {
            0 | 1 => None,
            max => Some(ReadQueue::start(url, broker.clone(), outage.clone(), max).await?),
        };
        let grants = Arc::new(crate::auth::grants::Grants::new(
            pool.clone(),
            outage,
            config.session_cache_ttl,
            config.session_cache_fallback_ttl,
        ));
        broker.watch_grants(grants.clone());
        let push = Arc::new(crate::parts::pushers(&config, &pool).await?);
        let timing = service::notifications::Timing {
            push: config.push.push_delay,
            digest: config.digest_delay,
        };
        let state = State {
            grants,
            ai: Arc::new(crate::parts::assistant(&config, &broker).await?),
            lockout: Arc::new(crate::parts::lockout(&config).await?),
            oidc: Arc::new(crate::parts::oidc(&config)?),
            passkeys: Arc::new(crate::parts::passkeys(&config)?),
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
            push: push.clone(),
            notify: timing,
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
            push,
            notify: timing,
        };
        let worker = Worker::new(pool, wake_jobs, job_handlers(deps));
        let (health, health_service) = tonic_health::server::health_reporter();
        let ready = Arc::new(AtomicBool::new(false));
        // Registered before the first call can arrive, so health never answers "unknown".
        crate::probes::report_health(&health, &ready, db::ping(&state.pool).await).await;
        let limits = crate::ratelimit::RateLimits::new(
            config.auth_rate_limit,
            config.write_rate_limit,
            config.trusted_proxies.clone(),
            config.ipv6_prefix,
        );
        let limits = Arc::new(match &config.redis_url {
            Some(url) => {
                let prefix = format!("{}:rate:", config.redis_channel);
                let url = secrecy::ExposeSecret::expose_secret(url);
                limits.shared_through(url, &prefix).await?
            }
            None => limits,
        });
        limits.spawn_cleanup(halt.clone());
        let intake =
            crate::intake::Intake::new(config.request_buffer_bytes, config.body_read_timeout);
        let grpc_router = grpc::router(
            &state,
            limits,
            health_service,
            &config.cors_origins,
            grpc::web_body::Bodies {
                intake: intake.clone(),
                max_message: config.max_message_bytes,
            },
            config.rpc_timeout,
        )?;
        let rest = crate::rest::Rest::new(
            crate::pb::FILE_DESCRIPTOR_SET,
            grpc_router.clone(),
            &config.cors_origins,
            crate::rest::Admission {
                gate: Some(state.gate()),
                bodies: intake,
            },
            crate::parts::answers(&config).await?,
        )?;
        let options = crate::edge::Options {
            ready: ready.clone(),
            files: &files,
            cors_origins: &config.cors_origins,
            cookie_origins: crate::csrf::Origins::new(&config.cors_origins, &config.public_url),
            pool: state.pool.clone(),
            hsts: config.hsts || tls.is_some(),
            public_metrics: metrics.is_none(),
        };
        let router = crate::edge::router(grpc_router, rest, options)?;
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
                body_read_timeout: config.body_read_timeout,
                upload_read_timeout: config.upload_read_timeout,
            },
            tls,
            metrics,
            generated_admin_password,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The address of the metrics listener, when `/metrics` has one of its own.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
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
        if let Some(listener) = self.metrics {
            let routes = crate::probes::metrics_routes(self.state.pool.clone());
            let halt = halt.clone();
            tracing::info!(addr = ?listener.local_addr().ok(), "metrics are served on a listener of their own");
            tokio::spawn(async move {
                let served = axum::serve(listener, routes)
                    .with_graceful_shutdown(halt.cancelled_owned())
                    .await;
                if let Err(e) = served {
                    tracing::warn!(error = %e, "the metrics listener failed");
                }
            });
        }
        // A cluster this server started is started again whenever it dies, until shutdown.
        let supervisor = self
            .embedded
            .as_ref()
            .filter(|pg| pg.started_here())
            .map(|pg| pg.supervise(halt.clone()));
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
        if let Some(supervisor) = supervisor {
            let _ = supervisor.await;
        }
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
    use service::{auth, digests, files, notifications, tasks};
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
                Job::SweepUpload {
                    file_id,
                    staging_key,
                } => files::sweep_upload(&deps, file_id, &staging_key).await,
                Job::NotifyConversation { conversation_id } => {
                    notifications::produce::notify_conversation(&deps, conversation_id).await
                }
                Job::Push { user_id, topic } => {
                    notifications::push::push(&deps, user_id, topic).await
                }
            }
        })
    })
}
