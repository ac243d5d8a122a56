//! The mapping engine: mapping files in `mappings/` say how each output field is
//! computed from the input (FHIRPath + transforms). They are validated against
//! `schemas/mapping.schema.json`, compiled once at start-up, and checked against
//! their golden fixtures by `clw-gateway mapping test` and `cargo test`.

mod codes;
mod config;
mod expr;
mod plan;
pub mod schema;
pub mod spec;
mod transform;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::{GatewayError, Result, Stage};
use crate::mapping::schema::CompiledSchema;

pub use codes::CodeMap;
pub use config::MappingsConfig;
pub use expr::{Expr, Input};
use spec::{
    CodeMapFile, Direction, FieldSpec, FixtureSpec, Flow, InputKind, MappingFile, OutputFormat,
    TransformSpec,
};
pub use transform::Transform;

const MAPPING_SCHEMA: &str = include_str!("../../schemas/mapping.schema.json");
const CODEMAP_SCHEMA: &str = include_str!("../../schemas/codemap.schema.json");

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
    /// path and the destination.
    pub fn check_allowed(&self, destination: &str, allowed: &[String]) -> Result<()> {
        let covered = |path: &str| {
            allowed
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

/// Every mapping and code map under one folder, compiled.
pub struct MappingSet {
    pub dir: PathBuf,
    mappings: BTreeMap<String, Arc<Mapping>>,
    pub codes: BTreeMap<String, Arc<CodeMap>>,
}

impl MappingSet {
    /// Loads `dir/codes/*.yaml` as code maps and every other `*.yaml` below `dir` as a
    /// mapping. All problems in all files are reported together, each naming its file.
    pub fn load(dir: &Path) -> Result<MappingSet> {
        let mut errors = Vec::new();
        let mapping_schema = embedded_schema("schemas/mapping.schema.json", MAPPING_SCHEMA)?;
        let codemap_schema = embedded_schema("schemas/codemap.schema.json", CODEMAP_SCHEMA)?;
        let mut files = Vec::new();
        collect_yaml(dir, &mut files).map_err(|e| {
            GatewayError::invalid(
                Stage::Config,
                "mappings.dir",
                format!("cannot read {}: {e}", dir.display()),
            )
        })?;
        files.sort();
        let (code_files, mapping_files): (Vec<PathBuf>, Vec<PathBuf>) = files
            .into_iter()
            .partition(|p| p.parent().and_then(Path::file_name) == Some("codes".as_ref()));

        let mut codes = BTreeMap::new();
        for path in &code_files {
            match read_checked::<CodeMapFile>(path, &codemap_schema)
                .and_then(|f| CodeMap::build(f).map_err(|e| prefix(path, e)))
            {
                Ok(map) => insert_once(&mut codes, map.name.clone(), map, path, &mut errors),
                Err(e) => errors.extend(e),
            }
        }
        let mut mappings = BTreeMap::new();
        for path in &mapping_files {
            match read_checked::<MappingFile>(path, &mapping_schema)
                .and_then(|f| compile(f, path, &codes).map_err(|e| prefix(path, e)))
            {
                Ok(m) => insert_once(&mut mappings, m.name.clone(), m, path, &mut errors),
                Err(e) => errors.extend(e),
            }
        }
        if !errors.is_empty() {
            return Err(GatewayError::permanent(
                Stage::Config,
                format!(
                    "mappings in {} are not valid:\n  {}",
                    dir.display(),
                    errors.join("\n  ")
                ),
            ));
        }
        Ok(MappingSet {
            dir: dir.to_path_buf(),
            mappings,
            codes,
        })
    }

    /// The configured folder's mappings when it exists, plus the built-in ones it does
    /// not replace: what `serve`, `check` and `mapping test` all work from.
    pub fn load_configured(dir: &Path) -> Result<MappingSet> {
        let mut set = if dir.is_dir() {
            MappingSet::load(dir)?
        } else {
            MappingSet {
                dir: dir.to_path_buf(),
                mappings: BTreeMap::new(),
                codes: BTreeMap::new(),
            }
        };
        for (name, yaml) in BUILTIN_CODE_MAPS {
            if !set.codes.contains_key(*name) {
                let file: CodeMapFile = serde_yaml_ng::from_str::<Value>(yaml)
                    .map_err(|e| e.to_string())
                    .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()))
                    .map_err(|e| {
                        GatewayError::permanent(
                            Stage::Config,
                            format!("built-in code map {name}: {e}"),
                        )
                    })?;
                let map = CodeMap::build(file).map_err(|e| {
                    GatewayError::permanent(
                        Stage::Config,
                        format!("built-in code map {name}: {}", e.join("; ")),
                    )
                })?;
                set.codes.insert(name.to_string(), Arc::new(map));
            }
        }
        for (name, yaml, schema) in BUILTIN {
            if !set.mappings.contains_key(*name) {
                let m = builtin(name, yaml, *schema, &set.codes)?;
                set.mappings.insert(m.name.clone(), Arc::new(m));
            }
        }
        Ok(set)
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Mapping>> {
        self.mappings.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Mapping>> {
        self.mappings.values()
    }
}

/// Mappings built into the binary so the embedded default runs from any folder:
/// (name, mapping file, its output schema). A file of the same name in `mappings.dir`
/// replaces one.
const BUILTIN: &[(&str, &str, Option<&str>)] = &[
    (
        "prsb-referral",
        include_str!("../../mappings/referral/prsb-referral.yaml"),
        Some(include_str!("../../schemas/prsb-referral.v1.schema.json")),
    ),
    (
        "clw-event",
        include_str!("../../mappings/message-back/clw-event.yaml"),
        Some(include_str!("../../schemas/message-back.v1.schema.json")),
    ),
    (
        "sheet-event",
        include_str!("../../mappings/message-back/sheet-event.yaml"),
        Some(include_str!("../../schemas/message-back.v1.schema.json")),
    ),
    (
        "gp-record",
        include_str!("../../mappings/message-back/gp-record.yaml"),
        None,
    ),
];

/// Code maps built in beside them: (name, file).
const BUILTIN_CODE_MAPS: &[(&str, &str)] = &[
    (
        "social-prescribing",
        include_str!("../../mappings/codes/social-prescribing.yaml"),
    ),
    (
        "sheet-events",
        include_str!("../../mappings/codes/sheet-events.yaml"),
    ),
];

fn builtin(
    name: &str,
    yaml: &str,
    schema: Option<&str>,
    codes: &BTreeMap<String, Arc<CodeMap>>,
) -> Result<Mapping> {
    let fail =
        |e: String| GatewayError::permanent(Stage::Config, format!("built-in mapping {name}: {e}"));
    // Through JSON, as files in the mappings folder are read (YAML tags aside).
    let value: Value = serde_yaml_ng::from_str(yaml).map_err(|e| fail(e.to_string()))?;
    let mut file: MappingFile = serde_json::from_value(value).map_err(|e| fail(e.to_string()))?;
    // Fixtures and the schema path are relative to the repository's file.
    file.fixtures.clear();
    file.output.schema = None;
    let path = PathBuf::from(format!("(built in)/{name}.yaml"));
    let mut m = compile(file, &path, codes).map_err(|e| fail(e.join("; ")))?;
    if let Some(schema) = schema {
        m.schema = Some(embedded_schema(&format!("{name} output schema"), schema)?);
    }
    Ok(m)
}

/// Names are how destinations refer to mappings and mappings to code maps: one each.
fn insert_once<T>(
    into: &mut BTreeMap<String, Arc<T>>,
    name: String,
    item: T,
    path: &Path,
    errors: &mut Vec<String>,
) {
    if into.contains_key(&name) {
        errors.push(format!(
            "{}: the name {name} is already used by another file",
            path.display()
        ));
    }
    into.insert(name, Arc::new(item));
}

fn embedded_schema(name: &str, text: &str) -> Result<CompiledSchema> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| GatewayError::permanent(Stage::Config, format!("{name} is not JSON: {e}")))?;
    CompiledSchema::from_value(Path::new(name), &v)
}

fn prefix(path: &Path, errors: Vec<String>) -> Vec<String> {
    errors
        .into_iter()
        .map(|e| format!("{}: {e}", path.display()))
        .collect()
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_yaml(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads YAML, checks it against its format's schema (errors name the JSON pointer),
/// then deserialises it (errors name the path).
fn read_checked<T: serde::de::DeserializeOwned>(
    path: &Path,
    schema: &CompiledSchema,
) -> std::result::Result<T, Vec<String>> {
    let one = |e: String| vec![format!("{}: {e}", path.display())];
    let text = std::fs::read_to_string(path).map_err(|e| one(format!("cannot read: {e}")))?;
    let value: Value =
        serde_yaml_ng::from_str(&text).map_err(|e| one(format!("is not valid YAML: {e}")))?;
    let errs = schema.errors(&value, 20);
    if !errs.is_empty() {
        return Err(errs
            .into_iter()
            .map(|(p, m)| {
                format!(
                    "{}: {}: {m}",
                    path.display(),
                    if p.is_empty() { "/" } else { &p }
                )
            })
            .collect());
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        one(format!(
            "{}: {}",
            e.path(),
            crate::error::serde_reason(&e.inner().to_string())
        ))
    })
}

fn compile(
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
