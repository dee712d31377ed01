//! What one component instance's `Store` holds: its own WASI and HTTP contexts, and
//! the database, settings and hashing slots that every instance shares.

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::clock::SystemClock;
use crate::component_log::ComponentLog;
use crate::db::{Database, StoreView};
use crate::hashing::{HashingSlots, Kernel};
use crate::wasi_config::ConfigView;

/// What the host supplies to every instance, cheap to clone.
#[derive(Clone)]
pub struct SharedImports {
    database: Database,
    settings: Arc<HashMap<String, String>>,
    hashing: HashingSlots,
}

impl SharedImports {
    /// The database behind `portcullis:auth/store` and the settings behind
    /// `wasi:config/store`.
    pub fn new(database: Database, settings: HashMap<String, String>) -> Self {
        Self {
            database,
            settings: Arc::new(settings),
            hashing: HashingSlots::one_per_core(),
        }
    }

    /// Fresh state for one instance: no environment, arguments, files or network;
    /// stdout discarded, stderr into the log (`component_log.rs`); the host's clock;
    /// secure random.
    pub fn instance_state(&self) -> InstanceState {
        let wasi = WasiCtx::builder()
            .stderr(ComponentLog)
            .wall_clock(SystemClock)
            .build();
        InstanceState {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            imports: self.clone(),
        }
    }
}

/// The data of one instance's `Store`.
pub struct InstanceState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    imports: SharedImports,
}

impl InstanceState {
    /// The `portcullis:auth/store` view.
    pub fn store_view(&mut self) -> StoreView<'_> {
        StoreView::new(&self.imports.database)
    }

    /// The `portcullis:auth/password-hashing` kernel.
    pub fn hashing_kernel(&mut self) -> Kernel<'_> {
        Kernel::new(&self.imports.hashing)
    }

    /// The `wasi:config/store` view.
    pub fn config_view(&mut self) -> ConfigView<'_> {
        ConfigView::new(&self.imports.settings)
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}
