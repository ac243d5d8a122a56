//! The canonical model in the middle of every flow (ARCHITECTURE.md "One engine, two flows").
//! Field names follow the PRSB "Referral to social prescribing services" groups; see
//! docs/prsb-mapping.md for each PRSB item → canonical field → FHIR path.

pub mod dates;
pub mod identifiers;
pub mod lifecycle;
pub mod markup;
pub mod message_back;
pub mod prsb;
mod referral;
pub mod state;

pub use prsb::*;
pub use referral::*;

use serde::{Deserialize, Serialize};

/// The two flows the gateway runs: referrals out to CLW platforms, and what happened
/// back to the practice record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flow {
    Referral,
    MessageBack,
}

impl Flow {
    /// The name in the store, metrics, logs and parking headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::Referral => "referral",
            Flow::MessageBack => "message-back",
        }
    }

    pub fn parse(s: &str) -> Option<Flow> {
        match s {
            "referral" => Some(Flow::Referral),
            "message-back" => Some(Flow::MessageBack),
            _ => None,
        }
    }
}

impl std::fmt::Display for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Message headers as text (CloudEvents `ce-*`, the gateway's `x-clw-*`).
pub type Headers = std::collections::BTreeMap<String, String>;
