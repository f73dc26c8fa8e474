//! The test harness: each test spawns the real server on port 0 with a fresh PostgreSQL
//! database and data directory, and talks to it through generated clients and raw HTTP.
//! Set `TEST_LOG=1` to see the server's logs; `TEST_DATABASE_URL` picks the PostgreSQL
//! server (default `postgres://postgres@127.0.0.1:5432/postgres`).

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use epop::{app::App, config::Config, pb};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Once,
    time::Duration,
};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{Request, transport::Channel};

pub use pb::{
    admin_service_client::AdminServiceClient, auth_service_client::AuthServiceClient,
    user_service_client::UserServiceClient,
};

/// The bootstrap admin of every test server.
pub const ADMIN_EMAIL: &str = "admin@example.com";
/// Their password.
pub const ADMIN_PASSWORD: &str = "admin-password-1";

fn base_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The URL of database `name` on the test server.
pub fn database_url(name: &str) -> String {
    let base = base_url();
    let (server, _) = base
        .rsplit_once('/')
        .expect("TEST_DATABASE_URL has a database path");
    format!("{server}/{name}")
}

/// Runs one SQL statement on the test server's maintenance database.
pub async fn admin_sql(sql: &str) {
    let mut conn = AsyncPgConnection::establish(&base_url())
        .await
        .expect("the test PostgreSQL server is reachable (see TEST_DATABASE_URL)");
    diesel::sql_query(sql).execute(&mut conn).await.expect(sql);
}

/// Runs SQL statements on database `name`.
pub async fn db_sql(name: &str, sql: &str) {
    let mut conn = AsyncPgConnection::establish(&database_url(name))
        .await
        .expect("connect");
    diesel::sql_query(sql).execute(&mut conn).await.expect(sql);
}

/// The number `sql` (a query answering one `bigint` column named `n`) gives on database
/// `name`.
pub async fn db_count(name: &str, sql: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = AsyncPgConnection::establish(&database_url(name))
        .await
        .expect("connect");
    let row: N = diesel::sql_query(sql)
        .get_result(&mut conn)
        .await
        .expect(sql);
    row.n
}

/// The text `sql` (a query answering one `text` column named `v`) gives on database `name`.
pub async fn db_text(name: &str, sql: &str) -> String {
    #[derive(diesel::QueryableByName)]
    struct V {
        #[diesel(sql_type = diesel::sql_types::Text)]
        v: String,
    }
    let mut conn = AsyncPgConnection::establish(&database_url(name))
        .await
        .expect("connect");
    let row: V = diesel::sql_query(sql)
        .get_result(&mut conn)
        .await
        .expect(sql);
    row.v
}

/// The secret of signing key `kid` in database `db` (None: the key that signs now).
pub async fn signing_secret(db: &str, kid: Option<&str>) -> Vec<u8> {
    use base64::Engine;
    let which = match kid {
        Some(kid) => format!("kid = '{kid}'"),
        None => "retired_at IS NULL".to_owned(),
    };
    let b64 = db_text(
        db,
        &format!("SELECT encode(secret, 'base64') AS v FROM signing_keys WHERE {which}"),
    )
    .await;
    let b64: String = b64.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            epop::telemetry::init(epop::config::LogFormat::Text);
        }
    });
}

/// A running test server.
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where `/metrics` is served, when on a listener of its own.
    pub metrics_addr: Option<SocketAddr>,
    /// Its data directory (JWT key, mail).
    pub data_dir: PathBuf,
    /// Its database's name.
    pub db_name: String,
    _dir: Option<TempDir>,
    stop: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    drop_db: bool,
}

/// Two servers on one fresh database behind the Redis at `redis_url`, sharing a channel and
/// a signing key (a token from one works on the other).
pub async fn two_instances(redis_url: &str) -> (TestApp, TestApp) {
    two_instances_with(redis_url, |_| {}).await
}

/// [`two_instances`], each configured by `tweak` too.
pub async fn two_instances_with(
    redis_url: &str,
    tweak: impl Fn(&mut Config),
) -> (TestApp, TestApp) {
    let mut apps = instances(redis_url, 2, tweak).await;
    let b = apps.pop().expect("two");
    let a = apps.pop().expect("two");
    (a, b)
}

