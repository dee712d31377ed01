//! `wasi:config/store@0.2.0-draft-2024-09-27`, the version Spin provides: the settings,
//! read-only, for the component.
//!
//! (`wasmtime-wasi-config` implements a later draft, so the host supplies this one.)

use std::collections::HashMap;

use wasmtime::component::{HasData, Linker};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "wasi:config/imports@0.2.0-draft-2024-09-27",
    });
}

use bindings::wasi::config::store as wit;

/// The settings as one request's component instance sees them.
pub struct ConfigView<'a> {
    settings: &'a HashMap<String, String>,
}

impl<'a> ConfigView<'a> {
    /// A view of `settings` for the generated host functions.
    pub fn new(settings: &'a HashMap<String, String>) -> Self {
        Self { settings }
    }
}

impl wit::Host for ConfigView<'_> {
    fn get(&mut self, key: String) -> Result<Option<String>, wit::Error> {
        Ok(self.settings.get(&key).cloned())
    }

    fn get_all(&mut self) -> Result<Vec<(String, String)>, wit::Error> {
        Ok(self
            .settings
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect())
    }
}

struct HasConfig;

impl HasData for HasConfig {
    type Data<'a> = ConfigView<'a>;
}

/// Adds `wasi:config/store` to `linker`, served by the view `get_view` returns.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    get_view: fn(&mut T) -> ConfigView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasConfig>(linker, get_view)
}
