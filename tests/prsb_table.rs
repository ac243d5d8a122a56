//! The PRSB mapping table (docs/prsb-mapping.md) against the standard it maps: every
//! group and item of the PRSB Social Prescribing Information Standard v1.1, read from the
//! repository's copy of its model (docs/standards/prsb-social-prescribing/), has one row
//! in the table, in the model's order, with the model's own flag and cardinality; and
//! every test the table cites exists. Each test reports every problem at once.

#[path = "common/markdown_table.rs"]
mod markdown_table;
use markdown_table::{cells, is_separator};

use std::path::{Path, PathBuf};

use serde_json::Value;

const MODEL: &str = "docs/standards/prsb-social-prescribing/SocialPrescribing.json";
const TABLE: &str = "docs/prsb-mapping.md";
/// The first header cell of the mapping tables (other tables in the doc are not rows).
const PATH_HEADER: &str = "PRSB path";

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// One group or item of the model: its path of names, flag and cardinality as the table
/// writes them.
#[derive(Debug)]
struct Concept {
    path: String,
    flag: String,
    cardinality: String,
}

/// A multiplicity as written in the model (a string such as "1" or "*", or a number).
fn multiplicity(c: &Value, key: &str, path: &str) -> String {
    match &c[key] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("{MODEL}: {path}: {key} is {other}"),
    }
}

/// Every concept below `concepts`, depth first, in the model's order. A name's surrounding
/// spaces are not part of it (the model has "Coded value " beside "Coded value").
fn walk(concepts: &Value, parent: &[String], out: &mut Vec<Concept>) {
    for c in concepts.as_array().into_iter().flatten() {
        let name = c["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{MODEL}: a concept under {parent:?} has no name"));
        let mut names = parent.to_vec();
        names.push(name.trim().to_string());
        let path = names.join(" / ");
        out.push(Concept {
            flag: c["mro"].as_str().unwrap_or("—").to_string(),
            cardinality: format!(
                "{}..{}",
                multiplicity(c, "minimumMultiplicity", &path),
                multiplicity(c, "maximumMultiplicity", &path)
            ),
            path,
        });
        walk(&c["concept"], &names, out);
    }
}

fn model() -> Vec<Concept> {
    let v: Value = serde_json::from_str(&read(MODEL)).unwrap();
    let dataset = &v["dataset"][0];
    assert_eq!(
        dataset["name"], "Social Prescribing",
        "{MODEL}: the dataset"
    );
    assert_eq!(dataset["version"], "1.1", "{MODEL}: the version");
    let mut out = Vec::new();
    walk(&dataset["concept"], &[], &mut out);
    out
}

/// The body rows of every mapping table in the doc, with their line numbers.
fn mapping_rows(doc: &str) -> Vec<(usize, Vec<String>)> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < lines.len() {
        let header = lines[i].trim_start().starts_with('|') && is_separator(lines[i + 1]);
        if header && cells(lines[i]).first().map(String::as_str) == Some(PATH_HEADER) {
            i += 2;
            while i < lines.len() && lines[i].trim_start().starts_with('|') {
                out.push((i + 1, cells(lines[i])));
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn every_item_of_the_standard_is_in_the_mapping_table() {
    let concepts = model();
    let doc = read(TABLE);
    let rows = mapping_rows(&doc);
    let mut problems = Vec::new();
    let mut found = Vec::new();
    for c in &concepts {
        let matching: Vec<&(usize, Vec<String>)> =
            rows.iter().filter(|(_, r)| r[0] == c.path).collect();
        let Some((line, row)) = matching.first() else {
            problems.push(format!(
                "no row for `{}` ({} {})",
                c.path, c.flag, c.cardinality
            ));
            continue;
        };
        if matching.len() > 1 {
            problems.push(format!("{} rows for `{}`", matching.len(), c.path));
        }
        found.push(*line);
        let cell = |i: usize| row.get(i).map(String::as_str).unwrap_or("(missing)");
        if cell(1) != c.flag {
            problems.push(format!(
                "line {line}: `{}`: flag {} in the table, {} in the standard",
                c.path,
                cell(1),
                c.flag
            ));
        }
        if cell(2) != c.cardinality {
            problems.push(format!(
                "line {line}: `{}`: cardinality {} in the table, {} in the standard",
                c.path,
                cell(2),
                c.cardinality
            ));
        }
        if row.len() < 7 || row[3..7].iter().any(String::is_empty) {
            problems.push(format!(
                "line {line}: `{}`: every row fills its seven cells (`—` for none)",
                c.path
            ));
        }
    }
    for (line, row) in &rows {
        if !concepts.iter().any(|c| c.path == row[0]) {
            problems.push(format!(
                "line {line}: `{}` is no group or item of the standard",
                row[0]
            ));
        }
    }
    if problems.is_empty() && !found.is_sorted() {
        problems.push("the rows are not in the standard's order".to_string());
    }
    assert!(
        problems.is_empty(),
        "{TABLE} against {MODEL} ({} groups and items, {} rows):\n  {}",
        concepts.len(),
        rows.len(),
        problems.join("\n  ")
    );
}

/// Every `<dir>/<path>.rs::<function>` the text cites, as (file, function).
fn citations(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for dir in ["tests/", "src/"] {
        for (i, _) in text.match_indices(dir) {
            // A path starts the citation: not the tail of a longer one.
            if text[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '/' | '.'))
            {
                continue;
            }
            let tail = &text[i..];
            let file: String = tail
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/' | '.'))
                .collect();
            let Some(item) = tail[file.len()..].strip_prefix("::") else {
                continue;
            };
            let name: String = item
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if file.ends_with(".rs") && !name.is_empty() {
                out.push((file, name));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn every_cited_test_exists() {
    let cited = citations(&read(TABLE));
    assert!(!cited.is_empty(), "{TABLE} cites no test");
    let mut problems = Vec::new();
    for (file, name) in &cited {
        match std::fs::read_to_string(repo(file)) {
            Ok(code) => {
                if !code.contains(&format!("fn {name}(")) && !code.contains(&format!("fn {name}<"))
                {
                    problems.push(format!("{file}::{name}: no fn {name} in {file}"));
                }
            }
            Err(_) => problems.push(format!("{file}::{name}: {file} does not exist")),
        }
    }
    assert!(
        problems.is_empty(),
        "{TABLE} cites {} tests; these are missing:\n  {}",
        cited.len(),
        problems.join("\n  ")
    );
}

#[test]
fn citations_and_cells_are_read_as_written() {
    assert_eq!(
        citations("`tests/intake.rs::consent_states`; src/policy/prsb.rs::a_b, not tests/x.rs"),
        vec![
            ("src/policy/prsb.rs".to_string(), "a_b".to_string()),
            ("tests/intake.rs".to_string(), "consent_states".to_string()),
        ]
    );
    assert_eq!(
        cells("| a / b | M | 1..* | `x\\|y` | — |"),
        vec!["a / b", "M", "1..*", "`x|y`", "—"]
    );
    assert!(is_separator("|---|:--|"));
    assert!(!is_separator("| a | b |"));
}
