//! A JSON cursor that remembers its FHIR path, so every decode error names the
//! element it is about (`Bundle.entry[2].resource.birthDate`).

use serde_json::Value;

use crate::error::{GatewayError, Result, Stage};

#[derive(Debug, Clone)]
pub struct Node<'a> {
    pub value: &'a Value,
    pub path: String,
}

impl<'a> Node<'a> {
    pub fn root(value: &'a Value, name: &str) -> Self {
        Node {
            value,
            path: name.to_string(),
        }
    }

    pub fn child_path(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    pub fn err(&self, message: impl Into<String>) -> GatewayError {
        GatewayError::invalid(Stage::Intake, self.path.clone(), message)
    }

    fn err_at(&self, key: &str, message: impl Into<String>) -> GatewayError {
        GatewayError::invalid(Stage::Intake, self.child_path(key), message)
    }

    /// The member `key`, or None when it is absent or null.
    pub fn get(&self, key: &str) -> Option<Node<'a>> {
        match self.value.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(Node {
                value: v,
                path: self.child_path(key),
            }),
        }
    }

    pub fn req(&self, key: &str) -> Result<Node<'a>> {
        self.get(key)
            .ok_or_else(|| self.err_at(key, "is required but missing"))
    }

    /// The elements of the array `key` (empty when absent); an error when `key` is not an array.
    pub fn items(&self, key: &str) -> Result<Vec<Node<'a>>> {
        match self.value.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => Ok(a
                .iter()
                .enumerate()
                .map(|(i, v)| Node {
                    value: v,
                    path: format!("{}.{key}[{i}]", self.path),
                })
                .collect()),
            Some(_) => Err(self.err_at(key, "must be an array")),
        }
    }

    pub fn str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.value.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(self.err_at(key, "must be a string")),
        }
    }

    pub fn req_str(&self, key: &str) -> Result<&'a str> {
        match self.str(key)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            _ => Err(self.err_at(key, "is required but missing")),
        }
    }

    pub fn string(&self, key: &str) -> Result<Option<String>> {
        Ok(self.str(key)?.map(str::to_string))
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.value.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.err_at(key, "must be true or false")),
        }
    }

    pub fn strings(&self, key: &str) -> Result<Vec<String>> {
        self.items(key)?
            .into_iter()
            .map(|n| match n.value {
                Value::String(s) => Ok(s.clone()),
                _ => Err(n.err("must be a string")),
            })
            .collect()
    }

    pub fn resource_type(&self) -> Option<&'a str> {
        self.value.get("resourceType").and_then(Value::as_str)
    }

    /// The extension with this URL, if any (FHIR `extension` arrays).
    pub fn extension(&self, url: &str) -> Result<Option<Node<'a>>> {
        Ok(self
            .items("extension")?
            .into_iter()
            .find(|e| e.value.get("url").and_then(Value::as_str) == Some(url)))
    }
}

/// Parses a JSON body whose shape is not known in advance (a platform's event). The
/// error names the body, never its contents.
pub fn parse_bounded(body: &[u8]) -> Result<Value> {
    serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid(
            Stage::Intake,
            "$",
            format!(
                "body is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })
}
