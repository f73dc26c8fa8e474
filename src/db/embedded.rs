//! The embedded default database: a private PostgreSQL cluster under the data directory, run
//! with the system's PostgreSQL binaries. Initialised on first use, reused afterwards, and
//! stopped by whoever started it. PostgreSQL refuses to run as root, so a root process runs
//! the cluster as the `postgres` OS user.
//!
//! A cluster this server started is watched: when its postmaster dies, it is started again
//! (logged, counted, with a growing pause between failed attempts), and a server whose
//! cluster is already gone shuts down cleanly.
//!
//! Only the server's own OS account reaches it: no TCP port, a socket directory and socket of
//! mode 0700, a data directory closed to others, and peer authentication (the superuser is
//! named after the server's OS user; clusters made before this used `postgres` and trust,
//! and keep working as they are).

mod serving;

use anyhow::{Context, bail};
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::Duration,
};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// How often a supervised cluster's postmaster is looked for.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// The longest pause between attempts to start a dead cluster again.
const MAX_RESTART_PAUSE: Duration = Duration::from_secs(30);

/// The name of the database the server uses inside the cluster.
const DATABASE: &str = "epop";

/// The role the server serves as (`db::roles`); the superuser owns the schema and migrates.
pub const SERVING_ROLE: &str = "epop_app";

/// The file under the data directory that names the cluster's superuser.
const SUPERUSER_FILE: &str = "postgres.superuser";

/// A running embedded cluster.
#[derive(Debug, Clone)]
pub struct EmbeddedPostgres {
    bin_dir: PathBuf,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    run_as: Option<nix::unistd::User>,
    /// The PostgreSQL role the server connects as.
    superuser: String,
    started_here: bool,
}

impl EmbeddedPostgres {
    /// Starts (initialising first if needed) the cluster under `data_dir`, or adopts one that
    /// is already running there, and makes sure the `epop` database exists.
    pub async fn start(data_dir: &Path) -> anyhow::Result<Self> {
        let bin_dir = find_bin_dir()?;
        let data_dir =
            std::path::absolute(data_dir).context("cannot resolve the data directory")?;
        let pgdata = data_dir.join("postgres");
        let socket_dir = data_dir.join("postgres-run");
        let run_as = if nix::unistd::geteuid().is_root() {
            Some(
                nix::unistd::User::from_name("postgres")?
                    .context("running as root, but there is no `postgres` OS user to run PostgreSQL as (install PostgreSQL, or set DATABASE_URL)")?,
            )
        } else {
            None
        };
        let mut pg = Self {
            bin_dir,
            pgdata,
            socket_dir,
            run_as,
            superuser: "postgres".into(),
            started_here: false,
        };
        pg.prepare_dirs(&data_dir)?;
        let superuser_file = data_dir.join(SUPERUSER_FILE);
        if !pg.pgdata.join("PG_VERSION").exists() {
            pg.superuser = nix::unistd::User::from_uid(nix::unistd::geteuid())?
                .context("the server's OS user has no name")?
                .name;
            pg.initdb().await?;
            std::fs::write(&superuser_file, &pg.superuser)
                .with_context(|| format!("cannot write {}", superuser_file.display()))?;
        } else if let Ok(name) = std::fs::read_to_string(&superuser_file) {
            pg.superuser = name.trim().to_owned();
        }
        if pg.is_running().await {
            tracing::info!(pgdata = %pg.pgdata.display(), "reusing the running embedded PostgreSQL");
        } else {
            pg.pg_ctl_start(&data_dir).await?;
            pg.started_here = true;
        }
        pg.ensure_database().await?;
        Ok(pg)
    }

    /// Connection strings for the `epop` database over the cluster's Unix socket: as the
    /// serving role, and as the superuser (for migrations).
    pub fn urls(&self) -> super::roles::Urls {
        super::roles::Urls {
            serve: self.url_for(DATABASE, SERVING_ROLE),
            owner: self.url_for(DATABASE, &self.superuser),
        }
    }

    fn url_for(&self, db: &str, user: &str) -> String {
        format!(
            "host='{}' user='{user}' dbname={db}",
            self.socket_dir.display(),
        )
    }

    /// True when this value started the cluster (rather than finding it running).
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    /// True while the cluster's postmaster runs (the process `postmaster.pid` names).
    fn postmaster_alive(&self) -> bool {
        let Ok(text) = std::fs::read_to_string(self.pgdata.join("postmaster.pid")) else {
            return false;
        };
        let Some(pid) = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
        else {
            return false;
        };
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
    }

