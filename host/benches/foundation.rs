//! The foundation benchmark (BENCHMARKS.md): Argon2id natively and inside the component,
//! component instantiation, and `GET /api/v1/auth/verify` requests per second over HTTP
//! against the real binary.
//!
//! Run: `cargo bench -p portcullis --bench foundation` (release build; takes ~1 minute).
//! Knobs: `BENCH_HTTP_SECONDS` (default 10), `BENCH_HTTP_CONNECTIONS` (default 8).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portcullis::db::Database;
use portcullis::engine;
use portcullis::instances::Instances;
use portcullis::settings::{self, HostSettings, Settings};
use portcullis::state::SharedImports;
use wasmtime::component::Val;

const HASHES: u32 = 20;
const INSTANTIATIONS: u32 = 2_000;
const PASSWORD: &str = "Tr1cky!Horse#42";

fn main() -> anyhow::Result<()> {
    let workdir = tempfile::tempdir()?;
    println!(
        "# Portcullis foundation benchmark ({} cores)",
        available_cores()
    );
    native_argon2();
    tokio::runtime::Runtime::new()?.block_on(in_component(workdir.path()))?;
    http_verify(workdir.path())?;
    Ok(())
}

fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn report(what: &str, value: f64, unit: &str) {
    println!("{what:<62} {value:>10.3} {unit}");
}

/// Argon2id (m = 19456 KiB, t = 2, p = 1) with the component's own code, compiled natively.
fn native_argon2() {
    let salt = [7u8; 16];
    let started = Instant::now();
    for _ in 0..HASHES {
        std::hint::black_box(portcullis_component::password::hash(PASSWORD, &salt).ok());
    }
    report(
        "argon2id hash, native (ms per hash)",
        started.elapsed().as_secs_f64() * 1000.0 / f64::from(HASHES),
        "ms",
    );
}

/// The host's own machinery on a fresh SQLite database: instantiation, and a login of an
/// unknown account through the typed API (one Argon2id verify of the dummy hash, one
/// SELECT, one audit INSERT).
async fn in_component(dir: &std::path::Path) -> anyhow::Result<()> {
    let instances = host_instances(dir).await?;
    let started = Instant::now();
    for _ in 0..INSTANTIATIONS {
        let mut store = instances.new_store();
        let instance = instances
            .proxy_pre()
            .instance_pre()
            .instantiate_async(&mut store)
            .await?;
        std::hint::black_box(instance);
    }
    report(
        "component instantiation, pooling allocator (µs per instance)",
        started.elapsed().as_secs_f64() * 1e6 / f64::from(INSTANTIATIONS),
        "µs",
    );

    let started = Instant::now();
    for _ in 0..HASHES {
        login_unknown_account(&instances).await?;
    }
    report(
        "login of an unknown account in the component (ms per call)",
        started.elapsed().as_secs_f64() * 1000.0 / f64::from(HASHES),
        "ms",
    );
    Ok(())
}

