//! Portcullis' authentication rules, built as one WebAssembly component.
//!
//! The domain (validation, hashing, tokens, sessions, the HTTP routes) is plain Rust over
//! the traits in [`ports`], so it is unit-tested natively. Only [`wasm`] (built for
//! `wasm32`) touches the generated WIT bindings: it adapts the imports to the ports and
//! the domain to the exports (`wasi:http/incoming-handler`, `portcullis:auth/api`).

pub mod abuse;
pub mod account;
pub mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub mod db;
pub mod error;
pub mod http;
pub mod import;
pub mod imported_hash;
pub mod keys;
pub mod log;
pub mod mail;
pub mod mfa;
pub mod password;
pub mod ports;
pub mod refresh;
pub mod retention;
pub mod sessions;
pub mod settings;
pub mod tokens;
pub mod users;
pub mod validation;

#[cfg(any(test, feature = "fuzzing"))]
pub mod testing;

#[cfg(target_arch = "wasm32")]
mod wasm;
