//! The shape of `src/`, read from its own imports: which top-level module (a folder or a
//! file directly under `src/`) uses which. The intended order runs from the leaves up —
//! nothing may import a module above it:
//!
//! ```text
//! model, error < secret < store < mapping < intake, policy < record, deliver, dataset
//!   < engine < flows < sources < config, wiring < ig < app, cli, http
//! ```
//!
//! Modules of one layer may import each other, but never in a circle. Source files stay
//! under 600 lines, configuration files (`src/config/`, and each component's own
//! section file) under 400: a file past that is two things. `cargo nextest run --test
//! layers --no-capture` prints the whole graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module's layer (higher may import lower, never the reverse).
fn layer(module: &str) -> Option<u8> {
    Some(match module {
        "model" | "error" => 0,
        "secret" => 1,
        "store" => 2,
        "mapping" => 3,
        "intake" | "policy" => 4,
        "record" | "deliver" | "dataset" => 5,
        "engine" => 6,
        "flows" => 7,
        "sources" => 8,
        "config" | "wiring" => 9,
        "ig" => 10,
        "app" | "cli" | "http" | "lib" | "main" => 11,
        _ => return None,
    })
}

fn top_level(rel: &Path) -> String {
    let first = rel.components().next().unwrap();
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_string()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every `crate::X` a file names (in `use` lines, paths and comments alike), its tests
/// included: a test module, too, must import downward.
fn imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
        // `use crate::{a, b::c}` names several.
        if let Some(group) = rest.strip_prefix('{') {
            for part in group.split('}').next().unwrap_or("").split(',') {
                let n: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !n.is_empty() {
                    out.insert(n);
                }
            }
        }
    }
    out
}

/// The graph between top-level modules: who imports whom (tests left out).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let from = top_level(f.strip_prefix(&src).unwrap());
        let text = std::fs::read_to_string(f).unwrap();
        for to in imports(&text) {
            if to != from && layer(&to).is_some() {
                graph.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    graph
}

#[test]
fn no_module_imports_one_above_it() {
    let graph = graph();
    for (from, tos) in &graph {
        println!(
            "{from} → {}",
            tos.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let unplaced: Vec<&String> = graph.keys().filter(|m| layer(m).is_none()).collect();
    assert!(
        unplaced.is_empty(),
        "modules with no layer (place them in `layer`): {unplaced:?}"
    );
    let upward: Vec<(String, String)> = graph
        .iter()
        .flat_map(|(from, tos)| tos.iter().map(move |to| (from.clone(), to.clone())))
        .filter(|(from, to)| layer(to) > layer(from))
        .collect();
    println!("{} upward imports", upward.len());
    assert!(upward.is_empty(), "imports that run upward: {upward:?}");
}

#[test]
fn no_modules_import_each_other_in_a_circle() {
    let graph = graph();
    // Depth-first search for a back edge, reporting the circle it closes.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut circle = path[i..].to_vec();
            circle.push(m.to_string());
            return Some(circle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for to in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(to, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        let circle = visit(m, &graph, &mut Vec::new(), &mut done);
        assert!(
            circle.is_none(),
            "an import circle: {}",
            circle.unwrap().join(" → ")
        );
    }
}

/// A configuration file: the composition in `src/config/`, or a component's own section.
fn is_configuration(rel: &Path, text: &str) -> bool {
    rel.starts_with("config")
        || (rel.file_name().is_some_and(|n| {
            let n = n.to_string_lossy();
            n == "config.rs" || n == "settings.rs" || n.ends_with("_config.rs")
        }) && text.contains("#[derive(")
            && text.contains("Deserialize"))
}

#[test]
fn no_source_file_over_600_lines_nor_configuration_file_over_400() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut over = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let text = std::fs::read_to_string(f).unwrap();
        let lines = text.lines().count();
        let limit = if is_configuration(rel, &text) {
            400
        } else {
            600
        };
        if lines > limit {
            over.push(format!("{} ({lines} > {limit})", rel.display()));
        }
    }
    assert!(over.is_empty(), "files too long: {over:?}");
}
