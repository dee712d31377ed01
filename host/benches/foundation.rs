//! The foundation benchmark (BENCHMARKS.md): Argon2id natively (one hash, and one
//! thread per core) and inside the component (with the host's native kernel and with the
//! wasm kernel of the portable component), component instantiation, start-up time with an
//! empty and a warm compile cache (to listening and to the first 200), register / login /
//! verify / refresh requests per second over HTTP against the real binary, logins under
//! bursts of 8, 64 and 200 clients (rate, share of the bound, p50/p99, peak RSS), the time
//! `password/forgot` takes for registered and unknown addresses, on SQLite and on the
//! databases named by `BENCH_POSTGRES_URL` and `BENCH_MYSQL_URL`, and the cost of the
//! sandbox per endpoint: `GET /users/me` and `/auth/verify` under wrk, refresh, login and
//! register, against the same logic without wasm (`foundation/native_baseline.rs`).
//!
//! Run: `cargo bench -p portcullis --bench foundation` (release build; about a minute
//! per database). Knobs: `BENCH_HTTP_SECONDS` (default 10), `BENCH_HTTP_CONNECTIONS`
//! (default 8), `BENCH_WRK_CONNECTIONS` (default 32).
//!
//! With `BENCH_RETENTION_SOAK=1` it runs the retention soak instead ([`retention_soak`]).

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portcullis::db::Database;
use portcullis::engine;
use portcullis::instances::Instances;
use portcullis::settings::{self, HostSettings, Settings};
use portcullis::state::SharedImports;
use wasmtime::component::Val;

mod common;
#[path = "foundation/native_baseline.rs"]
mod native_baseline;

use common::{Client, PASSWORD, env_or, percentile, registration, unique_run};

const HASHES: u32 = 20;
const INSTANTIATIONS: u32 = 2_000;

fn main() -> anyhow::Result<()> {
    let workdir = tempfile::tempdir()?;
    if std::env::var_os("BENCH_RETENTION_SOAK").is_some() {
        return retention_soak(workdir.path());
    }
    println!(
        "# Portcullis foundation benchmark ({} cores)",
        available_cores()
    );
    let native_hash_ms = native_argon2();
    tokio::runtime::Runtime::new()?.block_on(in_component(workdir.path()))?;
    cold_start(workdir.path())?;
    http_rates(workdir.path(), native_hash_ms)?;
    sandbox_cost(workdir.path())?;
    Ok(())
}

fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn report(what: &str, value: f64, unit: &str) {
    println!("{what:<62} {value:>10.3} {unit}");
}

/// Argon2id with the component's parameters (`password::CURRENT`: m = 19456 KiB, t = 2,
/// p = 1) by the kernel the native host supplies to the component (`hasher/`: `argon2`
/// 0.6, AVX2 when the CPU has it), called directly. Returns the milliseconds per hash.
fn native_argon2() -> f64 {
    let current = portcullis_component::password::CURRENT;
    let params = portcullis_hasher::Argon2Params {
        variant: portcullis_hasher::Variant::Argon2id,
        version: current.version,
        memory_kib: current.memory_kib,
        iterations: current.iterations,
        parallelism: current.parallelism,
        output_len: current.output_len,
    };
    let salt = [7u8; 16];
    let started = Instant::now();
    for _ in 0..HASHES {
        std::hint::black_box(portcullis_hasher::argon2(PASSWORD.as_bytes(), &salt, &params).ok());
    }
    let per_hash = started.elapsed().as_secs_f64() * 1000.0 / f64::from(HASHES);
    report("argon2id hash, native (ms per hash)", per_hash, "ms");
    // The same with one thread per core hashing at once: what the cores really give
    // (they share memory bandwidth and caches), beside the bound above.
    let cores = available_cores();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..cores {
            scope.spawn(|| {
                for _ in 0..HASHES {
                    std::hint::black_box(
                        portcullis_hasher::argon2(PASSWORD.as_bytes(), &salt, &params).ok(),
                    );
                }
            });
        }
    });
    let parallel_rate = (cores as f64) * f64::from(HASHES) / started.elapsed().as_secs_f64();
    report(
        "argon2id hashes, native, one thread per core (hashes/s)",
        parallel_rate,
        "/s",
    );
    per_hash
}

