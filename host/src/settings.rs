//! Settings: every `PORTCULLIS_*` environment variable, and the keys of the TOML file
//! given with `--config` (the variable's name without the prefix, lower-case; strings,
//! integers or booleans). The environment wins over the file.
//!
//! The host reads the few settings it owns ([`HostSettings`]) and hands all of them to
//! the component through `wasi:config/store`. [`check`] checks every setting at once —
//! the host's, the mail's and the component's (with the component's own code, compiled
//! natively) — before any command touches the database or compiles the component: a
//! bad setting is a [`Rejected`] error, one line per problem, each naming the setting.
//!
//! A `PORTCULLIS_*` variable that is no setting is a warning naming the closest setting;
//! an unknown key in the file is an error; errors in the file carry line and column.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs;
use std::io::{ErrorKind, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRngCore as _;
use rand::rngs::OsRng;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tracing_subscriber::EnvFilter;

const PREFIX: &str = "PORTCULLIS_";
const JWT_SECRET: &str = "jwt_secret";
const JWT_SECRET_FILE: &str = "jwt_secret";
const JWT_SECRET_BYTES: usize = 64;
const DEFAULT_DATA_DIR: &str = "data";
const DEFAULT_LOG: &str = "info";
const DEFAULT_MAX_CONNECTIONS: u32 = 8;
const MAX_CONNECTIONS_LIMIT: u32 = 1000;
/// The default of `PORTCULLIS_DATABASE_WAIT`, in seconds.
const DEFAULT_DATABASE_WAIT_SECONDS: u64 = 30;
/// The largest `PORTCULLIS_DATABASE_WAIT`: an hour.
const MAX_DATABASE_WAIT_SECONDS: u64 = 3600;
const METRICS_TOKEN: &str = "metrics_token";
const MAX_METRICS_TOKEN_BYTES: usize = 1024;
/// A stand-in for an unset `jwt_secret` while the settings are checked: the host fills
/// it from the data folder afterwards (and checks it again).
const SECRET_TO_BE_GENERATED: &str = "a secret the host generates in the data folder";

/// Every key the host itself reads (the mail's keys are in `mail`, the component's in
/// `portcullis_component::settings::KEYS`). A unit test keeps this list true, and the
/// drift test (`host/tests/reference.rs`) keeps `docs/reference.md` true to it.
pub const HOST_KEYS: &[&str] = &[
    "listen",
    "database_url",
    "data_dir",
    "cache_dir",
    "db_max_connections",
    "database_wait",
    "metrics_token",
    "public_url",
    "hash_queue",
    "log",
    "log_format",
    "jwt_secret",
    "admin_username",
    "admin_email",
    "admin_password",
];

/// `PORTCULLIS_*` variables that are not settings: the black-box suite's databases.
pub const TEST_VARIABLES: &[&str] = &["PORTCULLIS_TEST_POSTGRES_URL", "PORTCULLIS_TEST_MYSQL_URL"];

/// Every setting key the native host knows: its own, the mail's and the component's.
pub fn known_keys() -> BTreeSet<&'static str> {
    HOST_KEYS
        .iter()
        .chain(crate::mail::KEYS)
        .chain(portcullis_component::settings::KEYS)
        .copied()
        .collect()
}

/// The known key closest to `unknown`, if one is close enough to be a typo of it.
fn closest_key(unknown: &str) -> Option<&'static str> {
    known_keys()
        .into_iter()
        .map(|known| (strsim::damerau_levenshtein(unknown, known), known))
        .filter(|(distance, known)| *distance <= (known.len() / 3).max(2))
        .min()
        .map(|(_, known)| known)
}

/// ` (did you mean …?)` with `name(key)` of the closest known key, or nothing.
fn did_you_mean(unknown: &str, name: impl Fn(&str) -> String) -> String {
    closest_key(unknown).map_or_else(String::new, |known| {
        format!(" (did you mean {}?)", name(known))
    })
}

/// Settings that stop start-up: one line per bad setting, each naming it.
#[derive(Debug)]
pub struct Rejected {
    /// The lines to show, without the `error: ` prefix.
    pub lines: Vec<String>,
}

