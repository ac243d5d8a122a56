//! `[store]`: the store's own section of the configuration.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::error::GatewayError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`. Default: SQLite in data_dir.
    pub url: Option<String>,
    pub max_connections: u32,
    /// Most writes grouped into one transaction by the store writer.
    pub batch_max: usize,
    /// Longest wait for a connection from the pool.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// Longest a statement (or one batch of writes) may run before the store is
    /// reported unavailable.
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
}

impl StoreConfig {
    pub fn timeouts(&self) -> super::Timeouts {
        super::Timeouts {
            acquire: self.acquire_timeout,
            statement: self.statement_timeout,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: None,
            max_connections: 8,
            batch_max: 256,
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
        }
    }
}

impl StoreConfig {
    pub fn problems(&self) -> Vec<GatewayError> {
        let mut errs = Vec::new();
        if let Some(url) = &self.url
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            errs.push(GatewayError::config(
                "store.url",
                "must be a sqlite: or postgres:// URL",
            ));
        }
        if self.batch_max == 0 {
            errs.push(GatewayError::config(
                "store.batch_max",
                "must be at least 1",
            ));
        }
        for (key, d) in [
            ("store.acquire_timeout", self.acquire_timeout),
            ("store.statement_timeout", self.statement_timeout),
        ] {
            if d < Duration::from_millis(100) {
                errs.push(GatewayError::config(key, "must be at least 100ms"));
            }
        }
        errs
    }

    /// The configured URL, or SQLite in `data_dir`.
    pub fn url_in(&self, data_dir: &Path) -> String {
        self.url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("clw-gateway.db").display()
            )
        })
    }
}
