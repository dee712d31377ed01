//! Builds the Portcullis WebAssembly component, so that the host binary embeds it and a
//! fresh clone runs with `cargo run --release -p portcullis -- serve` and no manual step.
//!
//! The component is built with the same cargo, always in release mode (Argon2 runs
//! inside it), into `<target>/component`: a target folder of its own, so the nested
//! build never waits for the lock that the outer build holds.
//!
//! It also tells the host which database dialects have migrations: a folder
//! `migrations/<dialect>` turns on the cfg `portcullis_migrations_<dialect>`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};

const COMPONENT_PACKAGE: &str = "portcullis-component";
const COMPONENT_FILE: &str = "portcullis_component.wasm";
const WASM_TARGET: &str = "wasm32-wasip2";
/// Dialects whose migrations may not exist yet; SQLite's always do.
const OPTIONAL_MIGRATION_DIALECTS: [&str; 2] = ["postgres", "mysql"];

fn main() -> ExitCode {
    let workspace = workspace_dir();
    track_inputs(&workspace);
    declare_migration_cfgs(&workspace);

    let target_dir = component_target_dir(&workspace);
    let output = match build_component(&workspace, &target_dir) {
        Ok(output) => output,
        Err(error) => {
            eprintln!("error: could not run cargo to build the component: {error}");
            return ExitCode::FAILURE;
        }
    };
    if !output.status.success() {
        report_failed_build(&output);
        return ExitCode::FAILURE;
    }

    let wasm = target_dir
        .join(WASM_TARGET)
        .join("release")
        .join(COMPONENT_FILE);
    println!(
        "cargo::rustc-env=PORTCULLIS_COMPONENT_WASM={}",
        wasm.display()
    );
    ExitCode::SUCCESS
}

fn workspace_dir() -> PathBuf {
    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| ".".into());
    Path::new(&manifest_dir).join("..")
}

/// Re-runs this script when the component's sources, the WIT package, the lock file
/// or the migrations change (the latter because `sqlx::migrate!` does not track them).
fn track_inputs(workspace: &Path) {
    for input in [
        "component/src",
        "component/Cargo.toml",
        "component/data",
        "wit",
        "migrations",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        println!(
            "cargo::rerun-if-changed={}",
            workspace.join(input).display()
        );
    }
    println!("cargo::rerun-if-env-changed=CARGO_TARGET_DIR");
}

fn declare_migration_cfgs(workspace: &Path) {
    for dialect in OPTIONAL_MIGRATION_DIALECTS {
        let cfg = format!("portcullis_migrations_{dialect}");
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if workspace.join("migrations").join(dialect).is_dir() {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}

/// `$CARGO_TARGET_DIR` (relative paths taken from the workspace) or `<workspace>/target`,
/// plus `component`.
fn component_target_dir(workspace: &Path) -> PathBuf {
    let outer = match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    outer.join("component")
}

fn build_component(workspace: &Path, target_dir: &Path) -> std::io::Result<Output> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Command::new(cargo)
        .current_dir(workspace)
        .args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "-p",
            COMPONENT_PACKAGE,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        // The outer build's flags are for the host, not for wasm; clippy's wrapper
        // (set by `cargo clippy`) would lint the component with the host's settings.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .output()
}

fn report_failed_build(output: &Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("error: building the WebAssembly component ({COMPONENT_PACKAGE}) failed");
    for output in [stdout.trim_end(), stderr.trim_end()] {
        if !output.is_empty() {
            eprintln!("{output}");
        }
    }
    if target_is_missing(&stderr) {
        eprintln!(
            "error: the {WASM_TARGET} target is not installed; run `rustup target add {WASM_TARGET}`"
        );
    }
}

fn target_is_missing(stderr: &str) -> bool {
    stderr.contains("may not be installed")
        || stderr.contains("can't find crate for `core`")
        || stderr.contains("can't find crate for `std`")
}
