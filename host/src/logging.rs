//! Logging to stderr with `tracing`: plain text or JSON lines, filtered by
//! `PORTCULLIS_LOG`. Secrets, tokens, passwords and request bodies are never logged.
//!
//! Whatever the filter says, the `trace` lines of the WASI crates (`wasmtime_wasi*`)
//! are dropped: they echo every call the component makes with its arguments and
//! results, so a request's path with its query, its headers and its body would reach
//! the log.
//!
//! The compiler's and the runtime's crates (cranelift, wasmtime, …) log only warnings
//! unless `PORTCULLIS_LOG` names them: `trace` alone would otherwise write hundreds of
//! megabytes of compiler traces while the component compiles.

use std::io::IsTerminal as _;

use tracing::{Level, Metadata};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, fmt};

use crate::settings::{LogFormat, LogSettings};

/// The targets whose `trace` lines carry what the component sends and receives.
const ECHOING_TARGETS: &str = "wasmtime_wasi";
/// The compiler's and the runtime's targets (prefixes), quiet unless named.
const COMPILER_TARGETS: [&str; 7] = [
    "cranelift",
    "wasmtime",
    "regalloc2",
    "wasmparser",
    "wasm_encoder",
    "wit_component",
    "winch",
];

/// Installs the global subscriber (colours only when stderr is a terminal).
pub fn init(settings: LogSettings) {
    let layer = fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let layer = match settings.format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer.json().boxed(),
    };
    let mut filter = settings.filter;
    for target in COMPILER_TARGETS {
        if !settings.directives.contains(target)
            && let Ok(directive) = format!("{target}=warn").parse()
        {
            filter = filter.add_directive(directive);
        }
    }
    tracing_subscriber::registry()
        .with(filter)
        .with(filter_fn(holds_no_request_data))
        .with(layer)
        .init();
}

/// Whether a span or event may be logged: not a `trace` line of the WASI crates.
fn holds_no_request_data(metadata: &Metadata<'_>) -> bool {
    !(*metadata.level() == Level::TRACE && metadata.target().starts_with(ECHOING_TARGETS))
}
