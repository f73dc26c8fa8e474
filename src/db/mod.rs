//! The database: connection pool, embedded migrations, the embedded PostgreSQL cluster, the
//! generated schema and one module of queries per table group.

pub mod ai;
pub mod audit;
pub mod conversations;
pub mod digests;
pub mod divisions;
pub mod embedded;
pub mod events;
pub mod files;
pub mod identities;
pub mod jobs;
pub mod keys;
pub mod mentions;
pub mod messages;
pub mod notable;
pub mod notifications;
pub mod outage;
pub mod passkeys;
pub mod preferences;
pub mod prepared;
pub mod projects;
pub mod push;
pub mod reactions;
pub mod read_batch;
pub mod roles;
pub mod saved;
pub mod schema;
pub mod second_factor;
pub mod send_batch;
pub mod sends;
pub mod sessions;
pub mod tasks;
pub mod threads;
pub mod tls;
pub mod tokens;
pub mod users;

use anyhow::Context;
use diesel_async::{
    AsyncMigrationHarness, AsyncPgConnection,
    pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, bb8},
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures::FutureExt;
use std::time::Duration;

/// The migrations under `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The advisory lock key that serialises migrations ("epop" in ASCII).
const MIGRATION_LOCK: i64 = 0x6570_6f70;

/// The connection pool.
pub type Pool = bb8::Pool<AsyncPgConnection>;
/// A connection taken from the pool.
pub type PooledConnection<'a> = bb8::PooledConnection<'a, AsyncPgConnection>;

/// Opens a pool of at most `size` connections to `url` (over TLS as its `sslmode` says),
/// each checked as it is handed out.
pub async fn connect(url: &str, size: u32) -> anyhow::Result<Pool> {
    let target = tls::Target::parse(url)?;
    let mut config = ManagerConfig::default();
    config.custom_setup = Box::new(move |_| {
        let target = target.clone();
        async move { target.establish().await }.boxed()
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
    // A connection is checked (a trivial query) when it is handed out: a backend that was
    // terminated (a failover, `pg_terminate_backend`, a proxy's idle timeout) is replaced
    // there, and never fails a caller's query.
    bb8::Pool::builder()
        .max_size(size)
        .connection_timeout(Duration::from_secs(5))
        .test_on_check_out(true)
        .build(manager)
        .await
        .context("cannot create the database pool")
}

/// Applies every pending migration as the owner, then grants the serving role its rights
/// when it is another role ([`roles`]). Needs the multi-threaded tokio runtime (the harness
/// uses `block_in_place`).
/// Instances starting at once on one database take turns, under an advisory lock held on a
/// second connection (the harness owns its own).
pub async fn migrate(urls: &roles::Urls) -> anyhow::Result<()> {
    use diesel_async::RunQueryDsl;
    let target = tls::Target::parse(&urls.owner)?;
    let connect = async || {
        target
            .establish()
            .await
            .context("cannot connect to the database to migrate it")
    };
    let mut lock = connect().await?;
    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .execute(&mut lock)
        .await
        .context("cannot take the migration lock")?;
    let conn = connect().await?;
    let mut harness = AsyncMigrationHarness::new(conn);
    let applied = harness
        .run_pending_migrations(MIGRATIONS)
        .map_err(|e| anyhow::anyhow!("migration failed: {e}"))?;
    for m in applied {
        tracing::info!(migration = %m, "applied migration");
    }
    if urls.serve != urls.owner {
        let mut serving = tls::Target::parse(&urls.serve)?
            .establish()
            .await
            .context("cannot connect to the database as the serving role")?;
        let role = roles::current_role(&mut serving).await?;
        if role != roles::current_role(&mut lock).await? {
            roles::grant_serving(&mut lock, &role).await?;
        }
    }
    Ok(())
}

/// True when a trivial query succeeds within two seconds.
pub async fn ping(pool: &Pool) -> bool {
    use diesel_async::RunQueryDsl;
    let check = async {
        let mut conn = pool.get().await.ok()?;
        diesel::sql_query("SELECT 1").execute(&mut conn).await.ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), check).await,
        Ok(Some(_))
    )
}

/// The database to use: `DATABASE_URL` (with `EPOP_MIGRATION_DATABASE_URL` for migrations,
/// when set) or else the embedded cluster under the data directory (started here, or found
/// running), which has a serving role of its own. Returns the URLs and the cluster, if any.
pub async fn resolve(
    store: &crate::config::StoreArgs,
) -> anyhow::Result<(roles::Urls, Option<embedded::EmbeddedPostgres>)> {
    use secrecy::ExposeSecret;
    match &store.database_url {
        Some(url) => {
            let serve = url.expose_secret().to_owned();
            let owner = store.migration_database_url.as_ref();
            let owner = owner.map_or_else(|| serve.clone(), |u| u.expose_secret().to_owned());
            Ok((roles::Urls { serve, owner }, None))
        }
        None => {
            let pg = embedded::EmbeddedPostgres::start(&store.data_dir).await?;
            Ok((pg.urls(), Some(pg)))
        }
    }
}
