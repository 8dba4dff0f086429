//! Tidy checks of central's source tree, run by `make test` with every other test: the
//! top-level modules import each other in one direction only (no cycles, so each layer could
//! become a crate of its own by a move), and the service layer knows nothing of HTTP or HTML.
//!
//! Read from the source text: every `crate::<module>` outside comments in a file under
//! `src/<module>/` or `src/<module>.rs` is an edge from `<module>` to that module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The library's source folder (`main.rs` and the binary's `cli/` are not the library).
fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its comments (whole-line and trailing `//` comments).
fn code(text: &str) -> String {
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

/// The top-level module a library file belongs to; `None` for the crate root and the binary.
fn module_of(file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src()).unwrap();
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

/// Every module each top-level module names with `crate::`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(from) = module_of(&file) else {
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

#[test]
fn central_s_top_level_modules_have_no_cycles() {
    let graph = graph();
    assert!(
        graph.len() >= 20 && graph.contains_key("store") && graph.contains_key("service"),
        "the module reader found too little: {graph:?}"
    );
    let found = cycles(&graph);
    assert!(
        found.is_empty(),
        "central's modules import each other in circles (each a path back to where it \
         started); make one side stop naming the other:\n  {}",
        found
            .iter()
            .map(|c| c.join(" → "))
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

#[test]
fn the_service_layer_knows_no_http_or_html() {
    let mut files = Vec::new();
    rust_files(&src().join("service"), &mut files);
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
