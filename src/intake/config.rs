//! `[intake]`: how much of a message the gateway takes in, and how much at once.

use serde::Deserialize;

use crate::error::GatewayError;
use crate::model::identifiers::{ChiCheck, SCOTTISH_PRACTICE_SYSTEM};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeConfig {
    /// Bodies larger than this are refused before they are parsed.
    pub max_message_bytes: usize,
    /// Bytes of message bodies held in flight at once, per consumer; past it, consuming
    /// waits (prefetch × the largest body is more than a small pod has).
    pub max_in_flight_bytes: usize,
    /// How CHI numbers are checked, in referrals and events alike:
    /// `date-and-modulus-11` (today's rule, the default), `modulus-11` or `format-only`.
    pub chi_check: ChiCheck,
    /// Identifier systems, beyond Scotland's own, whose values are Scottish practice codes.
    pub scottish_practice_systems: Vec<String>,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            max_message_bytes: 1024 * 1024,
            max_in_flight_bytes: 16 * 1024 * 1024,
            chi_check: ChiCheck::default(),
            scottish_practice_systems: Vec::new(),
        }
    }
}

/// What decoding checks and reads by deployment: the CHI rule and the systems that
/// carry Scottish practice codes.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub chi_check: ChiCheck,
    pub scottish_practice_systems: Vec<String>,
}

impl Rules {
    /// Whether identifier `system` names a Scottish practice code.
    pub fn is_scottish_practice_system(&self, system: &str) -> bool {
        system == SCOTTISH_PRACTICE_SYSTEM
            || self.scottish_practice_systems.iter().any(|s| s == system)
    }
}

impl IntakeConfig {
    pub fn rules(&self) -> Rules {
        Rules {
            chi_check: self.chi_check,
            scottish_practice_systems: self.scottish_practice_systems.clone(),
        }
    }
}

impl IntakeConfig {
    pub fn problems(&self) -> Vec<GatewayError> {
        let mut errs = Vec::new();
        if self.max_in_flight_bytes < self.max_message_bytes {
            errs.push(GatewayError::config(
                "intake.max_in_flight_bytes",
                "must be at least intake.max_message_bytes",
            ));
        }
        if self.max_in_flight_bytes > u32::MAX as usize {
            errs.push(GatewayError::config(
                "intake.max_in_flight_bytes",
                "must be at most 4 GiB",
            ));
        }
        for (i, s) in self.scottish_practice_systems.iter().enumerate() {
            if s.trim().is_empty() || s.contains(char::is_whitespace) {
                errs.push(GatewayError::config(
                    format!("intake.scottish_practice_systems[{i}]"),
                    "must be an identifier system URI",
                ));
            }
        }
        if self.max_message_bytes == 0 {
            errs.push(GatewayError::config(
                "intake.max_message_bytes",
                "must be above zero",
            ));
        }
        errs
    }
}
