//! Loading a mapping set: the folder's files read and checked against their format's
//! schema, every problem reported together, and the built-in mappings added beneath.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::compile::compile;
use super::refsets::{self, Refset};
use super::schema::CompiledSchema;
use super::spec::{CodeMapFile, MappingFile, RefsetFile};
use super::{CodeMap, Mapping, MappingSet, Refsets};
use crate::error::{GatewayError, Result, Stage};

const MAPPING_SCHEMA: &str = include_str!("../../schemas/mapping.schema.json");
const CODEMAP_SCHEMA: &str = include_str!("../../schemas/codemap.schema.json");
const REFSET_SCHEMA: &str = include_str!("../../schemas/refset.schema.json");

impl MappingSet {
    /// Loads `dir/codes/*.yaml` as code maps, `dir/refsets/*.yaml` as refset memberships
    /// (a code map's code outside its refset's membership is an error) and every other
    /// `*.yaml` below `dir` as a mapping. All problems in all files are reported together,
    /// each naming its file.
    pub fn load(dir: &Path) -> Result<MappingSet> {
        let mut errors = Vec::new();
        let mapping_schema = embedded_schema("schemas/mapping.schema.json", MAPPING_SCHEMA)?;
        let codemap_schema = embedded_schema("schemas/codemap.schema.json", CODEMAP_SCHEMA)?;
        let refset_schema = embedded_schema("schemas/refset.schema.json", REFSET_SCHEMA)?;
        let mut files = Vec::new();
        collect_yaml(dir, &mut files).map_err(|e| {
            GatewayError::invalid(
                Stage::Config,
                "mappings.dir",
                format!("cannot read {}: {e}", dir.display()),
            )
        })?;
        files.sort();
        let in_folder =
            |p: &PathBuf, name: &str| p.parent().and_then(Path::file_name) == Some(name.as_ref());
        let (code_files, rest): (Vec<PathBuf>, Vec<PathBuf>) =
            files.into_iter().partition(|p| in_folder(p, "codes"));
        let (refset_files, mapping_files): (Vec<PathBuf>, Vec<PathBuf>) =
            rest.into_iter().partition(|p| in_folder(p, "refsets"));

        let mut refsets = Refsets::default();
        for path in &refset_files {
            match read_checked::<RefsetFile>(path, &refset_schema)
                .and_then(|f| Refset::build(f, path).map_err(|e| prefix(path, e)))
            {
                Ok(r) => {
                    if let Err(e) = refsets.insert(r) {
                        errors.push(format!("{}: {e}", path.display()));
                    }
                }
                Err(e) => errors.extend(e),
            }
        }
        let mut codes = BTreeMap::new();
        for path in &code_files {
            match read_checked::<CodeMapFile>(path, &codemap_schema)
                .and_then(|f| CodeMap::build(f).map_err(|e| prefix(path, e)))
                .and_then(|m| refsets::checked(m, &refsets).map_err(|e| prefix(path, e)))
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
            refsets,
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
                refsets: Refsets::default(),
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
                // Checked against the folder's refset memberships too.
                let map = CodeMap::build(file)
                    .and_then(|m| refsets::checked(m, &set.refsets))
                    .map_err(|e| {
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
        "prsb-referral-v2",
        include_str!("../../mappings/referral/prsb-referral-v2.yaml"),
        Some(include_str!("../../schemas/prsb-referral.v2.schema.json")),
    ),
    (
        "clw-event",
        include_str!("../../mappings/message-back/clw-event.yaml"),
        Some(include_str!("../../schemas/message-back.v1.schema.json")),
    ),
    (
        "clw-event-v2",
        include_str!("../../mappings/message-back/clw-event-v2.yaml"),
        Some(include_str!("../../schemas/message-back.v2.schema.json")),
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