impl Rejected {
    /// One line about the setting `key` (named as its environment variable).
    pub fn setting(key: &str, problem: impl fmt::Display) -> Self {
        Self {
            lines: vec![format!("{}: {problem}", variable_name(key))],
        }
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines.join("; "))
    }
}

impl std::error::Error for Rejected {}

/// The environment variable a setting key stands for (`listen` → `PORTCULLIS_LISTEN`).
fn variable_name(key: &str) -> String {
    format!("{PREFIX}{}", key.to_uppercase())
}

/// Every setting by key (the lower-case name without the prefix), with what loading
/// them found wrong (file errors) or suspicious (unknown variables).
#[derive(Debug, Default)]
pub struct Settings {
    values: HashMap<String, String>,
    /// Problems of the file and the environment, reported with all the others.
    problems: Vec<String>,
    /// Unknown `PORTCULLIS_*` variables, to log once logging is set up.
    warnings: Vec<String>,
    /// The keys read so far (tests compare them with the lists of known keys).
    #[cfg(test)]
    read: std::sync::Mutex<BTreeSet<String>>,
}

/// Settings given directly (keys lower-case, without the prefix), as benchmarks and
/// embedding tests do.
impl From<HashMap<String, String>> for Settings {
    fn from(values: HashMap<String, String>) -> Self {
        Self {
            values,
            ..Self::default()
        }
    }
}

impl Settings {
    /// Reads the settings file (if any), then the environment over it. Nothing fails
    /// here: problems are kept for [`check`], which reports them with all the others.
    pub fn load(config_file: Option<&Path>) -> Self {
        let mut settings = Self::default();
        if let Some(path) = config_file {
            settings.read_file(path);
        }
        settings.read_environment();
        settings
    }

    fn read_file(&mut self, path: &Path) {
        let at = |span: Option<std::ops::Range<usize>>, text: &str| match span {
            Some(span) => {
                let (line, column) = line_and_column(text, span.start);
                format!(
                    "--config {}: line {line}, column {column}: ",
                    path.display()
                )
            }
            None => format!("--config {}: ", path.display()),
        };
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) => {
                self.problems.push(format!("{}{error}", at(None, "")));
                return;
            }
        };
        let table: toml::Table = match toml::from_str(&text) {
            Ok(table) => table,
            Err(error) => {
                let message = error.message().trim_end().to_owned();
                self.problems
                    .push(format!("{}{message}", at(error.span(), &text)));
                return;
            }
        };
        // Where each key is written (the text parsed above, so it parses again).
        let spans: HashMap<String, std::ops::Range<usize>> = toml::de::DeTable::parse(&text)
            .map(|table| {
                table
                    .into_inner()
                    .into_iter()
                    .map(|(key, _)| (key.get_ref().to_string(), key.span()))
                    .collect()
            })
            .unwrap_or_default();
        let known = known_keys();
        for (key, value) in table {
            let span = spans.get(&key).cloned();
            let key = key.to_lowercase();
            if !known.contains(key.as_str()) {
                let hint = did_you_mean(&key, |known| format!("`{known}`"));
                self.problems
                    .push(format!("{}unknown key `{key}`{hint}", at(span, &text)));
                continue;
            }
            match setting_text(value) {
                Some(value) => {
                    self.values.insert(key, value);
                }
                None => self.problems.push(format!(
                    "{}{key}: expected a string, an integer or a boolean",
                    at(span, &text)
                )),
            }
        }
    }

    fn read_environment(&mut self) {
        let known = known_keys();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            let Some(key) = name.strip_prefix(PREFIX).map(str::to_lowercase) else {
                continue;
            };
            if !known.contains(key.as_str()) {
                if !TEST_VARIABLES.contains(&name) {
                    let hint = did_you_mean(&key, variable_name);
                    self.warnings
                        .push(format!("{name} is not a setting and is ignored{hint}"));
                }
                continue;
            }
            match value.into_string() {
                Ok(value) => {
                    self.values.insert(key, value);
                }
                Err(_) => self
                    .problems
                    .push(format!("{}: not valid UTF-8", variable_name(&key))),
            }
        }
    }

    /// The warnings loading found (unknown variables), one line each.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The value of a setting, if it is set.
    pub fn get(&self, key: &str) -> Option<&str> {
        #[cfg(test)]
        if let Ok(mut read) = self.read.lock() {
            read.insert(key.to_owned());
        }
        self.values.get(key).map(String::as_str)
    }

    /// Sets a setting (the generated JWT secret, the address actually bound).
    pub fn set(&mut self, key: &str, value: String) {
        self.values.insert(key.to_owned(), value);
    }

    /// All settings, for `wasi:config/store`.
    pub fn into_map(self) -> HashMap<String, String> {
        self.values
    }

    /// The component's problems with these settings, one line each, found by the
    /// component's own code. An unset `jwt_secret` passes: the host generates one.
    pub fn component_problems(&self) -> Vec<String> {
        self.component_settings().err().unwrap_or_default()
    }

    /// The component's settings, parsed and checked by the component's own code (an
    /// unset `jwt_secret` stands for the one the host generates).
    pub fn component_settings(
        &self,
    ) -> Result<portcullis_component::settings::Settings, Vec<String>> {
        let lookup = |key: &str| match (key, self.get(key)) {
            (JWT_SECRET, None) => Some(SECRET_TO_BE_GENERATED.to_owned()),
            (_, value) => value.map(str::to_owned),
        };
        portcullis_component::settings::Settings::from_lookup(lookup)
    }

    fn parse_or<T: FromStr>(&self, key: &str, default: T, what: &str) -> Result<T, Rejected> {
        match self.get(key) {
            None => Ok(default),
            Some(text) => text
                .parse()
                .map_err(|_| Rejected::setting(key, format!("invalid {what} {text:?}"))),
        }
    }
}

