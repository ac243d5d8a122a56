//! Mapping throughput: clw-gateway's engine against fhirpath.js (the HL7 reference
//! JavaScript implementation) on the same expressions and the same input, in one run.
//! `cargo bench --bench mapping` (needs Node; installs benches/fhirpathjs on first use).
//!
//! One "referral mapped" = every shipped referral mapping applied once. Two gateway figures:
//! the expressions alone (the same work fhirpath.js does: results refer into the input,
//! as fhirpath.js's do), and whole mappings (expressions, transforms, code maps, the
//! output built and validated against its schema).
//! The raw expression results of both engines are also compared, as a correctness check.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use clw_gateway::cli::golden::load_input;
use clw_gateway::mapping::{Input, Mapping, MappingSet};
use clw_gateway::model::Flow;
use serde_json::{Value, json};

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let iterations: usize = std::env::var("CLW_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let set = MappingSet::load(&root.join("mappings")).expect("mappings load");
    // The referral mappings read one referral, compared with fhirpath.js below; the
    // message-back mappings each read an event of their own (their first fixture's).
    let (mappings, event_mappings): (Vec<&Mapping>, Vec<&Mapping>) = set
        .iter()
        .map(|m| m.as_ref())
        .partition(|m| m.flow == Flow::Referral);
    let input = load_input(mappings[0], &root.join("examples/referral-bundle.json")).unwrap();
    // The fixtures' constants, plus a value for any other %name an expression reads:
    // fhirpath.js (rightly, by the spec) refuses an undefined one, where the gateway
    // reads it as empty so a `default` can apply.
    let constants: Vec<BTreeMap<String, String>> = mappings
        .iter()
        .map(|m| {
            let mut c = m
                .fixtures
                .first()
                .map(|f| f.constants.clone())
                .unwrap_or_default();
            for (_, e) in m.expressions() {
                for name in e.source.split('%').skip(1) {
                    let name: String = name
                        .chars()
                        .take_while(|ch| ch.is_ascii_alphanumeric() || *ch == '_')
                        .collect();
                    c.entry(name).or_insert_with(|| "x".into());
                }
            }
            c
        })
        .collect();
    let expressions: usize = mappings.iter().map(|m| m.expressions().count()).sum();
    let general: Vec<&str> = mappings
        .iter()
        .flat_map(|m| m.expressions())
        .filter(|(_, e)| !e.is_compiled())
        .map(|(_, e)| e.source.as_str())
        .collect();

    // The gateway: whole mappings.
    let run = || {
        for (m, c) in mappings.iter().zip(&constants) {
            black_box(m.apply(&input, c).unwrap());
        }
    };
    for _ in 0..iterations / 10 {
        run();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        run();
    }
    let ours = iterations as f64 / start.elapsed().as_secs_f64();

    // The gateway, expressions only: the same work fhirpath.js does below.
    let exprs_only = || {
        for (m, c) in mappings.iter().zip(&constants) {
            let prepared = Input::new(&input, c);
            for (_, e) in m.expressions() {
                black_box(e.eval_borrowed(&prepared).unwrap());
            }
        }
    };
    for _ in 0..iterations / 10 {
        exprs_only();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        exprs_only();
    }
    let ours_exprs = iterations as f64 / start.elapsed().as_secs_f64();

    // fhirpath.js: the same expressions, same input, same constants.
    let mut ours_raw = Vec::new();
    let mut spec_exprs = Vec::new();
    for (m, c) in mappings.iter().zip(&constants) {
        let prepared = Input::new(&input, c);
        for (to, e) in m.expressions() {
            ours_raw.push(Value::Array(e.eval(&prepared).unwrap()));
            spec_exprs.push(json!({"mapping": m.name, "to": to, "expr": e.source, "constants": c}));
        }
    }
    let js = fhirpath_js(
        &root.join("benches/fhirpathjs"),
        &json!({"input": input, "iterations": iterations, "expressions": spec_exprs}),
    );
    let theirs = js["referrals_per_s"].as_f64().unwrap_or(f64::NAN);
    let disagree: Vec<String> = ours_raw
        .iter()
        .zip(js["results"].as_array().into_iter().flatten())
        .zip(&spec_exprs)
        .filter(|((a, b), _)| a != b)
        .map(|((a, b), e)| format!("  {}: gateway {a} vs fhirpath.js {b}", e["expr"]))
        .collect();

    println!(
        "mappings: {}  expressions: {expressions}  iterations: {iterations}",
        mappings.len()
    );
    println!("clw-gateway, expressions     : {ours_exprs:>10.0} referrals mapped/s");
    println!("fhirpath.js, expressions     : {theirs:>10.0} referrals mapped/s");
    println!(
        "ratio, same expressions      : {:>10.1} ×",
        ours_exprs / theirs
    );
    println!(
        "clw-gateway, whole mappings  : {ours:>10.0} referrals mapped/s  (+ transforms, code maps, output schema)"
    );
    println!("ratio, whole mappings vs js  : {:>10.1} ×", ours / theirs);
    events(&event_mappings, iterations);
    println!(
        "results agree                : {}/{}",
        ours_raw.len() - disagree.len(),
        ours_raw.len()
    );
    println!("general evaluator          : {general:?} (the rest take the compiled path)");
    for d in &disagree {
        println!("{d}");
    }
}

fn fhirpath_js(dir: &Path, spec: &Value) -> Value {
    if !dir.join("node_modules/fhirpath").is_dir() {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "npm ci in {} failed", dir.display());
    }
    let spec_file =
        std::env::temp_dir().join(format!("clw-mapping-bench-{}.json", std::process::id()));
    std::fs::write(&spec_file, spec.to_string()).unwrap();
    let out = Command::new("node")
        .arg(dir.join("bench.js"))
        .arg(&spec_file)
        .output()
        .expect("node runs");
    let _ = std::fs::remove_file(&spec_file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("bench.js prints JSON")
}

/// The message-back mappings, each on its own first fixture's input (a platform's event,
/// a spreadsheet row, a canonical event): whole mappings per second.
fn events(mappings: &[&Mapping], iterations: usize) {
    let work: Vec<(&Mapping, Value, BTreeMap<String, String>)> = mappings
        .iter()
        .filter_map(|m| {
            let f = m.fixtures.iter().find(|f| f.expected.is_some())?;
            let base = m.path.parent()?;
            let input = load_input(m, &base.join(&f.input)).ok()?;
            Some((*m, input, f.constants.clone()))
        })
        .collect();
    let run = || {
        for (m, input, c) in &work {
            black_box(m.apply(input, c).expect("a fixture that maps"));
        }
    };
    for _ in 0..iterations / 10 {
        run();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        run();
    }
    let per_s = iterations as f64 / start.elapsed().as_secs_f64();
    let names: Vec<&str> = work.iter().map(|(m, _, _)| m.name.as_str()).collect();
    println!(
        "clw-gateway, message back    : {per_s:>10.0} events mapped/s through each of {} mappings ({})",
        work.len(),
        names.join(", ")
    );
}
