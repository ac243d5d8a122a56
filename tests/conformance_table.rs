//! The Send Document conformance matrix (docs/conformance/send-document.md) against the
//! requirements it answers: every entry of the GP Connect Messaging requirements file
//! (docs/conformance/senddoc_requirements.yml, an unchanged copy of the published one) has
//! exactly one row — in a sender table with its status, code and test, among the
//! receiver-side entries, or among the entries that are not requirements; no row names a
//! GP Connect id the file does not have; the summary's counts are the rows'; and every
//! file and function the matrix cites exists. Each test reports every problem at once.

#[path = "common/markdown_table.rs"]
mod markdown_table;
use markdown_table::{cells, is_separator};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

const MATRIX: &str = "docs/conformance/send-document.md";
const REQUIREMENTS: &str = "docs/conformance/senddoc_requirements.yml";
const README: &str = "docs/conformance/README.md";

/// A sender row's status: the four words the matrix uses.
const STATUSES: [&str; 4] = ["met", "partly", "not met", "n/a"];

/// The header of each kind of table (cells as written).
const SENDER: [&str; 6] = ["id", "asks", "status", "code", "test", "notes"];
const RECEIVER: [&str; 3] = ["id", "asks", "why not the sender's"];
const LABELS: [&str; 2] = ["id", "what it is"];
const SUMMARY: [&str; 6] = ["requirements", "met", "partly", "not met", "n/a", "rows"];

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// One entry of the requirements file: its id and area (`na` for the labels that are
/// not requirements).
#[derive(Debug)]
struct Requirement {
    id: String,
    area: String,
}

fn requirements() -> Vec<Requirement> {
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&read(REQUIREMENTS))
        .unwrap_or_else(|e| panic!("{REQUIREMENTS}: {e}"));
    let text = |r: &serde_yaml_ng::Value, key: &str| match &r[key] {
        serde_yaml_ng::Value::String(s) => s.clone(),
        serde_yaml_ng::Value::Null => String::new(),
        other => serde_yaml_ng::to_string(other).unwrap().trim().to_string(),
    };
    v["requirements"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{REQUIREMENTS}: no `requirements` list"))
        .iter()
        .map(|r| Requirement {
            id: text(r, "id"),
            area: text(r, "area"),
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sender,
    Receiver,
    Label,
    Summary,
}

/// One body row of a table: its line number, its table's kind and its cells.
#[derive(Debug)]
struct Row {
    line: usize,
    kind: Kind,
    cells: Vec<String>,
}

impl Row {
    fn cell(&self, i: usize) -> &str {
        self.cells.get(i).map(String::as_str).unwrap_or("")
    }
}

/// Every table's body rows, by the kind its header says; a table with a header of no
/// known kind is a problem.
fn tables(doc: &str) -> (Vec<Row>, Vec<String>) {
    let lines: Vec<&str> = doc.lines().collect();
    let (mut rows, mut problems) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i + 1 < lines.len() {
        if !(lines[i].trim_start().starts_with('|') && is_separator(lines[i + 1])) {
            i += 1;
            continue;
        }
        let header = cells(lines[i]);
        let kind = [
            (&SENDER[..], Kind::Sender),
            (&RECEIVER[..], Kind::Receiver),
            (&LABELS[..], Kind::Label),
            (&SUMMARY[..], Kind::Summary),
        ]
        .into_iter()
        .find(|(h, _)| header == *h)
        .map(|(_, k)| k);
        if kind.is_none() {
            problems.push(format!(
                "line {}: a table of no known kind: {header:?}",
                i + 1
            ));
        }
        i += 2;
        while i < lines.len() && lines[i].trim_start().starts_with('|') {
            if let Some(kind) = kind {
                rows.push(Row {
                    line: i + 1,
                    kind,
                    cells: cells(lines[i]),
                });
            }
            i += 1;
        }
    }
    (rows, problems)
}

/// The ids this matrix or the ITK3 pages give rows that are not in the requirements
/// file: the ITK3 pages' own (`FHIR-PAY-01`, `FHIR-V&V-01`, `RC-HS-01`), the handling
/// specification's (`ITK3-H-01`) and the MESH client rules' (`MESH-01`).
fn own_id(id: &str) -> bool {
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    let letters = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_uppercase() || c == '&');
    let parts: Vec<&str> = id.split('-').collect();
    match parts.as_slice() {
        ["FHIR", kind, n] => letters(kind) && two_digits(n),
        ["RC", "HS", n] | ["ITK3", "H", n] => two_digits(n),
        ["MESH", n] => two_digits(n),
        _ => false,
    }
}

/// Which summary line a sender row counts in.
fn group(id: &str) -> &'static str {
    if id.starts_with("MESH-") {
        "MESH"
    } else if own_id(id) {
        "ITK3"
    } else {
        "GP Connect"
    }
}

