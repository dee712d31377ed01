//! Component instances: the linker with every import, the component pre-instantiated
//! once, and a fresh `Store` per instance with its running time limited.
//!
//! At most [`MAX_INSTANCES`] instances are alive at once (the pooling allocator's
//! capacity); further requests wait for a free slot instead of failing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::{
    Component, ComponentExportIndex, ComponentNamedList, Instance, Lift, Linker, Lower, TypedFunc,
};
use wasmtime::error::Context as _;
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::engine::MAX_INSTANCES;
use crate::state::{InstanceState, SharedImports};

/// How long an instance may run (a request, including its database calls) before it
/// is interrupted.
pub const TIME_LIMIT: Duration = Duration::from_secs(30);

/// The component's typed API (see [`crate::api`]).
const API_INTERFACE: &str = "portcullis:auth/api@0.1.0";

/// Creates component instances on demand.
pub struct Instances {
    pre: ProxyPre<InstanceState>,
    imports: SharedImports,
    slots: Arc<Semaphore>,
    /// Stores made so far (one per instance), for the metrics.
    instantiations: AtomicU64,
}

impl Instances {
    /// Links `component` against the host's imports and pre-instantiates it.
    pub fn new(
        engine: &Engine,
        component: &Component,
        imports: SharedImports,
    ) -> wasmtime::Result<Self> {
        let linker = new_linker(engine)?;
        let instance_pre = linker
            .instantiate_pre(component)
            .context("linking the component's imports")?;
        let pre = ProxyPre::new(instance_pre)
            .context("the component does not export wasi:http/incoming-handler")?;
        Ok(Self {
            pre,
            imports,
            slots: Arc::new(Semaphore::new(MAX_INSTANCES as usize)),
            instantiations: AtomicU64::new(0),
        })
    }

    /// The pre-instantiated component, to instantiate in a [`Self::new_store`].
    pub fn proxy_pre(&self) -> &ProxyPre<InstanceState> {
        &self.pre
    }

    /// Waits for a free instance slot; the slot is free again when the permit drops.
    /// Fails only once [`Self::drain`] has closed the slots.
    pub async fn reserve(&self) -> wasmtime::Result<OwnedSemaphorePermit> {
        Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .context("the host is shutting down")
    }

    /// A fresh store for one instance, interrupted once it has run for [`TIME_LIMIT`].
    /// Until then it yields to the executor at every epoch tick.
    pub fn new_store(&self) -> Store<InstanceState> {
        self.instantiations.fetch_add(1, Ordering::Relaxed);
        let mut store = Store::new(self.pre.engine(), self.imports.instance_state());
        let started = Instant::now();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if started.elapsed() >= TIME_LIMIT {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        store
    }

    /// How many instances were made since start-up.
    pub fn instantiations(&self) -> u64 {
        self.instantiations.load(Ordering::Relaxed)
    }

    /// How many instance slots are taken now (instances alive or about to be).
    pub fn in_use(&self) -> usize {
        (MAX_INSTANCES as usize).saturating_sub(self.slots.available_permits())
    }

    /// A fresh instance for calls into the component's `portcullis:auth/api`; it holds
    /// an instance slot until it is dropped.
    pub async fn api_instance(&self) -> wasmtime::Result<ApiInstance> {
        let slot = self.reserve().await?;
        let mut store = self.new_store();
        let instance = self
            .pre
            .instance_pre()
            .instantiate_async(&mut store)
            .await
            .context("instantiating the component")?;
        let api = instance
            .get_export_index(&mut store, None, API_INTERFACE)
            .with_context(|| format!("the component does not export {API_INTERFACE}"))?;
        Ok(ApiInstance {
            store,
            instance,
            api,
            _slot: slot,
        })
    }

    /// Waits until no instance is alive, for at most `limit`, and lets no new one start.
    /// Returns whether every instance finished in time.
    pub async fn drain(&self, limit: Duration) -> bool {
        let all_slots = tokio::time::timeout(limit, self.slots.acquire_many(MAX_INSTANCES)).await;
        self.slots.close();
        matches!(all_slots, Ok(Ok(_)))
    }
}

/// An instance of the component with its `portcullis:auth/api` export at hand.
pub struct ApiInstance {
    store: Store<InstanceState>,
    instance: Instance,
    api: ComponentExportIndex,
    _slot: OwnedSemaphorePermit,
}

impl ApiInstance {
    /// The function `name` of the API, if its types are `Params` and `Results` (wasmtime
    /// checks the Rust types against the WIT ones).
    pub fn typed_func<Params, Results>(
        &mut self,
        name: &str,
    ) -> wasmtime::Result<TypedFunc<Params, Results>>
    where
        Params: ComponentNamedList + Lower,
        Results: ComponentNamedList + Lift,
    {
        let function = self
            .instance
            .get_export_index(&mut self.store, Some(&self.api), name)
            .with_context(|| format!("{API_INTERFACE} has no function {name}"))?;
        self.instance
            .get_typed_func::<Params, Results>(&mut self.store, &function)
            .with_context(|| format!("{API_INTERFACE}.{name} has an unexpected type"))
    }

    /// Calls the function `name` of the API with `params`; the instance is used up.
    pub async fn call<Params, Results>(
        mut self,
        name: &str,
        params: Params,
    ) -> wasmtime::Result<Results>
    where
        Params: ComponentNamedList + Lower + Send + Sync,
        Results: ComponentNamedList + Lift + Send + Sync + 'static,
    {
        let function = self.typed_func::<Params, Results>(name)?;
        function
            .call_async(&mut self.store, params)
            .await
            .with_context(|| format!("calling {API_INTERFACE}.{name}"))
    }
}

/// Every import the component may use: WASI (p2), `wasi:http`, the store, the Argon2
/// kernel and the settings.
fn new_linker(engine: &Engine) -> wasmtime::Result<Linker<InstanceState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    crate::db::add_to_linker(&mut linker, InstanceState::store_view)?;
    crate::hashing::add_to_linker(&mut linker, InstanceState::hashing_kernel)?;
    crate::wasi_config::add_to_linker(&mut linker, InstanceState::config_view)?;
    Ok(linker)
}
