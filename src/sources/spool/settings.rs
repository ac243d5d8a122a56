//! `[spool]`: the embedded transport's own section of the configuration.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::error::GatewayError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Holds inbox/, processing/, done/ and failed/ for each flow. Default: data_dir/spool.
    pub dir: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Files processed at once.
    pub concurrency: usize,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: None,
            poll_interval: Duration::from_millis(500),
            concurrency: 4,
        }
    }
}

impl SpoolConfig {
    pub fn problems(&self) -> Vec<GatewayError> {
        let mut errs = Vec::new();
        if self.concurrency == 0 {
            errs.push(GatewayError::config(
                "spool.concurrency",
                "must be at least 1",
            ));
        }
        errs
    }
}
