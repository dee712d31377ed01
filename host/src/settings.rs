//! Settings: every `PORTCULLIS_*` environment variable, and the keys of the TOML file
//! given with `--config` (the variable's name without the prefix, lower-case; strings,
//! integers or booleans). The environment wins over the file.
//!
//! The host reads the few settings it owns ([`HostSettings`]) and hands all of them to
//! the component through `wasi:config/store`; the component checks its own.
//! A bad setting is a [`Rejected`] error: one line per setting, naming it.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{ErrorKind, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

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
const METRICS_TOKEN: &str = "metrics_token";
const MAX_METRICS_TOKEN_BYTES: usize = 1024;

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

/// Every setting by key (the lower-case name without the prefix).
#[derive(Debug, Default)]
pub struct Settings(HashMap<String, String>);

/// Settings given directly (keys lower-case, without the prefix), as benchmarks and
/// embedding tests do.
impl From<HashMap<String, String>> for Settings {
    fn from(map: HashMap<String, String>) -> Self {
        Self(map)
    }
}

impl Settings {
    /// Reads the settings file (if any), then the environment over it.
    pub fn load(config_file: Option<&Path>) -> Result<Self, Rejected> {
        let mut settings = match config_file {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        settings.0.extend(from_environment()?);
        Ok(settings)
    }

    fn from_file(path: &Path) -> Result<Self, Rejected> {
        let reject = |problem: String| Rejected {
            lines: vec![format!("--config {}: {problem}", path.display())],
        };
        let text = fs::read_to_string(path).map_err(|error| reject(error.to_string()))?;
        let table: toml::Table =
            toml::from_str(&text).map_err(|error| reject(error.message().to_owned()))?;
        table
            .into_iter()
            .map(|(key, value)| {
                let key = key.to_lowercase();
                match setting_text(value) {
                    Some(text) => Ok((key, text)),
                    None => Err(reject(format!(
                        "{key}: expected a string, an integer or a boolean"
                    ))),
                }
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// The value of a setting, if it is set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Sets a setting (the generated JWT secret, the address actually bound).
    pub fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }

    /// All settings, for `wasi:config/store`.
    pub fn into_map(self) -> HashMap<String, String> {
        self.0
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

fn from_environment() -> Result<HashMap<String, String>, Rejected> {
    std::env::vars_os()
        .filter_map(|(name, value)| {
            let name = name.to_str()?;
            let key = name.strip_prefix(PREFIX)?.to_lowercase();
            Some(match value.into_string() {
                Ok(value) => Ok((key, value)),
                Err(_) => Err(Rejected::setting(&key, "not valid UTF-8")),
            })
        })
        .collect()
}

/// The settings the host itself uses.
pub struct HostSettings {
    /// The address to serve on (port 0: any free port).
    pub listen: SocketAddr,
    /// The database and its pool.
    pub database: DatabaseSettings,
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
}

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
    /// Reads and checks the host's settings.
    pub fn parse(settings: &Settings) -> Result<Self, Rejected> {
        let data_dir = PathBuf::from(settings.get("data_dir").unwrap_or(DEFAULT_DATA_DIR));
        Ok(Self {
            listen: settings.parse_or("listen", default_listen(), "socket address")?,
            database: DatabaseSettings::parse(settings, &data_dir)?,
            cache_dir: settings
                .get("cache_dir")
                .map_or_else(|| data_dir.join("cache"), PathBuf::from),
            data_dir,
            metrics_token: settings
                .get(METRICS_TOKEN)
                .map(MetricsToken::parse)
                .transpose()?,
            https_public_url: settings
                .get("public_url")
                .is_some_and(|url| url.starts_with("https://")),
        })
    }
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
        check_database_url(&url)?;
        let max_connections =
            settings.parse_or("db_max_connections", DEFAULT_MAX_CONNECTIONS, "number")?;
        if !(1..=MAX_CONNECTIONS_LIMIT).contains(&max_connections) {
            return Err(Rejected::setting(
                "db_max_connections",
                format!("must be between 1 and {MAX_CONNECTIONS_LIMIT}"),
            ));
        }
        Ok(Self {
            url,
            max_connections,
        })
    }
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
        let directives = settings.get("log").unwrap_or(DEFAULT_LOG);
        let filter = EnvFilter::try_new(directives).map_err(|error| {
            Rejected::setting("log", format!("invalid log filter {directives:?}: {error}"))
        })?;
        let format = match settings.get("log_format").unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(Rejected::setting(
                    "log_format",
                    format!("expected \"text\" or \"json\", not {other:?}"),
                ));
            }
        };
        Ok(Self { filter, format })
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
