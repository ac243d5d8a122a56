//! The engine's own settings: `[retry]` (its section of the configuration) and the
//! instance facts it is given (`Engine::new` takes these, never the whole
//! configuration).

use std::time::Duration;

use serde::Deserialize;

use crate::error::GatewayError;

/// What the engine is built with.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub retry: RetryConfig,
    /// Names this instance in audit rows and claims.
    pub instance: String,
    /// How long a claim holds before another copy may take it over.
    pub claim_ttl: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Delay of each retry tier; after the last, a message is parked.
    #[serde(with = "humantime_serde_vec")]
    pub tiers: Vec<Duration>,
    /// How often a paused destination (it answered 401, 403 or 404) is probed with
    /// one message.
    #[serde(with = "humantime_serde")]
    pub probe_every: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            tiers: [5, 30, 300, 1800]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            probe_every: Duration::from_secs(60),
        }
    }
}

mod humantime_serde_vec {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| humantime::parse_duration(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

impl RetryConfig {
    pub fn problems(&self) -> Vec<GatewayError> {
        let mut errs = Vec::new();
        if self.tiers.iter().any(Duration::is_zero) {
            errs.push(GatewayError::config(
                "retry.tiers",
                "every tier needs a delay above zero",
            ));
        }
        errs
    }
}
