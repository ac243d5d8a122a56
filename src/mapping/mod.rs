//! The mapping engine: mapping files in `mappings/` say how each output field is
//! computed from the input (FHIRPath + transforms). They are validated against
//! `schemas/mapping.schema.json`, compiled once at start-up, and checked against
//! their golden fixtures by `clw-gateway mapping test` and `cargo test`.

mod codes;
mod compile;
mod config;
mod expr;
mod load;
mod plan;
pub mod refsets;
pub mod schema;
pub mod spec;
mod transform;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::{GatewayError, Result, Stage};
use crate::mapping::schema::CompiledSchema;

pub use codes::CodeMap;
pub use config::MappingsConfig;
pub use expr::{Expr, Input};
pub use refsets::Refsets;
use spec::{Direction, FixtureSpec, Flow, InputKind, OutputFormat};
pub use transform::Transform;

/// One output field, compiled.
#[derive(Debug)]
pub struct Field {
    pub to: String,
    source: FieldSource,
    transforms: Vec<Transform>,
}

#[derive(Debug)]
enum FieldSource {
    Expr(Expr),
    Value(Value),
}

/// A compiled mapping.
pub struct Mapping {
    pub name: String,
    pub version: String,
    pub flow: Flow,
    pub direction: Direction,
    pub input: InputKind,
    pub format: OutputFormat,
    pub schema: Option<CompiledSchema>,
    pub fields: Vec<Field>,
    /// Essential canonical fields deliberately left out, with the reason.
    pub omits: BTreeMap<String, String>,
    pub fixtures: Vec<FixtureSpec>,
    /// The file it came from (fixture paths are relative to it).
    pub path: PathBuf,
}

/// What a mapping produced: fields in mapping order (CSV columns, form fields) and the
/// same as one JSON document.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub fields: Vec<(String, Value)>,
    pub document: Value,
}

impl Mapping {
    /// `name@version`, carried in parking headers so a fix can be matched to a failure.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// Maps `input`. Every field is attempted so one run reports every problem; the
    /// output is then checked against the mapping's schema.
    pub fn apply(
        &self,
        input: &Value,
        constants: &BTreeMap<String, String>,
    ) -> std::result::Result<Output, Vec<GatewayError>> {
        let prepared = Input::new(input, constants);
        let mut fields = Vec::with_capacity(self.fields.len());
        let mut errors = Vec::new();
        for f in &self.fields {
            match f.compute(&prepared, self.format) {
                // A JSON field that would be blank (an empty list or object) is left
                // out, as the PRSB standard asks and FHIR requires.
                Ok(Some(v)) if self.format == OutputFormat::Json && blank(&v) => {}
                Ok(Some(v)) => fields.push((f.to.clone(), v)),
                Ok(None) => {}
                Err(e) => errors.push(GatewayError::invalid(
                    Stage::Map,
                    f.to.clone(),
                    format!("{} ({})", e, self.id()),
                )),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let document = match self.format {
            OutputFormat::Json => nest(&fields),
            OutputFormat::Form | OutputFormat::Csv => {
                Value::Object(fields.iter().cloned().collect())
            }
        };
        if let Some(schema) = &self.schema {
            schema.check(&document).map_err(|e| vec![e])?;
        }
        Ok(Output { fields, document })
    }

    /// (output field, expression) for every field computed by an expression.
    pub fn expressions(&self) -> impl Iterator<Item = (&str, &Expr)> {
        self.fields.iter().filter_map(|f| match &f.source {
            FieldSource::Expr(e) => Some((f.to.as_str(), e)),
            FieldSource::Value(_) => None,
        })
    }

    /// (output field, input path) for every input path a field reads.
    pub fn reads(&self) -> Vec<(String, String)> {
        self.expressions()
            .flat_map(|(to, e)| e.paths().into_iter().map(move |p| (to.to_string(), p)))
            .collect()
    }

    /// Refuses a mapping that reads anything `allowed` does not cover (an entry covers
    /// itself and everything under it). The error names the mapping, the field, the
    /// path and the destination. Reads of a sensitive section
    /// ([`crate::model::SENSITIVE_SECTIONS`]) pass: a destination not agreed for one is
    /// sent the rest without it, so one mapping serves destinations with different
    /// agreements.
    pub fn check_allowed(&self, destination: &str, allowed: &[String]) -> Result<()> {
        let covered = |path: &str| {
            crate::model::in_sensitive_section(path)
                || allowed
                    .iter()
                    .any(|a| path == a || path.starts_with(&format!("{a}.")))
        };
        let refused: Vec<String> = self
            .reads()
            .into_iter()
            .filter(|(_, path)| !covered(path))
            .map(|(field, path)| format!("field {field:?} reads {path}"))
            .collect();
        if refused.is_empty() {
            return Ok(());
        }
        Err(GatewayError::invalid(
            Stage::Config,
            format!("destinations.{destination}.allow"),
            format!(
                "mapping {} reads what destination {destination} may not receive: {}",
                self.name,
                refused.join("; ")
            ),
        ))
    }
}

impl Field {
    fn compute(
        &self,
        input: &Input,
        format: OutputFormat,
    ) -> std::result::Result<Option<Value>, String> {
        let mut values = match &self.source {
            FieldSource::Expr(e) => e
                .eval(input)
                .map_err(|err| format!("expression {:?} failed: {err}", e.source))?,
            FieldSource::Value(v) => vec![v.clone()],
        };
        for t in &self.transforms {
            values = t.apply_with(values, input.constants())?;
        }
        let flat = matches!(format, OutputFormat::Form | OutputFormat::Csv);
        match values.len() {
            0 => Ok(None),
            1 => {
                let v = values.pop().unwrap_or(Value::Null);
                if flat {
                    transform::text(&v).map(|t| Some(Value::String(t)))
                } else {
                    Ok(Some(v))
                }
            }
            n if flat => Err(format!(
                "gave {n} values for a flat {format:?} field: add first() or a join"
            )),
            _ => Ok(Some(Value::Array(values))),
        }
    }
}

/// An empty list or object.
fn blank(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Dotted names become nested objects (`person.name` → {"person": {"name": ..}}).
fn nest(fields: &[(String, Value)]) -> Value {
    let mut root = Map::new();
    for (name, value) in fields {
        let mut node = &mut root;
        let mut parts = name.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                node.insert(part.to_string(), value.clone());
            } else {
                let child = node
                    .entry(part.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !child.is_object() {
                    *child = Value::Object(Map::new());
                }
                let Value::Object(m) = child else { break };
                node = m;
            }
        }
    }
    Value::Object(root)
}

/// Every mapping, code map and refset membership under one folder, compiled.
pub struct MappingSet {
    pub dir: PathBuf,
    mappings: BTreeMap<String, Arc<Mapping>>,
    pub codes: BTreeMap<String, Arc<CodeMap>>,
    /// Published refset memberships (`refsets/*.yaml`), by refset id.
    pub refsets: Refsets,
}

impl MappingSet {
    pub fn get(&self, name: &str) -> Option<&Arc<Mapping>> {
        self.mappings.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Mapping>> {
        self.mappings.values()
    }
}
