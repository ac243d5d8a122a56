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

/// Deepest nesting of arrays and objects a body may have.
pub const MAX_DEPTH: usize = 32;
/// Most items any one array may hold (a referral Bundle has tens of entries).
pub const MAX_ARRAY_ITEMS: usize = 1000;

/// Checks a body's shape before it is parsed, in one pass over the bytes with no
/// allocation per element: nesting no deeper than [`MAX_DEPTH`], no array longer than
/// [`MAX_ARRAY_ITEMS`]. So a megabyte of `[{},{},...]` is refused for what it is
/// instead of being built into a tree first.
pub fn check_shape(body: &[u8]) -> Result<()> {
    // For each open array: the commas at its own level so far (None for objects); its
    // items are one more than that.
    let mut open: Vec<Option<usize>> = Vec::new();
    let (mut in_string, mut escaped) = (false, false);
    let refuse = |message: String| Err(GatewayError::invalid(Stage::Intake, "$", message));
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                open.push(if b == b'[' { Some(0) } else { None });
                if open.len() > MAX_DEPTH {
                    return refuse(format!("nested deeper than {MAX_DEPTH} levels"));
                }
            }
            b']' | b'}' => {
                open.pop();
            }
            b',' => {
                if let Some(Some(n)) = open.last_mut() {
                    *n += 1;
                    if *n >= MAX_ARRAY_ITEMS {
                        return refuse(format!("an array holds more than {MAX_ARRAY_ITEMS} items"));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Parses a JSON body whose shape is not known in advance (a platform's event). The
/// error names the body, never its contents.
pub fn parse_bounded(body: &[u8]) -> Result<Value> {
    check_shape(body)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_past_the_caps_are_refused_before_parsing() {
        assert!(check_shape(br#"{"a": [1, 2, {"b": "[[[[,,,,"}], "c": "\\\""}"#).is_ok());
        let deep = "[".repeat(MAX_DEPTH + 1);
        let e = check_shape(deep.as_bytes()).unwrap_err();
        assert!(e.message.contains("nested deeper"), "{e}");
        let wide = format!("[{}]", vec!["{}"; MAX_ARRAY_ITEMS + 1].join(","));
        let e = check_shape(wide.as_bytes()).unwrap_err();
        assert!(e.message.contains("more than"), "{e}");
        let fits = format!("[{}]", vec!["{}"; MAX_ARRAY_ITEMS].join(","));
        assert!(check_shape(fits.as_bytes()).is_ok());
        // Commas in strings and in nested objects do not count as items.
        let strings = format!("[\"{}\"]", ",".repeat(5000));
        assert!(check_shape(strings.as_bytes()).is_ok());
        let objects = format!(
            "[{{{}}}]",
            (0..2000)
                .map(|i| format!("\"k{i}\": 1"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(check_shape(objects.as_bytes()).is_ok());
    }
}