/// The host's own machinery on a fresh SQLite database: instantiation, and a login of an
/// unknown account through the typed API (one Argon2id verify of the dummy hash, one
/// SELECT, one audit INSERT).
async fn in_component(dir: &std::path::Path) -> anyhow::Result<()> {
    let instances = host_instances(dir, portcullis::COMPONENT_WASM, "bench.db").await?;
    let started = Instant::now();
    for _ in 0..INSTANTIATIONS {
        std::hint::black_box(instantiate(&instances).await?);
    }
    report(
        "component instantiation, pooling allocator (µs per instance)",
        started.elapsed().as_secs_f64() * 1e6 / f64::from(INSTANTIATIONS),
        "µs",
    );

    report(
        "login of an unknown account, Argon2 native (ms per call)",
        login_unknown_ms(&instances).await?,
        "ms",
    );
    // The same login with the kernel inside wasm: the portable component (Spin and
    // embedders run this kernel), built by `cargo run --release -p portcullis-spin-compose`.
    let portable = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/component/portcullis-portable.wasm");
    // The host's pooling allocator admits one linear memory per component; the
    // portable component has two (the kernel's and the rules'), so it gets the
    // on-demand allocator here.
    match std::fs::read(&portable) {
        Ok(bytes) => {
            let instances =
                host_instances_with(dir, &bytes, "portable.db", on_demand_engine()?).await?;
            report(
                "login of an unknown account, Argon2 in wasm (ms per call)",
                login_unknown_ms(&instances).await?,
                "ms",
            );
        }
        Err(_) => println!("  (Argon2 in wasm skipped: build {})", portable.display()),
    }
    Ok(())
}

/// Milliseconds per login of an unknown account through the typed API.
async fn login_unknown_ms(instances: &Instances) -> anyhow::Result<f64> {
    let started = Instant::now();
    for _ in 0..HASHES {
        login_unknown_account(instances).await?;
    }
    Ok(started.elapsed().as_secs_f64() * 1000.0 / f64::from(HASHES))
}

/// The host's engine without the pooling allocator (the same compiler settings).
fn on_demand_engine() -> anyhow::Result<wasmtime::Engine> {
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    Ok(wasmtime::Engine::new(&config)?)
}

/// Instances of `component` (the embedded one or another build) on a fresh SQLite file,
/// with the host's engine.
async fn host_instances(
    dir: &std::path::Path,
    component: &[u8],
    database_file: &str,
) -> anyhow::Result<Instances> {
    host_instances_with(dir, component, database_file, engine::new_engine()?).await
}

/// [`host_instances`] with another engine.
async fn host_instances_with(
    dir: &std::path::Path,
    component: &[u8],
    database_file: &str,
    engine: wasmtime::Engine,
) -> anyhow::Result<Instances> {
    // Every call must pay for a hash: no throttle turning them into 429s.
    let mut settings = Settings::from(in_process_settings(
        dir,
        database_file,
        &[("login_throttle", "0")],
    ));
    let host = HostSettings::parse(&settings)?;
    settings::ensure_jwt_secret(&mut settings, &host.data_dir)?;
    let database = Database::connect(&host.database).await?;
    database.migrate().await?;
    engine::start_epoch_ticker(&engine)?;
    let component = engine::load_component(&engine, component, &host.cache_dir)?;
    let imports = SharedImports::new(database, settings.into_map());
    Ok(Instances::new(&engine, &component, imports)?)
}

/// A fresh store and instance, as the host makes per request.
async fn instantiate(
    instances: &Instances,
) -> anyhow::Result<(
    wasmtime::Store<portcullis::state::InstanceState>,
    wasmtime::component::Instance,
)> {
    let mut store = instances.new_store();
    let instance = instances
        .proxy_pre()
        .instance_pre()
        .instantiate_async(&mut store)
        .await?;
    Ok((store, instance))
}

