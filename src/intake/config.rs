//! `[intake]`: how much of a message the gateway takes in, and how much at once.

use serde::Deserialize;

use crate::error::GatewayError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeConfig {
    /// Bodies larger than this are refused before they are parsed.
    pub max_message_bytes: usize,
    /// Bytes of message bodies held in flight at once, per consumer; past it, consuming
    /// waits (prefetch × the largest body is more than a small pod has).
    pub max_in_flight_bytes: usize,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            max_message_bytes: 1024 * 1024,
            max_in_flight_bytes: 16 * 1024 * 1024,
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
        if self.max_message_bytes == 0 {
            errs.push(GatewayError::config(
                "intake.max_message_bytes",
                "must be above zero",
            ));
        }
        errs
    }
}
