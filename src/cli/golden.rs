//! Golden fixtures: each mapping lists input → expected output (or expected errors);
//! `clw-gateway mapping test` and `cargo test` run them all.

use std::path::Path;

use serde_json::Value;

use crate::error::GatewayError;
use crate::intake::decode_referral;
use crate::mapping::spec::InputKind;
use crate::mapping::{Mapping, MappingSet};
use crate::model::ConsentState;
use crate::policy::apply_consent;

/// The result of one fixture.
#[derive(Debug)]
pub struct FixtureOutcome {
    pub mapping: String,
    pub index: usize,
    pub input: String,
    /// None when it passed; else what differed.
    pub failure: Option<String>,
}

/// Reads a mapping's input document. A canonical-referral mapping also accepts a
/// FHIR referral Bundle, decoded and put through consent policy as the pipeline
/// would, so fixtures and `mapping run` can start from what a practice sends.
pub fn load_input(mapping: &Mapping, path: &Path) -> Result<Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    if mapping.input == InputKind::CanonicalReferral
        && value.get("resourceType").and_then(Value::as_str) == Some("Bundle")
    {
        let decoded = decode_referral(&bytes).map_err(|e| e.reason())?;
        // Without a Consent resource, the shipped default: codes only.
        let mut referral = decoded.referral;
        crate::policy::prsb::note_missing(&mut referral);
        let release = apply_consent(referral, ConsentState::CodesOnly);
        let referral = release.referral().ok_or("consent withholds the referral")?;
        return serde_json::to_value(referral).map_err(|e| e.to_string());
    }
    Ok(value)
}

pub fn run_fixtures(set: &MappingSet) -> Vec<FixtureOutcome> {
    let mut out = Vec::new();
    for m in set.iter() {
        let base = m.path.parent().unwrap_or(Path::new("."));
        for (i, fx) in m.fixtures.iter().enumerate() {
            let failure = check(m, base, fx).err();
            out.push(FixtureOutcome {
                mapping: m.name.clone(),
                index: i,
                input: fx.input.display().to_string(),
                failure,
            });
        }
    }
    out
}

fn check(m: &Mapping, base: &Path, fx: &crate::mapping::spec::FixtureSpec) -> Result<(), String> {
    let input = load_input(m, &base.join(&fx.input))?;
    let result = m.apply(&input, &fx.constants);
    match (&fx.expected, result) {
        (Some(expected), Ok(output)) => {
            let want: Value = serde_json::from_str(
                &std::fs::read_to_string(base.join(expected)).map_err(|e| e.to_string())?,
            )
            .map_err(|e| format!("{} is not JSON: {e}", expected.display()))?;
            if want == output.document {
                Ok(())
            } else {
                Err(format!(
                    "output differs from {}:\n{}",
                    expected.display(),
                    diff(&want, &output.document)
                ))
            }
        }
        (Some(_), Err(errors)) => Err(format!("expected output, got errors: {}", reasons(&errors))),
        (None, Ok(_)) => Err(format!(
            "expected errors {:?}, but the mapping succeeded",
            fx.expected_errors
        )),
        (None, Err(errors)) => {
            let got = reasons(&errors);
            match fx
                .expected_errors
                .iter()
                .find(|want| !got.contains(want.as_str()))
            {
                None => Ok(()),
                Some(missing) => Err(format!(
                    "expected an error containing {missing:?}; got: {got}"
                )),
            }
        }
    }
}

fn reasons(errors: &[GatewayError]) -> String {
    errors
        .iter()
        .map(GatewayError::reason)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Lines of JSON pointers whose values differ (fixtures are test data, not patients).
fn diff(want: &Value, got: &Value) -> String {
    let mut lines = Vec::new();
    walk(want, got, String::new(), &mut lines);
    lines.join("\n")
}

fn walk(want: &Value, got: &Value, at: String, lines: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = format!("{at}/{k}");
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => walk(x, y, p, lines),
                    (Some(x), None) => lines.push(format!("  {p}: missing (want {x})")),
                    (None, Some(y)) => lines.push(format!("  {p}: unexpected {y}")),
                    (None, None) => {}
                }
            }
        }
        _ if want == got => {}
        _ => lines.push(format!("  {at}: want {want}, got {got}")),
    }
}
