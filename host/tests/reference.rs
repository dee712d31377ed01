//! The drift test of the reference (`docs/reference.md`): it lists every setting the
//! code reads — the native host's, the mail's and the component's `PORTCULLIS_*`
//! variables (the lists in `settings`, which unit tests keep equal to what the parsers
//! read) and Spin's variables (`spin.toml` and the `*_SETTING` names of `spin/`) — and
//! nothing else. No `PORTCULLIS_*` name the code or the docs mention is missing from it,
//! and no link of the project's docs leaves the repository except to a public site.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use portcullis::settings::{TEST_VARIABLES, known_keys};

/// Names that look like settings but are the build's own: `build.rs` hands the
/// component's path to the compiler in `PORTCULLIS_COMPONENT_WASM`.
const BUILD_VARIABLES: &[&str] = &["PORTCULLIS_COMPONENT_WASM"];
/// The misspelt name the reference shows to explain the "did you mean" warning.
const EXAMPLE_TYPOS: &[&str] = &["PORTCULLIS_MAX_SESIONS"];
/// The heading of the reference's table of Spin-only variables.
const SPIN_SECTION: &str = "### Spin variables";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn reference() -> String {
    read(&workspace().join("docs/reference.md"))
}

/// Every `PORTCULLIS_NAME` in `text` (a prefix such as `PORTCULLIS_ADMIN_*` is none).
fn variable_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("PORTCULLIS_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        // `PORTCULLIS_ADMIN_*` or `PORTCULLIS_` name groups, not a variable.
        let is_prefix = tail[..end].ends_with('_');
        if !is_prefix && end > "PORTCULLIS_".len() {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end.max(1)..];
    }
    names
}

/// The names in the first cell of `text`'s table rows (`| \`NAME\` | …`).
fn row_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|cell| cell.split_once("` |").map(|(name, _)| name.to_owned()))
        .collect()
}

/// The text of the reference's Spin-only section.
fn spin_section(reference: &str) -> &str {
    let start = reference
        .find(SPIN_SECTION)
        .unwrap_or_else(|| panic!("docs/reference.md has no `{SPIN_SECTION}` section"));
    let section = &reference[start + SPIN_SECTION.len()..];
    let end = section.find("\n## ").unwrap_or(section.len());
    &section[..end]
}

/// Every file under `dir` (recursively) whose name ends with `suffix`.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() && !matches!(name.as_str(), "target" | "node_modules" | ".git") {
            found.extend(files(&path, suffix));
        } else if name.ends_with(suffix) {
            found.push(path);
        }
    }
    found
}

fn as_variable(key: &str) -> String {
    format!("PORTCULLIS_{}", key.to_uppercase())
}

#[test]
fn the_reference_lists_exactly_the_settings_the_code_reads() {
    let documented: BTreeSet<String> = row_names(&reference())
        .into_iter()
        .filter(|name| name.starts_with("PORTCULLIS_"))
        .collect();
    let read: BTreeSet<String> = known_keys()
        .into_iter()
        .map(as_variable)
        .chain(TEST_VARIABLES.iter().map(|name| name.to_string()))
        .collect();
    let missing: Vec<_> = read.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&read).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/reference.md's tables of settings drifted from the code:\n  read by the code \
         but not listed: {missing:?}\n  listed but not read by the code: {stale:?}"
    );
}

#[test]
fn every_portcullis_name_in_code_and_docs_is_a_documented_setting() {
    let root = workspace();
    let documented = row_names(&reference());
    let mut sources = Vec::new();
    for dir in [
        "host/src",
        "host/build.rs",
        "component/src",
        "spin",
        "tests",
    ] {
        let path = root.join(dir);
        if path.is_file() {
            sources.push(path);
        } else {
            sources.extend(files(&path, ".rs"));
        }
    }
    sources.extend(files(&root.join("docs"), ".md"));
    sources.push(root.join("README.md"));
    sources.push(root.join("spin.toml"));
    let mut undocumented = BTreeSet::new();
    for path in sources {
        for name in variable_names(&read(&path)) {
            let exempt =
                BUILD_VARIABLES.contains(&name.as_str()) || EXAMPLE_TYPOS.contains(&name.as_str());
            if !documented.contains(&name) && !exempt {
                let shown = path.strip_prefix(&root).unwrap_or(&path).display();
                undocumented.insert(format!("{name} ({shown})"));
            }
        }
    }
    assert!(
        undocumented.is_empty(),
        "PORTCULLIS_* names that docs/reference.md does not list: {undocumented:?}"
    );
}

#[test]
fn the_reference_lists_exactly_the_spin_variables() {
    let root = workspace();
    let manifest: toml::Table = toml::from_str(&read(&root.join("spin.toml"))).unwrap();
    let declared: BTreeSet<String> = manifest
        .get("variables")
        .and_then(toml::Value::as_table)
        .expect("spin.toml has [variables]")
        .keys()
        .cloned()
        .collect();
    let component: BTreeSet<String> = portcullis_component::settings::KEYS
        .iter()
        .map(|key| key.to_string())
        .collect();
    let spin_only = row_names(spin_section(&reference()));
    // What the Spin components read by name.
    let mut read_by_spin = BTreeSet::new();
    for path in files(&root.join("spin"), ".rs") {
        for line in read(&path).lines() {
            if let Some((_, value)) = line.split_once("_SETTING: &str = \"") {
                read_by_spin.insert(value.trim_end_matches("\";").to_owned());
            }
        }
    }
    assert!(
        !read_by_spin.is_empty(),
        "no *_SETTING names found in spin/"
    );
    let undeclared: Vec<_> = read_by_spin.difference(&declared).collect();
    assert!(
        undeclared.is_empty(),
        "read by spin/ but not in spin.toml: {undeclared:?}"
    );
    let undocumented: Vec<_> = declared
        .iter()
        .filter(|name| !component.contains(*name) && !spin_only.contains(*name))
        .collect();
    assert!(
        undocumented.is_empty(),
        "spin.toml variables docs/reference.md does not list: {undocumented:?}"
    );
    let stale: Vec<_> = spin_only.difference(&declared).collect();
    assert!(
        stale.is_empty(),
        "Spin variables listed in docs/reference.md but not in spin.toml: {stale:?}"
    );
}

#[test]
fn no_link_of_the_docs_leaves_the_repository_except_to_public_sites() {
    let root = workspace();
    let mut documents = files(&root.join("docs"), ".md");
    documents.extend(files(&root.join("examples"), ".md"));
    for name in [
        "README.md",
        "ARCHITECTURE.md",
        "SECURITY.md",
        "BENCHMARKS.md",
    ] {
        documents.push(root.join(name));
    }
    let root = root.canonicalize().unwrap();
    let mut broken = Vec::new();
    for document in documents.iter().filter(|path| path.exists()) {
        let text = read(document);
        for (_, after) in text
            .match_indices("](")
            .map(|(at, _)| text.split_at(at + 2))
        {
            let Some(target) = after.split(')').next() else {
                continue;
            };
            let target = target.split('#').next().unwrap_or_default();
            let public = ["https://", "http://", "mailto:"]
                .iter()
                .any(|scheme| target.starts_with(scheme));
            if target.is_empty() || public {
                continue;
            }
            let resolved = document.parent().unwrap().join(target).canonicalize();
            match resolved {
                Ok(path) if path.starts_with(&root) => {}
                _ => broken.push(format!("{} → {target}", document.display())),
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links that leave the repository or lead nowhere: {broken:?}"
    );
}
