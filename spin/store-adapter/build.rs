//! Lists the migrations of `migrations/sqlite` and `migrations/postgres` for the adapter,
//! as sqlx names them (`<version>_<description>.sql`), so that a new migration file is
//! applied by Spin without any edit here.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::{env, fs};

const DIALECTS: [&str; 2] = ["sqlite", "postgres"];

fn main() -> ExitCode {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let migrations = manifest_dir.join("../../migrations");
    let mut code = String::new();
    for dialect in DIALECTS {
        let folder = migrations.join(dialect);
        println!("cargo::rerun-if-changed={}", folder.display());
        match list(&folder) {
            Ok(files) => write_list(&mut code, dialect, &files),
            Err(error) => {
                eprintln!("error: reading {}: {error}", folder.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default()).join("migrations.rs");
    match fs::write(&out, code) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: writing {}: {error}", out.display());
            ExitCode::FAILURE
        }
    }
}

/// The migration files of `folder` as (version, description, path), by version.
fn list(folder: &Path) -> std::io::Result<Vec<(i64, String, PathBuf)>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(folder)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        let Some((version, rest)) = name.split_once('_') else {
            continue;
        };
        let (Ok(version), Some(description)) = (version.parse(), rest.strip_suffix(".sql")) else {
            continue;
        };
        files.push((version, description.replace('_', " "), path.canonicalize()?));
    }
    files.sort_by_key(|(version, _, _)| *version);
    Ok(files)
}

fn write_list(code: &mut String, dialect: &str, files: &[(i64, String, PathBuf)]) {
    let name = dialect.to_ascii_uppercase();
    let _ = writeln!(
        code,
        "/// The migrations of `migrations/{dialect}`, by version."
    );
    let _ = writeln!(code, "pub const {name}: &[Migration] = &[");
    for (version, description, path) in files {
        let _ = writeln!(
            code,
            "    Migration {{ version: {version}, description: {description:?}, sql: include_str!({:?}) }},",
            path.display().to_string()
        );
    }
    let _ = writeln!(code, "];");
}