/// A setting's value from the file, as the environment would have given it.
fn setting_text(value: toml::Value) -> Option<String> {
    match value {
        toml::Value::String(text) => Some(text),
        toml::Value::Integer(integer) => Some(integer.to_string()),
        toml::Value::Boolean(boolean) => Some(boolean.to_string()),
        _ => None,
    }
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let line = before.matches('\n').count() + 1;
    (line, before[line_start..].chars().count() + 1)
}

/// Checks every setting of the host, the mail and the component, and reports every
/// problem at once (with those of the file and the environment). Touches nothing.
pub fn check(settings: &Settings) -> Result<(HostSettings, LogSettings), Rejected> {
    let mut problems = Problems(settings.problems.clone());
    let log = problems.take(LogSettings::parse(settings));
    let host = problems.take(HostSettings::parse(settings));
    problems.take(crate::mail::MailSettings::parse(settings));
    problems.take(check_admin(settings));
    problems.0.extend(settings.component_problems());
    match (host, log) {
        (Some(host), Some(log)) if problems.0.is_empty() => Ok((host, log)),
        _ => Err(Rejected { lines: problems.0 }),
    }
}

/// `PORTCULLIS_ADMIN_USERNAME`, `_EMAIL` and `_PASSWORD`: all three or none, and when
/// all three, an account the registration rules accept (the component's own checks,
/// with the password policy of the settings; the password is never shown).
fn check_admin(settings: &Settings) -> Result<(), Rejected> {
    use portcullis_component::validation::{self, Identifiers};
    let keys = ["admin_username", "admin_email", "admin_password"];
    match keys.map(|key| settings.get(key)) {
        [None, None, None] => Ok(()),
        [Some(username), Some(email), Some(password)] => {
            let Ok(component) = settings.component_settings() else {
                // Reported with the component's settings.
                return Ok(());
            };
            let mut errors = Vec::new();
            validation::check_username(username, &mut errors);
            let email = validation::check_email(email, &mut errors);
            let identifiers = Identifiers {
                username,
                email: &email,
            };
            validation::check_password(password, &identifiers, &component, "password", &mut errors);
            let lines: Vec<String> = errors
                .into_iter()
                .map(|error| {
                    format!(
                        "PORTCULLIS_ADMIN_{}: {}",
                        error.field.to_uppercase(),
                        error.message
                    )
                })
                .collect();
            if lines.is_empty() {
                Ok(())
            } else {
                Err(Rejected { lines })
            }
        }
        _ => Err(incomplete_admin()),
    }
}