async fn login_unknown_account(instances: &Instances) -> anyhow::Result<()> {
    let (mut store, instance) = instantiate(instances).await?;
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

/// For SQLite and each database named by `BENCH_POSTGRES_URL` / `BENCH_MYSQL_URL`:
/// register, login and verify requests per second over HTTP against the real binary.
fn http_rates(dir: &std::path::Path, native_hash_ms: f64) -> anyhow::Result<()> {
    let seconds = env_or("BENCH_HTTP_SECONDS", 10);
    let connections = env_or("BENCH_HTTP_CONNECTIONS", 8);
    let mut databases = vec![("SQLite", format!("sqlite://{}/http.db", dir.display()))];
    for (label, variable) in [
        ("PostgreSQL", "BENCH_POSTGRES_URL"),
        ("MariaDB", "BENCH_MYSQL_URL"),
    ] {
        match std::env::var(variable) {
            Ok(url) if !url.is_empty() => databases.push((label, url)),
            _ => println!("  ({label} skipped: set {variable})"),
        }
    }
    for (label, url) in databases {
        let (mut child, address) = start_server(dir, &url)?;
        let run = unique_run();
        let token = register(&address, &format!("{run}_0"))?;
        let result = (|| -> anyhow::Result<()> {
            let register_rate = load(seconds / 2, connections, |client, worker, n| {
                client
                    .post(format!("{address}/api/v1/auth/register"))
                    .json(&registration(&format!("{run}_{worker}_{n}")))
            })?;
            report(
                &format!("POST /api/v1/auth/register, {label} (req/s)"),
                register_rate,
                "req/s",
            );
            let login_rate = load(seconds / 2, connections, |client, _, _| {
                client
                    .post(format!("{address}/api/v1/auth/login"))
                    .json(&serde_json::json!({"login": format!("{run}_0"), "password": PASSWORD}))
            })?;
            report(
                &format!("POST /api/v1/auth/login, {label} (req/s)"),
                login_rate,
                "req/s",
            );
            let verify_rate = load(seconds, connections, |client, _, _| {
                client
                    .get(format!("{address}/api/v1/auth/verify"))
                    .bearer_auth(&token)
            })?;
            report(
                &format!("GET /api/v1/auth/verify, {label}, {connections} connections (req/s)"),
                verify_rate,
                "req/s",
            );
            let refresh_rate = refresh_chains(&address, &format!("{run}_0"), seconds, connections)?;
            report(
                &format!("POST /api/v1/auth/refresh, {label}, {connections} chains (req/s)"),
                refresh_rate,
                "req/s",
            );
            report(
                &format!("POST /api/v1/auth/refresh, {label}, per core (req/s)"),
                refresh_rate / available_cores() as f64,
                "req/s",
            );
            forgot_timing(&address, &run, label)?;
            if label == "SQLite" {
                login_bursts(
                    &child,
                    &address,
                    &format!("{run}_0"),
                    seconds,
                    native_hash_ms,
                )?;
            }
            Ok(())
        })();
        let _ = child.kill();
        let _ = child.wait();
        result?;
    }
    Ok(())
}

/// Refreshes per second: `chains` clients each log in once, then refresh over and over
/// with the refresh token the previous answer gave (as a real client must), for
/// `seconds`. Fails on any answer that is not a success.
fn refresh_chains(address: &str, login: &str, seconds: u64, chains: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds.max(1));
    let refreshes = AtomicU64::new(0);
    let outcomes: Vec<anyhow::Result<()>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..chains)
            .map(|_| {
                let refreshes = &refreshes;
                scope.spawn(move || -> anyhow::Result<()> {
                    let client = Client::new();
                    let login = serde_json::json!({"login": login, "password": PASSWORD});
                    let mut grant: serde_json::Value = client
                        .post(format!("{address}/api/v1/auth/login"))
                        .json(&login)
                        .send()?
                        .error_for_status()?
                        .json()?;
                    while Instant::now() < deadline {
                        let body = serde_json::json!({"refresh_token": grant["refresh_token"]});
                        grant = client
                            .post(format!("{address}/api/v1/auth/refresh"))
                            .json(&body)
                            .send()?
                            .error_for_status()?
                            .json()?;
                        refreshes.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a refresh chain panicked")))
            })
            .collect()
    });
    outcomes.into_iter().collect::<anyhow::Result<()>>()?;
    Ok(refreshes.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// Client counts of the login bursts.
const BURSTS: [u64; 3] = [8, 64, 200];

/// One account logging in from 8, 64 and 200 clients at once, each for `seconds`:
/// logins per second against the bound the native hash sets (cores / hash time),
/// latency percentiles, answers that were not a success, and the server's peak
/// resident memory so far (VmHWM).
fn login_bursts(
    server: &Child,
    address: &str,
    login: &str,
    seconds: u64,
    native_hash_ms: f64,
) -> anyhow::Result<()> {
    let bound = available_cores() as f64 * 1000.0 / native_hash_ms;
    report(
        "login bound: cores / native hash time (logins/s)",
        bound,
        "/s",
    );
    for clients in BURSTS {
        let run = timed_load(seconds, clients, |client, _, _| {
            client
                .post(format!("{address}/api/v1/auth/login"))
                .json(&serde_json::json!({"login": login, "password": PASSWORD}))
        });
        let label = format!("login, {clients} clients");
        report(&format!("{label}: logins/s"), run.rate, "/s");
        report(
            &format!("{label}: share of the bound"),
            run.rate / bound,
            "",
        );
        report(&format!("{label}: p50 (ms)"), run.percentile(0.50), "ms");
        report(&format!("{label}: p99 (ms)"), run.percentile(0.99), "ms");
        report(
            &format!("{label}: answers not 2xx"),
            run.failures as f64,
            "",
        );
        report(
            &format!("{label}: server peak RSS so far (MiB)"),
            peak_rss_kib(server.id())? / 1024.0,
            "MiB",
        );
    }
    Ok(())
}

/// The peak resident set of process `pid` (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/{pid}/status"))?;
    line.split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("bad VmHWM line {line:?}"))?
        .parse::<f64>()
        .map_err(Into::into)
}

