//! `CLW_SECTION__KEY=value` overrides. Segments match existing keys case-insensitively,
//! with `_` standing for `-` (env names cannot hold hyphens). Values are read as TOML
//! when they parse as such (numbers, booleans, arrays), else as strings.

use crate::error::{GatewayError, Stage};

const PREFIX: &str = "CLW_";

fn same_key(existing: &str, wanted: &str) -> bool {
    existing.replace('-', "_").eq_ignore_ascii_case(wanted)
}

fn parse_value(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.into()),
    }
}

pub fn apply_env_overrides(
    table: &mut toml::Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(), GatewayError> {
    let mut vars: Vec<_> = vars
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix(PREFIX).map(|k| (k.to_string(), v)))
        .filter(|(k, _)| k.contains("__"))
        .collect();
    vars.sort();
    for (key, raw) in vars {
        let segments: Vec<&str> = key.split("__").collect();
        let mut cursor = &mut *table;
        for (i, seg) in segments.iter().enumerate() {
            let name = cursor
                .keys()
                .find(|k| same_key(k, seg))
                .cloned()
                .unwrap_or_else(|| seg.to_ascii_lowercase());
            if i + 1 == segments.len() {
                cursor.insert(name, parse_value(&raw));
                break;
            }
            let entry = cursor
                .entry(name)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            cursor = entry.as_table_mut().ok_or_else(|| {
                GatewayError::invalid(
                    Stage::Config,
                    format!("{PREFIX}{key}"),
                    format!("{seg} is not a table in the configuration, so it cannot be overridden by key"),
                )
            })?;
        }
    }
    Ok(())
}