/// The line about an incomplete admin trio.
fn incomplete_admin() -> Rejected {
    Rejected {
        lines: vec![
            "PORTCULLIS_ADMIN_USERNAME, PORTCULLIS_ADMIN_EMAIL and PORTCULLIS_ADMIN_PASSWORD \
             must be set together"
                .into(),
        ],
    }
}

/// The problems found so far.
struct Problems(Vec<String>);

impl Problems {
    /// The value, or `None` with its problems kept.
    fn take<T>(&mut self, result: Result<T, Rejected>) -> Option<T> {
        result
            .map_err(|rejected| self.0.extend(rejected.lines))
            .ok()
    }
}

/// The settings the host itself uses.
pub struct HostSettings {
    /// The address to serve on (port 0: any free port).
    pub listen: SocketAddr,
    /// The database and its pool.
    pub database: DatabaseSettings,
    /// How long start-up keeps trying a database server that cannot be reached
    /// (`PORTCULLIS_DATABASE_WAIT`; zero: one try).
    pub database_wait: Duration,
    /// Where the generated JWT secret (and by default the SQLite database) live.
    pub data_dir: PathBuf,
    /// Where the compiled component is cached (default `<data_dir>/cache`); several
    /// hosts may share one.
    pub cache_dir: PathBuf,
    /// The token `/metrics` requires; `None`: `/metrics` is not served.
    pub metrics_token: Option<MetricsToken>,
    /// Whether `PORTCULLIS_PUBLIC_URL` is `https://…`: the answers the host makes itself
    /// then carry `Strict-Transport-Security`, as the component's do.
    pub https_public_url: bool,
    /// How many requests that hash a password may wait for a core
    /// (`PORTCULLIS_HASH_QUEUE`); past that, 503 at once (see `admission`).
    pub hash_queue: usize,
}

/// The default of `PORTCULLIS_HASH_QUEUE`: a burst of this many logins waits its turn.
const DEFAULT_HASH_QUEUE: usize = 256;
/// The largest `PORTCULLIS_HASH_QUEUE` (each waiting request holds a connection).
const MAX_HASH_QUEUE: usize = 100_000;

/// The bearer token `/metrics` requires (`PORTCULLIS_METRICS_TOKEN`). Only its SHA-256
/// digest is kept, so no `Debug` or log line can show it; presented tokens are compared
/// by digest in constant time.
#[derive(Clone)]
pub struct MetricsToken([u8; 32]);

impl fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MetricsToken(<redacted>)")
    }
}

impl MetricsToken {
    /// Checks the setting: 1 to 1024 visible ASCII characters (a bearer token has no
    /// spaces).
    fn parse(text: &str) -> Result<Self, Rejected> {
        let visible = text.bytes().all(|byte| byte.is_ascii_graphic());
        if text.is_empty() || text.len() > MAX_METRICS_TOKEN_BYTES || !visible {
            return Err(Rejected::setting(
                METRICS_TOKEN,
                format!("must be 1 to {MAX_METRICS_TOKEN_BYTES} visible ASCII characters"),
            ));
        }
        Ok(Self(Sha256::digest(text).into()))
    }

    /// Whether `presented` is the token (constant time in its contents).
    pub fn matches(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        digest.ct_eq(&self.0).into()
    }
}

/// The database to use.
pub struct DatabaseSettings {
    /// `sqlite://…`, `postgres://…` or `mysql://…`.
    pub url: String,
    /// The most connections the pool opens.
    pub max_connections: u32,
}

/// What to log and how.
pub struct LogSettings {
    /// Which events to log (`PORTCULLIS_LOG`, an `EnvFilter` directive).
    pub filter: EnvFilter,
    /// The directives as written (the compiler's targets log only when named there).
    pub directives: String,
    /// Plain text or JSON lines.
    pub format: LogFormat,
}

