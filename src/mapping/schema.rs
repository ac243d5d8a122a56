//! JSON Schemas, compiled once at start-up. Remote `$ref`s are never fetched: the
//! jsonschema crate is built without its HTTP resolver.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use crate::error::{GatewayError, Result, Stage};

#[derive(Clone)]
pub struct CompiledSchema {
    pub path: PathBuf,
    validator: Arc<jsonschema::Validator>,
}

impl CompiledSchema {
    pub fn load(path: &Path) -> Result<CompiledSchema> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            GatewayError::permanent(
                Stage::Config,
                format!("cannot read schema {}: {e}", path.display()),
            )
        })?;
        let schema: Value = serde_json::from_str(&text).map_err(|e| {
            GatewayError::permanent(
                Stage::Config,
                format!("schema {} is not JSON: {e}", path.display()),
            )
        })?;
        Self::from_value(path, &schema)
    }

    /// Compiles a schema already in memory (e.g. one built into the binary); `path`
    /// names it in errors.
    pub fn from_value(path: &Path, schema: &Value) -> Result<CompiledSchema> {
        let validator = jsonschema::validator_for(schema).map_err(|e| {
            GatewayError::permanent(
                Stage::Config,
                format!("schema {} does not compile: {}", path.display(), e.masked()),
            )
        })?;
        Ok(CompiledSchema {
            path: path.to_path_buf(),
            validator: Arc::new(validator),
        })
    }

    /// Every failure as (JSON pointer, message), values masked; at most `limit`.
    pub fn errors(&self, instance: &Value, limit: usize) -> Vec<(String, String)> {
        self.validator
            .iter_errors(instance)
            .take(limit)
            .map(|e| (e.instance_path().to_string(), e.masked().to_string()))
            .collect()
    }

    /// Checks `instance`; the error names every failing JSON pointer (values masked,
    /// so patient data never reaches an error message).
    pub fn check(&self, instance: &Value) -> Result<()> {
        let errors = self.errors(instance, 10);
        match errors.first() {
            None => Ok(()),
            Some((first_path, _)) => {
                let all: Vec<String> = errors
                    .iter()
                    .map(|(p, m)| format!("{}: {m}", if p.is_empty() { "/" } else { p }))
                    .collect();
                Err(GatewayError::invalid(
                    Stage::Validate,
                    if first_path.is_empty() {
                        "/".to_string()
                    } else {
                        first_path.clone()
                    },
                    format!(
                        "output does not meet schema {}: {}",
                        self.path
                            .file_name()
                            .and_then(|n| n.to_str())
                            .unwrap_or("?"),
                        all.join("; ")
                    ),
                ))
            }
        }
    }
}

/// Schemas by path, each compiled once however many destinations share it.
#[derive(Default)]
pub struct SchemaSet {
    by_path: HashMap<PathBuf, CompiledSchema>,
}

impl SchemaSet {
    pub fn get_or_load(&mut self, path: &Path) -> Result<CompiledSchema> {
        if let Some(s) = self.by_path.get(path) {
            return Ok(s.clone());
        }
        let s = CompiledSchema::load(path)?;
        self.by_path.insert(path.to_path_buf(), s.clone());
        Ok(s)
    }
}
