//! Logging to stderr with `tracing`: plain text or JSON lines, filtered by
//! `PORTCULLIS_LOG`. Secrets, tokens, passwords and request bodies are never logged.

use std::io::IsTerminal as _;

use crate::settings::{LogFormat, LogSettings};

/// Installs the global subscriber (colours only when stderr is a terminal).
pub fn init(settings: LogSettings) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(settings.filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match settings.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
