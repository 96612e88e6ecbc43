//! The codebase's large-scale rules (ARCHITECTURE.md, "Invariants"), checked on the source:
//! no module of any crate depends, through others, on itself; and the server's services
//! import no axum (HTTP is `src/api/`'s and the console's, `src/console/`).

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// A source file's module path (`api::feeds`; `""` for the crate root).
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

/// The code of a file without its unit tests (what tests use is not the module's
/// dependency).
fn code(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    match text.find("#[cfg(test)]") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// The modules `text` names as `crate::a::b…`, as the longest known module path.
fn named_modules(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
        for length in (1..=parts.len()).rev() {
            let candidate = parts[..length].join("::");
            if modules.contains(&candidate) {
                named.insert(candidate);
                break;
            }
        }
    }
    named
}

/// A cycle in `graph`, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

/// A module may use its ancestors' items (`crate::AppState`) and its own children; between
/// other modules, dependencies go one way only.
#[test]
fn no_crate_has_a_module_cycle() {
    let crates = workspace().join("crates");
    let mut checked = 0;
    for entry in std::fs::read_dir(&crates).unwrap() {
        let src = entry.unwrap().path().join("src");
        if !src.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let modules: BTreeMap<String, PathBuf> = files
            .iter()
            .map(|file| (module_of(&src, file), file.clone()))
            .collect();
        let names: BTreeSet<String> = modules.keys().cloned().collect();
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (module, file) in &modules {
            let related = |other: &String| {
                other.is_empty()
                    || other == module
                    || module.starts_with(&format!("{other}::"))
                    || other.starts_with(&format!("{module}::"))
            };
            let named = named_modules(&code(file), &names);
            graph.insert(
                module.clone(),
                named.into_iter().filter(|other| !related(other)).collect(),
            );
        }
        if let Some(cycle) = find_cycle(&graph) {
            panic!(
                "{}: the modules {} depend on each other; move what they share into one of them or a module below both",
                src.display(),
                cycle.join(" -> ")
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} crates found");
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(n, e)| (n.to_owned(), e.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(
        find_cycle(&graph).unwrap(),
        ["a", "b", "c", "a"].map(str::to_owned)
    );
}

/// HTTP is the `api` module's: the services it calls take and return plain values.
#[test]
fn the_servers_services_import_no_axum() {
    let src = workspace().join("crates/repnet-server/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    for file in files {
        let module = module_of(&src, &file);
        // The crate root assembles the router; `api` (the API) and `console` (the
        // administration console's pages) are the HTTP layers.
        let http = ["api", "console"]
            .iter()
            .any(|layer| module == *layer || module.starts_with(&format!("{layer}::")));
        if module.is_empty() || http {
            continue;
        }
        assert!(
            !code(&file).contains("axum"),
            "{} imports axum: handlers and extractors belong in src/api/ (or src/console/)",
            file.display()
        );
    }
}

/// Feeds reach the store through its bulk-import API only (and the prefix of the temporary
/// files the store cleans up at start), never its internals.
#[test]
fn feeds_use_only_the_stores_bulk_import_api() {
    const ALLOWED: &[&str] = &[
        "BulkImport",
        "Change",
        "Store",
        "StoreError",
        "TEMP_PREFIX",
        "bulk_import",
        "bulk_import_with_buffer",
    ];
    let src = workspace().join("crates/repnet-feeds/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    for file in files {
        let text = code(&file);
        for (at, _) in text.match_indices("repnet_store::") {
            let rest = &text[at + "repnet_store::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(list) => list[..list.find('}').unwrap()]
                    .split(',')
                    .map(str::trim)
                    .filter(|name| !name.is_empty())
                    .collect(),
                None => vec![
                    &rest[..rest
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len())],
                ],
            };
            for name in names {
                assert!(
                    ALLOWED.contains(&name),
                    "{} uses repnet_store::{name}: feeds go through the bulk-import API",
                    file.display()
                );
            }
        }
        for method in text.split("store.").skip(1) {
            let name: String = method
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `store.` ending a sentence of a comment names nothing.
            assert!(
                name.is_empty() || ALLOWED.contains(&name.as_str()),
                "{} calls store.{name}: feeds go through the bulk-import API",
                file.display()
            );
        }
    }
}
