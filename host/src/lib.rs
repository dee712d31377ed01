//! The native host of the Portcullis authentication service, as a library: the binary
//! `portcullis` (`main.rs`) and the benchmarks (`benches/`) use it.
//!
//! All authentication rules live in one WebAssembly component, embedded in this binary
//! (built by `build.rs`). The host supplies what the component imports — the database
//! (`portcullis:auth/store`, sqlx), the settings (`wasi:config/store`), the clock —
//! and serves HTTP through the component's `wasi:http/incoming-handler`.
//!
//! Code map: [`settings`] and [`logging`] (start-up), [`commands`] (what `serve`,
//! `migrate` and `keys rotate` do), [`engine`] (wasmtime and the compiled-component
//! cache), [`instances`] and [`state`] (one store and instance per request), [`server`]
//! (hyper; request ids, the access log and `/metrics`, with `metrics` and `request_id`;
//! `admission` queues the requests that hash a password),
//! [`api`] (typed calls into the component), [`mail`] (delivering the outbox),
//! `retention` (asking the component to prune, on a timer),
//! and the imports: [`db`], [`wasi_config`], [`clock`].

/// The component, built by `build.rs` for wasm32-wasip2 in release mode.
pub const COMPONENT_WASM: &[u8] = include_bytes!(env!("PORTCULLIS_COMPONENT_WASM"));

pub mod api;
pub mod commands;
pub mod db;
pub mod engine;
pub mod import;
pub mod instances;
pub mod logging;
pub mod settings;
pub mod spin_test_host;
pub mod state;

mod admission;
mod clock;
mod component_log;
mod hashing;
mod mail;
mod metrics;
mod periodic;
mod request_id;
mod retention;
mod server;
mod wasi_config;
