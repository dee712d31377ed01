//! `cargo run --release -p portcullis-spin-compose`: builds the Spin artifact
//! (`target/spin/portcullis.wasm`; `spin build` runs it) and the portable component for
//! embedders (`target/component/portcullis-portable.wasm`).

use std::process::ExitCode;

fn main() -> ExitCode {
    match portcullis_spin_compose::build(&portcullis_spin_compose::workspace_dir()) {
        Ok(artifact) => {
            println!("wrote {}; it imports:", artifact.path.display());
            for import in artifact.imports {
                println!("  {import}");
            }
            println!("wrote {} (for embedders)", artifact.portable.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
