//! The composed artifacts of Portcullis.
//!
//! - The Spin artifact: the auth component (`component/`, unchanged) with the Argon2
//!   kernel (`hasher/`) plugged into its `portcullis:auth/password-hashing` import and
//!   the store adapter (`spin/store-adapter`) into its `portcullis:auth/store` import,
//!   wrapped by the mail relay (`spin/mail-relay`), whose imported HTTP handler and
//!   `portcullis:auth/api` the auth component supplies: one component that imports only
//!   what Spin provides and exports the relay's HTTP handler.
//! - The portable component, for embedders (Node, Python, …): the auth component with
//!   the Argon2 kernel plugged in, so that a host supplies only `portcullis:auth/store`
//!   and standard WASI. (The native host supplies the kernel natively, which is faster.)
//!
//! [`build`] builds the wasm pieces with cargo (release, wasm32-wasip2) and writes
//! `target/spin/portcullis.wasm`, the `source` of `spin.toml`, and
//! `target/component/portcullis-portable.wasm`; [`compose`] is the Spin composition;
//! [`check_imports`] compares the artifact's imports with Spin's platform world
//! (`spin/wit/spin.wit`).

mod imports;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use wac_graph::types::Package;
use wac_graph::{CompositionGraph, EncodeOptions};

pub use imports::{check_imports, imported_interfaces};

const WASM_TARGET: &str = "wasm32-wasip2";
const COMPONENT_PACKAGE: &str = "portcullis-component";
const ADAPTER_PACKAGE: &str = "portcullis-spin-store";
const HASHER_PACKAGE: &str = "portcullis-hasher";
const RELAY_PACKAGE: &str = "portcullis-spin-mail-relay";

/// The workspace root (this crate is `spin/compose`).
pub fn workspace_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    workspace.canonicalize().unwrap_or(workspace)
}

/// `$CARGO_TARGET_DIR` (relative paths taken from the workspace) or `<workspace>/target`.
pub fn target_dir(workspace: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    }
}

/// Where the artifact is written: `<target>/spin/portcullis.wasm`.
pub fn artifact_path(workspace: &Path) -> PathBuf {
    target_dir(workspace).join("spin").join("portcullis.wasm")
}

/// Where the portable component is written: `<target>/component/portcullis-portable.wasm`.
pub fn portable_path(workspace: &Path) -> PathBuf {
    target_dir(workspace)
        .join("component")
        .join("portcullis-portable.wasm")
}

/// The artifact: where it was written and what it imports.
pub struct Artifact {
    /// `<target>/spin/portcullis.wasm`.
    pub path: PathBuf,
    /// The interfaces it imports, all offered by Spin.
    pub imports: Vec<String>,
    /// `<target>/component/portcullis-portable.wasm`.
    pub portable: PathBuf,
}

/// Builds the auth component, the Argon2 kernel, the adapter and the relay, composes
/// them, checks the imports and writes the Spin artifact and the portable component.
pub fn build(workspace: &Path) -> anyhow::Result<Artifact> {
    let target = target_dir(workspace);
    // The component's target folder is the one host/build.rs uses: no second build.
    let auth = read(&build_wasm(
        workspace,
        COMPONENT_PACKAGE,
        &target.join("component"),
    )?)?;
    let hasher = read(&build_wasm(
        workspace,
        HASHER_PACKAGE,
        &target.join("spin"),
    )?)?;
    let adapter = read(&build_wasm(
        workspace,
        ADAPTER_PACKAGE,
        &target.join("spin"),
    )?)?;
    let relay = read(&build_wasm(workspace, RELAY_PACKAGE, &target.join("spin"))?)?;
    let composed = compose(&auth, &hasher, &adapter, &relay)?;
    let imports = check_imports(&composed, workspace)?;
    let path = artifact_path(workspace);
    write(&path, &composed)?;
    let portable = portable_path(workspace);
    write(&portable, &compose_portable(&auth, &hasher)?)?;
    Ok(Artifact {
        path,
        imports,
        portable,
    })
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// `cargo build --release --target wasm32-wasip2 -p PACKAGE`; returns the `.wasm` path.
fn build_wasm(workspace: &Path, package: &str, target_dir: &Path) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace)
        .args(["build", "--release", "--target", WASM_TARGET, "-p", package])
        .arg("--target-dir")
        .arg(target_dir)
        // Flags and wrappers of an outer cargo (clippy, a test run) are not for wasm.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .status()
        .with_context(|| format!("running cargo to build {package}"))?;
    if !status.success() {
        bail!(
            "building {package} for {WASM_TARGET} failed (is the target installed? `rustup target add {WASM_TARGET}`)"
        );
    }
    let file = format!("{}.wasm", package.replace('-', "_"));
    Ok(target_dir.join(WASM_TARGET).join("release").join(file))
}

/// Plugs `hasher`'s `portcullis:auth/password-hashing` and `adapter`'s
/// `portcullis:auth/store` exports into `auth`'s imports, then plugs that component's
/// HTTP handler and `portcullis:auth/api` exports into `relay`'s imports. Every other
/// import stays an import of the result, which exports what `relay` exports (its HTTP
/// handler).
pub fn compose(
    auth: &[u8],
    hasher: &[u8],
    adapter: &[u8],
    relay: &[u8],
) -> anyhow::Result<Vec<u8>> {
    let served = plug(
        &[
            ("portcullis:hasher", hasher),
            ("portcullis:spin-store", adapter),
        ],
        ("portcullis:auth", auth),
    )
    .context("plugging the Argon2 kernel and the store adapter into the auth component")?;
    plug(
        &[("portcullis:served", &served)],
        ("portcullis:mail-relay", relay),
    )
    .context("plugging the auth component into the mail relay")
}

/// Plugs `hasher`'s `portcullis:auth/password-hashing` export into `auth`'s import.
pub fn compose_portable(auth: &[u8], hasher: &[u8]) -> anyhow::Result<Vec<u8>> {
    plug(&[("portcullis:hasher", hasher)], ("portcullis:auth", auth))
        .context("plugging the Argon2 kernel into the auth component")
}

/// Plugs the exports of `plugs` into the matching imports of `socket` (each a package
/// name and its component bytes) and encodes the result.
fn plug(plugs: &[(&str, &[u8])], socket: (&str, &[u8])) -> anyhow::Result<Vec<u8>> {
    let mut graph = CompositionGraph::new();
    let mut plug_ids = Vec::new();
    for (name, bytes) in plugs {
        let package = Package::from_bytes(name, None, *bytes, graph.types_mut())
            .with_context(|| format!("reading {name}"))?;
        plug_ids.push(graph.register_package(package)?);
    }
    let socket_package = Package::from_bytes(socket.0, None, socket.1, graph.types_mut())
        .with_context(|| format!("reading {}", socket.0))?;
    let socket_id = graph.register_package(socket_package)?;
    wac_graph::plug(&mut graph, plug_ids, socket_id)?;
    graph
        .encode(EncodeOptions::default())
        .context("encoding the composed component")
}
