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
    /// A scheduled extract: every programme's, written to a folder.
    pub schedule: Option<Schedule>,
    /// The agreement the extracts are shared under (`[agreements.ID]`).
    pub agreement: Option<String>,
    /// Who receives the extracts (organisations or roles), for the IG pack.
    pub recipients: Vec<String>,
    /// Who holds the pseudonym key (an organisation or role), for the IG pack.
    pub key_holder: Option<String>,
}

/// `[dataset.schedule]`: every `every`, each programme's row-level extract of the last
/// `months` months is written to `dir/<programme>.<format>` (replaced whole, never half
/// written), and audited.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub dir: PathBuf,
    #[serde(with = "humantime_serde", default = "one_day")]
    pub every: std::time::Duration,
    #[serde(default = "twelve")]
    pub months: u32,
    /// csv or json.
    #[serde(default = "csv")]
    pub format: String,
}

fn one_day() -> std::time::Duration {
    std::time::Duration::from_secs(86_400)
}

fn twelve() -> u32 {
    12
}

fn csv() -> String {
    "csv".into()
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
            schedule: None,
            agreement: None,
            recipients: Vec::new(),
            key_holder: None,
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
        if let Some(s) = &self.schedule {
            if super::output::Format::parse(&s.format).is_none() {
                errs.push(GatewayError::config(
                    "dataset.schedule.format",
                    "must be csv or json",
                ));
            }
            if self.pseudonym_key.is_none() {
                errs.push(GatewayError::config(
                    "dataset.pseudonym_key",
                    "is required by dataset.schedule: the row-level extract refuses to run without it",
                ));
            }
            if s.months == 0 || s.every < std::time::Duration::from_secs(60) {
                errs.push(GatewayError::config(
                    "dataset.schedule",
                    "months must be 1 or more and every at least 1m",
                ));
            }
        }
        // The files are read at start; `check` names a missing one without reading it.
        for (i, t) in self
            .deprivation
            .iter()
            .flat_map(|d| d.tables.iter())
            .enumerate()
        {
            for (key, path) in [("postcodes", &t.postcodes), ("deciles", &t.deciles)] {
                if !path.is_file() {
                    errs.push(GatewayError::config(
                        format!("dataset.deprivation.tables[{i}].{key}"),
                        format!("{} is not a readable file", path.display()),
                    ));
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A missing lookup file, a schedule without the key or with a bad format, and a
    /// rounding of 0 are each named by their key.
    #[test]
    fn problems_name_their_keys() {
        let c: DatasetConfig = toml::from_str(
            "round_to = 0\n\
             [schedule]\ndir = \"/tmp/x\"\nformat = \"xlsx\"\n\
             [[deprivation.tables]]\nindex = \"imd\"\npostcodes = \"/nonexistent/p.csv\"\n\
             postcode_column = \"pcds\"\narea_column = \"lsoa11cd\"\ndeciles = \"/nonexistent/d.csv\"\n\
             decile_area_column = \"a\"\ndecile_column = \"d\"\n",
        )
        .unwrap();
        let keys: Vec<String> = c.problems().into_iter().filter_map(|e| e.field).collect();
        for key in [
            "dataset.round_to",
            "dataset.schedule.format",
            "dataset.pseudonym_key",
            "dataset.deprivation.tables[0].postcodes",
            "dataset.deprivation.tables[0].deciles",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} in {keys:?}");
        }
        assert!(DatasetConfig::default().problems().is_empty());
    }
}