/// How log lines look.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl HostSettings {
    /// Reads and checks the host's settings; every problem is reported.
    pub fn parse(settings: &Settings) -> Result<Self, Rejected> {
        let mut problems = Problems(Vec::new());
        let data_dir = PathBuf::from(settings.get("data_dir").unwrap_or(DEFAULT_DATA_DIR));
        let listen = problems.take(settings.parse_or("listen", default_listen(), "socket address"));
        let database = problems.take(DatabaseSettings::parse(settings, &data_dir));
        let metrics_token = problems.take(
            settings
                .get(METRICS_TOKEN)
                .map(MetricsToken::parse)
                .transpose(),
        );
        let hash_queue = problems.take(parse_hash_queue(settings));
        let database_wait = problems.take(parse_database_wait(settings));
        let cache_dir = settings
            .get("cache_dir")
            .map_or_else(|| data_dir.join("cache"), PathBuf::from);
        match (listen, database, metrics_token, hash_queue, database_wait) {
            (
                Some(listen),
                Some(database),
                Some(metrics_token),
                Some(hash_queue),
                Some(database_wait),
            ) if problems.0.is_empty() => Ok(Self {
                listen,
                database,
                database_wait,
                cache_dir,
                data_dir,
                metrics_token,
                https_public_url: settings
                    .get("public_url")
                    .is_some_and(|url| url.starts_with("https://")),
                hash_queue,
            }),
            _ => Err(Rejected { lines: problems.0 }),
        }
    }
}