/// `n` servers on one fresh database behind the Redis at `redis_url` (as behind a load
/// balancer), sharing a channel and a signing key, each configured by `tweak` too.
pub async fn instances(redis_url: &str, n: usize, tweak: impl Fn(&mut Config)) -> Vec<TestApp> {
    let channel = format!("epop:test:{}", uuid::Uuid::new_v4());
    let shared = |c: &mut Config| {
        tweak(c);
        c.redis_url = Some(redis_url.to_owned().into());
        c.redis_channel = channel.clone();
        c.jwt_secret = Some(
            "a-shared-signing-key-of-at-least-32-bytes"
                .to_owned()
                .into(),
        );
    };
    let first = TestApp::spawn_with(shared).await;
    let mut apps = vec![first];
    for _ in 1..n {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(&apps[0].db_name, dir.path());
        shared(&mut cfg);
        let mut app = TestApp::start(cfg, apps[0].db_name.clone()).await;
        app._dir = Some(dir);
        apps.push(app);
    }
    apps
}

/// A real `epop` process (so that it can die by SIGKILL) on database `db_name`, with the
/// shared signing key of `two_instances` and `env`; answers it, its base URL and its data
/// directory, and waits until it accepts connections.
pub async fn spawn_process(
    db_name: &str,
    env: &[(&str, &str)],
) -> (std::process::Child, String, TempDir) {
    spawn_process_logging(db_name, env, std::process::Stdio::null()).await
}

