//! The import check: every interface the artifact imports must be one Spin provides,
//! at a version Spin links (same major version; same minor too before 1.0), with every
//! function the artifact calls. Spin's offer is the `platform` world of
//! `spin/wit/spin.wit`, read with the WIT of `wit/deps` and `spin/wit/deps`.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context as _, bail};
use semver::Version;
use wit_parser::decoding::{DecodedWasm, decode};
use wit_parser::{Resolve, Stability, WorldId, WorldItem};

/// The feature gate `wit/deps/cli` uses (an interface Spin does not offer).
const UNSTABLE_FEATURE: &str = "clocks-timezone";

/// The HTTP handler Spin's HTTP trigger calls (any 0.2.x version).
const HTTP_HANDLER: &str = "wasi:http/incoming-handler@0.2";

/// One imported (or offered) interface.
#[derive(Debug)]
struct Interface {
    /// `namespace:package/interface`, without the version.
    name: String,
    version: Option<Version>,
    functions: BTreeSet<String>,
}

impl Interface {
    fn id(&self) -> String {
        match &self.version {
            Some(version) => format!("{}@{version}", self.name),
            None => self.name.clone(),
        }
    }

    /// Whether a host offering `self` links an import of `wanted`.
    fn links(&self, wanted: &Interface) -> bool {
        self.name == wanted.name
            && match (&self.version, &wanted.version) {
                (None, None) => true,
                (Some(offered), Some(wanted)) => semver_compatible(offered, wanted),
                _ => false,
            }
    }
}

/// Wasmtime's (and so Spin's) rule: same major, and same minor before 1.0; pre-releases
/// only as exactly that version.
fn semver_compatible(offered: &Version, wanted: &Version) -> bool {
    if !offered.pre.is_empty() || !wanted.pre.is_empty() {
        return offered == wanted;
    }
    offered.major == wanted.major && (offered.major > 0 || offered.minor == wanted.minor)
}

/// Fails, naming each one, when the component imports an interface or a function that
/// Spin's platform world does not offer, imports anything but interfaces, or does not
/// export the HTTP handler. Returns the imported interfaces.
pub fn check_imports(component: &[u8], workspace: &Path) -> anyhow::Result<Vec<String>> {
    let offered = platform_interfaces(workspace)?;
    let DecodedWasm::Component(resolve, world) =
        decode(component).context("decoding the composed component")?
    else {
        bail!("the artifact is a WIT package, not a component");
    };
    let mut problems = Vec::new();
    let imports = interfaces(&resolve, world, Direction::Imports, &mut problems);
    for wanted in &imports {
        match offered.iter().find(|offered| offered.links(wanted)) {
            None => problems.push(format!(
                "imports {}, which Spin's platform world does not offer",
                wanted.id()
            )),
            Some(offered) => problems.extend(wanted.functions.difference(&offered.functions).map(
                |function| {
                    format!(
                        "imports {}#{function}, which Spin's {} does not have",
                        wanted.id(),
                        offered.id()
                    )
                },
            )),
        }
    }
    let exports = interfaces(&resolve, world, Direction::Exports, &mut problems);
    if !exports
        .iter()
        .any(|export| export.id().starts_with(HTTP_HANDLER))
    {
        problems.push(format!("does not export {HTTP_HANDLER}.x"));
    }
    if problems.is_empty() {
        Ok(imports.iter().map(Interface::id).collect())
    } else {
        bail!("the Spin artifact {}", problems.join("; it "))
    }
}

/// The interfaces `component` imports (the portable component's check).
pub fn imported_interfaces(component: &[u8]) -> anyhow::Result<Vec<String>> {
    let DecodedWasm::Component(resolve, world) =
        decode(component).context("decoding the component")?
    else {
        bail!("a WIT package, not a component");
    };
    let mut problems = Vec::new();
    let imports = interfaces(&resolve, world, Direction::Imports, &mut problems);
    if !problems.is_empty() {
        bail!("the component {}", problems.join("; it "));
    }
    Ok(imports.iter().map(Interface::id).collect())
}

/// The interfaces of Spin's platform world.
fn platform_interfaces(workspace: &Path) -> anyhow::Result<Vec<Interface>> {
    let mut resolve = Resolve::new();
    // wasi:cli 0.2.12 names an interface behind this gate; gated items are left out of
    // the offer below.
    resolve.features.insert(UNSTABLE_FEATURE.to_owned());
    resolve
        .push_dir(workspace.join("wit"))
        .context("reading wit/")?;
    let (package, _) = resolve
        .push_dir(workspace.join("spin/wit"))
        .context("reading spin/wit/")?;
    let world = resolve.select_world(&[package], Some("platform"))?;
    let mut problems = Vec::new();
    let offered = interfaces(&resolve, world, Direction::Imports, &mut problems);
    if !problems.is_empty() {
        bail!("the platform world {}", problems.join(", "));
    }
    Ok(offered)
}

#[derive(Clone, Copy)]
enum Direction {
    Imports,
    Exports,
}

/// The world's imported or exported interfaces; anything else is reported in `problems`.
fn interfaces(
    resolve: &Resolve,
    world: WorldId,
    direction: Direction,
    problems: &mut Vec<String>,
) -> Vec<Interface> {
    let world = &resolve.worlds[world];
    let items = match direction {
        Direction::Imports => &world.imports,
        Direction::Exports => &world.exports,
    };
    let mut interfaces = Vec::new();
    for (key, item) in items {
        match item {
            WorldItem::Interface {
                stability: Stability::Unstable { .. },
                ..
            } => {}
            WorldItem::Interface { id, .. } => {
                let interface = &resolve.interfaces[*id];
                let package = interface
                    .package
                    .map(|package| &resolve.packages[package].name);
                let (Some(package), Some(name)) = (package, &interface.name) else {
                    problems.push(format!(
                        "has an unnamed interface {}",
                        resolve.name_world_key(key)
                    ));
                    continue;
                };
                interfaces.push(Interface {
                    name: format!("{}:{}/{name}", package.namespace, package.name),
                    version: package.version.clone(),
                    functions: interface.functions.keys().cloned().collect(),
                });
            }
            WorldItem::Function(function) => {
                problems.push(format!("has a bare function {}", function.name));
            }
            WorldItem::Type(_) => {}
        }
    }
    interfaces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interface(id: &str) -> Interface {
        let (name, version) = match id.split_once('@') {
            Some((name, version)) => (name, Version::parse(version).ok()),
            None => (id, None),
        };
        Interface {
            name: name.into(),
            version,
            functions: BTreeSet::new(),
        }
    }

    #[test]
    fn versions_link_as_in_wasmtime() {
        let offered = interface("wasi:cli/environment@0.2.6");
        assert!(offered.links(&interface("wasi:cli/environment@0.2.0")));
        assert!(offered.links(&interface("wasi:cli/environment@0.2.12")));
        assert!(!offered.links(&interface("wasi:cli/environment@0.3.0")));
        assert!(!offered.links(&interface("wasi:cli/stdin@0.2.6")));
        let sqlite = interface("spin:sqlite/sqlite@3.1.0");
        assert!(sqlite.links(&interface("spin:sqlite/sqlite@3.0.0")));
        assert!(!sqlite.links(&interface("spin:sqlite/sqlite@2.0.0")));
        let config = interface("wasi:config/store@0.2.0-draft-2024-09-27");
        assert!(config.links(&interface("wasi:config/store@0.2.0-draft-2024-09-27")));
        assert!(!config.links(&interface("wasi:config/store@0.2.0-draft")));
    }
}
