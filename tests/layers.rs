//! The shape of `src/`, read from its own imports: which top-level module (a folder or a
//! file directly under `src/`) uses which. The intended order runs from the leaves up —
//! nothing may import a module above it:
//!
//! ```text
//! model, error < secret < store < mapping < intake, policy < record, deliver
//!   < engine < flows < sources < config, wiring < app, cli, http
//! ```
//!
//! The shape is not there yet (issue 17): the imports that run upward today are listed
//! in `KNOWN`, each a debt to pay. A new upward import fails this test; paying a debt and
//! forgetting to strike it from the list fails it too, so the list only shrinks.
//! `cargo nextest run --test layers --no-capture` prints the whole graph.

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
        "record" | "deliver" => 5,
        "engine" => 6,
        "flows" => 7,
        "sources" => 8,
        "config" | "wiring" => 9,
        "app" | "cli" | "http" | "lib" | "main" => 10,
        _ => return None,
    })
}

/// The upward imports `src/` has today, as (from, to): to be removed, never added to.
const KNOWN: &[(&str, &str)] = &[
    ("broker", "config"),
    ("deliver", "config"),
    ("engine", "config"),
    ("flows", "config"),
    ("flows", "wiring"),
    ("parking", "config"),
    ("retention", "config"),
    ("sources", "config"),
    ("sources", "wiring"),
];

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

/// Every `crate::X` a file names (in `use` lines and paths alike), outside its tests.
/// (A module that is only a test, such as `deliver/properties.rs`, is skipped whole.)
fn imports(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or(text);
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

#[test]
fn no_module_imports_one_above_it_beyond_the_known_debts() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let from = top_level(f.strip_prefix(&src).unwrap());
        // Modules that are only tests (declared under `#[cfg(test)]`).
        if f.file_name()
            .is_some_and(|n| n == "properties.rs" || n == "golden_records.rs")
        {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        for to in imports(&text) {
            if to != from && layer(&to).is_some() {
                graph.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    let mut unplaced: Vec<&String> = graph.keys().filter(|m| layer(m).is_none()).collect();
    unplaced.dedup();
    assert!(
        unplaced.is_empty(),
        "modules with no layer (place them in `layer`): {unplaced:?}"
    );
    let upward: BTreeSet<(String, String)> = graph
        .iter()
        .flat_map(|(from, tos)| tos.iter().map(move |to| (from.clone(), to.clone())))
        .filter(|(from, to)| layer(to) > layer(from))
        .collect();
    let known: BTreeSet<(String, String)> = KNOWN
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    for (from, tos) in &graph {
        println!(
            "{from} → {}",
            tos.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    println!(
        "{} upward imports (known debts: {})",
        upward.len(),
        known.len()
    );
    let new: Vec<_> = upward.difference(&known).collect();
    assert!(new.is_empty(), "imports that run upward: {new:?}");
    let paid: Vec<_> = known.difference(&upward).collect();
    assert!(
        paid.is_empty(),
        "debts paid: strike them from KNOWN so they cannot come back: {paid:?}"
    );
}
