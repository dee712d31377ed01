//! `portcullis-spin-test-host <spin.toml> <artifact.wasm>`: the project's Spin test host
//! (`portcullis::spin_test_host`) as a program, so that the black-box suite can start
//! the Spin artifact as it starts `portcullis serve`. It is a test tool, not Spin.
//!
//! The component's variables are the manifest's, each set by `PORTCULLIS_<NAME>` (as
//! `SPIN_VARIABLE_<NAME>` sets it for `spin up`); variables the manifest does not
//! declare are ignored, as Spin has no place for them. Besides, as `portcullis serve`
//! reads them: `PORTCULLIS_LISTEN` (default `127.0.0.1:3000`, as `spin up`),
//! `PORTCULLIS_DATA_DIR` (where Spin's `default` SQLite database goes,
//! `.spin/sqlite_db.db`; default the current folder), `PORTCULLIS_CACHE_DIR` (the
//! compiled artifact is kept there) and `PORTCULLIS_SMTP_URL` (the test host plays the
//! deployment's mail webhook and sends to that server, see
//! `spin_test_host::mail_bridge`). Given `PORTCULLIS_ADMIN_USERNAME`, `_EMAIL` and
//! `_PASSWORD`, it first does what the README tells Spin users to do for an admin: runs
//! `portcullis admin create` (the `portcullis` binary next to this one) on the same
//! database, and serves whatever it answers (an admin that exists already, say). It prints `listening on http://ADDR` on stdout once
//! it accepts requests; the components' stderr (Spin's log) is its stderr.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

use portcullis::engine::load_component;
use portcullis::spin_test_host::postgres::POOL_SIZE;
use portcullis::spin_test_host::served::{Log, Served, serve};
use portcullis::spin_test_host::{mail_bridge, settings};

/// The component of `spin.toml` that serves every route.
const COMPONENT: &str = "portcullis";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let arguments: Vec<_> = std::env::args_os().skip(1).collect();
    let [manifest, artifact] = arguments.as_slice() else {
        bail!("usage: portcullis-spin-test-host <spin.toml> <artifact.wasm>");
    };
    let manifest = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.to_string_lossy()))?;
    let mut given = settings::from_environment(std::env::vars());
    let listen = given
        .remove("listen")
        .unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    let data_dir = PathBuf::from(given.remove("data_dir").unwrap_or_else(|| ".".to_owned()));
    let cache_dir = given.remove("cache_dir");
    let smtp_url = given.remove("smtp_url");
    let mut variables =
        settings::component_variables(&manifest, COMPONENT, &given).map_err(anyhow::Error::msg)?;
    if let Some(smtp_url) = smtp_url {
        route_mail_to_smtp(&mut variables, &smtp_url).await?;
    }
    if let (Some(username), Some(email), Some(password)) = (
        given.get("admin_username"),
        given.get("admin_email"),
        given.get("admin_password"),
    ) {
        create_admin(username, email, password)?;
    }

    let engine = Engine::new(&Config::new())?;
    let wasm = std::fs::read(artifact)
        .with_context(|| format!("reading {}", artifact.to_string_lossy()))?;
    let component = match cache_dir {
        Some(cache_dir) => load_component(&engine, &wasm, cache_dir.as_ref())?,
        None => Component::new(&engine, &wasm)?,
    };
    let spin_folder = data_dir.join(".spin");
    std::fs::create_dir_all(&spin_folder)
        .with_context(|| format!("creating {}", spin_folder.display()))?;
    let served = Served::new(
        &engine,
        &component,
        variables,
        &spin_folder.join("sqlite_db.db"),
        POOL_SIZE,
        Log::Inherit,
    )?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let address = listener.local_addr()?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on http://{address}")?;
    stdout.flush()?;
    serve(Arc::new(served), listener).await;
    Ok(())
}

/// Runs `portcullis admin create` with this process' settings, the password on its
/// stdin; its output goes to this process' stderr.
fn create_admin(username: &str, email: &str, password: &str) -> anyhow::Result<()> {
    let portcullis = std::env::current_exe()?.with_file_name("portcullis");
    let mut child = std::process::Command::new(&portcullis)
        .args(["admin", "create", "--username", username, "--email", email])
        .env_remove("PORTCULLIS_ADMIN_USERNAME")
        .env_remove("PORTCULLIS_ADMIN_EMAIL")
        .env_remove("PORTCULLIS_ADMIN_PASSWORD")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("running {} admin create", portcullis.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        writeln!(stdin, "{password}")?;
    }
    let status = child.wait()?;
    if !status.success() {
        eprintln!("`portcullis admin create` did not create the admin ({status}); serving on");
    }
    Ok(())
}

/// Unless a webhook is configured, the relay's mail goes to the test host's own
/// webhook, which sends it to `smtp_url`.
async fn route_mail_to_smtp(
    variables: &mut HashMap<String, String>,
    smtp_url: &str,
) -> anyhow::Result<()> {
    if variables
        .get("mail_webhook_url")
        .is_some_and(|url| !url.is_empty())
    {
        return Ok(());
    }
    let from = variables.get("mail_from").cloned().unwrap_or_default();
    let webhook = mail_bridge::start(smtp_url, &from)
        .await
        .map_err(anyhow::Error::msg)?;
    variables.insert("mail_webhook_url".to_owned(), webhook);
    Ok(())
}