#[test]
fn every_requirement_has_one_row() {
    let reqs = requirements();
    assert!(
        reqs.len() > 90,
        "{REQUIREMENTS}: only {} entries",
        reqs.len()
    );
    let (rows, mut problems) = tables(&read(MATRIX));
    let areas: BTreeMap<&str, &str> = reqs
        .iter()
        .map(|r| (r.id.as_str(), r.area.as_str()))
        .collect();
    if areas.len() != reqs.len() {
        problems.push(format!("{REQUIREMENTS}: an id appears twice"));
    }
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.kind != Kind::Summary) {
        let (line, id) = (row.line, row.cell(0));
        if let Some(first) = seen.insert(id, line) {
            problems.push(format!(
                "line {line}: `{id}` has a row already (line {first})"
            ));
        }
        let in_file = areas.get(id).copied();
        match (row.kind, in_file) {
            (Kind::Sender, Some("na")) | (Kind::Receiver, Some("na")) => problems.push(format!(
                "line {line}: `{id}` is a label of the file (area na), not a requirement: list it \
                 among the entries that are not requirements"
            )),
            (Kind::Label, Some(area)) if area != "na" => problems.push(format!(
                "line {line}: `{id}` is a requirement (area {area}), not a label"
            )),
            (Kind::Sender, None) if own_id(id) => {}
            (_, None) => problems.push(format!(
                "line {line}: `{id}` is not in {REQUIREMENTS}{}",
                if own_id(id) {
                    " (the ITK3 and MESH ids belong in the sender tables)"
                } else {
                    ""
                }
            )),
            _ => {}
        }
        let filled = match row.kind {
            Kind::Sender => SENDER.len(),
            Kind::Receiver => RECEIVER.len(),
            Kind::Label => LABELS.len(),
            Kind::Summary => SUMMARY.len(),
        };
        if row.cells.len() != filled || row.cells.iter().any(String::is_empty) {
            problems.push(format!(
                "line {line}: `{id}`: every row fills its {filled} cells (`none` for no code or test, `—` for no notes)"
            ));
        }
        if row.kind != Kind::Sender {
            continue;
        }
        let status = row.cell(2);
        if !STATUSES.contains(&status) {
            problems.push(format!(
                "line {line}: `{id}`: status `{status}` is not one of {STATUSES:?}"
            ));
        }
        if matches!(status, "met" | "partly") && !row.cell(3).contains('`') {
            problems.push(format!(
                "line {line}: `{id}` is {status}: name the code that does it"
            ));
        }
        let test = row.cell(4);
        if test != "none" && !test.contains('`') {
            problems.push(format!(
                "line {line}: `{id}`: the test is `tests/<file>.rs::<fn>` or `src/<path>.rs::<fn>`, or none"
            ));
        }
        if status != "met" && row.cell(5).len() < 10 {
            problems.push(format!(
                "line {line}: `{id}` is {status}: the notes say why"
            ));
        }
    }
    for r in &reqs {
        if !seen.contains_key(r.id.as_str()) {
            problems.push(format!(
                "no row for `{}` (area {}): a sender row with its status, or a receiver-side \
                 line saying why it is not the sender's",
                r.id, r.area
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{MATRIX} against {REQUIREMENTS} ({} entries, {} rows):\n  {}",
        reqs.len(),
        seen.len(),
        problems.join("\n  ")
    );
}

#[test]
fn the_summary_counts_the_rows() {
    let (rows, _) = tables(&read(MATRIX));
    let mut counted: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.kind == Kind::Sender) {
        for g in [group(row.cell(0)), "all"] {
            *counted.entry((g, row.cell(2))).or_default() += 1;
            *counted.entry((g, "rows")).or_default() += 1;
        }
    }
    let of_kind = |k: Kind| rows.iter().filter(|r| r.kind == k).count();
    let summary: Vec<&Row> = rows.iter().filter(|r| r.kind == Kind::Summary).collect();
    let mut problems = Vec::new();
    let mut groups_seen = BTreeSet::new();
    for row in &summary {
        let label = row.cell(0);
        let g = [
            "GP Connect",
            "ITK3",
            "MESH",
            "all",
            "receiver-side",
            "[not requirements]",
        ]
        .into_iter()
        .find(|g| label.starts_with(g));
        let Some(g) = g else {
            problems.push(format!(
                "line {}: summary line `{label}` counts nothing known",
                row.line
            ));
            continue;
        };
        groups_seen.insert(g);
        for (i, column) in SUMMARY.iter().enumerate().skip(1) {
            let want = match g {
                "receiver-side" if *column == "rows" => of_kind(Kind::Receiver).to_string(),
                "[not requirements]" if *column == "rows" => of_kind(Kind::Label).to_string(),
                "receiver-side" | "[not requirements]" => "—".to_string(),
                _ => counted.get(&(g, *column)).copied().unwrap_or(0).to_string(),
            };
            if row.cell(i) != want {
                problems.push(format!(
                    "line {}: `{label}` {column}: {} in the summary, {want} in the rows",
                    row.line,
                    row.cell(i)
                ));
            }
        }
    }
    if groups_seen.len() != 6 {
        problems.push(format!(
            "the summary has {groups_seen:?}; it needs all six lines"
        ));
    }
    assert!(
        problems.is_empty(),
        "{MATRIX}: the summary\n  {}",
        problems.join("\n  ")
    );
}

/// Every span the text puts in backticks.
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// A cited item's definition in Rust: a function, constant, static or type of that name.
fn defines(code: &str, name: &str) -> bool {
    [
        format!("fn {name}("),
        format!("fn {name}<"),
        format!("const {name}:"),
        format!("static {name}:"),
        format!("struct {name} "),
        format!("struct {name}<"),
        format!("enum {name} "),
    ]
    .iter()
    .any(|d| code.contains(d.as_str()))
}

/// What a backticked span cites: a file and, with `::`, an item in it. Spans that name
/// no file of the repository (`Mex-To`, `met`) cite nothing.
fn citation(span: &str) -> Option<(&str, Option<&str>)> {
    let (file, item) = match span.split_once("::") {
        Some((f, i)) => (f, Some(i)),
        None => (span, None),
    };
    let looks_like_path = ["src/", "tests/", "docs/", "deploy/"]
        .iter()
        .any(|d| file.starts_with(d))
        && !file.contains(char::is_whitespace)
        && !file.contains(['<', '>', '*', '…']);
    let item_ok = item
        .is_none_or(|i| !i.is_empty() && i.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    (looks_like_path && item_ok).then_some((file, item))
}

#[test]
fn every_cited_file_and_function_exists() {
    let doc = read(MATRIX);
    let cited: BTreeSet<(&str, Option<&str>)> =
        backticked(&doc).into_iter().filter_map(citation).collect();
    assert!(
        cited
            .iter()
            .filter(|(f, i)| f.starts_with("tests/") && i.is_some())
            .count()
            > 10,
        "{MATRIX} cites hardly any test"
    );
    let mut problems = Vec::new();
    for (file, item) in &cited {
        let path = repo(file);
        match item {
            None if !path.exists() => problems.push(format!("`{file}`: no such file")),
            None => {}
            Some(item) => match std::fs::read_to_string(&path) {
                Ok(code) if file.ends_with(".rs") && defines(&code, item) => {}
                Ok(_) => problems.push(format!(
                    "`{file}::{item}`: no fn (or const) {item} in {file}"
                )),
                Err(_) => problems.push(format!("`{file}::{item}`: {file} does not exist")),
            },
        }
    }
    // Links to other pages of the repository, relative to the matrix.
    let dir = repo(MATRIX).parent().unwrap().to_path_buf();
    for target in doc.split("](").skip(1).filter_map(|t| t.split(')').next()) {
        let file = target.split('#').next().unwrap_or_default();
        if file.is_empty() || file.contains("://") {
            continue;
        }
        if !dir.join(file).exists() {
            problems.push(format!("link `{target}`: no such file"));
        }
    }
    assert!(
        problems.is_empty(),
        "{MATRIX} cites {} files and functions; these are missing:\n  {}",
        cited.len(),
        problems.join("\n  ")
    );
}

#[test]
fn the_requirements_file_is_the_published_copy() {
    let readme = read(README);
    let pinned = readme
        .lines()
        .find(|l| l.starts_with("| SHA-256 |"))
        .and_then(|l| backticked(l).first().copied())
        .unwrap_or_else(|| panic!("{README}: no `| SHA-256 |` line"));
    let bytes = std::fs::read(repo(REQUIREMENTS)).unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(&bytes)),
        pinned,
        "{REQUIREMENTS} is not the copy {README} names: copy it unchanged from the commit \
         named there (or update the commit and SHA-256 with it)"
    );
}