    /// Watches the cluster and starts it again whenever its postmaster dies (with a pause
    /// that doubles after each failed attempt, up to 30 s), until `stop`. The task never
    /// stops in the middle of a start: await it before stopping the cluster.
    pub fn supervise(&self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let pg = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(WATCH_EVERY) => {}
                }
                if pg.postmaster_alive() {
                    continue;
                }
                tracing::error!(pgdata = %pg.pgdata.display(), "the embedded PostgreSQL is not running: starting it again");
                metrics::counter!("epop_embedded_postgres_deaths_total").increment(1);
                let mut pause = WATCH_EVERY;
                loop {
                    let data_dir = pg.pgdata.parent().unwrap_or(&pg.pgdata).to_owned();
                    match pg.pg_ctl_start(&data_dir).await {
                        Ok(()) => {
                            metrics::counter!("epop_embedded_postgres_restarts_total").increment(1);
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, retry_in = ?pause, "the embedded PostgreSQL did not start")
                        }
                    }
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(MAX_RESTART_PAUSE);
                }
            }
        })
    }

    /// Stops the cluster (fast shutdown: open sessions are ended, data is safe); a cluster
    /// that is not running any more is left as it is.
    pub async fn stop(&self) -> anyhow::Result<()> {
        if !self.postmaster_alive() {
            tracing::info!("the embedded PostgreSQL had stopped already");
            return Ok(());
        }
        let out = self
            .command("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(&self.pgdata)
            .args(["-m", "fast", "-w"])
            .output()
            .await
            .context("cannot run pg_ctl stop")?;
        // It may have died between the look and the stop: then there is nothing to do.
        if !out.status.success() && self.postmaster_alive() {
            bail!(
                "pg_ctl stop failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        tracing::info!("embedded PostgreSQL stopped");
        Ok(())
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        if let Some(user) = &self.run_as {
            cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        // Its own process group: a Ctrl-C in the terminal must reach the server, which then
        // drains its calls and stops the cluster, not PostgreSQL directly.
        cmd.process_group(0);
        cmd.env_remove("PGDATA").env("LC_ALL", "C");
        cmd
    }

    fn prepare_dirs(&self, data_dir: &Path) -> anyhow::Result<()> {
        for dir in [data_dir, &self.pgdata, &self.socket_dir] {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mode = |m| std::fs::Permissions::from_mode(m);
        std::fs::set_permissions(&self.pgdata, mode(0o700))?;
        std::fs::set_permissions(&self.socket_dir, mode(0o700))?;
        std::fs::set_permissions(data_dir, mode(0o700))?;
        if let Some(user) = &self.run_as {
            // The postgres user (and nobody else) must be able to pass through the data
            // directory to reach its own cluster directory: group postgres, search only.
            nix::unistd::chown(data_dir, None, Some(user.gid))
                .with_context(|| format!("cannot give {} to group postgres", data_dir.display()))?;
            std::fs::set_permissions(data_dir, mode(0o710))?;
            for dir in [&self.pgdata, &self.socket_dir] {
                nix::unistd::chown(dir.as_path(), Some(user.uid), Some(user.gid)).with_context(
                    || format!("cannot hand {} to the postgres user", dir.display()),
                )?;
            }
            check_traversable(data_dir)?;
        }
        Ok(())
    }

    async fn initdb(&self) -> anyhow::Result<()> {
        tracing::info!(pgdata = %self.pgdata.display(), "initialising the embedded PostgreSQL cluster");
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(&self.pgdata)
            .args(["-U", &self.superuser])
            .args([
                "--auth-local=peer",
                "--auth-host=reject",
                "--encoding=UTF8",
                "--no-locale",
            ])
            .output()
            .await
            .context("cannot run initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    async fn is_running(&self) -> bool {
        let status = self
            .command("pg_ctl")
            .arg("status")
            .arg("-D")
            .arg(&self.pgdata)
            .output()
            .await;
        matches!(status, Ok(o) if o.status.success())
    }

    async fn pg_ctl_start(&self, data_dir: &Path) -> anyhow::Result<()> {
        let log = self.pgdata.join("server.log");
        // Unix socket only: no TCP port to collide with another PostgreSQL.
        let options = format!(
            "-c listen_addresses='' -c unix_socket_permissions=0700 -k '{}'",
            self.socket_dir.display()
        );
        let out = self
            .command("pg_ctl")
            .arg("start")
            .arg("-D")
            .arg(&self.pgdata)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o"])
            .arg(options)
            .output()
            .await
            .context("cannot run pg_ctl start")?;
        if !out.status.success() {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            bail!(
                "the embedded PostgreSQL under {} did not start: {} {}",
                data_dir.display(),
                String::from_utf8_lossy(&out.stderr).trim(),
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            );
        }
        tracing::info!(pgdata = %self.pgdata.display(), "embedded PostgreSQL started");
        Ok(())
    }

    async fn ensure_database(&self) -> anyhow::Result<()> {
        use diesel::{QueryableByName, sql_types::BigInt};
        use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut conn = AsyncPgConnection::establish(&self.url_for("postgres", &self.superuser))
            .await
            .context("cannot connect to the embedded PostgreSQL")?;
        let found: Count = diesel::sql_query(format!(
            "SELECT count(*) AS n FROM pg_database WHERE datname = '{DATABASE}'"
        ))
        .get_result(&mut conn)
        .await?;
        if found.n == 0 {
            diesel::sql_query(format!("CREATE DATABASE {DATABASE}"))
                .execute(&mut conn)
                .await?;
        }
        self.ensure_serving_role(&mut conn).await
    }
}

/// Finds the directory of `initdb`, `pg_ctl` and `postgres`: `pg_config --bindir`, then
/// `PATH`, then `/usr/lib/postgresql/<newest>/bin`.
pub fn find_bin_dir() -> anyhow::Result<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Ok(out) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&dir) {
            return Ok(dir);
        }
    }
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|d| has_server(d))
    {
        return Ok(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, dir)| has_server(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir).context(
        "no DATABASE_URL is set and no PostgreSQL server binaries (initdb, pg_ctl) were found \
         via pg_config, PATH or /usr/lib/postgresql/*/bin: install PostgreSQL \
         (e.g. `apt-get install postgresql`) or set DATABASE_URL",
    )
}

/// Fails clearly when some ancestor of `dir` keeps the postgres user out.
fn check_traversable(dir: &Path) -> anyhow::Result<()> {
    for ancestor in dir.ancestors().skip(1) {
        let mode = std::fs::metadata(ancestor)?.permissions().mode();
        if mode & 0o001 == 0 {
            bail!(
                "the postgres user cannot reach {} because {} is not searchable by others; \
                 choose a --data-dir elsewhere (e.g. under /var/lib) or set DATABASE_URL",
                dir.display(),
                ancestor.display()
            );
        }
    }
    Ok(())
}
