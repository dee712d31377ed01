//! `portcullis`, the native host of the Portcullis authentication service: the command
//! line. Everything else is in the library (`lib.rs`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use portcullis::api::Registration;
use portcullis::settings::{self, Rejected, Settings};
use portcullis::{COMPONENT_WASM, commands, import, logging};

/// The exit code for bad settings.
const EXIT_BAD_SETTINGS: u8 = 2;

/// Portcullis: user authentication (registration, login, JWT sessions) as a service.
///
/// Settings come from PORTCULLIS_* environment variables and, with --config, from a
/// TOML file whose keys are the variable names without the prefix, in lower case.
/// The environment wins. Every command checks every setting first and reports all
/// problems at once (exit code 2). Every setting with its default, every endpoint and
/// every exit code: docs/reference.md in the source repository.
#[derive(Parser)]
#[command(name = "portcullis", version)]
struct Cli {
    /// Read settings from this TOML file (environment variables override it).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Bind the listen address, apply pending migrations, then serve HTTP until SIGINT or
    /// SIGTERM.
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
    /// Manage the JWT signing keys (EdDSA).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage administrators.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Database maintenance.
    #[command(subcommand)]
    Db(DbCommand),
}

#[derive(Subcommand)]
enum DbCommand {
    /// Run the retention rules now, batch after batch until nothing is left to delete,
    /// and print the rows removed per table. Migrations are applied first.
    Prune {
        /// Apply the rules as if the clock were this many seconds ahead: delete now what
        /// they would delete by then.
        #[arg(long, value_name = "SECONDS", default_value_t = 0)]
        later_by: u32,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an admin (email marked verified) and print its id. The password is read
    /// from standard input (one line); it follows the password policy.
    Create {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: String,
        /// Read the password from standard input (the default; accepted for scripts
        /// that say so).
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Import users with the password hashes of another system from JSON Lines, one
    /// user a line (bcrypt, Argon2i/Argon2id, PBKDF2-SHA256 as Django or passlib writes
    /// it). Prints the report as one JSON object on stdout and progress on stderr; exits
    /// 0 when no line was rejected, 1 otherwise, 2 when the file cannot be read.
    /// Migrations are applied first.
    Import {
        /// The JSON Lines file; `-` reads standard input.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Retire the signing key, create a new one and print its kid. Tokens signed with
    /// the retired key stay valid until they expire. Migrations are applied first.
    Rotate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => report(&error),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(cli.config.as_deref());
    let (host, log_settings) = match settings::check(&settings) {
        Ok(checked) => checked,
        Err(rejected) => {
            for warning in settings.warnings() {
                eprintln!("warning: {warning}");
            }
            return Err(rejected.into());
        }
    };
    logging::init(log_settings);
    for warning in settings.warnings() {
        tracing::warn!("{warning}");
    }
    raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Users(UsersCommand::Import { file }) => {
                let source = import::Source::from_argument(&file);
                return commands::import_users(settings, host, COMPONENT_WASM, source).await;
            }
            Command::Serve => commands::serve(settings, host, COMPONENT_WASM).await,
            Command::Migrate => commands::migrate(host).await,
            Command::Keys(KeysCommand::Rotate) => {
                commands::rotate_key(settings, host, COMPONENT_WASM).await
            }
            Command::Db(DbCommand::Prune { later_by }) => {
                commands::prune(settings, host, COMPONENT_WASM, later_by).await
            }
            Command::Admin(AdminCommand::Create {
                username, email, ..
            }) => {
                let registration = Registration {
                    username,
                    email,
                    password: read_password()?,
                    mobile_number: None,
                };
                commands::create_admin(settings, host, COMPONENT_WASM, registration).await
            }
        }
        .map(|()| ExitCode::SUCCESS)
    })
}

/// Raises the soft limit on open files to the hard limit, if it is lower: every client
/// connection takes a file descriptor, and many systems start processes with a soft
/// limit of 1024 (docs/reference.md, "Slow clients, idle connections and mail outages").
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "the soft limit on open files"),
        Err(error) => tracing::warn!(%error, "cannot raise the soft limit on open files"),
    }
}

/// One line of standard input, without its line ending.
fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    anyhow::ensure!(!password.is_empty(), "no password on standard input");
    Ok(password)
}

/// Prints why start-up failed: one `error:` line per bad setting (exit code 2), or the
/// error and its causes (exit code 1).
fn report(error: &anyhow::Error) -> ExitCode {
    match error.downcast_ref::<Rejected>() {
        Some(rejected) => {
            for line in &rejected.lines {
                eprintln!("error: {line}");
            }
            ExitCode::from(EXIT_BAD_SETTINGS)
        }
        None => {
            eprintln!("error: {}", without_repeats(error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `: `-separated, leaving out a cause its predecessor already
/// says (drivers often repeat their message in the error's own text).
fn without_repeats(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if message.contains(&cause) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&cause);
    }
    message
}
