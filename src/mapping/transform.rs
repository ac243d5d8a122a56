//! Field transforms, applied in order to the collection an expression produced.
//! Error messages name the problem, never the value (values may be patient data).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde_json::Value;

use super::codes::CodeMap;
use super::spec::Shape;

#[derive(Debug, Clone)]
pub enum Transform {
    Date(String),
    Code {
        map: Arc<CodeMap>,
        from: String,
        to: String,
        display: bool,
        fallback: Option<String>,
    },
    Join(String),
    Default(Value),
    Required,
    As(Shape),
    /// Build a JSON value per input value from a template (see [`fill`]).
    Template(Value),
}

impl Transform {
    pub fn apply(&self, values: Vec<Value>) -> Result<Vec<Value>, String> {
        self.apply_with(values, &BTreeMap::new())
    }

    /// As [`Transform::apply`], with the destination's constants for templates.
    pub fn apply_with(
        &self,
        values: Vec<Value>,
        constants: &BTreeMap<String, String>,
    ) -> Result<Vec<Value>, String> {
        match self {
            Transform::Template(t) => Ok(values
                .iter()
                .filter_map(|v| fill(t, v, constants))
                .collect()),
            Transform::Date(pattern) => values
                .into_iter()
                .map(|v| format_date(&v, pattern).map(Value::String))
                .collect(),
            Transform::Code {
                map,
                from,
                to,
                display,
                fallback,
            } => values
                .into_iter()
                .map(|v| {
                    let code = text(&v)?;
                    match (map.lookup(from, &code, to)?, fallback) {
                        (Some(e), _) => Ok(Value::String(if *display {
                            e.display.clone()
                        } else {
                            e.code.clone()
                        })),
                        (None, Some(f)) => Ok(Value::String(f.clone())),
                        (None, None) => Err(format!(
                            "code {code} ({from}) has no {to} entry in code map {}",
                            map.name
                        )),
                    }
                })
                .collect(),
            Transform::Join(sep) => {
                if values.is_empty() {
                    return Ok(values);
                }
                let parts: Result<Vec<String>, String> = values.iter().map(text).collect();
                Ok(vec![Value::String(parts?.join(sep))])
            }
            Transform::Default(d) => Ok(if values.is_empty() {
                vec![d.clone()]
            } else {
                values
            }),
            Transform::Required => {
                if values.is_empty() {
                    Err("required, but the input has nothing here".into())
                } else {
                    Ok(values)
                }
            }
            Transform::As(shape) => shape_values(values, *shape),
        }
    }
}

/// Fills a template for one value. A string that is wholly `{name}` takes that member
/// of the value (dotted for nested members; `{.}` is the value itself; `{%name}` a
/// destination constant), keeping its JSON type; a key or list item whose placeholder
/// finds nothing is left out, and an object left empty is dropped. Other strings are
/// literal.
pub fn fill(template: &Value, v: &Value, constants: &BTreeMap<String, String>) -> Option<Value> {
    match template {
        Value::String(s) => match s.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            Some(".") => Some(v.clone()).filter(|x| !x.is_null()),
            Some(name) if name.starts_with('%') => {
                constants.get(&name[1..]).map(|c| Value::String(c.clone()))
            }
            Some(path) => path
                .split('.')
                .try_fold(v, |node, key| node.get(key))
                .filter(|x| !x.is_null())
                .cloned(),
            None => Some(template.clone()),
        },
        Value::Object(m) => {
            let out: serde_json::Map<String, Value> = m
                .iter()
                .filter_map(|(k, t)| fill(t, v, constants).map(|x| (k.clone(), x)))
                .collect();
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(items) => {
            let out: Vec<Value> = items.iter().filter_map(|t| fill(t, v, constants)).collect();
            (!out.is_empty()).then_some(Value::Array(out))
        }
        other => Some(other.clone()),
    }
}

/// Text of a scalar; objects and lists are refused (a mapping should pick a member).
pub fn text(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok(String::new()),
        Value::Object(_) | Value::Array(_) => {
            Err("is an object, not a text value: select one of its elements".into())
        }
    }
}

fn format_date(v: &Value, pattern: &str) -> Result<String, String> {
    let s = text(v)?;
    // A date alone is taken as midnight UTC, so one pattern serves both forms.
    let dt = DateTime::parse_from_rfc3339(&s)
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(&s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc().fixed_offset())
        })
        .ok_or_else(|| {
            format!(
                "is not a full FHIR date or dateTime (YYYY-MM-DD…), so cannot be formatted as {pattern}"
            )
        })?;
    format_with(&dt, pattern)
}

