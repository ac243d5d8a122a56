//! `[dataset]`: the programme dataset — whether facts are recorded, the key extracts'
//! pseudonyms are made under, the operator's deprivation lookup, the opt-out list, and
//! the report's small-number rule.

use std::path::PathBuf;

use serde::Deserialize;

use super::deprivation::DeprivationConfig;
use crate::error::GatewayError;
use crate::secret::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatasetConfig {
    /// Record the dataset's facts as referrals and events pass (no direct identifier).
    pub enabled: bool,
    /// The key row-level extracts' pseudonyms are made under (32 bytes or more); the
    /// row-level extract refuses to run without it. Keep it apart from the extracts.
    pub pseudonym_key: Option<Secret>,
    /// Postcode → area → decile lookup files (SIMD in Scotland, IMD in England).
    pub deprivation: Option<DeprivationConfig>,
    /// A file of NHS / CHI numbers (one per line) whose referrals are left out of the
    /// rows and counted only in totals (the national data opt-out in England).
    pub opt_out: Option<PathBuf>,
    /// Report counts under this are shown as "<N".
    pub suppress_below: u64,
    /// Report counts are rounded to the nearest multiple of this.
    pub round_to: u64,
}

impl Default for DatasetConfig {
    fn default() -> Self {
        DatasetConfig {
            enabled: true,
            pseudonym_key: None,
            deprivation: None,
            opt_out: None,
            suppress_below: 5,
            round_to: 5,
        }
    }
}

impl DatasetConfig {
    pub fn problems(&self) -> Vec<GatewayError> {
        let mut errs = Vec::new();
        if self.round_to == 0 {
            errs.push(GatewayError::config(
                "dataset.round_to",
                "must be 1 or more (1: no rounding)",
            ));
        }
        if let Some(path) = &self.opt_out
            && !path.is_file()
        {
            errs.push(GatewayError::config(
                "dataset.opt_out",
                format!("{} is not a readable file", path.display()),
            ));
        }
        errs
    }
}