/// [`spawn_process`], with the process's logs (stderr) going to `logs`.
pub async fn spawn_process_logging(
    db_name: &str,
    env: &[(&str, &str)],
    logs: impl Into<std::process::Stdio>,
) -> (std::process::Child, String, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_epop"))
        .env("DATABASE_URL", database_url(db_name))
        .env("EPOP_JWT_SECRET", SHARED_SECRET)
        .env("EPOP_LISTEN", format!("127.0.0.1:{port}"))
        .env("EPOP_DATA_DIR", dir.path())
        .env("EPOP_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("EPOP_ADMIN_EMAIL", ADMIN_EMAIL)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(logs)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if Channel::from_shared(url.clone())
            .unwrap()
            .connect()
            .await
            .is_ok()
        {
            return (child, url, dir);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the epop process did not start");
}

/// The signing key that instances of one multi-instance test share.
pub const SHARED_SECRET: &str = "a-shared-signing-key-of-at-least-32-bytes";

/// A test configuration for `db_name` and `data_dir`.
pub fn config(db_name: &str, data_dir: &Path) -> Config {
    let mut c = Config::with_defaults(data_dir.to_path_buf(), Some(database_url(db_name)));
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.admin_email = ADMIN_EMAIL.into();
    c.admin_password = Some(ADMIN_PASSWORD.to_owned().into());
    c.store.db_pool_size = 4;
    c.shutdown_grace = Duration::from_secs(5);
    c
}

impl TestApp {
    /// A server on a fresh database with the default test configuration.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// A server on a fresh database; `tweak` adjusts the configuration.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> Self {
        init_logs();
        let db_name = format!("epop_test_{}", uuid::Uuid::new_v4().simple());
        admin_sql(&format!("CREATE DATABASE {db_name}")).await;
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(&db_name, dir.path());
        tweak(&mut cfg);
        let mut app = Self::start(cfg, db_name).await;
        app._dir = Some(dir);
        app
    }

    /// Starts a server with `cfg` on existing database `db_name`.
    pub async fn start(cfg: Config, db_name: String) -> Self {
        init_logs();
        let data_dir = cfg.store.data_dir.clone();
        let app = App::build(cfg).await.expect("the server builds");
        let addr = app.local_addr();
        let metrics_addr = app.metrics_addr();
        let stop = app.stop_token();
        let handle = tokio::spawn(app.run_until_stopped());
        Self {
            addr,
            metrics_addr,
            data_dir,
            db_name,
            _dir: None,
            stop,
            handle: Some(handle),
            drop_db: true,
        }
    }

    /// Starts a server with `cfg`, whose database is not one of the test server's (the
    /// test owns it, so nothing is dropped).
    pub async fn start_elsewhere(cfg: Config) -> Self {
        let mut app = Self::start(cfg, String::new()).await;
        app.drop_db = false;
        app
    }

    /// Starts a graceful stop without waiting for it.
    pub fn begin_stop(&self) {
        self.stop.cancel();
    }

    /// Stops the server (gracefully) and keeps its database and data directory.
    pub async fn stop(mut self) -> (String, Option<TempDir>) {
        self.stop.cancel();
        if let Some(h) = self.handle.take() {
            h.await.expect("server task").expect("server stops cleanly");
        }
        self.drop_db = false;
        (self.db_name.clone(), self._dir.take())
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A gRPC channel to the server.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .unwrap()
            .connect()
            .await
            .expect("connect")
    }

    /// An AuthService client.
    pub async fn auth(&self) -> AuthServiceClient<Channel> {
        AuthServiceClient::new(self.channel().await)
    }

    /// A UserService client.
    pub async fn users(&self) -> UserServiceClient<Channel> {
        UserServiceClient::new(self.channel().await)
    }

    /// An AdminService client.
    pub async fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel().await)
    }

    /// Signs in; panics on failure.
    pub async fn login(&self, email: &str, password: &str) -> pb::LoginResponse {
        self.auth()
            .await
            .login(pb::LoginRequest {
                email: email.into(),
                password: password.into(),
                return_refresh_token: true,
            })
            .await
            .expect("login succeeds")
            .into_inner()
    }

    /// GetMe with `token`.
    pub async fn get_me(&self, token: &str) -> Result<pb::User, tonic::Status> {
        self.users()
            .await
            .get_me(authed(pb::GetMeRequest {}, token))
            .await
            .map(|r| r.into_inner())
    }

    /// An access token of the bootstrap admin.
    pub async fn admin_token(&self) -> String {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.access_token
    }

    /// Resets `email`'s password to `new_password` through the emailed code (the server's
    /// first email).
    pub async fn reset_password(&self, email: &str, new_password: &str) {
        let mut auth = self.auth().await;
        auth.request_password_reset(pb::RequestPasswordResetRequest {
            email: email.into(),
        })
        .await
        .unwrap();
        let code = reset_code(&self.wait_for_emails(1).await[0]);
        auth.confirm_password_reset(pb::ConfirmPasswordResetRequest {
            token: code,
            new_password: new_password.into(),
        })
        .await
        .unwrap();
    }

    /// Creates a user (as the admin) and returns it.
    pub async fn create_user(&self, email: &str, password: &str, role: pb::Role) -> pb::User {
        let token = self.admin_token().await;
        self.admin()
            .await
            .create_user(authed(
                pb::CreateUserRequest {
                    email: email.into(),
                    display_name: String::new(),
                    password: password.into(),
                    role: role.into(),
                    division_ids: vec![],
                },
                &token,
            ))
            .await
            .expect("create user")
            .into_inner()
    }

    /// Waits up to 10 s for `n` emails under `<data-dir>/mail` and returns them, oldest
    /// first.
    pub async fn wait_for_emails(&self, n: usize) -> Vec<String> {
        let dir = self.data_dir.join("mail");
        for _ in 0..100 {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect();
            if files.len() >= n {
                files.sort_by_key(|p| {
                    p.file_stem()
                        .and_then(|s| s.to_str())
                        .and_then(|s| s.parse::<i64>().ok())
                });
                return files
                    .iter()
                    .map(|p| std::fs::read_to_string(p).unwrap())
                    .collect();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("expected {n} emails in {}", dir.display());
    }

    /// How many emails were written.
    pub fn email_count(&self) -> usize {
        std::fs::read_dir(self.data_dir.join("mail"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .count()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
        if self.drop_db {
            let name = self.db_name.clone();
            // Async drop does not exist: drop the database from a thread with its own runtime.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(admin_sql(&format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )));
            })
            .join();
        }
    }
}

/// A new user `<name>@example.com`, signed in: (id, access token).
pub async fn user(app: &TestApp, name: &str) -> (String, String) {
    let email = format!("{name}@example.com");
    let u = app
        .create_user(&email, "user-password-1", pb::Role::User)
        .await;
    (
        u.id,
        app.login(&email, "user-password-1").await.access_token,
    )
}

/// The user id behind an access token.
pub async fn my_id(app: &TestApp, token: &str) -> String {
    app.users()
        .await
        .get_me(authed(pb::GetMeRequest {}, token))
        .await
        .expect("GetMe")
        .into_inner()
        .id
}

/// `message` with the token, or anonymous when the token is empty.
pub fn call<T>(token: &str, message: T) -> Request<T> {
    if token.is_empty() {
        Request::new(message)
    } else {
        authed(message, token)
    }
}

/// `message` with `authorization: Bearer <token>`.
pub fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// The field violations of an INVALID_ARGUMENT status, as (field, description) pairs.
pub fn violations(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// The value of the `code` line in a reset email (decoding quoted-printable soft breaks).
pub fn reset_code(email: &str) -> String {
    let body = email
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let mut lines = body.lines().map(str::trim);
    lines
        .by_ref()
        .find(|l| l.starts_with("or enter this reset code"))
        .expect("the email has a reset code");
    lines
        .find(|l| !l.is_empty())
        .expect("the code follows")
        .to_owned()
}
