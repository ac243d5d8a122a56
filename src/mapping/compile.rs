//! Compiling a mapping file: expressions parsed, transforms resolved against the code
//! maps, fixtures found, and the canonical referral's essential fields accounted for.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::schema::CompiledSchema;
use super::spec::{FieldSpec, Flow, InputKind, MappingFile, TransformSpec};
use super::{CodeMap, Expr, Field, FieldSource, Mapping, Transform, transform};

pub(super) fn compile(
    file: MappingFile,
    path: &Path,
    codes: &BTreeMap<String, Arc<CodeMap>>,
) -> std::result::Result<Mapping, Vec<String>> {
    let base = path.parent().unwrap_or(Path::new("."));
    let mut errors = Vec::new();
    let schema = match &file.output.schema {
        Some(rel) => match CompiledSchema::load(&base.join(rel)) {
            Ok(s) => Some(s),
            Err(e) => {
                errors.push(format!("output.schema: {}", e.message));
                None
            }
        },
        None => None,
    };
    let mut fields = Vec::new();
    for (i, f) in file.fields.iter().enumerate() {
        match compile_field(f, codes) {
            Ok(field) => fields.push(field),
            Err(e) => errors.push(format!("fields[{i}] ({}): {e}", f.to)),
        }
    }
    for (i, fx) in file.fixtures.iter().enumerate() {
        for p in std::iter::once(&fx.input).chain(fx.expected.as_ref()) {
            if !base.join(p).is_file() {
                errors.push(format!("fixtures[{i}]: {} does not exist", p.display()));
            }
        }
        if fx.expected.is_none() && fx.expected_errors.is_empty() {
            errors.push(format!("fixtures[{i}]: needs expected or expected_errors"));
        }
    }
    if errors.is_empty()
        && file.flow == Flow::Referral
        && file.input == InputKind::CanonicalReferral
    {
        let reads: Vec<String> = fields
            .iter()
            .filter_map(|f: &Field| match &f.source {
                FieldSource::Expr(e) => Some(e.paths()),
                FieldSource::Value(_) => None,
            })
            .flatten()
            .collect();
        errors.extend(check_essentials(&reads, &file.omits));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Mapping {
        name: file.name,
        version: file.version,
        flow: file.flow,
        direction: file.direction,
        input: file.input,
        format: file.output.format,
        schema,
        fields,
        omits: file.omits,
        fixtures: file.fixtures,
        path: path.to_path_buf(),
    })
}

/// Canonical referral fields no mapping may drop by accident: (path, what it is, whether
/// reading any part of it counts). The rest must be read whole or by that exact path.
const ESSENTIAL: &[(&str, &str, bool)] = &[
    (
        "person_demographics.nhs_number",
        "the patient's NHS number",
        false,
    ),
    (
        "person_demographics.chi_number",
        "the patient's CHI number",
        false,
    ),
    (
        "referral_details.reasons_for_referral.display",
        "a coded reason's display",
        false,
    ),
    (
        "referral_details.reasons_for_referral.text",
        "a reason given as text only",
        false,
    ),
    ("referrer_details", "the referrer", true),
    ("gp_practice", "the practice", true),
    // Mandatory in the PRSB standard: a destination that cannot take them says why.
    ("risks", "the risks (PRSB mandatory)", true),
];

/// Each essential field must be read by some expression or named under `omits` with
/// its reason; `omits` may name only essential fields the mapping does not read.
fn check_essentials(reads: &[String], omits: &BTreeMap<String, String>) -> Vec<String> {
    let covers = |essential: &str, any_part: bool| {
        reads.iter().any(|r| {
            r == essential
                || essential.starts_with(&format!("{r}."))
                || (any_part && r.starts_with(&format!("{essential}.")))
        })
    };
    let mut errors = Vec::new();
    for (path, what, any_part) in ESSENTIAL {
        match (covers(path, *any_part), omits.contains_key(*path)) {
            (false, false) => errors.push(format!(
                "no field carries {path} ({what}): map it, or name it under omits with the reason it is left out"
            )),
            (true, true) => errors.push(format!("omits.{path}: the mapping reads it, so it is not left out")),
            _ => {}
        }
    }
    for name in omits.keys() {
        if !ESSENTIAL.iter().any(|(p, _, _)| p == name) {
            errors.push(format!(
                "omits.{name}: not an essential field (those are {})",
                ESSENTIAL
                    .iter()
                    .map(|(p, _, _)| *p)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    errors
}

fn compile_field(
    f: &FieldSpec,
    codes: &BTreeMap<String, Arc<CodeMap>>,
) -> std::result::Result<Field, String> {
    let source = match (&f.expr, &f.value) {
        (Some(e), None) => FieldSource::Expr(
            Expr::parse(e).map_err(|err| format!("expr {e:?} does not parse: {err}"))?,
        ),
        (None, Some(v)) => FieldSource::Value(v.clone()),
        _ => return Err("needs exactly one of expr or value".into()),
    };
    let transforms = f
        .transforms
        .iter()
        .map(|t| compile_transform(t, codes))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Field {
        to: f.to.clone(),
        source,
        transforms,
    })
}

fn compile_transform(
    t: &TransformSpec,
    codes: &BTreeMap<String, Arc<CodeMap>>,
) -> std::result::Result<Transform, String> {
    Ok(match t {
        TransformSpec::Date(p) => {
            // chrono reports a bad pattern only when formatting: try it now.
            let probe = chrono::DateTime::UNIX_EPOCH.fixed_offset();
            transform::format_with(&probe, p)?;
            Transform::Date(p.clone())
        }
        TransformSpec::Code(c) => {
            let map = codes
                .get(&c.map)
                .ok_or_else(|| format!("code map {:?} does not exist in mappings/codes", c.map))?;
            let (to, display) = match c.to.strip_suffix(".display") {
                Some(col) => (col.to_string(), true),
                None => (c.to.clone(), false),
            };
            for col in [&c.from, &to] {
                if !map.has_column(col) {
                    return Err(format!(
                        "code map {} has no column {col:?} (columns: {})",
                        map.name,
                        map.columns.join(", ")
                    ));
                }
            }
            Transform::Code {
                map: map.clone(),
                from: c.from.clone(),
                to,
                display,
                fallback: c.fallback.clone(),
            }
        }
        TransformSpec::Join(s) => Transform::Join(s.clone()),
        TransformSpec::Default(v) => Transform::Default(v.clone()),
        TransformSpec::Required => Transform::Required,
        TransformSpec::As(s) => Transform::As(*s),
        TransformSpec::Template(t) => Transform::Template(t.clone()),
    })
}