/// What [`timed_load`] saw.
struct LoadRun {
    rate: f64,
    latencies_ms: Vec<f64>,
    failures: u64,
}

impl LoadRun {
    fn percentile(&self, fraction: f64) -> f64 {
        percentile(&self.latencies_ms, fraction)
    }
}

/// Runs `connections` keep-alive clients for `seconds` (as [`load`] does), keeping every
/// answer's latency (successes and failures alike) and counting failures. A request that
/// is still running when the time is up finishes and counts.
fn timed_load(
    seconds: u64,
    connections: u64,
    make: impl Fn(&Client, u64, u64) -> RequestBuilder + Sync,
) -> LoadRun {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds.max(1));
    let latencies = std::sync::Mutex::new(Vec::new());
    let failures = AtomicU64::new(0);
    let successes = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for worker in 0..connections {
            let (make, latencies, failures, successes) = (&make, &latencies, &failures, &successes);
            scope.spawn(move || {
                let Ok(client) = Client::builder().timeout(Duration::from_secs(60)).build() else {
                    return;
                };
                let mut mine = Vec::new();
                let mut n = 0;
                while Instant::now() < deadline {
                    n += 1;
                    let sent = Instant::now();
                    let ok = matches!(make(&client, worker, n).send(), Ok(answer) if answer.status().is_success());
                    mine.push(sent.elapsed().as_secs_f64() * 1000.0);
                    let counter = if ok { successes } else { failures };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                if let Ok(mut all) = latencies.lock() {
                    all.extend(mine);
                }
            });
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut latencies_ms = latencies.into_inner().unwrap_or_default();
    latencies_ms.sort_by(f64::total_cmp);
    LoadRun {
        rate: successes.load(Ordering::Relaxed) as f64 / elapsed,
        latencies_ms,
        failures: failures.load(Ordering::Relaxed),
    }
}

/// Requests per kind in the forgot-password timing.
const FORGOT_SAMPLES: usize = 100;

/// `POST /api/v1/auth/password/forgot` for registered and for unknown addresses
/// (API.md §11: the same time either way): [`FORGOT_SAMPLES`] of each, alternating, one
/// connection, each address asked once; prints the median and p90 of both kinds.
fn forgot_timing(address: &str, run: &str, label: &str) -> anyhow::Result<()> {
    let known: Vec<String> = (0..FORGOT_SAMPLES)
        .map(|n| {
            let name = format!("{run}_f{n}");
            register(address, &name).map(|_| format!("{name}@example.com"))
        })
        .collect::<anyhow::Result<_>>()?;
    let client = Client::new();
    let mut times = [Vec::new(), Vec::new()];
    for (n, known_address) in known.iter().enumerate() {
        let unknown_address = format!("{run}_nobody{n}@example.com");
        for (kind, email) in [(0, known_address), (1, &unknown_address)] {
            let started = Instant::now();
            let answer = client
                .post(format!("{address}/api/v1/auth/password/forgot"))
                .json(&serde_json::json!({ "email": email }))
                .send()?;
            let elapsed = started.elapsed().as_secs_f64() * 1000.0;
            anyhow::ensure!(
                answer.status().as_u16() == 202,
                "forgot: {}",
                answer.status()
            );
            times[kind].push(elapsed);
        }
    }
    for (kind, mut samples) in ["registered", "unknown"].into_iter().zip(times) {
        samples.sort_by(f64::total_cmp);
        let at = |fraction: f64| percentile(&samples, fraction);
        report(
            &format!("POST /auth/password/forgot, {kind} address, {label}, median (ms)"),
            at(0.5),
            "ms",
        );
        report(
            &format!("POST /auth/password/forgot, {kind} address, {label}, p90 (ms)"),
            at(0.9),
            "ms",
        );
    }
    Ok(())
}

type RequestBuilder = reqwest::blocking::RequestBuilder;

/// Runs `connections` keep-alive clients for `seconds`; each sends the request `make`
/// builds (given its worker number and request count) again and again. Returns the
/// successful answers per second; fails if any answer was not a success.
fn load(
    seconds: u64,
    connections: u64,
    make: impl Fn(&Client, u64, u64) -> RequestBuilder + Sync,
) -> anyhow::Result<f64> {
    let run = timed_load(seconds, connections, make);
    anyhow::ensure!(run.failures == 0, "{} requests failed", run.failures);
    Ok(run.rate)
}

/// Seconds from starting `portcullis serve` on a fresh SQLite file to its first 200
/// (`GET /health`, asked over and over from the moment it listens): first with an empty
/// compile cache (the component compiled), then again with the cache that start filled
/// (the compiled component loaded).
fn cold_start(dir: &std::path::Path) -> anyhow::Result<()> {
    let cache = dir.join("cold-start-cache");
    let cache_dir = cache.display().to_string();
    let client = Client::new();
    for (label, database) in [("empty cache", "cold-1.db"), ("warm cache", "cold-2.db")] {
        let started = Instant::now();
        let url = format!("sqlite://{}/{database}", dir.display());
        let (mut child, address) =
            start_server_with(dir, &url, &[("PORTCULLIS_CACHE_DIR", cache_dir.as_str())])?;
        let listening = started.elapsed().as_secs_f64();
        let first_ok = loop {
            let answer = client.get(format!("{address}/health")).send();
            if matches!(answer, Ok(ref answer) if answer.status().is_success()) {
                break started.elapsed().as_secs_f64();
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "no 200 from /health within a minute"
            );
            std::thread::sleep(Duration::from_millis(1));
        };
        child.kill()?;
        child.wait()?;
        report(
            &format!("start-up to listening, fresh SQLite, {label} (ms)"),
            listening * 1000.0,
            "ms",
        );
        report(
            &format!("start-up to the first 200, fresh SQLite, {label} (ms)"),
            first_ok * 1000.0,
            "ms",
        );
    }
    Ok(())
}

/// The cost of the sandbox per endpoint, on SQLite: the real binary against the same
/// logic without wasm ([`native_baseline`]), in the same run, each with the same load:
/// `GET /users/me` and `GET /auth/verify` under wrk (`BENCH_WRK_CONNECTIONS`, default
/// 32; two threads; skipped without `wrk` on the PATH), refresh chains, logins and
/// registrations from `BENCH_HTTP_CONNECTIONS` clients (default 8). Prints each rate and
/// the ratio component ÷ no wasm.
fn sandbox_cost(dir: &std::path::Path) -> anyhow::Result<()> {
    let (mut child, address) = start_server(dir, &format!("sqlite://{}/me.db", dir.display()))?;
    let component = endpoint_rates(&address, "component");
    child.kill()?;
    child.wait()?;
    let component = component?;

    let runtime = tokio::runtime::Runtime::new()?;
    let baseline_address = runtime.block_on(start_native_baseline(dir))?;
    let native = endpoint_rates(&baseline_address, "no wasm");
    // The load's last requests end a moment after it does; the runtime stops after them.
    std::thread::sleep(Duration::from_secs(1));
    runtime.shutdown_timeout(Duration::from_secs(5));
    let native = native?;
    for ((endpoint, component), (_, native)) in component.iter().zip(&native) {
        report(
            &format!(
                "{endpoint}, SQLite: component / no wasm ({component:.0} / {native:.0} req/s)"
            ),
            component / native,
            "",
        );
    }
    Ok(())
}

/// Requests per second of each endpoint [`sandbox_cost`] compares, on the server at
/// `address` (rate limit off, no session limit), `label` in the printed lines.
fn endpoint_rates(address: &str, label: &str) -> anyhow::Result<Vec<(&'static str, f64)>> {
    let seconds = env_or("BENCH_HTTP_SECONDS", 10);
    let connections = env_or("BENCH_HTTP_CONNECTIONS", 8);
    let wrk_connections = env_or("BENCH_WRK_CONNECTIONS", 32);
    let run = unique_run();
    let login = format!("{run}_0");
    let token = register(address, &login)?;
    let mut rates = Vec::new();
    if Command::new("wrk").arg("--version").output().is_ok() {
        for (endpoint, path) in [
            ("GET /users/me", "/api/v1/users/me"),
            ("GET /auth/verify", "/api/v1/auth/verify"),
        ] {
            let figures = wrk_get(address, path, &token, seconds, wrk_connections)?;
            let what = format!("{endpoint}, {wrk_connections} conns, {label}");
            report(&format!("{what} (req/s)"), figures.rate, "req/s");
            report("  … p50 (ms)", figures.p50_ms, "ms");
            report("  … p99 (ms)", figures.p99_ms, "ms");
            rates.push((endpoint, figures.rate));
        }
    } else {
        println!("  (GET under wrk skipped: no wrk on the PATH)");
    }
    rates.push((
        "POST /auth/refresh",
        refresh_chains(address, &login, seconds, connections)?,
    ));
    let login_rate = load(seconds / 2, connections, |client, _, _| {
        client
            .post(format!("{address}/api/v1/auth/login"))
            .json(&serde_json::json!({"login": login, "password": PASSWORD}))
    })?;
    rates.push(("POST /auth/login", login_rate));
    let register_rate = load(seconds / 2, connections, |client, worker, n| {
        client
            .post(format!("{address}/api/v1/auth/register"))
            .json(&registration(&format!("{run}_{worker}_{n}")))
    })?;
    rates.push(("POST /auth/register", register_rate));
    Ok(rates)
}

/// The settings of what this benchmark runs in its own process: a SQLite file of `dir`,
/// a fixed JWT secret, and `extra`.
fn in_process_settings(
    dir: &std::path::Path,
    database_file: &str,
    extra: &[(&str, &str)],
) -> std::collections::HashMap<String, String> {
    let base = [
        ("data_dir", dir.display().to_string()),
        (
            "database_url",
            format!("sqlite://{}/{database_file}", dir.display()),
        ),
        (
            "jwt_secret",
            "bench-secret-bench-secret-bench-secret!!".to_owned(),
        ),
    ];
    base.into_iter()
        .chain(extra.iter().map(|(key, value)| (*key, (*value).to_owned())))
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
}

/// The same logic without wasm on a fresh SQLite file, in this process.
async fn start_native_baseline(dir: &std::path::Path) -> anyhow::Result<String> {
    let settings = in_process_settings(
        dir,
        "me-native.db",
        &[("rate_limit", "off"), ("max_sessions", "0")],
    );
    let host = HostSettings::parse(&Settings::from(settings.clone()))?;
    let database = Database::connect(&host.database).await?;
    database.migrate().await?;
    native_baseline::serve(database, &settings).await
}

/// Requests per second and latency percentiles of one wrk run.
struct WrkFigures {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// One wrk run of `GET {address}{path}` with `token` as the bearer.
fn wrk_get(
    address: &str,
    path: &str,
    token: &str,
    seconds: u64,
    connections: u64,
) -> anyhow::Result<WrkFigures> {
    let output = Command::new("wrk")
        .args(["-t2", "--latency"])
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("{address}{path}"))
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    if text.contains("Non-2xx") {
        anyhow::bail!("wrk saw answers other than 200:\n{text}");
    }
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(prefix))
            .map(str::trim)
            .ok_or_else(|| anyhow::anyhow!("no {prefix:?} in wrk's output:\n{text}"))
    };
    Ok(WrkFigures {
        rate: field("Requests/sec:")?.parse()?,
        p50_ms: wrk_millis(field("50%")?)?,
        p99_ms: wrk_millis(field("99%")?)?,
    })
}

