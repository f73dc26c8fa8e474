//! The `epop` command: `serve` (the default), `migrate`, `user create`, `keys` and `health`.

use clap::{Parser, Subcommand};
use epop::{
    app::App,
    auth::{keyring, password::Hasher},
    config::{LogFormat, ServeArgs, StoreArgs},
    db,
    domain::{DisplayName, Email, Password, Role},
    service::accounts,
    telemetry,
};
use secrecy::{ExposeSecret, SecretString};

// mimalloc rather than the system allocator: the request path allocates much (HTTP/2,
// protobuf, JSON), and glibc's malloc and free were a quarter of the server's CPU under a
// send load (benches/realtime.sh).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// EPOP: the team-collaboration backend (gRPC, gRPC-Web, REST on one port).
#[derive(Debug, Parser)]
#[command(name = "epop", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations and exit.
    Migrate(StoreArgs),
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage the access-token signing keys kept in the database.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Exit 0 when a running server's probe answers 2xx (container healthchecks).
    Health {
        /// The probe to ask (plain HTTP; `/healthz` for liveness, `/readyz` for readiness).
        #[arg(
            long,
            env = "EPOP_HEALTH_URL",
            default_value = "http://127.0.0.1:8080/readyz"
        )]
        url: String,
        /// How long to wait for the answer.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Add a new signing key: every instance signs with it from its next reload
    /// (EPOP_JWT_KEYS_RELOAD), and the old key verifies until the tokens it signed expire.
    Rotate(StoreArgs),
    /// List the keys, newest first.
    List(StoreArgs),
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create an account; prints its password when one is generated.
    Create {
        /// The sign-in email address.
        #[arg(long)]
        email: String,
        /// The display name (default: the part of the email before the @).
        #[arg(long)]
        display_name: Option<String>,
        /// The password (default: a generated one, printed once).
        #[arg(long, env = "EPOP_USER_PASSWORD", hide_env_values = true)]
        password: Option<SecretString>,
        /// Give the account the ADMIN role.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn main() -> anyhow::Result<()> {
    unset_empty_settings();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

/// An empty setting (`EPOP_ADMIN_PASSWORD=` in an env file, say) means unset, as it does to a
/// shell user: it would otherwise be taken as an empty value (and refused, or worse, used).
fn unset_empty_settings() {
    let empty: Vec<std::ffi::OsString> = std::env::vars_os()
        .filter(|(k, v)| {
            let k = k.to_string_lossy();
            v.is_empty() && (k.starts_with("EPOP_") || k == "DATABASE_URL" || k == "REDIS_URL")
        })
        .map(|(k, _)| k)
        .collect();
    for k in empty {
        // SAFETY: called first thing in `main`, before the runtime (or anything else) starts
        // a thread that could read the environment.
        unsafe { std::env::remove_var(k) };
    }
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(args)) => serve(*args).await,
        Some(Command::Migrate(store)) => {
            telemetry::init(LogFormat::Text);
            with_database(&store, async |urls| db::migrate(urls).await).await
        }
        Some(Command::Health { url, timeout }) => epop::probes::check(&url, timeout).await,
        Some(Command::Keys(command)) => {
            telemetry::init(LogFormat::Text);
            keys(command).await
        }
        Some(Command::User(UserCommand::Create {
            email,
            display_name,
            password,
            admin,
            store,
        })) => {
            telemetry::init(LogFormat::Text);
            with_database(&store, async |urls| {
                db::migrate(urls).await?;
                let pool = db::connect(&urls.serve, 2).await?;
                let email = Email::parse("--email", &email)?;
                let name = display_name.unwrap_or_else(|| email.local_part().to_owned());
                let generated = password.is_none().then(accounts::generate_password);
                let raw = match (&password, &generated) {
                    (Some(p), _) => p.expose_secret().to_owned(),
                    (None, g) => g.clone().unwrap_or_default(),
                };
                let account = accounts::NewAccount {
                    display_name: DisplayName::parse("--display-name", &name)?,
                    password: Password::parse("--password", &raw)?,
                    role: if admin { Role::Admin } else { Role::User },
                    divisions: vec![],
                    email,
                };
                let user = accounts::create(&pool, &Hasher::default(), account, None).await?;
                println!(
                    "created user {} ({}), role {}",
                    user.email,
                    user.id,
                    user.role.as_str()
                );
                if let Some(p) = generated {
                    println!("password (shown once): {p}");
                }
                Ok(())
            })
            .await
        }
    }
}

async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    let (KeysCommand::Rotate(store) | KeysCommand::List(store)) = &command;
    if std::env::var_os("EPOP_JWT_SECRET").is_some() {
        eprintln!(
            "note: EPOP_JWT_SECRET is set here; servers configured with it sign with that key \
             and ignore the database's keys"
        );
    }
    with_database(store, async |urls| {
        db::migrate(urls).await?;
        let pool = db::connect(&urls.serve, 2).await?;
        match command {
            KeysCommand::Rotate(_) => {
                let (kid, retired) = keyring::rotate(&pool).await?;
                println!("new signing key {kid}");
                if let Some(old) = retired {
                    println!("retired {old}: it verifies until the tokens it signed expire");
                }
            }
            KeysCommand::List(_) => {
                for k in keyring::list(&pool).await? {
                    let state = match k.retired_at {
                        None => "signing".to_owned(),
                        Some(t) => format!("retired {}", t.to_rfc3339()),
                    };
                    println!("{}  created {}  {state}", k.kid, k.created_at.to_rfc3339());
                }
            }
        }
        Ok(())
    })
    .await
}

/// Runs `f` against the configured database, or the embedded one (stopped afterwards when
/// this command started it).
async fn with_database(
    store: &StoreArgs,
    f: impl AsyncFnOnce(&db::roles::Urls) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&store.data_dir)?;
    let (urls, embedded) = db::resolve(store).await?;
    let result = f(&urls).await;
    if let Some(pg) = embedded.filter(|pg| pg.started_here()) {
        pg.stop().await?;
    }
    result
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let exporter = (args.otlp_endpoint.as_deref())
        .map(telemetry::otlp::Exporter::new)
        .transpose()?;
    telemetry::init_exporting(args.log_format, exporter.as_ref());
    let app = App::build(args).await?;
    if let Some(password) = &app.generated_admin_password {
        println!("\n  First start: created the admin account. Sign in with the password below;");
        println!("  it is shown this once (set EPOP_ADMIN_PASSWORD to choose it instead).");
        println!("  password: {password}\n");
    }
    let stop = app.stop_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown signal received: finishing in-flight calls");
        stop.cancel();
    });
    let result = app.run_until_stopped().await;
    if let Some(exporter) = exporter {
        // Blocks until the last spans are sent, which needs the runtime's other threads.
        tokio::task::spawn_blocking(move || exporter.shutdown()).await?;
    }
    result
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
