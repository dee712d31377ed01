//! The store adapter of Portcullis on Spin: `portcullis:auth/store` over Spin's SQLite
//! (`spin:sqlite`) or PostgreSQL (`spin:postgres`), composed with the unchanged auth
//! component into the Spin artifact (see `spin/compose`).
//!
//! It holds no rule of the service: it runs the statements the component writes, in one
//! transaction for a batch, and applies the migrations of `migrations/` on first use.
//! [`store`] is that logic over a [`store::Connection`]; [`session`] the bounds on
//! waiting it asks of PostgreSQL; `wasm` (wasm32 only) supplies the connection over
//! Spin's imports and exports the WIT interface.

pub mod migrations;
pub mod session;
pub mod sql;
pub mod store;

#[cfg(target_arch = "wasm32")]
mod wasm;