/// wrk's `1.23ms` / `456.00us` / `1.20s` in milliseconds.
fn wrk_millis(text: &str) -> anyhow::Result<f64> {
    let (number, factor) = if let Some(number) = text.strip_suffix("us") {
        (number, 0.001)
    } else if let Some(number) = text.strip_suffix("ms") {
        (number, 1.0)
    } else if let Some(number) = text.strip_suffix('s') {
        (number, 1000.0)
    } else {
        anyhow::bail!("unknown wrk duration {text:?}")
    };
    Ok(number.parse::<f64>()? * factor)
}

fn start_server(dir: &std::path::Path, database_url: &str) -> anyhow::Result<(Child, String)> {
    start_server_with(dir, database_url, &[])
}

/// [`start_server`] with more settings.
fn start_server_with(
    dir: &std::path::Path,
    database_url: &str,
    settings: &[(&str, &str)],
) -> anyhow::Result<(Child, String)> {
    common::start_server(dir, database_url, settings, Stdio::null())
}

fn register(address: &str, name: &str) -> anyhow::Result<String> {
    let body: serde_json::Value = Client::new()
        .post(format!("{address}/api/v1/auth/register"))
        .json(&registration(name))
        .send()?
        .error_for_status()?
        .json()?;
    body["access_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no access token in {body}"))
}