#[test]
fn the_matrix_is_read_as_written() {
    assert_eq!(
        cells("| GPCM-SD-040 | Ask. | met | `a` | none | `x\\|y` |"),
        ["GPCM-SD-040", "Ask.", "met", "`a`", "none", "`x|y`"]
    );
    assert!(is_separator("|---|:--|"));
    assert!(!is_separator("| a | b |"));
    for id in [
        "FHIR-PAY-01",
        "FHIR-V&V-02",
        "RC-HS-01",
        "ITK3-H-02",
        "MESH-09",
    ] {
        assert!(own_id(id), "{id}");
    }
    for id in ["GPCM-SD-040", "MESH-1", "FHIR-pay-01", "ITK3-S-01", "None"] {
        assert!(!own_id(id), "{id}");
    }
    assert_eq!(group("MESH-01"), "MESH");
    assert_eq!(group("FHIR-DOC-01"), "ITK3");
    assert_eq!(group("GPCM-C-01"), "GP Connect");
    assert_eq!(
        citation("tests/mesh_acks.rs::a_b"),
        Some(("tests/mesh_acks.rs", Some("a_b")))
    );
    assert_eq!(
        citation("src/record/pdf.rs"),
        Some(("src/record/pdf.rs", None))
    );
    for not_a_citation in [
        "Mex-To",
        "met",
        "tests/<file>.rs::<fn>",
        "src/….rs::f",
        "GPPROVIDER_…",
    ] {
        assert_eq!(citation(not_a_citation), None, "{not_a_citation}");
    }
    assert!(defines("pub async fn post(&self)", "post"));
    assert!(defines("fn send<'a>(&'a self)", "send"));
    assert!(defines("pub const INBOX_PAGE: usize = 500;", "INBOX_PAGE"));
    assert!(!defines("fn posted(&self)", "post"));
    let (rows, problems) = tables(
        "| id | asks | why not the sender's |\n|---|---|---|\n| X | a | b |\n\n| q |\n|---|\n| r |\n",
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].kind, Kind::Receiver);
    assert_eq!(problems.len(), 1, "{problems:?}");
}
