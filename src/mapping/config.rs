//! `[mappings]`: where the mapping files and code maps are.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MappingsConfig {
    /// Mapping files and `codes/` code maps; loaded and validated at start-up when present.
    pub dir: PathBuf,
}

impl Default for MappingsConfig {
    fn default() -> Self {
        MappingsConfig {
            dir: PathBuf::from("mappings"),
        }
    }
}