/// The metrics token of the soak's server.
const SOAK_METRICS_TOKEN: &str = "soak-metrics-0123456789";
/// The soak's retention: refresh tokens live a minute (the shortest TTL allowed), ended
/// sessions go at the next round.
const SOAK_SETTINGS: [(&str, &str); 3] = [
    ("PORTCULLIS_REFRESH_TTL", "60"),
    ("PORTCULLIS_SESSION_RETENTION", "0"),
    ("PORTCULLIS_METRICS_TOKEN", SOAK_METRICS_TOKEN),
];
/// The tables whose rows the soak prints (from the `portcullis_db_rows` gauges).
const SOAK_TABLES: [&str; 3] = ["sessions", "refresh_tokens", "audit_events"];

/// The retention soak (BENCHMARKS.md "Retention"): the real binary with [`SOAK_SETTINGS`]
/// on SQLite (and on `BENCH_POSTGRES_URL`, which should name an empty database), while
/// `SOAK_CLIENTS` clients (default 4) each log in, refresh `SOAK_REFRESHES` times
/// (default 20) and log out, again and again, for `SOAK_SECONDS` (default 300). Every
/// 30 s it prints the rows per table, as the server's gauges report them, and the sizes
/// on disk of the session tables, of the audit log and of the whole database. Any answer that is not a success fails the soak.
fn retention_soak(dir: &std::path::Path) -> anyhow::Result<()> {
    let seconds = env_or("SOAK_SECONDS", 300);
    let clients = env_or("SOAK_CLIENTS", 4);
    let refreshes = env_or("SOAK_REFRESHES", 20);
    println!(
        "# Retention soak: {clients} clients, login + {refreshes} refreshes + logout, \
         {seconds} s, {} cores",
        available_cores()
    );
    let mut databases = vec![("SQLite", format!("sqlite://{}/soak.db", dir.display()))];
    match std::env::var("BENCH_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => databases.push(("PostgreSQL", url)),
        _ => println!("  (PostgreSQL skipped: set BENCH_POSTGRES_URL)"),
    }
    for (label, url) in databases {
        let (mut child, address) = start_server_with(dir, &url, &SOAK_SETTINGS)?;
        let outcome = soak(dir, &url, &address, label, [seconds, clients, refreshes]);
        let _ = child.kill();
        let _ = child.wait();
        outcome?;
    }
    Ok(())
}

