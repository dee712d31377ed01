//! What the benchmarks share (`foundation` and `soak`): starting the real binary, the
//! HTTP client they talk to it with, the registration body, and small helpers for
//! knobs, run prefixes and percentiles.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The password of the accounts the benchmarks register.
pub const PASSWORD: &str = "Tr1cky!Horse#42";

/// The HTTP client of every benchmark (keep-alive, blocking).
pub type Client = reqwest::blocking::Client;

/// Starts `portcullis serve` (the release binary) on a free port of 127.0.0.1 with its
/// data folder in `dir`, on `database_url`, the rate limit off, no session limit and
/// warnings only in the log, then `settings` (which win over those); its standard error
/// goes to `stderr`. Returns the child and its `http://ADDR` once it listens.
pub fn start_server(
    dir: &std::path::Path,
    database_url: &str,
    settings: &[(&str, &str)],
    stderr: Stdio,
) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("serve")
        .env("PORTCULLIS_LISTEN", "127.0.0.1:0")
        .env("PORTCULLIS_DATA_DIR", dir)
        .env("PORTCULLIS_DATABASE_URL", database_url)
        .env("PORTCULLIS_RATE_LIMIT", "off")
        .env("PORTCULLIS_MAX_SESSIONS", "0")
        .env("PORTCULLIS_LOG", "warn")
        .envs(settings.iter().copied())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    for line in BufReader::new(stdout).lines() {
        if let Some(address) = line?.strip_prefix("listening on ") {
            return Ok((child, address.trim().to_string()));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(anyhow::anyhow!("the server exited before listening"))
}

/// The body of `POST /api/v1/auth/register` for `name` (its address `name@example.com`)
/// with [`PASSWORD`].
pub fn registration(name: &str) -> serde_json::Value {
    serde_json::json!({"username": name, "email": format!("{name}@example.com"), "password": PASSWORD})
}

/// The number in the environment variable `name`, else `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A prefix no earlier run used, so runs on one database never collide.
pub fn unique_run() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("b{}", nanos % 1_000_000_000_000)
}

/// The value at `fraction` (0 to 1) of `sorted`, NaN when it is empty.
pub fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}
