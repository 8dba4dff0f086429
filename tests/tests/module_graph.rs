//! Tidy checks of the source trees and manifests of central's crates and the edge agent, run by
//! `make test` with every other test:
//!
//! - each crate's top-level modules import each other in one direction only (no cycles, so each
//!   layer could become a crate of its own by a move);
//! - central's crates keep their boundaries in their manifests: only `central-store` depends on
//!   PostgreSQL's client crates, only `central-http` on axum or maud (their `[dependencies]` and
//!   `[build-dependencies]`; a test binary's `[dev-dependencies]` may use anything);
//! - central's service layer names nothing of HTTP or HTML.
//!
//! Module edges are read from the source text: every `crate::<module>` outside comments and
//! test code (a `tests.rs` or `tests/` beside the module, a trailing `#[cfg(test)] mod tests`)
//! in a file under `src/<module>/` or `src/<module>.rs` is an edge from `<module>` to that
//! module, and so is a `super::<module>` that climbs back to the crate root.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A crate's source folder, from the workspace root.
fn src(krate: &str) -> PathBuf {
    root().join(krate).join("src")
}

/// Central's crates: every folder under `services/` named `central` or `central-*`, so a new
/// one is checked without being listed here.
fn central_crates() -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(root().join("services"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name == "central" || name.starts_with("central-"))
        .collect();
    found.sort();
    for expected in [
        "central",
        "central-core",
        "central-http",
        "central-ingest",
        "central-store",
    ] {
        assert!(
            found.iter().any(|name| name == expected),
            "services/{expected} is missing (found {found:?})"
        );
    }
    found
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

/// The first segment of each path that starts at `rest` (just after `crate::` or `super::`):
/// `a::b` gives `a`, `{a, b::c}` gives `a` and `b`.
fn first_segments(rest: &str) -> Vec<String> {
    if let Some(group) = rest.strip_prefix('{') {
        let group = &group[..group.find('}').unwrap_or(group.len())];
        group
            .split(',')
            .map(|item| {
                item.trim()
                    .split("::")
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    } else {
        vec![
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect(),
        ]
    }
}

/// How many modules deep a file is below the crate root: `src/a.rs` and `src/a/mod.rs` are 1,
/// `src/a/b.rs` is 2; so `super::` repeated that many times names the crate root.
fn depth(src: &Path, file: &Path) -> usize {
    let relative = file.strip_prefix(src).unwrap();
    let components = relative.components().count();
    if relative.file_name().is_some_and(|n| n == "mod.rs") {
        components - 1
    } else {
        components
    }
}

/// The top-level modules a file's code names: with `crate::`, or with as many `super::` as
/// climb back to the crate root from a file `depth` modules deep.
fn names_in(text: &str, depth: usize) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        names.extend(first_segments(rest));
    }
    let mut at = 0;
    while let Some(found) = text[at..].find("super::") {
        let start = at + found;
        let mut end = start;
        let mut climbs = 0;
        while text[end..].starts_with("super::") {
            end += "super::".len();
            climbs += 1;
        }
        let preceded = text[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        if climbs == depth && !preceded {
            names.extend(first_segments(&text[end..]));
        }
        at = end;
    }
    names
}

/// Every module each top-level module of the crate at `src` names.
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
        for name in names_in(&text, depth(src, &file)) {
            if !name.is_empty() && name != from && name != "self" && name != "super" {
                edges.insert(name);
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
    let text = "use super::{a, b::c};\nuse super::super::d;\nsuper::e::f();\n";
    assert_eq!(names_in(text, 1), ["a", "b", "e"]);
    assert_eq!(names_in(text, 2), ["d"]);
}

/// Fails, naming each cycle, when the crate at `src` has any.
fn assert_no_cycles(name: &str, src: &Path, expected: &[&str]) {
    let graph = graph(src);
    assert!(
        expected.iter().all(|m| graph.contains_key(*m)),
        "the module reader found too little in {name} (expected {expected:?}): {graph:?}"
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
fn no_central_crate_has_module_cycles() {
    for krate in central_crates() {
        let expected: &[&str] = match krate.as_str() {
            "central" => &["app", "health"],
            "central-store" => &["accounts", "alerts", "audit", "conn", "migrate", "scope"],
            "central-core" => &["auth", "error", "notify", "service"],
            "central-ingest" => &["ingest", "writer"],
            "central-http" => &["api", "routes", "web"],
            _ => &[],
        };
        assert_no_cycles(&krate, &src(&format!("services/{krate}")), expected);
    }
}

#[test]
fn the_agent_s_top_level_modules_have_no_cycles() {
    assert_no_cycles(
        "the edge agent",
        &agent(),
        &["national", "lookup", "filex", "folder", "observed", "cards"],
    );
}

/// The dependencies a manifest's `[dependencies]` and `[build-dependencies]` name (tables
/// `[dependencies.x]` included); `[dev-dependencies]` are test code and not read.
fn dependencies(manifest: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut section = String::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_string();
            for table in ["dependencies.", "build-dependencies."] {
                if let Some(name) = section.strip_prefix(table) {
                    names.insert(name.to_string());
                }
            }
            continue;
        }
        if (section == "dependencies" || section == "build-dependencies")
            && !line.is_empty()
            && !line.starts_with('#')
        {
            let key = line.split(['=', '.']).next().unwrap_or_default().trim();
            names.insert(key.trim_matches('"').to_string());
        }
    }
    names
}

/// What a central crate may not depend on: PostgreSQL's client crates outside the store, axum
/// and maud outside the HTTP crate. Each as (dependency, the crate that alone may have it).
const OWNED_DEPENDENCIES: [(&str, &str); 5] = [
    ("tokio-postgres", "central-store"),
    ("deadpool-postgres", "central-store"),
    ("postgres-types", "central-store"),
    ("axum", "central-http"),
    ("maud", "central-http"),
];

/// The boundary a central crate's manifest breaks, one line each.
fn broken_boundaries(krate: &str, manifest: &str) -> Vec<String> {
    let names = dependencies(manifest);
    OWNED_DEPENDENCIES
        .iter()
        .filter(|(dependency, owner)| names.contains(*dependency) && krate != *owner)
        .map(|(dependency, owner)| {
            format!("{krate} depends on {dependency}: only {owner} may (move the code there)")
        })
        .collect()
}

#[test]
fn the_boundary_check_reads_dependencies_and_finds_a_forbidden_one() {
    let manifest = "[package]\nname = \"central-core\"\n\n[dependencies]\n\
                    central-store.workspace = true\naxum = { workspace = true }\n\n\
                    [dependencies.maud]\nworkspace = true\n\n[dev-dependencies]\n\
                    tokio-postgres.workspace = true\n";
    assert_eq!(
        dependencies(manifest),
        BTreeSet::from(["axum".to_string(), "central-store".into(), "maud".into()])
    );
    assert_eq!(
        broken_boundaries("central-core", manifest),
        [
            "central-core depends on axum: only central-http may (move the code there)",
            "central-core depends on maud: only central-http may (move the code there)",
        ]
    );
    assert!(broken_boundaries("central-http", manifest).is_empty());
    assert_eq!(
        broken_boundaries("central", "[dependencies]\ntokio-postgres = \"0.7\"\n").len(),
        1
    );
}

#[test]
fn only_the_store_knows_postgres_and_only_the_http_crate_axum_and_maud() {
    let mut broken = Vec::new();
    for krate in central_crates() {
        let path = root().join("services").join(&krate).join("Cargo.toml");
        let manifest =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            manifest.contains(&format!("name = \"{krate}\"")),
            "{}: the folder is named like its crate",
            path.display()
        );
        broken.extend(broken_boundaries(&krate, &manifest));
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn the_service_layer_knows_no_http_or_html() {
    let mut files = Vec::new();
    rust_files(&src("services/central-core").join("service"), &mut files);
    assert!(!files.is_empty(), "no services/central-core/src/service/");
    for file in files {
        let text = code(&std::fs::read_to_string(&file).unwrap());
        for forbidden in ["axum", "maud", "hyper", "central_http"] {
            assert!(
                !text.contains(forbidden),
                "{} names {forbidden}: the service layer is called by the interfaces, it does \
                 not know them",
                file.display()
            );
        }
    }
}