/// One soak against the server at `address` on the database `url`.
fn soak(
    dir: &std::path::Path,
    url: &str,
    address: &str,
    label: &str,
    [seconds, clients, refreshes]: [u64; 3],
) -> anyhow::Result<()> {
    let run = unique_run();
    for client in 0..clients {
        register(address, &format!("{run}_{client}"))?;
    }
    println!("\n{label}\n");
    println!(
        "| t (s) | logins | refreshes | sessions | refresh_tokens | audit_events \
         | sessions + tokens (MiB) | audit (MiB) | database (MiB) |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let counts = [AtomicU64::new(0), AtomicU64::new(0)];
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..clients)
            .map(|client| {
                let (counts, login) = (&counts, format!("{run}_{client}"));
                scope.spawn(move || soak_client(address, &login, refreshes, deadline, counts))
            })
            .collect();
        let mut next_sample = started;
        while Instant::now() < deadline {
            if Instant::now() >= next_sample {
                print_sample(dir, url, address, started, &counts)?;
                next_sample += Duration::from_secs(30);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        for worker in workers {
            worker
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("a soak client panicked")))?;
        }
        // The last round's counts are at most one check (30 s) old.
        std::thread::sleep(Duration::from_secs(31));
        print_sample(dir, url, address, started, &counts)
    })
}

/// Logs in, refreshes `refreshes` times with each new token, logs out; again until
/// `deadline`. `counts` are the logins and refreshes done.
fn soak_client(
    address: &str,
    login: &str,
    refreshes: u64,
    deadline: Instant,
    counts: &[AtomicU64; 2],
) -> anyhow::Result<()> {
    let client = Client::new();
    let credentials = serde_json::json!({"login": login, "password": PASSWORD});
    while Instant::now() < deadline {
        let mut grant: serde_json::Value = client
            .post(format!("{address}/api/v1/auth/login"))
            .json(&credentials)
            .send()?
            .error_for_status()?
            .json()?;
        counts[0].fetch_add(1, Ordering::Relaxed);
        for _ in 0..refreshes {
            let body = serde_json::json!({"refresh_token": grant["refresh_token"]});
            grant = client
                .post(format!("{address}/api/v1/auth/refresh"))
                .json(&body)
                .send()?
                .error_for_status()?
                .json()?;
            counts[1].fetch_add(1, Ordering::Relaxed);
        }
        let access = grant["access_token"].as_str().unwrap_or_default();
        client
            .post(format!("{address}/api/v1/auth/logout"))
            .bearer_auth(access)
            .send()?
            .error_for_status()?;
    }
    Ok(())
}

