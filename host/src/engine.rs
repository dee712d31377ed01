//! The wasmtime `Engine` and the compiled component.
//!
//! One engine serves the whole process: async, with a pooling allocator sized for
//! [`MAX_INSTANCES`] concurrent instances and epoch interruption driven by a ticker
//! thread. The component is compiled once per (component, engine) pair and kept in
//! `<data_dir>/cache/component-<hash>.cwasm`, so later starts skip Cranelift.

use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use wasmtime::component::Component;
use wasmtime::error::Context as _;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// The most component instances alive at once (one per in-flight request).
pub const MAX_INSTANCES: u32 = 64;

/// How often the engine's epoch advances, which is also how often a running instance
/// yields its executor thread: a password hash (tens of milliseconds of CPU) lets other
/// requests run every tick instead of holding a thread to its end.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// An instance's linear memory limit. A request touches well under 1 MiB (the Argon2
/// kernel runs natively, outside it); imports of users and large pages allocate more.
const MAX_MEMORY_BYTES: usize = 128 << 20;

/// Virtual memory reserved for each linear memory: the whole 32-bit index space, so that
/// Cranelift elides the bounds check of every load and store (an out-of-bounds access
/// faults in the reservation or its guard instead). Argon2 is nothing but memory
/// accesses: this takes about a quarter off a hash. Only touched pages cost memory; the
/// pool's address space is MAX_INSTANCES × (4 GiB + guard) ≈ 258 GiB, none of it
/// committed.
const MEMORY_RESERVATION_BYTES: u64 = 4 << 30;

/// The guard after each linear memory's reservation: covers the static offsets of
/// accesses near the end of the index space.
const MEMORY_GUARD_BYTES: u64 = 32 << 20;

/// How much of each table the pool keeps resident when an instance ends: a table's used
/// part (a few KiB for this component) is zeroed in place instead of handed back to the
/// kernel. Handing it back cost a TLB shootdown (an inter-processor interrupt to every
/// core running the process) at the instance's end and page faults at the next one's
/// start: `GET /users/me` served 16–25 % more requests keeping them (BENCHMARKS.md, issue
/// #14).
const TABLE_KEEP_RESIDENT_BYTES: usize = 1 << 20;

/// What one instance of the component is made of (checked when it is loaded, so a
/// component that outgrows these fails at start-up, not under load): today 4 core
/// instances (the module, the WASI adapter, shims), 2 tables and 1 linear memory.
/// Memories are the costly part of the pool's reservation, so there is no slack there.
const CORE_INSTANCES_PER_COMPONENT: u32 = 8;
const TABLES_PER_COMPONENT: u32 = 4;
const MEMORIES_PER_COMPONENT: u32 = 1;

/// Creates the process's engine.
pub fn new_engine() -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .memory_reservation(MEMORY_RESERVATION_BYTES)
        .memory_guard_size(MEMORY_GUARD_BYTES)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config()));
    Engine::new(&config).context("configuring wasmtime")
}

/// The pool's limits. A finished instance's linear memory is handed back to the kernel
/// (wasmtime's default, no `linear_memory_keep_resident`): a request touches ~15 pages,
/// which fault in again cheaply, while keeping memory resident made every instance's
/// end copy or zero megabytes: `GET /users/me` served 1.6–1.7 × more requests without it,
/// and still 1.3–1.5 × more than with 2 MiB kept (BENCHMARKS.md, issue #14). Tables are
/// kept ([`TABLE_KEEP_RESIDENT_BYTES`]).
fn pooling_config() -> PoolingAllocationConfig {
    let mut pooling = PoolingAllocationConfig::new();
    pooling
        .total_component_instances(MAX_INSTANCES)
        .total_core_instances(MAX_INSTANCES * CORE_INSTANCES_PER_COMPONENT)
        .total_memories(MAX_INSTANCES * MEMORIES_PER_COMPONENT)
        .total_tables(MAX_INSTANCES * TABLES_PER_COMPONENT)
        .total_stacks(MAX_INSTANCES)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .max_memory_size(MAX_MEMORY_BYTES)
        .table_keep_resident(TABLE_KEEP_RESIDENT_BYTES);
    pooling
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a thread of its own (so that
/// busy executor threads cannot hold it up), until the engine is dropped.
pub fn start_epoch_ticker(engine: &Engine) -> wasmtime::Result<()> {
    let engine = engine.weak();
    thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                thread::sleep(EPOCH_TICK);
            }
        })
        .context("starting the epoch ticker thread")?;
    Ok(())
}

/// The component compiled for `engine`: from the cache in `cache_dir` when it holds
/// this exact compilation, else compiled now and cached (in memory only, with a
/// warning, when the folder cannot be written).
pub fn load_component(
    engine: &Engine,
    wasm: &[u8],
    cache_dir: &Path,
) -> wasmtime::Result<Component> {
    let cached = cache_dir.join(cache_file_name(engine, wasm));
    if cached.is_file() {
        // SAFETY: the file is wasmtime's own output for this very component and engine
        // configuration (its name is their hash), written by this host into its data
        // folder; wasmtime checks the header and compatibility again on load.
        match unsafe { Component::deserialize_file(engine, &cached) } {
            Ok(component) => {
                tracing::info!(file = %cached.display(), "loaded the compiled component from the cache");
                return Ok(component);
            }
            Err(error) => {
                tracing::warn!(file = %cached.display(), error = %format!("{error:#}"), "ignoring an unusable cached component");
            }
        }
    }
    compile_and_cache(engine, wasm, &cached)
}

fn compile_and_cache(engine: &Engine, wasm: &[u8], cached: &Path) -> wasmtime::Result<Component> {
    tracing::info!("compiling the component (first start with this build)");
    let compiled = engine
        .precompile_component(wasm)
        .context("compiling the component")?;
    match write_atomically(cached, &compiled) {
        Ok(()) => tracing::info!(file = %cached.display(), "cached the compiled component"),
        Err(error) => tracing::warn!(
            file = %cached.display(),
            %error,
            "cannot cache the compiled component: it will be compiled again at every start"
        ),
    }
    // SAFETY: `compiled` was produced by `precompile_component` on this engine just now.
    unsafe { Component::deserialize(engine, &compiled) }.context("loading the compiled component")
}

/// `component-<sha256 of the wasm and the engine's compatibility hash>.cwasm`.
fn cache_file_name(engine: &Engine, wasm: &[u8]) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    hasher.0.update(wasm);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let digest = hasher.0.finalize();
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("component-{hex}.cwasm")
}

/// Feeds `Hash` implementations into SHA-256 (std's hashers are not stable across
/// builds, a cache key must be).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        let mut first_bytes = [0u8; 8];
        first_bytes.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first_bytes)
    }
}

/// Writes `contents` to a temporary file next to `path`, then renames it into place,
/// so that a reader never sees half a file.
fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let folder = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(folder)?;
    let temporary = temporary_path(path);
    fs::write(&temporary, contents)
        .and_then(|()| fs::rename(&temporary, path))
        .inspect_err(|_| {
            let _ = fs::remove_file(&temporary);
        })
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}
