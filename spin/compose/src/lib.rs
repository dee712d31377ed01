//! The Spin artifact of Portcullis: the auth component (`component/`, unchanged) with
//! the store adapter (`spin/store-adapter`) plugged into its `portcullis:auth/store`
//! import, wrapped by the mail relay (`spin/mail-relay`), whose imported HTTP handler
//! and `portcullis:auth/api` the auth component supplies: one component that imports
//! only what Spin provides and exports the relay's HTTP handler.
//!
//! [`build`] builds the three wasm pieces with cargo (release, wasm32-wasip2) and writes
//! `target/spin/portcullis.wasm`, the `source` of `spin.toml`; [`compose`] is the
//! composition itself; [`check_imports`] compares the artifact's imports with Spin's
//! platform world (`spin/wit/spin.wit`).

mod imports;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use wac_graph::types::Package;
use wac_graph::{CompositionGraph, EncodeOptions};

pub use imports::check_imports;

const WASM_TARGET: &str = "wasm32-wasip2";
const COMPONENT_PACKAGE: &str = "portcullis-component";
const ADAPTER_PACKAGE: &str = "portcullis-spin-store";
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

/// The artifact: where it was written and what it imports.
pub struct Artifact {
    /// `<target>/spin/portcullis.wasm`.
    pub path: PathBuf,
    /// The interfaces it imports, all offered by Spin.
    pub imports: Vec<String>,
}

/// Builds the auth component, the adapter and the relay, composes them, checks the
/// imports and writes the artifact.
pub fn build(workspace: &Path) -> anyhow::Result<Artifact> {
    let target = target_dir(workspace);
    // The component's target folder is the one host/build.rs uses: no second build.
    let component = build_wasm(workspace, COMPONENT_PACKAGE, &target.join("component"))?;
    let adapter = build_wasm(workspace, ADAPTER_PACKAGE, &target.join("spin"))?;
    let relay = build_wasm(workspace, RELAY_PACKAGE, &target.join("spin"))?;
    let composed = compose(&read(&component)?, &read(&adapter)?, &read(&relay)?)?;
    let imports = check_imports(&composed, workspace)?;
    let path = artifact_path(workspace);
    std::fs::write(&path, composed).with_context(|| format!("writing {}", path.display()))?;
    Ok(Artifact { path, imports })
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

/// Plugs `adapter`'s `portcullis:auth/store` export into `auth`'s import, then plugs
/// that component's HTTP handler and `portcullis:auth/api` exports into `relay`'s
/// imports. Every other import stays an import of the result, which exports what
/// `relay` exports (its HTTP handler).
pub fn compose(auth: &[u8], adapter: &[u8], relay: &[u8]) -> anyhow::Result<Vec<u8>> {
    let served = plug(
        ("portcullis:spin-store", adapter),
        ("portcullis:auth", auth),
    )
    .context("plugging the store adapter into the auth component")?;
    plug(
        ("portcullis:served", &served),
        ("portcullis:mail-relay", relay),
    )
    .context("plugging the auth component into the mail relay")
}

/// Plugs the exports of `plug` into the matching imports of `socket` (each a package
/// name and its component bytes) and encodes the result.
fn plug(plug: (&str, &[u8]), socket: (&str, &[u8])) -> anyhow::Result<Vec<u8>> {
    let mut graph = CompositionGraph::new();
    let plug_package = Package::from_bytes(plug.0, None, plug.1, graph.types_mut())
        .with_context(|| format!("reading {}", plug.0))?;
    let socket_package = Package::from_bytes(socket.0, None, socket.1, graph.types_mut())
        .with_context(|| format!("reading {}", socket.0))?;
    let plug_id = graph.register_package(plug_package)?;
    let socket_id = graph.register_package(socket_package)?;
    wac_graph::plug(&mut graph, vec![plug_id], socket_id)?;
    graph
        .encode(EncodeOptions::default())
        .context("encoding the composed component")
}