fn parse_hash_queue(settings: &Settings) -> Result<usize, Rejected> {
    let queue = settings.parse_or("hash_queue", DEFAULT_HASH_QUEUE, "number")?;
    if queue > MAX_HASH_QUEUE {
        return Err(Rejected::setting(
            "hash_queue",
            format!("must be between 0 and {MAX_HASH_QUEUE}"),
        ));
    }
    Ok(queue)
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

impl DatabaseSettings {
    fn parse(settings: &Settings, data_dir: &Path) -> Result<Self, Rejected> {
        let url = match settings.get("database_url") {
            Some(url) => url.to_owned(),
            // In the data folder: `sqlite://data/portcullis.db` by default.
            None => format!("sqlite://{}", data_dir.join("portcullis.db").display()),
        };
        let mut problems = Problems(Vec::new());
        problems.take(check_database_url(&url));
        let max_connections = problems
            .take(settings.parse_or("db_max_connections", DEFAULT_MAX_CONNECTIONS, "number"))
            .filter(|max| {
                let fits = (1..=MAX_CONNECTIONS_LIMIT).contains(max);
                if !fits {
                    problems.0.push(format!(
                        "PORTCULLIS_DB_MAX_CONNECTIONS: must be between 1 and {MAX_CONNECTIONS_LIMIT}"
                    ));
                }
                fits
            });
        match max_connections {
            Some(max_connections) if problems.0.is_empty() => Ok(Self {
                url,
                max_connections,
            }),
            _ => Err(Rejected { lines: problems.0 }),
        }
    }
}

/// `PORTCULLIS_DATABASE_WAIT`: whole seconds, 0 to [`MAX_DATABASE_WAIT_SECONDS`].
fn parse_database_wait(settings: &Settings) -> Result<Duration, Rejected> {
    let seconds = settings.parse_or(
        "database_wait",
        DEFAULT_DATABASE_WAIT_SECONDS,
        "number of seconds",
    )?;
    if seconds > MAX_DATABASE_WAIT_SECONDS {
        return Err(Rejected::setting(
            "database_wait",
            format!("must be between 0 and {MAX_DATABASE_WAIT_SECONDS} seconds"),
        ));
    }
    Ok(Duration::from_secs(seconds))
}

/// Checks the scheme and that the driver can read the URL, without ever showing the
/// URL (it may hold a password).
fn check_database_url(url: &str) -> Result<(), Rejected> {
    let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
    let parsed = match scheme {
        "sqlite" => sqlx::sqlite::SqliteConnectOptions::from_str(url).map(drop),
        "postgres" | "postgresql" => sqlx::postgres::PgConnectOptions::from_str(url).map(drop),
        "mysql" => sqlx::mysql::MySqlConnectOptions::from_str(url).map(drop),
        "mariadb" => {
            let as_mysql = url.replacen("mariadb", "mysql", 1);
            sqlx::mysql::MySqlConnectOptions::from_str(&as_mysql).map(drop)
        }
        _ => {
            return Err(Rejected::setting(
                "database_url",
                "expected a sqlite://, postgres:// or mysql:// URL",
            ));
        }
    };
    parsed.map_err(|error| Rejected::setting("database_url", error))
}

impl LogSettings {
    /// Reads and checks `log` and `log_format`.
    pub fn parse(settings: &Settings) -> Result<Self, Rejected> {
        let mut problems = Problems(Vec::new());
        let directives = settings.get("log").unwrap_or(DEFAULT_LOG);
        let filter = problems.take(EnvFilter::try_new(directives).map_err(|error| {
            Rejected::setting("log", format!("invalid log filter {directives:?}: {error}"))
        }));
        let format = match settings.get("log_format").unwrap_or("text") {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            other => {
                problems.0.push(format!(
                    "PORTCULLIS_LOG_FORMAT: expected \"text\" or \"json\", not {other:?}"
                ));
                None
            }
        };
        match (filter, format) {
            (Some(filter), Some(format)) => Ok(Self {
                filter,
                directives: directives.to_owned(),
                format,
            }),
            _ => Err(Rejected { lines: problems.0 }),
        }
    }
}

/// Makes sure `jwt_secret` is set: when the settings lack it, the secret kept in
/// `<data_dir>/jwt_secret` is used, generated there first if need be (64 random bytes,
/// base64url, readable by the owner only). Either way a warning says so.
pub fn ensure_jwt_secret(settings: &mut Settings, data_dir: &Path) -> anyhow::Result<()> {
    if settings.get(JWT_SECRET).is_none() {
        let secret = kept_secret(&data_dir.join(JWT_SECRET_FILE))?;
        settings.set(JWT_SECRET, secret);
    }
    Ok(())
}

/// The secret kept in `path`, generated and saved there first if it is missing.
fn kept_secret(path: &Path) -> anyhow::Result<String> {
    match fs::read_to_string(path) {
        Ok(kept) => {
            tracing::warn!(file = %path.display(), "PORTCULLIS_JWT_SECRET is not set: using the secret kept in the data folder");
            Ok(kept.trim().to_owned())
        }
        Err(error) if error.kind() == ErrorKind::NotFound => {
            let generated = generate_secret()?;
            write_private_file(path, &generated).with_context(|| {
                format!("saving the generated JWT secret to {}", path.display())
            })?;
            tracing::warn!(file = %path.display(), "PORTCULLIS_JWT_SECRET is not set: generated a secret and saved it in the data folder");
            Ok(generated)
        }
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

fn generate_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; JWT_SECRET_BYTES];
    OsRng
        .try_fill_bytes(&mut bytes)
        .context("reading the operating system's random generator")?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Creates `path` (which must not exist) readable and writable by the owner only.
pub(crate) fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_known_keys_are_the_keys_the_checks_read() {
        let settings = Settings::default();
        check(&settings).unwrap();
        let read = settings.read.lock().unwrap().clone();
        let known: BTreeSet<String> = known_keys().into_iter().map(str::to_owned).collect();
        assert_eq!(read, known);
    }

    #[test]
    fn a_typo_names_the_closest_setting() {
        assert_eq!(closest_key("max_sesions"), Some("max_sessions"));
        assert_eq!(closest_key("lisen"), Some("listen"));
        assert_eq!(closest_key("something_else_entirely"), None);
    }

    #[test]
    fn lines_and_columns_count_from_one() {
        assert_eq!(line_and_column("a = 1\nbé = 2", 0), (1, 1));
        assert_eq!(line_and_column("a = 1\nbé = 2", 11), (2, 5));
    }

    #[test]
    fn the_metrics_token_matches_only_itself_and_never_shows() {
        let token = MetricsToken::parse("s3cret-metrics").unwrap();
        assert!(token.matches(b"s3cret-metrics"));
        assert!(!token.matches(b"s3cret-metric"));
        assert!(!token.matches(b""));
        assert!(!format!("{token:?}").contains("s3cret"));
    }

    #[test]
    fn a_metrics_token_must_be_visible_ascii() {
        for bad in ["", "has space", "tab\there", "é"] {
            let rejected = MetricsToken::parse(bad).unwrap_err();
            assert!(rejected.lines[0].starts_with("PORTCULLIS_METRICS_TOKEN: "));
            assert!(bad.is_empty() || !rejected.lines[0].contains(bad));
        }
        assert!(MetricsToken::parse(&"x".repeat(1025)).is_err());
    }
}