/// Formats without panicking on a pattern chrono cannot render.
pub fn format_with(dt: &DateTime<FixedOffset>, pattern: &str) -> Result<String, String> {
    use std::fmt::Write;
    let mut out = String::new();
    write!(out, "{}", dt.format(pattern))
        .map_err(|_| format!("date pattern {pattern:?} is not a valid strftime pattern"))?;
    Ok(out)
}

fn shape_values(values: Vec<Value>, shape: Shape) -> Result<Vec<Value>, String> {
    if shape == Shape::List {
        return Ok(vec![Value::Array(values)]);
    }
    if values.len() > 1 {
        return Err(format!(
            "gave {} values where one is expected: add first() or a join",
            values.len()
        ));
    }
    values
        .into_iter()
        .map(|v| match shape {
            Shape::Text => text(&v).map(Value::String),
            Shape::Number => match &v {
                Value::Number(_) => Ok(v),
                other => {
                    let t = text(other)?;
                    let t = t.trim();
                    // Whole numbers stay whole ("20" is 20, not 20.0).
                    t.parse::<i64>()
                        .map(|i| Value::Number(i.into()))
                        .ok()
                        .or_else(|| {
                            t.parse::<f64>()
                                .ok()
                                .and_then(serde_json::Number::from_f64)
                                .map(Value::Number)
                        })
                        .ok_or_else(|| "is not a number".to_string())
                }
            },
            Shape::Boolean => match &v {
                Value::Bool(_) => Ok(v),
                Value::String(s) if s == "true" || s == "false" => Ok(Value::Bool(s == "true")),
                _ => Err("is not a boolean".into()),
            },
            Shape::List => Ok(v),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dates_format_and_partial_dates_fail_without_echoing_them() {
        let t = Transform::Date("%d/%m/%Y".into());
        assert_eq!(
            t.apply(vec![json!("1970-09-11")]).unwrap(),
            [json!("11/09/1970")]
        );
        assert_eq!(
            t.apply(vec![json!("2026-11-20T10:15:00+00:00")]).unwrap(),
            [json!("20/11/2026")]
        );
        let e = t.apply(vec![json!("1970-09")]).unwrap_err();
        assert!(!e.contains("1970"), "{e}");
    }

    #[test]
    fn templates_build_fhir_shapes_and_drop_what_is_missing() {
        let t = Transform::Template(json!({
            "coding": [{"system": "{system}", "code": "{code}", "display": "{display}"}],
            "text": "{text}"
        }));
        let out = t
            .apply(vec![
                json!({"system": "http://snomed.info/sct", "code": "1", "text": "x"}),
            ])
            .unwrap();
        assert_eq!(
            out,
            [json!({"coding": [{"system": "http://snomed.info/sct", "code": "1"}], "text": "x"})]
        );
        let id = Transform::Template(json!({"system": "{%system}", "value": "{.}"}));
        let mut c = BTreeMap::new();
        c.insert(
            "system".to_string(),
            "https://fhir.nhs.uk/Id/nhs-number".to_string(),
        );
        assert_eq!(
            id.apply_with(vec![json!("9912003888")], &c).unwrap(),
            [json!({"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9912003888"})]
        );
        assert_eq!(id.apply(vec![json!({})]).unwrap(), [json!({"value": {}})]);
    }

    #[test]
    fn join_default_required_and_shapes() {
        let j = Transform::Join(", ".into());
        assert_eq!(
            j.apply(vec![json!("a"), json!("b")]).unwrap(),
            [json!("a, b")]
        );
        assert!(j.apply(vec![]).unwrap().is_empty());
        assert_eq!(
            Transform::Default(json!("n/a")).apply(vec![]).unwrap(),
            [json!("n/a")]
        );
        assert!(Transform::Required.apply(vec![]).is_err());
        assert!(
            Transform::As(Shape::Text)
                .apply(vec![json!(1), json!(2)])
                .is_err()
        );
        assert_eq!(
            Transform::As(Shape::Number)
                .apply(vec![json!("42")])
                .unwrap(),
            [json!(42)]
        );
        assert_eq!(
            Transform::As(Shape::Number)
                .apply(vec![json!("4.5")])
                .unwrap(),
            [json!(4.5)]
        );
        assert_eq!(
            Transform::As(Shape::List).apply(vec![json!("x")]).unwrap(),
            [json!(["x"])]
        );
    }
}
