//! Tidy checks of the source trees of central and the edge agent, run by `make test` with every
//! other test: each crate's top-level modules import each other in one direction only (no
//! cycles, so each layer could become a crate of its own by a move), and central's service
//! layer knows nothing of HTTP or HTML.
//!
//! Read from the source text: every `crate::<module>` outside comments and test code (a
//! `tests.rs` or `tests/` beside the module, a trailing `#[cfg(test)] mod tests`) in a file
//! under `src/<module>/` or `src/<module>.rs` is an edge from `<module>` to that module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A crate's source folder, from the workspace root.
fn src(krate: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("src")
}

fn central() -> PathBuf {
    src("services/central")
}

fn agent() -> PathBuf {
    src("edge-agent")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let test_code = path
            .file_name()
            .is_some_and(|n| n == "tests" || n == "tests.rs");
        if test_code {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its comments (whole-line and trailing `//` comments) and without
/// a trailing test module.
fn code(text: &str) -> String {
    let text = text
        .find("#[cfg(test)]\nmod tests")
        .map_or(text, |at| &text[..at]);
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("//") {
                ""
            } else {
                line.split(" // ").next().unwrap_or(line)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module a library file of the crate at `src` belongs to; `None` for the crate
/// root, `main.rs` and central's command line.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative
        .components()
        .next()?
        .as_os_str()
        .to_str()?
        .to_string();
    match first.as_str() {
        "lib.rs" | "main.rs" | "cli" => None,
        _ => Some(first.trim_end_matches(".rs").to_string()),
    }
}

/// Every module each top-level module of the crate at `src` names with `crate::`.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(from) = module_of(src, &file) else {
            continue;
        };
        let text = code(&std::fs::read_to_string(&file).unwrap());
        let edges = graph.entry(from.clone()).or_default();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let mut names: Vec<String> = Vec::new();
            if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a, b::c}`: the first segment of each item.
                let group = &group[..group.find('}').unwrap_or(group.len())];
                names.extend(group.split(',').map(|item| {
                    item.trim()
                        .split("::")
                        .next()
                        .unwrap_or_default()
                        .to_string()
                }));
            } else {
                names.push(
                    rest.chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect(),
                );
            }
            for name in names {
                if !name.is_empty() && name != from && name != "self" {
                    edges.insert(name);
                }
            }
        }
    }
    graph
}

/// The cycles of `graph` (each as the path that closes it), found by depth-first search.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        found: &mut Vec<Vec<String>>,
    ) {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            found.push(cycle);
            return;
        }
        if done.contains(node) {
            return;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, path, done, found);
        }
        path.pop();
        done.insert(node.to_string());
    }
    let (mut done, mut found) = (BTreeSet::new(), Vec::new());
    for node in graph.keys() {
        visit(node, graph, &mut Vec::new(), &mut done, &mut found);
    }
    found
}

#[test]
fn the_cycle_finder_finds_cycles_and_only_cycles() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
        }
        g
    };
    assert!(
        cycles(&graph(&[
            ("api", "store"),
            ("web", "store"),
            ("routes", "api")
        ]))
        .is_empty()
    );
    let found = cycles(&graph(&[
        ("store", "audit_report"),
        ("audit_report", "store"),
    ]));
    assert_eq!(found, vec![vec!["audit_report", "store", "audit_report"]]);
    assert_eq!(
        code("use crate::a; // crate::b\n// crate::c\n"),
        "use crate::a;\n"
    );
}

/// Fails, naming each cycle, when the crate at `src` has any.
fn assert_no_cycles(name: &str, src: &Path, expected: &[&str]) {
    let graph = graph(src);
    assert!(
        graph.len() >= 15 && expected.iter().all(|m| graph.contains_key(*m)),
        "the module reader found too little in {name}: {graph:?}"
    );
    let found = cycles(&graph);
    assert!(
        found.is_empty(),
        "{name}'s modules import each other in circles (each a path back to where it \
         started); make one side stop naming the other:\n  {}",
        found
            .iter()
            .map(|c| c.join(" → "))
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

#[test]
fn central_s_top_level_modules_have_no_cycles() {
    assert_no_cycles("central", &central(), &["store", "service", "routes"]);
}

#[test]
fn the_agent_s_top_level_modules_have_no_cycles() {
    assert_no_cycles(
        "the edge agent",
        &agent(),
        &["national", "lookup", "filex", "folder", "observed", "cards"],
    );
}

#[test]
fn the_service_layer_knows_no_http_or_html() {
    let mut files = Vec::new();
    rust_files(&central().join("service"), &mut files);
    assert!(!files.is_empty(), "no src/service/");
    for file in files {
        let text = code(&std::fs::read_to_string(&file).unwrap());
        for forbidden in [
            "axum",
            "maud",
            "hyper",
            "crate::web",
            "crate::api",
            "crate::routes",
        ] {
            assert!(
                !text.contains(forbidden),
                "{} names {forbidden}: the service layer is called by the interfaces, it does \
                 not know them",
                file.display()
            );
        }
    }
}