/// One row of the soak's table: the time, the work done, the rows of [`SOAK_TABLES`]
/// (from `/metrics`) and the sizes on disk ([`database_bytes`]).
fn print_sample(
    dir: &std::path::Path,
    url: &str,
    address: &str,
    started: Instant,
    counts: &[AtomicU64; 2],
) -> anyhow::Result<()> {
    let metrics = Client::new()
        .get(format!("{address}/metrics"))
        .bearer_auth(SOAK_METRICS_TOKEN)
        .send()?
        .error_for_status()?
        .text()?;
    let rows: Vec<String> = SOAK_TABLES
        .iter()
        .map(|table| {
            let gauge = format!("portcullis_db_rows{{table=\"{table}\"}} ");
            metrics
                .lines()
                .find_map(|line| line.strip_prefix(&gauge))
                .unwrap_or("-")
                .to_owned()
        })
        .collect();
    let mib = database_bytes(dir, url)?.map(|bytes| format!("{:.2}", bytes as f64 / 1_048_576.0));
    println!(
        "| {} | {} | {} | {} | {} |",
        started.elapsed().as_secs(),
        counts[0].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed),
        rows.join(" | "),
        mib.join(" | ")
    );
    Ok(())
}

/// On a PostgreSQL server that runs without autovacuum (test servers often do), does
/// its work on the pruned tables, so that their sizes show what a production server
/// (autovacuum on by default) keeps: freed space is reused, not added to.
async fn vacuum_without_autovacuum(connection: &mut sqlx::PgConnection) -> sqlx::Result<()> {
    let autovacuum: String = sqlx::query_scalar("SHOW autovacuum")
        .fetch_one(&mut *connection)
        .await?;
    if autovacuum == "off" {
        sqlx::raw_sql("VACUUM sessions, refresh_tokens")
            .execute(&mut *connection)
            .await?;
    }
    Ok(())
}

/// Bytes on disk: the session tables (`sessions` and `refresh_tokens` with their
/// indexes), `audit_events` with its indexes, and the whole database (the SQLite file with
/// its WAL, or PostgreSQL's `pg_database_size`).
fn database_bytes(dir: &std::path::Path, url: &str) -> anyhow::Result<[u64; 3]> {
    use sqlx::Connection as _;
    const SESSION_TABLES: &str = "('sessions', 'refresh_tokens')";
    let sqlite = url.starts_with("sqlite:");
    tokio::runtime::Runtime::new()?.block_on(async {
        let sizes: Vec<i64> = if sqlite {
            let mut connection = sqlx::SqliteConnection::connect(url).await?;
            let table_bytes = |tables: &str| {
                format!(
                    "SELECT COALESCE(SUM(d.pgsize), 0) FROM dbstat d \
                     JOIN sqlite_schema s ON s.name = d.name WHERE s.tbl_name IN {tables}"
                )
            };
            let mut sizes = Vec::new();
            for tables in [SESSION_TABLES, "('audit_events')"] {
                let bytes: i64 = sqlx::query_scalar(&table_bytes(tables))
                    .fetch_one(&mut connection)
                    .await?;
                sizes.push(bytes);
            }
            let files = ["soak.db", "soak.db-wal"];
            let file_bytes: u64 = files
                .iter()
                .filter_map(|file| std::fs::metadata(dir.join(file)).ok())
                .map(|metadata| metadata.len())
                .sum();
            sizes.push(i64::try_from(file_bytes).unwrap_or(i64::MAX));
            sizes
        } else {
            let mut connection = sqlx::PgConnection::connect(url).await?;
            vacuum_without_autovacuum(&mut connection).await?;
            sqlx::query_as::<_, (i64, i64, i64)>(
                "SELECT pg_total_relation_size('sessions') + pg_total_relation_size('refresh_tokens'), \
                 pg_total_relation_size('audit_events'), pg_database_size(current_database())",
            )
            .fetch_one(&mut connection)
            .await
            .map(|(sessions, audit, total)| vec![sessions, audit, total])?
        };
        let bytes = |index: usize| sizes.get(index).map_or(0, |b| u64::try_from(*b).unwrap_or(0));
        Ok([bytes(0), bytes(1), bytes(2)])
    })
}