async fn host_instances(dir: &std::path::Path) -> anyhow::Result<Instances> {
    let mut settings = Settings::from(
        [
            ("data_dir", dir.display().to_string()),
            (
                "database_url",
                format!("sqlite://{}/bench.db", dir.display()),
            ),
            (
                "jwt_secret",
                "bench-secret-bench-secret-bench-secret!!".into(),
            ),
            // Every call must pay for a hash: no throttle turning them into 429s.
            ("login_throttle", "0".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect::<std::collections::HashMap<_, _>>(),
    );
    let host = HostSettings::parse(&settings)?;
    settings::ensure_jwt_secret(&mut settings, &host.data_dir)?;
    let database = Database::connect(&host.database).await?;
    database.migrate().await?;
    let engine = engine::new_engine()?;
    engine::start_epoch_ticker(&engine)?;
    let component = engine::load_component(&engine, portcullis::COMPONENT_WASM, &host.cache_dir)?;
    let imports = SharedImports::new(database, settings.into_map());
    Ok(Instances::new(&engine, &component, imports)?)
}

async fn login_unknown_account(instances: &Instances) -> anyhow::Result<()> {
    let mut store = instances.new_store();
    let instance = instances
        .proxy_pre()
        .instance_pre()
        .instantiate_async(&mut store)
        .await?;
    let api = instance
        .get_export_index(&mut store, None, "portcullis:auth/api@0.1.0")
        .ok_or_else(|| anyhow::anyhow!("no api export"))?;
    let login = instance
        .get_export_index(&mut store, Some(&api), "login")
        .and_then(|index| instance.get_func(&mut store, index))
        .ok_or_else(|| anyhow::anyhow!("no login export"))?;
    let client = Val::Record(vec![
        ("device-info".into(), Val::Option(None)),
        ("ip-address".into(), Val::Option(None)),
    ]);
    let mut results = [Val::Bool(false)];
    login
        .call_async(
            &mut store,
            &[
                Val::String("nobody".into()),
                Val::String(PASSWORD.into()),
                client,
            ],
            &mut results,
        )
        .await?;
    match &results[0] {
        Val::Result(Err(Some(error))) if matches!(error.as_ref(), Val::Variant(case, _) if case == "invalid-credentials") => {
            Ok(())
        }
        other => Err(anyhow::anyhow!(
            "expected invalid-credentials, got {other:?}"
        )),
    }
}

/// Starts the real binary, registers one user and hammers `GET /api/v1/auth/verify` with
/// keep-alive connections for a fixed time.
fn http_verify(dir: &std::path::Path) -> anyhow::Result<()> {
    let seconds: u64 = env_or("BENCH_HTTP_SECONDS", 10);
    let connections: u64 = env_or("BENCH_HTTP_CONNECTIONS", 8);
    let (mut child, address) = start_server(dir)?;
    let token = register(&address)?;
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (address, token) = (address.clone(), token.clone());
            let (done, count, failures) = (done.clone(), count.clone(), failures.clone());
            std::thread::spawn(move || hammer(&address, &token, &done, &count, &failures))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    done.store(true, Ordering::SeqCst);
    for worker in workers {
        let _ = worker.join();
    }
    let _ = child.kill();
    let _ = child.wait();
    let total = count.load(Ordering::SeqCst);
    report(
        &format!("GET /api/v1/auth/verify over HTTP, {connections} connections (req/s)"),
        total as f64 / seconds as f64,
        "req/s",
    );
    println!(
        "  ({total} answers in {seconds} s, {} failures)",
        failures.load(Ordering::SeqCst)
    );
    Ok(())
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn start_server(dir: &std::path::Path) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("serve")
        .env("PORTCULLIS_LISTEN", "127.0.0.1:0")
        .env("PORTCULLIS_DATA_DIR", dir)
        .env(
            "PORTCULLIS_DATABASE_URL",
            format!("sqlite://{}/http.db", dir.display()),
        )
        .env("PORTCULLIS_RATE_LIMIT", "off")
        .env("PORTCULLIS_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
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
    Err(anyhow::anyhow!("the server exited before listening"))
}

fn register(address: &str) -> anyhow::Result<String> {
    let body: serde_json::Value = reqwest::blocking::Client::new()
        .post(format!("{address}/api/v1/auth/register"))
        .json(&serde_json::json!({
            "username": "bench_user", "email": "bench@example.com", "password": PASSWORD
        }))
        .send()?
        .error_for_status()?
        .json()?;
    body["access_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no access token in {body}"))
}

fn hammer(address: &str, token: &str, done: &AtomicBool, count: &AtomicU64, failures: &AtomicU64) {
    let Ok(client) = reqwest::blocking::Client::builder().build() else {
        return;
    };
    let url = format!("{address}/api/v1/auth/verify");
    while !done.load(Ordering::Relaxed) {
        match client.get(&url).bearer_auth(token).send() {
            Ok(response) if response.status().is_success() => {
                count.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
