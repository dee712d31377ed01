//! The commands: `serve` (bind the listen address, migrate, start the component,
//! deliver mail, prune on a timer and serve until SIGINT/SIGTERM), `migrate`,
//! `keys rotate`, `admin create` and `db prune`. Every setting has been checked before any of them runs
//! (`settings::check`); each checks the JWT secret kept in the data folder before it
//! touches the database.

use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::api;
use crate::db::{self, Database};
use crate::engine;
use crate::import;
use crate::instances::Instances;
use crate::mail::{Delivery, MailSettings, Mailer};
use crate::retention::{self, RetentionCheck};
use crate::server;
use crate::settings::{self, HostSettings, Rejected, Settings};
use crate::state::SharedImports;
use portcullis_component::settings::JwtAlgorithm;

/// The setting that carries the address actually bound (the component derives the
/// default public URL from it).
const LISTEN: &str = "listen";

/// Applies pending migrations, then delivers mail and serves HTTP until SIGINT or
/// SIGTERM. At shutdown mail delivery stops first, then the requests in flight finish.
pub async fn serve(
    mut settings: Settings,
    host: HostSettings,
    component_wasm: &[u8],
) -> anyhow::Result<()> {
    let mailer = Mailer::new(MailSettings::parse(&settings)?)?;
    prepare_data_dir(&mut settings, &host)?;
    // Bound before the migrations: a port in use stops start-up before any change.
    let listener = TcpListener::bind(host.listen)
        .await
        .with_context(|| format!("PORTCULLIS_LISTEN: cannot listen on {}", host.listen))?;
    let address = listener.local_addr().context("reading the bound address")?;
    settings.set(LISTEN, address.to_string());
    let database = open_migrated(&host).await?;

    let bootstrap_admin = BootstrapAdmin::from_settings(&settings)?;
    let imports = SharedImports::new(database.clone(), settings.into_map());
    let instances = start_component(component_wasm, &host, imports).await?;
    let observability = server::Observability::start(&instances, &database, &host).await?;
    if let Some(admin) = bootstrap_admin {
        admin.ensure(&instances).await?;
    }
    let shutdown = shutdown_signal()?;
    mailer.announce();
    let delivery = Delivery::start(Arc::clone(&instances), mailer);
    let table_rows = observability.metrics().register_table_rows()?;
    let retention = RetentionCheck::start(Arc::clone(&instances), table_rows);
    announce(address)?;
    let shutdown = async move {
        shutdown.await;
        delivery.stop().await;
        retention.stop().await;
    };
    server::serve(listener, instances, observability, shutdown).await;
    database.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Loads the component (compiled, or from the cache), links it against `imports`,
/// checks the types of the API functions the host calls, and lets it check the settings.
async fn start_component(
    component_wasm: &[u8],
    host: &HostSettings,
    imports: SharedImports,
) -> anyhow::Result<Arc<Instances>> {
    let engine = engine::new_engine()?;
    engine::start_epoch_ticker(&engine)?;
    let loading = Instant::now();
    let component = engine::load_component(&engine, component_wasm, &host.cache_dir)?;
    tracing::info!(
        elapsed_ms = loading.elapsed().as_millis() as u64,
        "component ready"
    );
    let instances = Instances::new(&engine, &component, imports)?;
    api::check_types(&instances).await?;
    match api::check_settings(&instances).await? {
        Ok(()) => Ok(Arc::new(instances)),
        Err(lines) => Err(Rejected { lines }.into()),
    }
}

/// Applies pending migrations and exits.
pub async fn migrate(host: HostSettings) -> anyhow::Result<()> {
    let database = open_migrated(&host).await?;
    database.close().await;
    Ok(())
}

/// Under `PORTCULLIS_JWT_ALGORITHM=EdDSA`: retires the signing key, creates a new one
/// and prints its `kid`. Migrations are applied first, and the component checks the
/// settings, as for `serve`. Under HS256, or with `PORTCULLIS_JWT_SIGNING_KEY` set, it
/// refuses before touching anything.
pub async fn rotate_key(
    mut settings: Settings,
    host: HostSettings,
    component_wasm: &[u8],
) -> anyhow::Result<()> {
    let component = settings
        .component_settings()
        .map_err(|lines| Rejected { lines })?;
    if component.jwt_algorithm != JwtAlgorithm::EdDsa {
        return Err(Rejected {
            lines: vec![
                "keys rotate: PORTCULLIS_JWT_ALGORITHM is HS256, whose only key is \
                 PORTCULLIS_JWT_SECRET (change that instead); rotation applies to EdDSA"
                    .into(),
            ],
        }
        .into());
    }
    if component.jwt_signing_key.is_some() {
        return Err(Rejected {
            lines: vec![
                "keys rotate: PORTCULLIS_JWT_SIGNING_KEY is set: rotate by setting another \
                 key there"
                    .into(),
            ],
        }
        .into());
    }
    prepare_data_dir(&mut settings, &host)?;
    let database = open_migrated(&host).await?;
    let imports = SharedImports::new(database.clone(), settings.into_map());
    let instances = start_component(component_wasm, &host, imports).await?;
    let rotated = api::rotate_signing_key(&instances).await;
    database.close().await;
    let kid = rotated?.context("rotating the signing key")?;
    tracing::info!(%kid, "rotated the signing key");
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{kid}")?;
    stdout.flush()?;
    Ok(())
}

/// `portcullis admin create`: creates an admin with the registration rules and prints
/// its id. Migrations are applied first.
pub async fn create_admin(
    mut settings: Settings,
    host: HostSettings,
    component_wasm: &[u8],
    registration: api::Registration,
) -> anyhow::Result<()> {
    prepare_data_dir(&mut settings, &host)?;
    let database = open_migrated(&host).await?;
    let imports = SharedImports::new(database.clone(), settings.into_map());
    let instances = start_component(component_wasm, &host, imports).await?;
    let created = api::create_admin(&instances, registration, false).await;
    database.close().await;
    let user = created?
        .context("creating the admin")?
        .context("creating the admin: the component created no account")?;
    tracing::info!(id = %user.id, username = %user.username, "created an admin");
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", user.id)?;
    stdout.flush()?;
    Ok(())
}

/// `portcullis db prune`: runs the retention rounds now (as if `later_by` seconds ahead),
/// until nothing is left to delete, and prints the rows removed per table. Migrations
/// are applied first.
pub async fn prune(
    mut settings: Settings,
    host: HostSettings,
    component_wasm: &[u8],
    later_by: u32,
) -> anyhow::Result<()> {
    prepare_data_dir(&mut settings, &host)?;
    let database = open_migrated(&host).await?;
    let imports = SharedImports::new(database.clone(), settings.into_map());
    let instances = start_component(component_wasm, &host, imports).await?;
    let pruned = prune_when_free(&instances, later_by).await;
    database.close().await;
    let removed = pruned.context("pruning")?;
    if removed.is_empty() {
        tracing::warn!(
            "another host has been running a retention round for {} s; nothing was done",
            PRUNE_WAIT.as_secs()
        );
    }
    let mut stdout = std::io::stdout().lock();
    for table in &removed {
        writeln!(stdout, "{} {}", table.table, table.rows)?;
    }
    stdout.flush()?;
    Ok(())
}

/// How long `db prune` waits for another host's round (a serving host's, or one that
/// Spin runs after a response) to release the retention lease.
const PRUNE_WAIT: Duration = Duration::from_secs(30);

/// The retention rounds of `db prune`, run as soon as no other host holds the lease
/// (within [`PRUNE_WAIT`]); an empty list when one held it all along.
async fn prune_when_free(
    instances: &Instances,
    later_by: u32,
) -> anyhow::Result<Vec<api::TableRows>> {
    let deadline = tokio::time::Instant::now() + PRUNE_WAIT;
    loop {
        let removed = retention::run_rounds(instances, true, later_by, || false).await?;
        if !removed.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(removed);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `portcullis users import FILE|-`: imports the users of a JSON Lines file (see
/// [`import`]) and prints the report on stdout. Exits 0 when no line was rejected, 1
/// otherwise or when the database fails, 2 when the file cannot be read (opened before
/// anything is touched). Migrations are applied first.
pub async fn import_users(
    mut settings: Settings,
    host: HostSettings,
    component_wasm: &[u8],
    source: import::Source,
) -> anyhow::Result<ExitCode> {
    let unreadable = |error: &std::io::Error| Rejected {
        lines: vec![format!(
            "users import: cannot read {}: {error}",
            source.name()
        )],
    };
    let mut reader = source.open().map_err(|error| unreadable(&error))?;
    prepare_data_dir(&mut settings, &host)?;
    let database = open_migrated(&host).await?;
    let imports = SharedImports::new(database.clone(), settings.into_map());
    let instances = start_component(component_wasm, &host, imports).await?;
    let mut totals = import::Totals::default();
    let outcome = import::run(&instances, &mut reader, &mut totals).await;
    database.close().await;
    match outcome {
        Ok(()) => {}
        Err(import::Stopped::Unreadable { line, error }) => {
            eprintln!("{}", totals.progress());
            return Err(Rejected {
                lines: vec![format!(
                    "users import: cannot read {} at line {line} (the lines before it were \
                     imported): {error}",
                    source.name()
                )],
            }
            .into());
        }
        Err(import::Stopped::Failed(error)) => {
            eprintln!("{}", totals.progress());
            return Err(error);
        }
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string(&totals)?)?;
    stdout.flush()?;
    Ok(if totals.rejected.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The admin of `PORTCULLIS_ADMIN_USERNAME` / `_EMAIL` / `_PASSWORD`, created at start-up
/// when absent.
struct BootstrapAdmin {
    username: String,
    email: String,
    password: String,
}

impl BootstrapAdmin {
    const KEYS: [&'static str; 3] = ["admin_username", "admin_email", "admin_password"];

    /// `None` when none of the three is set; all three or none must be.
    fn from_settings(settings: &Settings) -> Result<Option<Self>, Rejected> {
        let [username, email, password] =
            Self::KEYS.map(|key| settings.get(key).map(str::to_owned));
        match (username, email, password) {
            (Some(username), Some(email), Some(password)) => Ok(Some(Self {
                username,
                email,
                password,
            })),
            (None, None, None) => Ok(None),
            _ => Err(Rejected {
                lines: vec![
                    "PORTCULLIS_ADMIN_USERNAME, PORTCULLIS_ADMIN_EMAIL and PORTCULLIS_ADMIN_PASSWORD \
                     must be set together"
                        .into(),
                ],
            }),
        }
    }

    async fn ensure(self, instances: &Instances) -> anyhow::Result<()> {
        let registration = api::Registration {
            username: self.username,
            email: self.email,
            password: self.password,
            mobile_number: None,
        };
        match api::create_admin(instances, registration, true).await? {
            Ok(Some(user)) => {
                tracing::info!(username = %user.username, "created the bootstrap admin")
            }
            Ok(None) => tracing::info!("the bootstrap admin exists already"),
            Err(api::ApiError::UsernameTaken | api::ApiError::EmailTaken) => tracing::warn!(
                "PORTCULLIS_ADMIN_USERNAME or PORTCULLIS_ADMIN_EMAIL names an existing \
                 account that is not that admin; it was not promoted and no admin was created"
            ),
            Err(error) => anyhow::bail!("PORTCULLIS_ADMIN_*: the bootstrap admin: {error}"),
        }
        Ok(())
    }
}

/// Creates the data folder and makes sure a JWT secret is set (the one kept there if
/// need be), then checks the component's settings again with that secret.
fn prepare_data_dir(settings: &mut Settings, host: &HostSettings) -> anyhow::Result<()> {
    fs::create_dir_all(&host.data_dir)
        .with_context(|| format!("creating the data folder {}", host.data_dir.display()))?;
    settings::ensure_jwt_secret(settings, &host.data_dir)?;
    let problems = settings.component_problems();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Rejected { lines: problems }.into())
    }
}

/// Connects (waiting for a server that cannot be reached yet, see [`connect_waiting`])
/// and applies the pending migrations, saying which (or that there were none).
async fn open_migrated(host: &HostSettings) -> anyhow::Result<Database> {
    let database = connect_waiting(host).await?;
    let applied = database.migrate().await?;
    let dialect = database.dialect().name();
    if applied.is_empty() {
        tracing::info!(dialect, "the database is up to date");
    } else {
        let names: Vec<String> = applied.iter().map(ToString::to_string).collect();
        tracing::info!(
            dialect,
            "applied {} migration{}: {}",
            applied.len(),
            if applied.len() == 1 { "" } else { "s" },
            names.join(", ")
        );
    }
    Ok(database)
}

/// The longest pause between two tries at an unreachable database server.
const MOST_BETWEEN_TRIES: Duration = Duration::from_secs(5);

/// Connects to the database. A server that cannot be reached (refused, unknown host, no
/// answer) is tried again, with one warning per failed try and pauses that double up
/// to [`MOST_BETWEEN_TRIES`], for `PORTCULLIS_DATABASE_WAIT` in all; then start-up
/// stops with one error naming the database (never its credentials). A server that
/// answers no (wrong password, no such database) stops start-up at once.
async fn connect_waiting(host: &HostSettings) -> anyhow::Result<Database> {
    let wait = host.database_wait;
    let deadline = tokio::time::Instant::now() + wait;
    let mut pause = Duration::from_millis(250);
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let error = match Database::connect(&host.database).await {
            Ok(database) => return Ok(database),
            Err(error) if db::is_unreachable(&error) => error,
            Err(error) => return Err(error),
        };
        let database = db::describe(&host.database.url);
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(error.context(format!(
                "cannot reach the database ({database}) within PORTCULLIS_DATABASE_WAIT \
                 ({} s, {attempt} tr{})",
                wait.as_secs(),
                if attempt == 1 { "y" } else { "ies" }
            )));
        }
        pause = pause.min(left);
        tracing::warn!(
            attempt,
            "cannot reach the database ({database}): {}; trying again in {} ms \
             (PORTCULLIS_DATABASE_WAIT: {} s left)",
            error.root_cause(),
            pause.as_millis(),
            left.as_secs()
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MOST_BETWEEN_TRIES);
    }
}

/// Prints the one line that tells scripts and tests where to connect, and logs it.
fn announce(address: SocketAddr) -> anyhow::Result<()> {
    tracing::info!(%address, "listening on http://{address}");
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{address}")?;
    stdout.flush()?;
    Ok(())
}

/// Completes at the first SIGINT or SIGTERM. The handlers are installed at once, so a
/// signal that comes right after start-up is not lost.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("handling SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    Ok(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(signal = name, "shutdown requested");
    })
}

/// Completes at the first Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    Ok(async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        tracing::info!("shutdown requested");
    })
}
